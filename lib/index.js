'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// docs/spec.md for the API, docs/migration.md for both upstream generations;
// index.d.ts for the types; docs/design.md for the modules under lib/.
//
// Loaded with the package: the addon and the error classes (lib/native.js),
// the options (lib/options.js) and what every acquire needs (lib/locks.js,
// lib/context.js, lib/leases.js): each module file costs about 0.25 ms to
// load on a 2-core VM (resolution, read, compile), so these are few. Loaded
// on first use: the process hooks (lib/shutdown.js, on the first acquire or
// tracked session), session tracking (lib/sessions.js) and the inspection of
// lock files (lib/stale-locks.js). Loaded only when a database backend is
// configured: lib/backend.js and the PostgreSQL addon (docs/postgres.md).
// Those four keep per-copy state, so they are factories: this file makes
// this copy's instance of each, and a require cache that hands it another
// copy's module file (a cleared cache, jest) still gives it its own state.

const errors = require('./native')
const locks = require('./locks')
const leases = require('./leases')
const options = require('./options')

const { native, osError } = errors

let hooks = null
let ensureHooks = null
let sessionsInstance = null
let staleLocksInstance = null

/** The process hooks (loaded, not installed: ensureHooks() installs them). */
function shutdownHooks() {
  if (hooks === null) {
    hooks = require('./shutdown')
    ensureHooks = hooks.createShutdownHooks({
      isMainThread: () => (typeof native.isMainThread === 'function' ? native.isMainThread() : null),
      releaseAllSync: locks.releaseAllSync,
      sessions: () => sessionsInstance,
    })
  }
  return hooks
}

function ensureHooksOnFirstUse() {
  if (ensureHooks === null) shutdownHooks()
  ensureHooks()
}

function sessions() {
  if (sessionsInstance === null) {
    sessionsInstance = require('./sessions').createSessions({
      native,
      osError,
      ensureHooks: ensureHooksOnFirstUse,
      repairHooks: () => shutdownHooks().repairHooks(),
    })
  }
  return sessionsInstance
}

function staleLocks() {
  if (staleLocksInstance === null) staleLocksInstance = require('./stale-locks').createStaleLocks({ native })
  return staleLocksInstance
}

locks.setFirstUseHook(ensureHooksOnFirstUse)

// ---------------------------------------------------------------- backend
// The database backend (lib/backend.js, docs/postgres.md) wraps acquire and
// release once configured, by configureSessionWriteLock or the environment
// (SESSION_WRITE_LOCK_BACKEND, read once, on first use). Until then, and for
// good when neither names a database, acquire and release are the file
// lock's own behind one check of `fileOnly`, and neither lib/backend.js nor
// the PostgreSQL addon is loaded.

let backendInstance = null // lib/backend.js's instance for this copy, once needed
let fileOnly = false // the environment was read and names no database; nothing configured
let lockTaken = false // a lock was taken while fileOnly (configuring later throws)

const fileAcquire = locks.acquireSessionWriteLock
const fileRelease = locks.release

function createBackendInstance() {
  backendInstance = require('./backend').createBackend({
    loadNative: () => require('../loader').loadPostgres(native),
    errors,
    fileAcquire,
    fileRelease,
    lockTaken,
    envRead: fileOnly,
  })
  fileOnly = false
  return backendInstance
}

/** This copy's backend instance, or null when the file lock alone is in force. */
function backendInForce() {
  if (backendInstance !== null || fileOnly) return backendInstance
  const v = (process.env.SESSION_WRITE_LOCK_BACKEND ?? '').trim()
  if (v === '' || v === 'file') {
    fileOnly = true
    return null
  }
  // The instance reads the environment itself (and reports what is wrong with it).
  return createBackendInstance()
}

function acquireSessionWriteLock(params) {
  if (fileOnly) {
    lockTaken = true
    return fileAcquire(params)
  }
  const b = backendInForce()
  if (b !== null) return b.acquireSessionWriteLock(params)
  lockTaken = true
  return fileAcquire(params)
}

function release(target) {
  return backendInstance === null ? fileRelease(target) : backendInstance.release(target)
}

function configureSessionWriteLock(opts) {
  if (backendInstance === null && !lockTaken && opts !== null && typeof opts === 'object') {
    const b = opts.backend
    if (b === undefined || b === null || (typeof b === 'object' && b.kind === 'file')) {
      // The file lock, as without any configuration: an explicit choice wins
      // over the environment, and nothing more is loaded.
      fileOnly = true
      return { kind: 'file' }
    }
  }
  // A database, or something to report (bad options, too late): the backend's own rules.
  return (backendInstance ?? createBackendInstance()).configureSessionWriteLock(opts)
}

function inspectSessionWriteLockBackend() {
  const b = backendInForce()
  return b === null ? Promise.resolve(null) : b.inspectDatabase()
}

const __testing = {
  get cleanupSignals() {
    return shutdownHooks().cleanupSignals.slice()
  },
  handleTerminationSignal: (signal) => shutdownHooks().handleTerminationSignal(signal),
  releaseAllLocksSync() {
    locks.releaseAllSync()
  },
  runLockWatchdogCheck(nowMs) {
    return Promise.resolve(leases.runWatchdog(typeof nowMs === 'number' ? nowMs : Date.now()))
  },
  /** PID-reuse seam: report `startTime` (null = unknown) as the start time of `pid`. */
  setStartTimeOverride(pid, startTime) {
    native.setStartTimeOverride(pid, startTime ?? null, false)
  },
  clearStartTimeOverrides() {
    native.setStartTimeOverride(0, null, true)
  },
  registryCounts() {
    return native.registryCounts()
  },
  identity() {
    return native.selfIdentity()
  },
  panicForTest() {
    native.panicForTest()
  },
  /** Later-generation seam: `fn(pid)` gives start times (null restores the real ones). */
  setProcessStartTimeResolverForTest: (fn) => staleLocks().setProcessStartTimeResolverForTest(fn),
  /** The old-format rules applied to a parsed payload (no file, no mtime grace). */
  inspectLockPayloadForTest: (payload, staleMs, nowMs) => staleLocks().inspectLockPayloadForTest(payload, staleMs, nowMs),
  /** The database backend's connections and holds (null without a backend). */
  backendStats: () => (backendInstance === null ? null : backendInstance.backendStats()),
}

async function drainSessionWriteLockStateForTest() {
  if (sessionsInstance !== null) await sessionsInstance.drainForTest()
  locks.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  if (sessionsInstance !== null) sessionsInstance.resetForTest()
  else shutdownHooks().repairHooks()
  if (staleLocksInstance !== null) staleLocksInstance.resetForTest()
  locks.resetLockStateForTest()
  if (backendInstance !== null) backendInstance.resetForTest()
  fileOnly = false
  lockTaken = false
}

module.exports = {
  acquireSessionWriteLock,
  release,
  configureSessionWriteLock,
  inspectSessionWriteLockBackend,
  releaseAll: locks.releaseAll,
  releaseAllSync: locks.releaseAllSync,
  listHeldLocks: locks.listHeldLocks,
  SessionWriteLockTimeoutError: errors.SessionWriteLockTimeoutError,
  SessionWriteLockError: errors.SessionWriteLockTimeoutError,
  SessionWriteLockLostError: errors.SessionWriteLockLostError,
  isSessionWriteLockTimeoutError: errors.isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout: options.resolveSessionLockMaxHoldFromTimeout,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: options.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS: options.DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS: options.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionWriteLockAcquireTimeoutMs: options.resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs: options.resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs: options.resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions: options.resolveSessionWriteLockOptions,
  cleanStaleLockFiles: (params) => staleLocks().cleanStaleLockFiles(params),
  inspectLockFile: (...args) => staleLocks().inspectLockFile(...args),
  onSessionEnd: (handler) => sessions().onSessionEnd(handler),
  trackActiveSession: (s) => sessions().trackActiveSession(s),
  listActiveSessions: () => sessions().listActiveSessions(),
  drainActiveSessions: (o) => sessions().drainActiveSessions(o),
  recoverOrphanedSessions: (o) => sessions().recoverOrphanedSessions(o),
  findOrphanedSessions: (o) => sessions().findOrphanedSessions(o),
  readSessionMarker: (markerPath) => require('./markers').readSessionMarker(markerPath),
  __testing,
  testing: __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
}
