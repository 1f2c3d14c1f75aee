// The maxHoldMs watchdog, lost leases and leaked leases (docs/spec.md "Leaks and the watchdog").
import { describe, it, expect, afterEach, vi } from 'vitest'
import fs from 'node:fs'
import path from 'node:path'
import * as swl from '../index.mjs'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, fixture, parseLine } = helpers
const children = []
const child = (args, opts) => {
  const c = spawnNode(args, opts)
  children.push(c)
  return c
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// Under wine a file we hold open keeps its name when another process deletes
// or renames over it (the classic semantics); Windows 10 NTFS does it at once.
const WINE = process.platform === 'win32' && process.env.SWL_TEST_WINE === '1'
const notUnderWine = (name, fn, timeout) => {
  if (!WINE) return it(name, fn, timeout)
  console.warn(`watchdog.test: "${name}" skipped: under wine: deleting or renaming over a file another process holds open is refused or deferred there`)
  return it.skip(name, fn, timeout)
}
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

afterEach(() => {
  vi.restoreAllMocks()
  for (const c of children.splice(0)) c.kill()
  swl.resetSessionWriteLockStateForTest()
})

/** Capture what this process writes to stderr while fn runs. */
async function captureStderr(fn) {
  const chunks = []
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    chunks.push(String(chunk))
    return true
  })
  try {
    await fn()
  } finally {
    spy.mockRestore()
  }
  return chunks.join('')
}

describe('watchdog through the test hook', () => {
  it('maxHoldMs 1: runLockWatchdogCheck releases it (or the timer already did)', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    let n
    let lease
    const log = await captureStderr(async () => {
      lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 1 })
      n = await swl.__testing.runLockWatchdogCheck(Date.now() + 10)
    })
    // the hook counts only what it released itself
    expect([0, 1]).toContain(n)
    expect(() => lease.assertOwned()).toThrow(swl.SessionWriteLockLostError)
    expect(fs.existsSync(lease.lockPath)).toBe(false)
    expect(lease.signal.aborted).toBe(true)
    expect(log).toMatch(new RegExp(`^\\[session-write-lock\\] releasing lock held for \\d+ms \\(max=1ms\\): ${esc(lease.lockPath)}\\n$`))
    expect(swl.listHeldLocks()).toEqual([])
  })

  it('counts exactly what it released when the timer cannot have fired', async () => {
    const dir = tmpDir()
    const a = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl'), maxHoldMs: 60_000 })
    const b = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'b.jsonl'), maxHoldMs: 60_000 })
    const c = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'c.jsonl'), maxHoldMs: 600_000 })
    // reentrant levels of one lock count once
    const a2 = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl'), allowReentrant: true, maxHoldMs: 60_000 })
    let n
    const log = await captureStderr(async () => {
      n = await swl.__testing.runLockWatchdogCheck(Date.now() + 120_000)
    })
    expect(n).toBe(2)
    for (const l of [a, a2, b]) {
      expect(() => l.assertOwned()).toThrow(swl.SessionWriteLockLostError)
      expect(fs.existsSync(l.lockPath)).toBe(false)
    }
    expect(() => c.assertOwned()).not.toThrow()
    expect(fs.existsSync(c.lockPath)).toBe(true)
    const lines = log.trimEnd().split('\n')
    expect(lines).toHaveLength(2)
    for (const l of [a, b]) {
      const line = lines.find((x) => x.endsWith(`: ${l.lockPath}`))
      expect(line).toMatch(new RegExp(`^\\[session-write-lock\\] releasing lock held for \\d+ms \\(max=60000ms\\): ${esc(l.lockPath)}$`))
      // reported on the clock the check used
      expect(Number(/held for (\d+)ms/.exec(line)[1])).toBeGreaterThanOrEqual(120_000 - 1)
    }
    expect(await swl.__testing.runLockWatchdogCheck(Date.now() + 120_000)).toBe(0)
    await c.release()
  })

  it('maxHoldMs Infinity is never force-released', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: Infinity })
    expect(await swl.__testing.runLockWatchdogCheck(Date.now() + 10 * 365 * 86_400_000)).toBe(0)
    expect(() => lease.assertOwned()).not.toThrow()
    await lease.release()
  })
})

describe('lost leases', () => {
  it('after a force-release: assertOwned throws, assertCurrent rejects, signal aborts with the error', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 60_000 })
    const signal = lease.signal
    let abortedWith
    signal.addEventListener('abort', () => {
      abortedWith = signal.reason
    })
    await captureStderr(() => swl.__testing.runLockWatchdogCheck(Date.now() + 120_000))
    expect(signal.aborted).toBe(true)
    expect(abortedWith).toBeInstanceOf(swl.SessionWriteLockLostError)
    expect(abortedWith.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_LOST')
    let thrown
    try {
      lease.assertOwned()
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(swl.SessionWriteLockLostError)
    expect(thrown.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_LOST')
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    await expect(lease.assertCurrent()).rejects.toMatchObject({ code: 'OPENCLAW_SESSION_WRITE_LOCK_LOST' })
    // a signal first read after the loss is aborted already
    expect(lease.signal.aborted).toBe(true)
  })

  it('the stale lease\'s release() never touches a newer holder\'s file', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const old = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 60_000 })
    await captureStderr(() => swl.__testing.runLockWatchdogCheck(Date.now() + 120_000))
    const fresh = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 5000 })
    expect(fresh.fencingToken).not.toBe(old.fencingToken)
    await expect(old.release()).resolves.toBeUndefined()
    expect(await swl.release(old)).toBe(false)
    expect(() => fresh.assertOwned()).not.toThrow()
    await expect(fresh.assertCurrent()).resolves.toBeUndefined()
    expect(JSON.parse(fs.readFileSync(fresh.lockPath, 'utf8')).fencingToken).toBe(fresh.fencingToken)
    await fresh.release()
    expect(fs.existsSync(fresh.lockPath)).toBe(false)
  })

  it('the stale lease\'s release() never touches a newer holder in another process', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const old = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 60_000 })
    const h = child([holderPath, sessionFile, '--timeout-ms', '60000'])
    await sleep(100)
    await captureStderr(() => swl.__testing.runLockWatchdogCheck(Date.now() + 120_000))
    const info = parseLine(await h.waitLine('acquired'))
    await old.release()
    expect(JSON.parse(fs.readFileSync(info.lockPath, 'utf8'))).toMatchObject({ pid: h.child.pid, fencingToken: info.fencingToken })
    let err
    try {
      await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 150 })
    } catch (e) {
      err = e
    }
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${h.child.pid}`)
    h.send('release')
    await h.waitLine('released')
  })

  it('a waiter gets the lock when the watchdog force-releases the holder', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const old = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 60_000 })
    const waiter = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    await captureStderr(() => swl.__testing.runLockWatchdogCheck(Date.now() + 120_000))
    const fresh = await waiter
    expect(fresh.fencingToken).not.toBe(old.fencingToken)
    expect(JSON.parse(fs.readFileSync(fresh.lockPath, 'utf8')).fencingToken).toBe(fresh.fencingToken)
    await old.release()
    expect(() => fresh.assertOwned()).not.toThrow()
    await fresh.release()
  })
})

describe('assertCurrent detects loss from outside the process', () => {
  notUnderWine('the lock file deleted externally', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    await expect(lease.assertCurrent()).resolves.toBeUndefined()
    fs.unlinkSync(lease.lockPath)
    const err = await lease.assertCurrent().then(() => null, (e) => e)
    expect(err).toBeInstanceOf(swl.SessionWriteLockLostError)
    expect(err.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_LOST')
    await lease.release()
  })

  notUnderWine('the lock file replaced externally (new inode); release leaves the replacement alone', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const text = fs.readFileSync(lease.lockPath, 'utf8')
    const tmp = `${lease.lockPath}.tmp`
    fs.writeFileSync(tmp, text) // same content, different inode
    fs.renameSync(tmp, lease.lockPath)
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    await lease.release()
    expect(fs.readFileSync(lease.lockPath, 'utf8')).toBe(text)
  })

  it('the fencing token rewritten in place', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const p = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    p.fencingToken = 'someone-else'
    fs.writeFileSync(lease.lockPath, JSON.stringify(p, null, 2)) // same inode
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    await lease.release()
  })
})

describe('watchdog with the real timer (child processes)', () => {
  it('force-releases after a short maxHoldMs and logs the exact stderr line', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const c = child([fixture('core-child.js'), 'watchdog', sessionFile, '50'])
    const r = JSON.parse(await c.waitLine('{', 30_000))
    expect(r.fatal).toBeUndefined()
    expect(r).toMatchObject({
      aborted: true,
      reasonCode: 'OPENCLAW_SESSION_WRITE_LOCK_LOST',
      reasonName: 'SessionWriteLockLostError',
      ownedCode: 'OPENCLAW_SESSION_WRITE_LOCK_LOST',
      currentCode: 'OPENCLAW_SESSION_WRITE_LOCK_LOST',
      fileExists: false,
    })
    expect((await c.exited).code).toBe(0)
    const m = new RegExp(`^\\[session-write-lock\\] releasing lock held for (\\d+)ms \\(max=50ms\\): ${esc(r.lockPath)}\\n$`).exec(c.stderr())
    expect(m, c.stderr()).not.toBeNull()
    expect(Number(m[1])).toBeGreaterThanOrEqual(50)
  })

  it('force-releases in-process with the real timer and hands over to a waiter', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    let lease
    let fresh
    const log = await captureStderr(async () => {
      lease = await swl.acquireSessionWriteLock({ sessionFile, maxHoldMs: 100 })
      fresh = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    })
    expect(lease.signal.aborted).toBe(true)
    expect(() => lease.assertOwned()).toThrow(swl.SessionWriteLockLostError)
    expect(JSON.parse(fs.readFileSync(fresh.lockPath, 'utf8')).fencingToken).toBe(fresh.fencingToken)
    expect(log).toMatch(new RegExp(`\\[session-write-lock\\] releasing lock held for \\d+ms \\(max=100ms\\): ${esc(lease.lockPath)}\\n`))
    await fresh.release()
  })
})

describe('watchdog scheduling', () => {
  it('a later, shorter maxHoldMs pulls the timer forward', async () => {
    const dir = tmpDir()
    let long
    let short
    const log = await captureStderr(async () => {
      long = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'long.jsonl'), maxHoldMs: 600_000 })
      short = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'short.jsonl'), maxHoldMs: 80 })
      const signal = short.signal
      if (!signal.aborted) {
        await Promise.race([
          new Promise((r) => signal.addEventListener('abort', r, { once: true })),
          sleep(30_000),
        ])
      }
    })
    expect(short.signal.aborted).toBe(true)
    expect(fs.existsSync(short.lockPath)).toBe(false)
    expect(() => long.assertOwned()).not.toThrow()
    expect(log).toContain(`(max=80ms): ${short.lockPath}`)
    expect(log).not.toContain(long.lockPath)
    await long.release()
  })
})

describe('leaked leases', () => {
  const leakRe = (lockPath) => new RegExp(esc(lockPath), 'g')

  it('a lease garbage-collected without release is released and reported once', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const c = child([fixture('core-child.js'), 'leak', sessionFile], { nodeArgs: ['--expose-gc'], env: { SESSION_WRITE_LOCK_DEBUG: undefined } })
    const r = JSON.parse(await c.waitLine('{', 30_000))
    expect(r.fatal).toBeUndefined()
    expect(r.fileExists).toBe(false)
    expect(r.reacquired).toBe(true)
    await c.exited
    const err = c.stderr()
    expect(err.match(leakRe(r.lockPath)) || []).toHaveLength(1)
    expect(err).toContain('[session-write-lock]')
    // no stack without SESSION_WRITE_LOCK_DEBUG
    expect(err).not.toMatch(/\n\s+at /)
  })

  it('a released lease that is garbage-collected is not reported', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const c = child([fixture('core-child.js'), 'released-gc', sessionFile], { nodeArgs: ['--expose-gc'] })
    await c.waitLine('done', 30_000)
    expect(await c.exited).toEqual({ code: 0, signal: null })
    expect(c.stderr()).not.toContain('s.jsonl.lock')
  })

  it('with SESSION_WRITE_LOCK_DEBUG=1 the report includes the acquisition stack', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const c = child([fixture('core-child.js'), 'leak', sessionFile], { nodeArgs: ['--expose-gc'], env: { SESSION_WRITE_LOCK_DEBUG: '1' } })
    const r = JSON.parse(await c.waitLine('{', 30_000))
    expect(r.fileExists).toBe(false)
    await c.exited
    const err = c.stderr()
    expect(err.match(leakRe(r.lockPath)) || []).toHaveLength(1)
    expect(err).toMatch(/\n\s+at /)
    expect(err).toContain('core-child.js')
  })
})

describe('the watchdog never keeps the process alive', () => {
  it('a child that acquires with a long maxHoldMs, releases and ends exits on its own', async () => {
    const c = child([fixture('core-child.js'), 'release-end', path.join(tmpDir(), 's.jsonl'), '600000'])
    await c.waitLine('done')
    expect(await c.exited).toEqual({ code: 0, signal: null })
  })

  it('a child that holds a lock and does nothing else exits on its own', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const c = child([fixture('core-child.js'), 'hold-end', sessionFile, '600000'])
    const line = await c.waitLine('held')
    expect(await c.exited).toEqual({ code: 0, signal: null })
    // and the lock died with it
    const lockPath = line.slice('held '.length)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(lease.lockPath).toBe(lockPath)
    await lease.release()
  })
})
