'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// ../shared/CONTRACT.md for the API; index.d.ts for the types.

const lock = require('./lib/lock')

const sessionsModule = require('./lib/sessions')
const shutdownModule = require('./lib/shutdown')

// Sessions and the process hooks keep per-copy state, so they load with this
// copy (a later require could return another copy's module from the require
// cache). Cleanup is stateless and needed by few calls: it loads on first use.
const lazy = (load) => {
  let m = null
  return () => (m ??= load())
}
const clean = lazy(() => require('./lib/clean'))
const sessions = () => sessionsModule
const shutdown = () => shutdownModule

lock.setFirstUseHook(shutdownModule.ensureHooksOnFirstUse)

const __testing = {
  get cleanupSignals() {
    return shutdown().cleanupSignals.slice()
  },
  handleTerminationSignal: (signal) => shutdown().handleTerminationSignal(signal),
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
  await sessions().drainForTest()
  lock.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  sessions().resetForTest()
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
  cleanStaleLockFiles: (params) => clean().cleanStaleLockFiles(params),
  inspectLockFile: (...args) => clean().inspectLockFile(...args),
  onSessionEnd: (handler) => sessions().onSessionEnd(handler),
  trackActiveSession: (s) => sessions().trackActiveSession(s),
  listActiveSessions: () => sessions().listActiveSessions(),
  drainActiveSessions: (o) => sessions().drainActiveSessions(o),
  recoverOrphanedSessions: (o) => sessions().recoverOrphanedSessions(o),
  __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
}
