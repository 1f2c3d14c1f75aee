'use strict'
// Finds and loads the PostgreSQL backend's addon (loader.loadPostgres, called
// only once a backend is configured): kept out of loader.js, which every
// require() of the package compiles (docs/performance.md, scenario h).
// Stateless: the anchor lives in the environment.

const { existsSync } = require('node:fs')
const { dirname, join } = require('node:path')

// The package's root (loader.js's directory, where a local build is written).
const ROOT = join(__dirname, '..')

// The PostgreSQL backend is a second addon, session-write-lock-postgres.<tag>.node,
// loaded only when a backend is configured (lib/backend.js), so the file lock's
// addon carries no database client (docs/distribution.md). Its interface has
// its own version (pg_abi_version). One engine per process, as one registry:
// the first copy of the package records the file it loaded under its own
// anchor, and later copies load that same file.
const PG_ABI = 1
const PG_ANCHOR = '__SESSION_WRITE_LOCK_POSTGRES'

function postgresName(tag) {
  return `session-write-lock-postgres.${tag}.node`
}

function postgresError(message, path, cause) {
  const err = new Error(message)
  err.code = 'SESSION_WRITE_LOCK_BACKEND_CONFIG'
  if (path !== undefined) err.path = path
  if (cause !== undefined) err.cause = cause
  return err
}

function requirePostgres(file) {
  let binding
  try {
    binding = require(file)
  } catch (e) {
    throw postgresError(`session-write-lock: the PostgreSQL backend's addon failed to load (${file}): ${e && e.message}`, file, e)
  }
  const v = typeof binding.pgAbiVersion === 'function' ? binding.pgAbiVersion() : null
  if (v !== PG_ABI) {
    throw postgresError(
      `session-write-lock: the PostgreSQL backend's addon ${file} has interface version ${v}, this package needs ${PG_ABI} ` +
        '(a file left from another version of the package: rebuild or reinstall)',
      file,
    )
  }
  return binding
}

/**
 * The PostgreSQL backend's addon. `main` is the file-lock addon this copy
 * loaded (load()); an addon built with both features serves as both. Looks,
 * in order: where another copy of the package in this process loaded it
 * (its anchor), SESSION_WRITE_LOCK_POSTGRES_PATH, the main addon itself when
 * it exports the backend, then session-write-lock-postgres.<tag>.node next to
 * SESSION_WRITE_LOCK_NATIVE_PATH's file, in the package's root (a local build),
 * and in the installed platform package. Throws SESSION_WRITE_LOCK_BACKEND_CONFIG
 * naming the file it looked for when there is none.
 */
function loadPostgres(main, tag) {
  const anchored = process.env[PG_ANCHOR]
  const m = typeof anchored === 'string' ? /^(\d+):(\d+):(.+)$/.exec(anchored) : null
  if (m !== null && Number(m[1]) === process.pid && Number(m[2]) === PG_ABI && existsSync(m[3])) {
    try {
      return requirePostgres(m[3])
    } catch {
      // Fall through to our own.
    }
  }
  const name = postgresName(tag)
  let file = process.env.SESSION_WRITE_LOCK_POSTGRES_PATH || null
  if (file === null && main != null && typeof main.pgConfigure === 'function' && typeof main.pgAbiVersion === 'function') {
    return main
  }
  const looked = []
  if (file === null) {
    const dirs = []
    if (process.env.SESSION_WRITE_LOCK_NATIVE_PATH) dirs.push(dirname(process.env.SESSION_WRITE_LOCK_NATIVE_PATH))
    dirs.push(ROOT)
    try {
      dirs.push(dirname(require.resolve(`session-write-lock-${tag}`)))
    } catch {
      // No platform package: a local build or nothing.
    }
    for (const dir of dirs) {
      const f = join(dir, name)
      looked.push(f)
      if (existsSync(f)) {
        file = f
        break
      }
    }
  } else if (!existsSync(file)) {
    looked.push(file)
    file = null
  }
  if (file === null) {
    throw postgresError(
      `session-write-lock: a PostgreSQL backend is configured but its addon ${name} is missing (looked for ${looked.join(', ')}). ` +
        `It ships in the platform package session-write-lock-${tag} next to the file-lock addon; in a clone of the ` +
        `repository "npm run build" builds both; in ${ROOT}, ` +
        '"npx --yes @napi-rs/cli@3 build --platform --release --features postgres --no-js --dts native.d.ts" builds ' +
        'one addon that carries both. Refusing to fall back to local-only locking.',
      looked[0],
    )
  }
  const binding = requirePostgres(file)
  if (!String(process.env[PG_ANCHOR] || '').startsWith(`${process.pid}:`)) {
    process.env[PG_ANCHOR] = `${process.pid}:${PG_ABI}:${file}`
  }
  return binding
}

module.exports = { loadPostgres }
