'use strict'
// What loader.js runs only off its common path, loaded on first use: the
// C library checks for a process whose memory map names no C library (the
// interpreter its executable names, then the loaders on disk, then
// process.report), and the errors of a Node.js too old or an addon that cannot
// be found or loaded. Every fresh process that requires the package used to
// pre-parse this code for nothing (0.4 M instructions, docs/performance.md,
// scenario h); index.js carries it as text compiled on its first require
// (scripts/bundle.js, COMPILED_ON_USE). Stateless: loader.js's own file, when
// required alone (tests, the bench), gets its own copy.

const { closeSync, existsSync, openSync, readSync } = require('node:fs')

const SUPPORTED = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']
/** How to build the addon in `dir` (the package's directory, loader.js's). */
const buildHint = (dir) =>
  'To build from source: install Rust >= 1.89 (https://rustup.rs), then in ' +
  `${dir} run "npx --yes @napi-rs/cli@3 build --platform --release --no-js --dts native.d.ts" ` +
  '(in a clone of the repository: "npm run build"); the loader picks up the ' +
  'session-write-lock.<platform>.node it writes there.'

// The error of loader.js's checkNode; `minNode` its MIN_NODE.
function unsupportedNode(version, napi, minNode) {
  const err = new Error(
    `session-write-lock needs Node.js >= ${minNode.join('.')} with N-API 8; this is Node.js ` +
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

// The program interpreter (PT_INTERP) an ELF64 file asks the kernel for, as
// written in the file: the C library's ABI name (/lib/ld-musl-x86_64.so.1,
// /lib64/ld-linux-x86-64.so.2), whatever that path resolves to on disk. null
// for a file without one (a static binary), a file that is not ELF64, or one
// that cannot be read. Usually one read of the first KiB (header, program
// headers and the path sit there), more only where a tool moved them.
// Only isMusl's fallback (the memory map named no C library): plain byte
// arithmetic on a Uint8Array, no closures, no Buffer methods and no BigInt.
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

// loader.js's isMusl when the memory map names no C library.
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

// The errors of loader.js's load(); `dir` is the package's directory.
// Installed but unusable: wrong architecture, a glibc too old, a damaged file.
function unusablePackage(pkg, file, e, dir) {
  const err = new Error(
    `session-write-lock: the prebuilt package "${pkg}" is installed but its addon failed to load ` +
      `(${file}): ${e && e.message}. ${buildHint(dir)}`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = e
  return err
}

function noNative(tag, pkg, local, cause, dir) {
  const why = SUPPORTED.includes(tag)
    ? `The prebuilt package "${pkg}" is not installed: npm installs it through optionalDependencies, ` +
      'so check that optional dependencies were not omitted (--omit=optional, --no-optional) and, ' +
      'if package-lock.json was made on another platform, reinstall after removing node_modules and the lockfile.'
    : `No prebuilt package exists for ${tag} (prebuilt: ${SUPPORTED.join(', ')}).`
  const err = new Error(
    `session-write-lock: no native addon for ${tag}. ${why} No local build was found at ${local}. ${buildHint(dir)}`,
  )
  err.code = 'SESSION_WRITE_LOCK_NO_NATIVE'
  err.cause = cause
  return err
}

module.exports = { unsupportedNode, elfInterpreter, libcFromInterpreter, isMuslFallback, unusablePackage, noNative }
