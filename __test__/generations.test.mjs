// Both OpenClaw generations of the session write-lock module (2026.4.x and the
// later 2026.5.x surface) switch to this package with one re-export. These
// tests check, through the public API, each behaviour the two generations'
// own test files rely on, plus the later generation's exports: the option
// resolvers, the testing seams, the owner command-line rule and the timeout
// error's diagnostics. (Signal behaviour proper lives in shutdown.test.mjs.)
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import * as swl from '../index.mjs'
import {
  startTime,
  deadPid,
  track,
  resetAfterTest,
  tempDirs,
  sleeper,
  oldPayload,
  writeAged as write,
} from './fixtures/proc-helpers.mjs'

const require = createRequire(import.meta.url)
const cjs = require('../index.js')

const dirs = tempDirs('swl-gens-')
const tmp = () => dirs.make()

afterEach(() => resetAfterTest(swl, dirs))

const PINNED = 424242
const pinOwnStartTime = () => swl.testing.setProcessStartTimeResolverForTest((pid) => (pid === process.pid ? PINNED : null))
const openclawAgent = () => ['node', '/usr/lib/openclaw/openclaw.mjs', 'agent']

async function rejection(promise) {
  try {
    const lease = await promise
    await lease.release()
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

async function waitFor(cond, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

function records(locks) {
  return locks.map((l) => [path.basename(l.lockPath), l.stale, l.removed, l.staleReasons])
}

/** A session dir reached through a symlinked directory: { real, link } session files. */
function symlinkedSession() {
  const root = tmp()
  fs.mkdirSync(path.join(root, 'real'))
  fs.symlinkSync(path.join(root, 'real'), path.join(root, 'link'))
  return { real: path.join(root, 'real', 's.jsonl'), link: path.join(root, 'link', 's.jsonl') }
}

// ---------------------------------------------------------------- exports

describe('the later generation\'s exports', () => {
  it('constants, resolvers and the testing alias exist in both entries, as the same objects', () => {
    expect(swl.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS).toBe(60_000)
    expect(swl.DEFAULT_SESSION_WRITE_LOCK_STALE_MS).toBe(1_800_000)
    expect(swl.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS).toBe(300_000)
    expect(swl.testing).toBe(swl.__testing)
    for (const name of [
      'DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS',
      'DEFAULT_SESSION_WRITE_LOCK_STALE_MS',
      'DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS',
      'resolveSessionWriteLockAcquireTimeoutMs',
      'resolveSessionWriteLockStaleMs',
      'resolveSessionWriteLockMaxHoldMs',
      'resolveSessionWriteLockOptions',
    ]) {
      expect(cjs[name], name).toBe(swl[name])
    }
    expect(cjs.testing).toBe(cjs.__testing)
    expect(cjs.SessionWriteLockError).toBe(cjs.SessionWriteLockTimeoutError)
    expect(typeof swl.testing.setProcessStartTimeResolverForTest).toBe('function')
    expect(typeof swl.testing.inspectLockPayloadForTest).toBe('function')
  })
})

// ---------------------------------------------------------------- option resolvers

describe('resolveSessionWriteLock*: environment, then config, then the fallback', () => {
  const cfg = (writeLock) => ({ session: { writeLock } })
  const none = {}

  it('acquire timeout: 60 s by default, a positive config value, Infinity from either, invalid values ignored', () => {
    expect(swl.resolveSessionWriteLockAcquireTimeoutMs(undefined, none)).toBe(60_000)
    expect(swl.resolveSessionWriteLockAcquireTimeoutMs(cfg({ acquireTimeoutMs: 90_000 }), none)).toBe(90_000)
    expect(swl.resolveSessionWriteLockAcquireTimeoutMs(cfg({ acquireTimeoutMs: Infinity }), none)).toBe(Infinity)
    for (const bad of [0, -1, NaN, '90000', null, true]) {
      expect(swl.resolveSessionWriteLockAcquireTimeoutMs(cfg({ acquireTimeoutMs: bad }), none)).toBe(60_000)
    }
    for (const shape of [null, {}, { session: null }, { session: { writeLock: 5 } }, 'x']) {
      expect(swl.resolveSessionWriteLockAcquireTimeoutMs(shape, none)).toBe(60_000)
    }
    const env = { OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: ' 120000\n' }
    expect(swl.resolveSessionWriteLockAcquireTimeoutMs(cfg({ acquireTimeoutMs: 90_000 }), env)).toBe(120_000)
    expect(
      swl.resolveSessionWriteLockAcquireTimeoutMs(cfg({ acquireTimeoutMs: 90_000 }), {
        OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: 'Infinity',
      }),
    ).toBe(Infinity)
  })

  it('environment values are digits only (trimmed): anything else falls through to config', () => {
    const c = cfg({ acquireTimeoutMs: 7_000, staleMs: 8_000, maxHoldMs: 9_000 })
    for (const bad of ['', ' ', '0', '-5', '+5', '1e3', '0x10', '1.5', '12ms', 'infinity', 'NaN']) {
      const env = {
        OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: bad,
        OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: bad,
        OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS: bad,
      }
      expect(swl.resolveSessionWriteLockOptions(c, { env }), JSON.stringify(bad)).toEqual({
        timeoutMs: 7_000,
        staleMs: 8_000,
        maxHoldMs: 9_000,
      })
    }
    // "Infinity" is for the timeout only.
    const inf = { OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: 'Infinity', OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS: 'Infinity' }
    expect(swl.resolveSessionWriteLockStaleMs(c, inf)).toBe(8_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(c, { env: inf })).toBe(9_000)
    // ...and from config too.
    expect(swl.resolveSessionWriteLockStaleMs(cfg({ staleMs: Infinity }), none)).toBe(1_800_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(cfg({ maxHoldMs: Infinity }), { env: none })).toBe(300_000)
  })

  it('stale and max-hold: config, env over config, and the max-hold fallback', () => {
    const c = cfg({ acquireTimeoutMs: 90_000, staleMs: 45_000, maxHoldMs: 30_000 })
    expect(swl.resolveSessionWriteLockOptions(c, { env: none })).toEqual({ timeoutMs: 90_000, staleMs: 45_000, maxHoldMs: 30_000 })
    const env = {
      OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS: '120000',
      OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: '60000',
      OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS: '50000',
    }
    expect(swl.resolveSessionWriteLockOptions(c, { env })).toEqual({ timeoutMs: 120_000, staleMs: 60_000, maxHoldMs: 50_000 })
    expect(swl.resolveSessionWriteLockStaleMs(undefined, none)).toBe(1_800_000)
    expect(swl.resolveSessionWriteLockStaleMs(c, { OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: '61000' })).toBe(61_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(undefined, { env: none })).toBe(300_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(undefined, { env: none, fallback: 720_000 })).toBe(720_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(undefined, { env: none, fallback: -1 })).toBe(300_000)
    expect(swl.resolveSessionWriteLockMaxHoldMs(c, { env: none, fallback: 720_000 })).toBe(30_000)
    expect(swl.resolveSessionWriteLockOptions(undefined, { env: none, maxHoldMsFallback: 720_000 })).toEqual({
      timeoutMs: 60_000,
      staleMs: 1_800_000,
      maxHoldMs: 720_000,
    })
  })

  it('env defaults to process.env', () => {
    const names = ['OPENCLAW_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS', 'OPENCLAW_SESSION_WRITE_LOCK_STALE_MS', 'OPENCLAW_SESSION_WRITE_LOCK_MAX_HOLD_MS']
    const saved = names.map((n) => process.env[n])
    try {
      process.env[names[0]] = '1234'
      process.env[names[1]] = '2345'
      process.env[names[2]] = '3456'
      expect(swl.resolveSessionWriteLockOptions()).toEqual({ timeoutMs: 1234, staleMs: 2345, maxHoldMs: 3456 })
      expect(swl.resolveSessionWriteLockAcquireTimeoutMs()).toBe(1234)
      expect(swl.resolveSessionWriteLockStaleMs()).toBe(2345)
      expect(swl.resolveSessionWriteLockMaxHoldMs()).toBe(3456)
      // An explicit env replaces process.env entirely.
      expect(swl.resolveSessionWriteLockAcquireTimeoutMs(undefined, {})).toBe(60_000)
    } finally {
      names.forEach((n, i) => (saved[i] === undefined ? delete process.env[n] : (process.env[n] = saved[i])))
    }
  })

  it('the migration idiom: the resolved timeout passed to acquire is the one it waits and reports', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const timeoutMs = swl.resolveSessionWriteLockAcquireTimeoutMs({ session: { writeLock: { acquireTimeoutMs: 40 } } }, {})
    const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs }))
    expect(err.timeoutMs).toBe(40)
    expect(err.message).toContain('(timeout 40ms)')
    await lease.release()
    // resolveSessionLockMaxHoldFromTimeout, as both generations use it.
    expect(swl.resolveSessionLockMaxHoldFromTimeout({ timeoutMs: 600_000 })).toBe(720_000)
    expect(swl.resolveSessionLockMaxHoldFromTimeout({ timeoutMs: 1_000, minMs: 5_000 })).toBe(121_000)
    expect(swl.resolveSessionLockMaxHoldFromTimeout({ timeoutMs: 2_147_000_000 })).toBe(2_147_000_000)
    expect(swl.resolveSessionLockMaxHoldFromTimeout({ timeoutMs: swl.resolveSessionWriteLockAcquireTimeoutMs(undefined, {}) })).toBe(300_000)
  })
})

// ---------------------------------------------------------------- acquire, as both generations use it

describe('acquire: reentry, symlinks, release', () => {
  it('no reentry by default, directly or through a symlinked directory; free again after release', async () => {
    const { real, link } = symlinkedSession()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: real, timeoutMs: 500 })
    for (const sessionFile of [real, link]) {
      const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 20, staleMs: 60_000 }))
      expect(err.message).toMatch(/^session file locked \(timeout 20ms\): pid=\d+ /)
    }
    await lease.release()
    const again = await swl.acquireSessionWriteLock({ sessionFile: link, timeoutMs: 500 })
    await again.release()
  })

  it('with allowReentrant, a second lease through a symlink shares the file, which stays until the last release', async () => {
    const { real, link } = symlinkedSession()
    const a = await swl.acquireSessionWriteLock({ sessionFile: real, allowReentrant: true })
    const b = await swl.acquireSessionWriteLock({ sessionFile: link, allowReentrant: true })
    expect(fs.realpathSync(`${link}.lock`)).toBe(fs.realpathSync(`${real}.lock`))
    expect(b.lockPath).toBe(a.lockPath)
    await a.release()
    expect(fs.existsSync(`${real}.lock`)).toBe(true)
    await b.release()
    expect(fs.existsSync(`${real}.lock`)).toBe(false)
  })

  it('a nested in-process acquire times out with the old message, owner pid=<own pid>, holder.inProcess and a hint', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 25, allowReentrant: false }))
    expect(err).toBeInstanceOf(swl.SessionWriteLockTimeoutError)
    expect(err).toBeInstanceOf(swl.SessionWriteLockError)
    expect(err.name).toBe('SessionWriteLockTimeoutError')
    expect(err.reason).toBe('session_busy')
    expect(err.message).toBe(`session file locked (timeout 25ms): pid=${process.pid} ${lease.lockPath}`)
    expect(err.owner).toBe(`pid=${process.pid}`)
    expect(err.holder).toMatchObject({ pid: process.pid, inProcess: true, lockPath: lease.lockPath })
    expect(typeof err.holder.acquiredAt).toBe('string')
    expect(err.hint).toMatch(/allowReentrant/)
    expect(err.hint).toMatch(/reentrantOwner/)
    expect(err.message).not.toContain('allowReentrant')
    await lease.release()
  })

  it('a holder in another process: no hint, holder.inProcess false', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const script = `
      const swl = require(${JSON.stringify(require.resolve('../index.js'))})
      swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)}, maxHoldMs: Infinity }).then(() => {
        console.log('held'); process.stdin.resume(); process.stdin.on('end', () => process.exit(0))
      })`
    const child = track(spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }))
    await new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('held') && resolve())
      child.on('exit', () => reject(new Error('holder exited')))
    })
    const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 50 }))
    expect(err.owner).toBe(`pid=${child.pid}`)
    expect(err.holder).toMatchObject({ pid: child.pid, inProcess: false })
    expect(err.hint).toBeNull()
    child.stdin.end()
  })

  it('the watchdog releases a lock past maxHoldMs; the stale lease cannot release a newer holder', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lockPath = `${sessionFile}.lock`
    const writes = []
    const orig = process.stderr.write
    process.stderr.write = (chunk, ...rest) => (writes.push(String(chunk)), true)
    let first
    try {
      first = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 1 })
      const n = await swl.__testing.runLockWatchdogCheck(Date.now() + 1000)
      expect(n).toBeLessThanOrEqual(1) // the timer may have released it first
    } finally {
      process.stderr.write = orig
    }
    expect(fs.existsSync(lockPath)).toBe(false)
    expect(writes.join('')).toContain(`(max=1ms): ${lockPath}`)
    const second = await swl.acquireSessionWriteLock({ sessionFile })
    await first.release()
    expect(fs.existsSync(lockPath)).toBe(true)
    await second.release()
    expect(fs.existsSync(lockPath)).toBe(false)
  })

  it('releaseAllLocksSync and the exit event remove held lock files; later lease.release() is harmless', async () => {
    const dir = tmp()
    const a = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl') })
    swl.testing.releaseAllLocksSync()
    expect(fs.existsSync(a.lockPath)).toBe(false)
    await a.release()
    const b = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'b.jsonl') })
    process.emit('exit', 0)
    expect(fs.existsSync(b.lockPath)).toBe(false)
  })

  it('reset cycles do not accumulate exit listeners', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    await lease.release()
    const baseline = process.listenerCount('exit')
    for (let i = 0; i < 3; i++) {
      const l = await swl.acquireSessionWriteLock({ sessionFile })
      await l.release()
      swl.resetSessionWriteLockStateForTest()
      expect(process.listenerCount('exit')).toBe(baseline)
    }
  })

  it('signals: the old four and more are hooked; with an application listener, ours neither calls it, removes it nor kills', async () => {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGABRT']) expect(swl.testing.cleanupSignals).toContain(s)
    const sessionFile = path.join(tmp(), 's.jsonl')
    await swl.acquireSessionWriteLock({ sessionFile })
    const kills = []
    const origKill = process.kill
    let called = false
    const appListener = () => {
      called = true
    }
    process.kill = (pid, sig) => (kills.push(sig), true)
    process.on('SIGINT', appListener)
    try {
      swl.testing.handleTerminationSignal('SIGINT')
      expect(process.listeners('SIGINT')).toContain(appListener)
      expect(called).toBe(false)
      expect(kills).toEqual([])
    } finally {
      process.off('SIGINT', appListener)
      process.kill = origKill
    }
  })

  it('signals: when ours is the only listener, locks are released and the signal is re-raised', async () => {
    const dir = tmp()
    const kills = []
    const origKill = process.kill
    process.kill = (pid, sig) => (kills.push([pid, sig]), true)
    try {
      for (const sig of ['SIGTERM', 'SIGQUIT', 'SIGABRT']) {
        const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, `${sig}.jsonl`) })
        swl.testing.handleTerminationSignal(sig)
        expect(fs.existsSync(lease.lockPath)).toBe(false)
      }
    } finally {
      process.kill = origKill
    }
    expect(kills).toEqual([
      [process.pid, 'SIGTERM'],
      [process.pid, 'SIGQUIT'],
      [process.pid, 'SIGABRT'],
    ])
  })
})

// ---------------------------------------------------------------- old-format files at acquire

describe('acquire and old-format lock files', () => {
  const session = () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    return { sessionFile, lockPath: `${sessionFile}.lock` }
  }
  const ownsIt = async (sessionFile, lockPath, opts = {}) => {
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 5_000, ...opts })
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8'))).toMatchObject({ pid: process.pid, lock: 'os' })
    await lease.release()
  }

  it('a too-old file of an unknown pid is reclaimed', async () => {
    const { sessionFile, lockPath } = session()
    write(lockPath, JSON.stringify({ pid: 2 ** 30, createdAt: new Date(Date.now() - 60_000).toISOString() }))
    await ownsIt(sessionFile, lockPath, { staleMs: 10 })
  })

  it('a fresh "{}" is waited for and left alone; old on disk it is reclaimed; an empty file past 5 s too', async () => {
    const { sessionFile, lockPath } = session()
    write(lockPath, '{}')
    const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 20, staleMs: 60_000 }))
    expect(err.message).toMatch(/session file locked/)
    expect(fs.readFileSync(lockPath, 'utf8')).toBe('{}')
    write(lockPath, '{}', 120_000)
    await ownsIt(sessionFile, lockPath, { staleMs: 10_000 })
    expect(fs.existsSync(lockPath)).toBe(false)
    write(lockPath, '', 10_000)
    await ownsIt(sessionFile, lockPath, { staleMs: 60_000 })
  })

  it('our pid: a different recorded start time is a recycled pid, a missing one an orphan: both reclaimed', async () => {
    const { sessionFile, lockPath } = session()
    pinOwnStartTime()
    write(lockPath, JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString(), starttime: 999_999_999 }))
    await ownsIt(sessionFile, lockPath)
    write(lockPath, JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString() }))
    await ownsIt(sessionFile, lockPath)
    write(lockPath, JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString(), starttime: PINNED }))
    await ownsIt(sessionFile, lockPath)
  })

  it('a lock we hold is never reclaimed, whatever its file is rewritten to say', async () => {
    pinOwnStartTime()
    for (const extra of [{}, { starttime: 123.5 }, { starttime: PINNED }, { maxHoldMs: 1, createdAt: new Date(Date.now() - 120_000).toISOString() }]) {
      const { sessionFile, lockPath } = session()
      const lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 60_000 })
      write(lockPath, JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString(), ...extra }))
      const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 20, staleMs: 60_000 }))
      expect(err.message, JSON.stringify(extra)).toMatch(/session file locked/)
      expect(fs.existsSync(lockPath)).toBe(true)
      await lease.release()
    }
  })

  it('hold-exceeded: a live holder (not us) past the maxHoldMs its file records is reclaimed', async () => {
    const { sessionFile, lockPath } = session()
    const s = sleeper()
    const payload = { pid: s.pid, starttime: startTime(s.pid), maxHoldMs: 10_000 }
    write(lockPath, JSON.stringify({ ...payload, createdAt: new Date(Date.now() - 5_000).toISOString() }))
    const err = await rejection(swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 50 }))
    expect(err.owner).toBe(`pid=${s.pid}`)
    write(lockPath, JSON.stringify({ ...payload, createdAt: new Date(Date.now() - 30_000).toISOString() }))
    await ownsIt(sessionFile, lockPath)
  })
})

// ---------------------------------------------------------------- the sweep

describe('cleanStaleLockFiles: the sweep rules of the later generation', () => {
  const file = (pid, agoMs, extra = {}) => oldPayload({ pid, createdAt: new Date(Date.now() - agoMs).toISOString(), ...extra })

  it('dead and too-old are removed; a fresh file of our own pid without a start time is kept', async () => {
    const dir = tmp()
    const nowMs = Date.now()
    write(path.join(dir, 'dead.jsonl.lock'), file(deadPid(), 120_000))
    write(path.join(dir, 'old-live.jsonl.lock'), file(process.pid, 120_000))
    write(path.join(dir, 'fresh-live.jsonl.lock'), file(process.pid, 1_000))
    for (const reader of [undefined, openclawAgent]) {
      const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, staleMs: 30_000, nowMs, removeStale: false, readOwnerProcessArgs: reader })
      expect(records(r.locks)).toEqual([
        ['dead.jsonl.lock', true, false, ['dead-pid', 'too-old']],
        ['fresh-live.jsonl.lock', false, false, []],
        ['old-live.jsonl.lock', true, false, ['too-old']],
      ])
    }
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, staleMs: 30_000, nowMs })
    expect(records(r.cleaned)).toEqual([
      ['dead.jsonl.lock', true, true, ['dead-pid', 'too-old']],
      ['old-live.jsonl.lock', true, true, ['too-old']],
    ])
    expect(fs.readdirSync(dir)).toEqual(['fresh-live.jsonl.lock'])
  })

  it('an untracked file of our pid with our (pinned) start time is orphan-self-pid, and removed', async () => {
    const dir = tmp()
    pinOwnStartTime()
    write(path.join(dir, 'orphan.jsonl.lock'), file(process.pid, 0, { starttime: PINNED }))
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, staleMs: 30_000 })
    expect(records(r.locks)).toEqual([['orphan.jsonl.lock', true, true, ['orphan-self-pid']]])
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('staleMs comes from config, then the env (which wins), when not given', async () => {
    const dir = tmp()
    const nowMs = Date.now()
    write(path.join(dir, 'a.jsonl.lock'), file(process.pid, 45_000))
    const base = { sessionsDir: dir, nowMs, removeStale: false, readOwnerProcessArgs: openclawAgent }
    const config = { session: { writeLock: { staleMs: 30_000 } } }
    expect((await swl.cleanStaleLockFiles({ ...base, config, env: {} })).locks[0].stale).toBe(true)
    const env = { OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: '60000' }
    expect((await swl.cleanStaleLockFiles({ ...base, config, env })).locks[0].stale).toBe(false)
    // An explicit staleMs wins over both.
    expect((await swl.cleanStaleLockFiles({ ...base, config, env, staleMs: 10_000 })).locks[0].stale).toBe(true)
    // inspectLockFile follows the same resolution.
    expect(swl.inspectLockFile(path.join(dir, 'a.jsonl.lock'), { nowMs, config, env: {}, readOwnerProcessArgs: openclawAgent }).stale).toBe(true)
  })

  it('non-openclaw-owner: a live, otherwise healthy old file whose owner runs something else', async () => {
    const dir = tmp()
    const p = path.join(dir, 'a.jsonl.lock')
    const cases = [
      [['python', 'worker.py'], true],
      [['node', '/srv/app/dist/index.js'], true], // an entry point, but no gateway/agent argument
      [['node', '/srv/app/dist/index.js', 'serve'], true],
      [['node', '/opt/openclaw/openclaw.mjs', 'doctor'], false],
      [['node', 'dist/index.js', 'gateway', 'run'], false],
      [['node', 'scripts/run-node.mjs', 'agent'], false],
      [['bun', 'src/entry.ts', 'gateway'], false],
      [['openclaw', 'gateway'], false],
      [['/usr/local/bin/openclaw-gateway'], false],
      [['C:\\Program Files\\OpenClaw\\OPENCLAW.EXE', 'agent'], false],
      [['C:\\tools\\openclaw-gateway.cmd'], false],
      [['node', 'C:\\srv\\OpenClaw\\openclaw.mjs'], false],
      [['  node  ', '  /x/openclaw  '], false],
      [['node', '/x/openclaw-helper.mjs'], true],
      [null, false], // unknown
      [[], false], // empty
      [['', '  '], false], // empty
    ]
    for (const [args, removed] of cases) {
      write(p, file(process.pid, 0))
      const seen = []
      const r = await swl.cleanStaleLockFiles({
        sessionsDir: dir,
        readOwnerProcessArgs: (pid) => (seen.push(pid), args),
      })
      expect(seen, JSON.stringify(args)).toEqual([process.pid]) // read once per file
      expect(records(r.locks), JSON.stringify(args)).toEqual([
        ['a.jsonl.lock', removed, removed, removed ? ['non-openclaw-owner'] : []],
      ])
      expect(fs.existsSync(p)).toBe(!removed)
    }
  })

  it('non-openclaw-owner never for an OS-held file, a stale-by-other-rules file, another host, or a dead pid; a throwing reader is unknown', async () => {
    const dir = tmp()
    const held = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'held.jsonl') })
    write(path.join(dir, 'dead.jsonl.lock'), file(deadPid(), 0))
    write(path.join(dir, 'old.jsonl.lock'), file(process.pid, 2 * 3_600_000))
    write(path.join(dir, 'remote.jsonl.lock'), file(process.ppid, 0, { hostname: 'elsewhere.invalid' }))
    const seen = []
    const r = await swl.cleanStaleLockFiles({
      sessionsDir: dir,
      removeStale: false,
      readOwnerProcessArgs: (pid) => (seen.push(pid), ['python', 'x.py']),
    })
    expect(records(r.locks)).toEqual([
      ['dead.jsonl.lock', true, false, ['dead-pid']],
      ['held.jsonl.lock', false, false, []],
      ['old.jsonl.lock', true, false, ['too-old']],
      ['remote.jsonl.lock', false, false, []],
    ])
    expect(seen).toEqual([])
    const throwing = await swl.cleanStaleLockFiles({
      sessionsDir: dir,
      removeStale: false,
      readOwnerProcessArgs: () => {
        throw new Error('no /proc')
      },
    })
    expect(records(throwing.locks)).toEqual(records(r.locks))
    await held.release()
  })

  it('the default reader reads the owner\'s /proc/<pid>/cmdline', async (ctx) => {
    if (process.platform !== 'linux') return ctx.skip()
    const dir = tmp()
    const other = sleeper() // "sleep 120": not OpenClaw
    const gateway = track(
      spawn(process.execPath, ['-e', 'console.log("ready"); setInterval(() => {}, 1000)', 'openclaw'], { stdio: ['ignore', 'pipe', 'ignore'] }),
    )
    // Once it prints, it has exec'd: /proc shows its own command line, not ours.
    await new Promise((resolve) => gateway.stdout.once('data', resolve))
    await waitFor(() => fs.readFileSync(`/proc/${other.pid}/cmdline`, 'utf8').startsWith('sleep'))
    write(path.join(dir, 'a.jsonl.lock'), file(other.pid, 0, { starttime: startTime(other.pid) }))
    write(path.join(dir, 'b.jsonl.lock'), file(gateway.pid, 0))
    write(path.join(dir, 'c.jsonl.lock'), file(process.pid, 0)) // ourselves: never by command line
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, removeStale: false })
    expect(records(r.locks)).toEqual([
      ['a.jsonl.lock', true, false, ['non-openclaw-owner']],
      ['b.jsonl.lock', false, false, []],
      ['c.jsonl.lock', false, false, []],
    ])
    expect(swl.inspectLockFile(path.join(dir, 'a.jsonl.lock'))).toMatchObject({ stale: true, staleReasons: ['non-openclaw-owner'] })
  })

  it('hold-exceeded in the sweep: a live other holder past its recorded maxHoldMs', async () => {
    const dir = tmp()
    const s = sleeper()
    const st = startTime(s.pid)
    write(path.join(dir, 'a.jsonl.lock'), file(s.pid, 30_000, { starttime: st, maxHoldMs: 10_000 }))
    write(path.join(dir, 'b.jsonl.lock'), file(s.pid, 30_000, { starttime: st, maxHoldMs: 60_000 }))
    write(path.join(dir, 'c.jsonl.lock'), file(process.pid, 30_000, { maxHoldMs: 10_000 })) // us: never
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, readOwnerProcessArgs: () => null })
    expect(records(r.locks)).toEqual([
      ['a.jsonl.lock', true, true, ['hold-exceeded']],
      ['b.jsonl.lock', false, false, []],
      ['c.jsonl.lock', false, false, []],
    ])
  })
})

// ---------------------------------------------------------------- testing seams

describe('testing seams of the later generation', () => {
  it('inspectLockPayloadForTest: the old rules on a payload object, no mtime grace', () => {
    const nowMs = Date.now()
    const gone = deadPid()
    const t = swl.testing
    expect(t.inspectLockPayloadForTest({ pid: gone, createdAt: new Date(nowMs - 120_000).toISOString() }, 30_000, nowMs)).toEqual({
      pid: gone,
      pidAlive: false,
      createdAt: new Date(nowMs - 120_000).toISOString(),
      ageMs: 120_000,
      stale: true,
      staleReasons: ['dead-pid', 'too-old'],
    })
    for (const empty of [null, undefined, {}, 'garbage', 42]) {
      expect(t.inspectLockPayloadForTest(empty, 30_000, nowMs)).toEqual({
        pid: null,
        pidAlive: false,
        createdAt: null,
        ageMs: null,
        stale: true,
        staleReasons: ['missing-pid', 'invalid-createdAt'],
      })
    }
    const live = t.inspectLockPayloadForTest({ pid: process.ppid, createdAt: new Date(nowMs - 1000).toISOString() }, 30_000, nowMs)
    expect(live).toMatchObject({ pid: process.ppid, pidAlive: true, ageMs: 1000, stale: false, staleReasons: [] })
    const held = t.inspectLockPayloadForTest({ pid: process.ppid, createdAt: new Date(nowMs - 30_000).toISOString(), maxHoldMs: 10_000 }, 60_000, nowMs)
    expect(held).toMatchObject({ stale: true, staleReasons: ['hold-exceeded'] })
    const future = t.inspectLockPayloadForTest({ pid: process.ppid, createdAt: new Date(nowMs + 3_600_000).toISOString() }, 60_000, nowMs)
    expect(future).toMatchObject({ ageMs: null, stale: true, staleReasons: ['invalid-createdAt'] })
  })

  it('setProcessStartTimeResolverForTest: applies to us and to the pids judged; null restores; bad input is a TypeError', () => {
    const nowMs = Date.now()
    const real = swl.__testing.identity().starttime
    const s = sleeper()
    const payload = { pid: s.pid, createdAt: new Date(nowMs).toISOString(), starttime: 77 }
    expect(swl.testing.inspectLockPayloadForTest(payload, 60_000, nowMs).staleReasons).toEqual(['recycled-pid'])
    swl.testing.setProcessStartTimeResolverForTest((pid) => (pid === process.pid ? PINNED : pid === s.pid ? 77 : null))
    expect(swl.__testing.identity().starttime).toBe(PINNED)
    expect(swl.testing.inspectLockPayloadForTest(payload, 60_000, nowMs).staleReasons).toEqual([])
    const mine = { pid: process.pid, createdAt: new Date(nowMs).toISOString(), starttime: PINNED }
    expect(swl.testing.inspectLockPayloadForTest(mine, 60_000, nowMs).staleReasons).toEqual(['orphan-self-pid'])
    swl.testing.setProcessStartTimeResolverForTest(null)
    expect(swl.__testing.identity().starttime).toBe(real)
    expect(swl.testing.inspectLockPayloadForTest(payload, 60_000, nowMs).staleReasons).toEqual(['recycled-pid'])
    // A throwing resolver or a non-integer answer means "unknown".
    swl.testing.setProcessStartTimeResolverForTest(() => {
      throw new Error('x')
    })
    expect(swl.__testing.identity().starttime ?? null).toBeNull()
    swl.testing.setProcessStartTimeResolverForTest(() => 1.5)
    expect(swl.__testing.identity().starttime ?? null).toBeNull()
    for (const bad of [5, 'fn', {}]) expect(() => swl.testing.setProcessStartTimeResolverForTest(bad)).toThrow(TypeError)
    // resetSessionWriteLockStateForTest drops the resolver too.
    swl.testing.setProcessStartTimeResolverForTest(() => PINNED)
    swl.resetSessionWriteLockStateForTest()
    expect(swl.__testing.identity().starttime).toBe(real)
  })
})
