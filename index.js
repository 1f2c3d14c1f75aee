'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// docs/migration.md for the API; index.d.ts for the types.

const lock = require('./lib/lock')
const clean = require('./lib/clean')
const sessions = require('./lib/sessions')
const shutdown = require('./lib/shutdown')
const options = require('./lib/options')

lock.setFirstUseHook(shutdown.ensureHooksOnFirstUse)

const __testing = {
  get cleanupSignals() {
    return shutdown.cleanupSignals.slice()
  },
  handleTerminationSignal: shutdown.handleTerminationSignal,
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
  setProcessStartTimeResolverForTest: clean.setProcessStartTimeResolverForTest,
  /** The old-format rules applied to a parsed payload (no file, no mtime grace). */
  inspectLockPayloadForTest: clean.inspectLockPayloadForTest,
}

async function drainSessionWriteLockStateForTest() {
  await sessions.drainForTest()
  lock.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  sessions.resetForTest()
  clean.resetForTest()
  lock.resetLockStateForTest()
}

module.exports = {
  acquireSessionWriteLock: lock.acquireSessionWriteLock,
  release: lock.release,
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
  cleanStaleLockFiles: clean.cleanStaleLockFiles,
  inspectLockFile: clean.inspectLockFile,
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
