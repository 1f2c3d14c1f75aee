'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// docs/spec.md for the API, docs/migration.md for both upstream generations;
// index.d.ts for the types.

const lock = require('./lib/lock')
const options = require('./lib/options')
// Sessions and the process hooks keep per-copy state, so they load with this
// copy (a later require could return another copy's module from the require
// cache). Cleanup is needed by few calls: it loads on first use.
const sessions = require('./lib/sessions')
const shutdown = require('./lib/shutdown')
// The optional database backend (docs/postgres.md) wraps acquire and release.
const backend = require('./lib/backend')

let cleanModule = null
const clean = () => (cleanModule ??= require('./lib/clean'))

lock.setFirstUseHook(shutdown.ensureHooksOnFirstUse)

const __testing = {
  get cleanupSignals() {
    return shutdown.cleanupSignals.slice()
  },
  handleTerminationSignal: (signal) => shutdown.handleTerminationSignal(signal),
  releaseAllLocksSync() {
    lock.releaseAllSync()
  },
  runLockWatchdogCheck(nowMs) {
    return Promise.resolve(lock.runWatchdog(typeof nowMs === 'number' ? nowMs : Date.now()))
  },
  /** PID-reuse seam: report `startTime` (null = unknown) as the start time of `pid`. */
  setStartTimeOverride(pid, startTime) {
    lock.native.setStartTimeOverride(pid, startTime ?? null, false)
  },
  clearStartTimeOverrides() {
    lock.native.setStartTimeOverride(0, null, true)
  },
  registryCounts() {
    return lock.native.registryCounts()
  },
  identity() {
    return lock.native.selfIdentity()
  },
  panicForTest() {
    lock.native.panicForTest()
  },
  /** Later-generation seam: `fn(pid)` gives start times (null restores the real ones). */
  setProcessStartTimeResolverForTest: (fn) => clean().setProcessStartTimeResolverForTest(fn),
  /** The old-format rules applied to a parsed payload (no file, no mtime grace). */
  inspectLockPayloadForTest: (payload, staleMs, nowMs) => clean().inspectLockPayloadForTest(payload, staleMs, nowMs),
  /** The database backend's connections and holds (null without a backend). */
  backendStats: () => backend.backendStats(),
}

async function drainSessionWriteLockStateForTest() {
  await sessions.drainForTest()
  lock.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  sessions.resetForTest()
  if (cleanModule !== null) cleanModule.resetForTest()
  lock.resetLockStateForTest()
  backend.resetForTest()
}

module.exports = {
  acquireSessionWriteLock: backend.acquireSessionWriteLock,
  release: backend.release,
  configureSessionWriteLock: backend.configureSessionWriteLock,
  inspectSessionWriteLockBackend: backend.inspectDatabase,
  releaseAll: lock.releaseAll,
  releaseAllSync: lock.releaseAllSync,
  listHeldLocks: lock.listHeldLocks,
  SessionWriteLockTimeoutError: lock.SessionWriteLockTimeoutError,
  SessionWriteLockError: lock.SessionWriteLockTimeoutError,
  SessionWriteLockLostError: lock.SessionWriteLockLostError,
  isSessionWriteLockTimeoutError: lock.isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout: lock.resolveSessionLockMaxHoldFromTimeout,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: options.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS: options.DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS: options.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionWriteLockAcquireTimeoutMs: options.resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs: options.resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs: options.resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions: options.resolveSessionWriteLockOptions,
  cleanStaleLockFiles: (params) => clean().cleanStaleLockFiles(params),
  inspectLockFile: (...args) => clean().inspectLockFile(...args),
  onSessionEnd: sessions.onSessionEnd,
  trackActiveSession: sessions.trackActiveSession,
  listActiveSessions: sessions.listActiveSessions,
  drainActiveSessions: sessions.drainActiveSessions,
  recoverOrphanedSessions: sessions.recoverOrphanedSessions,
  __testing,
  testing: __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
}
