// cleanStaleLockFiles (docs/spec.md "Old lock files"): reports every *.jsonl.lock of a sessions
// directory, judges old-module files by the old rules and ours by the OS lock,
// removes the stale ones and logs each removal.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
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
  writeAged as write,
} from './fixtures/proc-helpers.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const INDEX = path.join(here, '..', 'index.js')

// Windows: names differ only by case are one file there; no FIFOs, no
// zombies. Skips print why.
const WIN = process.platform === 'win32'
const notOnWindows = (reason) => (name, fn, timeout) => {
  if (!WIN) return it(name, fn, timeout)
  console.warn(`clean.test: "${name}" skipped: meaningless on Windows: ${reason}`)
  return it.skip(name, fn, timeout)
}
const dirs = tempDirs('swl-clean-')
const tmp = () => dirs.make()

afterEach(() => resetAfterTest(swl, dirs))

const HOUR = 3_600_000
const YEAR = 365 * 24 * HOUR

/** A child process holding our (OS) lock on `sessionFile` until its stdin closes. */
async function ourHolderChild(sessionFile) {
  const script = `
    const swl = require(${JSON.stringify(INDEX)})
    swl.acquireSessionWriteLock({ sessionFile: process.env.SWL_SESSION_FILE, maxHoldMs: Infinity }).then((l) => {
      process.stdout.write('acquired ' + l.lockPath + '\\n')
      process.stdin.on('end', () => l.release().then(() => process.exit(0)))
      process.stdin.resume()
    })`
  const child = track(
    spawn(process.execPath, ['-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, SWL_SESSION_FILE: sessionFile },
    }),
  )
  const lockPath = await waitLine(child, 'acquired ')
  return { child, lockPath }
}

function logger() {
  const warns = []
  const infos = []
  return { warns, infos, log: { warn: (m) => warns.push(m), info: (m) => infos.push(m) } }
}

/** An owner reader that never knows: the tests of the other rules keep the owner's command line out of it. */
const unknownOwner = () => null

/** cleanStaleLockFiles with every owner's command line unknown (no `non-openclaw-owner`) unless told. */
function cleanWithUnknownOwners(params) {
  return swl.cleanStaleLockFiles({ readOwnerProcessArgs: unknownOwner, ...params })
}

/** Inspect exactly one lock file (removeStale false unless told). */
async function inspectOne(dir, name, opts = {}) {
  const r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false, ...opts })
  const found = r.locks.filter((l) => l.lockPath === path.join(dir, name))
  expect(found).toHaveLength(1)
  return { ...r, lock: found[0] }
}

describe('cleanStaleLockFiles: listing', () => {
  it('a missing directory gives an empty result', async () => {
    const dir = path.join(tmp(), 'does', 'not', 'exist')
    expect(await cleanWithUnknownOwners({ sessionsDir: dir })).toEqual({ locks: [], cleaned: [] })
    expect(fs.existsSync(dir)).toBe(false)
  })

  it('reports only *.jsonl.lock files, sorted with localeCompare, with the full inspection shape', async () => {
    const dir = tmp()
    const gone = deadPid()
    const stale = oldPayload({ pid: gone, createdAt: new Date().toISOString() })
    const names = ['b.jsonl.lock', 'B.jsonl.lock', 'a.jsonl.lock', '10.jsonl.lock', '9.jsonl.lock', 'é.jsonl.lock', 'Z.jsonl.lock'].filter(
      (n) => !WIN || n !== 'B.jsonl.lock', // one file with b.jsonl.lock on Windows
    )
    for (const n of names) write(path.join(dir, n), stale)
    for (const n of ['x.lock', 'x.jsonl', 'x.jsonl.lock.tmp', 'x.json.lock', '.jsonl.lock.bak']) write(path.join(dir, n), stale)
    const r = await cleanWithUnknownOwners({ sessionsDir: path.relative(process.cwd(), dir), removeStale: false })
    const expected = [...names].sort((a, b) => a.localeCompare(b))
    // Guard: localeCompare order differs from code-unit order here.
    expect(expected).not.toEqual([...names].sort())
    expect(r.locks.map((l) => path.basename(l.lockPath))).toEqual(expected)
    expect(r.locks.every((l) => path.dirname(l.lockPath) === dir)).toBe(true)
    expect(r.cleaned).toEqual([])
    for (const l of r.locks) {
      expect(Object.keys(l).sort()).toEqual(
        ['ageMs', 'createdAt', 'held', 'heldSince', 'lockPath', 'pid', 'pidAlive', 'removed', 'stale', 'staleReasons'].sort(),
      )
      expect(l).toMatchObject({ pid: gone, pidAlive: false, stale: true, staleReasons: ['dead-pid'], removed: false, held: false })
    }
    // removeStale: false removed nothing, the other files were never touched.
    expect(fs.readdirSync(dir).length).toBe(names.length + 5)
  })

  it('removes stale files by default, reports them in cleaned, and logs each as the old module did', async () => {
    const dir = tmp()
    const gone = deadPid()
    const s = sleeper()
    write(path.join(dir, 'dead.jsonl.lock'), oldPayload({ pid: gone, createdAt: new Date().toISOString() }))
    write(
      path.join(dir, 'old.jsonl.lock'),
      oldPayload({ pid: gone, createdAt: new Date(Date.now() - 2 * HOUR).toISOString() }),
    )
    write(
      path.join(dir, 'live.jsonl.lock'),
      oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) }),
    )
    const { warns, log } = logger()
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, log })
    expect(r.locks.map((l) => path.basename(l.lockPath))).toEqual(['dead.jsonl.lock', 'live.jsonl.lock', 'old.jsonl.lock'])
    expect(r.cleaned.map((l) => path.basename(l.lockPath))).toEqual(['dead.jsonl.lock', 'old.jsonl.lock'])
    expect(r.cleaned.every((l) => l.removed && l.stale)).toBe(true)
    expect(warns).toEqual([
      `removed stale session lock: ${path.join(dir, 'dead.jsonl.lock')} (dead-pid)`,
      `removed stale session lock: ${path.join(dir, 'old.jsonl.lock')} (dead-pid, too-old)`,
    ])
    expect(fs.readdirSync(dir)).toEqual(['live.jsonl.lock'])
    const live = r.locks[1]
    expect(live).toMatchObject({ pid: s.pid, pidAlive: true, stale: false, staleReasons: [], removed: false, held: false })
    expect(live.createdAt).toBe(JSON.parse(fs.readFileSync(live.lockPath, 'utf8')).createdAt)
  })

  it('removeStale: false removes nothing and logs nothing', async () => {
    const dir = tmp()
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: deadPid(), createdAt: new Date().toISOString() }))
    write(path.join(dir, 'b.jsonl.lock'), '', 60_000)
    const { warns, log } = logger()
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false, log })
    expect(r.locks.map((l) => [l.stale, l.removed])).toEqual([
      [true, false],
      [true, false],
    ])
    expect(r.cleaned).toEqual([])
    expect(warns).toEqual([])
    expect(fs.readdirSync(dir).sort()).toEqual(['a.jsonl.lock', 'b.jsonl.lock'])
  })
  notOnWindows('no FIFOs (and under wine no symlink reparse points)')('non-regular entries named *.jsonl.lock (directory, symlink, FIFO) are reported, never followed or removed', async () => {
    const dir = tmp()
    const target = path.join(dir, 'target.txt')
    write(target, oldPayload({ pid: deadPid(), createdAt: new Date(0).toISOString() }))
    fs.mkdirSync(path.join(dir, 'a-dir.jsonl.lock'))
    fs.symlinkSync(target, path.join(dir, 'b-link.jsonl.lock'))
    const fifo = spawnSync('mkfifo', [path.join(dir, 'c-fifo.jsonl.lock')])
    expect(fifo.status).toBe(0)
    const { warns, log } = logger()
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: Date.now() + YEAR, log })
    expect(r.locks.map((l) => path.basename(l.lockPath))).toEqual(['a-dir.jsonl.lock', 'b-link.jsonl.lock', 'c-fifo.jsonl.lock'])
    for (const l of r.locks) expect(l).toMatchObject({ stale: false, removed: false, held: false })
    expect(r.cleaned).toEqual([])
    expect(warns).toEqual([])
    expect(fs.readdirSync(dir).sort()).toEqual(['a-dir.jsonl.lock', 'b-link.jsonl.lock', 'c-fifo.jsonl.lock', 'target.txt'])
  })
})

describe('cleanStaleLockFiles: old-module files (§4 rules)', () => {
  it('nowMs is the clock for ages: too-old with a live pid, ageMs from nowMs, staleMs honoured', async () => {
    const dir = tmp()
    const s = sleeper()
    const createdMs = Date.now() - 1000
    write(
      path.join(dir, 'a.jsonl.lock'),
      oldPayload({ pid: s.pid, createdAt: new Date(createdMs).toISOString(), starttime: startTime(s.pid) }),
    )
    let { lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: createdMs + 1_000 })
    expect(lock).toMatchObject({ pid: s.pid, pidAlive: true, ageMs: 1_000, stale: false, staleReasons: [] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: createdMs + 1_800_001 }))
    expect(lock).toMatchObject({ pidAlive: true, ageMs: 1_800_001, stale: true, staleReasons: ['too-old'] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: createdMs + 1_800_001, staleMs: 2 * HOUR }))
    expect(lock).toMatchObject({ stale: false, staleReasons: [] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: createdMs + 600, staleMs: 500 }))
    expect(lock).toMatchObject({ stale: true, staleReasons: ['too-old'] })
    // Removed when asked, live holder or not (as the old module did).
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: createdMs + 2 * HOUR })
    expect(r.cleaned.map((l) => l.staleReasons)).toEqual([['too-old']])
    expect(fs.existsSync(path.join(dir, 'a.jsonl.lock'))).toBe(false)
  })

  it('dead-pid, and invalid-createdAt after it', async () => {
    const dir = tmp()
    const gone = deadPid()
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: gone, createdAt: 'not a date' }))
    const { lock } = await inspectOne(dir, 'a.jsonl.lock')
    expect(lock).toMatchObject({ pid: gone, pidAlive: false, createdAt: 'not a date', ageMs: null, stale: true })
    expect(lock.staleReasons).toEqual(['dead-pid', 'invalid-createdAt'])
  })

  it('recycled-pid: a live pid whose start time differs from the recorded one', async () => {
    const dir = tmp()
    const s = sleeper()
    const real = startTime(s.pid)
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: real + 7 }))
    write(path.join(dir, 'b.jsonl.lock'), oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: real }))
    write(path.join(dir, 'c.jsonl.lock'), oldPayload({ pid: s.pid, createdAt: new Date().toISOString() }))
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false })
    expect(r.locks.map((l) => [l.pidAlive, l.stale, l.staleReasons])).toEqual([
      [true, true, ['recycled-pid']],
      [true, false, []],
      [true, false, []], // no start time recorded: nothing to compare
    ])
  })

  it('recycled-pid through the start-time seam; off by default and once cleared', async () => {
    const dir = tmp()
    const s = sleeper()
    const real = startTime(s.pid)
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: real }))
    expect((await inspectOne(dir, 'a.jsonl.lock')).lock.staleReasons).toEqual([])
    swl.__testing.setStartTimeOverride(s.pid, real + 100)
    expect((await inspectOne(dir, 'a.jsonl.lock')).lock).toMatchObject({ stale: true, staleReasons: ['recycled-pid'] })
    swl.__testing.setStartTimeOverride(s.pid, null) // "unknown" proves nothing
    expect((await inspectOne(dir, 'a.jsonl.lock')).lock.staleReasons).toEqual([])
    swl.__testing.setStartTimeOverride(s.pid, real + 100)
    swl.__testing.clearStartTimeOverrides()
    expect((await inspectOne(dir, 'a.jsonl.lock')).lock.staleReasons).toEqual([])
  })

  it('orphan-self-pid in the sweep: our pid, not held by us, and a recorded start time equal to ours', async () => {
    const dir = tmp()
    const me = swl.__testing.identity()
    expect(me.pid).toBe(process.pid)
    const now = new Date().toISOString()
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: process.pid, createdAt: now }))
    write(path.join(dir, 'b.jsonl.lock'), oldPayload({ pid: process.pid, createdAt: now, starttime: me.starttime }))
    write(path.join(dir, 'c.jsonl.lock'), oldPayload({ pid: process.pid, createdAt: now, starttime: me.starttime + 1 }))
    write(path.join(dir, 'd.jsonl.lock'), oldPayload({ pid: process.pid, createdAt: now, starttime: 123.5 }))
    // The default owner reader: our own command line is never consulted.
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir })
    expect(r.locks.map((l) => [path.basename(l.lockPath), l.pidAlive, l.stale, l.staleReasons])).toEqual([
      // No start time: kept, as every old generation's sweep kept it (the gateway sweeps in-process at start-up).
      ['a.jsonl.lock', true, false, []],
      ['b.jsonl.lock', true, true, ['orphan-self-pid']],
      ['c.jsonl.lock', true, true, ['recycled-pid']], // an earlier process that had our pid
      ['d.jsonl.lock', true, false, []], // a malformed start time is no start time
    ])
    expect(fs.readdirSync(dir).sort()).toEqual(['a.jsonl.lock', 'd.jsonl.lock'])
  })

  it('payload-less files: reasons listed with stale:false inside the grace, stale and removed after min(staleMs, 5 s)', async () => {
    const dir = tmp()
    const p = path.join(dir, 'a.jsonl.lock')
    write(p, '')
    const mtime = fs.statSync(p).mtimeMs
    let { lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 4_000 })
    expect(lock).toMatchObject({ pid: null, pidAlive: false, createdAt: null, ageMs: null, stale: false, removed: false })
    expect(lock.staleReasons).toEqual(['missing-pid', 'invalid-createdAt'])
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 6_000 }))
    expect(lock).toMatchObject({ stale: true, staleReasons: ['missing-pid', 'invalid-createdAt'] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 1_500, staleMs: 1_000 }))
    expect(lock.stale).toBe(true)
    // Default removal keeps it while in grace...
    const { warns, log } = logger()
    let r = await cleanWithUnknownOwners({ sessionsDir: dir, log })
    expect(r.cleaned).toEqual([])
    expect(fs.existsSync(p)).toBe(true)
    // ...and removes it once its mtime is old.
    write(p, '{}', 60_000)
    r = await cleanWithUnknownOwners({ sessionsDir: dir, log })
    expect(r.cleaned.map((l) => l.staleReasons)).toEqual([['missing-pid', 'invalid-createdAt']])
    expect(warns).toEqual([`removed stale session lock: ${p} (missing-pid, invalid-createdAt)`])
    expect(fs.existsSync(p)).toBe(false)
  })

  it('a live pid with an invalid createdAt gets the payload-less grace too', async () => {
    const dir = tmp()
    const s = sleeper()
    const p = path.join(dir, 'a.jsonl.lock')
    write(p, oldPayload({ pid: s.pid, createdAt: null, starttime: startTime(s.pid) }))
    const mtime = fs.statSync(p).mtimeMs
    let { lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 1_000 })
    expect(lock).toMatchObject({ pidAlive: true, stale: false, staleReasons: ['invalid-createdAt'] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 10_000 }))
    expect(lock).toMatchObject({ stale: true, staleReasons: ['invalid-createdAt'] })
  })

  it('a createdAt more than 5 minutes in the future is invalid-createdAt, with the payload-less grace', async () => {
    const dir = tmp()
    const s = sleeper()
    const p = path.join(dir, 'a.jsonl.lock')
    const q = path.join(dir, 'b.jsonl.lock')
    const nowMs = Date.now()
    write(p, oldPayload({ pid: s.pid, createdAt: new Date(nowMs + YEAR).toISOString(), starttime: startTime(s.pid) }))
    write(q, oldPayload({ pid: s.pid, createdAt: new Date(nowMs + 4 * 60_000).toISOString(), starttime: startTime(s.pid) }))
    const mtime = fs.statSync(p).mtimeMs
    const opts = { readOwnerProcessArgs: () => null }
    let { lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 1_000, ...opts })
    expect(lock).toMatchObject({ pidAlive: true, ageMs: null, stale: false, staleReasons: ['invalid-createdAt'] })
    ;({ lock } = await inspectOne(dir, 'a.jsonl.lock', { nowMs: mtime + 10_000, ...opts }))
    expect(lock).toMatchObject({ stale: true, staleReasons: ['invalid-createdAt'] })
    // Up to 5 minutes ahead is clock skew: healthy, with its (negative) age.
    ;({ lock } = await inspectOne(dir, 'b.jsonl.lock', { nowMs: mtime + 10_000, ...opts }))
    expect(lock).toMatchObject({ stale: false, staleReasons: [] })
    expect(lock.ageMs).toBeLessThan(0)
    // The same verdict from inspectLockFile.
    expect(swl.inspectLockFile(p, { nowMs: mtime + 10_000, ...opts })).toMatchObject({ stale: true, staleReasons: ['invalid-createdAt'] })
  })

  it("another host's pid is never judged by local liveness, only by too-old", async () => {
    const dir = tmp()
    const gone = deadPid()
    const createdMs = Date.now()
    const base = { createdAt: new Date(createdMs).toISOString(), starttime: 1, hostname: 'other-host.invalid' }
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: gone, ...base }))
    write(path.join(dir, 'b.jsonl.lock'), oldPayload({ pid: process.pid, ...base })) // not our orphan
    write(path.join(dir, 'c.jsonl.lock'), oldPayload({ pid: process.ppid, ...base })) // live here, different start
    let r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false, nowMs: createdMs + 1000 })
    expect(r.locks.map((l) => [l.stale, l.staleReasons])).toEqual([
      [false, []],
      [false, []],
      [false, []],
    ])
    r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: createdMs + 2 * HOUR })
    expect(r.cleaned.map((l) => l.staleReasons)).toEqual([['too-old'], ['too-old'], ['too-old']])
    expect(fs.readdirSync(dir)).toEqual([])
  })

  notOnWindows('there are no zombies')('a zombie pid is dead', async () => {
    const dir = tmp()
    const { pid: zombiePid, starttime: st } = await zombie()
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: zombiePid, createdAt: new Date().toISOString(), starttime: st }))
    const { lock } = await inspectOne(dir, 'a.jsonl.lock')
    expect(lock).toMatchObject({ pid: zombiePid, pidAlive: false, stale: true, staleReasons: ['dead-pid'] })
  })

  it('EPERM is alive: a live process of another user', async (ctx) => {
    const t = otherUserTarget()
    if (t === null) return ctx.skip() // no process of another user to check against
    const dir = tmp()
    fs.chmodSync(dir, 0o777)
    const s = { pid: t.pid }
    write(path.join(dir, 'a.jsonl.lock'), oldPayload({ pid: s.pid, createdAt: new Date().toISOString(), starttime: startTime(s.pid) }))
    const script = `
      const swl = require(${JSON.stringify(INDEX)})
      let kill = 'ok'
      try { process.kill(${s.pid}, 0) } catch (e) { kill = e.code }
      swl.cleanStaleLockFiles({ sessionsDir: ${JSON.stringify(dir)}, readOwnerProcessArgs: () => null }).then((r) => console.log(JSON.stringify({ kill, r })))`
    const res = spawnSync(process.execPath, ['-e', script], { ...t.spawnOpts, encoding: 'utf8', timeout: 30_000 })
    expect(res.stderr).toBe('')
    const { kill, r } = JSON.parse(res.stdout.trim())
    expect(kill).toBe('EPERM')
    expect(r.locks).toHaveLength(1)
    expect(r.locks[0]).toMatchObject({ pid: s.pid, pidAlive: true, stale: false, staleReasons: [], removed: false })
    expect(r.cleaned).toEqual([])
    expect(fs.existsSync(path.join(dir, 'a.jsonl.lock'))).toBe(true)
  })

  it('a pid recorded under another boot of this host is dead', async () => {
    const dir = tmp()
    const me = swl.__testing.identity()
    if (!me.bootId) return // only where a boot id exists (Linux)
    write(
      path.join(dir, 'a.jsonl.lock'),
      oldPayload({ pid: process.ppid, createdAt: new Date().toISOString(), hostname: me.hostname, bootId: 'another-boot' }),
    )
    write(
      path.join(dir, 'b.jsonl.lock'),
      oldPayload({ pid: process.ppid, createdAt: new Date().toISOString(), hostname: me.hostname, bootId: me.bootId }),
    )
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false })
    expect(r.locks.map((l) => [l.stale, l.staleReasons])).toEqual([
      [true, ['dead-pid']],
      [false, []],
    ])
  })
})

describe('cleanStaleLockFiles: malformed payloads never throw and follow the payload-less rules', () => {
  const cases = {
    empty: () => '',
    truncated: () => '{\n  "pid": 12',
    binary: () => Buffer.from([0x00, 0xff, 0xfe, 0x7b, 0x22, 0x80, 0x00, 0x0a, 0xc3, 0x28]),
    '10 MB': () => {
      const head = `{"pid": ${process.ppid}, "createdAt": "${new Date().toISOString()}", "pad": "`
      return Buffer.concat([Buffer.from(head), Buffer.alloc(10 * 1024 * 1024, 0x61), Buffer.from('"}')])
    },
    'JSON array': () => JSON.stringify([process.ppid, new Date().toISOString()]),
    'JSON string': () => JSON.stringify('pid'),
    'negative / fractional pid': () => JSON.stringify({ pid: -1.5, createdAt: 17 }),
    'deep nesting': () => '['.repeat(100_000),
  }
  it('fresh: reasons listed, not stale; old: stale and removed', async () => {
    const dir = tmp()
    const names = Object.keys(cases).map((n, i) => `m${i}.jsonl.lock`)
    Object.values(cases).forEach((make, i) => write(path.join(dir, names[i]), make()))
    const nowMs = Date.now()
    let r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs })
    expect(r.locks).toHaveLength(names.length)
    for (const l of r.locks) {
      expect(l).toMatchObject({ pid: null, pidAlive: false, createdAt: null, ageMs: null, stale: false, removed: false, held: false })
      expect(l.staleReasons).toEqual(['missing-pid', 'invalid-createdAt'])
    }
    expect(r.cleaned).toEqual([])
    const { warns, log } = logger()
    r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: nowMs + 60_000, log })
    expect(r.cleaned).toHaveLength(names.length)
    expect(warns).toHaveLength(names.length)
    expect(fs.readdirSync(dir)).toEqual([])
  })
})

describe('cleanStaleLockFiles: our OS-locked files', () => {
  it('a live lock held by another process is kept, held and never stale, even far in the future', async () => {
    const dir = tmp()
    const holder = await ourHolderChild(path.join(dir, 'a.jsonl'))
    const before = fs.readFileSync(holder.lockPath, 'utf8')
    const { warns, log } = logger()
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: Date.now() + 100 * YEAR, staleMs: 1, log })
    expect(r.locks).toHaveLength(1)
    expect(r.locks[0]).toMatchObject({
      lockPath: holder.lockPath,
      pid: holder.child.pid,
      pidAlive: true,
      held: true,
      stale: false,
      removed: false,
    })
    expect(r.cleaned).toEqual([])
    expect(warns).toEqual([])
    expect(fs.readFileSync(holder.lockPath, 'utf8')).toBe(before)
    holder.child.stdin.end()
    expect((await holder.child.exited).code).toBe(0)
  })

  it('a live lock held by this process is kept, held and never stale', async () => {
    const dir = tmp()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl') })
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, nowMs: Date.now() + 100 * YEAR, staleMs: 1 })
    expect(r.locks).toHaveLength(1)
    expect(r.locks[0]).toMatchObject({ lockPath: lease.lockPath, pid: process.pid, held: true, stale: false, removed: false })
    expect(r.cleaned).toEqual([])
    await lease.assertCurrent()
    await lease.release()
  })

  it('a "lock":"os" file whose holder was SIGKILLed is stale, reasons ending in not-held, and removed', async () => {
    const dir = tmp()
    const holder = await ourHolderChild(path.join(dir, 'a.jsonl'))
    holder.child.kill('SIGKILL')
    await holder.child.exited
    expect(JSON.parse(fs.readFileSync(holder.lockPath, 'utf8')).lock).toBe('os')
    const { warns, log } = logger()
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, log })
    expect(r.locks).toHaveLength(1)
    const l = r.locks[0]
    expect(l).toMatchObject({ pid: holder.child.pid, pidAlive: false, held: false, stale: true, removed: true })
    expect(l.staleReasons).toEqual(['dead-pid', 'not-held'])
    expect(r.cleaned).toEqual([l])
    expect(warns).toEqual([`removed stale session lock: ${holder.lockPath} (dead-pid, not-held)`])
    expect(fs.existsSync(holder.lockPath)).toBe(false)
  })

  it('a "lock":"os" file naming a live process that no longer holds it is stale with only not-held', async () => {
    const dir = tmp()
    const p = path.join(dir, 'a.jsonl.lock')
    const me = swl.__testing.identity()
    // As if this process had written it and lost it (e.g. a copy closed its descriptor).
    write(
      p,
      JSON.stringify(
        { pid: process.ppid, createdAt: new Date().toISOString(), starttime: startTime(process.ppid), maxHoldMs: 300000, fencingToken: 't', hostname: me.hostname, bootId: me.bootId, lock: 'os' },
        null,
        2,
      ),
    )
    const r = await cleanWithUnknownOwners({ sessionsDir: dir, removeStale: false })
    expect(r.locks[0]).toMatchObject({ pidAlive: true, held: false, stale: true, staleReasons: ['not-held'], removed: false })
  })
})

describe('cleanStaleLockFiles / inspectLockFile: failures are reported, never silent', () => {
  const canDropPrivileges = typeof process.getuid === 'function' && process.getuid() === 0

  it.skipIf(!canDropPrivileges)('a stale file that cannot be removed (EACCES, as uid 65534) carries removeError and is logged', () => {
    const dir = tmp()
    fs.chmodSync(dir, 0o755) // root's directory: uid 65534 may read, not unlink
    const p = path.join(dir, 'dead.jsonl.lock')
    write(p, oldPayload({ pid: deadPid(), createdAt: new Date().toISOString() }))
    fs.chmodSync(p, 0o644)
    const script = `
      const swl = require(${JSON.stringify(INDEX)})
      const warns = []
      swl.cleanStaleLockFiles({ sessionsDir: ${JSON.stringify(dir)}, log: { warn: (m) => warns.push(m) } })
        .then((r) => {
          const one = swl.inspectLockFile(${JSON.stringify(p)}, { remove: true })
          console.log(JSON.stringify({ uid: process.getuid(), r, warns, one }))
        })`
    const res = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 30_000 })
    expect(res.stderr).toBe('')
    const { uid, r, warns, one } = JSON.parse(res.stdout.trim())
    expect(uid).toBe(65534)
    expect(r.locks).toHaveLength(1)
    expect(r.locks[0]).toMatchObject({ stale: true, removed: false, staleReasons: ['dead-pid'], removeError: 'EACCES' })
    expect(r.cleaned).toEqual([])
    expect(warns).toEqual([`could not remove stale session lock: ${p} (dead-pid): EACCES`])
    expect(one).toMatchObject({ stale: true, removed: false, removeError: 'EACCES' })
    expect(one.error).toMatchObject({ code: 'EACCES', syscall: 'unlink', path: p })
    expect(fs.existsSync(p)).toBe(true)
    // Removed entries and kept fresh ones carry no removeError field at all.
    const ok = spawnSync(process.execPath, ['-e', script.replace('uid: process.getuid(), ', '')], { encoding: 'utf8', timeout: 30_000 })
    const done = JSON.parse(ok.stdout.trim())
    expect(done.r.cleaned).toHaveLength(1)
    expect('removeError' in done.r.cleaned[0]).toBe(false)
    expect(done.warns).toEqual([`removed stale session lock: ${p} (dead-pid)`])
  })

  it('inspectLockFile: a path that is not a non-empty string without NUL is a TypeError', () => {
    for (const bad of [5, undefined, null, '', 'a\0b', {}, Symbol('x')]) {
      expect(() => swl.inspectLockFile(bad)).toThrow(TypeError)
    }
    expect(() => swl.inspectLockFile('/tmp/x.jsonl.lock', 5)).toThrow(TypeError)
    expect(() => swl.inspectLockFile('/tmp/x.jsonl.lock', { readOwnerProcessArgs: 'ps' })).toThrow(TypeError)
  })
})
