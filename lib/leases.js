'use strict'
// Leases: the objects acquireSessionWriteLock resolves to, their `signal`
// (aborted when the lease is lost), and the report of a lease that was
// garbage-collected without release (released then, and said once on stderr).
//
// Guarantees: release() never rejects and drops a hold at most once; a lost
// lease's assertOwned() throws; a leaked lease's hold is released. Does not
// schedule the watchdog or the createdAt refresh (lib/locks.js does, when it
// makes a lease).

const { native } = require('./native')
const context = require('./context')
const { SessionWriteLockLostError } = require('./errors')

const LOG_PREFIX = '[session-write-lock]'
const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

const signals = new Map() // leaseId -> AbortController (only once asked for)

const debugStacks = process.env.SESSION_WRITE_LOCK_DEBUG === '1'

const leaked = new FinalizationRegistry((held) => {
  signals.delete(held.id)
  if (!native.leaseHeld(held.id)) return
  native.releaseLease(context.ctx, held.id)
  context.pumpSoon()
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
    const r = native.releaseLease(context.ctx, this.#id) // bit 0: dropped, bit 1: deliveries
    if (signals.size !== 0) abortLease(this.#id, this.lockPath, 'released')
    if ((r & 2) !== 0) context.pump()
    return (r & 1) !== 0
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

/** A new lease for native lease `id`, watched for a leak. */
function newLease(id, lockPath, token) {
  const lease = new SessionWriteLockLease(id, lockPath, token)
  leaked.register(lease, { id, lockPath, stack: debugStacks ? new Error('acquired here').stack : undefined }, lease)
  return lease
}

/** Release a lease of this copy; whether this call dropped a hold. */
function releaseLease(lease) {
  return SessionWriteLockLease.releaseWithResult(lease)
}

function isLease(target) {
  return target instanceof SessionWriteLockLease
}

/** Forget every lease signal (test resets). */
function forgetSignals() {
  signals.clear()
}

module.exports = { newLease, releaseLease, isLease, abortLease, forgetSignals }
