// Errors (docs/spec.md: "The API", "Paths and exclusion", "Failure behaviour"): the timeout error, env overrides, the max-hold
// helper, hostile lock paths and OS errors (EACCES, ENOTDIR) with no file or
// descriptor left behind.
import { describe, it, expect, afterEach, vi } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, fixture, settledFdCount, fdCountBackTo, parseLine } = helpers
const counts = () => swl.__testing.registryCounts()
// Windows: no pid 1 (the parent, alive for the whole run, stands in), no
// FIFOs; under wine, symlinks are not reparse points. Skips print why.
const WIN = process.platform === 'win32'
const WINE = WIN && process.env.SWL_TEST_WINE === '1'
const LIVE_PID = WIN ? process.ppid : 1
const skipIf = (cond, reason) => (name, fn, timeout) => {
  if (!cond) return it(name, fn, timeout)
  console.warn(`errors.test: "${name}" skipped: ${reason}`)
  return it.skip(name, fn, timeout)
}
const WINE_SYMLINK = 'under wine: wine 8 opens a Unix symlink as its target (no reparse point to refuse); Windows refuses the reparse point'

const ENV_KEYS = [
  'OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS',
  'OPENCLAW_SESSION_WRITE_LOCK_STALE_MS',
  'OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS',
]
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]))
const children = []

afterEach(() => {
  vi.useRealTimers()
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k]
    else process.env[k] = savedEnv[k]
  }
  for (const c of children.splice(0)) c.kill()
  swl.resetSessionWriteLockStateForTest()
})

async function acquireError(params) {
  try {
    const lease = await swl.acquireSessionWriteLock(params)
    await lease.release()
  } catch (err) {
    return err
  }
  throw new Error('expected the acquire to fail')
}

describe('SessionWriteLockTimeoutError', () => {
  it('has the exact fields and message, holder.inProcess true for an in-process holder', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const a = await swl.acquireSessionWriteLock({ sessionFile })
    const err = await acquireError({ sessionFile, timeoutMs: 120 })
    expect(err).toBeInstanceOf(swl.SessionWriteLockTimeoutError)
    expect(err).toBeInstanceOf(swl.SessionWriteLockError)
    expect(swl.SessionWriteLockError).toBe(swl.SessionWriteLockTimeoutError)
    expect(err).toBeInstanceOf(Error)
    expect(err.name).toBe('SessionWriteLockTimeoutError')
    expect(err.reason).toBe('session_busy')
    expect(err.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
    expect(err.timeoutMs).toBe(120)
    expect(err.lockPath).toBe(a.lockPath)
    expect(err.owner).toBe(`pid=${process.pid}`)
    expect(err.message).toBe(`session file locked (timeout 120ms): pid=${process.pid} ${a.lockPath}`)
    expect(err.holder).toMatchObject({ pid: process.pid, inProcess: true, lockPath: a.lockPath })
    expect(Number.isNaN(Date.parse(err.holder.acquiredAt))).toBe(false)
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    // the timed-out waiter left nothing behind
    expect(counts().waiters).toBe(0)
    await a.release()
  })

  it('names a child holder by pid, holder.inProcess false', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const h = spawnNode([holderPath, sessionFile])
    children.push(h)
    const info = parseLine(await h.waitLine('acquired'))
    const err = await acquireError({ sessionFile, timeoutMs: 150 })
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${h.child.pid}`)
    expect(err.lockPath).toBe(info.lockPath)
    expect(err.message).toBe(`session file locked (timeout 150ms): pid=${h.child.pid} ${info.lockPath}`)
    expect(err.holder).toMatchObject({ pid: h.child.pid, inProcess: false })
    h.send('release')
    await h.waitLine('released')
  })

  it('isSessionWriteLockTimeoutError accepts the class or the code only', () => {
    const e = new swl.SessionWriteLockTimeoutError({ timeoutMs: 5, lockPath: '/x.lock', owner: 'unknown' })
    expect(e.message).toBe('session file locked (timeout 5ms): unknown /x.lock')
    expect(swl.isSessionWriteLockTimeoutError(e)).toBe(true)
    expect(swl.isSessionWriteLockTimeoutError({ code: 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT' })).toBe(true)
    expect(swl.isSessionWriteLockTimeoutError(new Error('session file locked'))).toBe(false)
    expect(swl.isSessionWriteLockTimeoutError({ code: 'OPENCLAW_SESSION_WRITE_LOCK_LOST' })).toBe(false)
    expect(swl.isSessionWriteLockTimeoutError(null)).toBe(false)
    expect(swl.isSessionWriteLockTimeoutError(undefined)).toBe(false)
    expect(swl.isSessionWriteLockTimeoutError('OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')).toBe(false)
  })

  it('SessionWriteLockLostError has its code', () => {
    const e = new swl.SessionWriteLockLostError('/x.lock', 'test')
    expect(e).toBeInstanceOf(Error)
    expect(e.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_LOST')
  })
})

describe('timeoutMs values and environment overrides', () => {
  // Fake timers make the 10 s default observable without waiting 10 s; only
  // the timeout timers are faked, the native wake-ups are real.
  const fake = () => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })

  async function observedTimeout(params, advanceMs) {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const a = await swl.acquireSessionWriteLock({ sessionFile })
    fake()
    let settled = null
    const p = swl.acquireSessionWriteLock({ sessionFile, ...params }).then(
      (l) => {
        settled = { lease: l }
      },
      (e) => {
        settled = { err: e }
      },
    )
    await vi.advanceTimersByTimeAsync(advanceMs)
    vi.useRealTimers()
    const out = settled
    await a.release()
    await p
    if (out === null) return 'pending'
    if (out.lease) await out.lease.release()
    return out.err && out.err.timeoutMs
  }

  it('defaults to 10000 ms; 0, negative, NaN and non-numbers take the default', async () => {
    for (const t of [undefined, 0, -5, NaN, '100', null]) {
      expect(await observedTimeout({ timeoutMs: t }, 10_001)).toBe(10_000)
    }
  })

  it('+Infinity waits beyond the default', async () => {
    expect(await observedTimeout({ timeoutMs: Infinity }, 60_000)).toBe('pending')
  })

  it('OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS sets the default; explicit timeoutMs wins', async () => {
    process.env.OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS = '150'
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const a = await swl.acquireSessionWriteLock({ sessionFile })
    const e1 = await acquireError({ sessionFile })
    expect(e1.timeoutMs).toBe(150)
    expect(e1.message).toBe(`session file locked (timeout 150ms): pid=${process.pid} ${a.lockPath}`)
    const e2 = await acquireError({ sessionFile, timeoutMs: 220 })
    expect(e2.timeoutMs).toBe(220)
    await a.release()
  })

  it('the timeout env value Infinity means wait forever', async () => {
    process.env.OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS = 'Infinity'
    expect(await observedTimeout({}, 60_000)).toBe('pending')
  })

  it('the timeout env value must be digits only', async () => {
    for (const v of ['1e3', '-5', '12ms', '', '0x10', '1.5']) {
      process.env.OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS = v
      expect(await observedTimeout({}, 10_001)).toBe(10_000)
    }
  })

  it('OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS sets the default maxHoldMs; explicit maxHoldMs wins', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const maxHold = async (params) => {
      const l = await swl.acquireSessionWriteLock({ sessionFile, ...params })
      const v = JSON.parse(fs.readFileSync(l.lockPath, 'utf8')).maxHoldMs
      await l.release()
      return v
    }
    expect(await maxHold({})).toBe(300_000)
    process.env.OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS = '12345'
    expect(await maxHold({})).toBe(12_345)
    expect(await maxHold({ maxHoldMs: 54_321 })).toBe(54_321)
    process.env.OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS = '1e5'
    expect(await maxHold({})).toBe(300_000)
  })

  it('OPENCLAW_SESSION_WRITE_LOCK_STALE_MS sets the default staleMs for old lock files; explicit staleMs wins', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    // An old-module lock file: live pid (1, init), created 60 s ago, no "lock": "os".
    const legacy = () =>
      fs.writeFileSync(`${sessionFile}.lock`, JSON.stringify({ pid: LIVE_PID, createdAt: new Date(Date.now() - 60_000).toISOString() }, null, 2))
    legacy()
    // default staleMs (30 min): a live old holder is waited for
    const e = await acquireError({ sessionFile, timeoutMs: 300 })
    expect(swl.isSessionWriteLockTimeoutError(e)).toBe(true)
    expect(e.owner).toBe(`pid=${LIVE_PID}`)
    expect(e.holder).toMatchObject({ pid: LIVE_PID, inProcess: false })
    process.env.OPENCLAW_SESSION_WRITE_LOCK_STALE_MS = '1000'
    // explicit staleMs wins over the env
    expect(swl.isSessionWriteLockTimeoutError(await acquireError({ sessionFile, timeoutMs: 300, staleMs: 1_800_000 }))).toBe(true)
    // the env value makes it too old: reclaimed
    const l = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 5000 })
    expect(JSON.parse(fs.readFileSync(l.lockPath, 'utf8')).pid).toBe(process.pid)
    await l.release()
  })
})

describe('resolveSessionLockMaxHoldFromTimeout', () => {
  const cases = [
    [{ timeoutMs: 10_000 }, 300_000],
    [{ timeoutMs: 1_000_000 }, 1_120_000],
    [{ timeoutMs: 180_000 }, 300_000],
    [{ timeoutMs: 180_001 }, 300_001],
    [{ timeoutMs: Infinity }, 2_147_000_000],
    [{ timeoutMs: 3_000_000_000 }, 2_147_000_000],
    [{ timeoutMs: 0 }, 420_000],
    [{ timeoutMs: -1 }, 420_000],
    [{ timeoutMs: NaN }, 420_000],
    [{ timeoutMs: '5000' }, 420_000],
    [{ timeoutMs: 1000, graceMs: 500, minMs: 100 }, 1500],
    [{ timeoutMs: 1000, graceMs: 0, minMs: 100 }, 121_000],
    [{ timeoutMs: 1000, graceMs: -3, minMs: 100 }, 121_000],
    [{ timeoutMs: 1000, graceMs: 500, minMs: 0 }, 300_000],
    [{ timeoutMs: 1000, graceMs: 500, minMs: NaN }, 300_000],
    [{ timeoutMs: 0, graceMs: 10, minMs: 50 }, 60],
    [{ timeoutMs: 10, graceMs: 10, minMs: 5000 }, 5000],
  ]
  for (const [input, want] of cases) {
    it(`${JSON.stringify(input, (k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))} -> ${want}`, () => {
      expect(swl.resolveSessionLockMaxHoldFromTimeout(input)).toBe(want)
    })
  }
})

describe('hostile lock paths', () => {
  skipIf(WINE, WINE_SYMLINK)('a symlink at the lock path is never followed: ELOOP at once, victim untouched', async () => {
    const dir = tmpDir()
    const victim = path.join(dir, 'victim.txt')
    fs.writeFileSync(victim, 'precious')
    fs.chmodSync(victim, 0o600)
    const past = new Date(Date.now() - 3_600_000)
    fs.utimesSync(victim, past, past)
    const pre = fs.statSync(victim)
    const sessionFile = path.join(dir, 's.jsonl')
    fs.symlinkSync(victim, `${sessionFile}.lock`)
    const fds = await settledFdCount()
    const err = await acquireError({ sessionFile, timeoutMs: 60_000 })
    expect(err).toBeInstanceOf(Error)
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(false)
    expect(err.code).toBe('ELOOP')
    expect(err.syscall).toBe('open')
    expect(err.path).toBe(path.join(fs.realpathSync(dir), 's.jsonl.lock'))
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious')
    const st = fs.statSync(victim)
    expect(st.mode & 0o777).toBe(0o600)
    expect(st.mtimeMs).toBe(pre.mtimeMs)
    expect(st.ino).toBe(pre.ino)
    expect(fs.lstatSync(`${sessionFile}.lock`).isSymbolicLink()).toBe(true)
    expect(await fdCountBackTo(fds)).toBe(fds)
    expect(counts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
  })

  skipIf(WINE, WINE_SYMLINK)('a dangling symlink at the lock path does not create its target', async () => {
    const dir = tmpDir()
    const target = path.join(dir, 'created-through-link')
    const sessionFile = path.join(dir, 's.jsonl')
    fs.symlinkSync(target, `${sessionFile}.lock`)
    const err = await acquireError({ sessionFile, timeoutMs: 60_000 })
    expect(err.code).toBe('ELOOP')
    expect(fs.existsSync(target)).toBe(false)
  })

  it('a hard link to a victim at the lock path: never written; the link is replaced, the victim keeps its content', async () => {
    const dir = tmpDir()
    const victim = path.join(dir, 'victim.txt')
    fs.writeFileSync(victim, 'precious')
    const past = new Date(Date.now() - 3_600_000)
    fs.utimesSync(victim, past, past)
    const sessionFile = path.join(dir, 's.jsonl')
    fs.linkSync(victim, `${sessionFile}.lock`)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious')
    expect(fs.statSync(victim).nlink).toBe(1)
    expect(fs.statSync(lease.lockPath).ino).not.toBe(fs.statSync(victim).ino)
    await lease.release()
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious')
  })

  it('a directory at the lock path: EISDIR at once, left alone', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    fs.mkdirSync(`${sessionFile}.lock`)
    fs.writeFileSync(path.join(`${sessionFile}.lock`, 'inside'), 'x')
    const err = await acquireError({ sessionFile, timeoutMs: 60_000 })
    expect(err.code).toBe('EISDIR')
    expect(err.syscall).toBe('open')
    expect(err.path).toBe(path.join(fs.realpathSync(dir), 's.jsonl.lock'))
    expect(fs.readFileSync(path.join(`${sessionFile}.lock`, 'inside'), 'utf8')).toBe('x')
  })

  skipIf(WIN, 'meaningless on Windows: no FIFOs in the file system')('a FIFO at the lock path: EINVAL at once, no hang, left alone', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    execFileSync('mkfifo', [`${sessionFile}.lock`])
    const fds = await settledFdCount()
    const err = await Promise.race([
      acquireError({ sessionFile, timeoutMs: 60_000 }),
      new Promise((_, rej) => setTimeout(() => rej(new Error('acquire on a FIFO hung')), 20_000)),
    ])
    expect(err.code).toBe('EINVAL')
    expect(err.syscall).toBe('open')
    expect(err.path).toBe(path.join(fs.realpathSync(dir), 's.jsonl.lock'))
    expect(fs.lstatSync(`${sessionFile}.lock`).isFIFO()).toBe(true)
    expect(await fdCountBackTo(fds)).toBe(fds)
  })

  it('a symlink at the lock path also fails for a waiter queued behind a holder', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnNode([holderPath, sessionFile])
    children.push(h)
    await h.waitLine('acquired')
    const victim = path.join(dir, 'victim.txt')
    fs.writeFileSync(victim, 'precious')
    const p = acquireError({ sessionFile, timeoutMs: 30_000 }).catch((e) => e)
    // the holder releases (unlinking its file); an attacker plants a symlink
    h.send('release')
    await h.waitLine('released')
    try {
      fs.symlinkSync(victim, `${sessionFile}.lock`)
    } catch {
      // the waiter already created its own file: nothing to plant
    }
    const err = await p
    if (err instanceof Error && err.message === 'expected the acquire to fail') {
      // the waiter won the race and locked a regular file; fine
    } else {
      expect(err.code).toBe('ELOOP')
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious')
  })
})

describe('OS errors', () => {
  it('ENOTDIR (a regular file used as a directory): coded error, no file, no descriptor left', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'plain'), 'x')
    const sessionFile = path.join(dir, 'plain', 'sub', 's.jsonl')
    // warm up lazily created descriptors
    const w = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'w.jsonl') })
    await w.release()
    const fds = await settledFdCount()
    const err = await acquireError({ sessionFile, timeoutMs: 60_000 })
    expect(err).toBeInstanceOf(Error)
    expect(err.code).toBe('ENOTDIR')
    expect(err.syscall).toBe('mkdir')
    expect(err.path).toBe(path.join(fs.realpathSync(dir), 'plain', 'sub'))
    expect(fs.readFileSync(path.join(dir, 'plain'), 'utf8')).toBe('x')
    expect(fs.readdirSync(dir).sort()).toEqual(['plain'])
    expect(await fdCountBackTo(fds)).toBe(fds)
    expect(counts()).toEqual({ keys: 0, holders: 0, waiters: 0 })
  })

  it('ENOTDIR in a child process too, counted there', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'plain'), 'x')
    const c = spawnNode([fixture('core-oserr.js'), path.join(dir, 'plain', 'sub', 's.jsonl'), path.join(dir, 'w.jsonl')])
    children.push(c)
    const r = JSON.parse(await c.waitLine('{'))
    expect(r.ok).toBe(false)
    expect(r.error.code).toBe('ENOTDIR')
    expect(r.error.isError).toBe(true)
    expect(r.error.syscall).toBeTruthy()
    expect(r.error.path).toBeTruthy()
    expect(r.fdsAfter).toBe(r.fdsBefore)
  })

  // Decision: when the session file's direct parent is a regular file, `mkdir -p`
  // reports EEXIST (as Node's fs.mkdir({recursive}) and so the old module do);
  // a deeper component gives ENOTDIR. Either way a coded error, nothing left.
  it('a regular file as the direct parent: coded mkdir error (EEXIST, as Node mkdir -p), nothing left', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'plain'), 'x')
    const fds = await settledFdCount()
    const err = await acquireError({ sessionFile: path.join(dir, 'plain', 's.jsonl'), timeoutMs: 60_000 })
    expect(['EEXIST', 'ENOTDIR']).toContain(err.code)
    expect(err.syscall).toBe('mkdir')
    expect(err.path).toBe(path.join(dir, 'plain'))
    expect(fs.readdirSync(dir)).toEqual(['plain'])
    expect(await fdCountBackTo(fds)).toBe(fds)
  })

  const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0
  it.skipIf(!hasPrlimit)('EMFILE (no descriptor left, under prlimit --nofile=256): coded error with path, no file, no descriptor left', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const c = spawnNode(['--nofile=256', process.execPath, fixture('core-emfile.js'), sessionFile, path.join(dir, 'w.jsonl')], { command: 'prlimit' })
    children.push(c)
    const r = JSON.parse(await c.waitLine('{', 30_000))
    expect(r.fatal).toBeUndefined()
    expect(r.error).toEqual({ code: 'EMFILE', syscall: 'open', path: path.join(fs.realpathSync(dir), 's.jsonl.lock'), isError: true })
    expect(r.lockLeft).toBe(false)
    expect(r.fdsAfter).toBe(r.fdsBefore)
    expect(r.retryOk).toBe(true)
  })

  it.skipIf(!hasPrlimit)('EFBIG while writing the payload (prlimit --fsize=50): coded error with the lock path, the created file removed', async () => {
    const dir = tmpDir()
    const sessionFile = path.join(dir, 's.jsonl')
    const c = spawnNode(['--fsize=50', process.execPath, fixture('core-oserr.js'), sessionFile, path.join(dir, 'w.jsonl')], { command: 'prlimit' })
    children.push(c)
    const r = JSON.parse(await c.waitLine('{', 30_000))
    expect(r.fatal).toBeUndefined()
    expect(r.ok).toBe(false)
    expect(r.error).toMatchObject({ code: 'EFBIG', syscall: 'write', path: path.join(fs.realpathSync(dir), 's.jsonl.lock'), isError: true })
    expect(r.lockExists).toBe(false)
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
    expect(r.fdsAfter).toBe(r.fdsBefore)
  })

  const canDropPrivileges = typeof process.getuid === 'function' && process.getuid() === 0
  it.skipIf(!canDropPrivileges)('EACCES (directory without write permission, as uid 65534): coded error with path, no file, no descriptor left', async () => {
    const dir = tmpDir()
    fs.chmodSync(dir, 0o755)
    const ro = path.join(dir, 'ro')
    fs.mkdirSync(ro, { mode: 0o555 })
    fs.chmodSync(ro, 0o555)
    const ww = path.join(dir, 'ww')
    fs.mkdirSync(ww)
    fs.chmodSync(ww, 0o777)
    const sessionFile = path.join(ro, 's.jsonl')
    const c = spawnNode([fixture('core-oserr.js'), sessionFile, path.join(ww, 'w.jsonl'), '--uid', '65534', '--gid', '65534'])
    children.push(c)
    const line = await c.waitLine('{')
    const r = JSON.parse(line)
    expect(r.fatal).toBeUndefined()
    expect(r.uid).toBe(65534)
    expect(r.ok).toBe(false)
    expect(r.error.isError).toBe(true)
    expect(r.error.code).toBe('EACCES')
    expect(r.error.syscall).toBe('open')
    expect(r.error.path).toBe(path.join(fs.realpathSync(ro), 's.jsonl.lock'))
    expect(r.lockExists).toBe(false)
    expect(fs.readdirSync(ro)).toEqual([])
    expect(r.fdsAfter).toBe(r.fdsBefore)
  })
})
