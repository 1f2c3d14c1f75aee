// Hostile files at the lock path (issue 7, CONTRACT §3, §4): a symlink to a
// victim, a dangling symlink, a FIFO, a directory, a socket, a device, a hard
// link to a victim file, a file owned by another user, a 1 GiB sparse file.
// None is followed, written, truncated or waited on forever: each gives a coded
// error at once or is handled by the old-file rules of §4, and the victim's
// content is unchanged in every case. (A waiting acquire would surface as a
// SessionWriteLockTimeoutError instead of the OS error the tests expect.)
import { describe, it, expect, afterEach, afterAll } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
const dirs = []
const GiB = 1024 ** 3
const VICTIM = 'precious victim content\n'

function tmp() {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-hostile-')))
  fs.chmodSync(d, 0o755)
  dirs.push(d)
  return d
}

function setup() {
  const dir = tmp()
  const victim = path.join(dir, 'victim.txt')
  fs.writeFileSync(victim, VICTIM)
  return { dir, victim, sessionFile: path.join(dir, 's.jsonl'), lockPath: path.join(dir, 's.jsonl.lock') }
}

async function acquireError(sessionFile, timeoutMs = 30_000) {
  try {
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs })
    await lease.release()
    return null
  } catch (err) {
    return err
  }
}

function expectOsError(err, code, lockPath) {
  expect(err).toBeInstanceOf(Error)
  expect(swl.isSessionWriteLockTimeoutError(err)).toBe(false)
  expect(err.code).toBe(code)
  expect(err.syscall).toBe('open')
  expect(err.path).toBe(lockPath)
}

const past = (ms) => new Date(Date.now() - ms)
const deadPid = () => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout)

afterEach(() => swl.resetSessionWriteLockStateForTest())
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

describe('non-regular files at the lock path: a coded error at once, never followed or touched', () => {
  it('a symlink to a victim file: ELOOP; the victim and the link are unchanged', async () => {
    const { victim, sessionFile, lockPath } = setup()
    fs.symlinkSync(victim, lockPath)
    expectOsError(await acquireError(sessionFile), 'ELOOP', lockPath)
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM)
    expect(fs.lstatSync(lockPath).isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(lockPath)).toBe(victim)
  })

  it('a symlink to a victim holding a lock payload of ours: still ELOOP, victim unchanged', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const victim = path.join(dir, 'payload-victim')
    const text = JSON.stringify({ pid: deadPid(), createdAt: new Date(0).toISOString(), fencingToken: 'x', hostname: os.hostname(), lock: 'os' }, null, 2)
    fs.writeFileSync(victim, text)
    fs.symlinkSync(victim, lockPath)
    expectOsError(await acquireError(sessionFile), 'ELOOP', lockPath)
    expect(fs.readFileSync(victim, 'utf8')).toBe(text)
  })

  it('a dangling symlink: ELOOP, its target is not created', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const target = path.join(dir, 'would-be-created')
    fs.symlinkSync(target, lockPath)
    expectOsError(await acquireError(sessionFile), 'ELOOP', lockPath)
    expect(fs.existsSync(target)).toBe(false)
  })

  it('a FIFO: EINVAL without blocking; still a FIFO', async () => {
    const { sessionFile, lockPath } = setup()
    expect(spawnSync('mkfifo', [lockPath]).status).toBe(0)
    expectOsError(await acquireError(sessionFile, Infinity), 'EINVAL', lockPath)
    expect(fs.lstatSync(lockPath).isFIFO()).toBe(true)
  })

  it('a directory: EISDIR; the directory and its content are left alone', async () => {
    const { sessionFile, lockPath } = setup()
    fs.mkdirSync(lockPath)
    fs.writeFileSync(path.join(lockPath, 'inside'), VICTIM)
    expectOsError(await acquireError(sessionFile), 'EISDIR', lockPath)
    expect(fs.readFileSync(path.join(lockPath, 'inside'), 'utf8')).toBe(VICTIM)
  })

  it('a listening unix socket: EINVAL; the socket stays', async () => {
    const { sessionFile, lockPath } = setup()
    const server = net.createServer()
    await new Promise((r) => server.listen(lockPath, r))
    try {
      expectOsError(await acquireError(sessionFile), 'EINVAL', lockPath)
      expect(fs.lstatSync(lockPath).isSocket()).toBe(true)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })

  it.skipIf(!isRoot)('a character device (like /dev/null): EINVAL; the device node stays', async () => {
    const { sessionFile, lockPath } = setup()
    expect(spawnSync('mknod', [lockPath, 'c', '1', '3']).status).toBe(0)
    expectOsError(await acquireError(sessionFile), 'EINVAL', lockPath)
    expect(fs.lstatSync(lockPath).isCharacterDevice()).toBe(true)
  })

  it('cleanStaleLockFiles walks past every one of them without following, removing or hanging', async () => {
    const { dir, victim } = setup()
    fs.symlinkSync(victim, path.join(dir, 'a.jsonl.lock'))
    fs.symlinkSync(path.join(dir, 'nowhere'), path.join(dir, 'b.jsonl.lock'))
    expect(spawnSync('mkfifo', [path.join(dir, 'c.jsonl.lock')]).status).toBe(0)
    fs.mkdirSync(path.join(dir, 'd.jsonl.lock'))
    const before = fs.readdirSync(dir).sort()
    const warn = []
    const r = await swl.cleanStaleLockFiles({ sessionsDir: dir, nowMs: Date.now() + 10 * 3_600_000, log: { warn: (m) => warn.push(m) } })
    expect(r.cleaned).toEqual([])
    expect(warn).toEqual([])
    expect(fs.readdirSync(dir).sort()).toEqual(before)
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM)
    expect(fs.existsSync(path.join(dir, 'nowhere'))).toBe(false)
    expect(fs.lstatSync(path.join(dir, 'c.jsonl.lock')).isFIFO()).toBe(true)
  })
})

describe('a hard link to a victim file at the lock path: judged by §4, the victim never written', () => {
  it('garbage content inside its grace: waited on (timeout), victim unchanged and still linked', async () => {
    const { victim, sessionFile, lockPath } = setup()
    fs.linkSync(victim, lockPath)
    const err = await acquireError(sessionFile, 300)
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe('unknown')
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM)
    expect(fs.statSync(victim).nlink).toBe(2)
  })

  it('garbage content past its grace: the name is reclaimed, the victim inode is not touched', async () => {
    const { victim, sessionFile, lockPath } = setup()
    fs.linkSync(victim, lockPath)
    fs.utimesSync(lockPath, past(60_000), past(60_000))
    const victimIno = fs.statSync(victim).ino
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(fs.statSync(lockPath).ino).not.toBe(victimIno)
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM)
    expect(fs.statSync(victim).nlink).toBe(1)
    await lease.release()
    expect(fs.readFileSync(victim, 'utf8')).toBe(VICTIM)
  })

  it('an old-module payload naming a live pid: waited on, never written', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const victim = path.join(dir, 'live')
    const text = JSON.stringify({ pid: process.ppid, createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(victim, text)
    fs.linkSync(victim, lockPath)
    const err = await acquireError(sessionFile, 300)
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(err.owner).toBe(`pid=${process.ppid}`)
    expect(fs.readFileSync(victim, 'utf8')).toBe(text)
  })

  it('a payload of ours whose OS lock is free: reclaimed by name, the victim content unchanged', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const victim = path.join(dir, 'ours')
    const text = JSON.stringify({ pid: process.pid, createdAt: new Date().toISOString(), fencingToken: 'old', hostname: os.hostname(), lock: 'os' }, null, 2)
    fs.writeFileSync(victim, text)
    fs.linkSync(victim, lockPath)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).fencingToken).toBe(lease.fencingToken)
    expect(fs.readFileSync(victim, 'utf8')).toBe(text)
    await lease.release()
    expect(fs.readFileSync(victim, 'utf8')).toBe(text)
  })
})

describe('a file owned by another user', () => {
  it.skipIf(!isRoot)('a stale old-module file owned by uid 65534: reclaimed by name, its inode unchanged', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const text = JSON.stringify({ pid: deadPid(), createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(lockPath, text, { mode: 0o600 })
    fs.chownSync(lockPath, 65534, 65534)
    const keep = path.join(dir, 'keep')
    fs.linkSync(lockPath, keep)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(fs.statSync(lockPath).uid).toBe(0)
    expect(fs.readFileSync(keep, 'utf8')).toBe(text)
    await lease.release()
  })

  it.skipIf(!isRoot)('as uid 65534, a root-owned 0600 lock file: EACCES at once, the file unchanged', async () => {
    const { dir, sessionFile, lockPath } = setup()
    fs.chmodSync(dir, 0o777)
    const text = JSON.stringify({ pid: process.ppid, createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(lockPath, text, { mode: 0o600 })
    const r = await runAsNobody(sessionFile, dir)
    expect(r.error, JSON.stringify(r)).not.toBeNull()
    expect([r.error.code, r.error.syscall, r.error.path]).toEqual(['EACCES', 'open', lockPath])
    expect(r.fdsAfter).toBe(r.fdsBefore)
    expect(fs.readFileSync(lockPath, 'utf8')).toBe(text)
    expect(fs.statSync(lockPath).uid).toBe(0)
  })

  it.skipIf(!isRoot)('as uid 65534 in a sticky directory, a stale root-owned file: EPERM from unlink, the file unchanged', async () => {
    const { dir, sessionFile, lockPath } = setup()
    fs.chmodSync(dir, 0o1777)
    const text = JSON.stringify({ pid: deadPid(), createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(lockPath, text, { mode: 0o644 })
    const r = await runAsNobody(sessionFile, dir)
    expect(r.error, JSON.stringify(r)).not.toBeNull()
    expect([r.error.code, r.error.syscall, r.error.path]).toEqual(['EPERM', 'unlink', lockPath])
    expect(r.fdsAfter).toBe(r.fdsBefore)
    expect(fs.readFileSync(lockPath, 'utf8')).toBe(text)
  })
})

describe('a 1 GiB sparse file at the lock path', () => {
  it('inside its grace: waited on, read only up to the cap, never truncated', async () => {
    const { sessionFile, lockPath } = setup()
    fs.writeFileSync(lockPath, '')
    fs.truncateSync(lockPath, GiB)
    const err = await acquireError(sessionFile, 300)
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
    expect(fs.statSync(lockPath).size).toBe(GiB)
  })

  it('past its grace: the name is reclaimed at once, the inode keeps its 1 GiB', async () => {
    const { dir, sessionFile, lockPath } = setup()
    fs.writeFileSync(lockPath, '{"pid": 1, "createdAt": "')
    fs.truncateSync(lockPath, GiB)
    fs.utimesSync(lockPath, past(60_000), past(60_000))
    const keep = path.join(dir, 'keep')
    fs.linkSync(lockPath, keep)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    expect(fs.statSync(lockPath).size).toBeLessThan(4096)
    expect(fs.statSync(keep).size).toBe(GiB)
    const head = Buffer.alloc(26)
    const fd = fs.openSync(keep, 'r')
    fs.readSync(fd, head, 0, 26, 0)
    fs.closeSync(fd)
    expect(head.toString()).toBe('{"pid": 1, "createdAt": "\0')
    await lease.release()
  })
})

function runAsNobody(sessionFile, dir) {
  const warm = path.join(dir, 'warm')
  fs.mkdirSync(warm, { recursive: true, mode: 0o777 })
  fs.chmodSync(warm, 0o777)
  const cfg = { sessionFile, warmup: path.join(warm, 'w.jsonl'), uid: 65534, gid: 65534 }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'fixtures', 'faults-acquire.js'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(err))))
  })
}

// What the lock cannot guarantee (README "Guarantees", "What does not hold"): these
// tests pin the behaviour down so that the documentation stays true.
describe('limits: parties that do not play by the OS lock', () => {
  function spawnLines(args) {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve({ code, out, err })))
    return { child, exited }
  }

  it('a third party deleting a held lock file breaks exclusion; assertOwned and assertCurrent tell the holder', async () => {
    const { dir, sessionFile, lockPath } = setup()
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    fs.unlinkSync(lockPath)
    const warm = path.join(dir, 'warm')
    const cfg = { sessionFile, warmup: path.join(warm, 'w.jsonl') }
    const { exited } = spawnLines([path.join(here, 'fixtures', 'faults-acquire.js'), JSON.stringify(cfg)])
    const r = await exited
    expect(r.code).toBe(0)
    // Another process got "the" lock while we still hold ours.
    expect(JSON.parse(r.out.trim().split('\n').pop()).acquired).toBe(true)
    expect(() => lease.assertOwned()).toThrow(swl.SessionWriteLockLostError) // one lstat tells
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    await lease.release()
  })

  it('the old module reclaims our held file once its createdAt is older than its staleMs (too-old)', async () => {
    const { sessionFile } = setup()
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const ours = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    await new Promise((r) => setTimeout(r, 300))
    const legacy = path.join(here, 'fixtures', 'legacy-lock.js')
    const { exited } = spawnLines([legacy, 'hold', sessionFile, '--stale-ms', '200', '--hold-ms', '50', '--timeout-ms', '5000'])
    const r = await exited
    expect(r.code, r.err).toBe(0)
    expect(r.out).toContain(`acquired ${lease.lockPath}`)
    // It replaced our file under our feet: we learn it only by re-reading.
    await expect(lease.assertCurrent()).rejects.toBeInstanceOf(swl.SessionWriteLockLostError)
    expect(ours.pid).toBe(process.pid)
    await lease.release()
  })
})

describe('limits: a frozen holder', () => {
  it('a SIGSTOPped holder keeps the lock (waiters time out, even past its maxHoldMs); SIGKILL frees it', async () => {
    const { sessionFile } = setup()
    const child = spawn(process.execPath, [path.join(here, 'fixtures', 'holder.js'), sessionFile, '--max-hold-ms', '200'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let out = ''
    await new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d
        if (out.includes('acquired ')) resolve()
      })
      child.on('exit', (code) => reject(new Error(`holder exited ${code}`)))
    })
    const exited = new Promise((r) => child.on('exit', (code, signal) => r(signal)))
    child.kill('SIGSTOP')
    try {
      await new Promise((r) => setTimeout(r, 400)) // past its maxHoldMs: its watchdog cannot run
      const err = await acquireError(sessionFile, 300)
      expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true)
      expect(err.owner).toBe(`pid=${child.pid}`)
    } finally {
      child.kill('SIGKILL')
    }
    expect(await exited).toBe('SIGKILL')
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
    await lease.release()
  })
})
