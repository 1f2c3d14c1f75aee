'use strict'
// Every default, environment override and configuration lookup of the
// package's millisecond options, and the checks of acquire's parameters, in
// one place: the one parser of digits-only environment values (parseEnvMs,
// read through readEnvMs by every other module and, through the resolvers,
// by the CLI), and the names of the signals the process hooks listen to.
// Pure functions: nothing here touches the disk or the addon.

/** The acquire timeout of the later OpenClaw generation's resolver (60 s). */
const DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS = 60_000
const DEFAULT_SESSION_WRITE_LOCK_STALE_MS = 1_800_000
const DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS = 300_000
/** `acquireSessionWriteLock`'s own default timeout (the old module's 10 s). */
const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000
/** The longest delay a Node timer takes (about 24.8 days), and the cap of every computed hold. */
const MAX_TIMER_MS = 2_147_000_000
/** resolveSessionLockMaxHoldFromTimeout's default grace. */
const DEFAULT_MAX_HOLD_GRACE_MS = 120_000
/** The budget of a drain of active sessions (drainActiveSessions, a signal's drain). */
const DEFAULT_DRAIN_MS = 2000
/** Environment override of the signal drain's budget (digits). */
const ENV_DRAIN = 'SESSION_WRITE_LOCK_DRAIN_TIMEOUT_MS'

const ENV = Object.freeze({
  acquireTimeoutMs: 'OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS',
  staleMs: 'OPENCLAW_SESSION_WRITE_LOCK_STALE_MS',
  maxHoldMs: 'OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS',
})

/**
 * A millisecond count written in the environment: decimal digits only, after
 * trimming white space, and above zero; `"Infinity"` too when `allowInfinity`.
 * Anything else (empty, signs, exponents, hex, fractions, `0`) is `undefined`,
 * so the caller falls back to its default.
 */
function parseEnvMs(raw, allowInfinity = false) {
  if (typeof raw !== 'string') return undefined
  const v = raw.trim()
  if (allowInfinity && v === 'Infinity') return Infinity
  if (!/^\d+$/.test(v)) return undefined
  const n = Number(v)
  return n > 0 && Number.isFinite(n) ? n : undefined
}

/** `parseEnvMs(env[name])`; `env` defaults to `process.env` (also when not an object). */
function readEnvMs(name, { env, allowInfinity = false } = {}) {
  const source = env !== null && typeof env === 'object' ? env : process.env
  return parseEnvMs(source[name], allowInfinity)
}

/** A positive finite number (or `Infinity` when allowed), else `undefined`. */
function positiveMs(v, allowInfinity = false) {
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0) return undefined
  if (v === Infinity) return allowInfinity ? Infinity : undefined
  return v
}

function configMs(config, key, allowInfinity) {
  const writeLock = config?.session?.writeLock
  if (writeLock === null || typeof writeLock !== 'object') return undefined
  return positiveMs(writeLock[key], allowInfinity)
}

/** env, then `config.session.writeLock[key]`, then `fallback`. */
function resolveMs(key, config, env, fallback, allowInfinity) {
  return readEnvMs(ENV[key], { env, allowInfinity }) ?? configMs(config, key, allowInfinity) ?? fallback
}

/**
 * The acquire timeout a caller should pass: the environment variable wins,
 * then `config.session.writeLock.acquireTimeoutMs`, then 60 s. `Infinity` is
 * accepted from both (wait forever).
 */
function resolveSessionWriteLockAcquireTimeoutMs(config, env) {
  return resolveMs('acquireTimeoutMs', config, env, DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS, true)
}

/** The stale age for old-format files: env, then config, then 30 minutes. */
function resolveSessionWriteLockStaleMs(config, env) {
  return resolveMs('staleMs', config, env, DEFAULT_SESSION_WRITE_LOCK_STALE_MS, false)
}

/** The watchdog's limit: env, then config, then `fallback` (a positive number) or 5 minutes. */
function resolveSessionWriteLockMaxHoldMs(config, params) {
  const fallback = positiveMs(params?.fallback, true) ?? DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS
  return resolveMs('maxHoldMs', config, params?.env, fallback, false)
}

/** All three, as `acquireSessionWriteLock` takes them. */
function resolveSessionWriteLockOptions(config, params) {
  const env = params?.env
  return {
    timeoutMs: resolveSessionWriteLockAcquireTimeoutMs(config, env),
    staleMs: resolveSessionWriteLockStaleMs(config, env),
    maxHoldMs: resolveSessionWriteLockMaxHoldMs(config, { env, fallback: params?.maxHoldMsFallback }),
  }
}

// Per-call parameters of acquireSessionWriteLock / cleanStaleLockFiles: an
// explicit valid value wins, then the environment, then the default.

// These run on every acquire: process.env straight into parseEnvMs (what
// readEnvMs does without an `env`), without readEnvMs's options object, and a
// parameter left out skips positiveMs.

function resolveTimeoutParam(v) {
  return (v === undefined ? v : positiveMs(v, true)) ?? parseEnvMs(process.env[ENV.acquireTimeoutMs], true) ?? DEFAULT_ACQUIRE_TIMEOUT_MS
}

function resolveStaleParam(v) {
  return (v === undefined ? v : positiveMs(v, true)) ?? parseEnvMs(process.env[ENV.staleMs]) ?? DEFAULT_SESSION_WRITE_LOCK_STALE_MS
}

/** `Infinity` disables the watchdog for that lock. */
function resolveMaxHoldParam(v) {
  return (v === undefined ? v : positiveMs(v, true)) ?? parseEnvMs(process.env[ENV.maxHoldMs]) ?? DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS
}

/**
 * min(2_147_000_000, max(minMs, timeoutMs + graceMs)); minMs defaults to
 * 300_000 and graceMs to 120_000 (0, negative, NaN, non-numbers and Infinity
 * take the default); timeoutMs = Infinity gives 2_147_000_000, an invalid
 * timeoutMs counts as minMs.
 */
function resolveSessionLockMaxHoldFromTimeout(params) {
  const p = params ?? {}
  const minMs = positiveMs(p.minMs) ?? DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS
  const graceMs = positiveMs(p.graceMs) ?? DEFAULT_MAX_HOLD_GRACE_MS
  if (p.timeoutMs === Infinity) return MAX_TIMER_MS
  const timeoutMs = positiveMs(p.timeoutMs) ?? minMs
  return Math.min(MAX_TIMER_MS, Math.max(minMs, timeoutMs + graceMs))
}

/** The drain budget of a termination signal: env `SESSION_WRITE_LOCK_DRAIN_TIMEOUT_MS`, else 2000 ms. */
function resolveShutdownDrainMs() {
  return readEnvMs(ENV_DRAIN) ?? DEFAULT_DRAIN_MS
}

// The termination signals the process hooks listen to (index.js installs the
// listeners, lib/shutdown.js decides what a delivered one does). Windows: Node
// also delivers SIGBREAK (Ctrl+Break); SIGHUP there is the console window
// closing. (Listeners on the others are harmless there.)
const HOOKED_SIGNALS = Object.freeze(
  ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGABRT'].concat(process.platform === 'win32' ? ['SIGBREAK'] : []),
)

// Other names of a hooked signal's number. Node emits a delivered signal under
// every name that has listeners, and signal-exit listens to SIGIOT as well as
// SIGABRT: without a listener of ours there, its SIGIOT listener would see
// itself alone and end the process (reporting SIGIOT) before our drain. Our
// listener on an alias does nothing itself; it only stands in for ours.
let signalAliases = null
const NO_ALIASES = Object.freeze([])

/** The other names of hooked signal `signal` (SIGIOT for SIGABRT where they are one). */
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
  return signalAliases[signal] || NO_ALIASES
}

/**
 * End the process as `signal` would have without us: release every
 * participant's locks, remove our listeners for it (and its aliases), re-raise.
 * With no listener left Node's default action ends the process; with only
 * signal-exit's left, it now sees itself alone and re-raises in turn. Used by
 * lib/shutdown.js and by index.js's listener when that file cannot be loaded.
 */
function releaseAndReraise(hub, signal, report) {
  for (const p of hub.participants) {
    try {
      p.releaseSync()
    } catch (err) {
      report('releasing locks failed', err)
    }
  }
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

/** Throws a TypeError unless `sessionFile` is a non-empty string without NUL. */
function validateSessionFile(sessionFile) {
  if (typeof sessionFile !== 'string' || sessionFile.length === 0) {
    throw new TypeError('sessionFile must be a non-empty string')
  }
  if (sessionFile.includes('\0')) {
    throw new TypeError('sessionFile must not contain NUL characters')
  }
}

module.exports = {
  releaseAndReraise,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  DEFAULT_DRAIN_MS,
  MAX_TIMER_MS,
  readEnvMs,
  positiveMs,
  resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions,
  resolveTimeoutParam,
  resolveStaleParam,
  resolveMaxHoldParam,
  resolveSessionLockMaxHoldFromTimeout,
  resolveShutdownDrainMs,
  HOOKED_SIGNALS,
  aliasesOf,
  validateSessionFile,
}
