'use strict'
// Loads the native addon: a local build first (napi build output next to this
// file), then the prebuilt per-platform package from optionalDependencies.
// Fails with one clear message naming the missing package and how to build.

const { existsSync } = require('node:fs')
const { join } = require('node:path')

const MIN_NODE = [18, 17, 0]
// Internal interface version between this JS and the addon (see abi_version).
const ABI = 1
// One registry per process, even with two copies of the package installed:
// the first copy records which addon file it loaded (with our pid, so child
// processes that inherit the environment ignore it), and later copies load
// that same file (dlopen returns the already-loaded library, so its statics,
// the registry included, are shared). A copy with another ABI keeps its own
// addon; OS locks still exclude between the two, only in-process queueing and
// reentrancy are then per copy.
const ANCHOR = '__SESSION_WRITE_LOCK_NATIVE'

function checkNode(version) {
  const parts = String(version).replace(/^v/, '').split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    if ((parts[i] || 0) > MIN_NODE[i]) return
    if ((parts[i] || 0) < MIN_NODE[i]) {
      throw new Error(
        `session-write-lock needs Node.js >= ${MIN_NODE.join('.')} (N-API 8); this is ${version}. ` +
          'Upgrade Node.js (the gateway itself runs on Node 22 or later).',
      )
    }
  }
}

function isMusl() {
  if (process.platform !== 'linux') return false
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
  if (platform === 'linux' && arch === 'arm64') return 'linux-arm64-gnu'
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
    if (binding.abiVersion() === ABI && !process.env[ANCHOR]) {
      process.env[ANCHOR] = `${process.pid}:${ABI}:${file}`
    }
  } catch {
    // An addon without abiVersion: no sharing.
  }
  return binding
}

function load() {
  checkNode(process.versions.node)
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
  try {
    const file = require.resolve(pkg)
    return anchor(require(file), file)
  } catch (e) {
    errors.push(e)
  }
  const err = new Error(
    `session-write-lock: no native addon for ${tag}. ` +
      `The prebuilt package "${pkg}" is not installed (npm installs it from optionalDependencies; ` +
      'check that optional dependencies were not omitted), and no local build was found at ' +
      `${local}. To build from source: install Rust (>= 1.89), then run "npm run build" in ` +
      `${__dirname}.`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = errors[0]
  throw err
}

module.exports = load()
module.exports.__platformTag = platformTag
module.exports.__checkNode = checkNode
