'use strict'
// `session-lock clean <sessionsDir>`: cleanStaleLockFiles (stale *.jsonl.lock
// files) plus recovery of orphaned active-session markers
// (recoverOrphanedSessions), printing what was removed and why.

const fs = require('node:fs')
const path = require('node:path')
const { cleanStaleLockFiles, recoverOrphanedSessions, findOrphanedSessions, inspectLockFile } = require('../../index.js')
const { inspectDir } = require('./inspect')
const {
  UsageError,
  CliError,
  describeError,
  parseMs,
  parseOptions,
  useColor,
  painter,
  fmtDuration,
  hintFor,
  localHost,
} = require('../cli-util')

const HELP = `Usage: session-lock clean <sessionsDir> [--dry-run] [--stale-ms N] [--locks-only] [--json]

Remove stale session lock files (*.jsonl.lock) with cleanStaleLockFiles, and
recover orphaned active-session markers (*.active whose owner died without
ending its sessions): each gets a session_end event with reason "unknown",
printed here, and its marker is removed. A lock or marker that is held by a
live process is never touched. What clean cannot fix (a directory, FIFO or
symlink at a lock path) is listed as "needs a hand".

Note: session_end handlers registered in your gateway do not run in this
process; the recovered events are printed (and in --json). Use --locks-only to
leave markers for the gateway's own recoverOrphanedSessions at startup.

Options:
  --dry-run       report what would be removed or recovered; change nothing
  --stale-ms N    staleness limit for legacy lock files (default: the library's,
                  $OPENCLAW_SESSION_WRITE_LOCK_STALE_MS or 1800000)
  --locks-only    do not recover markers
  --json          print one JSON document
  -h, --help      show this help

Exit status: 0 done (whether or not anything was stale), 1 something stale could
not be removed or recovered, or something needs a hand, 2 usage error or the
directory cannot be read.`

/** A failed removal: where, the error code, and what to do about it. */
function failure(lockPath, err) {
  const code = err && typeof err.code === 'string' ? err.code : null
  return {
    path: lockPath,
    file: path.basename(lockPath),
    code,
    message: err ? describeError({ code, message: err.message }) : 'could not remove',
    hint: hintFor(code),
  }
}

async function cleanDir(sessionsDir, { dryRun = false, staleMs, locksOnly = false, nowMs = Date.now() } = {}) {
  const dir = path.resolve(sessionsDir)
  // One pass with inspect's rules first: it refuses an unreadable directory
  // (one line, exit 2) and lists what needs a hand.
  const before = inspectDir(dir, { staleMs, nowMs })
  const effStale = before.staleMs
  let res
  try {
    res = await cleanStaleLockFiles({
      sessionsDir: dir,
      staleMs: effStale,
      removeStale: !dryRun,
      nowMs,
      log: { warn() {}, info() {} },
    })
  } catch (err) {
    throw new CliError(describeError(err, dir))
  }
  const removed = []
  const failed = []
  for (const l of res.locks) {
    if (!l.stale) continue
    if (dryRun || l.removed) {
      removed.push(l)
    } else if (fs.existsSync(l.lockPath)) {
      // Not removed: taken over meanwhile (fine) or an error (say which). The
      // library names the error code; without it, one more try tells it.
      if (typeof l.removeError === 'string') {
        failed.push(failure(l.lockPath, { code: l.removeError }))
        continue
      }
      const again = inspectLockFile(l.lockPath, { nowMs, staleMs: effStale, remove: true })
      if (again.removed) removed.push({ ...l, removed: true })
      else if (again.error) failed.push(failure(l.lockPath, again.error))
      else if (!again.held && again.stale) failed.push(failure(l.lockPath, null))
    }
  }
  const held = res.locks.filter((l) => l.held).length
  let recovered = []
  let markerError = null
  if (!locksOnly) {
    try {
      recovered = dryRun
        ? // What recoverOrphanedSessions would emit; nothing is emitted or removed.
          findOrphanedSessions({ sessionsDir: dir }).map((o) => ({ path: o.markerPath, ...o.event }))
        : (await recoverOrphanedSessions({ sessionsDir: dir })).recovered
    } catch (err) {
      markerError = describeError(err, dir)
    }
  }
  const needsHand = before.rows
    .filter((r) => r.action === 'none' && r.error && r.error.code !== 'ENOENT')
    .map((r) => ({
      file: r.file,
      path: r.path,
      code: r.error.code,
      message: describeError({ code: r.error.code, message: r.error.message }),
      hint: hintFor(r.error.code) ?? 'acquires of this session fail until it is removed by hand',
    }))
  return {
    version: 1,
    sessionsDir: dir,
    dryRun,
    staleMs: effStale,
    removed,
    recovered,
    failed,
    markerError,
    needsHand,
    heldLocks: held,
  }
}

function renderClean(r, paint) {
  const out = []
  const verbRemove = r.dryRun ? 'would remove' : 'removed'
  const verbRecover = r.dryRun ? 'would recover' : 'recovered'
  for (const l of r.removed) {
    const who = l.pid != null ? `pid ${l.pid}${l.pidAlive ? ' (alive)' : ''}` : 'no pid'
    const age = l.ageMs != null ? `, age ${fmtDuration(l.ageMs)}` : ''
    out.push(`${paint.yellow(verbRemove)} ${path.basename(l.lockPath)}: ${l.staleReasons.join(', ')} (${who}${age})`)
  }
  for (const e of r.recovered) {
    const rec = e.recovered || {}
    const host = rec.hostname && rec.hostname !== localHost ? ` on ${rec.hostname}` : ''
    const started = rec.startedAt ? `, started ${rec.startedAt}` : ''
    const file = e.sessionFile ? `${path.basename(e.sessionFile)}.active` : e.path ? path.basename(e.path) : 'marker'
    out.push(
      `${paint.yellow(verbRecover)} ${file}: session ${e.sessionId}${e.sessionKey ? ` (${e.sessionKey})` : ''}, ` +
        `${e.messageCount ?? 0} messages, owner pid ${rec.pid ?? '?'}${host} is gone${started}` +
        ` -> session_end reason=${e.reason ?? 'unknown'}${r.dryRun ? '' : ', marker removed'}`,
    )
  }
  for (const f of r.failed) {
    out.push(`${paint.red('failed to remove')} ${f.path}: ${f.message}${f.hint ? `; ${f.hint}` : ''}`)
  }
  if (r.markerError) out.push(`${paint.red('failed')} marker recovery: ${r.markerError}`)
  for (const h of r.needsHand) out.push(`${paint.red('needs a hand')}: ${h.file}: ${h.message}; ${h.hint}`)
  const n = r.removed.length
  const m = r.recovered.length
  const summary = []
  if (n === 0 && m === 0 && r.failed.length === 0 && !r.markerError && r.needsHand.length === 0) {
    summary.push('nothing to clean')
  } else {
    summary.push(`${r.dryRun ? 'would remove' : 'removed'} ${n} stale lock file${n === 1 ? '' : 's'}`)
    summary.push(`${r.dryRun ? 'would recover' : 'recovered'} ${m} orphaned session${m === 1 ? '' : 's'}`)
    if (r.failed.length > 0) summary.push(`${r.failed.length} could not be removed`)
    if (r.needsHand.length > 0) {
      summary.push(`${r.needsHand.length} ${r.needsHand.length === 1 ? 'entry needs' : 'entries need'} a hand`)
    }
  }
  summary.push(`${r.heldLocks} held lock${r.heldLocks === 1 ? '' : 's'} left alone`)
  out.push(`${r.sessionsDir}: ${summary.join('; ')}`)
  return out.join('\n')
}

async function run(argv) {
  const { values, positionals } = parseOptions(
    argv,
    {
      'dry-run': { type: 'boolean', short: 'n' },
      'stale-ms': { type: 'string' },
      'locks-only': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    'clean',
    { maxPositionals: 1 },
  )
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('missing <sessionsDir>', 'clean')
  const staleMs =
    values['stale-ms'] !== undefined ? parseMs(values['stale-ms'], '--stale-ms', 'clean', { allowZero: false }) : undefined
  const r = await cleanDir(positionals[0], {
    dryRun: values['dry-run'] === true,
    staleMs,
    locksOnly: values['locks-only'] === true,
  })
  if (values.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`)
  else process.stdout.write(`${renderClean(r, painter(useColor(process.stdout)))}\n`)
  return r.failed.length > 0 || r.markerError || r.needsHand.length > 0 ? 1 : 0
}

module.exports = { run, HELP, cleanDir, renderClean }
