// ESM entry: the same single instance as the CommonJS entry.
import cjs from './index.js'

export const {
  acquireSessionWriteLock,
  configureSessionWriteLock,
  inspectSessionWriteLockBackend,
  release,
  releaseAll,
  releaseAllSync,
  listHeldLocks,
  SessionWriteLockTimeoutError,
  SessionWriteLockError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions,
  cleanStaleLockFiles,
  inspectLockFile,
  onSessionEnd,
  trackActiveSession,
  listActiveSessions,
  drainActiveSessions,
  recoverOrphanedSessions,
  findOrphanedSessions,
  readSessionMarker,
  __testing,
  testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
} = cjs

export default cjs
