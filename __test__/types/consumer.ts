// Type-checked (tsc --noEmit) consumer: uses every export the old module had
// and the new ones, the way the gateway does.
import {
  acquireSessionWriteLock,
  release,
  releaseAll,
  releaseAllSync,
  SessionWriteLockTimeoutError,
  SessionWriteLockError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  cleanStaleLockFiles,
  resolveSessionLockMaxHoldFromTimeout,
  onSessionEnd,
  trackActiveSession,
  listActiveSessions,
  drainActiveSessions,
  recoverOrphanedSessions,
  findOrphanedSessions,
  readSessionMarker,
  type SessionMarker,
  __testing,
  testing as laterTesting,
  inspectLockFile,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions,
  type SessionWriteLockConfig,
  type SessionWriteLockAcquireTimeoutConfig,
  type SessionLockCleanEntry,
  type SessionLockPayloadInspection,
  type ReadOwnerProcessArgs,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
  type SessionWriteLockLease,
  type SessionLockInspection,
  type SessionEndEvent,
  type SessionContext,
  type ActiveSession,
} from '../../index.js'

export async function gatewayTurn(sessionFile: string, signal: AbortSignal): Promise<number> {
  const maxHoldMs: number = resolveSessionLockMaxHoldFromTimeout({ timeoutMs: 600_000 })
  let lease: SessionWriteLockLease
  try {
    lease = await acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000, maxHoldMs, signal })
  } catch (err) {
    if (isSessionWriteLockTimeoutError(err) && err instanceof SessionWriteLockTimeoutError) {
      const owner: string = err.owner
      const why: 'session_busy' = err.reason
      return owner.length + why.length + err.timeoutMs
    }
    if (err instanceof SessionWriteLockError || err instanceof SessionWriteLockLostError) return -1
    throw err
  }
  lease.assertOwned()
  await lease.assertCurrent()
  const token: string = lease.fencingToken
  const path: string = lease.lockPath
  lease.signal.addEventListener('abort', () => {})
  await lease.release()
  await lease[Symbol.asyncDispose]()
  const dropped: boolean = await release(sessionFile)
  const all: number = await releaseAll()
  const allSync: number = releaseAllSync()
  return token.length + path.length + Number(dropped) + all + allSync
}

export async function sweep(dir: string): Promise<SessionLockInspection[]> {
  const { locks, cleaned } = await cleanStaleLockFiles({
    sessionsDir: dir,
    staleMs: 1000,
    removeStale: false,
    nowMs: Date.now(),
    log: { warn: (m: string) => void m, info: (m: string) => void m },
  })
  const held: boolean[] = locks.map((l) => l.held)
  // The real start of a hold whose createdAt is refreshed.
  const since: Array<string | null | undefined> = locks.map((l) => l.heldSince)
  const heldForMs: number[] = since.map((s) => (s == null ? 0 : Date.now() - Date.parse(s)))
  void heldForMs
  return cleaned.concat(locks.filter((_, i) => held[i]))
}

export async function sessions(dir: string): Promise<void> {
  const off: () => void = onSessionEnd(async (e: SessionEndEvent, c: SessionContext) => {
    void e.sessionId
    void e.messageCount
    void e.recovered?.pid
    void c.agentId
  })
  const s: ActiveSession = trackActiveSession({ sessionId: 'a', sessionFile: `${dir}/a.jsonl` })
  s.update({ messageCount: 3 })
  listActiveSessions().forEach((x) => void x.startedAt)
  await s.end('reset')
  s.forget()
  const r = await drainActiveSessions({ reason: 'restart', totalTimeoutMs: 100 })
  const ids: string[] = r.emittedSessionIds
  const rec = await recoverOrphanedSessions({ sessionsDir: dir })
  void rec.recovered.length
  for (const o of findOrphanedSessions({ sessionsDir: dir })) {
    const e: SessionEndEvent = o.event
    const m: SessionMarker | null = readSessionMarker(o.markerPath)
    void e, void m?.sessionId
  }
  void ids
  off()
}

export async function testing(): Promise<void> {
  const sigs: string[] = __testing.cleanupSignals
  __testing.handleTerminationSignal(sigs[0])
  __testing.releaseAllLocksSync()
  const n: number = await __testing.runLockWatchdogCheck(Date.now())
  void n
  await drainSessionWriteLockStateForTest()
  resetSessionWriteLockStateForTest()
}

// The later generation's surface (openclaw 2026.5.x), as its gateway uses it.
export async function laterGeneration(sessionFile: string, sessionsDir: string): Promise<number> {
  const config: SessionWriteLockConfig = { session: { writeLock: { acquireTimeoutMs: 90_000, staleMs: 45_000 } } }
  const same: SessionWriteLockAcquireTimeoutConfig = config
  const timeoutMs: number = resolveSessionWriteLockAcquireTimeoutMs(same)
  const envOnly: number = resolveSessionWriteLockAcquireTimeoutMs(undefined, process.env)
  const staleMs: number = resolveSessionWriteLockStaleMs(config, { OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: '60000' })
  const maxHoldMs: number = resolveSessionWriteLockMaxHoldMs(config, { env: process.env, fallback: 600_000 })
  const opts: { timeoutMs: number; staleMs: number; maxHoldMs: number } = resolveSessionWriteLockOptions(config, {
    env: process.env,
    maxHoldMsFallback: resolveSessionLockMaxHoldFromTimeout({ timeoutMs }),
  })
  const defaults: [60_000, 1_800_000, 300_000] = [
    DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
    DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
    DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  ]
  try {
    const lease = await acquireSessionWriteLock({ sessionFile, ...opts })
    await lease.release()
  } catch (err) {
    if (err instanceof SessionWriteLockTimeoutError) {
      const hint: string | null = err.hint
      const inProcess: boolean | undefined = err.holder?.inProcess
      void hint
      void inProcess
    }
  }
  const reader: ReadOwnerProcessArgs = (pid: number) => (pid > 0 ? ['node', 'openclaw.mjs', 'gateway'] : null)
  const swept = await cleanStaleLockFiles({
    sessionsDir,
    config,
    env: process.env,
    removeStale: true,
    readOwnerProcessArgs: reader,
  })
  const first: SessionLockCleanEntry | undefined = swept.locks[0]
  const removeError: string | undefined = first?.removeError
  const one = inspectLockFile(`${sessionsDir}/a.jsonl.lock`, { config, env: {}, readOwnerProcessArgs: () => null })
  laterTesting.setProcessStartTimeResolverForTest((pid: number) => (pid === process.pid ? 12345 : null))
  laterTesting.setProcessStartTimeResolverForTest(null)
  const verdict: SessionLockPayloadInspection = laterTesting.inspectLockPayloadForTest(
    { pid: process.pid, createdAt: new Date().toISOString(), maxHoldMs: 1000 },
    DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
    Date.now(),
  )
  const reasons: string[] = verdict.staleReasons.concat(one.staleReasons)
  const oneSince: string | null | undefined = one.heldSince
  void oneSince
  const same2: typeof __testing = laterTesting
  void same2
  return (
    timeoutMs + envOnly + staleMs + maxHoldMs + defaults.length + reasons.length + (removeError ?? '').length
  )
}

// @ts-expect-error sessionFile is required
void acquireSessionWriteLock({ timeoutMs: 5 })

// The PostgreSQL backend's surface.
import { configureSessionWriteLock, inspectSessionWriteLockBackend } from '../../index.js'
const backendInfo = configureSessionWriteLock({
  backend: { kind: 'postgres', connectionString: 'postgres://u@h/db', keyspace: 'k', poolSize: 2 },
})
if (backendInfo.kind === 'postgres') void backendInfo.server.length
void configureSessionWriteLock({ backend: null })
void inspectSessionWriteLockBackend().then((r) => r?.rows.map((row) => row.granted && row.fencingToken))
// @ts-expect-error kind must be "postgres" or "file"
void configureSessionWriteLock({ backend: { kind: 'mysql', connectionString: 'x' } })
