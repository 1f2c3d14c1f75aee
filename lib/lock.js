'use strict'
// The drop-in lock API (docs/spec.md, "The API"): acquireSessionWriteLock, leases,
// release/releaseAll, errors, the maxHoldMs watchdog and leaked-lease reports.
// Exclusion, FIFO queues and cross-process waiting live in the native engine;
// this file validates input, shapes errors like the old module's, and keeps
// the per-context bookkeeping (pending promises, lease signals, timers).

const path = require('node:path')
const native = require('../loader')

const options = require('./options')

const DEFAULT_MAX_HOLD_MS = options.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS
const WATCHDOG_MAX_INTERVAL_MS = 60_000
const MAX_TIMER_MS = 2_147_000_000
const LOG_PREFIX = '[session-write-lock]'

const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

// ---------------------------------------------------------------- errors

class SessionWriteLockTimeoutError extends Error {
  constructor(params) {
    const { timeoutMs, lockPath, owner } = params
    super(`session file locked (timeout ${timeoutMs}ms): ${owner} ${lockPath}`)
    this.name = 'SessionWriteLockTimeoutError'
    this.reason = 'session_busy'
    this.code = 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT'
    this.timeoutMs = timeoutMs
    this.lockPath = lockPath
    this.owner = owner
    // Richer diagnostics stay out of the message (the old text is parsed).
    this.holder = params.holder ?? null
    this.hint = params.hint ?? null
  }
}

class SessionWriteLockLostError extends Error {
  constructor(lockPath, why) {
    super(`session write lock lost (${why}): ${lockPath}`)
    this.name = 'SessionWriteLockLostError'
    this.code = 'OPENCLAW_SESSION_WRITE_LOCK_LOST'
    this.lockPath = lockPath
    this.why = why
  }
}

function isSessionWriteLockTimeoutError(err) {
  return (
    err instanceof SessionWriteLockTimeoutError ||
    (err != null && typeof err === 'object' && err.code === 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
  )
}

/** An OS error from the native side, shaped like Node's fs errors. */
function osError(e) {
  const err = new Error(e.message)
  err.errno = e.errno
  err.code = e.code
  err.syscall = e.syscall
  err.path = e.path
  return err
}

function abortReason(signal) {
  if (signal.reason !== undefined) return signal.reason
  const err = new Error('The operation was aborted')
  err.name = 'AbortError'
  err.code = 'ABORT_ERR'
  return err
}

// ---------------------------------------------------------------- options

function positive(v) {
  return typeof v === 'number' && v > 0 && !Number.isNaN(v)
}

// Defaults and environment overrides: lib/options.js.
const resolveTimeoutMs = options.resolveTimeoutParam
const resolveStaleMs = options.resolveStaleParam
const resolveMaxHoldMs = options.resolveMaxHoldParam

function resolveSessionLockMaxHoldFromTimeout(params) {
  const p = params ?? {}
  const minMs = positive(p.minMs) && Number.isFinite(p.minMs) ? p.minMs : DEFAULT_MAX_HOLD_MS
  const graceMs = positive(p.graceMs) && Number.isFinite(p.graceMs) ? p.graceMs : 120_000
  const t = p.timeoutMs
  if (t === Infinity) return MAX_TIMER_MS
  const timeoutMs = positive(t) && Number.isFinite(t) ? t : minMs
  return Math.min(MAX_TIMER_MS, Math.max(minMs, timeoutMs + graceMs))
}

function validateSessionFile(sessionFile) {
  if (typeof sessionFile !== 'string' || sessionFile.length === 0) {
    throw new TypeError('sessionFile must be a non-empty string')
  }
  if (sessionFile.includes('\0')) {
    throw new TypeError('sessionFile must not contain NUL characters')
  }
}

// ---------------------------------------------------------------- context

const pending = new Map() // requestId -> { settle(delivery) }
const signals = new Map() // leaseId -> AbortController (only once asked for)
let ctx = 0
let keepAlive = null
let onFirstUse = null

// Settle what the addon delivered: `deliveries` when it hands them over (a
// release of this context that granted a waiter of it), else the outbox.
function pump(deliveries = native.takeDeliveries(ctx)) {
  for (let i = 0; i < deliveries.length; i++) {
    const d = deliveries[i]
    const p = pending.get(d.requestId)
    if (p === undefined) {
      // Granted to a request this context no longer waits for: never leak.
      // Its release may hand the lock to another waiter here: the addon delivers that.
      if (d.leaseId != null) native.releaseLease(ctx, d.leaseId)
      continue
    }
    pending.delete(d.requestId)
    p.settle(d)
  }
  dropKeepAliveIfIdle()
}

/**
 * The timers of pending acquisitions exist only while one is pending: the
 * shared deadline timer (finite waits) and the keep-alive interval (infinite
 * waits).
 */
function dropKeepAliveIfIdle() {
  if (pending.size !== 0) return
  if (keepAlive !== null) {
    clearInterval(keepAlive)
    keepAlive = null
  }
  if (deadlineTimer !== null) {
    clearTimeout(deadlineTimer)
    deadlineTimer = null
    deadlineAt = Infinity
  }
}

// One timer for every finite wait of this context, armed at the earliest
// deadline (a timer per waiter costs a timer object and two timer-list updates
// per acquire). Like the per-waiter timers it replaces, it keeps the process
// alive while a wait is pending.
let deadlineTimer = null
let deadlineAt = Infinity

/** Monotonic milliseconds (`performance` is not a global in every vm context jest makes). */
function monoMs() {
  return process.uptime() * 1000
}

/** Arm the shared timer for deadline `at` (monoMs() time), `delayMs` from now. */
function armDeadline(at, delayMs) {
  if (deadlineTimer !== null && at >= deadlineAt) return
  if (deadlineTimer !== null) clearTimeout(deadlineTimer)
  deadlineAt = at
  deadlineTimer = setTimeout(onDeadline, Math.min(MAX_TIMER_MS, Math.max(1, delayMs)))
}

function onDeadline() {
  // The timer ran its full delay: whatever was due at its deadline is due now,
  // even if the clock read below lags (a timer can fire a fraction of a
  // millisecond early, and test clocks may move timers only).
  const now = Math.max(monoMs(), deadlineAt)
  deadlineTimer = null
  deadlineAt = Infinity
  const due = []
  let next = Infinity
  for (const w of pending.values()) {
    if (w.deadline <= now) due.push(w)
    else if (w.deadline < next) next = w.deadline
  }
  for (const w of due) w.timeOut()
  if (next !== Infinity && pending.size !== 0) armDeadline(next, Math.ceil(next - now))
}

function onWake(deliveries) {
  try {
    pump(deliveries)
  } catch (err) {
    process.stderr.write(`${LOG_PREFIX} internal error while delivering a lock: ${err && err.stack}\n`)
  }
}

// The context's wake-up (a thread-safe function) is armed on its first wait,
// not here: requiring the package creates no async resource, thread or descriptor.
// An addon of an older copy of the package (shared, see loader.js) has no
// armContext: it takes the wake-up at registration.
let armed = typeof native.armContext !== 'function'
ctx = armed ? native.registerContext(onWake) : native.registerContext()

/**
 * Arm the wake-up before the first wait. Deliveries that reached the outbox
 * before it existed were not signalled: drain once afterwards. Throws (and
 * the acquire rejects) when it cannot be created; the next wait tries again.
 */
function armWake() {
  native.armContext(ctx, onWake)
  armed = true
  pumpSoon()
}

// ---------------------------------------------------------------- leases

const debugStacks = process.env.SESSION_WRITE_LOCK_DEBUG === '1'

const leaked = new FinalizationRegistry((held) => {
  signals.delete(held.id)
  if (!native.leaseHeld(held.id)) return
  native.releaseLease(ctx, held.id)
  let line = `${LOG_PREFIX} lock lease garbage-collected without release(); released: ${held.lockPath}`
  if (held.stack) line += `\n${held.stack}`
  process.stderr.write(`${line}\n`)
})

let pumpQueued = false
function pumpSoon() {
  if (pumpQueued) return
  pumpQueued = true
  queueMicrotask(() => {
    pumpQueued = false
    pump()
  })
}

class SessionWriteLockLease {
  #id
  #released = false
  constructor(id, lockPath, fencingToken, key, acquiredAt) {
    this.#id = id
    this.lockPath = lockPath
    this.fencingToken = fencingToken
    this.sessionKey = key
    this.acquiredAt = acquiredAt
    Object.freeze(this)
  }

  /** Release this lease. Never rejects; a second call does nothing. */
  release() {
    try {
      this.#releaseSync()
    } catch (err) {
      process.stderr.write(`${LOG_PREFIX} release failed: ${err && err.message}\n`)
    }
    return Promise.resolve()
  }

  /** @returns {boolean} whether this call dropped a hold */
  #releaseSync() {
    if (this.#released) return false
    this.#released = true
    leaked.unregister(this)
    const dropped = native.releaseLease(ctx, this.#id)
    if (signals.size !== 0) abortLease(this.#id, this.lockPath, 'released')
    return dropped
  }

  static releaseWithResult(lease) {
    return lease.#releaseSync()
  }

  assertOwned() {
    if (this.#released) throw new SessionWriteLockLostError(this.lockPath, 'released')
    // One lstat: a held lease whose file was deleted or replaced is lost.
    const why = native.leaseOwned(this.#id)
    if (why !== null) {
      if (signals.size !== 0) abortLease(this.#id, this.lockPath, why)
      throw new SessionWriteLockLostError(this.lockPath, why)
    }
  }

  assertCurrent() {
    try {
      this.assertOwned()
      const why = native.leaseCurrent(this.#id)
      if (why !== null) return Promise.reject(new SessionWriteLockLostError(this.lockPath, why))
      return Promise.resolve()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  get signal() {
    let c = signals.get(this.#id)
    if (c === undefined) {
      c = new AbortController()
      if (this.#released || !native.leaseHeld(this.#id)) {
        c.abort(new SessionWriteLockLostError(this.lockPath, 'no longer held'))
      } else {
        signals.set(this.#id, c)
      }
    }
    return c.signal
  }

  [asyncDispose]() {
    return this.release()
  }
}

function abortLease(id, lockPath, why) {
  const c = signals.get(id)
  if (c !== undefined) {
    signals.delete(id)
    c.abort(new SessionWriteLockLostError(lockPath, why))
  }
}

function makeLease(id, lockPath, token, key, acquiredAt, maxHoldMs) {
  const lease = new SessionWriteLockLease(id, lockPath, token, key, acquiredAt)
  leaked.register(lease, { id, lockPath, stack: debugStacks ? new Error('acquired here').stack : undefined }, lease)
  if (maxHoldMs !== Infinity) scheduleWatchdog(acquiredAt + maxHoldMs)
  if (refreshTimer === null) startRefresh()
  return lease
}

// ---------------------------------------------------------------- createdAt refresh

// Old-module peers judge a file by its createdAt (too-old past their staleMs,
// 30 min by default): every REFRESH_MS this context rewrites the createdAt of
// each hold whose payload is REFRESH_MS or more old, so it is never more than
// about 2 x REFRESH_MS old (40 s by default). The hold's real start stays in
// the registry (listHeldLocks, the watchdog) and in the file's mtime. The
// timer is unref'd and runs only while this context holds a lock. The same
// tick aborts the signal of a lease whose lock file was deleted or replaced.
// SESSION_WRITE_LOCK_REFRESH_MS (digits) overrides the interval (tests).
const REFRESH_MS = options.readEnvMs('SESSION_WRITE_LOCK_REFRESH_MS') ?? 20_000
let refreshTimer = null

function startRefresh() {
  refreshTimer = setInterval(onRefreshTimer, REFRESH_MS)
  refreshTimer.unref()
}

function stopRefresh() {
  if (refreshTimer !== null) {
    clearInterval(refreshTimer)
    refreshTimer = null
  }
}

function onRefreshTimer() {
  try {
    const r = native.refreshHeld(Date.now(), REFRESH_MS)
    for (const l of r.lost) abortLease(l.leaseId, l.lockPath, 'lock file deleted or replaced')
    for (const e of r.errors) {
      process.stderr.write(`${LOG_PREFIX} could not refresh createdAt (${e.code}): ${e.path}\n`)
    }
    if (r.holds === 0) stopRefresh()
  } catch (err) {
    process.stderr.write(`${LOG_PREFIX} refresh error: ${err && err.stack}\n`)
  }
}

// ---------------------------------------------------------------- watchdog

let watchdogTimer = null
let watchdogAt = Infinity

function scheduleWatchdog(deadline) {
  const now = Date.now()
  const at = Math.min(deadline, now + WATCHDOG_MAX_INTERVAL_MS)
  if (watchdogTimer !== null && at >= watchdogAt) return
  if (watchdogTimer !== null) clearTimeout(watchdogTimer)
  watchdogAt = at
  watchdogTimer = setTimeout(onWatchdogTimer, Math.max(0, at - now))
  watchdogTimer.unref()
}

function onWatchdogTimer() {
  watchdogTimer = null
  watchdogAt = Infinity
  try {
    runWatchdog(Date.now())
  } catch (err) {
    process.stderr.write(`${LOG_PREFIX} watchdog error: ${err && err.stack}\n`)
  }
}

function runWatchdog(nowMs) {
  // heldMs is measured on the check's clock (nowMs - acquiredAt), as the old
  // module reported it.
  const r = native.expire(ctx, nowMs)
  for (const d of r.dropped) {
    process.stderr.write(
      `${LOG_PREFIX} releasing lock held for ${Math.max(0, Math.round(d.heldMs))}ms (max=${d.maxHoldMs}ms): ${d.lockPath}\n`,
    )
    for (const id of d.leaseIds) abortLease(id, d.lockPath, `held past maxHoldMs=${d.maxHoldMs}`)
  }
  if (r.nextDeadline != null) scheduleWatchdog(r.nextDeadline)
  return r.dropped.length
}

// ---------------------------------------------------------------- acquire

const IN_PROCESS_HINT =
  'this process already holds this session lock: a nested acquire waits for it like any other. ' +
  'Pass allowReentrant: true (and the same reentrantOwner as the holder, if it set one) to re-enter, ' +
  'or release the outer lease first.'

function timeoutError(timeoutMs, key, lockPath) {
  const h = native.holderOf(key)
  if (h !== null) {
    const pid = process.pid
    return new SessionWriteLockTimeoutError({
      timeoutMs,
      lockPath,
      owner: `pid=${pid}`,
      holder: { pid, inProcess: true, acquiredAt: new Date(h.acquiredAt).toISOString(), lockPath },
      hint: IN_PROCESS_HINT,
    })
  }
  const peek = native.peekHolder(lockPath)
  const pid = peek === null ? null : (peek.pid ?? null)
  return new SessionWriteLockTimeoutError({
    timeoutMs,
    lockPath,
    owner: pid != null ? `pid=${pid}` : 'unknown',
    holder: pid != null ? { pid, inProcess: false, acquiredAt: peek.createdAt ?? null, lockPath } : null,
  })
}

function acquireSessionWriteLock(params) {
  try {
    if (params === null || typeof params !== 'object') {
      throw new TypeError('acquireSessionWriteLock expects a params object with sessionFile')
    }
    const sessionFile = params.sessionFile
    validateSessionFile(sessionFile)
    const signal = params.signal
    if (signal != null && (typeof signal !== 'object' || typeof signal.addEventListener !== 'function')) {
      // Checked before queueing: a waiter that cannot be cancelled would be granted later and leak.
      throw new TypeError('signal must be an AbortSignal')
    }
    if (signal != null && signal.aborted) return Promise.reject(abortReason(signal))
    const owner = params.reentrantOwner
    if (owner !== undefined && owner !== null && typeof owner !== 'string') {
      throw new TypeError('reentrantOwner must be a string')
    }
    if (onFirstUse !== null) onFirstUse()
    const timeoutMs = resolveTimeoutMs(params.timeoutMs)
    const maxHoldMs = resolveMaxHoldMs(params.maxHoldMs)
    const r = native.acquire(
      ctx,
      path.resolve(sessionFile),
      owner ?? null,
      params.allowReentrant === true,
      maxHoldMs,
      resolveStaleMs(params.staleMs),
    )
    if (r.status === native.AcquireStatus.Granted) {
      return Promise.resolve(makeLease(r.id, r.lockPath, r.token, r.key, r.acquiredAt, maxHoldMs))
    }
    if (r.status === native.AcquireStatus.Failed) return Promise.reject(osError(r.error))
    if (!armed) {
      try {
        armWake()
      } catch (err) {
        // Granted meanwhile (cancel fails): the delivery is in the outbox and
        // the waitFor below drains it; otherwise nothing is left behind.
        if (native.cancel(r.id)) {
          if (err != null && typeof err === 'object' && err.code == null) {
            err.code = 'SESSION_WRITE_LOCK_WAKE_FAILED'
            err.syscall = 'napi_create_threadsafe_function'
          }
          return Promise.reject(err)
        }
        pumpSoon()
      }
    }
    return waitFor(r.id, r.key, r.lockPath, timeoutMs, maxHoldMs, signal)
  } catch (err) {
    return Promise.reject(err)
  }
}

/** A pending acquisition of this context (one object per wait, no closures but the executor). */
class Waiter {
  constructor(requestId, key, lockPath, timeoutMs, maxHoldMs, signal, resolve, reject) {
    this.requestId = requestId
    this.key = key
    this.lockPath = lockPath
    this.timeoutMs = timeoutMs
    this.maxHoldMs = maxHoldMs
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
    this.deadline = timeoutMs === Infinity ? Infinity : monoMs() + Math.min(timeoutMs, MAX_TIMER_MS)
    this.onAbort = null
  }

  /** A delivery for this request: the grant, or the error that ended it. */
  settle(d) {
    this.cleanup()
    if (d.error != null) this.reject(osError(d.error))
    else this.resolve(makeLease(d.leaseId, d.lockPath, d.token, this.key, d.acquiredAt, this.maxHoldMs))
  }

  cleanup() {
    if (this.onAbort !== null) {
      this.signal.removeEventListener('abort', this.onAbort)
      this.onAbort = null
    }
  }

  timeOut() {
    this.giveUp(timeoutError(this.timeoutMs, this.key, this.lockPath))
  }

  giveUp(err) {
    if (native.cancel(this.requestId)) {
      pending.delete(this.requestId)
      this.cleanup()
      this.reject(err)
      dropKeepAliveIfIdle()
    } else {
      // Granted (or failed) already: the delivery wins.
      pump()
    }
  }
}

function waitFor(requestId, key, lockPath, timeoutMs, maxHoldMs, signal) {
  return new Promise((resolve, reject) => {
    const w = new Waiter(requestId, key, lockPath, timeoutMs, maxHoldMs, signal, resolve, reject)
    pending.set(requestId, w)
    if (w.deadline !== Infinity) {
      armDeadline(w.deadline, Math.min(timeoutMs, MAX_TIMER_MS))
    } else if (keepAlive === null) {
      // A pending acquire keeps the process alive, as the old module's polling
      // timers did; the native side never does.
      keepAlive = setInterval(() => {}, MAX_TIMER_MS)
    }
    if (signal != null) {
      w.onAbort = () => {
        w.onAbort = null
        w.giveUp(abortReason(signal))
      }
      signal.addEventListener('abort', w.onAbort, { once: true })
    }
  })
}

// ---------------------------------------------------------------- release

function releaseDropped(dropped, why) {
  for (const id of dropped.leaseIds) {
    abortLease(id, dropped.lockPath, why)
  }
}

function releaseSync(target) {
  if (target instanceof SessionWriteLockLease) {
    return SessionWriteLockLease.releaseWithResult(target)
  }
  if (target !== null && typeof target === 'object' && typeof target.release === 'function') {
    // A lease from another copy of the package: its own release. It dropped a
    // hold only if the lease still held one (the registry is shared).
    let held = true
    if (typeof target.assertOwned === 'function') {
      try {
        target.assertOwned()
      } catch {
        held = false
      }
    }
    target.release()
    return held
  }
  validateSessionFile(target)
  // Never touches the disk: nothing to create when nothing is held.
  const d = native.releaseKey(ctx, native.existingKey(path.resolve(target)))
  if (d === null) return false
  releaseDropped(d, 'released')
  return true
}

function release(target) {
  try {
    return Promise.resolve(releaseSync(target))
  } catch (err) {
    return Promise.reject(err)
  }
}

function releaseAllSync() {
  const dropped = native.releaseThread(ctx)
  for (const d of dropped) releaseDropped(d, 'released')
  return dropped.length
}

function releaseAll() {
  try {
    return Promise.resolve(releaseAllSync())
  } catch (err) {
    return Promise.reject(err)
  }
}

/** Every lock held in this process (all threads). */
function listHeldLocks() {
  const me = native.threadId()
  return native.listHeld().map((h) => ({
    lockPath: h.lockPath,
    acquiredAt: new Date(h.acquiredAt).toISOString(),
    maxHoldMs: h.maxHoldMs ?? Infinity,
    reentrantCount: h.reentrantCount,
    owner: h.owner ?? null,
    fencingToken: h.fencingToken,
    sameThread: h.threadId === me,
  }))
}

// ---------------------------------------------------------------- test hooks

/** Cancel this context's pending acquisitions (they reject) and reset timers. */
function resetLockStateForTest() {
  for (const [requestId, p] of pending) {
    if (native.cancel(requestId)) {
      pending.delete(requestId)
      const message = 'session write lock state reset'
      p.settle({ error: { message, code: 'OPENCLAW_SESSION_WRITE_LOCK_RESET', errno: 0, syscall: 'reset', path: '' } })
    }
  }
  releaseAllSync()
  dropKeepAliveIfIdle()
  if (watchdogTimer !== null) {
    clearTimeout(watchdogTimer)
    watchdogTimer = null
    watchdogAt = Infinity
  }
  stopRefresh()
  signals.clear()
  native.clearPathCache()
  native.setStartTimeOverride(0, null, true)
}

function setFirstUseHook(fn) {
  onFirstUse = fn
}

module.exports = {
  acquireSessionWriteLock,
  release,
  releaseAll,
  releaseAllSync,
  listHeldLocks,
  SessionWriteLockTimeoutError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout,
  resolveStaleMs,
  runWatchdog,
  resetLockStateForTest,
  setFirstUseHook,
  osError,
  native,
}
