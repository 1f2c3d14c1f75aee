'use strict'
// Loads the native addon: a local build first (napi build output next to this
// file), then the prebuilt per-platform package from optionalDependencies.
// Fails with one clear message naming the missing package and how to build.

const { existsSync, readFileSync } = require('node:fs')
const { join } = require('node:path')

const MIN_NODE = [18, 17, 0]
// Internal interface version between this JS and the addon (see abi_version).
const ABI = 3
// One registry per process, even with two copies of the package installed:
// the first copy records which addon file it loaded (with our pid, so child
// processes that inherit the environment ignore it), and later copies load
// that same file (dlopen returns the already-loaded library, so its statics,
// the registry included, are shared). A copy with another ABI keeps its own
// addon; OS locks still exclude between the two, only in-process queueing and
// reentrancy are then per copy.
const ANCHOR = '__SESSION_WRITE_LOCK_NATIVE'

const SUPPORTED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']
const BUILD_HINT =
  'To build from source: install Rust >= 1.89 (https://rustup.rs), then in ' +
  `${__dirname} run "npx --yes @napi-rs/cli@3 build --platform --release --no-js --dts native.d.ts" ` +
  '(in a clone of the repository: "npm run build"); the loader picks up the ' +
  'session-write-lock.<platform>.node it writes there.'

// Throws when this Node.js is older than MIN_NODE or lacks N-API 8.
// `version` as in process.versions.node (a leading "v" is accepted); `napi` as in
// process.versions.napi (not checked when undefined).
function checkNode(version, napi) {
  const parts = String(version).replace(/^v/, '').split('.').map((p) => parseInt(p, 10))
  let tooOld = false
  for (let i = 0; i < 3; i++) {
    const part = Number.isFinite(parts[i]) ? parts[i] : 0
    if (part > MIN_NODE[i]) break
    if (part < MIN_NODE[i]) {
      tooOld = true
      break
    }
  }
  const napiTooOld = napi !== undefined && !(parseInt(napi, 10) >= 8)
  if (tooOld || napiTooOld) {
    const err = new Error(
      `session-write-lock needs Node.js >= ${MIN_NODE.join('.')} with N-API 8; this is Node.js ` +
        `${String(version).replace(/^v?/, 'v')}${napi !== undefined ? ` (N-API ${napi})` : ''}. ` +
        'Upgrade Node.js (the gateway itself runs on Node 22 or later).',
    )
    err.code = 'SESSION_WRITE_LOCK_UNSUPPORTED_NODE'
    throw err
  }
}

// The dynamic loaders' paths, by arch: [glibc, musl].
const LD = {
  x64: ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-musl-x86_64.so.1'],
  arm64: ['/lib/ld-linux-aarch64.so.1', '/lib/ld-musl-aarch64.so.1'],
}

// Which C library a process's memory map shows: 'musl' when the musl loader
// (ld-musl-<arch>.so.1) is mapped, 'glibc' when glibc's loader or libc.so.6 is,
// null when neither (a static binary, an unreadable map). `maps` is the text of
// /proc/<pid>/maps.
function libcFromMaps(maps) {
  if (typeof maps !== 'string') return null
  if (/\/ld-musl-[^/\s]*\.so/.test(maps)) return 'musl'
  if (/\/ld-linux[^/\s]*\.so|\/libc\.so\.6\b/.test(maps)) return 'glibc'
  return null
}

// glibc or musl, from the running process's own facts: the dynamic loader
// mapped into this process (/proc/self/maps; one read of ~100 lines, also
// right under qemu, which shows the guest's map). Which loaders exist on disk
// says nothing about which one runs this Node (Debian with musl installed,
// Alpine with gcompat), so the file checks are only a fallback when the map
// is unreadable; process.report costs milliseconds and comes last.
function isMusl() {
  if (process.platform !== 'linux') return false
  let maps = null
  try {
    maps = readFileSync('/proc/self/maps', 'latin1')
  } catch {
    // No /proc: fall back to the files below.
  }
  const fromMaps = libcFromMaps(maps)
  if (fromMaps !== null) return fromMaps === 'musl'
  const ld = LD[process.arch]
  if (ld !== undefined) {
    const glibc = existsSync(ld[0])
    if (glibc !== existsSync(ld[1])) return !glibc
  }
  try {
    const report = process.report && process.report.getReport()
    const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header
    return !(header && header.glibcVersionRuntime)
  } catch {
    return existsSync('/etc/alpine-release')
  }
}

function platformTag() {
  const { platform, arch } = process
  if (platform === 'linux' && arch === 'x64') return isMusl() ? 'linux-x64-musl' : 'linux-x64-gnu'
  if (platform === 'linux' && arch === 'arm64') return isMusl() ? 'linux-arm64-musl' : 'linux-arm64-gnu'
  if (platform === 'darwin' && (arch === 'x64' || arch === 'arm64')) return `darwin-${arch}`
  if (platform === 'win32' && arch === 'x64') return 'win32-x64-msvc'
  return `${platform}-${arch}`
}

function fromAnchor() {
  const v = process.env[ANCHOR]
  if (typeof v !== 'string') return null
  const m = /^(\d+):(\d+):(.+)$/.exec(v)
  if (m === null || Number(m[1]) !== process.pid || Number(m[2]) !== ABI || !existsSync(m[3])) return null
  try {
    const binding = require(m[3])
    return binding.abiVersion() === ABI ? { binding, file: m[3] } : null
  } catch {
    return null
  }
}

function anchor(binding, file) {
  try {
    // An anchor inherited from a parent process names another pid: replace it.
    if (binding.abiVersion() === ABI && !String(process.env[ANCHOR] || '').startsWith(`${process.pid}:`)) {
      process.env[ANCHOR] = `${process.pid}:${ABI}:${file}`
    }
  } catch {
    // An addon without abiVersion: no sharing.
  }
  return binding
}

function load() {
  checkNode(process.versions.node, process.versions.napi)
  const shared = fromAnchor()
  if (shared !== null) return shared.binding
  const tag = platformTag()
  const local = join(__dirname, `session-write-lock.${tag}.node`)
  const errors = []
  if (process.env.SESSION_WRITE_LOCK_NATIVE_PATH) {
    const file = process.env.SESSION_WRITE_LOCK_NATIVE_PATH
    return anchor(require(file), file)
  }
  if (existsSync(local)) {
    return anchor(require(local), local)
  }
  const pkg = `session-write-lock-${tag}`
  let file = null
  try {
    file = require.resolve(pkg)
  } catch (e) {
    errors.push(e)
  }
  if (file !== null) {
    try {
      return anchor(require(file), file)
    } catch (e) {
      // Installed but unusable: wrong architecture, a glibc too old, a damaged file.
      const err = new Error(
        `session-write-lock: the prebuilt package "${pkg}" is installed but its addon failed to load ` +
          `(${file}): ${e && e.message}. ${BUILD_HINT}`,
      )
      err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
      err.cause = e
      throw err
    }
  }
  const why = SUPPORTED.includes(tag)
    ? `The prebuilt package "${pkg}" is not installed: npm installs it through optionalDependencies, ` +
      'so check that optional dependencies were not omitted (--omit=optional, --no-optional) and, ' +
      'if package-lock.json was made on another platform, reinstall after removing node_modules and the lockfile.'
    : `No prebuilt package exists for ${tag} (prebuilt: ${SUPPORTED.join(', ')}).`
  const err = new Error(
    `session-write-lock: no native addon for ${tag}. ${why} No local build was found at ${local}. ${BUILD_HINT}`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = errors[0]
  throw err
}

module.exports = load()
module.exports.__platformTag = platformTag
module.exports.__checkNode = checkNode
module.exports.__libcFromMaps = libcFromMaps
