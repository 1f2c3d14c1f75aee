'use strict'
// This copy's context in the native registry, and the JavaScript half of its
// waits: the pending acquisitions by request id, the drain of the grants the
// registry delivered (`pump`), the wake-up other threads use to say that
// grants arrived, and the timers a pending acquisition needs (the shared
// deadline timer of finite waits, the keep-alive of infinite ones).
//
// Guarantees: a grant for a request nobody waits for any more is released
// (never leaked); requiring this module creates no async resource, thread or
// descriptor (the wake-up is armed on the first wait). Does not decide what a
// settled wait becomes: each pending entry settles itself (see lib/locks.js).

const { native } = require('./native')
const { MAX_TIMER_MS } = require('./options')

const LOG_PREFIX = '[session-write-lock]'

/** requestId -> a pending wait: { deadline, settle(delivery), timeOut() } */
const pending = new Map()
let keepAlive = null

// Settle what the addon delivered: `deliveries` when it hands them over (a
// release of this context that granted a waiter of it), else the outbox
// (through `deliverContext`, which hands its grants to onGrant, where the
// addon has it and the wake-up is armed; else taken as objects).
function pump(deliveries) {
  if (deliveries === undefined) {
    if (DELIVER_OWN && armed && native.deliverContext(ctx)) {
      dropKeepAliveIfIdle()
      return
    }
    deliveries = native.takeDeliveries(ctx)
  }
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

// A promise job, not queueMicrotask: that wraps each callback in an
// AsyncResource, whose code a fresh process would run (and compile) on its
// first wait. Errors are reported as onWake reports them.
let pumpQueued = false
const RESOLVED = Promise.resolve()
function pumpSoon() {
  if (pumpQueued) return
  pumpQueued = true
  RESOLVED.then(pumpQueuedNow)
}

function pumpQueuedNow() {
  pumpQueued = false
  onWake(undefined)
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

/**
 * Wait for request `requestId`: `waiter.settle(delivery)` (a grant handed
 * over as numbers: `waiter.grant(leaseId, token, acquiredAt)`) runs when the
 * registry delivers its grant or failure, `waiter.timeOut()` at
 * `waiter.deadline` (monoMs() time; Infinity: never). A pending wait keeps
 * the process alive, as the old module's polling timers did; the native side
 * never does.
 */
function addWait(requestId, waiter, delayMs) {
  pending.set(requestId, waiter)
  if (waiter.deadline !== Infinity) {
    armDeadline(waiter.deadline, delayMs)
  } else if (keepAlive === null) {
    keepAlive = setInterval(() => {}, MAX_TIMER_MS)
  }
}

/** Stop waiting for `requestId` (its request was cancelled); false if it was not pending. */
function dropWait(requestId) {
  const had = pending.delete(requestId)
  dropKeepAliveIfIdle()
  return had
}

/** The pending waits, as [requestId, waiter] pairs (a copy). */
function pendingWaits() {
  return Array.from(pending)
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

/**
 * One grant, handed over as numbers (armContext's grant function): `out[0]`
 * its request id, `out[1]` its lease id, `out[2]` its acquiredAt; read before
 * anything else runs (a later native call of this context writes `out`). The
 * lock path is the request's own (the waiter has it). Settles like `pump`.
 */
function onGrant(token) {
  const requestId = out[0]
  const leaseId = out[1]
  const acquiredAt = out[2]
  try {
    const p = pending.get(requestId)
    if (p === undefined) {
      // Granted to a request this context no longer waits for: never leak.
      native.releaseLease(ctx, leaseId)
    } else {
      pending.delete(requestId)
      p.grant(leaseId, token, acquiredAt)
    }
    dropKeepAliveIfIdle()
  } catch (err) {
    process.stderr.write(`${LOG_PREFIX} internal error while delivering a lock: ${err && err.stack}\n`)
  }
}

// The context's wake-up (a thread-safe function) is armed on its first wait,
// not here: requiring the package creates no async resource, thread or descriptor.
// An addon of an older copy of the package (shared, see loader.js) has no
// armContext: it takes the wake-up at registration.
let armed = typeof native.armContext !== 'function'
const ctx = armed ? native.registerContext(onWake) : native.registerContext()

// Where this context's hot calls (acquireOut, releaseLeaseOut) put their
// numbers: registered once, so those calls take no typed-array argument.
// Over its own ArrayBuffer (whose store never moves), never handed to
// anything else: the addon writes through it (see sys::OutSlots). `null`
// with an addon of an older copy of the package (shared, see loader.js),
// which has no setContextOut.
const out = new Float64Array(new ArrayBuffer(32))
const outRegistered = typeof native.setContextOut === 'function' && native.setContextOut(ctx, out) === true
// Grants as numbers in `out` and a token (onGrant) rather than as objects,
// where the addon can (an older shared addon ignores armContext's third
// argument and has no deliverContext).
const DELIVER_OWN = outRegistered && typeof native.deliverContext === 'function'

/**
 * Arm the wake-up before the first wait. Deliveries that reached the outbox
 * before it existed were not signalled: drain once afterwards. Throws (and
 * the acquire rejects) when it cannot be created; the next wait tries again.
 */
function armWake() {
  if (outRegistered) native.armContext(ctx, onWake, onGrant)
  else native.armContext(ctx, onWake)
  armed = true
  pumpSoon()
  warmGrantPath()
}

function noop() {}

/**
 * The grant that ends a wait schedules the lease's first unref'd timers (its
 * watchdog and createdAt refresh, lib/leases.js), and a fresh process runs
 * Node's unref'd timeout and interval code cold: about 0.3 ms of the first
 * cross-process hand-off, measured with hrtime stamps between the wake-up
 * and the resolve. Run that code once now, while this first wait has nothing
 * else to do, rather than after the lock is free.
 */
function warmGrantPath() {
  try {
    const t = setTimeout(noop, MAX_TIMER_MS)
    t.unref()
    clearTimeout(t)
    const i = setInterval(noop, MAX_TIMER_MS)
    i.unref()
    clearInterval(i)
  } catch {
    // Only a warm-up (fake timers may lack unref): never fails a wait.
  }
}

/** Whether the wake-up exists (armWake ran, or the addon took it at registration). */
function isArmed() {
  return armed
}

module.exports = {
  ctx,
  out: outRegistered ? out : null,
  pump,
  pumpSoon,
  addWait,
  dropWait,
  pendingWaits,
  dropKeepAliveIfIdle,
  monoMs,
  armWake,
  isArmed,
}
