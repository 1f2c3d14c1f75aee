'use strict'
// cleanStaleLockFiles and inspectLockFile (docs/spec.md, "Old lock files"):
// report every *.jsonl.lock in a sessions directory, judged by the old module's
// rules (old-format files) or by the OS lock (ours), and remove the stale ones.
// docs/migration.md lists the rules each OpenClaw generation applied.
//
// Loaded on first use, and a factory: each copy of the package creates its own
// instance (its start-time resolver seam) even when the require cache hands it
// another copy's module file.

const fs = require('node:fs')
const path = require('node:path')
const options = require('./options')

// ---------------------------------------------------------------- owner command lines

const GATEWAY_ENTRY_SUFFIXES = ['dist/index.js', 'dist/entry.js', 'scripts/run-node.mjs', 'src/entry.ts', 'src/index.ts']

function normalizeArg(arg) {
  return String(arg).trim().toLowerCase().replace(/\\/g, '/')
}

/**
 * Whether a command line is an OpenClaw gateway or agent: the executable is
 * `openclaw` / `openclaw-gateway` (or a path ending so, `.exe`/`.cmd`/`.bat`
 * ignored), or an argument is `openclaw` / `openclaw.mjs` (or a path ending
 * so), or an argument is a gateway entry point (`dist/index.js`, ...) while
 * another argument is `gateway` or `agent`. Only meaningful for a non-empty
 * command line.
 */
function isOpenClawProcessArgv(argv) {
  const args = argv.map(normalizeArg)
  const exe = args[0].replace(/\.(exe|cmd|bat)$/, '')
  for (const name of ['openclaw', 'openclaw-gateway']) {
    if (exe === name || exe.endsWith(`/${name}`)) return true
  }
  for (const a of args) {
    if (a === 'openclaw' || a === 'openclaw.mjs' || a.endsWith('/openclaw') || a.endsWith('/openclaw.mjs')) {
      return true
    }
  }
  const hasMode = args.some((a) => a === 'gateway' || a === 'agent')
  return hasMode && args.some((a) => GATEWAY_ENTRY_SUFFIXES.some((s) => a.endsWith(s)))
}

/**
 * The default owner reader: the pid's command line from /proc/<pid>/cmdline
 * (Linux); null when unknown (another OS, an unreadable or empty entry), and
 * null for this process itself: a file naming the sweeping process is judged
 * by `orphan-self-pid` alone, whatever runs the sweep.
 */
function readProcessArgs(pid) {
  if (pid === process.pid || process.platform !== 'linux') return null
  let raw
  try {
    raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return null
  }
  const args = raw.split('\0')
  if (args.length > 0 && args[args.length - 1] === '') args.pop()
  return args.length > 0 ? args : null
}

/** true when `reader(pid)` names a known command line that is not OpenClaw's. */
function ownerIsNotOpenClaw(reader, pid) {
  let args
  try {
    args = reader(pid)
  } catch {
    return false // unknown
  }
  if (!Array.isArray(args) || !args.some((a) => typeof a === 'string' && a.trim() !== '')) return false
  return !isOpenClawProcessArgv(args.map((a) => (typeof a === 'string' ? a : '')))
}

// ---------------------------------------------------------------- inspection results

/** An mtime (ms) as ISO 8601; null when absent or out of Date's range (a forged mtime). */
function isoOrNull(ms) {
  return typeof ms === 'number' && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : null
}

/** The old rules' verdict of a native report, absent values as null. */
function verdictOf(v) {
  return {
    pid: v.pid ?? null,
    pidAlive: v.pidAlive,
    createdAt: v.createdAt ?? null,
    ageMs: v.ageMs ?? null,
    stale: v.stale,
    staleReasons: v.staleReasons,
  }
}

function toInspection(r) {
  return {
    lockPath: r.lockPath,
    ...verdictOf(r),
    removed: r.removed,
    held: r.held,
    heldSince: isoOrNull(r.heldSinceMs),
  }
}

function resolveStale(params) {
  return options.positiveMs(params.staleMs, true) ?? options.resolveSessionWriteLockStaleMs(params.config, params.env)
}

function resolveReader(fn) {
  if (fn === undefined || fn === null) return readProcessArgs
  if (typeof fn !== 'function') throw new TypeError('readOwnerProcessArgs must be a function')
  return fn
}

function resolveNow(nowMs) {
  return typeof nowMs === 'number' && Number.isFinite(nowMs) ? nowMs : Date.now()
}

/**
 * A temporary name of a create or rewrite: `.<name>.jsonl.lock.<pid>-<n>.tmp`.
 * A process killed between its `link` and `unlink` (or inside a swap) leaves
 * one behind; it is never a lock entry.
 */
const STRAY_TEMP = /^\..+\.jsonl\.lock\.\d+-\d+\.tmp$/

/** Grace of a temp file, as of a payload-less lock file: min(staleMs, 5 s)... */
const PAYLOADLESS_GRACE_MS = 5000
/** ...but never under 1 s: a file in use is unlocked between its open and its flock. */
const MIN_TEMP_GRACE_MS = 1000

// ---------------------------------------------------------------- this copy

/**
 * This copy's inspection of lock files. `deps`: `native` (lib/native.js).
 */
function createStaleLocks({ native }) {
  // ---------------------------------------------------------------- start-time resolver seam

  let startTimeResolver = null

  function resolvedStartTime(pid) {
    let v
    try {
      v = startTimeResolver(pid)
    } catch {
      return null
    }
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null
  }

  /** Report the resolver's start time for `pid` through the native override seam. */
  function applyResolver(pid) {
    if (startTimeResolver !== null && Number.isSafeInteger(pid) && pid > 0) {
      native.setStartTimeOverride(pid, resolvedStartTime(pid), false)
    }
  }

  /**
   * Test seam: `fn(pid)` gives the start time to use for `pid` (a non-negative
   * integer; anything else, or a throw, means "unknown"); null restores the real
   * one. It is applied through the per-pid override seam: to this process at
   * once (acquire, the payloads we write, and every rule about our own pid),
   * and to the pid of each file that cleanStaleLockFiles / inspectLockFile /
   * inspectLockPayloadForTest judge while it is set. Other pids seen by acquire
   * keep their real start times.
   */
  function setProcessStartTimeResolverForTest(fn) {
    if (fn !== null && fn !== undefined && typeof fn !== 'function') {
      throw new TypeError('setProcessStartTimeResolverForTest expects a function or null')
    }
    native.setStartTimeOverride(0, null, true)
    startTimeResolver = fn ?? null
    applyResolver(process.pid)
  }

  function resetForTest() {
    startTimeResolver = null
  }

  /**
   * The old rules applied to a parsed payload (no file, so no mtime grace and
   * nothing held): { pid, pidAlive, createdAt, ageMs, stale, staleReasons }.
   */
  function inspectLockPayloadForTest(payload, staleMs, nowMs) {
    const json = JSON.stringify(payload ?? null) ?? 'null'
    if (payload !== null && typeof payload === 'object') applyResolver(payload.pid)
    const v = native.inspectLockPayload(
      json,
      resolveNow(nowMs),
      options.positiveMs(staleMs, true) ?? options.DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
    )
    return verdictOf(v)
  }

  // ---------------------------------------------------------------- inspection

  /** Judge (and, with `remove`, remove) one file; the native report plus `removeError`. */
  function judgeFile(lockPath, nowMs, staleMs, remove, reader) {
    if (startTimeResolver !== null) {
      const peek = native.peekHolder(lockPath)
      if (peek !== null && peek.pid != null) applyResolver(peek.pid)
    }
    let r = native.inspectLockFile(lockPath, nowMs, staleMs, remove, null)
    if (r.ownerCheckable && r.pid != null && ownerIsNotOpenClaw(reader, r.pid)) {
      // Judged again under the file's OS lock: the reason applies only if the
      // file still names that pid and nothing else changed the verdict.
      r = native.inspectLockFile(lockPath, nowMs, staleMs, remove, r.pid)
    }
    const removeError = remove && r.stale && !r.removed && r.error ? r.error.code : null
    return { r, removeError }
  }

  /**
   * Inspect one lock file by the same rules as cleanStaleLockFiles, removing it
   * only with `remove: true`. Extra fields beyond SessionLockInspection: kind
   * ("os" | "legacy"), hostname, maxHoldMs, error, and removeError when a stale
   * file could not be removed.
   */
  function inspectLockFile(lockPath, opts) {
    if (typeof lockPath !== 'string' || lockPath.length === 0 || lockPath.includes('\0')) {
      throw new TypeError('inspectLockFile expects a lock file path (a non-empty string without NUL)')
    }
    const o = opts ?? {}
    if (typeof o !== 'object') throw new TypeError('inspectLockFile options must be an object')
    const { r, removeError } = judgeFile(
      lockPath,
      resolveNow(o.nowMs),
      resolveStale(o),
      o.remove === true,
      resolveReader(o.readOwnerProcessArgs),
    )
    const out = {
      ...toInspection(r),
      kind: r.kind,
      hostname: r.hostname ?? null,
      maxHoldMs: r.maxHoldMs ?? null,
      error: r.error ?? null,
    }
    if (removeError !== null) out.removeError = removeError
    return out
  }

  /**
   * Remove the stray temp files among `names` that nobody holds and whose mtime
   * is older than the grace; log each removal via `info`, failures via `warn`.
   * The grace is judged by the earlier of `nowMs` and the real clock: a caller's
   * clock set ahead must not make a temp file that is being built look old.
   */
  function removeStrayTemps(sessionsDir, names, nowMs, staleMs, info, warn) {
    const graceMs = Math.max(MIN_TEMP_GRACE_MS, Math.min(staleMs, PAYLOADLESS_GRACE_MS))
    const clockMs = Math.min(nowMs, Date.now())
    for (const name of names) {
      if (!STRAY_TEMP.test(name)) continue
      const file = path.join(sessionsDir, name)
      const r = native.removeStrayTemp(file, clockMs, graceMs)
      if (r.removed) info(`removed stray lock temp file: ${file}`)
      else if (r.error && r.error.code !== 'ENOENT') warn(`could not remove stray lock temp file: ${file}: ${r.error.code}`)
    }
  }

  async function cleanStaleLockFiles(params) {
    if (params === null || typeof params !== 'object' || typeof params.sessionsDir !== 'string') {
      throw new TypeError('cleanStaleLockFiles expects { sessionsDir: string }')
    }
    const sessionsDir = path.resolve(params.sessionsDir)
    const staleMs = resolveStale(params)
    const reader = resolveReader(params.readOwnerProcessArgs)
    const removeStale = params.removeStale !== false
    const nowMs = resolveNow(params.nowMs)
    const log = params.log
    const warn = log && typeof log.warn === 'function' ? (m) => log.warn(m) : () => {}
    const info = log && typeof log.info === 'function' ? (m) => log.info(m) : () => {}
    let names
    try {
      names = await fs.promises.readdir(sessionsDir)
    } catch (err) {
      if (err && err.code === 'ENOENT') return { locks: [], cleaned: [] }
      throw err
    }
    if (removeStale) removeStrayTemps(sessionsDir, names, nowMs, staleMs, info, warn)
    names = names.filter((n) => n.endsWith('.jsonl.lock')).sort((a, b) => a.localeCompare(b))
    const locks = []
    const cleaned = []
    for (const name of names) {
      const lockPath = path.join(sessionsDir, name)
      const { r, removeError } = judgeFile(lockPath, nowMs, staleMs, removeStale, reader)
      if (r.error && r.error.code === 'ENOENT') continue // gone meanwhile
      const inspection = toInspection(r)
      const reasons = r.staleReasons.join(', ')
      if (removeError !== null) {
        inspection.removeError = removeError
        warn(`could not remove stale session lock: ${lockPath} (${reasons}): ${removeError}`)
      }
      locks.push(inspection)
      if (r.removed) {
        cleaned.push(inspection)
        warn(`removed stale session lock: ${lockPath} (${reasons})`)
      }
    }
    return { locks, cleaned }
  }

  return {
    cleanStaleLockFiles,
    inspectLockFile,
    setProcessStartTimeResolverForTest,
    inspectLockPayloadForTest,
    resetForTest,
  }
}

module.exports = { createStaleLocks }
