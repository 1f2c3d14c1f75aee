/// <reference types="node" />
// Types of session-write-lock (docs/spec.md, "The API"): a drop-in for
// OpenClaw's src/agents/session-write-lock.ts of both generations (2026.4.x and
// the later 2026.5.x surface, see docs/migration.md), plus a few extras marked below.
// They use Node's types (AbortSignal, Symbol.asyncDispose, NodeJS.ProcessEnv):
// TypeScript consumers need @types/node, an optional peer dependency.

export interface AcquireSessionWriteLockParams {
  /** The session transcript (`.jsonl`); the lock is `<realpath(dir)>/<basename>.lock`. */
  sessionFile: string
  /** Default 10_000; `Infinity` waits forever; 0, negative, NaN, non-numbers take the default. */
  timeoutMs?: number
  /** Default 1_800_000. Only judges lock files written by the old TypeScript module. */
  staleMs?: number
  /** Default 300_000: the watchdog force-releases a lock held longer. `Infinity` disables it. */
  maxHoldMs?: number
  /** Reenter a lock this Node environment holds when the holder has no `reentrantOwner`. */
  allowReentrant?: boolean
  /** Logical owner: reentry only for the same owner (within this Node environment). */
  reentrantOwner?: string
  /** Abort a pending acquire: rejects with `signal.reason` (or an AbortError), leaves nothing behind. */
  signal?: AbortSignal
}

export interface SessionWriteLockLease {
  /** Never rejects; idempotent. */
  release(): Promise<void>
  /** Normalized, ends in ".lock". */
  readonly lockPath: string
  /** Unique per OS-level acquisition; a reentrant lease shares the holder's token. */
  readonly fencingToken: string
  /** Throws SessionWriteLockLostError if this lease no longer holds the lock. */
  assertOwned(): void
  /** Like assertOwned, and also checks the file on disk (deleted, replaced, token changed). */
  assertCurrent(): Promise<void>
  /** Aborted when the lease is lost (watchdog, release). */
  readonly signal: AbortSignal
  [Symbol.asyncDispose](): Promise<void>
  /** With the PostgreSQL backend: the session's key in the database (`<keyspace>/<relative path>`). */
  readonly databaseKey?: string
}

/** The PostgreSQL backend (docs/postgres.md). */
export interface PostgresBackendOptions {
  kind: 'postgres'
  /** `postgres://user:password@host:port/db?...` (the password never appears in errors or logs). */
  connectionString: string
  /** First component of every key; default "openclaw". */
  keyspace?: string
  /** Keys are paths relative to this; default OPENCLAW_STATE_DIR or ~/.openclaw. */
  sessionsRoot?: string
  /** Waiting connections, 1-64; default 2 (plus one holding connection). */
  poolSize?: number
  /** Schema of the table, sequence and functions; default "session_write_lock". */
  schema?: string
}

export type SessionWriteLockBackendInfo =
  | { kind: 'file' }
  | { kind: 'postgres'; server: string; keyspace: string; sessionsRoot: string; poolSize: number; schema: string }

/**
 * Choose the backend before the first lock is taken (throws
 * `SESSION_WRITE_LOCK_CONFIGURED_TOO_LATE` after). `{ backend: null }` or
 * `{ kind: "file" }`: the file lock alone (the default). The environment
 * `SESSION_WRITE_LOCK_BACKEND=postgres://...` (+ `_KEYSPACE`, `_SESSIONS_ROOT`)
 * does the same when this is not called.
 */
export declare function configureSessionWriteLock(options: {
  backend: PostgresBackendOptions | { kind: 'file' } | null
}): SessionWriteLockBackendInfo

export interface SessionWriteLockBackendRow {
  key: string
  fencingToken: string
  pid: number
  hostname: string
  bootId?: string | null
  acquiredAt: string
  maxHoldMs?: number | null
  /** The server process of the connection holding or waiting. */
  backendPid: number
  /** true: the holder; false: a connection queued on the lock. */
  granted: boolean
  clientAddr?: string | null
}

/** Holders and queued waiters from the database; null when no backend is configured. */
export declare function inspectSessionWriteLockBackend(): Promise<{
  backend: SessionWriteLockBackendInfo
  rows: SessionWriteLockBackendRow[]
} | null>

export declare function acquireSessionWriteLock(
  params: AcquireSessionWriteLockParams,
): Promise<SessionWriteLockLease>

/** Drop this environment's hold (every reentrant level); true if this call dropped a hold. */
export declare function release(target: string | SessionWriteLockLease): Promise<boolean>
/** Release every lock held by this Node environment (thread); resolves to the number of lock files. */
export declare function releaseAll(): Promise<number>
export declare function releaseAllSync(): number

/** Extra: the locks this process holds (all threads). */
export interface HeldLockInfo {
  lockPath: string
  acquiredAt: string
  maxHoldMs: number
  reentrantCount: number
  owner: string | null
  fencingToken: string
  sameThread: boolean
}
export declare function listHeldLocks(): HeldLockInfo[]

export interface SessionWriteLockHolder {
  pid: number
  inProcess: boolean
  acquiredAt: string | null
  lockPath: string
}

export declare class SessionWriteLockTimeoutError extends Error {
  constructor(params: {
    timeoutMs: number
    lockPath: string
    owner: string
    holder?: SessionWriteLockHolder | null
    hint?: string | null
  })
  readonly name: 'SessionWriteLockTimeoutError' | string
  readonly reason: 'session_busy'
  readonly code: 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT'
  readonly timeoutMs: number
  readonly lockPath: string
  /** "pid=<n>" or "unknown". */
  readonly owner: string
  /** Extra diagnostics (not in the message). */
  readonly holder: SessionWriteLockHolder | null
  /**
   * Extra: set when the holder is this very process (`holder.inProcess`): a
   * nested acquire without `allowReentrant` waits like any other contender.
   * Names `allowReentrant` / `reentrantOwner`. Never part of the message.
   */
  readonly hint: string | null
}
export { SessionWriteLockTimeoutError as SessionWriteLockError }

export declare class SessionWriteLockLostError extends Error {
  constructor(lockPath: string, why: string)
  readonly code: 'OPENCLAW_SESSION_WRITE_LOCK_LOST'
  readonly lockPath: string
  readonly why: string
}

export declare function isSessionWriteLockTimeoutError(err: unknown): boolean

export type SessionLockInspection = {
  lockPath: string
  pid: number | null
  pidAlive: boolean
  createdAt: string | null
  ageMs: number | null
  stale: boolean
  staleReasons: string[]
  removed: boolean
  /** An OS lock is held on it right now. */
  held: boolean
  /**
   * When the current hold began (ISO 8601), for a file written by this package
   * (`"lock": "os"`) whose OS lock is held: the file's modification time, which
   * the holder keeps at the hold's start while it refreshes `createdAt` (a hold
   * longer than `REFRESH_MS`, 20 s by default, has a recent `createdAt`). `null`
   * when the file is not held or is an old-module file (whose `createdAt` is its
   * start). Optional in the type for objects built by hand; the package always
   * sets it.
   */
  heldSince?: string | null
}

/** An environment to read overrides from (`process.env` fits). */
export type SessionWriteLockEnv = { [name: string]: string | undefined }

/**
 * Reads a pid's command line (argv), or null when unknown. An unknown or
 * empty command line never makes a file stale.
 */
export type ReadOwnerProcessArgs = (pid: number) => string[] | null

/**
 * An entry of `cleanStaleLockFiles`: the inspection, plus `removeError` (the
 * error code, e.g. "EACCES") when a stale file could not be removed.
 */
export type SessionLockCleanEntry = SessionLockInspection & { removeError?: string }

export declare function cleanStaleLockFiles(params: {
  sessionsDir: string
  /** Explicit wins; else the environment, then `config.session.writeLock.staleMs`, then 1_800_000. */
  staleMs?: number
  removeStale?: boolean
  nowMs?: number
  /**
   * `warn`: each stale lock removed (`removed stale session lock: <path> (<reasons>)`)
   * or that could not be. `info`: each stray temporary file of a killed create or
   * rewrite removed (`removed stray lock temp file: <path>`; such files are never
   * entries of `locks` or `cleaned`).
   */
  log?: { warn?: (message: string) => void; info?: (message: string) => void }
  config?: SessionWriteLockConfig
  /** Where the environment overrides are read; default `process.env`. */
  env?: SessionWriteLockEnv
  /**
   * For `non-openclaw-owner` (old-format files only). Default: /proc/<pid>/cmdline
   * on Linux, null elsewhere and for this process itself.
   */
  readOwnerProcessArgs?: ReadOwnerProcessArgs
}): Promise<{ locks: SessionLockCleanEntry[]; cleaned: SessionLockCleanEntry[] }>

/** Extra: inspect one lock file by the rules of cleanStaleLockFiles (removal only when `remove`). */
export declare function inspectLockFile(
  lockPath: string,
  options?: {
    nowMs?: number
    staleMs?: number
    remove?: boolean
    config?: SessionWriteLockConfig
    env?: SessionWriteLockEnv
    readOwnerProcessArgs?: ReadOwnerProcessArgs
  },
): SessionLockCleanEntry & {
  kind: 'os' | 'legacy'
  hostname: string | null
  maxHoldMs: number | null
  error: { code: string; errno: number; syscall: string; path: string; message: string } | null
}

export declare function resolveSessionLockMaxHoldFromTimeout(params: {
  timeoutMs: number
  graceMs?: number
  minMs?: number
}): number

// ---- the later generation's surface (openclaw 2026.5.x) --------------------

export declare const DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: 60_000
export declare const DEFAULT_SESSION_WRITE_LOCK_STALE_MS: 1_800_000
export declare const DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS: 300_000

export type SessionWriteLockConfig = {
  session?: { writeLock?: { acquireTimeoutMs?: number; staleMs?: number; maxHoldMs?: number } }
}
/** The later generation's name for the same type. */
export type SessionWriteLockAcquireTimeoutConfig = SessionWriteLockConfig

/**
 * `OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS` (digits, trimmed, or "Infinity")
 * wins, then `config.session.writeLock.acquireTimeoutMs` (positive, or Infinity),
 * then 60_000. Note: `acquireSessionWriteLock`'s own default stays 10_000; pass
 * this result as `timeoutMs` to keep the later generation's 60 s.
 */
export declare function resolveSessionWriteLockAcquireTimeoutMs(
  config?: SessionWriteLockConfig,
  env?: SessionWriteLockEnv,
): number
/** `OPENCLAW_SESSION_WRITE_LOCK_STALE_MS` (digits), then config, then 1_800_000. */
export declare function resolveSessionWriteLockStaleMs(config?: SessionWriteLockConfig, env?: SessionWriteLockEnv): number
/** `OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS` (digits), then config, then `fallback` or 300_000. */
export declare function resolveSessionWriteLockMaxHoldMs(
  config?: SessionWriteLockConfig,
  params?: { env?: SessionWriteLockEnv; fallback?: number },
): number
export declare function resolveSessionWriteLockOptions(
  config?: SessionWriteLockConfig,
  params?: { env?: SessionWriteLockEnv; maxHoldMsFallback?: number },
): { timeoutMs: number; staleMs: number; maxHoldMs: number }

/** What `inspectLockPayloadForTest` reports. */
export type SessionLockPayloadInspection = {
  pid: number | null
  pidAlive: boolean
  createdAt: string | null
  ageMs: number | null
  stale: boolean
  staleReasons: string[]
}

export type SessionEndReason =
  | 'new'
  | 'reset'
  | 'idle'
  | 'daily'
  | 'compaction'
  | 'deleted'
  | 'shutdown'
  | 'restart'
  | 'unknown'

export type SessionEndEvent = {
  sessionId: string
  sessionKey?: string
  messageCount: number
  durationMs?: number
  reason?: SessionEndReason
  sessionFile?: string
  recovered?: { pid: number; hostname: string; startedAt: string }
}

export type SessionContext = { agentId?: string; sessionId: string; sessionKey?: string }

export declare function onSessionEnd(
  handler: (event: SessionEndEvent, ctx: SessionContext) => void | Promise<void>,
): () => void

export interface ActiveSession {
  readonly sessionId: string
  update(p: { messageCount?: number }): void
  /** Emits session_end once, then forgets the session. */
  end(reason?: SessionEndReason): Promise<void>
  /** Forgets the session without an event. */
  forget(): void
}

export declare function trackActiveSession(s: {
  sessionId: string
  sessionKey?: string
  agentId?: string
  sessionFile?: string
  messageCount?: number
}): ActiveSession

export declare function listActiveSessions(): Array<
  SessionContext & { sessionFile?: string; startedAt: string }
>

export declare function drainActiveSessions(o?: {
  reason?: 'shutdown' | 'restart'
  totalTimeoutMs?: number
}): Promise<{ emittedSessionIds: string[]; timedOut: boolean }>

export declare function recoverOrphanedSessions(o: {
  sessionsDir: string
}): Promise<{ recovered: SessionEndEvent[] }>

/**
 * Extra: the orphaned markers `recoverOrphanedSessions` would recover (their
 * OS lock is free: the owner died), each with the event it would emit. Nothing
 * is emitted and nothing removed; markers of live sessions and files that are
 * not session markers are not listed. Throws the scan's fs error (`code`,
 * `syscall`, `path`); a missing directory lists nothing. (The CLI's
 * `clean --dry-run` and `inspect` use it.)
 */
export declare function findOrphanedSessions(o: {
  sessionsDir: string
}): Array<{ markerPath: string; event: SessionEndEvent }>

/** The fields of an active-session marker (`<sessionFile>.active`) that have the format's types. */
export type SessionMarker = {
  sessionId?: string
  sessionKey?: string
  agentId?: string
  sessionFile?: string
  messageCount?: number
  startedAt?: string
  pid?: number
  starttime?: number
  hostname?: string
  bootId?: string
  /** "os" in every marker this package writes. */
  lock?: string
}

/**
 * Extra: read a marker without taking its lock: at most 64 KiB, never following
 * a symlink, never blocking on a FIFO. null when no readable regular file is
 * there or its content is not a JSON object of at most 64 KiB. Says nothing
 * about whether its owner lives (that is the marker's OS lock:
 * `inspectLockFile(markerPath).held`). (The CLI's `inspect` uses it.)
 */
export declare function readSessionMarker(markerPath: string): SessionMarker | null

export declare const __testing: {
  readonly cleanupSignals: string[]
  handleTerminationSignal(signal: string): void
  releaseAllLocksSync(): void
  runLockWatchdogCheck(nowMs?: number): Promise<number>
  /** PID-reuse seam: report `startTime` (null = unknown) as the start time of `pid`. */
  setStartTimeOverride(pid: number, startTime: number | null): void
  clearStartTimeOverrides(): void
  registryCounts(): { keys: number; holders: number; waiters: number }
  /** JS-thread loop watchers running and locks obtained through them (Linux; zeros elsewhere), OS attempts made for contended keys by the waiting machinery (the acquire's own first attempt excluded), wake-ups sent to contexts through their thread-safe functions, and grants handed to a context as numbers and a token rather than as objects. */
  loopWaitCounts(): { watchers: number; obtained: number; attempts: number; wakes: number; numbered: number }
  /** Contexts (copies of the package, in any thread) registered and not torn down yet, and those of them that registered an out array (zeros with an older shared addon). */
  contextCounts(): { contexts: number; outArrays: number }
  identity(): { pid: number; starttime?: number | null; bootId?: string | null; hostname: string }
  panicForTest(): void
  /**
   * `fn(pid)` gives the start time to use for `pid` (null = unknown); null
   * restores the real ones. Applied to this process at once and to each pid
   * the clean/inspect functions judge while set (the start-time override seam).
   */
  setProcessStartTimeResolverForTest(fn: ((pid: number) => number | null) | null): void
  /** The old-format rules applied to a parsed payload (no file: no mtime grace, nothing held). */
  inspectLockPayloadForTest(payload: unknown, staleMs: number, nowMs: number): SessionLockPayloadInspection
  /** The database backend's connections and holds (null without a backend). */
  backendStats(): { epoch: number; connections: number; maxConnections: number; holds: number } | null
}
/** The later generation's name for `__testing`. */
export declare const testing: typeof __testing

export declare function drainSessionWriteLockStateForTest(): Promise<void>
export declare function resetSessionWriteLockStateForTest(): void
