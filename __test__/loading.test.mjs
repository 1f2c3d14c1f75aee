// Loading (docs/spec.md: "Package", "Paths and exclusion"): the package loaded more than once in a
// process, and from worker threads. Exclusion must hold in every case, and the
// in-process state (registry: holders, FIFO queues) is process-wide whenever
// the copies share one addon.
//   - two install paths in one process (the loader's anchor makes the second
//     copy load the first copy's addon: one registry);
//   - two install paths whose addons are not shared (an older copy without the
//     anchor): two registries, only the OS lock between them; still exclusive;
//   - the package re-required after clearing require.cache (addon included:
//     the napi init runs again);
//   - jest-style: the JS evaluated in two vm contexts, each with its own module
//     registry, sharing the addon loaded by the real require;
//   - 8 worker threads contending on one key with a counter in shared memory,
//     all passing allowReentrant (threads never reenter each other's locks).
import { describe, it, expect, afterEach, afterAll } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const dirs = []
const tmp = () => {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-loading-')))
  dirs.push(d)
  return d
}

afterEach(() => swl.resetSessionWriteLockStateForTest())
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

function copies(mode) {
  const scratch = tmp()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'fixtures', 'loading-copies.js'), mode, scratch], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`exit ${code}: ${err}`))))
  })
}

/** Run fixtures/loading-worker.js with `workerData`; resolves with its one message, rejects on its error. */
function runWorker(workerData) {
  const w = new Worker(path.join(here, 'fixtures', 'loading-worker.js'), { workerData })
  return new Promise((resolve, reject) => {
    w.once('message', (m) => (m.error ? reject(new Error(m.error)) : resolve(m)))
    w.once('error', reject)
  }).finally(() => w.terminate())
}

function expectExclusive(r) {
  expect(r.distinctExports).toBe(true)
  expect(r.timedOut).toBe(true)
  expect(r.handoff).toEqual(['a-release', 'b-acquired'])
  expect(r.overlaps).toBe(0)
  expect(r.counter).toBe(r.expected)
  expect(r.tokensUnique).toBe(true)
  expect(r.leftovers).toEqual([])
  expect(r.countsA).toEqual({ keys: 0, holders: 0, waiters: 0 })
  expect(r.countsB).toEqual({ keys: 0, holders: 0, waiters: 0 })
}

describe('the package loaded twice in one process', () => {
  it('two install paths: exclusive, and one process-wide registry (B queues where A sees it)', async () => {
    const r = await copies('shared')
    expectExclusive(r)
    expect(r.holderInProcess).toBe(true)
    expect(r.waitersSeenByA).toBe(1)
  })

  it('two install paths with separate addons (no shared registry): the OS lock still excludes', async () => {
    const r = await copies('separate')
    expectExclusive(r)
    // Two registries: B's wait is invisible to A's registry. (Not on
    // Windows: its loader hands the second copy the module already loaded
    // under the same name, so the registry is shared there; exclusion holds
    // either way.)
    if (process.platform !== 'win32') {
      expect(r.holderInProcess).toBe(false)
      expect(r.waitersSeenByA).toBe(0)
    }
  })

  it('re-required after clearing require.cache (napi init runs again): exclusive, registry shared', async () => {
    const r = await copies('reload')
    expectExclusive(r)
    expect(r.holderInProcess).toBe(true)
    expect(r.waitersSeenByA).toBe(1)
  })

  // retry: once, under wine in a loaded CI run (2026-12-03), the child ran past the test's
  // 60 s and exited with no output; not reproduced since (the file alone under wine, six
  // concurrent fixture runs, the whole Windows set again: 6.5 s). A second failure fails.
  it('jest-style: the JS in two vm contexts with their own module registries: exclusive, registry shared', { retry: 1 }, async () => {
    const r = await copies('jest')
    expectExclusive(r)
    expect(r.errorFromOuterRealm).toBe(false) // really evaluated in another realm
    expect(r.holderInProcess).toBe(true)
    expect(r.waitersSeenByA).toBe(1)
  })
})

describe('worker threads', () => {
  it('8 workers x 40 sections on one key, all allowReentrant: no overlap, exact counter, unique tokens', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const shared = new SharedArrayBuffer(8)
    const cells = new Int32Array(shared)
    const iterations = 40
    const results = await Promise.all(
      Array.from({ length: 8 }, () => runWorker({ sessionFile, iterations, shared, allowReentrant: true })),
    )
    expect(results.map((r) => r.overlaps)).toEqual(Array(8).fill(0))
    expect(Atomics.load(cells, 0)).toBe(8 * iterations)
    const tokens = results.flatMap((r) => r.tokens)
    expect(new Set(tokens).size).toBe(8 * iterations)
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
    expect(swl.__testing.registryCounts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
  })

  it('the main thread joins the 8 workers: still exclusive', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const shared = new SharedArrayBuffer(8)
    const cells = new Int32Array(shared)
    const iterations = 25
    const workers = Array.from({ length: 8 }, () => runWorker({ sessionFile, iterations, shared, allowReentrant: true }))
    let mainOverlaps = 0
    for (let i = 0; i < iterations; i++) {
      const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000, allowReentrant: true })
      if (Atomics.add(cells, 1, 1) !== 0) mainOverlaps++
      const v = Atomics.load(cells, 0)
      await new Promise((r) => setImmediate(r))
      Atomics.store(cells, 0, v + 1)
      Atomics.sub(cells, 1, 1)
      await lease.release()
    }
    const results = await Promise.all(workers)
    expect(mainOverlaps).toBe(0)
    expect(results.map((r) => r.overlaps)).toEqual(Array(8).fill(0))
    expect(Atomics.load(cells, 0)).toBe(9 * iterations)
  })
})
