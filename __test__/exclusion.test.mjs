// Exclusion that nothing breaks (docs/exclusion.md): every observable state of
// a lock file parses, a SIGKILL inside any create leaves no file or a complete
// one, a deleted lock file is never handed on inside a process, waiting that
// cannot start rejects with a coded error instead of hanging, one failed
// fast-path create does not downgrade the process, and a long hold keeps its
// createdAt fresh for old-module peers.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, fixture, parseLine } = helpers
const legacyPath = fixture('legacy-lock.js')
const children = []
const spawnTracked = (args, opts) => {
  const h = spawnNode(args, opts)
  children.push(h)
  return h
}
const tick = () => new Promise((r) => setImmediate(r))
const pause = (ms) => new Promise((r) => setTimeout(r, ms))

afterEach(() => {
  for (const c of children.splice(0)) c.kill()
  swl.resetSessionWriteLockStateForTest()
})

/** Leftover entries of a session's directory that look like lock files. */
function lockLikeFiles(dir) {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.lock'))
}


// Under a user-mode emulator (SWL_TEST_EMULATED=qemu, set by npm run cross for
// the arm64 run) a process reading its own /proc/self/stat gets a start time
// the emulator made up, a few ticks off what other processes read in
// /proc/<pid>/stat. Our payload records our own start time, the old module (a
// separate process) compares it with what it reads and judges our live lock
// recycled. Tests with an old-module contender are skipped there, and say so.
const EMULATED = process.env.SWL_TEST_EMULATED || ''
const oldPeerIt = EMULATED
  ? (name, fn, timeout) => {
      console.warn(`exclusion.test: "${name}" skipped under ${EMULATED}: it fakes /proc/self/stat start times, so an old-module peer sees our recorded start time mismatch`)
      return it.skip(name, fn, timeout)
    }
  : it

describe('rewrites on in-process hand-off never expose invalid JSON', () => {
  it('a reader in a tight loop sees only valid payloads while the lock passes between leases of different maxHoldMs', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    let lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 300_000 })
    const reader = spawnTracked([fixture('excl-reader.js'), lease.lockPath])
    await reader.waitLine('ready')
    // Infinity (no maxHoldMs key: a shorter payload), finite ones of other
    // widths, and runs of equal or same-width ones (rewritten in place).
    const holds = [Infinity, 300_000, Infinity, Infinity, 1_234_567_890, 300_000, 300_000, 900_000]
    for (let round = 0; round < 4000; round++) {
      const next = swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: holds[round % holds.length], timeoutMs: 60_000 })
      await lease.release()
      lease = await next
      if (round % 50 === 0) await pause(1) // let the reader run on a loaded machine
    }
    reader.send('stop')
    const result = parseLine(await reader.waitLine('result', 60_000))
    await lease.release()
    expect(result.reads).toBeGreaterThan(100)
    expect(result.absent).toBe(0)
    expect(result.samples.map((t) => JSON.stringify(t))).toEqual([])
    expect(result.invalid).toBe(0)
    // Outside a rewrite, the file is the exact pretty JSON of its payload.
    const l = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: Infinity })
    const text = fs.readFileSync(l.lockPath, 'utf8')
    expect(text).toBe(JSON.stringify(JSON.parse(text), null, 2))
    await l.release()
    // No temporary names are left behind.
    expect(fs.readdirSync(path.dirname(l.lockPath))).toEqual([])
  }, 180_000)

  oldPeerIt('old-module waiters never get in while this process holds continuously across hand-offs', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    let lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 300_000 })
    const olds = [0, 1, 2].map(() => spawnTracked([legacyPath, 'hold', sessionFile, '--timeout-ms', '4000', '--hold-ms', '0']))
    const outcomes = Promise.all(olds.map((o) => o.exited))
    let done = false
    outcomes.then(() => {
      done = true
    })
    const holds = [Infinity, 300_000]
    for (let round = 0; !done; round++) {
      const next = swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: holds[round % 2], timeoutMs: 60_000 })
      await lease.release()
      lease = await next
      if (round % 20 === 0) await tick()
    }
    await lease.release()
    const exits = await outcomes
    for (const [i, o] of olds.entries()) {
      expect(o.lines, o.stderr()).toContain('timeout')
      expect(o.lines.some((l) => l.startsWith('acquired'))).toBe(false)
      expect(exits[i].code).toBe(3)
    }
  }, 120_000)
})

describe('a SIGKILL at any instant of a create leaves no file or a complete one', () => {
  it.each([
    ['linked into place with O_TMPFILE', {}],
    ['portable path (temporary name, then link)', { SESSION_WRITE_LOCK_PORTABLE_CREATE: '1' }],
  ])('%s: the next acquirer gets the lock promptly, no empty or garbage .lock left', async (_label, env) => {
    const dir = tmpDir('swl-excl-')
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const ITER = 25
    for (let i = 0; i < ITER; i++) {
      const c = spawnTracked([fixture('excl-churn.js'), sessionFile], { env })
      await c.waitLine('looping', 60_000)
      await pause(Math.floor(Math.random() * 15))
      c.kill('SIGKILL')
      await c.exited
      let text = null
      try {
        text = fs.readFileSync(lockPath, 'utf8')
      } catch (err) {
        expect(err.code).toBe('ENOENT')
      }
      if (text !== null) {
        const p = JSON.parse(text)
        expect(p).toMatchObject({ pid: c.child.pid, lock: 'os' })
        expect(text).toBe(JSON.stringify(p, null, 2))
      }
      // Under the 5 s grace a payload-less file would cost: the acquire must
      // not need it.
      const l = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 4000 })
      await l.release()
      expect(lockLikeFiles(dir)).toEqual([])
    }
  }, 240_000)
})

describe('a deleted lock file is never handed on inside a process', () => {
  it('after an rm of the held file, queued waiters contend afresh: no two critical sections overlap', async () => {
    const dir = tmpDir('swl-excl-')
    const sessionFile = path.join(dir, 's.jsonl')
    const journal = path.join(dir, 'journal')
    const p = spawnTracked([fixture('excl-journal.js'), sessionFile, journal, '6', '40', '--wait-go'])
    await p.waitLine('holding')
    fs.rmSync(`${sessionFile}.lock`)
    const q = spawnTracked([fixture('excl-journal.js'), sessionFile, journal, '6', '40'])
    await q.waitLine('holding')
    p.send('go')
    expect(await p.waitLine('owned')).toBe('owned false')
    await p.waitLine('done', 60_000)
    await q.waitLine('done', 60_000)
    const lines = fs.readFileSync(journal, 'utf8').trim().split('\n')
    expect(lines).toHaveLength(24)
    // P's first section held the file the rm deleted: Q overlapping it is
    // what the rm did (and P's assertOwned() said so). Every other section,
    // P's queued ones included, must be alone.
    const pFirst = `${p.child.pid}/0`
    let open = null
    for (const line of lines) {
      const [k, pid, i] = line.split(' ')
      if (`${pid}/${i}` === pFirst) continue
      if (k === 'B') {
        expect(open, `section ${pid}/${i} began inside ${open}:\n${lines.join('\n')}`).toBe(null)
        open = `${pid}/${i}`
      } else {
        expect(open).toBe(`${pid}/${i}`)
        open = null
      }
    }
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
  }, 120_000)

  it('assertOwned() and lease.signal report a lease whose file was deleted', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const signal = lease.signal
    expect(() => lease.assertOwned()).not.toThrow()
    fs.rmSync(lease.lockPath)
    expect(() => lease.assertOwned()).toThrow(swl.SessionWriteLockLostError)
    expect(signal.aborted).toBe(true)
    await lease.release()
  })
})

describe('waiting machinery that cannot start rejects instead of hanging', () => {
  async function holdElsewhere(sessionFile) {
    const h = spawnTracked([holderPath, sessionFile])
    await h.waitLine('acquired')
    return h
  }

  it.each([
    ['pipe', 'pipe', 'EMFILE'],
    ['spawn', 'pthread_create', 'EAGAIN'],
    ['inotify', 'inotify_init1', 'EMFILE'],
  ])('%s failure (test seam): the contended acquire rejects at once with a coded error; the next one waits and wakes', async (what, syscall, code) => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const h = await holdElsewhere(sessionFile)
    const c = spawnTracked([fixture('excl-wait.js'), sessionFile], {
      env: { SESSION_WRITE_LOCK_TEST_WAITER_FAIL: `${what}:1` },
    })
    const first = parseLine(await c.waitLine('first ', 30_000))
    expect(first).toMatchObject({ code, syscall })
    expect(first.name).toBe('Error')
    await c.waitLine('waiting')
    await pause(200)
    expect(c.lines.some((l) => l.startsWith('second'))).toBe(false)
    h.send('release')
    expect(parseLine(await c.waitLine('second', 30_000))).toEqual({ ok: true })
    expect((await c.exited).code).toBe(0)
  }, 60_000)

  it('descriptor exhaustion at the first contention: coded rejection, nothing leaked, later waits wake', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const h = await holdElsewhere(sessionFile)
    const c = spawnTracked([fixture('excl-wait.js'), sessionFile, '--emfile'], { command: 'prlimit', nodeArgs: ['--nofile=256', process.execPath] })
    const first = parseLine(await c.waitLine('first ', 30_000))
    expect(first.code).toBe('EMFILE')
    expect(typeof first.syscall).toBe('string')
    expect(first.fdsAfter).toBe(first.fdsBefore)
    await c.waitLine('waiting')
    h.send('release')
    expect(parseLine(await c.waitLine('second', 30_000))).toEqual({ ok: true })
  }, 60_000)

  it('with one descriptor left and the waiting machinery running, a contended acquire still waits and gets the lock (what is kept open for later gives way)', async () => {
    // A waiter keeps the unnamed file its first create built (Linux); at the
    // descriptor limit that file is closed so the lock file can be opened,
    // as a create from scratch (which closed its file first) could. At the
    // release the grant's own create needs a descriptor while the one it let
    // go of waits to be closed after the continuation: closed at once there.
    const dir = tmpDir('swl-excl-')
    const [s1, s2] = [path.join(dir, 'a.jsonl'), path.join(dir, 'b.jsonl')]
    const [h1, h2] = [await holdElsewhere(s1), await holdElsewhere(s2)]
    const c = spawnTracked([fixture('excl-lastfd.js'), s1, s2], { command: 'prlimit', nodeArgs: ['--nofile=256', process.execPath] })
    await c.waitLine('waiting1')
    await pause(100)
    h1.send('release')
    expect(parseLine(await c.waitLine('first ', 30_000))).toEqual({ ok: true })
    await c.waitLine('waiting2')
    await pause(200)
    h2.send('release')
    const second = parseLine(await c.waitLine('second ', 30_000))
    expect(second).toMatchObject({ ok: true })
    expect(second.fdsAfter).toBe(second.fdsBefore)
    expect((await c.exited).code).toBe(0)
  }, 60_000)

  it('a kernel without inotify degrades to polling, said once on stderr', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const h = await holdElsewhere(sessionFile)
    const c = spawnTracked([fixture('excl-wait.js'), sessionFile], {
      env: { SESSION_WRITE_LOCK_TEST_WAITER_FAIL: 'inotify-missing:9' },
    })
    await c.waitLine('first-started')
    h.send('release')
    expect(parseLine(await c.waitLine('first ', 30_000))).toEqual({ ok: true })
    expect(parseLine(await c.waitLine('second', 30_000))).toEqual({ ok: true })
    expect((await c.exited).code).toBe(0)
    const said = c.stderr().split('\n').filter((l) => l.includes('polling'))
    expect(said).toHaveLength(1)
  }, 60_000)
})

describe('one failed fast-path create does not downgrade the process', () => {
  it('after a linkat failure, later creates use O_TMPFILE again (strace)', async () => {
    const dir = tmpDir('swl-excl-')
    const sessionFile = path.join(dir, 's.jsonl')
    const log = path.join(dir, 'strace.log')
    // musl opens with open(2) on x86_64, glibc with openat(2); `?`: arm64 has no open(2).
    const r = spawnSync(
      'strace',
      ['-f', '-qq', '-o', log, '-e', 'trace=?open,openat,linkat,link', '-e', 'inject=linkat:error=EPERM:when=1', process.execPath, fixture('excl-creates.js'), sessionFile, '4'],
      { encoding: 'utf8', timeout: 60_000 },
    )
    expect(r.stdout).toContain('ok 4')
    const calls = fs.readFileSync(log, 'utf8').split('\n')
    const tmpfileOpens = calls.filter((l) => l.includes('O_TMPFILE'))
    const linkats = calls.filter((l) => /\blinkat\(/.test(l))
    expect(linkats.filter((l) => l.includes('EPERM') && l.includes('INJECTED'))).toHaveLength(1)
    expect(tmpfileOpens).toHaveLength(4)
    expect(linkats.length).toBeGreaterThanOrEqual(4)
  }, 90_000)
})

describe('a long hold keeps createdAt fresh for old-module peers', () => {
  oldPeerIt('an old-module contender with a short staleMs never gets in during a hold of several times staleMs, and does after release', async () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const h = spawnTracked([fixture('long-hold.js'), sessionFile, 'Infinity'], { env: { SESSION_WRITE_LOCK_REFRESH_MS: '200' } })
    const acq = parseLine(await h.waitLine('acquired'))
    const old = spawnTracked([legacyPath, 'hold', sessionFile, '--stale-ms', '3000', '--timeout-ms', '9000'])
    const oldExit = await old.exited
    expect(old.lines, old.stderr()).toContain('timeout')
    expect(oldExit.code).toBe(3)
    h.send('info')
    const info = parseLine(await h.waitLine('info'))
    expect(info.held[0].acquiredAt).toBe(acq.acquiredAt)
    expect(Date.parse(info.payload.createdAt)).toBeGreaterThan(Date.parse(acq.acquiredAt) + 5000)
    const text = fs.readFileSync(acq.lockPath, 'utf8')
    expect(text).toBe(JSON.stringify(JSON.parse(text), null, 2))
    // The file's mtime keeps the hold's real start (millisecond precision).
    expect(Math.abs(fs.statSync(acq.lockPath).mtimeMs - Date.parse(acq.acquiredAt))).toBeLessThan(2)
    h.send('release')
    await h.waitLine('released')
    const old2 = spawnTracked([legacyPath, 'hold', sessionFile, '--stale-ms', '2500', '--timeout-ms', '9000', '--hold-ms', '0'])
    await old2.waitLine('acquired', 30_000)
  }, 90_000)
})

describe('reclaiming a stale file never removes a lock created meanwhile', () => {
  // The child judges a dead holder's old-format file stale and, while it
  // holds that file's OS lock, strace stalls its next replacing call (the
  // exchange, or an unlink of the name) for 3 s. Meanwhile an old-module
  // process (played by this test) removes the stale file and creates its own
  // live lock. The child must not remove that lock: it waits for it instead.
  oldPeerIt('an old-module lock created between our check and our replace survives, and we wait for it', async () => {
    const dir = tmpDir('swl-excl-')
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${fs.realpathSync(dir)}/s.jsonl.lock`
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    fs.writeFileSync(lockPath, JSON.stringify({ pid: Number(dead.stdout), createdAt: new Date().toISOString() }, null, 2))
    const stall = 'delay_enter=3000000:when=1'
    const c = spawnTracked(
      ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=renameat2,unlink', '-e', `inject=renameat2:${stall}`, '-e', `inject=unlink:${stall}`, process.execPath, holderPath, sessionFile, '--timeout-ms', '6000'],
      { command: 'strace' },
    )
    // The child holds the stale file's OS lock: it has judged it, and stalls.
    const until = Date.now() + 30_000
    while (!swl.inspectLockFile(lockPath).held) {
      if (Date.now() > until) throw new Error(`the child never locked the stale file: ${c.stderr()}`)
      await pause(10)
    }
    fs.unlinkSync(lockPath)
    const theirs = JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(lockPath, theirs, { flag: 'wx' })
    const line = parseLine(await c.waitLine(/^(acquired|error) /))
    expect(line.code, JSON.stringify(line)).toBe('OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
    expect(fs.readFileSync(lockPath, 'utf8')).toBe(theirs)
  }, 60_000)
})

describe('every create path keeps the lock file mode at 0644 or stricter', () => {
  it('under umask 0: the portable create and a swapped-in rewrite', () => {
    const sessionFile = path.join(tmpDir('swl-excl-'), 's.jsonl')
    const script = `
      process.umask(0)
      const fs = require('node:fs')
      const swl = require(${JSON.stringify(path.resolve('index.js'))})
      const mode = (p) => fs.statSync(p).mode & 0o7777
      ;(async () => {
        const first = await swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)} })
        const created = mode(first.lockPath)
        // A waiter whose payload has another shape (no maxHoldMs) gets a new
        // file swapped in at the hand-off.
        const next = swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)}, maxHoldMs: Infinity })
        await first.release()
        const second = await next
        const swapped = mode(second.lockPath)
        await second.release()
        process.stdout.write(JSON.stringify({ created, swapped }))
      })()`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, SESSION_WRITE_LOCK_PORTABLE_CREATE: '1' }, timeout: 60_000 })
    expect(r.status, r.stderr).toBe(0)
    const { created, swapped } = JSON.parse(r.stdout)
    for (const m of [created, swapped]) {
      expect(m & ~0o644).toBe(0)
      expect(m & 0o600).toBe(0o600)
    }
  }, 60_000)
})
