'use strict'
// The PostgreSQL backend behind the unchanged API (docs/postgres.md).
//
// When a backend is configured (configureSessionWriteLock or the environment
// SESSION_WRITE_LOCK_BACKEND), an acquisition is the file lock first (the
// in-process FIFO queue, reentry, timeout and signal rules, the local
// <session>.lock that same-host tools and old gateways see) and then, for a
// fresh OS-level acquisition, the database lock for the session's key, within
// what is left of timeoutMs. Reentrant levels share the database hold. The
// lease is the file lease's twin with the database's fencing token; it is lost
// (assertOwned throws, signal aborts) when the file lease is (release,
// release(path), releaseAll, watchdog) and when the database connection that
// holds it is lost. Releasing the last level releases the database lock.
//
// Guarantees: no acquisition resolves without the database lock when a
// backend is configured; a backend that cannot be reached or refuses us
// rejects the acquire with a coded error and never falls back to the file
// lock alone; the connection string's password never appears in an error.
// Not guaranteed: anything a paused process does after its lease was lost
// (the fencing token is for that).
//
// Loaded only when a backend is configured (index.js), and a factory: each
// copy of the package makes its own instance (its configuration and holds),
// even when the require cache hands it another copy's module file. The
// PostgreSQL addon it drives is loaded by the instance on first configuration
// (loader.loadPostgres), never with the package.
//
// Longer than the other lib/ files (about 460 lines) on purpose: the
// configuration, the database holds shared by reentrant levels, the lease
// twin and the connection monitor share the one `holds` map and its rules,
// and split apart they would each reach into it.

const os = require('node:os')
// Stateless option parsing: the only module of lib/ taken here; the rest
// (the addon, the error classes, the file lock) comes with the factory's deps.
const options = require('./options')

const LOG_PREFIX = '[session-write-lock]'
const MONITOR_MS = 250
const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

/**
 * This copy's backend. `deps`: `loadNative()` returns the PostgreSQL addon
 * (loader.loadPostgres; called when a postgres backend is first installed,
 * it throws a coded error when the addon is missing); `fileAcquire` and
 * `fileRelease`, the file lock this backend wraps (lib/locks.js);
 * `errors`, this copy's lib/native.js (the error classes the leases throw,
 * abortReason); `lockTaken` and `envRead`, what index.js saw before it made
 * this instance (a lock already taken, the environment already read and empty).
 */
function createBackend(deps) {
  const { loadNative, fileAcquire, fileRelease } = deps
  const { SessionWriteLockTimeoutError, SessionWriteLockLostError, abortReason } = deps.errors
  let native = null // the PostgreSQL addon, loaded by install()
  let configured = null // { server, keyspace, sessionsRoot, poolSize, schema }
  let envRead = deps.envRead === true
  let envError = null
  let lockTaken = deps.lockTaken === true
  let reqSeq = 0

  /** key (normalized session path) -> database hold shared by its reentrant levels */
  const holds = new Map()
  let monitor = null

  function codedError(e, fallbackCode) {
    const err = new Error(e.message)
    err.code = e.code || fallbackCode
    if (e.sqlstate) err.sqlstate = e.sqlstate
    return err
  }

  function configError(message) {
    const err = new TypeError(message)
    err.code = 'SESSION_WRITE_LOCK_BACKEND_CONFIG'
    return err
  }

  function nativeSupportsBackend() {
    return native !== null && typeof native.pgConfigure === 'function'
  }

  function install(backend) {
    if (native === null) native = loadNative()
    if (!nativeSupportsBackend()) {
      throw configError('PostgreSQL backend: the loaded native addon (another copy of the package) lacks the backend')
    }
    const r = native.pgConfigure({
      connectionString: backend.connectionString,
      keyspace: backend.keyspace ?? undefined,
      sessionsRoot: backend.sessionsRoot ?? undefined,
      poolSize: backend.poolSize ?? undefined,
      schema: backend.schema ?? undefined,
      stateDir: process.env.OPENCLAW_STATE_DIR || undefined,
      home: os.homedir(),
    })
    if (r.error != null) throw codedError(r.error, 'SESSION_WRITE_LOCK_BACKEND_CONFIG')
    configured = {
      kind: 'postgres',
      server: r.server,
      keyspace: r.keyspace,
      sessionsRoot: r.sessionsRoot,
      poolSize: r.poolSize,
      schema: r.schema,
    }
  }

  function optionalString(v, name) {
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'string' || v.length === 0) throw configError(`backend.${name} must be a non-empty string`)
    return v
  }

  /**
   * Choose where locks live, before the first lock is taken. `{ backend: null }`
   * (or `{ kind: "file" }`) is the default file lock; `{ backend: { kind:
   * "postgres", connectionString, keyspace?, sessionsRoot?, poolSize?, schema? } }`
   * adds the database lock. Throws once a lock was taken in this process copy.
   * Returns the configuration in force (the server as user@host:port/db).
   */
  function configureSessionWriteLock(options) {
    if (options === null || typeof options !== 'object') {
      throw configError('configureSessionWriteLock expects an options object ({ backend })')
    }
    if (lockTaken) {
      const err = new Error(
        'configureSessionWriteLock: a session lock was already taken in this process; configure the backend before first use',
      )
      err.code = 'SESSION_WRITE_LOCK_CONFIGURED_TOO_LATE'
      throw err
    }
    envRead = true // an explicit configuration wins over the environment
    envError = null
    const b = options.backend
    if (b === undefined || b === null || (typeof b === 'object' && b.kind === 'file')) {
      if (configured !== null && nativeSupportsBackend()) native.pgUnconfigure()
      configured = null
      return describe()
    }
    if (typeof b !== 'object' || b.kind !== 'postgres') {
      throw configError('backend.kind must be "postgres" (or "file")')
    }
    if (typeof b.connectionString !== 'string' || b.connectionString.trim() === '') {
      throw configError('backend.connectionString must be a non-empty string')
    }
    const poolSize = b.poolSize
    if (poolSize !== undefined && poolSize !== null && typeof poolSize !== 'number') {
      throw configError('backend.poolSize must be a number')
    }
    install({
      connectionString: b.connectionString,
      keyspace: optionalString(b.keyspace, 'keyspace'),
      sessionsRoot: optionalString(b.sessionsRoot, 'sessionsRoot'),
      poolSize: poolSize ?? undefined,
      schema: optionalString(b.schema, 'schema'),
    })
    return describe()
  }

  /** The backend in force: { kind: "file" } or the postgres settings (no password). */
  function describe() {
    readEnvOnce()
    return configured === null ? { kind: 'file' } : { ...configured }
  }

  /** SESSION_WRITE_LOCK_BACKEND (+ _KEYSPACE, _SESSIONS_ROOT, _POOL_SIZE, _SCHEMA), read once. */
  function readEnvOnce() {
    if (envRead) return
    envRead = true
    const v = (process.env.SESSION_WRITE_LOCK_BACKEND ?? '').trim()
    if (v === '' || v === 'file') return
    try {
      if (!/^postgres(ql)?:\/\//i.test(v) && !/\bhost=/.test(v)) {
        throw configError(
          'SESSION_WRITE_LOCK_BACKEND must be a postgres:// connection string (or "file"); refusing to fall back to local-only locking',
        )
      }
      const pool = process.env.SESSION_WRITE_LOCK_POOL_SIZE
      install({
        connectionString: v,
        keyspace: process.env.SESSION_WRITE_LOCK_KEYSPACE || undefined,
        sessionsRoot: process.env.SESSION_WRITE_LOCK_SESSIONS_ROOT || undefined,
        poolSize: pool ? Number(pool) : undefined,
        schema: process.env.SESSION_WRITE_LOCK_SCHEMA || undefined,
      })
    } catch (err) {
      // Every acquire rejects with it: never a silent fall back to files only.
      envError = err
    }
  }

  // ---------------------------------------------------------------- leases

  class DatabaseLease {
    #file
    #hold
    #controller = null
    #released = false
    #ref
    constructor(fileLease, hold) {
      this.#file = fileLease
      this.#hold = hold
      this.lockPath = fileLease.lockPath
      this.fencingToken = hold.token
      this.sessionKey = fileLease.sessionKey
      this.acquiredAt = fileLease.acquiredAt
      this.databaseKey = hold.dbKey
      // The local lock file's own token (its payload's fencingToken).
      this.localFencingToken = fileLease.fencingToken
      Object.freeze(this)
      // Weak both ways: the hold and the file lease's abort listener must not
      // keep a dropped lease alive (it is released when collected).
      const ref = new WeakRef(this)
      this.#ref = ref
      hold.leases.add(ref)
      // Whatever ends the file level (release, release(path), releaseAll,
      // the watchdog, a replaced file) ends this level of the database hold.
      const fileSignal = fileLease.signal
      fileSignal.addEventListener(
        'abort',
        () => {
          dropLevel(hold, ref)
          const lease = ref.deref()
          if (lease !== undefined) lease.#ended(fileSignal.reason)
        },
        { once: true },
      )
      gone.register(this, { hold, ref }, this)
    }

    #ended(reason) {
      gone.unregister(this)
      this.#abort(reason)
    }

    #abort(reason) {
      if (this.#controller === null) this.#controller = new AbortController()
      if (!this.#controller.signal.aborted) this.#controller.abort(reason)
    }

    /** Called when the database connection holding this lease was lost. */
    static lose(lease, err) {
      lease.#abort(err)
    }

    /** The file level ended before this lease was made. */
    static endNow(lease) {
      dropLevel(lease.#hold, lease.#ref)
      lease.#ended(lease.#file.signal.reason)
    }

    static releaseWithResult(lease) {
      if (lease.#released) return Promise.resolve(false)
      lease.#released = true
      return fileRelease(lease.#file)
    }

    release() {
      if (this.#released) return Promise.resolve()
      this.#released = true
      return this.#file.release()
    }

    assertOwned() {
      this.#file.assertOwned()
      const why = holdLost(this.#hold)
      if (why !== null) {
        const err = new SessionWriteLockLostError(this.lockPath, why)
        this.#abort(err)
        throw err
      }
    }

    async assertCurrent() {
      this.assertOwned()
      await this.#file.assertCurrent()
      const h = this.#hold
      const r = await native.pgCheck(h.dbKey, h.token, h.epoch)
      if (r.error != null) throw codedError(r.error, 'SESSION_WRITE_LOCK_BACKEND_ERROR')
      if (!r.held) {
        h.lost ??= 'the database no longer records this holder'
        const err = new SessionWriteLockLostError(this.lockPath, h.lost)
        this.#abort(err)
        throw err
      }
    }

    get signal() {
      if (this.#controller === null) {
        this.#controller = new AbortController()
        const why = this.#released ? 'released' : holdLost(this.#hold)
        if (why !== null || this.#file.signal.aborted) {
          this.#controller.abort(new SessionWriteLockLostError(this.lockPath, why ?? 'no longer held'))
        }
      }
      return this.#controller.signal
    }

    [asyncDispose]() {
      return this.release()
    }
  }

  // A lease collected without release: its file level is released by the file
  // lock's own report; the database level goes with it here.
  const gone = new FinalizationRegistry(({ hold, ref }) => dropLevel(hold, ref))

  function holdLost(hold) {
    if (hold.lost !== null) return hold.lost
    if (hold.released) return 'released'
    if (native.pgEpoch() !== hold.epoch) {
      markLost(hold, 'the database connection holding it was lost')
      return hold.lost
    }
    return null
  }

  function dropLevel(hold, ref) {
    if (!hold.leases.delete(ref)) return
    hold.refs--
    if (hold.refs <= 0) releaseHold(hold)
  }

  function releaseHold(hold) {
    if (hold.released) return
    hold.released = true
    if (holds.get(hold.key) === hold) holds.delete(hold.key)
    if (hold.lost === null) native.pgRelease(hold.dbKey, hold.token, hold.epoch)
    if (holds.size === 0) stopMonitor()
  }

  function markLost(hold, why) {
    if (hold.lost !== null) return
    hold.lost = why
    if (holds.get(hold.key) === hold) holds.delete(hold.key)
    const leases = [...hold.leases].map((r) => r.deref()).filter((l) => l !== undefined)
    for (const l of leases) {
      DatabaseLease.lose(l, new SessionWriteLockLostError(l.lockPath, why))
    }
    process.stderr.write(`${LOG_PREFIX} database lock lost (${why}): ${hold.dbKey}\n`)
    // Let same-host waiters go on to contend in the database; a later
    // release() of these leases is a no-op for whoever holds next.
    for (const l of leases) l.release()
  }

  function startMonitor() {
    if (monitor !== null) return
    monitor = setInterval(checkEpochs, MONITOR_MS)
    monitor.unref()
  }

  function stopMonitor() {
    if (monitor === null) return
    clearInterval(monitor)
    monitor = null
  }

  function checkEpochs() {
    const epoch = native.pgEpoch()
    for (const h of [...holds.values()]) {
      if (h.epoch !== epoch) markLost(h, 'the database connection holding it was lost')
    }
    if (holds.size === 0) stopMonitor()
  }

  // ---------------------------------------------------------------- acquire

  function monoMs() {
    return process.uptime() * 1000
  }

  function acquireSessionWriteLock(params) {
    readEnvOnce()
    lockTaken = true
    if (envError !== null) return Promise.reject(envError)
    if (configured === null) return fileAcquire(params)
    return acquireWithDatabase(params)
  }

  async function acquireWithDatabase(params) {
    const started = monoMs()
    const fileLease = await fileAcquire(params)
    const key = fileLease.lockPath.slice(0, -'.lock'.length)
    const existing = holds.get(key)
    if (existing !== undefined && existing.fileToken === fileLease.fencingToken && holdLost(existing) === null) {
      // A reentrant level of a hold this process has: same database lock and token.
      existing.refs++
      return new DatabaseLease(fileLease, existing)
    }
    const timeoutMs = options.resolveTimeoutParam(params.timeoutMs)
    const maxHoldMs = options.resolveMaxHoldParam(params.maxHoldMs)
    const remaining = timeoutMs === Infinity ? -1 : Math.max(0, timeoutMs - (monoMs() - started))
    const dbKey = native.pgKey(key)
    const req = ++reqSeq
    const signal = params.signal
    const onAbort = () => native.pgCancel(req)
    if (signal != null) signal.addEventListener('abort', onAbort, { once: true })
    // An infinite wait keeps the process alive, as the file lock's waits do.
    const keepAlive = timeoutMs === Infinity ? setInterval(() => {}, 2_147_000_000) : null
    let r
    try {
      r = await native.pgAcquire(req, dbKey, maxHoldMs === Infinity ? -1 : maxHoldMs, remaining)
    } finally {
      if (signal != null) signal.removeEventListener('abort', onAbort)
      if (keepAlive !== null) clearInterval(keepAlive)
    }
    if (r.token != null && signal != null && signal.aborted) {
      native.pgRelease(dbKey, r.token, r.epoch)
      r = { cancelled: true }
    }
    if (r.token == null) {
      await fileLease.release()
      if (r.cancelled) throw abortReason(signal)
      if (r.busy) {
        const pid = r.pid ?? null
        throw new SessionWriteLockTimeoutError({
          timeoutMs,
          lockPath: fileLease.lockPath,
          owner: pid != null ? `pid=${pid}` : 'unknown',
          holder: pid != null ? { pid, hostname: r.hostname ?? null, inProcess: false, database: true } : null,
        })
      }
      throw codedError(r.error ?? { message: 'PostgreSQL backend: acquire failed' }, 'SESSION_WRITE_LOCK_BACKEND_ERROR')
    }
    const hold = {
      key,
      dbKey,
      token: r.token,
      epoch: r.epoch,
      fileToken: fileLease.fencingToken,
      refs: 1,
      leases: new Set(),
      lost: null,
      released: false,
    }
    holds.set(key, hold)
    startMonitor()
    const lease = new DatabaseLease(fileLease, hold)
    if (fileLease.signal.aborted) DatabaseLease.endNow(lease)
    return lease
  }

  function release(target) {
    if (target instanceof DatabaseLease) return DatabaseLease.releaseWithResult(target)
    return fileRelease(target)
  }

  /** Every database holder and queued session, or null when no backend is configured. */
  async function inspectDatabase() {
    readEnvOnce()
    if (envError !== null) throw envError
    if (configured === null) return null
    const r = await native.pgInspect()
    if (r.error != null) throw codedError(r.error, 'SESSION_WRITE_LOCK_BACKEND_ERROR')
    return { backend: { ...configured }, rows: r.rows }
  }

  /** Connections and holds of the backend (null when not configured). */
  function backendStats() {
    if (configured === null) return null
    return native.pgStats()
  }

  /** Forget the configuration and every database hold (tests). */
  function resetForTest() {
    for (const h of [...holds.values()]) releaseHold(h)
    holds.clear()
    stopMonitor()
    lockTaken = false
    envRead = false
    envError = null
    if (configured !== null && nativeSupportsBackend()) native.pgUnconfigure()
    configured = null
  }

  return {
    configureSessionWriteLock,
    describeBackend: describe,
    acquireSessionWriteLock,
    release,
    inspectDatabase,
    backendStats,
    resetForTest,
  }
}

module.exports = { createBackend }
