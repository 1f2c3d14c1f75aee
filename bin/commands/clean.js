'use strict'
// `session-lock clean <sessionsDir>`: cleanStaleLockFiles (stale *.jsonl.lock
// files) plus recovery of orphaned active-session markers
// (recoverOrphanedSessions), printing what was removed and why.

const fs = require('node:fs')
const path = require('node:path')
const { cleanStaleLockFiles, recoverOrphanedSessions, inspectLockFile } = require('../../index.js')
const {
  UsageError,
  describeError,
  parseMs,
  parseOptions,
  effectiveStaleMs,
  useColor,
  painter,
  fmtDuration,
  readBounded,
  requireDirectory,
  localHost,
} = require('../lib/util')

const HELP = `Usage: session-lock clean <sessionsDir> [--dry-run] [--stale-ms N] [--locks-only] [--json]

Remove stale session lock files (*.jsonl.lock) with cleanStaleLockFiles, and
recover orphaned active-session markers (*.active whose owner died without
ending its sessions): each gets a session_end event with reason "unknown",
printed here, and its marker is removed. A lock or marker that is held by a
live process is never touched.

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
not be removed or recovered, 2 usage error or the directory cannot be read.`

function readMarker(file) {
  try {
    const v = JSON.parse(readBounded(file))
    return v !== null && typeof v === 'object' ? v : null
  } catch {
    return null
  }
}

/** Markers in `dir` whose OS lock is free, as recoverOrphanedSessions would see them. */
function orphanedMarkers(dir, nowMs) {
  const out = []
  let names = []
  try {
    names = fs.readdirSync(dir)
  } catch {
    return out
  }
  for (const name of names.filter((n) => n.endsWith('.active')).sort((a, b) => a.localeCompare(b))) {
    const file = path.join(dir, name)
    const r = inspectLockFile(file, { nowMs })
    if (r.error || r.held) continue
    const m = readMarker(file) || {}
    out.push({
      path: file,
      sessionId: m.sessionId ?? null,
      sessionKey: m.sessionKey,
      sessionFile: m.sessionFile,
      messageCount: m.messageCount ?? 0,
      recovered: { pid: m.pid ?? r.pid, hostname: m.hostname ?? r.hostname, startedAt: m.startedAt },
    })
  }
  return out
}

async function cleanDir(sessionsDir, { dryRun = false, staleMs, locksOnly = false, nowMs = Date.now() } = {}) {
  const dir = path.resolve(sessionsDir)
  requireDirectory(dir)
  const effStale = effectiveStaleMs(staleMs)
  const res = await cleanStaleLockFiles({
    sessionsDir: dir,
    staleMs: effStale,
    removeStale: !dryRun,
    nowMs,
    log: { warn() {}, info() {} },
  })
  const removed = []
  const failed = []
  for (const l of res.locks) {
    if (!l.stale) continue
    if (dryRun || l.removed) {
      removed.push(l)
    } else if (fs.existsSync(l.lockPath)) {
      // Not removed: taken over meanwhile (fine) or an error (say which).
      const again = inspectLockFile(l.lockPath, { nowMs, staleMs: effStale })
      if (again.held || !again.stale) continue
      failed.push({ path: l.lockPath, cause: again.error ? describeError(again.error, l.lockPath) : 'could not remove' })
    }
  }
  const held = res.locks.filter((l) => l.held).length
  let recovered = []
  let markerError = null
  if (!locksOnly) {
    if (dryRun) {
      recovered = orphanedMarkers(dir, nowMs).map((m) => ({ ...m, reason: 'unknown' }))
    } else {
      try {
        const r = await recoverOrphanedSessions({ sessionsDir: dir })
        recovered = r.recovered
      } catch (err) {
        markerError = describeError(err, dir)
      }
    }
  }
  return {
    version: 1,
    sessionsDir: dir,
    dryRun,
    staleMs: effStale,
    removed,
    recovered,
    failed,
    markerError,
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
  for (const f of r.failed) out.push(`${paint.red('failed')} ${f.cause}`)
  if (r.markerError) out.push(`${paint.red('failed')} marker recovery: ${r.markerError}`)
  const n = r.removed.length
  const m = r.recovered.length
  const summary = []
  if (n === 0 && m === 0 && r.failed.length === 0 && !r.markerError) summary.push('nothing to clean')
  else {
    summary.push(`${r.dryRun ? 'would remove' : 'removed'} ${n} stale lock file${n === 1 ? '' : 's'}`)
    summary.push(`${r.dryRun ? 'would recover' : 'recovered'} ${m} orphaned session${m === 1 ? '' : 's'}`)
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
  return r.failed.length > 0 || r.markerError ? 1 : 0
}

module.exports = { run, HELP, cleanDir, renderClean }
