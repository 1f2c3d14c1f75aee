// docs/spec.md "Old lock files" through acquireSessionWriteLock: lock files written by the old
// TypeScript module (no "lock": "os", no OS lock) and mixed fleets where an
// old gateway (the fixture __test__/fixtures/legacy-lock.js, run as a real
// child process) and ours contend for the same session.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'
import {
  startTime,
  deadPid,
  track,
  resetAfterTest,
  tempDirs,
  sleeper,
  otherUserTarget,
  waitLine,
  zombie,
  oldPayload,
  writeAged as writeOld,
} from './fixtures/proc-helpers.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const LEGACY = path.join(here, 'fixtures', 'legacy-lock.js')
const INDEX = path.join(here, '..', 'index.js')
const legacy = require(LEGACY)

const dirs = tempDirs('swl-legacy-')
const tmp = () => dirs.make()

afterEach(() => resetAfterTest(swl, dirs))

const YEAR = 365 * 24 * 3_600_000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Under a user-mode emulator (SWL_TEST_EMULATED=qemu, set by npm run cross for
// the arm64 run) a process reading its own /proc/self/stat gets a start time
// the emulator made up, a few ticks off what /proc/<pid>/stat shows to others.
// The old module records its start time from /proc/self/stat, we compare it
// with /proc/<pid>/stat, so a live old holder looks recycled. Those tests are
// skipped there, and say so.
const EMULATED = process.env.SWL_TEST_EMULATED || ''
const SELF_STAT_SKIP = `skipped under ${EMULATED}: it fakes /proc/self/stat start times, so the old module's recorded start time never matches`
// Windows: what has no meaning there is skipped, and says why.
const WIN = process.platform === 'win32'
const WINE = WIN && process.env.SWL_TEST_WINE === '1'
const skipIf = (cond, reason) => (name, fn, timeout) => {
  if (!cond) return it(name, fn, timeout)
  console.warn(`legacy.test: "${name}" skipped: ${reason}`)
  return it.skip(name, fn, timeout)
}
const notOnWindows = (reason) => skipIf(WIN, `meaningless on Windows: ${reason}`)
const notUnderWine = (reason) => skipIf(WINE, `under wine: ${reason}`)
const selfStatIt = EMULATED ? (name, fn) => { console.warn(`legacy.test: "${name}" ${SELF_STAT_SKIP}`); return it.skip(name, fn) } : it

function collect(child) {
  const out = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (d) => (out.stdout += d))
  child.stderr.on('data', (d) => (out.stderr += d))
  return out
}

/** The old gateway holding `sessionFile` (until stdin closes / SIGTERM). */
async function legacyHolder(sessionFile) {
  const child = track(spawn(process.execPath, [LEGACY, 'hold', sessionFile], { stdio: ['pipe', 'pipe', 'pipe'] }))
  const lockPath = await waitLine(child, 'acquired ')
  return { child, lockPath, pid: child.pid }
}

/** The old gateway trying to take `sessionFile` (holds it once acquired until stdin closes). */
function legacyContender(sessionFile, timeoutMs) {
  const child = track(
    spawn(process.execPath, [LEGACY, 'hold', sessionFile, '--timeout-ms', String(timeoutMs)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  )
  const out = collect(child)
  return { child, out }
}

/** Settles to "acquired" or the rejection; never throws. */
async function outcome(promise) {
  try {
    const lease = await promise
    return { lease }
  } catch (err) {
    return { err }
  }
}

async function expectReclaimed(sessionFile, lockPath) {
  const { lease, err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 }))
  expect(err).toBeUndefined()
  expect(lease.lockPath).toBe(lockPath)
  const payload = JSON.parse(fs.readFileSync(lockPath, 'utf8'))
  expect(payload.pid).toBe(process.pid)
  expect(payload.lock).toBe('os')
  await lease.release()
  expect(fs.existsSync(lockPath)).toBe(false)
}

async function expectWaitsAndTimesOut(sessionFile, lockPath, owner, timeoutMs = 400) {
  const before = fs.readFileSync(lockPath)
  const { lease, err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs }))
  if (lease) await lease.release()
  expect(lease).toBeUndefined()
  expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
  expect(err.message).toBe(`session file locked (timeout ${timeoutMs}ms): ${owner} ${lockPath}`)
  // The old file is left exactly as it was.
  expect(fs.readFileSync(lockPath).equals(before)).toBe(true)
}

describe('mixed fleet: an old gateway holds, ours waits', () => {
  selfStatIt('waits for a live old holder, names it in the timeout, and acquires once it releases', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const holder = await legacyHolder(sessionFile)
    expect(holder.lockPath).toBe(path.join(dir, 's.jsonl.lock'))
    const onDisk = JSON.parse(fs.readFileSync(holder.lockPath, 'utf8'))
    expect(onDisk.pid).toBe(holder.pid)
    expect(onDisk.lock).toBeUndefined()

    const { err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 500 }))
    expect(err).toBeInstanceOf(swl.SessionWriteLockTimeoutError)
    expect(err.message).toBe(`session file locked (timeout 500ms): pid=${holder.pid} ${holder.lockPath}`)
    expect(err.owner).toBe(`pid=${holder.pid}`)
    expect(err.lockPath).toBe(holder.lockPath)

    let settled = false
    const pending = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 }).finally(() => (settled = true))
    await sleep(300)
    expect(settled).toBe(false)
    expect(JSON.parse(fs.readFileSync(holder.lockPath, 'utf8')).pid).toBe(holder.pid)

    holder.child.stdin.end() // the old gateway releases (unlinks its file) and exits
    const exit = await holder.child.exited
    expect(exit.code).toBe(0)
    const lease = await pending
    expect(lease.lockPath).toBe(holder.lockPath)
    const mine = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    expect(mine.pid).toBe(process.pid)
    expect(mine.lock).toBe('os')
    await lease.release()
    expect(fs.existsSync(lease.lockPath)).toBe(false)
  })

  it('a SIGKILLed old holder (its pid dead) is reclaimed by a waiting acquire', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const holder = await legacyHolder(sessionFile)
    const pending = outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 }))
    await sleep(200)
    holder.child.kill('SIGKILL')
    await holder.child.exited
    // The old holder never unlinked its file: only the dead-pid rule frees it.
    const { lease, err } = await pending
    expect(err).toBeUndefined()
    expect(JSON.parse(fs.readFileSync(lease.lockPath, 'utf8')).lock).toBe('os')
    await lease.release()
  })
  notUnderWine(
    "wine's delete is the classic one (the name stays while we hold the file open); Windows 10 NTFS removes it at once",
  )('a live old holder reclaimed as too-old still unlinks the path on release: assertCurrent notices', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const holder = await legacyHolder(sessionFile)
    await sleep(20)
    // staleMs 10 ms: the live old holder's file is too old, reclaimed at once.
    const lease = await swl.acquireSessionWriteLock({ sessionFile, staleMs: 10, timeoutMs: 10_000 })
    await lease.assertCurrent()
    holder.child.stdin.end() // the old module's release removes whatever the path names
    expect((await holder.child.exited).code).toBe(0)
    expect(fs.existsSync(lease.lockPath)).toBe(false)
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    await lease.release()
  })
})

describe('mixed fleet: ours holds, an old gateway contends', () => {
  selfStatIt('the old module sees our file as held by a live process, times out naming us, and acquires after we release', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const ours = fs.readFileSync(lease.lockPath, 'utf8')

    const first = legacyContender(sessionFile, 600)
    const exit = await first.child.exited
    expect(exit.code).toBe(3)
    expect(first.out.stdout).toContain('timeout')
    expect(first.out.stderr).toContain(`session file locked (timeout 600ms): pid=${process.pid} ${lease.lockPath}`)
    // It neither removed nor rewrote our file.
    expect(fs.readFileSync(lease.lockPath, 'utf8')).toBe(ours)
    await lease.assertCurrent()

    // A contender already waiting when we release gets it.
    const second = legacyContender(sessionFile, 30_000)
    const acquired = waitLine(second.child, 'acquired ')
    await sleep(300)
    expect(second.out.stdout).not.toContain('acquired')
    await lease.release()
    expect(await acquired).toBe(lease.lockPath)
    const theirs = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    expect(theirs.pid).toBe(second.child.pid)
    expect(theirs.lock).toBeUndefined()
    second.child.stdin.end()
    expect((await second.child.exited).code).toBe(0)
    expect(fs.existsSync(lease.lockPath)).toBe(false)
  })

  it('the fixture CLI releases on --hold-ms and on SIGTERM (stdin not a pipe)', async () => {
    const dir = tmp()
    // Windows: a SIGTERM from another process is TerminateProcess (no handler runs).
    for (const how of WIN ? ['hold-ms'] : ['hold-ms', 'SIGTERM']) {
      const sessionFile = path.join(dir, `${how}.jsonl`)
      const args = [LEGACY, 'hold', sessionFile, ...(how === 'hold-ms' ? ['--hold-ms', '300'] : [])]
      const child = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }))
      const lockPath = await waitLine(child, 'acquired ')
      expect(fs.existsSync(lockPath)).toBe(true)
      if (how === 'SIGTERM') {
        await sleep(200)
        expect(fs.existsSync(lockPath)).toBe(true)
        child.kill('SIGTERM')
      }
      expect((await child.exited).code).toBe(0)
      expect(fs.existsSync(lockPath)).toBe(false)
    }
  })

  it('the fixture follows the old rules (sanity: it reclaims what the old module reclaimed)', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = path.join(dir, 's.jsonl.lock')
    // dead pid: reclaimed at once
    writeOld(lockPath, oldPayload({ pid: deadPid(), createdAt: new Date().toISOString() }))
    const a = await legacy.acquireLegacy({ sessionFile, timeoutMs: 2000 })
    expect(a.lockPath).toBe(lockPath)
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid).toBe(process.pid)
    await a.release()
    // live holder: times out with its pid
    const s = sleeper()
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) }))
    await expect(legacy.acquireLegacy({ sessionFile, timeoutMs: 300 })).rejects.toThrow(
      `session file locked (timeout 300ms): pid=${s.pid} ${lockPath}`,
    )
  })
})

describe('old lock files judged by acquire (§4)', () => {
  it('dead-pid: a file naming a reaped process is reclaimed at once', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    writeOld(lockPath, oldPayload({ pid: deadPid(), createdAt: new Date().toISOString() }))
    await expectReclaimed(sessionFile, lockPath)
  })

  it('a live old holder with matching start time is waited for', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) }))
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
  })

  it('recycled-pid: same live pid, recorded start time differs, is reclaimed', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) + 1 }))
    await expectReclaimed(sessionFile, lockPath)
  })

  it('recycled-pid through the start-time seam (and the seam is off once cleared)', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    const real = startTime(s.pid)
    const content = oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: real })
    writeOld(lockPath, content)
    // Pretend the pid now belongs to a process started later.
    swl.__testing.setStartTimeOverride(s.pid, real + 1000)
    await expectReclaimed(sessionFile, lockPath)
    swl.__testing.clearStartTimeOverrides()
    writeOld(lockPath, content)
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
    // An override of "unknown" start time cannot prove reuse either.
    swl.__testing.setStartTimeOverride(s.pid, null)
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
  })

  it('orphan-self-pid: a file naming this process that it does not hold is reclaimed', async () => {
    const dir = tmp()
    const me = swl.__testing.identity()
    for (const [i, fields] of [
      { pid: process.pid, createdAt: new Date().toISOString() },
      { pid: process.pid, createdAt: new Date().toISOString(), starttime: me.starttime },
    ].entries()) {
      const sessionFile = path.join(dir, `self-${i}.jsonl`)
      const lockPath = `${sessionFile}.lock`
      writeOld(lockPath, oldPayload(fields))
      await expectReclaimed(sessionFile, lockPath)
    }
  })

  it('too-old: a live holder older than staleMs is reclaimed at once (as the old module did)', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    const fields = { pid: s.pid, createdAt: new Date(Date.now() - 31 * 60_000).toISOString(), starttime: startTime(s.pid) }
    writeOld(lockPath, oldPayload(fields))
    await expectReclaimed(sessionFile, lockPath)
    // The same age under a larger staleMs is respected.
    writeOld(lockPath, oldPayload(fields))
    const { err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 400, staleMs: 3_600_000 }))
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${s.pid}`)
    // And a small staleMs makes a young file too old.
    writeOld(lockPath, oldPayload({ ...fields, createdAt: new Date(Date.now() - 2000).toISOString() }))
    const lease = await swl.acquireSessionWriteLock({ sessionFile, staleMs: 1000 })
    await lease.release()
  })

  it('invalid createdAt with a live pid is treated as payload-less: waited for while fresh', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: 'yesterday-ish', starttime: startTime(s.pid) }))
    // Only reason: invalid-createdAt, inside its mtime grace.
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: 'yesterday-ish', starttime: startTime(s.pid) }), 60_000)
    await expectReclaimed(sessionFile, lockPath)
  })

  it('a createdAt more than 5 minutes in the future is invalid-createdAt: reclaimed once its mtime grace is over', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = sleeper()
    const fields = { pid: s.pid, starttime: startTime(s.pid) }
    // A year ahead: without the rule it would never age, and a live pid would block the session for good.
    const future = new Date(Date.now() + YEAR).toISOString()
    writeOld(lockPath, oldPayload({ ...fields, createdAt: future }))
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
    writeOld(lockPath, oldPayload({ ...fields, createdAt: future }), 60_000)
    await expectReclaimed(sessionFile, lockPath)
    // Clock skew of up to 5 minutes is tolerated: such a file is a live holder, waited for even when old on disk.
    writeOld(lockPath, oldPayload({ ...fields, createdAt: new Date(Date.now() + 4 * 60_000).toISOString() }), 60_000)
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${s.pid}`)
  })

  it('payload-less file: waited for while its mtime is fresh, reclaimed once older than min(staleMs, 5 s)', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    writeOld(lockPath, '')
    await expectWaitsAndTimesOut(sessionFile, lockPath, 'unknown')
    writeOld(lockPath, '', 10_000)
    await expectReclaimed(sessionFile, lockPath)
    // grace = min(staleMs, 5 s): with staleMs 1 s, a 2 s old empty file is reclaimable.
    writeOld(lockPath, '', 2_000)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, staleMs: 1_000 })
    await lease.release()
    writeOld(lockPath, '', 2_000)
    const { err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 300 }))
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
  })

  it('a payload-less file being written by the old module is reclaimed only after its grace: acquire waits, then takes it', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    // mtime 4.5 s ago: the 5 s grace ends while we wait (we poll old files).
    writeOld(lockPath, '{', 4_500)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 20_000 })
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid).toBe(process.pid)
    await lease.release()
  })

  it("another host's pid is judged only by too-old, never by local liveness", async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const gone = deadPid()
    const fresh = { pid: gone, createdAt: new Date().toISOString(), starttime: 1, hostname: 'other-host.invalid' }
    writeOld(lockPath, oldPayload(fresh))
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${gone}`)
    // Our own pid recorded by another host is not an orphan of ours either.
    writeOld(lockPath, oldPayload({ ...fresh, pid: process.pid }))
    await expectWaitsAndTimesOut(sessionFile, lockPath, `pid=${process.pid}`)
    writeOld(lockPath, oldPayload({ ...fresh, createdAt: new Date(Date.now() - 31 * 60_000).toISOString() }))
    await expectReclaimed(sessionFile, lockPath)
  })

  notOnWindows('there are no zombies (an exited process is dead, handles or not)')('a zombie holder counts as dead', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    // kill(pid, 0) still succeeds on a zombie (zombie() asserts it): the old module thought it alive.
    const { pid: zombiePid, starttime: st } = await zombie()
    expect(zombiePid).toBeGreaterThan(0)
    expect(legacy.staleReasons({ pid: zombiePid, createdAt: new Date().toISOString(), starttime: st }, 1_800_000)).toEqual([])
    writeOld(lockPath, oldPayload({ pid: zombiePid, createdAt: new Date().toISOString(), starttime: st }))
    await expectReclaimed(sessionFile, lockPath)
  })

  it('EPERM counts as alive: a process of another user is waited for', async (ctx) => {
    const t = otherUserTarget()
    if (t === null) return ctx.skip() // no process of another user to check against
    const dir = tmp()
    fs.chmodSync(dir, 0o777)
    const sessionFile = path.join(dir, 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const s = { pid: t.pid }
    writeOld(lockPath, oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) }))
    fs.chmodSync(lockPath, 0o666)
    const script = `
      const swl = require(${JSON.stringify(INDEX)})
      const legacy = require(${JSON.stringify(LEGACY)})
      const pid = ${s.pid}
      let kill = 'ok'
      try { process.kill(pid, 0) } catch (e) { kill = e.code }
      const oldReasons = legacy.staleReasons(JSON.parse(require('fs').readFileSync(${JSON.stringify(lockPath)}, 'utf8')), 1800000)
      swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)}, timeoutMs: 400 }).then(
        (l) => { console.log(JSON.stringify({ kill, oldReasons, acquired: true })); return l.release() },
        (e) => console.log(JSON.stringify({ kill, oldReasons, acquired: false, message: e.message })),
      )`
    const r = spawnSync(process.execPath, ['-e', script], { ...t.spawnOpts, encoding: 'utf8', timeout: 30_000 })
    expect(r.stderr).toBe('')
    const res = JSON.parse(r.stdout.trim())
    expect(res.kill).toBe('EPERM') // the check really ran against another user's process
    expect(res.oldReasons).toEqual(['dead-pid']) // what the old module got wrong
    expect(res.acquired).toBe(false)
    expect(res.message).toBe(`session file locked (timeout 400ms): pid=${s.pid} ${lockPath}`)
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid).toBe(s.pid)
  })

  it('our own held file is not an orphan-self lock: a second in-process acquire waits', async () => {
    // Our own live lock file (pid = ours, "lock": "os") must never be judged
    // orphan-self by a second in-process acquire: it waits (FIFO) instead.
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const { err } = await outcome(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 300 }))
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${process.pid}`)
    await lease.assertCurrent()
    await lease.release()
  })
})

describe('malformed old lock files (acquire never throws, follows the payload-less rules)', () => {
  const big = () => {
    // A would-be payload padded to 10 MB: past the read cap, so it is not a payload.
    const head = `{"pid": ${process.ppid}, "createdAt": "${new Date().toISOString()}", "pad": "`
    return Buffer.concat([Buffer.from(head), Buffer.alloc(10 * 1024 * 1024, 0x61), Buffer.from('"}')])
  }
  const cases = {
    empty: () => '',
    truncated: () => '{\n  "pid": 12',
    binary: () => Buffer.from([0x00, 0xff, 0xfe, 0x7b, 0x22, 0x80, 0x00, 0x0a, 0xc3, 0x28]),
    '10 MB': big,
    'JSON array': () => JSON.stringify([process.ppid, new Date().toISOString()]),
    'JSON null': () => 'null',
    'wrong types': () => JSON.stringify({ pid: String(process.ppid), createdAt: 12 }),
  }
  for (const [name, make] of Object.entries(cases)) {
    it(`${name}: waited for while fresh, reclaimed once old`, async () => {
      const dir = tmp()
      const sessionFile = path.join(dir, 's.jsonl')
      const lockPath = `${sessionFile}.lock`
      writeOld(lockPath, make())
      await expectWaitsAndTimesOut(sessionFile, lockPath, 'unknown', 250)
      writeOld(lockPath, make(), 60_000)
      await expectReclaimed(sessionFile, lockPath)
    })
  }
})
