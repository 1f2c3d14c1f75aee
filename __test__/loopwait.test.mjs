// Cross-process waits woken on the waiting JS thread's own event loop (Linux,
// docs/design.md "Waiting on the JS thread's loop"): the hand-off is taken by
// the thread that resolves the promise; a worker's watcher goes with the
// worker; a wait that gives up leaves nothing armed that keeps the process
// alive; the waiting thread still covers what the loop does not.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, parseLine, fixture } = helpers
const linux = process.platform === 'linux'
const require = createRequire(import.meta.url)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const children = []
const workers = []
const spawnHolder = (args, opts) => {
  const h = spawnNode([holderPath, ...args], opts)
  children.push(h)
  return h
}

afterEach(async () => {
  for (const c of children.splice(0)) c.kill()
  for (const w of workers.splice(0)) await w.terminate()
  swl.resetSessionWriteLockStateForTest()
})

function startWorker() {
  const w = new Worker(fixture('core-worker.js'))
  workers.push(w)
  const msgs = []
  const waiters = []
  w.on('message', (m) => {
    msgs.push(m)
    for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i].match(m)) waiters.splice(i, 1)[0].resolve(m)
  })
  const waitMsg = (match) => {
    const hit = msgs.find(match)
    return hit ? Promise.resolve(hit) : new Promise((resolve) => waiters.push({ match, resolve }))
  }
  let nextId = 1
  const send = (cmd, extra = {}) => {
    const id = nextId++
    w.postMessage({ cmd, id, ...extra })
    return { result: waitMsg((m) => m.id === id && !m.pending), pending: waitMsg((m) => m.id === id) }
  }
  return { worker: w, ready: waitMsg((m) => m.ready), send }
}

/** The OS attempts made for contended keys per round, `round(i)` run `rounds` times. */
async function attemptsPerRound(rounds, round) {
  const before = swl.__testing.loopWaitCounts().attempts
  for (let i = 0; i < rounds; i++) await round(i)
  return (swl.__testing.loopWaitCounts().attempts - before) / rounds
}

/** A session file held by a child process: [sessionFile, holder]. */
async function heldByChild() {
  const sessionFile = path.join(tmpDir(), 's.jsonl')
  const h = spawnHolder([sessionFile])
  await h.waitLine('acquired')
  return [sessionFile, h]
}

/** An acquire of `sessionFile` that times out after `timeoutMs`, naming `holder` when given. */
async function timesOut(sessionFile, timeoutMs, holder) {
  const err = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs }).catch((e) => e)
  expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
  if (holder) expect(err.message).toContain(`pid=${holder.child.pid}`)
}

describe('waiting on the JS thread\'s own loop', () => {
  it('a wait that starts on a live holder does not spin: only the scheduled retries run until something changes', async () => {
    // The holder stays alive and idle for the whole wait: no release, no
    // close event. The waiting machinery makes its first attempt, the short
    // retries after it (1, 2, 4 ms) and then the fallback poll (every 50 ms);
    // a spin belongs after a change event only. Before the fix the first
    // attempt of every contention spun for 150 us (dozens of attempts, each
    // reading the holder's payload).
    // A fresh file per round (the next test covers the same file again).
    const rounds = 3
    const files = []
    for (let i = 0; i < rounds; i++) {
      const sessionFile = path.join(tmpDir(), `s${i}.jsonl`)
      const h = spawnHolder([sessionFile])
      await h.waitLine('acquired')
      files.push(sessionFile)
    }
    const perWait = await attemptsPerRound(rounds, (i) => timesOut(files[i], 120))
    // 120 ms: the first attempt, three short retries, two or three polls.
    expect(perWait).toBeGreaterThanOrEqual(2)
    expect(perWait).toBeLessThanOrEqual(12)
  })

  it('a wait that timed out leaves no event of its own to the next wait on the same file: it does not spin either', async () => {
    // A timed-out wait reads the holder's payload for its message and drops
    // the descriptor it kept; each of those closes produces an inotify event
    // on the file. Before the fix they reached the next wait on the same file
    // in this process as a change: an attempt that spun for 150 us (dozens
    // of attempts) and the quick retries after it, per wait (60 to 110
    // attempts per 120 ms wait instead of 6).
    const [sessionFile, h] = await heldByChild()
    const perWait = await attemptsPerRound(4, () => timesOut(sessionFile, 120, h))
    expect(perWait).toBeGreaterThanOrEqual(2)
    expect(perWait).toBeLessThanOrEqual(12)
  })

  it('a wait that times out behind another waiter does not wake it: the holder named in its error is read without a close event', async () => {
    // The timed-out wait names the holder from its payload. Read through a
    // fresh descriptor, that read's close was an inotify event on the file,
    // and the waiter still in the queue (in this process, or any other
    // process waiting for the file) took it for a change: an attempt that
    // spun for 150 us and the quick retries (40 to 66 attempts per round
    // instead of about 10).
    const [sessionFile, h] = await heldByChild()
    const perRound = await attemptsPerRound(3, async () => {
      const head = timesOut(sessionFile, 200)
      await timesOut(sessionFile, 20, h)
      await head
    })
    // 200 ms: the first attempt, three short retries, three or four polls.
    expect(perRound).toBeGreaterThanOrEqual(2)
    expect(perRound).toBeLessThanOrEqual(16)
  })

  it('a release by another process is taken by the waiting thread\'s own loop, and resolves the wait', { retry: 2 }, async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const before = swl.__testing.loopWaitCounts()
    const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    await sleep(100)
    h.send('release')
    const lease = await p
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))).toMatchObject({ pid: process.pid, fencingToken: lease.fencingToken })
    const after = swl.__testing.loopWaitCounts()
    if (linux) {
      expect(after.watchers).toBeGreaterThanOrEqual(1)
      expect(after.obtained).toBe(before.obtained + 1)
      // Delivered in the callback that obtained it: no thread-safe-function
      // wake-up of this thread on top (an extra loop turn for nothing).
      expect(after.wakes).toBe(before.wakes)
      // Handed to JS as numbers in the context's out array plus the token,
      // not as an object built field by field.
      expect(after.numbered).toBe(before.numbered + 1)
    }
    await lease.release()
    expect(swl.__testing.registryCounts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
  })

  it.skipIf(!linux)('a waiter builds its next lock file while it waits: at the release that file (locked, its payload written) only gets its name; a wait that times out leaves none of it behind', { retry: 2 }, async () => {
    // The hand-off then rewrites the payload (fresh createdAt and token) and
    // links: no open, lock or fstat between the release and the grant.
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const dir = fs.realpathSync(path.dirname(sessionFile))
    // An unnamed file shows in /proc as `<dir>/#<inode> (deleted)`.
    const unnamed = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return /^#\d+ \(deleted\)$/.test(path.relative(dir, fs.readlinkSync(`/proc/self/fd/${fd}`)))
      } catch {
        return false
      }
    }).map((fd) => fs.fstatSync(Number(fd)).ino)
    await timesOut(sessionFile, 200, h)
    expect(unnamed()).toEqual([])
    expect(fs.readdirSync(dir).sort()).toEqual(['s.jsonl.lock'])
    const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    await sleep(100)
    const built = unnamed()
    expect(built).toHaveLength(1)
    h.send('release')
    const lease = await p
    expect(fs.statSync(lease.lockPath).ino).toBe(built[0])
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    expect(payload).toMatchObject({ pid: process.pid, fencingToken: lease.fencingToken, lock: 'os' })
    // Its createdAt is the grant's, not the wait's start.
    expect(Date.now() - Date.parse(payload.createdAt)).toBeLessThan(90)
    // The descriptor /proc still shows by its unnamed path is now the
    // lease's own; releasing closes it.
    await new Promise((r) => setImmediate(r))
    expect(unnamed()).toEqual(built)
    await lease.release()
    expect(fs.existsSync(lease.lockPath)).toBe(false)
    expect(unnamed()).toEqual([])
  })

  it.skipIf(!linux)('the descriptor of the file its holder unlinked is closed once the waiter\'s continuation has run, not before', { retry: 2 }, async () => {
    // Closing it frees a watched inode, and the kernel wakes a worker for
    // that, which can preempt the JS thread between the grant and the
    // continuation: the close waits until the continuation ran, then happens
    // in the same loop turn (no descriptor is left behind).
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const lockPath = `${fs.realpathSync(path.dirname(sessionFile))}/s.jsonl.lock`
    const deletedFds = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === `${lockPath} (deleted)`
      } catch {
        return false
      }
    }).length
    const before = swl.__testing.loopWaitCounts()
    let inContinuation = -1
    const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 }).then((lease) => {
      inContinuation = deletedFds()
      return lease
    })
    await sleep(100)
    h.send('release')
    const lease = await p
    expect(swl.__testing.loopWaitCounts().obtained).toBe(before.obtained + 1)
    expect(inContinuation).toBe(1)
    await new Promise((r) => setImmediate(r))
    expect(deletedFds()).toBe(0)
    await lease.release()
  })

  it('a context armed the older way (no grant function: an older copy of the package sharing this addon) still gets its grant as an object', async () => {
    const native = require('../loader.js').load()
    const counts = () => native.rareFunctions().loopWaitCounts()
    for (const form of ['registerContext(onWake)', 'armContext(ctx, onWake)']) {
      const sessionFile = path.join(tmpDir(), 's.jsonl')
      const h = spawnHolder([sessionFile])
      await h.waitLine('acquired')
      const got = []
      let wake = null
      const onWake = (ds = native.takeDeliveries(ctx)) => {
        got.push(...ds)
        if (got.length && wake) wake()
      }
      const ctx = form === 'registerContext(onWake)' ? native.registerContext(onWake) : native.registerContext()
      // What the copies of this round's base register: an out array, then the wake-up.
      native.setContextOut(ctx, new Float64Array(new ArrayBuffer(32)))
      if (form !== 'registerContext(onWake)') native.armContext(ctx, onWake)
      const before = counts()
      native.acquireOut(ctx, sessionFile, null, false, Infinity, Infinity)
      const delivered = new Promise((r) => { wake = r })
      await sleep(50)
      h.send('release')
      await delivered
      expect(got).toHaveLength(1)
      expect(got[0]).toMatchObject({ lockPath: sessionFile + '.lock' })
      expect(typeof got[0].token).toBe('string')
      expect(typeof got[0].leaseId).toBe('number')
      expect(counts().numbered ?? 0).toBe(before.numbered ?? 0)
      expect(native.releaseLease(ctx, got[0].leaseId)).toBe(true)
    }
  })

  it('hand-offs back and forth between two processes, each waiting on its own loop, never overlap', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const counter = path.join(dir, 'counter')
    const N = 60
    const h = spawnHolder([sessionFile, '--counter', counter, '--iterations', String(N)])
    await helpers.countUnderLock(swl, sessionFile, counter, N, 60_000)
    expect(await h.exited).toEqual({ code: 0, signal: null })
    expect(Number(fs.readFileSync(counter, 'utf8'))).toBe(2 * N)
    // (short holds are mostly caught by the waiting thread's quick retries)
  }, 120_000)

  it('a SIGKILLed holder: the waiter gets the lock and a payload of its own', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    await sleep(100)
    h.child.kill('SIGKILL')
    const lease = await p
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))).toMatchObject({ pid: process.pid, fencingToken: lease.fencingToken })
    await lease.release()
  })

  it('a worker\'s wait is taken on the worker\'s own loop; terminating a waiting worker closes its watcher and cancels its wait', { retry: 2 }, async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const base = swl.__testing.loopWaitCounts()
    const w = startWorker()
    await w.ready
    const r = w.send('acquire', { params: { sessionFile, timeoutMs: 60_000 } })
    await r.pending
    await sleep(100)
    if (linux) expect(swl.__testing.loopWaitCounts().watchers).toBe(base.watchers + 1)
    h.send('release')
    const got = await r.result
    expect(got.ok).toBe(true)
    if (linux) expect(swl.__testing.loopWaitCounts().obtained).toBe(base.obtained + 1)
    await w.send('release').result

    // Another holder; the worker waits again, and is terminated while waiting.
    const h2 = spawnHolder([sessionFile])
    await h2.waitLine('acquired')
    await w.send('acquire', { params: { sessionFile, timeoutMs: 60_000 } }).pending
    await sleep(100)
    expect(swl.__testing.registryCounts().waiters).toBe(1)
    await w.worker.terminate()
    await sleep(50)
    expect(swl.__testing.registryCounts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
    expect(swl.__testing.loopWaitCounts().watchers).toBe(base.watchers)
    h2.send('release')
    await h2.waitLine('released')
    // nobody here took it: the next process gets it at once
    const next = spawnHolder([sessionFile, '--timeout-ms', '5000'])
    const info = parseLine(await next.waitLine((l) => l.startsWith('acquired') || l.startsWith('error')))
    expect(info.pid).toBe(next.child.pid)
  })

  it.each(['timeout', 'abort'])('a wait that gives up (%s) while the loop watch is armed leaves a process that exits on its own, and takes nothing later', async (how) => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const script = `
      const swl = require(${JSON.stringify(path.resolve(__dirname, '../index.js'))})
      const c = new AbortController()
      const how = ${JSON.stringify(how)}
      if (how === 'abort') setTimeout(() => c.abort(new Error('gave up')), 300)
      swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)}, timeoutMs: how === 'timeout' ? 300 : 60000, signal: c.signal })
        .then(() => console.log('granted'), (e) => console.log('gave up', e.code || e.message, JSON.stringify(swl.__testing.loopWaitCounts())))
    `
    const c = spawnNode(['-e', script])
    children.push(c)
    const line = await c.waitLine('gave up')
    if (linux) expect(JSON.parse(line.slice(line.indexOf('{'))).watchers).toBe(1)
    // nothing ref'd is left: the process ends by itself while the holder still holds
    expect(await c.exited).toEqual({ code: 0, signal: null })
    h.send('release')
    await h.waitLine('released')
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
  })
})
