'use strict'
// Loads the native addon: a local build first (napi build output next to this
// file), then the prebuilt per-platform package from optionalDependencies.
// Fails with one clear message naming the missing package and how to build.

const { existsSync } = require('node:fs')
const { join } = require('node:path')

const MIN_NODE = [18, 17, 0]

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

function load() {
  checkNode(process.versions.node)
  const tag = platformTag()
  const local = join(__dirname, `session-write-lock.${tag}.node`)
  const errors = []
  if (process.env.SESSION_WRITE_LOCK_NATIVE_PATH) {
    return require(process.env.SESSION_WRITE_LOCK_NATIVE_PATH)
  }
  if (existsSync(local)) {
    return require(local)
  }
  const pkg = `session-write-lock-${tag}`
  try {
    return require(pkg)
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
