'use strict'
// `session-lock hold <file> -- <command...>`: run a command while holding the
// session's write lock, like flock(1). The command's exit status (or the
// signal that ended it) is passed through; signals sent to this process are
// forwarded to the command, and the lock is released only after it exits.

const fs = require('node:fs')
const path = require('node:path')
const tty = require('node:tty')
const { spawn } = require('node:child_process')
const { acquireSessionWriteLock, isSessionWriteLockTimeoutError, inspectLockFile } = require('../../index.js')
const { UsageError, CliError, describeError, parseMs, parseOptions, fmtDuration } = require('../cli-util')

/** Lock not acquired within --timeout (EX_TEMPFAIL of sysexits.h). */
const EXIT_BUSY = 75
/** The lock could not be taken for another reason (EX_OSERR). */
const EXIT_LOCK_ERROR = 71

const HELP = `Usage: session-lock hold <sessionFile> [--timeout ms | --wait] [--] <command> [args...]

Run <command> while holding the write lock of <sessionFile> (the lock file is
<sessionFile>.lock), like flock(1), so scripts and cron jobs that edit a
transcript never interleave with the gateway or with each other. The lock is
released when the command exits, however it exits.

Options:
  --timeout ms    give up if the lock is not free within ms (default: the
                  library's, $OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS or
                  10000); --timeout 0 tries once and never waits
  -w, --wait      wait as long as it takes
  -q, --quiet     no message when the lock is busy
  -h, --help      show this help

The command runs without a shell, with SESSION_WRITE_LOCK_PATH and
SESSION_WRITE_LOCK_FENCING_TOKEN in its environment. SIGTERM, SIGHUP, SIGUSR2
(and SIGINT, SIGQUIT when not on a terminal, where the terminal already sends
them to the command) are forwarded to it. No watchdog runs: the lock lives
exactly as long as the command.

Exit status: the command's; if it was killed by a signal, this process ends by
the same signal. 75 the lock was busy past --timeout, 71 the lock could not be
taken (e.g. permission denied), 126 the command cannot be run, 127 not found,
2 usage error, or <sessionFile> is a directory or its directory does not exist
(hold never creates directories).`

const FORWARDED = ['SIGTERM', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR2']

function parse(argv) {
  const { values, positionals, rest } = parseOptions(
    argv,
    {
      timeout: { type: 'string', short: 't' },
      wait: { type: 'boolean', short: 'w' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
    'hold',
    { stopAtPositional: 0 },
  )
  if (values.help) return { help: true }
  if (positionals.length === 0) throw new UsageError('missing <sessionFile>', 'hold')
  const command = rest ?? []
  if (command.length === 0) throw new UsageError('missing <command> (hold <sessionFile> -- <command...>)', 'hold')
  if (values.wait && values.timeout !== undefined) throw new UsageError('--wait and --timeout exclude each other', 'hold')
  const file = positionals[0]
  if (file.endsWith('.lock')) {
    throw new UsageError(`${file}: pass the session file, not its lock file (the lock is <sessionFile>.lock)`, 'hold')
  }
  let timeoutMs
  if (values.wait) timeoutMs = Infinity
  else if (values.timeout !== undefined) timeoutMs = parseMs(values.timeout, '--timeout', 'hold', { allowInfinity: true })
  return { file, command, timeoutMs, quiet: values.quiet === true }
}

/**
 * The CLI protects a session file in an existing directory, nothing else: a
 * typo in a cron job must fail loudly, not lock a fresh directory's file or
 * `<dir>.lock` (the library itself still creates missing directories, as the
 * module it replaces did).
 */
function checkSessionPath(sessionFile) {
  const dir = path.dirname(sessionFile)
  try {
    if (!fs.statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    if (err.code === 'ENOENT') throw new CliError(`${dir}: no such directory (ENOENT); the session file's directory must exist`, 2)
    if (err.code === 'ENOTDIR') throw new CliError(`${dir}: not a directory (ENOTDIR)`, 2)
    return // EACCES and the like: the acquire reports them (exit 71)
  }
  let st = null
  try {
    st = fs.statSync(sessionFile)
  } catch {
    return // a session file that does not exist yet is fine
  }
  if (st.isDirectory()) {
    throw new CliError(`${sessionFile}: is a directory (EISDIR); pass a session file (for example ${sessionFile}/<id>.jsonl)`, 2)
  }
}

function exitBySignal(sig) {
  for (const l of process.listeners(sig)) process.removeListener(sig, l)
  const num = require('node:os').constants.signals[sig] || 0
  // Should the default action not end us (ignored by the parent), say so by status.
  setTimeout(() => process.exit(128 + num), 200).unref()
  process.kill(process.pid, sig)
}

function run(argv) {
  const opts = parse(argv)
  if (opts.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  const sessionFile = path.resolve(opts.file)
  checkSessionPath(sessionFile)
  return new Promise((resolve, reject) => {
    const interactive = tty.isatty(0)
    const ac = new AbortController()
    let child = null
    let pendingSignal = null
    let done = false

    const onSignal = (sig) => {
      if (child !== null) {
        if (interactive && (sig === 'SIGINT' || sig === 'SIGQUIT')) return // the terminal sent it to the command too
        try {
          child.kill(sig)
        } catch {
          // already gone
        }
      } else if (!done && pendingSignal === null) {
        pendingSignal = sig
        ac.abort(Object.assign(new Error(`interrupted by ${sig}`), { code: 'ABORT_ERR' }))
      }
    }
    const handlers = new Map()
    for (const sig of FORWARDED) {
      const h = () => onSignal(sig)
      handlers.set(sig, h)
      process.on(sig, h)
    }

    const busy = (message) => Object.assign(new CliError(message, EXIT_BUSY), { quiet: opts.quiet })
    const started = Date.now()
    acquireSessionWriteLock({ sessionFile, timeoutMs: opts.timeoutMs === 0 ? undefined : opts.timeoutMs, maxHoldMs: Infinity, signal: ac.signal }).then(
      (lease) => {
        // The command is the holder here, so this process alone decides what a
        // signal does: forward it, wait for the command, release, then exit.
        // The library's listeners (which, beside ours, would only start a
        // session drain) are taken off so nothing else reacts to it.
        for (const sig of FORWARDED) {
          for (const l of process.listeners(sig)) if (l !== handlers.get(sig)) process.removeListener(sig, l)
        }
        if (pendingSignal !== null) {
          // A signal arrived as the grant did.
          lease.release().then(() => exitBySignal(pendingSignal))
          return
        }
        const [cmd, ...args] = opts.command
        try {
          child = spawn(cmd, args, {
            stdio: 'inherit',
            env: {
              ...process.env,
              SESSION_WRITE_LOCK_PATH: lease.lockPath,
              SESSION_WRITE_LOCK_FENCING_TOKEN: lease.fencingToken,
            },
          })
        } catch (err) {
          lease.release().then(() => reject(new CliError(`${cmd}: ${describeError(err)}`, 126)))
          return
        }
        child.on('error', (err) => {
          if (done) return
          done = true
          const code = err.code === 'ENOENT' ? 127 : 126
          const cause = err.code === 'ENOENT' ? 'command not found (ENOENT)' : describeError({ ...err, path: undefined })
          lease.release().then(() => reject(new CliError(`${cmd}: ${cause}`, code)))
        })
        child.on('exit', (code, sig) => {
          if (done) return
          done = true
          lease.release().then(() => {
            if (sig) exitBySignal(sig)
            else resolve(code ?? 0)
          })
        })
      },
      (err) => {
        done = true
        if (pendingSignal !== null) {
          exitBySignal(pendingSignal)
          return
        }
        if (isSessionWriteLockTimeoutError(err)) {
          const waited = opts.timeoutMs === 0 ? 'without waiting' : `after ${fmtDuration(Date.now() - started)}`
          reject(busy(`${err.lockPath}: busy, held by ${err.owner}; gave up ${waited}`))
          return
        }
        if (err && err.code === 'ABORT_ERR' && opts.timeoutMs === 0) {
          const lockPath = `${sessionFile}.lock`
          let owner = 'unknown'
          try {
            const pid = inspectLockFile(lockPath).pid
            if (pid != null) owner = `pid=${pid}`
          } catch {
            // keep "unknown"
          }
          reject(busy(`${lockPath}: busy, held by ${owner}; gave up without waiting (--timeout 0)`))
          return
        }
        if (err instanceof TypeError) {
          reject(new UsageError(err.message, 'hold'))
          return
        }
        reject(new CliError(describeError(err, `${sessionFile}.lock`), EXIT_LOCK_ERROR))
      },
    )
    if (opts.timeoutMs === 0) {
      // Try once: a free lock is granted synchronously; a pending one is cancelled.
      queueMicrotask(() => {
        if (pendingSignal === null && !done) ac.abort(Object.assign(new Error('busy'), { code: 'ABORT_ERR' }))
      })
    }
  })
}

module.exports = { run, HELP }
