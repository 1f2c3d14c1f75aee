'use strict'
// The test seams of one copy of the package (`__testing`, also exported as
// `testing`; index.d.ts), made on their first access: a require() that never
// touches them does not compile them (index.js carries this file as text,
// scripts/bundle.js). `d` is what lib/index.js hands over: its lazily loaded
// modules (options, fileLocks, staleLocks, signalHandling), the hub, the
// addon's rarely used functions (rare) and the backend instance, if any.

function createTesting(d) {
  return {
    get cleanupSignals() {
      return d.options().HOOKED_SIGNALS.slice()
    },
    /** What our listener does on `signal`. */
    handleTerminationSignal: (signal) => d.signalHandling().onSignal(d.getHub(), signal),
    releaseAllLocksSync() {
      d.fileLocks().releaseAllSync()
    },
    runLockWatchdogCheck(nowMs) {
      d.fileLocks()
      return Promise.resolve(require('./leases').runWatchdog(typeof nowMs === 'number' ? nowMs : Date.now()))
    },
    /** PID-reuse seam: report `startTime` (null = unknown) as the start time of `pid`. */
    setStartTimeOverride(pid, startTime) {
      d.rare().setStartTimeOverride(pid, startTime ?? null, false)
    },
    clearStartTimeOverrides() {
      d.rare().setStartTimeOverride(0, null, true)
    },
    registryCounts() {
      return d.rare().registryCounts()
    },
    /**
     * The JS-thread loop watchers running in the process and the locks obtained
     * through them so far (Linux; zeros elsewhere); the OS attempts made for
     * contended keys so far, by the waiting thread and the loop watchers; the
     * wake-ups sent to contexts through their thread-safe functions so far
     * (zeros with an older shared addon); the grants handed to a context as
     * numbers (its out array) and a token rather than as objects.
     */
    loopWaitCounts() {
      const r = d.rare()
      const c = typeof r.loopWaitCounts === 'function' ? r.loopWaitCounts() : {}
      return {
        watchers: c.watchers || 0,
        obtained: c.obtained || 0,
        attempts: c.attempts || 0,
        wakes: c.wakes || 0,
        numbered: c.numbered || 0,
      }
    },
    /**
     * The contexts (copies of the package, in any thread) registered and not
     * torn down yet, and those of them that registered an out array (zeros
     * with an older shared addon).
     */
    contextCounts() {
      const r = d.rare()
      const c = typeof r.contextCounts === 'function' ? r.contextCounts() : {}
      return { contexts: c.contexts || 0, outArrays: c.outArrays || 0 }
    },
    identity() {
      return d.rare().selfIdentity()
    },
    panicForTest() {
      d.rare().panicForTest()
    },
    /** Later-generation seam: `fn(pid)` gives start times (null restores the real ones). */
    setProcessStartTimeResolverForTest: (fn) => d.staleLocks().setProcessStartTimeResolverForTest(fn),
    /** The old-format rules applied to a parsed payload (no file, no mtime grace). */
    inspectLockPayloadForTest: (payload, staleMs, nowMs) => d.staleLocks().inspectLockPayloadForTest(payload, staleMs, nowMs),
    /** The database backend's connections and holds (null without a backend). */
    backendStats: () => {
      const b = d.backend()
      return b === null ? null : b.backendStats()
    },
  }
}

module.exports = { createTesting }
