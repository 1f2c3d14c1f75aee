'use strict'
// The native addon of this copy of the package, and the shaping of every
// error the package reports: the OS errors of the addon (Node's fs shape),
// the public error classes with the old module's names, codes and message
// text byte for byte, and the AbortError of a cancelled acquire. Every other
// module of lib/ reaches the addon through this one; loader.js finds the
// addon file (a local build, then the platform package) and may hand a second
// copy of the package the first copy's addon (one registry per process, see
// docs/distribution.md).

const native = require('../loader').load()

let rareFunctions = null
/**
 * The addon's rarely used functions (lock-file inspection, session markers,
 * release by path, listHeldLocks, identity, test seams): one
 * object the addon makes on this copy's first call (`rareFunctions()`, ABI 4:
 * napi-rs creates a JS function for every export when the addon loads, so a
 * require() created them all for nothing), or the addon itself where an older
 * one (SESSION_WRITE_LOCK_NATIVE_PATH, an older platform package) exports
 * them at its top level.
 */
function rare() {
  if (rareFunctions === null) rareFunctions = typeof native.rareFunctions === 'function' ? native.rareFunctions() : native
  return rareFunctions
}

/**
 * An OS error reported by the addon (`{ message, errno, code, syscall, path }`),
 * as a JS `Error` shaped like Node's own fs errors. Guarantees those five
 * fields and nothing else (no stack beyond this call).
 */
function osError(e) {
  const err = new Error(e.message)
  err.errno = e.errno
  err.code = e.code
  err.syscall = e.syscall
  err.path = e.path
  return err
}

class SessionWriteLockTimeoutError extends Error {
  constructor(params) {
    const { timeoutMs, lockPath, owner } = params
    super(`session file locked (timeout ${timeoutMs}ms): ${owner} ${lockPath}`)
    this.name = 'SessionWriteLockTimeoutError'
    this.reason = 'session_busy'
    this.code = 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT'
    this.timeoutMs = timeoutMs
    this.lockPath = lockPath
    this.owner = owner
    // Richer diagnostics stay out of the message (the old text is parsed).
    this.holder = params.holder ?? null
    this.hint = params.hint ?? null
  }
}

class SessionWriteLockLostError extends Error {
  constructor(lockPath, why) {
    super(`session write lock lost (${why}): ${lockPath}`)
    this.name = 'SessionWriteLockLostError'
    this.code = 'OPENCLAW_SESSION_WRITE_LOCK_LOST'
    this.lockPath = lockPath
    this.why = why
  }
}

/** `instanceof`, or the code (an error of another copy of the package). */
function isSessionWriteLockTimeoutError(err) {
  return (
    err instanceof SessionWriteLockTimeoutError ||
    (err != null && typeof err === 'object' && err.code === 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
  )
}

/** What an acquire cancelled by `signal` rejects with: its reason, else an AbortError. */
function abortReason(signal) {
  if (signal.reason !== undefined) return signal.reason
  const err = new Error('The operation was aborted')
  err.name = 'AbortError'
  err.code = 'ABORT_ERR'
  return err
}

module.exports = {
  native,
  rare,
  osError,
  SessionWriteLockTimeoutError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  abortReason,
}
