'use strict'
// session_end tracking (docs/spec.md, "Shutdown and session_end"): onSessionEnd, trackActiveSession,
// listActiveSessions, drainActiveSessions, recoverOrphanedSessions, findOrphanedSessions.
//
// Every session ends exactly once: whichever path gets there first (end(),
// forget(), a drain, the exit hook) takes it out of `active` before calling
// any handler, so no other path can see it again. A tracked session with a
// sessionFile holds an OS-locked marker `<sessionFile>.active` (lib/markers.js)
// for its life; the marker is removed the moment the session ends, and one
// left behind by a dead process is what recoverOrphanedSessions turns into a
// late event.
//
// Loaded on first use, and a factory: each copy of the package creates its own
// instance (its handlers and sessions) even when the require cache hands it
// another copy's module file. (A little over 400 lines: every function of the
// factory shares this copy's handlers, sessions and running handler promises;
// the marker format, the stateless part, is lib/markers.js.)

const path = require('node:path')
const { MARKER_SUFFIX, renderMarker, recoveredEvent } = require('./markers')
const { DEFAULT_DRAIN_MS, positiveMs } = require('./options')

const LOG_PREFIX = '[session-write-lock]'
const RESOLVED = Promise.resolve()

function warn(line) {
  try {
    process.stderr.write(`${LOG_PREFIX} ${line}\n`)
  } catch {
    // stderr closed (exit): nothing to do
  }
}

function optionalString(v, name) {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
  return v
}

function validMessageCount(v) {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new TypeError('messageCount must be a finite number >= 0')
  }
  return v
}

function contextOf(rec) {
  const c = {}
  if (rec.agentId !== undefined) c.agentId = rec.agentId
  c.sessionId = rec.sessionId
  if (rec.sessionKey !== undefined) c.sessionKey = rec.sessionKey
  return c
}

function eventOf(rec, reason, nowMs) {
  const e = { sessionId: rec.sessionId }
  if (rec.sessionKey !== undefined) e.sessionKey = rec.sessionKey
  e.messageCount = rec.messageCount
  e.durationMs = Math.max(0, nowMs - rec.startedMs)
  if (reason !== undefined) e.reason = reason
  if (rec.sessionFile !== undefined) e.sessionFile = rec.sessionFile
  return e
}

/** A drain budget: a positive number of ms (Infinity: no limit), else 2000. */
function budgetOf(v) {
  return positiveMs(v, true) ?? DEFAULT_DRAIN_MS
}

function checkSessionsDir(o, what) {
  if (o === null || typeof o !== 'object' || typeof o.sessionsDir !== 'string' || o.sessionsDir === '') {
    throw new TypeError(`${what} expects { sessionsDir: string }`)
  }
  if (o.sessionsDir.includes('\0')) throw new TypeError('sessionsDir must not contain NUL characters')
  return path.resolve(o.sessionsDir)
}

/**
 * This copy's session tracking. `deps`: `native` and `osError` (lib/native.js),
 * `ensureHooks()` (install the process hooks on first use), `repairHooks()`
 * (test resets).
 */
function createSessions({ native, osError, ensureHooks, repairHooks }) {
  /** handler entries (an object each, so one function may register twice) */
  const handlers = new Set()
  /** sessionId -> session record */
  const active = new Map()
  /** handler promises still running (end(), drains, recovery) */
  const inflight = new Set()

  let identity = null
  function self() {
    if (identity === null) identity = native.selfIdentity()
    return identity
  }

  // ---------------------------------------------------------------- handlers

  function onSessionEnd(handler) {
    if (typeof handler !== 'function') throw new TypeError('onSessionEnd expects a function')
    const entry = { handler }
    handlers.add(entry)
    return () => {
      handlers.delete(entry)
    }
  }

  function reportHandlerError(event, err) {
    warn(`session_end handler failed for session ${event.sessionId}: ${(err && err.stack) || err}`)
  }

  /**
   * Call every handler with (event, ctx), all at once. A throw or a rejection
   * is reported and does not stop the others. Returns a promise that settles
   * (never rejects) when every handler has.
   */
  function emit(event, ctx) {
    let waits = null
    for (const entry of Array.from(handlers)) {
      try {
        const r = entry.handler(event, ctx)
        if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
          const w = Promise.resolve(r).then(undefined, (err) => reportHandlerError(event, err))
          if (waits === null) waits = []
          waits.push(w)
        }
      } catch (err) {
        reportHandlerError(event, err)
      }
    }
    if (waits === null) return RESOLVED
    const p = Promise.all(waits).then(() => {
      inflight.delete(p)
    })
    inflight.add(p)
    return p
  }

  // ---------------------------------------------------------------- sessions

  /** `<normalized sessionFile>.active` (the lock's normalization: realpath'd directory). */
  function markerPathFor(resolved) {
    const n = native.normalize(resolved)
    return (n.error ? resolved : n.key) + MARKER_SUFFIX
  }

  function closeMarker(rec) {
    if (rec.markerId === 0) return
    const id = rec.markerId
    rec.markerId = 0
    try {
      native.markerClose(id)
    } catch (err) {
      warn(`could not remove the session marker ${rec.markerPath}: ${err && err.message}`)
    }
  }

  /** Take a session out of play (the single gate to "ended"); false if it already was. */
  function retire(rec) {
    if (rec.ended) return false
    rec.ended = true
    if (active.get(rec.sessionId) === rec) active.delete(rec.sessionId)
    closeMarker(rec)
    return true
  }

  function endRecord(rec, reason) {
    if (!retire(rec)) return RESOLVED
    return emit(eventOf(rec, reason, Date.now()), contextOf(rec))
  }

  class ActiveSession {
    #rec
    constructor(rec) {
      this.#rec = rec
      Object.defineProperty(this, 'sessionId', { value: rec.sessionId, enumerable: true })
    }

    update(p) {
      const rec = this.#rec
      if (rec.ended || p === null || typeof p !== 'object') return
      const n = validMessageCount(p.messageCount)
      if (n === undefined || n === rec.messageCount) return
      rec.messageCount = n
      if (rec.markerId !== 0) {
        const e = native.markerUpdate(rec.markerId, renderMarker(rec, self()))
        if (e) warn(`could not update the session marker ${rec.markerPath}: ${e.code} ${e.message}`)
      }
    }

    /** Emit session_end once (then forget); resolves when the handlers settle. */
    end(reason) {
      try {
        return endRecord(this.#rec, optionalString(reason, 'reason'))
      } catch (err) {
        return Promise.reject(err)
      }
    }

    /** Stop tracking without an event. */
    forget() {
      retire(this.#rec)
    }

    get ended() {
      return this.#rec.ended
    }
  }

  function trackActiveSession(s) {
    if (s === null || typeof s !== 'object') {
      throw new TypeError('trackActiveSession expects { sessionId, ... }')
    }
    if (typeof s.sessionId !== 'string' || s.sessionId.length === 0) {
      throw new TypeError('sessionId must be a non-empty string')
    }
    const sessionKey = optionalString(s.sessionKey, 'sessionKey')
    const agentId = optionalString(s.agentId, 'agentId')
    let sessionFile = optionalString(s.sessionFile, 'sessionFile')
    if (sessionFile !== undefined && (sessionFile.length === 0 || sessionFile.includes('\0'))) {
      throw new TypeError('sessionFile must be a non-empty string without NUL characters')
    }
    const messageCount = validMessageCount(s.messageCount)
    ensureHooks()

    const existing = active.get(s.sessionId)
    if (existing !== undefined) {
      // Same session tracked again: one session, one handle, one event.
      if (messageCount !== undefined) existing.handle.update({ messageCount })
      return existing.handle
    }

    if (sessionFile !== undefined) sessionFile = path.resolve(sessionFile)
    const now = Date.now()
    const rec = {
      sessionId: s.sessionId,
      sessionKey,
      agentId,
      sessionFile,
      messageCount: messageCount ?? 0,
      startedMs: now,
      startedAt: new Date(now).toISOString(),
      markerId: 0,
      markerPath: undefined,
      ended: false,
      handle: null,
    }
    rec.handle = new ActiveSession(rec)
    if (sessionFile !== undefined) {
      rec.markerPath = markerPathFor(sessionFile)
      const r = native.markerOpen(rec.markerPath, renderMarker(rec, self()))
      if (typeof r.recovered === 'string') {
        // A dead owner's marker was there: its session ends now, once, as
        // recoverOrphanedSessions would have ended it.
        const late = recoveredEvent(r.recovered, rec.markerPath)
        if (late === null) warn(`removed an unreadable session marker (no session_end possible): ${rec.markerPath}`)
        else emit(late.event, late.ctx)
      }
      if (r.error) {
        // Tracking goes on without crash evidence. EBUSY: another live process
        // tracks the same session file; EEXIST: a file that is not a session
        // marker is at that path (never overwritten).
        const why = r.error.code === 'EEXIST' ? 'a file that is not a session marker is in the way' : `${r.error.code} ${r.error.message}`
        warn(`could not create the session marker ${rec.markerPath}: ${why}`)
      } else {
        rec.markerId = r.id
      }
    }
    active.set(rec.sessionId, rec)
    return rec.handle
  }

  function listActiveSessions() {
    const out = []
    for (const rec of active.values()) {
      const c = contextOf(rec)
      if (rec.sessionFile !== undefined) c.sessionFile = rec.sessionFile
      c.startedAt = rec.startedAt
      out.push(c)
    }
    return out
  }

  /**
   * End every active session (reason "shutdown" by default) and wait, within
   * the budget, for every handler still running (these and earlier ones).
   */
  function drainActiveSessions(o) {
    try {
      const opts = o ?? {}
      const reason = optionalString(opts.reason, 'reason') ?? 'shutdown'
      const budgetMs = budgetOf(opts.totalTimeoutMs)
      const emittedSessionIds = []
      const now = Date.now()
      for (const rec of Array.from(active.values())) {
        if (!retire(rec)) continue
        emittedSessionIds.push(rec.sessionId)
        emit(eventOf(rec, reason, now), contextOf(rec))
      }
      return waitInflight(budgetMs).then((timedOut) => ({ emittedSessionIds, timedOut }))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Resolves `true` if the budget ran out before every in-flight handler settled. */
  function waitInflight(budgetMs, unrefTimer) {
    if (inflight.size === 0) return Promise.resolve(false)
    const all = Promise.all(Array.from(inflight)).then(() => false)
    if (budgetMs === Infinity) return all
    let timer
    const out = new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), budgetMs)
      if (unrefTimer) timer.unref()
    })
    return Promise.race([all, out]).then((timedOut) => {
      clearTimeout(timer)
      return timedOut
    })
  }

  /** The signal hook's drain (reason "shutdown"). */
  function drainForShutdown(reason, budgetMs) {
    return drainActiveSessions({ reason, totalTimeoutMs: budgetMs })
  }

  /** The `exit` hook: call the handlers synchronously; promises are not awaited. */
  function endAllSync(reason) {
    const now = Date.now()
    for (const rec of Array.from(active.values())) {
      if (!retire(rec)) continue
      emit(eventOf(rec, reason, now), contextOf(rec))
    }
  }

  // ---------------------------------------------------------------- recovery

  /**
   * The markers in `sessionsDir` whose OS lock is free (their owner died), each
   * with the session_end recoverOrphanedSessions would emit for it; nothing is
   * emitted and nothing removed. Markers of live sessions, and files that are
   * not session markers, are not listed.
   */
  function findOrphanedSessions(o) {
    const dir = checkSessionsDir(o, 'findOrphanedSessions')
    const scan = native.markerOrphans(dir, false)
    if (scan.error) throw osError(scan.error)
    const out = []
    for (const orphan of scan.orphans) {
      const r = recoveredEvent(orphan.content, orphan.path)
      if (r !== null) out.push({ markerPath: orphan.path, event: r.event })
    }
    return out
  }

  /**
   * Markers in `sessionsDir` whose OS lock is free belong to a dead process:
   * emit their session_end (reason "unknown", `recovered` = the dead owner),
   * remove them, and return the events. Live markers are never touched.
   */
  async function recoverOrphanedSessions(o) {
    const dir = checkSessionsDir(o, 'recoverOrphanedSessions')
    const scan = native.markerOrphans(dir, true)
    if (scan.error) throw osError(scan.error)
    const recovered = []
    const waits = []
    for (const orphan of scan.orphans) {
      const r = recoveredEvent(orphan.content, orphan.path)
      if (r === null) {
        warn(`removed an unreadable session marker (no session_end possible): ${orphan.path}`)
        continue
      }
      recovered.push(r.event)
      waits.push(emit(r.event, r.ctx))
    }
    await Promise.all(waits)
    return { recovered }
  }

  // ---------------------------------------------------------------- test hooks

  /** Forget every active session (markers removed, no events). */
  function forgetAll() {
    for (const rec of Array.from(active.values())) retire(rec)
    active.clear()
  }

  /** Wait (up to 5 s) for running handlers, then forget active sessions. */
  async function drainForTest() {
    await waitInflight(5000, true)
    forgetAll()
  }

  /** Synchronous reset: sessions forgotten, handlers unregistered, hooks checked. */
  function resetForTest() {
    forgetAll()
    handlers.clear()
    inflight.clear()
    repairHooks()
  }

  function hasPendingWork() {
    return active.size > 0 || inflight.size > 0
  }

  return {
    // the public API (index.js)
    onSessionEnd, trackActiveSession, listActiveSessions, drainActiveSessions,
    recoverOrphanedSessions, findOrphanedSessions,
    // the process hooks (lib/shutdown.js) and the test resets (index.js)
    drainForShutdown, endAllSync, hasPendingWork, drainForTest, resetForTest,
  }
}

module.exports = { createSessions }
