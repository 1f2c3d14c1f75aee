'use strict'
// The drop-in lock API (docs/spec.md, "The API"): acquireSessionWriteLock,
// release/releaseAll/releaseAllSync and listHeldLocks. Exclusion, FIFO queues
// and cross-process waiting live in the native engine; this module validates
// input, turns the engine's answers into leases or errors shaped like the old
// module's, and keeps this context's pending waits (lib/context.js) and its
// leases with their timers (lib/leases.js) in step.

const path = require('node:path')
const { native, rare, osError, SessionWriteLockTimeoutError, abortReason } = require('./native')
const context = require('./context')
const leases = require('./leases')
const options = require('./options')

const { MAX_TIMER_MS } = options
let onFirstUse = null

/** `fn` runs at every acquire (the process hooks' first-use check). */
function setFirstUseHook(fn) {
  onFirstUse = fn
}

// ---------------------------------------------------------------- acquire

const IN_PROCESS_HINT =
  'this process already holds this session lock: a nested acquire waits for it like any other. ' +
  'Pass allowReentrant: true (and the same reentrantOwner as the holder, if it set one) to re-enter, ' +
  'or release the outer lease first.'

function timeoutError(timeoutMs, key, lockPath) {
  const h = rare().holderOf(key)
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
  const peek = rare().peekHolder(lockPath)
  const pid = peek === null ? null : (peek.pid ?? null)
  return new SessionWriteLockTimeoutError({
    timeoutMs,
    lockPath,
    owner: pid != null ? `pid=${pid}` : 'unknown',
    // An old-module holder records no acquisition time: its createdAt stands in.
    holder: pid != null ? { pid, inProcess: false, acquiredAt: peek.createdAt ?? null, lockPath } : null,
  })
}

// The hot path asks the addon once (`acquireInto`): the numbers of the
// answer land in `out` (status, id, acquiredAt, where the string splits) and
// the one string returned carries the token (and the lock path when it is not
// `<file>.lock`), so no result object is built on either side. Absolute POSIX
// paths are normalized by the addon exactly as `path.resolve` would (saving
// its JavaScript, which runs interpreted in a cold process). An addon of an
// older copy of the package (shared, see loader.js) has no `acquireInto`.
// With the context's registered out array (lib/context.js) the call is
// `acquireOut`, which takes none.
const OUT = context.out !== null
const FAST = OUT || typeof native.acquireInto === 'function'
const NATIVE_RESOLVE = FAST && process.platform !== 'win32'
const out = OUT ? context.out : new Float64Array(4)
const GRANTED = native.AcquireStatus.Granted
const FAILED = native.AcquireStatus.Failed
const SLASH = 47

function acquireSessionWriteLock(params) {
  try {
    if (params === null || typeof params !== 'object') {
      throw new TypeError('acquireSessionWriteLock expects a params object with sessionFile')
    }
    const sessionFile = params.sessionFile
    options.validateSessionFile(sessionFile)
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
    const maxHoldMs = options.resolveMaxHoldParam(params.maxHoldMs)
    const staleMs = options.resolveStaleParam(params.staleMs)
    if (!FAST) return acquireCompat(params, sessionFile, owner, maxHoldMs, staleMs, signal)
    const file = NATIVE_RESOLVE && sessionFile.charCodeAt(0) === SLASH ? sessionFile : path.resolve(sessionFile)
    const s = OUT
      ? native.acquireOut(context.ctx, file, owner ?? null, params.allowReentrant === true, maxHoldMs, staleMs)
      : native.acquireInto(context.ctx, file, owner ?? null, params.allowReentrant === true, maxHoldMs, staleMs, out)
    const status = out[0]
    const id = out[1]
    if (status === GRANTED) {
      const cut = out[3]
      const lease =
        cut === 0
          ? leases.newLease(id, file + '.lock', s, out[2], maxHoldMs)
          : leases.newLease(id, s.slice(cut), s.slice(0, cut), out[2], maxHoldMs)
      return Promise.resolve(lease)
    }
    if (status === FAILED) return Promise.reject(osError(native.takeAcquireError()))
    // acquireOut gives no lock path for a pending request when it is `<file>.lock`.
    const lockPath = s === null ? file + '.lock' : s
    return pending(id, lockPath, options.resolveTimeoutParam(params.timeoutMs), maxHoldMs, signal)
  } catch (err) {
    return Promise.reject(err)
  }
}

/** The same through an older addon's `acquire` (one result object). */
function acquireCompat(params, sessionFile, owner, maxHoldMs, staleMs, signal) {
  const r = native.acquire(
    context.ctx,
    path.resolve(sessionFile),
    owner ?? null,
    params.allowReentrant === true,
    maxHoldMs,
    staleMs,
  )
  if (r.status === GRANTED) {
    return Promise.resolve(leases.newLease(r.id, r.lockPath, r.token, r.acquiredAt, maxHoldMs))
  }
  if (r.status === FAILED) return Promise.reject(osError(r.error))
  return pending(r.id, r.lockPath, options.resolveTimeoutParam(params.timeoutMs), maxHoldMs, signal)
}

/** Request `requestId` is queued: arm this context's wake-up if need be, then wait. */
function pending(requestId, lockPath, timeoutMs, maxHoldMs, signal) {
  if (!context.isArmed()) {
    try {
      context.armWake()
    } catch (err) {
      // Granted meanwhile (cancel fails): the delivery is in the outbox and
      // the waitFor below drains it; otherwise nothing is left behind.
      if (native.cancel(requestId)) {
        if (err != null && typeof err === 'object' && err.code == null) {
          err.code = 'SESSION_WRITE_LOCK_WAKE_FAILED'
          err.syscall = 'napi_create_threadsafe_function'
        }
        return Promise.reject(err)
      }
      context.pumpSoon()
    }
  }
  return waitFor(requestId, lockPath, timeoutMs, maxHoldMs, signal)
}

/** A pending acquisition of this context (one object per wait, no closures but the executor). */
class Waiter {
  constructor(requestId, lockPath, timeoutMs, maxHoldMs, signal, resolve, reject) {
    this.requestId = requestId
    this.lockPath = lockPath
    this.timeoutMs = timeoutMs
    this.maxHoldMs = maxHoldMs
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
    this.deadline = timeoutMs === Infinity ? Infinity : context.monoMs() + Math.min(timeoutMs, MAX_TIMER_MS)
    this.onAbort = null
  }

  /** A delivery for this request: the grant, or the error that ended it. */
  settle(d) {
    this.cleanup()
    if (d.error != null) this.reject(osError(d.error))
    else this.resolve(leases.newLease(d.leaseId, d.lockPath, d.token, d.acquiredAt, this.maxHoldMs))
  }

  /** This request's grant, handed over as numbers and its token (the lock path is the request's). */
  grant(leaseId, token, acquiredAt) {
    this.cleanup()
    this.resolve(leases.newLease(leaseId, this.lockPath, token, acquiredAt, this.maxHoldMs))
  }

  cleanup() {
    if (this.onAbort !== null) {
      this.signal.removeEventListener('abort', this.onAbort)
      this.onAbort = null
    }
  }

  timeOut() {
    // The key is the lock path without its `.lock`.
    this.giveUp(timeoutError(this.timeoutMs, this.lockPath.slice(0, -5), this.lockPath))
  }

  giveUp(err) {
    if (native.cancel(this.requestId)) {
      context.dropWait(this.requestId)
      this.cleanup()
      this.reject(err)
    } else {
      // Granted (or failed) already: the delivery wins.
      context.pump()
    }
  }
}

function waitFor(requestId, lockPath, timeoutMs, maxHoldMs, signal) {
  return new Promise((resolve, reject) => {
    const w = new Waiter(requestId, lockPath, timeoutMs, maxHoldMs, signal, resolve, reject)
    context.addWait(requestId, w, Math.min(timeoutMs, MAX_TIMER_MS))
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
    leases.abortLease(id, dropped.lockPath, why)
  }
}

function releaseSync(target) {
  if (leases.isLease(target)) {
    return leases.releaseLease(target)
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
  options.validateSessionFile(target)
  // Never touches the disk: nothing to create when nothing is held.
  const d = rare().releaseKey(context.ctx, rare().existingKey(path.resolve(target)))
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
  const dropped = native.releaseThread(context.ctx)
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

/** Every lock held in this process (all threads); `acquiredAt` as ISO 8601. */
function listHeldLocks() {
  const me = rare().threadId()
  return rare().listHeld().map((h) => ({
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
  for (const [requestId, p] of context.pendingWaits()) {
    if (native.cancel(requestId)) {
      context.dropWait(requestId)
      const message = 'session write lock state reset'
      p.settle({ error: { message, code: 'OPENCLAW_SESSION_WRITE_LOCK_RESET', errno: 0, syscall: 'reset', path: '' } })
    }
  }
  releaseAllSync()
  context.dropKeepAliveIfIdle()
  leases.resetLeasesForTest()
  rare().clearPathCache()
  rare().setStartTimeOverride(0, null, true)
}

module.exports = {
  acquireSessionWriteLock,
  release,
  releaseAll,
  releaseAllSync,
  listHeldLocks,
  resetLockStateForTest,
  setFirstUseHook,
}
