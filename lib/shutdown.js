'use strict'
// Process hooks (docs/spec.md, "Shutdown and session_end"): what a termination
// signal does. On `exit` and on termination signals the tracked sessions end
// (session_end, reason "shutdown") and every lock is released.
//
// One set of listeners per process (per thread in a worker: each worker has
// its own `process` emitter), however many copies of the package are loaded
// and however many times the test state is reset. The listeners live in a
// hub stored on `process` under a `Symbol.for` key; each loaded copy joins
// the hub once, on first use, and the listeners delegate to every copy that
// joined. Signals are plain `process.on` listeners, never native sigaction.
// Joining, the listeners themselves and the `exit` work are index.js's (cheap
// at the first acquire, synchronous at exit); this file is loaded by a
// signal listener when a signal arrives, or by __testing.handleTerminationSignal.
//
// The hooks never change whether a signal ends the process:
// - when our listener is the only one, or every other listener belongs to
//   the signal-exit library (which re-raises only when it sees itself alone),
//   we drain the sessions, release the locks, remove our listener and
//   re-raise: the process ends as it would have without us;
// - when the application listens too, it decides: we start the drain and keep
//   the locks (and our listener). A process that goes on running keeps its
//   sessions locked; the locks go at `exit`, by releaseAll, or with the
//   process (the kernel frees an OS lock whatever the death).

const { resolveShutdownDrainMs, aliasesOf, releaseAndReraise } = require('./options')

const LOG_PREFIX = '[session-write-lock]'

function report(what, err) {
  try {
    process.stderr.write(`${LOG_PREFIX} ${what}: ${(err && err.stack) || err}\n`)
  } catch {
    // stderr gone: nothing else to do
  }
}

// ---------------------------------------------------------------- the hub's work

// signal-exit keeps a process-wide count of its loaded copies: v3 on
// `process.__signal_exit_emitter__`, v4 on a `Symbol.for('signal-exit
// emitter')` global. Each loaded copy has one listener per signal, and a copy
// re-raises only when the signal's listener count equals that count (v4 adds
// v3's count to its own), i.e. when it believes itself alone.
const SIGNAL_EXIT_V4 = Symbol.for('signal-exit emitter')

function emitterCount(emitter) {
  if (emitter === null || (typeof emitter !== 'object' && typeof emitter !== 'function')) return 0
  const n = emitter.count
  return Number.isInteger(n) && n > 0 ? n : 0
}

/** How many listeners of a signal the loaded signal-exit copies account for. */
function signalExitListenerCount() {
  return emitterCount(process.__signal_exit_emitter__) + emitterCount(globalThis[SIGNAL_EXIT_V4])
}

/**
 * Whether the process would end by `signal` without our listener: nobody else
 * listens, or every other listener is signal-exit's (the test signal-exit
 * applies itself once ours is gone). Anything else is the application's own
 * listener, and then the application decides.
 */
function endsWithoutUs(hub, signal) {
  const signalExit = signalExitListenerCount()
  for (const name of [signal, ...aliasesOf(signal)]) {
    const ours = hub.listeners !== null ? hub.listeners[name] : undefined
    let others = 0
    for (const fn of process.listeners(name)) if (fn !== ours) others++
    if (others !== 0 && others !== signalExit) return false
  }
  return true
}

function onSignal(hub, signal) {
  const budgetMs = resolveShutdownDrainMs()
  if (!endsWithoutUs(hub, signal)) {
    // The application listens and decides how (and whether) the process
    // ends: start the drain, keep every listener, never re-raise, and keep
    // the locks. A process that goes on running (as an agent finishing its
    // turn does) must not write its session unlocked; the locks are released
    // at exit, by releaseAll, or by the kernel when the process dies.
    for (const p of hub.participants) {
      try {
        p.startDrain('shutdown', budgetMs)
      } catch (err) {
        report('session drain failed', err)
      }
    }
    return
  }
  if (hub.shuttingDown !== null) {
    // A second signal while draining: stop waiting and end now.
    finish(hub, signal)
    return
  }
  if (!anyPendingWork(hub)) {
    // Nothing to drain (locks only): release and re-raise right away.
    finish(hub, signal)
    return
  }
  hub.shuttingDown = signal
  const drains = []
  for (const p of hub.participants) {
    try {
      drains.push(Promise.resolve(p.drain('shutdown', budgetMs)))
    } catch (err) {
      report('session drain failed', err)
    }
  }
  // Each drain enforces the budget itself; this timer is the backstop (and
  // keeps the loop alive while handlers run).
  let done = false
  const end = () => {
    if (done) return
    done = true
    clearTimeout(backstop)
    finish(hub, signal)
  }
  const backstop = setTimeout(end, budgetMs + 250)
  Promise.allSettled(drains).then(end, end)
}

function anyPendingWork(hub) {
  for (const p of hub.participants) {
    // A participant without the method (another version) counts as busy.
    if (typeof p.hasPendingWork !== 'function') return true
    try {
      if (p.hasPendingWork()) return true
    } catch {
      return true
    }
  }
  return false
}

/**
 * Release everything, remove our listener, re-raise: with no listener left
 * Node restores the default action, which ends the process with a status
 * naming the signal; with only signal-exit's left, it now sees itself alone,
 * runs its exit callbacks and re-raises in turn.
 */
function finish(hub, signal) {
  hub.shuttingDown = null
  if (!endsWithoutUs(hub, signal)) {
    // The application started listening while we drained: its decision now,
    // and the locks stay (see onSignal).
    return
  }
  releaseAndReraise(hub, signal, report)
}

module.exports = { onSignal }
