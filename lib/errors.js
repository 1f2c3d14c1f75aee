'use strict'
// The package's public error classes (docs/spec.md, "The API"), with the old
// module's names, codes and message text byte for byte, and the AbortError a
// cancelled acquire rejects with. Pure JavaScript: no addon, no state.

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
  SessionWriteLockTimeoutError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  abortReason,
}
