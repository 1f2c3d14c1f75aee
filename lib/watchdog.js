'use strict'
// The two timers of the locks this context holds: the maxHoldMs watchdog
// (force-release past the limit, logged to stderr, the lease then lost) and
// the createdAt refresh that keeps old-module peers from judging a long hold
// too old. Both are unref'd: neither ever keeps a process alive.
//
// Guarantees: the watchdog fires at the earliest deadline and checks at least
// every 60 s; runWatchdog counts only what it released itself.

const { native } = require('./native')
const context = require('./context')
const { abortLease } = require('./leases')
const { readEnvMs } = require('./options')

const WATCHDOG_MAX_INTERVAL_MS = 60_000
const LOG_PREFIX = '[session-write-lock]'

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
  if (r.dropped.length > 0) context.pump()
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

module.exports = { ensureRefresh, scheduleWatchdog, runWatchdog, stopTimers }
