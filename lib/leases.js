'use strict'
// Leases and what watches them: the objects acquireSessionWriteLock resolves
// to, their `signal` (aborted when the lease is lost), the report of a lease
// that was garbage-collected without release (released then, and said once on
// stderr), and the two timers of held locks: the maxHoldMs watchdog
// (force-release past the limit, logged to stderr, the lease then lost) and
// the createdAt refresh that keeps old-module peers from judging a long hold
// too old. Both timers are unref'd: neither ever keeps a process alive.
//
// Guarantees: release() never rejects and drops a hold at most once; a lost
// lease's assertOwned() throws; a leaked lease's hold is released; the
// watchdog fires at the earliest deadline and checks at least every 60 s, and
// runWatchdog counts only what it released itself.

const { native, SessionWriteLockLostError } = require('./native')
const context = require('./context')
const { readEnvMs } = require('./options')

const LOG_PREFIX = '[session-write-lock]'
const WATCHDOG_MAX_INTERVAL_MS = 60_000
const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

const signals = new Map() // leaseId -> AbortController (only once asked for)

// releaseLeaseInto (an addon of an older copy of the package has none, see
// loader.js) answers in `out`: [dropped, requestId, leaseId, acquiredAt].
// With the context's registered out array it is releaseLeaseOut (no array argument).
const OUT = context.out !== null
const FAST_RELEASE = OUT || typeof native.releaseLeaseInto === 'function'
const out = OUT ? context.out : new Float64Array(4)

const debugStacks = process.env.SESSION_WRITE_LOCK_DEBUG === '1'

const leaked = new FinalizationRegistry((held) => {
  signals.delete(held.id)
  if (!native.leaseHeld(held.id)) return
  native.releaseLease(context.ctx, held.id)
  let line = `${LOG_PREFIX} lock lease garbage-collected without release(); released: ${held.lockPath}`
  if (held.stack) line += `\n${held.stack}`
  process.stderr.write(`${line}\n`)
})

class SessionWriteLockLease {
  #id
  #released = false
  constructor(id, lockPath, fencingToken) {
    this.#id = id
    this.lockPath = lockPath
    this.fencingToken = fencingToken
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
    let dropped
    if (FAST_RELEASE) {
      // An in-process hand-off to a waiter of this context comes back here
      // (no delivery object built): settle it like any delivery.
      const token = OUT
        ? native.releaseLeaseOut(context.ctx, this.#id)
        : native.releaseLeaseInto(context.ctx, this.#id, out)
      dropped = out[0] === 1
      if (token !== null) {
        const d = { requestId: out[1], leaseId: out[2], lockPath: this.lockPath, token, acquiredAt: out[3], error: null }
        context.pump([d])
      }
    } else {
      dropped = native.releaseLease(context.ctx, this.#id)
    }
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

/** Abort the signal of lease `id` (if one was asked for) with a lost-lock error. */
function abortLease(id, lockPath, why) {
  const c = signals.get(id)
  if (c !== undefined) {
    signals.delete(id)
    c.abort(new SessionWriteLockLostError(lockPath, why))
  }
}

/**
 * A new lease for native lease `id` granted at `acquiredAtMs` (epoch ms):
 * watched for a leak, its watchdog deadline and the createdAt refresh scheduled.
 */
function newLease(id, lockPath, token, acquiredAtMs, maxHoldMs) {
  const lease = new SessionWriteLockLease(id, lockPath, token)
  leaked.register(lease, { id, lockPath, stack: debugStacks ? new Error('acquired here').stack : undefined }, lease)
  if (maxHoldMs !== Infinity) {
    // A running watchdog is due at most 60 s after it was set (its timer is
    // relative), so it is already due within 60 s of now: only a deadline
    // before it changes anything, which is what scheduleWatchdog would decide
    // too, here without reading the clock (Date.now) on every grant.
    const deadline = acquiredAtMs + maxHoldMs
    if (watchdogTimer === null || deadline < watchdogAt) scheduleWatchdog(deadline)
  }
  if (refreshTimer === null) ensureRefresh()
  return lease
}

/** Release a lease of this copy; whether this call dropped a hold. */
function releaseLease(lease) {
  return SessionWriteLockLease.releaseWithResult(lease)
}

function isLease(target) {
  return target instanceof SessionWriteLockLease
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
const REFRESH_MS = readEnvMs('SESSION_WRITE_LOCK_REFRESH_MS') ?? 20_000
let refreshTimer = null

/** Start the refresh timer unless it runs. */
function ensureRefresh() {
  if (refreshTimer !== null) return
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

/** Make the watchdog fire by `deadline` (epoch ms), or within 60 s. */
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

/** Force-release this context's holds past their maxHoldMs at `nowMs`; how many it released. */
function runWatchdog(nowMs) {
  // heldMs is measured on the check's clock (nowMs - acquiredAt), as the old
  // module reported it.
  const r = native.expire(context.ctx, nowMs)
  for (const d of r.dropped) {
    process.stderr.write(
      `${LOG_PREFIX} releasing lock held for ${Math.max(0, Math.round(d.heldMs))}ms (max=${d.maxHoldMs}ms): ${d.lockPath}\n`,
    )
    for (const id of d.leaseIds) abortLease(id, d.lockPath, `held past maxHoldMs=${d.maxHoldMs}`)
  }
  if (r.nextDeadline != null) scheduleWatchdog(r.nextDeadline)
  return r.dropped.length
}

/** Stop both timers (test resets). */
function stopTimers() {
  if (watchdogTimer !== null) {
    clearTimeout(watchdogTimer)
    watchdogTimer = null
    watchdogAt = Infinity
  }
  stopRefresh()
}

/** Forget every lease signal and stop both timers (test resets). */
function resetLeasesForTest() {
  signals.clear()
  stopTimers()
}

module.exports = { newLease, releaseLease, isLease, abortLease, runWatchdog, resetLeasesForTest }
