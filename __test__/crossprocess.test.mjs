// Cross-process exclusion with real child processes (docs/spec.md "Paths and exclusion"): a shared
// counter never loses an update, a SIGKILLed holder frees the lock for a
// waiting child or parent, and hand-over between processes works both ways.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, parseLine, fixture, fdCount, settledFdCount, fdCountBackTo } = helpers
const children = []
const spawnHolder = (args, opts) => {
  const h = spawnNode([holderPath, ...args], opts)
  children.push(h)
  return h
}

afterEach(() => {
  for (const c of children.splice(0)) c.kill()
  swl.resetSessionWriteLockStateForTest()
})

describe('mutual exclusion between processes', () => {
  it.each([
    ['linked into place with O_TMPFILE', {}],
    ['portable create-then-write path, as without O_TMPFILE (macOS)', { SESSION_WRITE_LOCK_PORTABLE_CREATE: '1' }],
  ])('3 processes x 150 read-modify-write iterations: the counter is exact (%s)', async (_label, env) => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const counter = path.join(dir, 'counter')
    const N = 150
    const hs = [0, 1, 2].map(() => spawnHolder([sessionFile, '--counter', counter, '--iterations', String(N)], { env }))
    const exits = await Promise.all(hs.map((h) => h.exited))
    for (const [i, e] of exits.entries()) {
      expect(e, `${hs[i].lines.join('\n')}\n${hs[i].stderr()}`).toEqual({ code: 0, signal: null })
      expect(hs[i].lines).toContain(`done ${N}`)
    }
    expect(Number(fs.readFileSync(counter, 'utf8'))).toBe(3 * N)
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
  }, 120_000)

  it('the parent joins the counter loop with two children: still exact', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const counter = path.join(dir, 'counter')
    const N = 100
    const hs = [0, 1].map(() => spawnHolder([sessionFile, '--counter', counter, '--iterations', String(N)]))
    await helpers.countUnderLock(swl, sessionFile, counter, N, 120_000)
    const exits = await Promise.all(hs.map((h) => h.exited))
    for (const e of exits) expect(e).toEqual({ code: 0, signal: null })
    expect(Number(fs.readFileSync(counter, 'utf8'))).toBe(3 * N)
  }, 120_000)

  it('a child waits for the parent and gets the lock when the parent releases', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const mine = await swl.acquireSessionWriteLock({ sessionFile })
    const h = spawnHolder([sessionFile, '--timeout-ms', '60000'])
    await new Promise((r) => setTimeout(r, 300))
    expect(h.lines.some((l) => l.startsWith('acquired'))).toBe(false)
    expect(JSON.parse(fs.readFileSync(mine.lockPath, 'utf8')).pid).toBe(process.pid)
    await mine.release()
    const info = parseLine(await h.waitLine('acquired'))
    expect(info.pid).toBe(h.child.pid)
    expect(info.lockPath).toBe(mine.lockPath)
    expect(JSON.parse(fs.readFileSync(mine.lockPath, 'utf8'))).toMatchObject({ pid: h.child.pid, fencingToken: info.fencingToken })
    h.send('release')
    await h.waitLine('released')
    expect((await h.exited).code).toBe(0)
    expect(fs.existsSync(mine.lockPath)).toBe(false)
  })
})

describe('a waiter that gives up on another process\'s lock leaves nothing behind', () => {
  for (const how of ['abort', 'timeout']) {
    it(`${how}: the waiter never takes the lock later, and the next process gets it`, async () => {
      const sessionFile = path.join(tmpDir(), 's.jsonl')
      const h = spawnHolder([sessionFile])
      const info = parseLine(await h.waitLine('acquired'))
      const giveUp = async () => {
        const c = new AbortController()
        const p = swl.acquireSessionWriteLock({ sessionFile, signal: c.signal, timeoutMs: how === 'timeout' ? 200 : 60_000 })
        if (how === 'abort') setTimeout(() => c.abort(new Error('gave up')), 200)
        const err = await p.then(() => null, (e) => e)
        if (how === 'abort') expect(err.message).toBe('gave up')
        else expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
        await new Promise((r) => setTimeout(r, 50))
      }
      await giveUp() // the first wait may open lasting descriptors (the waiting thread's)
      const fds = await settledFdCount()
      await giveUp()
      expect(await fdCountBackTo(fds)).toBe(fds)
      expect(swl.__testing.registryCounts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
      h.send('release')
      await h.waitLine('released')
      await new Promise((r) => setTimeout(r, 200))
      expect(fs.existsSync(info.lockPath)).toBe(false)
      expect(swl.listHeldLocks()).toEqual([])
      // another process gets it at once (it would wait if we had taken it)
      const next = spawnHolder([sessionFile, '--timeout-ms', '2000'])
      const got = parseLine(await next.waitLine((l) => l.startsWith('acquired') || l.startsWith('error')))
      expect(got.pid).toBe(next.child.pid)
      next.send('release')
      await next.waitLine('released')
    })
  }
})

describe('only the head of the in-process queue contends at the OS level', () => {
  it('20 waiters on another process\'s lock hold about one descriptor between them, and get it in order', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    // warm up lasting descriptors (the waiting thread's) with one cross-process wait
    const warm = spawnHolder([path.join(dir, 'w.jsonl')])
    await warm.waitLine('acquired')
    await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'w.jsonl'), timeoutMs: 100 }).catch(() => {})
    warm.send('release')
    await warm.waitLine('released')
    await new Promise((r) => setTimeout(r, 100))

    await warm.exited
    const fds0 = await settledFdCount()
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const fds = await settledFdCount()
    const order = []
    const waits = []
    for (let i = 0; i < 20; i++) {
      waits.push(
        swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 }).then(async (l) => {
          order.push(i)
          await l.release()
        }),
      )
    }
    await new Promise((r) => setTimeout(r, 300))
    expect(fdCount() - fds).toBeLessThanOrEqual(2)
    expect(order).toEqual([])
    h.send('release')
    await Promise.all(waits)
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i))
    await h.exited // its pipes close
    await new Promise((r) => setTimeout(r, 50))
    expect(await fdCountBackTo(fds0)).toBe(fds0)
  })
})

describe('a pending acquire keeps its process alive', () => {
  for (const timeout of ['Infinity', '60000']) {
    it(`a child with nothing else to do waits (timeoutMs ${timeout}) instead of exiting`, async () => {
      const sessionFile = path.join(tmpDir(), 's.jsonl')
      const h = spawnHolder([sessionFile])
      const info = parseLine(await h.waitLine('acquired'))
      const w = spawnNode([fixture('core-child.js'), 'wait', sessionFile, timeout])
      children.push(w)
      let exited = false
      w.exited.then(() => {
        exited = true
      })
      await new Promise((r) => setTimeout(r, 500))
      expect(exited, w.stderr()).toBe(false)
      h.send('release')
      expect(await w.waitLine('acquired')).toBe(`acquired ${info.lockPath}`)
      expect(await w.exited).toEqual({ code: 0, signal: null })
    })
  }
})

describe('a SIGKILLed holder', () => {
  it('frees the lock for a waiting parent', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    const info = parseLine(await h.waitLine('acquired'))
    let got = null
    const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 }).then((l) => {
      got = l
      return l
    })
    await new Promise((r) => setTimeout(r, 200))
    expect(got).toBeNull()
    h.kill('SIGKILL')
    expect((await h.exited).signal).toBe('SIGKILL')
    const lease = await p
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    expect(lease.lockPath).toBe(info.lockPath)
    expect(payload.pid).toBe(process.pid)
    expect(payload.fencingToken).toBe(lease.fencingToken)
    expect(payload.fencingToken).not.toBe(info.fencingToken)
    await lease.release()
  })

  it('frees the lock for a waiting child', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const a = spawnHolder([sessionFile])
    await a.waitLine('acquired')
    const b = spawnHolder([sessionFile, '--timeout-ms', '60000'])
    await new Promise((r) => setTimeout(r, 300))
    expect(b.lines.some((l) => l.startsWith('acquired'))).toBe(false)
    a.kill('SIGKILL')
    const info = parseLine(await b.waitLine('acquired', 60_000))
    expect(info.pid).toBe(b.child.pid)
    expect(JSON.parse(fs.readFileSync(info.lockPath, 'utf8')).pid).toBe(b.child.pid)
    b.send('release')
    await b.waitLine('released')
  })

  it('leaves a file with a dead pid that the next acquire takes over at once', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnHolder([sessionFile])
    const info = parseLine(await h.waitLine('acquired'))
    h.kill('SIGKILL')
    await h.exited
    // the kernel dropped the flock but the file is still there, naming the dead pid
    expect(JSON.parse(fs.readFileSync(info.lockPath, 'utf8')).pid).toBe(h.child.pid)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 })
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8')).pid).toBe(process.pid)
    await lease.release()
    expect(fs.existsSync(info.lockPath)).toBe(false)
  })

  it('hands over along a chain of waiting children, one holder at a time', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const first = spawnHolder([sessionFile])
    await first.waitLine('acquired')
    const waiters = [0, 1, 2].map(() => spawnHolder([sessionFile, '--timeout-ms', '60000']))
    await new Promise((r) => setTimeout(r, 300))
    let current = first
    const seen = new Set()
    for (let round = 0; round < 3; round++) {
      current.kill('SIGKILL')
      await current.exited
      // exactly one of the remaining waiters gets it
      const remaining = waiters.filter((w) => !seen.has(w))
      const next = await Promise.any(remaining.map((w) => w.waitLine('acquired', 60_000).then(() => w)))
      seen.add(next)
      await new Promise((r) => setTimeout(r, 100))
      const holders = remaining.filter((w) => w.lines.some((l) => l.startsWith('acquired')))
      expect(holders).toEqual([next])
      current = next
    }
    current.send('release')
    await current.waitLine('released')
  })
})

// Any torn mix of `a` and `b` (a reader racing one in-place write) still parses: same
// length, and every differing byte a lower-case hex digit on both sides (lockfile's rule).
const hexByte = (c) => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
const mixSafe = (a, b) => a.length === b.length && a.every((x, i) => x === b[i] || (hexByte(x) && hexByte(b[i])))

// Linux and macOS only: Windows takes no file over in place, and its reclaim deletes
// and recreates the file (no exchange of two names there), so a reader can find no
// file for a moment, as before the in-place takeover existed.
describe.skipIf(process.platform === 'win32')('taking over a SIGKILLed holder\'s file', () => {
  it('the waiter rewrites it in place when every torn read still parses: same inode, its pid, a new token; a reader never sees it incomplete', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    const dead = fs.readFileSync(lockPath)
    const deadIno = fs.statSync(lockPath).ino
    const waiting = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 })
    // A reader in another process reads the lock file back to back across the takeover.
    const reader = spawnNode(['-e', `
      const fs = require('fs'); let reads = 0, bad = []
      const stop = Date.now() + 60000
      process.stdin.on('data', () => { console.log('result ' + JSON.stringify({ reads, bad: bad.slice(0, 3) })); process.exit(0) })
      console.log('reading')
      ;(function loop() {
        for (let i = 0; i < 200; i++) {
          try { JSON.parse(fs.readFileSync(${JSON.stringify(lockPath)}, 'utf8')); reads++ } catch (e) { bad.push(String(e.code || e.message)) }
        }
        if (Date.now() < stop) setImmediate(loop)
      })()`])
    children.push(reader)
    await reader.waitLine('reading')
    await new Promise((r) => setTimeout(r, 50))
    h.kill('SIGKILL')
    await h.exited
    const lease = await waiting
    await new Promise((r) => setTimeout(r, 50))
    reader.send('stop')
    const res = parseLine(await reader.waitLine('result'))
    expect(res.bad).toEqual([])
    expect(res.reads).toBeGreaterThan(0)
    const now = fs.readFileSync(lockPath)
    const p = JSON.parse(now.toString('utf8'))
    const old = JSON.parse(dead.toString('utf8'))
    expect(p.pid).toBe(process.pid)
    expect(p.lock).toBe('os')
    expect(p.fencingToken).toMatch(/^[0-9a-f]{24}$/)
    expect(p.fencingToken).not.toBe(old.fencingToken)
    expect(lease.fencingToken).toBe(p.fencingToken)
    // In place exactly when the two payloads are mix-safe (same width pid, start time...);
    // otherwise a new file is swapped in, as before.
    expect(fs.statSync(lockPath).ino === deadIno).toBe(mixSafe(dead, now))
    await lease.release()
    expect(fs.existsSync(lockPath)).toBe(false)
  })

  it('a hard link to a dead holder\'s file is never written: the other name keeps its bytes', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    h.kill('SIGKILL')
    await h.exited
    const victim = path.join(dir, 'victim')
    fs.linkSync(lockPath, victim)
    const dead = fs.readFileSync(victim)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 })
    expect(fs.readFileSync(victim)).toEqual(dead)
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid).toBe(process.pid)
    expect(fs.statSync(lockPath).ino).not.toBe(fs.statSync(victim).ino)
    await lease.release()
    expect(fs.readFileSync(victim)).toEqual(dead)
  })

  it('a dead holder\'s file that cannot be rewritten safely in place (another width) is replaced by a complete new file', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const h = spawnHolder([sessionFile])
    await h.waitLine('acquired')
    h.kill('SIGKILL')
    await h.exited
    // Same holder, but a pid one digit wider: no torn read of an in-place write would parse.
    const dead = JSON.parse(fs.readFileSync(lockPath, 'utf8'))
    const wider = JSON.stringify({ ...dead, pid: Number(`9${dead.pid}`) }, null, 2)
    fs.writeFileSync(lockPath, wider)
    const deadIno = fs.statSync(lockPath).ino
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 })
    const p = JSON.parse(fs.readFileSync(lockPath, 'utf8'))
    expect(p.pid).toBe(process.pid)
    expect(p.fencingToken).not.toBe(dead.fencingToken)
    expect(fs.statSync(lockPath).ino).not.toBe(deadIno)
    await lease.release()
  })
})

const hasFlock = spawnSync('flock', ['--version']).status === 0

describe.skipIf(!hasFlock)('interop with flock(1)', () => {
  it('an external flock holder excludes us; when it is SIGKILLed the waiter acquires', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = path.join(fs.realpathSync(dir), 's.jsonl.lock')
    const f = spawn('flock', ['-x', '-o', lockPath, 'sh', '-c', 'echo locked; exec sleep 600'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const killGroup = () => {
      try {
        process.kill(-f.pid, 'SIGKILL')
      } catch {}
    }
    try {
      await new Promise((resolve, reject) => {
        f.stdout.on('data', (d) => String(d).includes('locked') && resolve())
        f.on('exit', () => reject(new Error('flock exited')))
      })
      // give the file a payload of ours naming the flock process (flock(1) never truncates)
      const payload = { pid: f.pid, createdAt: new Date().toISOString(), fencingToken: 'external', lock: 'os' }
      fs.writeFileSync(lockPath, JSON.stringify(payload, null, 2))
      let err
      try {
        await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 300 })
      } catch (e) {
        err = e
      }
      expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
      expect(err.owner).toBe(`pid=${f.pid}`)
      expect(err.holder).toMatchObject({ pid: f.pid, inProcess: false })
      expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).fencingToken).toBe('external')
      let got = null
      const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 60_000 }).then((l) => {
        got = l
        return l
      })
      await new Promise((r) => setTimeout(r, 100))
      expect(got).toBeNull()
      killGroup()
      const lease = await p
      expect(JSON.parse(fs.readFileSync(lockPath, 'utf8'))).toMatchObject({ pid: process.pid, fencingToken: lease.fencingToken })
      await lease.release()
      expect(fs.existsSync(lockPath)).toBe(false)
    } finally {
      killGroup()
    }
  })

  it('while we hold the lock, flock -n on the lock file fails', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const r = spawnSync('flock', ['-n', '-x', lease.lockPath, 'true'])
    expect(r.status).not.toBe(0)
    await lease.release()
    // the file is gone after release; flock(1) would create a new one and lock it
    const r2 = spawnSync('flock', ['-n', '-x', lease.lockPath, 'true'])
    expect(r2.status).toBe(0)
  })
})
