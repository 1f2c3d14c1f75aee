// ESM entry: the same single instance as the CommonJS entry.
import cjs from './index.js'

export const {
  acquireSessionWriteLock,
  release,
  releaseAll,
  releaseAllSync,
  listHeldLocks,
  SessionWriteLockTimeoutError,
  SessionWriteLockError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout,
  cleanStaleLockFiles,
  inspectLockFile,
  onSessionEnd,
  trackActiveSession,
  listActiveSessions,
  drainActiveSessions,
  recoverOrphanedSessions,
  __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
} = cjs

export default cjs
