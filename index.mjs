// ESM entry: the same single instance as the CommonJS entry. Loaded through
// require rather than `import cjs from './index.js'`: importing a CommonJS
// file makes Node load and run its CommonJS export lexer over the file, which
// costs a fresh process more than the whole package (callgrind: 17M
// instructions of the 84M an import of this file took).
import { createRequire } from 'node:module'

const cjs = createRequire(import.meta.url)('./index.js')

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
