'use strict'
// Loads the native addon: a local build first (napi build output next to this
// file), then the prebuilt per-platform package from optionalDependencies.
// Fails with one clear message naming the missing package and how to build.

const { existsSync, readFileSync } = require('node:fs')
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
// fresh require, docs/performance.md, scenario h). What runs only off the
// common path (the C library fallbacks, the errors of a failed load) is
// lib/loader-fallbacks.js, loaded on its first use: index.js carries it as
// text, so a require() does not even pre-parse it.
let fallbackModule = null
function fallbacks() {
  if (fallbackModule === null) fallbackModule = require('./lib/loader-fallbacks')
  return fallbackModule
}

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
  if (tooOld || napiTooOld) throw fallbacks().unsupportedNode(version, napi, MIN_NODE)
})

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
  return fromMaps !== null ? fromMaps === 'musl' : fallbacks().isMuslFallback()
})

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
      throw fallbacks().unusablePackage(pkg, file, e, __dirname)
    }
  }
  throw fallbacks().noNative(tag, pkg, local, errors[0], __dirname)
})

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
module.exports = {
  load,
  loadPostgres,
  platformTag,
  checkNode,
  libcFromMaps,
  elfInterpreter: (file) => fallbacks().elfInterpreter(file),
  libcFromInterpreter: (interp) => fallbacks().libcFromInterpreter(interp),
}
