'use strict'
// session-write-lock: the package entry (CommonJS). See README.md and
// docs/spec.md for the API, docs/migration.md for both upstream generations;
// index.d.ts for the types; docs/design.md for the modules under lib/.
//
// Loaded with the package: the addon and the error classes (lib/native.js)
// and the options (lib/options.js). Run on the first acquire (or any call
// that needs them): what every acquire needs (lib/locks.js, lib/context.js,
// lib/leases.js), carried in index.js as text that V8 compiles then
// (scripts/bundle.js), so a require() that never locks does not compile
// them. Each module file costs about 0.25 ms to load on a 2-core VM
// (resolution, read, compile), so these are few. Loaded on first use: session tracking (lib/sessions.js) and the inspection of lock
// files (lib/stale-locks.js). Loaded when a termination signal arrives: what
// the process hooks do about it (lib/shutdown.js; the hooks themselves are
// installed here, on the first acquire or tracked session). Loaded only when
// a database backend is configured: lib/backend.js and the PostgreSQL addon
// (docs/postgres.md). Those that keep per-copy state (sessions, stale locks,
// backend) are factories: this file makes this copy's instance of each, and a
// require cache that hands it another copy's module file (a cleared cache,
// jest) still gives it its own state.

const errors = require('./native')
const options = require('./options')

const { native, osError } = errors

let locks = null // lib/locks.js, once something needed it (fileLocks())
let sessionsInstance = null
let staleLocksInstance = null

// ---------------------------------------------------------------- process hooks
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

let shutdownModule = null // lib/shutdown.js, once a signal (or a test) needed it
let joined = false

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
const mySessions = () => sessionsInstance || noSessions

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

/** Join the hub (once; a boolean check afterwards): called on every acquire and every trackActiveSession. */
function ensureHooksOnFirstUse() {
  if (joined) return
  joined = true
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
    for (const sig of options.HOOKED_SIGNALS) {
      listeners[sig] = (signal) => onHookedSignal(hub, signal || sig)
      for (const alias of options.aliasesOf(sig)) listeners[alias] = () => {}
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
    const names = [signal, ...options.aliasesOf(signal)]
    for (const name of names) {
      for (const fn of process.listeners(name)) if (fn !== hub.listeners[name]) return
    }
    options.releaseAndReraise(hub, signal, report)
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

function sessions() {
  if (sessionsInstance === null) {
    // This thread's registry context (lib/context.js, run with lib/locks.js)
    // is what closes its session markers when a worker thread ends.
    fileLocks()
    sessionsInstance = require('./sessions').createSessions({
      native,
      osError,
      ensureHooks: ensureHooksOnFirstUse,
      repairHooks,
    })
  }
  return sessionsInstance
}

function staleLocks() {
  if (staleLocksInstance === null) staleLocksInstance = require('./stale-locks').createStaleLocks({ native })
  return staleLocksInstance
}

/** lib/locks.js (running lib/context.js and lib/leases.js with it) on its first use. */
function fileLocks() {
  if (locks === null) {
    locks = require('./locks')
    locks.setFirstUseHook(ensureHooksOnFirstUse)
    fileAcquire = locks.acquireSessionWriteLock
    fileRelease = locks.release
  }
  return locks
}

// ---------------------------------------------------------------- backend
// The database backend (lib/backend.js, docs/postgres.md) wraps acquire and
// release once configured, by configureSessionWriteLock or the environment
// (SESSION_WRITE_LOCK_BACKEND, read once, on first use). Until then, and for
// good when neither names a database, acquire and release are the file
// lock's own behind one check of `fileOnly`, and neither lib/backend.js nor
// the PostgreSQL addon is loaded.

let backendInstance = null // lib/backend.js's instance for this copy, once needed
let fileOnly = false // the environment was read and names no database; nothing configured
let lockTaken = false // a lock was taken while fileOnly (configuring later throws)

// The file lock's acquire and release: lib/locks.js's own once it ran.
let fileAcquire = (params) => fileLocks().acquireSessionWriteLock(params)
let fileRelease = (target) => fileLocks().release(target)

function createBackendInstance() {
  backendInstance = require('./backend').createBackend({
    loadNative: () => require('../loader').loadPostgres(native),
    errors,
    fileAcquire,
    fileRelease,
    lockTaken,
    envRead: fileOnly,
  })
  fileOnly = false
  return backendInstance
}

/** This copy's backend instance, or null when the file lock alone is in force. */
function backendInForce() {
  if (backendInstance !== null || fileOnly) return backendInstance
  const v = (process.env.SESSION_WRITE_LOCK_BACKEND ?? '').trim()
  if (v === '' || v === 'file') {
    fileOnly = true
    return null
  }
  // The instance reads the environment itself (and reports what is wrong with it).
  return createBackendInstance()
}

function acquireSessionWriteLock(params) {
  if (fileOnly) {
    lockTaken = true
    return fileAcquire(params)
  }
  const b = backendInForce()
  if (b !== null) return b.acquireSessionWriteLock(params)
  lockTaken = true
  return fileAcquire(params)
}

function release(target) {
  return backendInstance === null ? fileRelease(target) : backendInstance.release(target)
}

function configureSessionWriteLock(opts) {
  if (backendInstance === null && !lockTaken && opts !== null && typeof opts === 'object') {
    const b = opts.backend
    if (b === undefined || b === null || (typeof b === 'object' && b.kind === 'file')) {
      // The file lock, as without any configuration: an explicit choice wins
      // over the environment, and nothing more is loaded.
      fileOnly = true
      return { kind: 'file' }
    }
  }
  // A database, or something to report (bad options, too late): the backend's own rules.
  return (backendInstance ?? createBackendInstance()).configureSessionWriteLock(opts)
}

function inspectSessionWriteLockBackend() {
  const b = backendInForce()
  return b === null ? Promise.resolve(null) : b.inspectDatabase()
}

const __testing = {
  get cleanupSignals() {
    return options.HOOKED_SIGNALS.slice()
  },
  /** What our listener does on `signal`. */
  handleTerminationSignal: (signal) => signalHandling().onSignal(getHub(), signal),
  releaseAllLocksSync() {
    fileLocks().releaseAllSync()
  },
  runLockWatchdogCheck(nowMs) {
    fileLocks()
    return Promise.resolve(require('./leases').runWatchdog(typeof nowMs === 'number' ? nowMs : Date.now()))
  },
  /** PID-reuse seam: report `startTime` (null = unknown) as the start time of `pid`. */
  setStartTimeOverride(pid, startTime) {
    native.setStartTimeOverride(pid, startTime ?? null, false)
  },
  clearStartTimeOverrides() {
    native.setStartTimeOverride(0, null, true)
  },
  registryCounts() {
    return native.registryCounts()
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
    const c = typeof native.loopWaitCounts === 'function' ? native.loopWaitCounts() : {}
    return {
      watchers: c.watchers || 0,
      obtained: c.obtained || 0,
      attempts: c.attempts || 0,
      wakes: c.wakes || 0,
      numbered: c.numbered || 0,
    }
  },
  identity() {
    return native.selfIdentity()
  },
  panicForTest() {
    native.panicForTest()
  },
  /** Later-generation seam: `fn(pid)` gives start times (null restores the real ones). */
  setProcessStartTimeResolverForTest: (fn) => staleLocks().setProcessStartTimeResolverForTest(fn),
  /** The old-format rules applied to a parsed payload (no file, no mtime grace). */
  inspectLockPayloadForTest: (payload, staleMs, nowMs) => staleLocks().inspectLockPayloadForTest(payload, staleMs, nowMs),
  /** The database backend's connections and holds (null without a backend). */
  backendStats: () => (backendInstance === null ? null : backendInstance.backendStats()),
}

async function drainSessionWriteLockStateForTest() {
  if (sessionsInstance !== null) await sessionsInstance.drainForTest()
  if (locks !== null) locks.releaseAllSync()
}

function resetSessionWriteLockStateForTest() {
  if (sessionsInstance !== null) sessionsInstance.resetForTest()
  else repairHooks()
  if (staleLocksInstance !== null) staleLocksInstance.resetForTest()
  if (locks !== null) locks.resetLockStateForTest()
  if (backendInstance !== null) backendInstance.resetForTest()
  fileOnly = false
  lockTaken = false
}

module.exports = {
  acquireSessionWriteLock,
  release,
  configureSessionWriteLock,
  inspectSessionWriteLockBackend,
  releaseAll: () => fileLocks().releaseAll(),
  releaseAllSync: () => fileLocks().releaseAllSync(),
  listHeldLocks: () => fileLocks().listHeldLocks(),
  SessionWriteLockTimeoutError: errors.SessionWriteLockTimeoutError,
  SessionWriteLockError: errors.SessionWriteLockTimeoutError,
  SessionWriteLockLostError: errors.SessionWriteLockLostError,
  isSessionWriteLockTimeoutError: errors.isSessionWriteLockTimeoutError,
  resolveSessionLockMaxHoldFromTimeout: options.resolveSessionLockMaxHoldFromTimeout,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: options.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS: options.DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS: options.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionWriteLockAcquireTimeoutMs: options.resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs: options.resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs: options.resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions: options.resolveSessionWriteLockOptions,
  cleanStaleLockFiles: (params) => staleLocks().cleanStaleLockFiles(params),
  inspectLockFile: (...args) => staleLocks().inspectLockFile(...args),
  onSessionEnd: (handler) => sessions().onSessionEnd(handler),
  trackActiveSession: (s) => sessions().trackActiveSession(s),
  listActiveSessions: () => sessions().listActiveSessions(),
  drainActiveSessions: (o) => sessions().drainActiveSessions(o),
  recoverOrphanedSessions: (o) => sessions().recoverOrphanedSessions(o),
  findOrphanedSessions: (o) => sessions().findOrphanedSessions(o),
  readSessionMarker: (markerPath) => require('./markers').readSessionMarker(markerPath),
  __testing,
  testing: __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
}
