'use strict'
// The database part of `session-lock inspect` when the PostgreSQL backend is
// configured (SESSION_WRITE_LOCK_BACKEND, docs/postgres.md): one row per
// holder and per connection queued on a held lock, through the package's
// public API (inspectSessionWriteLockBackend). `clean` never touches the
// database: the server frees a lock when its connection ends.

const { inspectSessionWriteLockBackend } = require('../../index.js')

/** { backend, rows } or null when no backend is configured. */
async function inspectDatabase() {
  return inspectSessionWriteLockBackend()
}

function renderDatabase(db) {
  const b = db.backend
  const out = [`database ${b.server} (schema ${b.schema}, keyspace ${b.keyspace}, sessionsRoot ${b.sessionsRoot}):`]
  if (db.rows.length === 0) out.push('  no database holders or waiters')
  for (const r of db.rows) {
    const who = `pid ${r.pid}@${r.hostname}`
    out.push(
      r.granted
        ? `  held    ${r.key}  ${who}  token ${r.fencingToken}  since ${r.acquiredAt}  (server pid ${r.backendPid}${r.clientAddr ? `, from ${r.clientAddr}` : ''})`
        : `  waiting ${r.key}  server pid ${r.backendPid}${r.clientAddr ? ` from ${r.clientAddr}` : ''} queued behind ${who}`,
    )
  }
  return out.join('\n')
}

module.exports = { inspectDatabase, renderDatabase }
