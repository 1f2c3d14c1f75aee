// Worker threads (docs/spec.md: "Package", "Paths and exclusion"): one registry per process shared with
// workers, but a worker never reenters the main thread's lock; it waits, FIFO.
// A worker's releaseAll only drops its own locks; a terminated worker's locks
// are released.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, fixture } = helpers
const workers = []
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

afterEach(async () => {
  for (const w of workers.splice(0)) await w.terminate()
  swl.resetSessionWriteLockStateForTest()
})

function startWorker() {
  const w = new Worker(fixture('core-worker.js'), { stderr: true })
  workers.push(w)
  let stderr = ''
  w.stderr.setEncoding('utf8')
  w.stderr.on('data', (d) => {
    stderr += d
  })
  const msgs = []
  const waiters = []
  let nextId = 1
  w.on('message', (m) => {
    msgs.push(m)
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].match(m)) waiters.splice(i, 1)[0].resolve(m)
    }
  })
  const waitMsg = (match) => {
    const hit = msgs.find(match)
    if (hit) return Promise.resolve(hit)
    return new Promise((resolve) => waiters.push({ match, resolve }))
  }
  const ready = waitMsg((m) => m.ready)
  /** Send a command; returns { id, result } with result resolving to the final reply. */
  const send = (cmd, extra = {}) => {
    const id = nextId++
    w.postMessage({ cmd, id, ...extra })
    return { id, result: waitMsg((m) => m.id === id && !m.pending), pending: waitMsg((m) => m.id === id) }
  }
  return { worker: w, ready, send, msgs, stderr: () => stderr }
}

describe('worker threads', () => {
  it('a worker that exits leaves no context behind: its registration and its out array go with its env', async () => {
    // Each copy of the package registers a context and (on its first
    // acquire) the Float64Array its hot calls write to. The env's cleanup
    // unregistered the context but kept the out array's entry (a pointer
    // into the dead worker's memory), one per context ever made on the thread.
    const base = swl.__testing.contextCounts()
    const root = path.resolve(import.meta.dirname, '..')
    const code = `
      const { parentPort, workerData } = require('node:worker_threads')
      const swl = require(workerData.index)
      swl.acquireSessionWriteLock({ sessionFile: workerData.sessionFile }).then(async (lease) => {
        await lease.release()
        parentPort.postMessage(swl.__testing.contextCounts())
      })
    `
    const n = 4
    const inside = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const w = new Worker(code, { eval: true, workerData: { index: path.join(root, 'index.js'), sessionFile: path.join(tmpDir(), `w${i}.jsonl`) } })
        const [counts] = await Promise.all([new Promise((r) => w.once('message', r)), new Promise((r) => w.once('exit', r))])
        return counts
      }),
    )
    for (const c of inside) {
      expect(c.contexts).toBeGreaterThan(base.contexts)
      expect(c.outArrays).toBeGreaterThan(base.outArrays)
    }
    expect(swl.__testing.contextCounts()).toEqual(base)
  })

  it('a worker never reenters the main thread\'s lock: it waits, then gets it after release', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const main = await swl.acquireSessionWriteLock({ sessionFile, reentrantOwner: 'same' })
    const w = startWorker()
    await w.ready
    const r1 = w.send('acquire', { params: { sessionFile, allowReentrant: true, reentrantOwner: 'same', timeoutMs: 60_000 } })
    await r1.pending
    let settled = false
    r1.result.then(() => {
      settled = true
    })
    await sleep(300)
    expect(settled).toBe(false)
    expect(swl.__testing.registryCounts().waiters).toBe(1)
    expect(JSON.parse(fs.readFileSync(main.lockPath, 'utf8')).fencingToken).toBe(main.fencingToken)
    await main.release()
    const got = await r1.result
    expect(got.ok).toBe(true)
    expect(got.lockPath).toBe(main.lockPath)
    expect(got.fencingToken).not.toBe(main.fencingToken)
    expect(JSON.parse(fs.readFileSync(main.lockPath, 'utf8')).fencingToken).toBe(got.fencingToken)

    // now the main thread cannot reenter the worker's lock either
    let err
    try {
      await swl.acquireSessionWriteLock({ sessionFile, allowReentrant: true, reentrantOwner: 'same', timeoutMs: 150 })
    } catch (e) {
      err = e
    }
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${process.pid}`)
    expect(err.holder).toMatchObject({ pid: process.pid, inProcess: true })
    await w.send('release').result
    expect(fs.existsSync(main.lockPath)).toBe(false)
  })

  it('a worker timing out on the main thread\'s lock gets the timeout error with inProcess true', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const main = await swl.acquireSessionWriteLock({ sessionFile })
    const w = startWorker()
    await w.ready
    const r = await w.send('acquire', { params: { sessionFile, allowReentrant: true, timeoutMs: 150 } }).result
    expect(r.ok).toBe(false)
    expect(r.error.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
    expect(r.error.message).toBe(`session file locked (timeout 150ms): pid=${process.pid} ${main.lockPath}`)
    expect(r.error.holder).toMatchObject({ pid: process.pid, inProcess: true })
    expect(() => main.assertOwned()).not.toThrow()
    await main.release()
  })

  it('main and worker waiters are served FIFO together', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const first = await swl.acquireSessionWriteLock({ sessionFile })
    const w = startWorker()
    await w.ready
    const order = []
    const m1 = swl.acquireSessionWriteLock({ sessionFile }).then(async (l) => {
      order.push('main-1')
      await sleep(20)
      await l.release()
    })
    const wr = w.send('acquire', { params: { sessionFile, timeoutMs: 60_000 } })
    await wr.pending
    const m2 = swl.acquireSessionWriteLock({ sessionFile }).then(async (l) => {
      order.push('main-2')
      await l.release()
    })
    wr.result.then(async () => {
      order.push('worker')
      await w.send('release').result
    })
    await first.release()
    await Promise.all([m1, m2, wr.result])
    expect(order).toEqual(['main-1', 'worker', 'main-2'])
  })

  it('a worker\'s releaseAll drops only its own locks', async () => {
    const dir = tmpDir()
    const main = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl') })
    const w = startWorker()
    await w.ready
    const got = await w.send('acquire', { params: { sessionFile: path.join(dir, 'b.jsonl') } }).result
    expect(got.ok).toBe(true)
    const list = await w.send('list').result
    expect(list.held.map((h) => h.lockPath).sort()).toEqual([main.lockPath, got.lockPath].sort())
    const r = await w.send('releaseAll').result
    expect(r.count).toBe(1)
    expect(() => main.assertOwned()).not.toThrow()
    expect(fs.existsSync(main.lockPath)).toBe(true)
    expect(fs.existsSync(got.lockPath)).toBe(false)
    expect(swl.releaseAllSync()).toBe(1)
  })

  it('release(sessionFile) in a worker does not drop the main thread\'s hold', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const main = await swl.acquireSessionWriteLock({ sessionFile })
    const w = startWorker()
    await w.ready
    const r = await w.send('releasePath', { sessionFile }).result
    expect(r).toMatchObject({ ok: true, dropped: false })
    expect(() => main.assertOwned()).not.toThrow()
    expect(fs.existsSync(main.lockPath)).toBe(true)
    await main.release()
  })

  it('the watchdog force-releases a worker\'s lock with its real timer', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const w = startWorker()
    await w.ready
    const got = await w.send('acquire', { params: { sessionFile, maxHoldMs: 50 } }).result
    expect(got.ok).toBe(true)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    expect(lease.fencingToken).not.toBe(got.fencingToken)
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8')).fencingToken).toBe(lease.fencingToken)
    // the worker's stderr reaches us asynchronously
    for (let i = 0; i < 200 && !w.stderr().includes('\n'); i++) await sleep(50)
    expect(w.stderr()).toMatch(
      new RegExp(`^\\[session-write-lock\\] releasing lock held for \\d+ms \\(max=50ms\\): ${lease.lockPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`),
    )
    // the worker's stale lease release leaves ours alone
    await w.send('release').result
    expect(() => lease.assertOwned()).not.toThrow()
    await expect(lease.assertCurrent()).resolves.toBeUndefined()
    await lease.release()
  })

  it('terminating a worker that holds a lock releases it', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const w = startWorker()
    await w.ready
    const got = await w.send('acquire', { params: { sessionFile } }).result
    expect(got.ok).toBe(true)
    await w.worker.terminate()
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8')).fencingToken).toBe(lease.fencingToken)
    await lease.release()
  })

  it('terminating a worker that waits cancels its wait', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const main = await swl.acquireSessionWriteLock({ sessionFile })
    const w = startWorker()
    await w.ready
    await w.send('acquire', { params: { sessionFile, timeoutMs: 60_000 } }).pending
    await sleep(50)
    expect(swl.__testing.registryCounts().waiters).toBe(1)
    await w.worker.terminate()
    await sleep(50)
    expect(swl.__testing.registryCounts().waiters).toBe(0)
    await main.release()
    await sleep(50)
    expect(fs.existsSync(main.lockPath)).toBe(false)
  })
})
