// Follow-ups on exclusion and inspection (docs/exclusion.md, docs/spec.md):
// a waiter whose inotify watch cannot be added says so once on stderr and
// still wakes and times out; inspection shows a long hold's real start
// (`heldSince`, the file's mtime) while its createdAt is kept fresh; and the
// sweep removes stray temporary files of the portable create once they are
// unlocked and past the payload-less grace.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, fixture, parseLine } = helpers
const BIN = fileURLToPath(new URL('../bin/session-lock.js', import.meta.url))
const children = []
// The system call behind unlink(): arm64 has no unlink(2), its C libraries call unlinkat(2).
const UNLINK = process.arch === 'arm64' ? 'unlinkat' : 'unlink'
const spawnTracked = (args, opts) => {
  const h = spawnNode(args, opts)
  children.push(h)
  return h
}
const pause = (ms) => new Promise((r) => setTimeout(r, ms))
// Windows: the watch call the waiting thread names, and what has no meaning there.
const WIN = process.platform === 'win32'
const WATCH_SYSCALL = WIN ? 'FindFirstChangeNotificationW' : 'inotify_add_watch'
const notOnWindows = (reason) => (name, fn, timeout) => {
  if (!WIN) return it(name, fn, timeout)
  console.warn(`followups.test: "${name}" skipped: meaningless on Windows: ${reason}`)
  return it.skip(name, fn, timeout)
}

afterEach(() => {
  for (const c of children.splice(0)) c.kill()
  swl.resetSessionWriteLockStateForTest()
})

async function holdElsewhere(sessionFile) {
  const h = spawnTracked([holderPath, sessionFile])
  const info = parseLine(await h.waitLine('acquired'))
  return { h, info }
}

describe('a waiter whose inotify watch cannot be added', () => {
  it('says so once on stderr (code and path), still times out, and still wakes when the holder releases', async () => {
    const sessionFile = path.join(tmpDir('swl-follow-'), 's.jsonl')
    const { h, info } = await holdElsewhere(sessionFile)
    const w = spawnTracked([fixture('follow-wait.js'), sessionFile, '1500'], {
      env: { SESSION_WRITE_LOCK_TEST_WAITER_FAIL: 'add-watch:1000000' },
    })
    // timeoutMs still bounds a wait without a watch.
    const first = parseLine(await w.waitLine('first ', 60_000))
    expect(first).toMatchObject({ code: 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT', name: 'SessionWriteLockTimeoutError' })
    await w.waitLine('waiting')
    await pause(300)
    expect(w.lines.some((l) => l.startsWith('second'))).toBe(false)
    h.send('release')
    expect(parseLine(await w.waitLine('second', 30_000))).toMatchObject({ ok: true })
    expect((await w.exited).code).toBe(0)
    // Two waits without a watch, one line.
    const said = w.stderr().split('\n').filter((l) => l.startsWith('[session-write-lock]'))
    expect(said).toHaveLength(1)
    expect(said[0]).toContain(WATCH_SYSCALL)
    expect(said[0]).toContain('ENOSPC')
    expect(said[0]).toContain(info.lockPath)
    expect(said[0]).toContain('polling')
  }, 90_000)

  it('a watch that fails only for a while: one line, and the wait wakes on release', async () => {
    const sessionFile = path.join(tmpDir('swl-follow-'), 's.jsonl')
    const { h } = await holdElsewhere(sessionFile)
    const w = spawnTracked([fixture('follow-wait.js'), sessionFile, '800'], {
      env: { SESSION_WRITE_LOCK_TEST_WAITER_FAIL: 'add-watch:3' },
    })
    expect(parseLine(await w.waitLine('first ', 60_000)).code).toBe('OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT')
    await w.waitLine('waiting')
    h.send('release')
    expect(parseLine(await w.waitLine('second', 30_000))).toMatchObject({ ok: true })
    const said = w.stderr().split('\n').filter((l) => l.startsWith('[session-write-lock]'))
    expect(said).toHaveLength(1)
  }, 90_000)

  it('without the seam a contended wait prints nothing', async () => {
    const sessionFile = path.join(tmpDir('swl-follow-'), 's.jsonl')
    const { h } = await holdElsewhere(sessionFile)
    const w = spawnTracked([fixture('follow-wait.js'), sessionFile, '300'])
    await w.waitLine('waiting', 60_000)
    h.send('release')
    expect(parseLine(await w.waitLine('second', 30_000))).toMatchObject({ ok: true })
    expect(w.stderr()).toBe('')
  }, 90_000)
})

describe('inspection shows the real start of a long hold', () => {
  it('heldSince is the hold start (the file mtime) while createdAt is kept fresh; the CLI shows the real age', async () => {
    const dir = tmpDir('swl-follow-')
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnTracked([fixture('long-hold.js'), sessionFile, 'Infinity'], { env: { SESSION_WRITE_LOCK_REFRESH_MS: '200' } })
    const acq = parseLine(await h.waitLine('acquired'))
    const startMs = Date.parse(acq.acquiredAt)

    // Fresh hold: the file was created at the acquire.
    const fresh = swl.inspectLockFile(acq.lockPath)
    expect(fresh.held).toBe(true)
    expect(typeof fresh.heldSince).toBe('string')
    expect(Math.abs(Date.parse(fresh.heldSince) - startMs)).toBeLessThanOrEqual(1000)

    // Wait (by what the file says) until the payload was refreshed well after the start.
    let payload
    for (let i = 0; i < 600; i++) {
      payload = JSON.parse(fs.readFileSync(acq.lockPath, 'utf8'))
      if (Date.parse(payload.createdAt) - startMs >= 2500) break
      await pause(100)
    }
    expect(Date.parse(payload.createdAt) - startMs).toBeGreaterThanOrEqual(2500)

    const r = swl.inspectLockFile(acq.lockPath)
    expect(r.held).toBe(true)
    expect(Math.abs(Date.parse(r.heldSince) - startMs)).toBeLessThanOrEqual(1000)
    expect(Date.parse(r.createdAt)).toBeGreaterThan(Date.parse(r.heldSince) + 1000)
    expect(r.ageMs).toBeLessThan(Date.now() - Date.parse(r.heldSince))

    const swept = await swl.cleanStaleLockFiles({ sessionsDir: dir, removeStale: false })
    expect(swept.locks).toHaveLength(1)
    expect(swept.locks[0].heldSince).toBe(r.heldSince)

    // The CLI: --json carries heldSince, the table's AGE is the hold's.
    const j = spawnSync(process.execPath, [BIN, 'inspect', dir, '--json'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    const row = JSON.parse(j.stdout).rows.find((x) => x.file === 's.jsonl.lock')
    expect(row.heldSince).toBe(r.heldSince)
    const before = Date.now()
    const t = spawnSync(process.execPath, [BIN, 'inspect', dir], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    const line = t.stdout.split('\n').find((l) => l.startsWith('s.jsonl.lock'))
    expect(line, t.stdout).toBeDefined()
    const cells = line.trim().split(/\s{2,}|\s(?=\S)/)
    const age = cells.find((c) => /^\d+(\.\d+)?(ms|s)$|^\d+m\d\ds$/.test(c))
    const ageMs = age.endsWith('ms') ? Number(age.slice(0, -2)) : age.includes('m') ? NaN : Number(age.slice(0, -1)) * 1000
    // Shown to within its rounding: at least the hold's age when the CLI started.
    expect(ageMs, line).toBeGreaterThanOrEqual(before - startMs - 100)
    for (const l of t.stdout.split('\n')) expect(l.length).toBeLessThanOrEqual(100)

    h.send('release')
    await h.waitLine('released')
  }, 90_000)

  it('heldSince is null for a file nobody holds and for an old-module file', async () => {
    const dir = tmpDir('swl-follow-')
    const { h, info } = await holdElsewhere(path.join(dir, 'a.jsonl'))
    h.kill()
    await h.exited
    const old = path.join(dir, 'b.jsonl.lock')
    fs.writeFileSync(old, JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString() }, null, 2))
    expect(swl.inspectLockFile(info.lockPath)).toMatchObject({ held: false, heldSince: null })
    expect(swl.inspectLockFile(old)).toMatchObject({ heldSince: null })
  }, 60_000)

  // tmpfs keeps 64-bit times (ext4 clamps them to the year 2446).
  it.skipIf(!fs.existsSync('/dev/shm') || WIN)('a forged mtime outside the range of a Date gives heldSince null, not a throw', async () => {
    const dir = fs.mkdtempSync('/dev/shm/swl-follow-')
    const h = spawnTracked([fixture('long-hold.js'), path.join(dir, 's.jsonl'), 'Infinity'])
    const acq = parseLine(await h.waitLine('acquired'))
    fs.utimesSync(acq.lockPath, 1e13, 1e13) // seconds: year ~318,857
    expect(swl.inspectLockFile(acq.lockPath)).toMatchObject({ held: true, heldSince: null })
    const swept = await swl.cleanStaleLockFiles({ sessionsDir: dir, removeStale: false })
    expect(swept.locks[0]).toMatchObject({ held: true, heldSince: null })
    h.send('release')
    await h.waitLine('released')
    fs.rmSync(dir, { recursive: true, force: true })
  }, 60_000)
})

describe('stray temporary files of creates and swaps', () => {
  const STRAY = /^\.s\.jsonl\.lock\.\d+-\d+\.tmp$/
  const age = (p, ms) => {
    const t = new Date(Date.now() - ms)
    fs.utimesSync(p, t, t)
  }
  const strayIn = (dir) => {
    const names = fs.readdirSync(dir)
    const stray = names.find((n) => STRAY.test(n))
    expect(stray, JSON.stringify(names)).toBeDefined()
    return path.join(dir, stray)
  }

  notOnWindows('a Windows create renames into place (no link, no second name to leave behind)')('a portable create SIGKILLed between link and unlink: cleanup removes the stray only past the grace, and never lists it', async () => {
    const dir = tmpDir('swl-follow-')
    const sessionFile = path.join(dir, 's.jsonl')
    // A real stray: the first unlink of the process is the temp name's, after its link.
    spawnSync(
      'strace',
      ['-f', '-qq', '-o', '/dev/null', '-e', `trace=${UNLINK}`, '-e', `inject=${UNLINK}:signal=KILL:when=1`, process.execPath, holderPath, sessionFile],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SESSION_WRITE_LOCK_PORTABLE_CREATE: '1' } },
    )
    const strayPath = strayIn(dir)
    const info = []
    const warn = []
    const log = { info: (m) => info.push(m), warn: (m) => warn.push(m) }

    // Inside the grace (the file is a moment old): kept, and only the lock is an entry.
    let res = await swl.cleanStaleLockFiles({ sessionsDir: dir, log })
    expect(res.locks.map((l) => path.basename(l.lockPath))).toEqual(['s.jsonl.lock'])
    expect(res.cleaned.map((l) => path.basename(l.lockPath))).toEqual(['s.jsonl.lock'])
    expect(fs.existsSync(strayPath)).toBe(true)
    // A clock set ahead does not make a young temp file old.
    await swl.cleanStaleLockFiles({ sessionsDir: dir, log, nowMs: Date.now() + 60_000 })
    expect(fs.existsSync(strayPath)).toBe(true)
    expect(info).toEqual([])

    age(strayPath, 10_000)
    // Not with removeStale: false.
    res = await swl.cleanStaleLockFiles({ sessionsDir: dir, log, removeStale: false })
    expect(res.locks).toEqual([])
    expect(fs.existsSync(strayPath)).toBe(true)
    // Past the grace: removed, logged via info, never an entry.
    res = await swl.cleanStaleLockFiles({ sessionsDir: dir, log })
    expect(res).toEqual({ locks: [], cleaned: [] })
    expect(fs.existsSync(strayPath)).toBe(false)
    expect(info).toEqual([`removed stray lock temp file: ${strayPath}`])
    expect(warn.some((m) => m.includes('.tmp'))).toBe(false)
    expect(fs.readdirSync(dir)).toEqual([])
  }, 90_000)

  notOnWindows('Windows rewrites in place (no exchange of two names, so no swap temp file)')('a refresh swap SIGKILLed at its exchange leaves a complete temp file; cleanup removes it past the grace', async () => {
    const dir = tmpDir('swl-follow-')
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnTracked(['-f', '-qq', '-o', '/dev/null', '-e', 'trace=renameat2', '-e', 'inject=renameat2:signal=KILL:when=1', process.execPath, fixture('long-hold.js'), sessionFile, 'Infinity'], {
      command: 'strace',
      env: { SESSION_WRITE_LOCK_REFRESH_MS: '200' },
    })
    const acq = parseLine(await h.waitLine('acquired'))
    await h.exited // killed by the first refresh's renameat2
    const strayPath = strayIn(dir)
    const stray = JSON.parse(fs.readFileSync(strayPath, 'utf8'))
    expect(stray).toMatchObject({ fencingToken: acq.fencingToken, lock: 'os' })
    expect(fs.statSync(strayPath).ino).not.toBe(fs.statSync(acq.lockPath).ino)
    const info = []
    await swl.cleanStaleLockFiles({ sessionsDir: dir, log: { info: (m) => info.push(m) } })
    expect(fs.existsSync(strayPath)).toBe(true)
    age(strayPath, 10_000)
    const res = await swl.cleanStaleLockFiles({ sessionsDir: dir, log: { info: (m) => info.push(m) } })
    expect(res.locks).toEqual([])
    expect(info).toEqual([`removed stray lock temp file: ${strayPath}`])
    expect(fs.readdirSync(dir)).toEqual([])
  }, 90_000)

  notOnWindows('its temp files come from refresh swaps, which Windows does not make')('the grace is min(staleMs, 5 s) but at least 1 s, and a flocked temp file is never removed', async () => {
    const dir = tmpDir('swl-follow-')
    const mk = (name, ageMs) => {
      const p = path.join(dir, name)
      fs.writeFileSync(p, JSON.stringify({ pid: 999999, createdAt: new Date().toISOString(), lock: 'os' }, null, 2))
      age(p, ageMs)
      return p
    }
    const young = mk('.y.jsonl.lock.4242-1.tmp', 2000)
    const old = mk('.o.jsonl.lock.4242-2.tmp', 6000)
    const locked = mk('.l.jsonl.lock.4242-3.tmp', 60_000)
    const other = mk('.x.jsonl.lock.tmp', 60_000) // not the pattern: left alone
    const f = spawnTracked([locked, '-c', 'echo locked; read x'], { command: 'flock', nodeArgs: ['-x'] })
    await f.waitLine('locked')
    const info = []
    const log = { info: (m) => info.push(m) }
    await swl.cleanStaleLockFiles({ sessionsDir: dir, log })
    expect(fs.existsSync(young)).toBe(true)
    expect(fs.existsSync(old)).toBe(false)
    expect(fs.existsSync(locked)).toBe(true)
    expect(fs.existsSync(other)).toBe(true)
    // A short staleMs shortens the grace, down to 1 s.
    const fresh = mk('.f.jsonl.lock.4242-4.tmp', 0)
    await swl.cleanStaleLockFiles({ sessionsDir: dir, staleMs: 1, log })
    expect(fs.existsSync(young)).toBe(false)
    expect(fs.existsSync(fresh)).toBe(true)
    expect(fs.existsSync(locked)).toBe(true)
    f.send('go')
    await f.exited
    await swl.cleanStaleLockFiles({ sessionsDir: dir, log })
    expect(fs.existsSync(locked)).toBe(false)
    expect(info.sort()).toEqual([old, young, locked].map((p) => `removed stray lock temp file: ${p}`).sort())
    expect(fs.readdirSync(dir).sort()).toEqual(['.f.jsonl.lock.4242-4.tmp', '.x.jsonl.lock.tmp'])
  }, 60_000)

  it('sweeping with a 1 ms staleMs beside a hold that swaps its file every few ms never removes a temp file in use', async () => {
    const dir = tmpDir('swl-follow-')
    const sessionFile = path.join(dir, 's.jsonl')
    const h = spawnTracked([fixture('long-hold.js'), sessionFile, 'Infinity'], { env: { SESSION_WRITE_LOCK_REFRESH_MS: '5' } })
    const acq = parseLine(await h.waitLine('acquired'))
    const info = []
    let sweeps = 0
    const until = Date.now() + 3000
    while (Date.now() < until) {
      const res = await swl.cleanStaleLockFiles({ sessionsDir: dir, staleMs: 1, log: { info: (m) => info.push(m) } })
      expect(res.cleaned).toEqual([])
      sweeps++
    }
    expect(sweeps).toBeGreaterThan(10)
    expect(info).toEqual([])
    h.send('check')
    expect(parseLine(await h.waitLine('check'))).toEqual({ owned: true })
    const payload = JSON.parse(fs.readFileSync(acq.lockPath, 'utf8'))
    expect(payload.fencingToken).toBe(acq.fencingToken)
    expect(Date.parse(payload.createdAt)).toBeGreaterThan(until - 3000) // it did refresh meanwhile
    h.send('release')
    await h.waitLine('released')
  }, 60_000)
})
