'use strict'
// cleanStaleLockFiles (docs/spec.md, "Old lock files"): report every *.jsonl.lock in a sessions
// directory, judged by the old module's rules (old files) or by the OS lock
// (ours), and remove the stale ones.

const fs = require('node:fs')
const path = require('node:path')
const { native, resolveStaleMs } = require('./lock')

function toInspection(r) {
  return {
    lockPath: r.lockPath,
    pid: r.pid ?? null,
    pidAlive: r.pidAlive,
    createdAt: r.createdAt ?? null,
    ageMs: r.ageMs ?? null,
    stale: r.stale,
    staleReasons: r.staleReasons,
    removed: r.removed,
    held: r.held,
  }
}

/**
 * Inspect one lock file (no removal unless `remove`). Extra fields beyond the
 * contract's SessionLockInspection: kind ("os" | "legacy"), hostname,
 * maxHoldMs, error.
 */
function inspectLockFile(lockPath, { nowMs = Date.now(), staleMs, remove = false } = {}) {
  const r = native.inspectLock(lockPath, nowMs, resolveStaleMs(staleMs), remove)
  return {
    ...toInspection(r),
    kind: r.kind,
    hostname: r.hostname ?? null,
    maxHoldMs: r.maxHoldMs ?? null,
    error: r.error ?? null,
  }
}

async function cleanStaleLockFiles(params) {
  if (params === null || typeof params !== 'object' || typeof params.sessionsDir !== 'string') {
    throw new TypeError('cleanStaleLockFiles expects { sessionsDir: string }')
  }
  const sessionsDir = path.resolve(params.sessionsDir)
  const staleMs = resolveStaleMs(params.staleMs)
  const removeStale = params.removeStale !== false
  const nowMs = typeof params.nowMs === 'number' && Number.isFinite(params.nowMs) ? params.nowMs : Date.now()
  const log = params.log
  let names
  try {
    names = await fs.promises.readdir(sessionsDir)
  } catch (err) {
    if (err && err.code === 'ENOENT') return { locks: [], cleaned: [] }
    throw err
  }
  names = names.filter((n) => n.endsWith('.jsonl.lock')).sort((a, b) => a.localeCompare(b))
  const locks = []
  const cleaned = []
  for (const name of names) {
    const lockPath = path.join(sessionsDir, name)
    const r = native.inspectLock(lockPath, nowMs, staleMs, removeStale)
    if (r.error && r.error.code === 'ENOENT') continue // gone meanwhile
    const inspection = toInspection(r)
    locks.push(inspection)
    if (r.removed) {
      cleaned.push(inspection)
      if (log && typeof log.warn === 'function') {
        log.warn(`removed stale session lock: ${lockPath} (${r.staleReasons.join(', ')})`)
      }
    }
  }
  return { locks, cleaned }
}

module.exports = { cleanStaleLockFiles, inspectLockFile }
