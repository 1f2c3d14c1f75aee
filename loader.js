'use strict'
// Loads the native addon: a local build first (napi build output next to this
// file), then the prebuilt per-platform package from optionalDependencies.
// Fails with one clear message naming the missing package and how to build.

const { closeSync, existsSync, openSync, readFileSync, readSync } = require('node:fs')
const { join } = require('node:path')

const MIN_NODE = [18, 17, 0]
// Internal interface version between this JS and the addon (see abi_version).
const ABI = 4
// One registry per process, even with two copies of the package installed:
// the first copy records which addon file it loaded (with our pid, so child
// processes that inherit the environment ignore it), and later copies load
// that same file (dlopen returns the already-loaded library, so its statics,
// the registry included, are shared). A copy with another ABI keeps its own
// addon; OS locks still exclude between the two, only in-process queueing and
// reentrancy are then per copy.
const ANCHOR = '__SESSION_WRITE_LOCK_NATIVE'

// The functions every load() runs (the version gate, the C library probe,
// the anchor) are parenthesized function expressions rather than
// declarations: V8 compiles those with the file instead of pre-parsing them
// there and parsing them again on their first call (0.8 M instructions of a
// fresh require, docs/performance.md, scenario h). The rest stay lazy.
const SUPPORTED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']
const BUILD_HINT =
  'To build from source: install Rust >= 1.89 (https://rustup.rs), then in ' +
  `${__dirname} run "npx --yes @napi-rs/cli@3 build --platform --release --no-js --dts native.d.ts" ` +
  '(in a clone of the repository: "npm run build"); the loader picks up the ' +
  'session-write-lock.<platform>.node it writes there.'

// Throws when this Node.js is older than MIN_NODE or lacks N-API 8.
// `version` as in process.versions.node (a leading "v" is accepted); `napi` as in
// process.versions.napi (not checked when undefined).
const checkNode = (function checkNode(version, napi) {
  // No regular expression, split or map: this runs in every fresh process,
  // where each first use of one costs compile time.
  let v = String(version)
  if (v.charCodeAt(0) === 118 /* v */) v = v.slice(1)
  let tooOld = false
  let at = 0
  for (let i = 0; i < 3; i++) {
    let end = v.indexOf('.', at)
    if (end === -1) end = v.length
    const parsed = parseInt(v.slice(at, end), 10)
    at = end + 1
    const part = Number.isFinite(parsed) ? parsed : 0
    if (part > MIN_NODE[i]) break
    if (part < MIN_NODE[i]) {
      tooOld = true
      break
    }
  }
  const napiTooOld = napi !== undefined && !(parseInt(napi, 10) >= 8)
  if (tooOld || napiTooOld) throw unsupportedNode(version, napi)
})

// The error of checkNode (a declaration: compiled only when it is thrown).
function unsupportedNode(version, napi) {
  const err = new Error(
    `session-write-lock needs Node.js >= ${MIN_NODE.join('.')} with N-API 8; this is Node.js ` +
      `${String(version).replace(/^v?/, 'v')}${napi !== undefined ? ` (N-API ${napi})` : ''}. ` +
      'Upgrade Node.js (the gateway itself runs on Node 22 or later).',
  )
  err.code = 'SESSION_WRITE_LOCK_UNSUPPORTED_NODE'
  return err
}

// The dynamic loaders' paths, by arch: [glibc, musl].
const LD = {
  x64: ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-musl-x86_64.so.1'],
  arm64: ['/lib/ld-linux-aarch64.so.1', '/lib/ld-musl-aarch64.so.1'],
}

// Which C library a process's memory map shows: 'musl' when the musl loader
// is mapped (ld-musl-<arch>.so.1 on Alpine, <triplet>-linux-musl/libc.so
// where a glibc distribution packages musl), 'glibc' when glibc's loader or
// libc is (ld-linux-*, libc.so.6, and the ld-2.NN.so / libc-2.NN.so of glibc
// before 2.34), null when neither (a static binary, an unreadable map, a musl
// installed under another name). `maps` is the text of /proc/<pid>/maps.
// Runs in every fresh process (isMusl), so it is written for a cold V8:
// indexOf over the whole text (native code) and a few character tests on the
// hits, no regular expression (each costs a compile on its first use).
const libcFromMaps = (function libcFromMaps(maps) {
  if (typeof maps !== 'string') return null
  if (mapsHas(maps, '/ld-musl-', 1) || mapsHas(maps, '/libc.musl-', 1) || mapsHas(maps, '-linux-musl', 2)) return 'musl'
  if (mapsHas(maps, '/ld-linux', 1) || mapsHas(maps, '/libc.so.6', 3) || mapsHas(maps, '/ld-2.', 4) || mapsHas(maps, '/libc-2.', 4)) {
    return 'glibc'
  }
  return null
})

// Whether `needle` occurs in `maps` where its path component (the name
// between two '/', ended by whitespace) is a C library's file: how 1: the
// component goes on to hold ".so"; 2: the component is a directory whose
// next component starts with "libc.so"; 3: the needle ends the name or is
// followed by a character that is not a letter, digit or '_'; 4: digits,
// then ".so", then such an end.
const mapsHas = (function mapsHas(maps, needle, how) {
  for (let at = maps.indexOf(needle); at !== -1; at = maps.indexOf(needle, at + 1)) {
    const from = at + needle.length
    let end = from
    while (end < maps.length) {
      const c = maps.charCodeAt(end)
      if (c === 47 /* / */ || c <= 32) break
      end++
    }
    if (how === 1) {
      const so = maps.indexOf('.so', from)
      if (so !== -1 && so + 3 <= end) return true
    } else if (how === 2) {
      if (maps.startsWith('/libc.so', end)) return true
    } else {
      let i = from
      if (how === 4) {
        while (i < end && maps.charCodeAt(i) >= 48 && maps.charCodeAt(i) <= 57) i++
        if (i === from || !maps.startsWith('.so', i)) continue
        i += 3
      }
      const c = i < maps.length ? maps.charCodeAt(i) : 32
      const word = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95
      if (!word) return true
    }
  }
  return false
})

// The program interpreter (PT_INTERP) an ELF64 file asks the kernel for, as
// written in the file: the C library's ABI name (/lib/ld-musl-x86_64.so.1,
// /lib64/ld-linux-x86-64.so.2), whatever that path resolves to on disk. null
// for a file without one (a static binary), a file that is not ELF64, or one
// that cannot be read. Usually one read of the first KiB (header, program
// headers and the path sit there), more only where a tool moved them.
// Only isMusl's fallback (the memory map named no C library), so a plain
// declaration, compiled on its first call: plain byte arithmetic on a
// Uint8Array, no closures, no Buffer methods and no BigInt.
function elfInterpreter(file) {
  let fd = -1
  try {
    fd = openSync(file, 'r')
    const head = new Uint8Array(1024)
    const got = readSync(fd, head, 0, 1024, 0)
    // ELF magic, ELFCLASS64.
    if (got < 64 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46 || head[4] !== 2) return null
    const le = head[5] === 1
    const phentsize = elfUint(head, 0x36, 2, le)
    const phnum = elfUint(head, 0x38, 2, le)
    if (phentsize < 56 || phnum === 0 || phnum > 256) return null
    const ph = elfBytes(fd, head, got, elfUint(head, 0x20, 8, le), phentsize * phnum)
    if (ph === null) return null
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize
      if (elfUint(ph, at, 4, le) !== 3 /* PT_INTERP */) continue
      const size = elfUint(ph, at + 32, 8, le)
      if (size === 0 || size > 4096) return null
      const s = elfBytes(fd, head, got, elfUint(ph, at + 8, 8, le), size)
      if (s === null) return null
      let text = ''
      for (let j = 0; j < s.length && s[j] !== 0; j++) text += String.fromCharCode(s[j])
      return text
    }
    return null
  } catch {
    return null
  } finally {
    if (fd !== -1) closeSync(fd)
  }
}

// The unsigned integer of `len` bytes at `at` (exact up to 2^53, which
// covers every offset and size a real file has).
function elfUint(b, at, len, le) {
  let v = 0
  for (let i = 0; i < len; i++) v = v * 256 + b[le ? at + len - 1 - i : at + i]
  return v
}

// `len` bytes of the file at `pos`: from the first read when they are in it,
// else read; null when the file is shorter.
function elfBytes(fd, head, got, pos, len) {
  if (pos + len <= got) return head.subarray(pos, pos + len)
  const b = new Uint8Array(len)
  return readSync(fd, b, 0, len, pos) === len ? b : null
}

// Which C library an interpreter path names: musl's loader is
// ld-musl-<arch>.so.1 and glibc's ld-linux-<arch>.so.<n> (ld.so on a few
// ports), by ABI, on every distribution. null for any other name.
function libcFromInterpreter(interp) {
  if (typeof interp !== 'string') return null
  const base = interp.slice(interp.lastIndexOf('/') + 1)
  if (base.startsWith('ld-musl-')) return 'musl'
  if (base.startsWith('ld-linux-') || base.startsWith('ld-linux.')) return 'glibc'
  if (base.startsWith('ld.so.') && base.charCodeAt(6) >= 48 && base.charCodeAt(6) <= 57) return 'glibc'
  return null
}

// glibc or musl, from the running process's own facts. First the C library
// mapped into it (/proc/self/maps): the file the process really runs, by the
// names both libraries are installed under. It is read with
// readFileSync(path, 'utf8'), the call Node's CommonJS loader made to read
// this very file, so no further Node function is compiled for it (an
// open/read/close of the executable costs a fresh process about 1 M
// instructions of compiling Node's fs wrappers: docs/distribution.md). Then,
// for a map that names neither (no /proc, a static Node, musl installed as a
// plain libc.so), the interpreter its executable names (PT_INTERP of
// /proc/self/exe): what the kernel loaded, by its ABI name, whatever the
// file layout, under qemu too. Which loaders exist on disk says nothing about
// which one runs this Node (Debian with musl installed, Alpine with gcompat,
// a musl Node carrying its own loader), so those checks are only a fallback;
// process.report costs milliseconds and comes last.
const isMusl = (function isMusl() {
  if (process.platform !== 'linux') return false
  let maps = null
  try {
    maps = readFileSync('/proc/self/maps', 'utf8')
  } catch {
    // No /proc: fall back to the checks below.
  }
  const fromMaps = libcFromMaps(maps)
  return fromMaps !== null ? fromMaps === 'musl' : isMuslFallback()
})

// isMusl when the memory map names no C library (a declaration: compiled
// only then).
function isMuslFallback() {
  const fromInterp = libcFromInterpreter(elfInterpreter('/proc/self/exe'))
  if (fromInterp !== null) return fromInterp === 'musl'
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

const platformTag = (function platformTag() {
  const { platform, arch } = process
  if (platform === 'linux' && arch === 'x64') return isMusl() ? 'linux-x64-musl' : 'linux-x64-gnu'
  if (platform === 'linux' && arch === 'arm64') return isMusl() ? 'linux-arm64-musl' : 'linux-arm64-gnu'
  if (platform === 'darwin' && (arch === 'x64' || arch === 'arm64')) return `darwin-${arch}`
  if (platform === 'win32' && arch === 'x64') return 'win32-x64-msvc'
  return `${platform}-${arch}`
})

const fromAnchor = (function fromAnchor() {
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
})

const anchor = (function anchor(binding, file) {
  try {
    // An anchor inherited from a parent process names another pid: replace it.
    if (binding.abiVersion() === ABI && !String(process.env[ANCHOR] || '').startsWith(`${process.pid}:`)) {
      process.env[ANCHOR] = `${process.pid}:${ABI}:${file}`
    }
  } catch {
    // An addon without abiVersion: no sharing.
  }
  return binding
})

const load = (function load() {
  checkNode(process.versions.node, process.versions.napi)
  const shared = fromAnchor()
  if (shared !== null) return shared.binding
  const override = process.env.SESSION_WRITE_LOCK_NATIVE_PATH
  if (override) return anchor(require(override), override)
  const tag = platformTag()
  const local = join(__dirname, `session-write-lock.${tag}.node`)
  const errors = []
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
      throw unusablePackage(pkg, file, e)
    }
  }
  throw noNative(tag, pkg, local, errors[0])
})

// The errors of load() (declarations: compiled only when one is thrown).
// Installed but unusable: wrong architecture, a glibc too old, a damaged file.
function unusablePackage(pkg, file, e) {
  const err = new Error(
    `session-write-lock: the prebuilt package "${pkg}" is installed but its addon failed to load ` +
      `(${file}): ${e && e.message}. ${BUILD_HINT}`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = e
  return err
}

function noNative(tag, pkg, local, cause) {
  const why = SUPPORTED.includes(tag)
    ? `The prebuilt package "${pkg}" is not installed: npm installs it through optionalDependencies, ` +
      'so check that optional dependencies were not omitted (--omit=optional, --no-optional) and, ' +
      'if package-lock.json was made on another platform, reinstall after removing node_modules and the lockfile.'
    : `No prebuilt package exists for ${tag} (prebuilt: ${SUPPORTED.join(', ')}).`
  const err = new Error(
    `session-write-lock: no native addon for ${tag}. ${why} No local build was found at ${local}. ${BUILD_HINT}`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = cause
  return err
}

// ---------------------------------------------------------------- PostgreSQL
// The PostgreSQL backend is a second addon, loaded only when a backend is
// configured (lib/backend.js); finding it is lib/postgres-addon.js's, loaded
// then too, so a require() of the package does not compile that code.
function loadPostgres(main) {
  return require('./lib/postgres-addon').loadPostgres(main, platformTag())
}

// Requiring this file loads nothing: `load()` returns the addon (lib/native.js
// calls it once per copy of the package), `loadPostgres()` the backend's
// (lib/backend.js, once a backend is configured). The helpers are exported for the
// tests and the bench, never hung on the addon's own exports.
module.exports = { load, loadPostgres, platformTag, checkNode, libcFromMaps, elfInterpreter, libcFromInterpreter }
