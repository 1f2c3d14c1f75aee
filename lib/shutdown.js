'use strict'
// Process hooks (docs/spec.md, "Shutdown and session_end"): on `exit` and on termination signals, end the
// tracked sessions (session_end, reason "shutdown") and release every lock.
//
// One set of listeners per process (per thread in a worker: each worker has
// its own `process` emitter), however many copies of the package are loaded
// and however many times the test state is reset. The listeners live in a
// hub stored on `process` under a `Symbol.for` key; each loaded copy joins
// the hub once, on first use, and the listeners delegate to every copy that
// joined. Signals are plain `process.on` listeners, never native sigaction.
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

// lib/options.js is read when a signal's drain needs its budget, not at load:
// this module loads on every first acquire, and the package's entry carries
// its own instance of lib/options.js (index.js is one file, scripts/bundle.js).
function resolveShutdownDrainMs() {
  return require('./options').resolveShutdownDrainMs()
}

// Windows: Node also delivers SIGBREAK (Ctrl+Break); SIGHUP there is the
// console window closing. (Listeners on the others are harmless there.)
const cleanupSignals = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGABRT', ...(process.platform === 'win32' ? ['SIGBREAK'] : [])]
// Other names of a hooked signal's number. Node emits a delivered signal under
// every name that has listeners, and signal-exit listens to SIGIOT as well as
// SIGABRT: without a listener of ours there, its SIGIOT listener would see
// itself alone and end the process (reporting SIGIOT) before our drain.
// Our listener on an alias does nothing itself; it only stands in for ours.
let signalAliases = null
function aliasesOf(signal) {
  if (signalAliases === null) {
    // Linux and macOS define SIGIOT as SIGABRT (6): known without loading
    // node:os, which a fresh process has not loaded yet (~0.7 ms on a 2-core
    // VM). Elsewhere, read on first use (install), not at require time.
    signalAliases = {}
    if (process.platform === 'linux' || process.platform === 'darwin') {
      signalAliases.SIGABRT = ['SIGIOT']
    } else {
      const numbers = require('node:os').constants.signals || {}
      if (numbers.SIGIOT !== undefined && numbers.SIGIOT === numbers.SIGABRT) signalAliases.SIGABRT = ['SIGIOT']
    }
  }
  return signalAliases[signal] || []
}
const HUB_KEY = Symbol.for('session-write-lock.shutdown-hub')
const HUB_VERSION = 1
const LOG_PREFIX = '[session-write-lock]'

function report(what, err) {
  try {
    process.stderr.write(`${LOG_PREFIX} ${what}: ${(err && err.stack) || err}\n`)
  } catch {
    // stderr gone (exit): nothing else to do
  }
}

// ---------------------------------------------------------------- this copy

const noSessions = {
  drainForShutdown: () => Promise.resolve({ emittedSessionIds: [], timedOut: false }),
  endAllSync() {},
  hasPendingWork: () => false,
}

/**
 * This copy's membership in the hub (a factory: each copy of the package
 * joins with its own participant, even when the require cache hands it
 * another copy's module file). `deps`: `isMainThread()` (the addon's answer,
 * null when it cannot tell), `releaseAllSync()` (this copy's locks),
 * `sessions()` (this copy's session tracking, or null while none was loaded).
 * Returns `ensureHooksOnFirstUse()`: called on every acquire and every
 * trackActiveSession, a boolean check after the first call.
 */
function createShutdownHooks({ isMainThread, releaseAllSync, sessions }) {
  const mine = () => sessions() || noSessions
  // What the hub calls in this copy. Kept small and stable: another copy's hub
  // (possibly an older file) calls these names.
  const participant = {
    /** Whether a drain has anything to do (active sessions or running handlers). */
    hasPendingWork() {
      return mine().hasPendingWork()
    },
    /** Drain this copy's sessions; resolves when done or the budget ran out. */
    drain(reason, budgetMs) {
      return mine().drainForShutdown(reason, budgetMs)
    },
    /** Start draining without waiting (another listener owns the exit). */
    startDrain(reason, budgetMs) {
      mine()
        .drainForShutdown(reason, budgetMs)
        .catch((err) => report('session drain failed', err))
    },
    releaseSync() {
      releaseAllSync()
    },
    /** `exit`: end sessions with synchronous handler calls, release everything. */
    exitSync() {
      try {
        mine().endAllSync('shutdown')
      } catch (err) {
        report('ending sessions at exit failed', err)
      }
      try {
        releaseAllSync()
      } catch (err) {
        report('releasing locks at exit failed', err)
      }
    },
  }
  let joined = false
  return function ensureHooksOnFirstUse() {
    if (joined) return
    joined = true
    const hub = getHub()
    hub.participants.add(participant)
    if (hub.listeners === null) install(hub, signalsHooked(isMainThread))
  }
}

function getHub() {
  let hub = process[HUB_KEY]
  if (hub === undefined) {
    hub = {
      version: HUB_VERSION,
      participants: new Set(),
      listeners: null,
      shuttingDown: null,
    }
    Object.defineProperty(process, HUB_KEY, { value: hub, configurable: true, enumerable: false })
  }
  return hub
}

function signalsHooked(isMainThread) {
  // Signals are never delivered to a worker's `process`. The addon tells the
  // main thread for free; node:worker_threads costs milliseconds to load.
  const n = isMainThread()
  const main = typeof n === 'boolean' ? n : require('node:worker_threads').isMainThread
  return main ? cleanupSignals : []
}

function install(hub, signals) {
  const listeners = { exit: () => onExit(hub) }
  for (const sig of signals) {
    listeners[sig] = (signal) => onSignal(hub, signal || sig)
    for (const alias of aliasesOf(sig)) listeners[alias] = () => {}
  }
  hub.listeners = listeners
  for (const [event, fn] of Object.entries(listeners)) process.on(event, fn)
}

/**
 * Put back any hub listener that went missing (a test that removed it, or a
 * signal path that removed ours). Never adds a second copy. Called by resets.
 */
function repairHooks() {
  const hub = process[HUB_KEY]
  if (hub === undefined || hub.listeners === null) return
  hub.shuttingDown = null
  for (const [event, fn] of Object.entries(hub.listeners)) {
    if (!process.listeners(event).includes(fn)) process.on(event, fn)
  }
}

// ---------------------------------------------------------------- the hub's work

function onExit(hub) {
  for (const p of hub.participants) {
    try {
      p.exitSync()
    } catch (err) {
      report('exit cleanup failed', err)
    }
  }
}

function releaseEverything(hub) {
  for (const p of hub.participants) {
    try {
      p.releaseSync()
    } catch (err) {
      report('releasing locks failed', err)
    }
  }
}

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
  releaseEverything(hub)
  for (const name of [signal, ...aliasesOf(signal)]) {
    const ours = hub.listeners !== null ? hub.listeners[name] : undefined
    if (ours !== undefined) process.removeListener(name, ours)
  }
  // (No exit fallback: tests that stub process.kill, as the old module's
  // did, must survive this.)
  try {
    // Windows can raise only SIGINT/SIGTERM/SIGKILL/SIGQUIT (each a
    // TerminateProcess); SIGBREAK and SIGHUP end a process by default there
    // too, so end it the same way.
    process.kill(process.pid, process.platform === 'win32' && (signal === 'SIGBREAK' || signal === 'SIGHUP') ? 'SIGTERM' : signal)
  } catch (err) {
    report(`could not re-raise ${signal}`, err)
  }
}

/** `__testing.handleTerminationSignal`: what our listener does on `signal`. */
function handleTerminationSignal(signal) {
  onSignal(getHub(), signal)
}

module.exports = {
  cleanupSignals,
  createShutdownHooks,
  handleTerminationSignal,
  repairHooks,
}
