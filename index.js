'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// docs/spec.md for the API; index.d.ts for the types.

const lock = require('./lib/lock')
const clean = require('./lib/clean')
const sessions = require('./lib/sessions')
const shutdown = require('./lib/shutdown')

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
}

async function drainSessionWriteLockStateForTest() {
  await sessions.drainForTest()
  lock.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  sessions.resetForTest()
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
  cleanStaleLockFiles: clean.cleanStaleLockFiles,
  inspectLockFile: clean.inspectLockFile,
  onSessionEnd: sessions.onSessionEnd,
  trackActiveSession: sessions.trackActiveSession,
  listActiveSessions: sessions.listActiveSessions,
  drainActiveSessions: sessions.drainActiveSessions,
  recoverOrphanedSessions: sessions.recoverOrphanedSessions,
  __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
}
