'use strict'
// The process hooks of one copy of the package, made on its first use (the
// first acquire or tracked session; index.js carries this file as text,
// scripts/bundle.js).
//
// On `exit` and on termination signals the tracked sessions end and every
// lock is released (docs/spec.md, "Shutdown and session_end"). One set of
// listeners per process (per thread in a worker), shared by every loaded copy
// of the package through a hub stored on `process` under a `Symbol.for` key
// (lib/shutdown.js says how a signal is handled). This copy joins the hub on
// first use (the first acquire or tracked session) and, if nobody installed
// them, adds the listeners: small functions here. The `exit` listener does its
// work here, synchronously; a signal listener loads lib/shutdown.js when a
// signal actually arrives, so the first acquire does not pay for that file.
// The hub's shape and the participant's methods are shared with other copies
// (possibly older files): they stay as they are.

const HUB_KEY = Symbol.for('session-write-lock.shutdown-hub')
const HUB_VERSION = 1
const LOG_PREFIX = '[session-write-lock]'

// This copy's side of the hub (one instance per copy of index.js, which
// bundles this file): what lib/index.js hands over once, on first use
// (`init`): `native` (the addon), `options` (lib/options.js, loaded on first
// use), `locksOf()` (lib/locks.js once loaded, else null), `sessionsOf()` (the
// session tracking once made, else null). Plain functions of the module, not a
// factory's closures: V8 then parses each once more on its first call, not
// twice.
let native = null
let options = null
let locksOf = null
let sessionsOf = null

function init(d) {
  native = d.native
  options = d.options
  locksOf = d.locksOf
  sessionsOf = d.sessionsOf
}

let shutdownModule = null // lib/shutdown.js, once a signal (or a test) needed it

function report(what, err) {
  try {
    process.stderr.write(`${LOG_PREFIX} ${what}: ${(err && err.stack) || err}\n`)
  } catch {
    // stderr gone (exit): nothing else to do
  }
}

function signalHandling() {
  if (shutdownModule === null) shutdownModule = require('./shutdown')
  return shutdownModule
}

const noSessions = {
  drainForShutdown: () => Promise.resolve({ emittedSessionIds: [], timedOut: false }),
  endAllSync() {},
  hasPendingWork: () => false,
}
const mySessions = () => sessionsOf() || noSessions

// What the hub calls in this copy. Kept small and stable: another copy's hub
// (possibly an older file) calls these names.
const participant = {
  /** Whether a drain has anything to do (active sessions or running handlers). */
  hasPendingWork() {
    return mySessions().hasPendingWork()
  },
  /** Drain this copy's sessions; resolves when done or the budget ran out. */
  drain(reason, budgetMs) {
    return mySessions().drainForShutdown(reason, budgetMs)
  },
  /** Start draining without waiting (another listener owns the exit). */
  startDrain(reason, budgetMs) {
    mySessions()
      .drainForShutdown(reason, budgetMs)
      .catch((err) => report('session drain failed', err))
  },
  releaseSync() {
    const locks = locksOf()
    if (locks !== null) locks.releaseAllSync()
  },
  /** `exit`: end sessions with synchronous handler calls, release everything. */
  exitSync() {
    try {
      mySessions().endAllSync('shutdown')
    } catch (err) {
      report('ending sessions at exit failed', err)
    }
    try {
      const locks = locksOf()
      if (locks !== null) locks.releaseAllSync()
    } catch (err) {
      report('releasing locks at exit failed', err)
    }
  },
}

function getHub() {
  let hub = process[HUB_KEY]
  if (hub === undefined) {
    hub = { version: HUB_VERSION, participants: new Set(), listeners: null, shuttingDown: null }
    Object.defineProperty(process, HUB_KEY, { value: hub, configurable: true, enumerable: false })
  }
  return hub
}

/** Join the hub (lib/index.js calls this once, on first use). */
function join() {
  const hub = getHub()
  hub.participants.add(participant)
  if (hub.listeners === null) installHooks(hub)
}

function installHooks(hub) {
  const listeners = { exit: () => onExit(hub) }
  // Signals are never delivered to a worker's `process`. The addon tells the
  // main thread for free; node:worker_threads costs milliseconds to load.
  const n = typeof native.isMainThread === 'function' ? native.isMainThread() : null
  if (typeof n === 'boolean' ? n : require('node:worker_threads').isMainThread) {
    for (const sig of options().HOOKED_SIGNALS) {
      listeners[sig] = (signal) => onHookedSignal(hub, signal || sig)
      for (const alias of options().aliasesOf(sig)) listeners[alias] = () => {}
    }
  }
  hub.listeners = listeners
  for (const event of Object.keys(listeners)) process.on(event, listeners[event])
}

function onExit(hub) {
  for (const p of hub.participants) {
    try {
      p.exitSync()
    } catch (err) {
      report('exit cleanup failed', err)
    }
  }
}

function onHookedSignal(hub, signal) {
  let m
  try {
    m = signalHandling()
  } catch (err) {
    // lib/shutdown.js cannot be loaded (the package was removed or replaced
    // on disk while the process ran): never swallow the signal. Alone, release
    // and re-raise; with another listener (the application's, or signal-exit's)
    // keep everything and let it decide.
    report(`could not load the signal handling for ${signal}`, err)
    const names = [signal, ...options().aliasesOf(signal)]
    for (const name of names) {
      for (const fn of process.listeners(name)) if (fn !== hub.listeners[name]) return
    }
    options().releaseAndReraise(hub, signal, report)
    return
  }
  m.onSignal(hub, signal)
}


/**
 * Put back any hub listener that went missing (a test that removed it, or a
 * signal path that removed ours). Never adds a second copy. Called by resets.
 */
function repairHooks() {
  const hub = process[HUB_KEY]
  if (hub === undefined || hub.listeners === null) return
  hub.shuttingDown = null
  for (const event of Object.keys(hub.listeners)) {
    const fn = hub.listeners[event]
    if (!process.listeners(event).includes(fn)) process.on(event, fn)
  }
}

module.exports = { init, join, signalHandling, getHub, repairHooks }
