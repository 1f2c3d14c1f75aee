#!/usr/bin/env node
'use strict'
// session-lock: see, clean, hold and demo session write locks.
// Each command is one module under ./commands exporting run(argv) and HELP,
// registered in COMMANDS below (name -> loader). This file dispatches and turns
// errors into one line on stderr and an exit status.

const { UsageError } = require('./cli-util')

const COMMANDS = {
  inspect: () => require('./commands/inspect'),
  clean: () => require('./commands/clean'),
  hold: () => require('./commands/hold'),
  demo: () => require('./commands/demo'),
  openclaw: () => require('./commands/openclaw'),
}

const HELP = `Usage: session-lock <command> [options]

Commands:
  inspect <sessionsDir> [--json] [--stale-ms N]
        show every lock file and active-session marker, who holds it, whether
        it is stale and what clean would do (exit 1 when something is stuck)
  clean <sessionsDir> [--dry-run] [--stale-ms N]
        remove stale lock files and recover orphaned session markers
  hold <sessionFile> [--timeout ms | --wait] -- <command...>
        run a command while holding the session's write lock (like flock(1))
  demo [dir]
        workers contending on sessions, a SIGKILLed holder taken over, a
        SIGTERMed process ending its sessions, then inspect and clean
  openclaw <apply|verify|revert> <openclaw install dir> [--dry-run]
        run this package under an installed OpenClaw gateway (patch its
        bundled lock chunk; revert restores it byte for byte)

Run "session-lock <command> --help" for a command's options.
Options: -h, --help   this help;   -V, --version   the package version
Exit status 69: the native addon cannot be loaded here (the message says why).`

/** The package's native addon cannot be loaded here (EX_UNAVAILABLE of sysexits.h). */
const EXIT_NO_ADDON = 69
const NO_ADDON = new Set(['SESSION_WRITE_LOCK_NO_NATIVE', 'SESSION_WRITE_LOCK_UNSUPPORTED_NODE'])

function version() {
  return require('../package.json').version
}

async function main(argv) {
  const [cmd, ...rest] = argv
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    if (cmd === 'help' && rest[0] && COMMANDS[rest[0]]) {
      process.stdout.write(`${COMMANDS[rest[0]]().HELP}\n`)
      return 0
    }
    if (cmd === undefined) {
      process.stderr.write(`${HELP}\n`)
      return 2
    }
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`session-lock ${version()}\n`)
    return 0
  }
  const load = Object.prototype.hasOwnProperty.call(COMMANDS, cmd) ? COMMANDS[cmd] : undefined
  if (load === undefined) {
    throw new UsageError(`unknown command "${cmd}" (${Object.keys(COMMANDS).join(', ')})`)
  }
  if (cmd !== 'demo') {
    // `session-lock inspect dir | head`: a closed pipe is not an error worth a stack.
    process.stdout.on('error', (err) => {
      if (err && err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
      throw err
    })
  }
  try {
    return await load().run(rest)
  } catch (err) {
    if (err !== null && typeof err === 'object' && !err.command) err.command = cmd
    throw err
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code
  },
  (err) => {
    const where = err && err.command ? `session-lock ${err.command}` : 'session-lock'
    if (err && NO_ADDON.has(err.code)) {
      // The loader's own message says what is missing and how to build it.
      process.stderr.write(`${where}: ${String(err.message).split('\n')[0]}\n`)
      process.exitCode = EXIT_NO_ADDON
    } else if (err && typeof err.exitCode === 'number') {
      const hint = err instanceof UsageError ? ` (see: ${where} --help)` : ''
      if (err.quiet !== true) process.stderr.write(`${where}: ${err.message}${hint}\n`)
      process.exitCode = err.exitCode
    } else {
      // A bug, not a usage or I/O error: keep the stack for the report.
      process.stderr.write(`${where}: internal error: ${(err && err.stack) || err}\n`)
      process.exitCode = 70
    }
  },
)
