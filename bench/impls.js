'use strict'
// The lock implementations the bench compares, behind one tiny interface:
//   acquire(sessionFile, { wait, stale, reentrant }) -> Promise<release: () => Promise<void>>
// `wait: true` means "wait for a busy lock" (ours and the old algorithm always wait up to
// their timeout; proper-lockfile must be given a retry policy or it fails at once).
//
// - ours:   this package (require('../index.js')): OS lock (flock), event-driven waiting.
// - proper: proper-lockfile 4.1.2, the lock library Node users pick today: mkdir of
//           `<file>.lock`, an mtime refresh timer, staleness by mtime (>= 2 s), waiting by
//           retries with backoff. Waiting policy used here (documented in docs/performance.md):
//           minTimeout 10 ms, factor 1.5, maxTimeout 100 ms.
// - legacy: __test__/fixtures/legacy-lock.js, a reference of the old TypeScript module's
//           algorithm: exclusive create of a pid file, waiters poll on a 50 ms x attempt ramp
//           capped at 1 s, dead pid => reclaim.
// - base:   another build of this package (a directory holding index.js and its built
//           .node), given with `npm run bench -- --baseline <dir>` (the bench passes it
//           to its children as SWL_BENCH_BASELINE): before/after figures in one run.

const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const LEGACY_PATH = path.join(ROOT, '__test__', 'fixtures', 'legacy-lock.js')
const WAIT_TIMEOUT_MS = 120_000
const PROPER_RETRIES = { retries: 3000, factor: 1.5, minTimeout: 10, maxTimeout: 100 }

const BASELINE = process.env.SWL_BENCH_BASELINE || null
const cache = {}

/** This package, loaded from `dir` (ours, or another build for --baseline). */
function packageImpl(key, dir) {
  return {
    load() {
      return (cache[key] ??= require(path.join(dir, 'index.js')))
    },
    async acquire(sessionFile, o = {}) {
      const lease = await this.load().acquireSessionWriteLock({
        sessionFile,
        timeoutMs: WAIT_TIMEOUT_MS,
        allowReentrant: o.reentrant === true,
      })
      return () => lease.release()
    },
  }
}

const IMPLS = {
  ours: packageImpl('ours', ROOT),
  base: packageImpl('base', BASELINE),
  proper: {
    load() {
      return (cache.proper ??= require('proper-lockfile'))
    },
    async acquire(sessionFile, o = {}) {
      const release = await this.load().lock(sessionFile, {
        realpath: false, // the session file need not exist (same as the others)
        stale: o.stale ?? 10_000,
        retries: o.wait ? PROPER_RETRIES : 0,
        onCompromised: () => {},
      })
      return release
    },
  },
  legacy: {
    load() {
      return (cache.legacy ??= require(LEGACY_PATH))
    },
    async acquire(sessionFile) {
      const h = await this.load().acquireLegacy({ sessionFile, timeoutMs: WAIT_TIMEOUT_MS })
      return () => h.release()
    },
  },
}

if (!BASELINE) delete IMPLS.base

module.exports = { IMPLS, LEGACY_PATH, PROPER_RETRIES, ROOT, BASELINE }
