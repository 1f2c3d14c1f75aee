'use strict'
// `session-lock inspect <sessionsDir>`: one row per lock file (`*.lock`) and
// per active-session marker (`*.active`), judged through the package's public
// API (inspectLockFile, readSessionMarker, findOrphanedSessions, the staleness
// default), with what `clean` would do about it.
//
// "Stuck" (exit status 1) means something needs an operator: a leftover that
// `clean` would remove, an orphaned marker whose session_end was never
// emitted, a live holder past its max hold, or a lock path that is not a
// regular file (acquires fail on it).

const fs = require('node:fs')
const path = require('node:path')
const { inspectLockFile, readSessionMarker, findOrphanedSessions, resolveSessionWriteLockStaleMs } = require('../../index.js')
const {
  UsageError,
  describeError,
  parseMs,
  parseOptions,
  useColor,
  painter,
  fmtDuration,
  table,
  readDirectory,
  wrap,
  localHost,
} = require('../cli-util')

const JSON_SCHEMA_VERSION = 1

const HELP = `Usage: session-lock inspect <sessionsDir> [--json] [--stale-ms N]

Show every session lock file (*.lock) and active-session marker (*.active) in
<sessionsDir>: kind (os = held through an OS lock, legacy = written by the old
TypeScript module, garbage = no payload naming a pid), holder pid (pid@host
for another machine), whether that pid is alive, whether an OS lock is held on
the file right now, age (of a held lock: since the hold began, not since its
refreshed createdAt), stale reasons, and what \`session-lock clean\` would
do with it. Lines fit 100 columns (long cells wrap). Nothing is changed.

Options:
  --json          print one JSON document instead of the table
  --stale-ms N    staleness limit for legacy lock files (default: the library's,
                  $OPENCLAW_SESSION_WRITE_LOCK_STALE_MS or 1800000)
  -h, --help      show this help

Exit status: 0 nothing is stuck, 1 something is (a leftover clean would remove,
an orphaned marker, a holder past its max hold, a lock path that is not a
regular file), 2 usage error or the directory cannot be read.`

/**
 * "os" (validity is the OS lock), "legacy" (an old module's payload naming a
 * pid), "garbage" (no payload with a pid: empty, not JSON, binary, truncated),
 * or null when the entry cannot be opened as a lock file.
 */
function kindOf(r) {
  if (r.error) return null
  if (r.kind === 'legacy' && r.pid == null) return 'garbage'
  return r.kind
}

function errorInfo(e) {
  return e ? { code: e.code, syscall: e.syscall, path: e.path, message: e.message } : null
}

/**
 * How long a row's lock has been held: from `heldSince` (the real start of an
 * OS-locked hold, kept while `createdAt` is refreshed), else the payload age.
 */
function holdAgeMs(row, nowMs) {
  const since = row.heldSince != null ? Date.parse(row.heldSince) : NaN
  return Number.isFinite(since) ? Math.max(0, nowMs - since) : row.ageMs
}

function lockRow(dir, name, nowMs, staleMs) {
  const file = path.join(dir, name)
  const r = inspectLockFile(file, { nowMs, staleMs, remove: false })
  if (r.error && r.error.code === 'ENOENT') return null // gone meanwhile
  const cleanable = name.endsWith('.jsonl.lock')
  const row = {
    file: name,
    path: file,
    type: 'lock',
    kind: kindOf(r),
    pid: r.pid,
    hostname: r.hostname,
    pidAlive: r.pid == null ? null : r.pidAlive,
    held: r.held,
    createdAt: r.createdAt,
    ageMs: r.ageMs,
    heldSince: r.heldSince ?? null,
    maxHoldMs: r.maxHoldMs,
    stale: r.stale,
    staleReasons: r.staleReasons,
    action: 'keep',
    why: '',
    stuck: false,
    session: null,
    error: errorInfo(r.error),
  }
  if (r.error) {
    row.action = 'none'
    row.why = `${describeError(r.error, file)}; acquires fail here, fix by hand`
    row.stuck = true
  } else if (r.held) {
    // A long hold keeps createdAt fresh: its real age runs from heldSince.
    const heldMs = holdAgeMs(row, nowMs)
    if (r.maxHoldMs != null && heldMs != null && heldMs > r.maxHoldMs) {
      row.why = `held past its max hold (${fmtDuration(heldMs)} > ${fmtDuration(r.maxHoldMs)}): is pid ${r.pid} stuck?`
      row.stuck = true
    } else {
      row.why = r.maxHoldMs != null ? `held (max hold ${fmtDuration(r.maxHoldMs)})` : 'held'
    }
  } else if (r.stale) {
    if (cleanable) {
      row.action = 'remove'
      row.why = r.staleReasons.join(', ')
      row.stuck = true
    } else {
      row.why = 'not a *.jsonl.lock (clean skips it; the next acquire reclaims it)'
    }
  } else if (r.kind === 'legacy' && r.pidAlive) {
    row.why = `live old-module holder (stale after ${fmtDuration(staleMs)})`
  } else if (r.staleReasons.length > 0) {
    row.why = 'no payload yet (grace period)'
  }
  return row
}

/**
 * A marker row. `orphans`: the markers findOrphanedSessions reports (their
 * owner died), which `clean` recovers; an unheld file that is not a session
 * marker is left alone by `clean`, and so here.
 */
function markerRow(dir, name, nowMs, staleMs, orphans) {
  const file = path.join(dir, name)
  const r = inspectLockFile(file, { nowMs, staleMs, remove: false })
  if (r.error && r.error.code === 'ENOENT') return null
  const m = readSessionMarker(file) || {}
  const startedMs = m.startedAt !== undefined ? Date.parse(m.startedAt) : NaN
  const session =
    m.sessionId !== undefined
      ? {
          sessionId: m.sessionId,
          sessionKey: m.sessionKey ?? null,
          agentId: m.agentId ?? null,
          sessionFile: m.sessionFile ?? null,
          messageCount: m.messageCount ?? null,
          startedAt: m.startedAt ?? null,
        }
      : null
  const orphan = !r.error && !r.held && orphans.has(file)
  // The old rules' createdAt does not apply to markers (they carry startedAt).
  const reasons = r.staleReasons.filter((x) => x !== 'invalid-createdAt' && x !== 'too-old')
  const row = {
    file: name,
    path: file,
    type: 'marker',
    kind: r.error ? null : m.lock === 'os' ? 'os' : kindOf(r),
    pid: m.pid ?? r.pid,
    hostname: m.hostname ?? r.hostname,
    pidAlive: r.pid == null ? null : r.pidAlive,
    held: r.held,
    createdAt: session ? session.startedAt : null,
    ageMs: Number.isFinite(startedMs) ? nowMs - startedMs : null,
    heldSince: null,
    maxHoldMs: null,
    stale: orphan,
    staleReasons: r.held ? [] : reasons,
    action: 'keep',
    why: '',
    stuck: false,
    session,
    error: errorInfo(r.error),
  }
  if (r.error) {
    row.action = 'none'
    row.why = `${describeError(r.error, file)}; fix by hand`
    row.stuck = true
  } else if (r.held) {
    row.why = `live ${session ? `session ${session.sessionId}` : 'unreadable marker'}`
  } else if (orphan) {
    row.action = 'recover'
    row.why = `owner gone: session_end for ${session.sessionId}, then remove`
    row.stuck = true
  } else {
    row.why = 'not a session marker (clean leaves it)'
  }
  return row
}

/**
 * Inspect a sessions directory. Throws CliError (exit 2) when it cannot be read.
 * @returns {{version:number, sessionsDir:string, nowMs:number, staleMs:number, stuck:boolean,
 *   summary:object, rows:object[]}}
 */
function inspectDir(sessionsDir, { staleMs, nowMs = Date.now() } = {}) {
  const dir = path.resolve(sessionsDir)
  const names = readDirectory(dir)
  const effStale = staleMs ?? resolveSessionWriteLockStaleMs()
  const orphans = names.some((n) => n.endsWith('.active'))
    ? new Set(findOrphanedSessions({ sessionsDir: dir }).map((o) => o.markerPath))
    : new Set()
  const rows = []
  for (const name of names.sort((a, b) => a.localeCompare(b))) {
    let row = null
    if (name.endsWith('.lock')) row = lockRow(dir, name, nowMs, effStale)
    else if (name.endsWith('.active')) row = markerRow(dir, name, nowMs, effStale, orphans)
    if (row) rows.push(row)
  }
  const summary = {
    locks: rows.filter((r) => r.type === 'lock').length,
    markers: rows.filter((r) => r.type === 'marker').length,
    held: rows.filter((r) => r.held).length,
    stuck: rows.filter((r) => r.stuck).length,
    wouldRemove: rows.filter((r) => r.action === 'remove').length,
    wouldRecover: rows.filter((r) => r.action === 'recover').length,
  }
  return {
    version: JSON_SCHEMA_VERSION,
    sessionsDir: dir,
    hostname: localHost,
    nowMs,
    staleMs: effStale,
    stuck: summary.stuck > 0,
    summary,
    rows,
  }
}

/** Width of the text output: 100 columns, or the terminal's when narrower. */
function outputWidth(stream = process.stdout) {
  const cols = stream && stream.isTTY && stream.columns
  return cols && cols < 100 ? Math.max(cols, 60) : 100
}

/** A holder column: the pid, with its host when that is another machine. */
function holderCell(r, localHostname) {
  if (r.pid == null) return '-'
  if (r.hostname == null || r.hostname === localHostname) return String(r.pid)
  const host = r.hostname.length > 16 ? `${r.hostname.slice(0, 15)}…` : r.hostname
  return `${r.pid}@${host}`
}

/**
 * The table of an inspection, every line at most `width` columns: long file
 * names, reasons and actions wrap onto continuation lines (never cut; the
 * JSON output has every field whole).
 */
function renderInspection(report, paint, width = outputWidth()) {
  const rows = report.rows.map((r) => {
    const other = r.hostname != null && r.hostname !== report.hostname
    const alive = r.pidAlive == null ? '-' : other ? '?' : r.pidAlive ? ['yes', paint.green] : ['no', paint.red]
    const actionText = `${r.action}${r.why ? `: ${r.why}` : ''}`
    const action =
      r.action === 'remove' || r.action === 'recover'
        ? [actionText, paint.yellow]
        : r.stuck
          ? [actionText, paint.red]
          : [actionText, paint.dim]
    return [
      r.file,
      r.kind ?? '-',
      holderCell(r, report.hostname),
      alive,
      r.held ? ['yes', paint.green] : 'no',
      fmtDuration(r.type === 'lock' ? holdAgeMs(r, report.nowMs) : r.ageMs),
      r.staleReasons.length ? r.staleReasons.join(',') : '-',
      action,
    ]
  })
  const out = []
  for (const line of wrap(report.sessionsDir, width, /(?<=\/)/)) out.push(paint.bold(line))
  if (rows.length === 0) {
    out.push('no lock files or active-session markers')
  } else {
    out.push(
      table(['FILE', 'KIND', 'PID', 'ALIVE', 'HELD', 'AGE', 'STALE REASONS', 'CLEAN WOULD'], rows, paint, {
        maxWidth: width,
        minWidths: { 0: 20, 6: 17, 7: 19 },
        breaks: { 0: /(?<=[._-])/, 6: /(?<=,)/, 7: /(?<= )/ },
      }),
    )
  }
  const s = report.summary
  const parts = [`${s.locks} lock file${s.locks === 1 ? '' : 's'}`, `${s.markers} marker${s.markers === 1 ? '' : 's'}`, `${s.held} held`]
  if (s.stuck > 0) {
    parts.push(paint.red(`${s.stuck} stuck`))
    const fix = []
    if (s.wouldRemove) fix.push(`remove ${s.wouldRemove}`)
    if (s.wouldRecover) fix.push(`recover ${s.wouldRecover}`)
    out.push(`${parts.join(', ')}${fix.length ? ` (session-lock clean would ${fix.join(' and ')})` : ''}`)
  } else {
    parts.push(paint.green('nothing stuck'))
    out.push(parts.join(', '))
  }
  return out.join('\n')
}

async function run(argv) {
  const { values, positionals } = parseOptions(
    argv,
    { json: { type: 'boolean' }, 'stale-ms': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    'inspect',
    { maxPositionals: 1 },
  )
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  if (positionals.length !== 1) {
    throw new UsageError('missing <sessionsDir>', 'inspect')
  }
  const staleMs = values['stale-ms'] !== undefined ? parseMs(values['stale-ms'], '--stale-ms', 'inspect', { allowZero: false }) : undefined
  const report = inspectDir(positionals[0], { staleMs })
  // With the PostgreSQL backend configured: its holders and waiters too.
  const database = await require('./inspect-database').inspectDatabase()
  if (database !== null) report.database = database
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  } else {
    process.stdout.write(`${renderInspection(report, painter(useColor(process.stdout)))}\n`)
    if (database !== null) process.stdout.write(`${require('./inspect-database').renderDatabase(database)}\n`)
  }
  return report.stuck ? 1 : 0
}

module.exports = { run, HELP, inspectDir, renderInspection }
