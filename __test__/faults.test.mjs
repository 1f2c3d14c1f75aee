// Fault injection (docs/spec.md "Failure behaviour"): a file system that fills up (ENOSPC,
// blocks and inodes), a read-only bind mount (EROFS), a directory without write
// permission for a non-root user (EACCES), and descriptor exhaustion (EMFILE).
// Each case: a coded JS error (code, syscall, path = the lock path), no lock
// file (half-written or not) left behind, no descriptor leaked (counted in
// /proc/self/fd of the child that failed), and the next acquire after the
// fault is removed works. Mount-based cases need root and a kernel that lets
// us mount; they are skipped with a message otherwise.
import { describe, it, expect, afterEach, afterAll } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const fixture = path.join(here, 'fixtures', 'faults-acquire.js')
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
const mounts = []
const dirs = []

function tmp(prefix = 'swl-faults-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.chmodSync(d, 0o755)
  dirs.push(d)
  return d
}

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`)
}

function mount(args, target) {
  sh('mount', [...args, target])
  mounts.push(target)
}

function umount(target) {
  const i = mounts.indexOf(target)
  if (i >= 0) mounts.splice(i, 1)
  spawnSync('umount', ['-l', target])
}

const canMount = (() => {
  if (!isRoot) return false
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-faults-probe-'))
  try {
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', d], { encoding: 'utf8' })
    if (r.status !== 0) return false
    spawnSync('umount', [d])
    return true
  } finally {
    fs.rmSync(d, { recursive: true, force: true })
  }
})()
if (!canMount) {
  console.warn('[faults] skipping ENOSPC/EROFS cases: mount(8) is not available to this user here (needs root in a mount-capable sandbox)')
}
const canSetuid = isRoot
if (!canSetuid) console.warn('[faults] EACCES runs as the current (non-root) user instead of uid 65534')

const prlimit = spawnSync('prlimit', ['--version']).status === 0

function runFixture(cfg, { wrap = null } = {}) {
  const argv = [fixture, JSON.stringify(cfg)]
  const [cmd, args] = wrap ? [wrap[0], [...wrap.slice(1), process.execPath, ...argv]] : [process.execPath, argv]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`fixture exited ${code}: ${err}`))
      resolve(JSON.parse(out.trim().split('\n').pop()))
    })
  })
}

function expectCleanFailure(r, code, syscall) {
  expect(r.error, JSON.stringify(r)).not.toBeNull()
  expect(r.error.isError).toBe(true)
  expect(r.error.code).toBe(code)
  expect(r.error.syscall).toBe(syscall)
  expect(r.error.path).toBe(r.lockPath)
  expect(r.error.message).toContain(code)
  expect(r.lockExists).toBe(false)
  expect(r.fdsAfter).toBe(r.fdsBefore)
}

async function acquireWorks(sessionFile) {
  const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 10_000 })
  const p = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
  expect(p.fencingToken).toBe(lease.fencingToken)
  expect(p.lock).toBe('os')
  await lease.release()
  expect(fs.existsSync(lease.lockPath)).toBe(false)
}

afterEach(() => swl.resetSessionWriteLockStateForTest())
afterAll(() => {
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m])
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

describe('ENOSPC', () => {
  it.skipIf(!canMount)('a full file system while writing the payload: ENOSPC from write, no file, no descriptor; works once space is freed', async () => {
    const mnt = tmp()
    mount(['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs'], mnt)
    const sessions = path.join(mnt, 'sessions')
    fs.mkdirSync(sessions)
    // Fill every block.
    const fd = fs.openSync(path.join(mnt, 'filler'), 'w')
    const chunk = Buffer.alloc(4096, 0x61)
    let full = false
    while (!full) {
      try {
        fs.writeSync(fd, chunk)
      } catch (err) {
        expect(err.code).toBe('ENOSPC')
        full = true
      }
    }
    fs.closeSync(fd)
    const sessionFile = path.join(sessions, 's.jsonl')
    const r = await runFixture({ sessionFile, warmup: path.join(tmp(), 'w.jsonl') })
    expectCleanFailure(r, 'ENOSPC', 'write')
    expect(fs.readdirSync(sessions)).toEqual([])
    // Fault removed.
    fs.truncateSync(path.join(mnt, 'filler'), 0)
    await acquireWorks(sessionFile)
    umount(mnt)
  })

  it.skipIf(!canMount)('no inode left: ENOSPC from open, nothing created; works once an inode is freed', async () => {
    const mnt = tmp()
    mount(['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=16,mode=0755', 'tmpfs'], mnt)
    const sessions = path.join(mnt, 'sessions')
    fs.mkdirSync(sessions)
    const made = []
    for (let i = 0; ; i++) {
      try {
        fs.writeFileSync(path.join(mnt, `f${i}`), '')
        made.push(path.join(mnt, `f${i}`))
      } catch (err) {
        expect(err.code).toBe('ENOSPC')
        break
      }
    }
    const sessionFile = path.join(sessions, 's.jsonl')
    const r = await runFixture({ sessionFile, warmup: path.join(tmp(), 'w.jsonl') })
    expectCleanFailure(r, 'ENOSPC', 'open')
    fs.rmSync(made.pop())
    await acquireWorks(sessionFile)
    umount(mnt)
  })
})

describe('EROFS', () => {
  it.skipIf(!canMount)('a read-only bind mount: EROFS from open, no descriptor; works once remounted read-write', async () => {
    const src = tmp()
    const dst = tmp()
    mount(['--bind', src], dst)
    sh('mount', ['-o', 'remount,bind,ro', dst])
    const sessionFile = path.join(dst, 's.jsonl')
    const r = await runFixture({ sessionFile, warmup: path.join(tmp(), 'w.jsonl') })
    expectCleanFailure(r, 'EROFS', 'open')
    expect(fs.readdirSync(src)).toEqual([])
    sh('mount', ['-o', 'remount,bind,rw', dst])
    await acquireWorks(sessionFile)
    umount(dst)
  })

  it.skipIf(!canMount)('a stale lock file on a read-only mount: EROFS from unlink, the file left intact', async () => {
    const src = tmp()
    const dst = tmp()
    // The old module's file, naming a dead pid.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    const stale = JSON.stringify({ pid: Number(dead.stdout), createdAt: new Date().toISOString() }, null, 2)
    fs.writeFileSync(path.join(src, 's.jsonl.lock'), stale)
    mount(['--bind', src], dst)
    sh('mount', ['-o', 'remount,bind,ro', dst])
    const sessionFile = path.join(dst, 's.jsonl')
    const r = await runFixture({ sessionFile, warmup: path.join(tmp(), 'w.jsonl') })
    expect(r.error, JSON.stringify(r)).not.toBeNull()
    expect([r.error.code, r.error.syscall, r.error.path]).toEqual(['EROFS', 'unlink', r.lockPath])
    expect(r.fdsAfter).toBe(r.fdsBefore)
    expect(fs.readFileSync(path.join(src, 's.jsonl.lock'), 'utf8')).toBe(stale)
    sh('mount', ['-o', 'remount,bind,rw', dst])
    // Read-write again: the stale file is reclaimed.
    await acquireWorks(sessionFile)
    umount(dst)
  })
})

describe('EACCES', () => {
  it('a directory without write permission: EACCES from open, no descriptor; works once permitted', async () => {
    const dir = tmp()
    const sessions = path.join(dir, 'ro')
    fs.mkdirSync(sessions, { mode: 0o555 })
    fs.chmodSync(sessions, 0o555)
    const sessionFile = path.join(sessions, 's.jsonl')
    const warm = tmp()
    fs.chmodSync(warm, 0o777)
    const ids = canSetuid ? { uid: 65534, gid: 65534 } : {}
    const r = await runFixture({ sessionFile, warmup: path.join(warm, 'w.jsonl'), ...ids })
    if (canSetuid) expect(r.uid).toBe(65534)
    expectCleanFailure(r, 'EACCES', 'open')
    fs.chmodSync(sessions, 0o777)
    const again = await runFixture({ sessionFile, warmup: path.join(warm, 'w.jsonl'), ...ids })
    expect(again.error).toBeNull()
    expect(again.acquired).toBe(true)
    expect(again.lockExists).toBe(false)
  })
})

describe('EMFILE', () => {
  it('no descriptor left (RLIMIT_NOFILE exhausted): EMFILE from open, none leaked; works once some are closed', async () => {
    const dir = tmp()
    const sessionFile = path.join(dir, 's.jsonl')
    const wrap = prlimit ? ['prlimit', '--nofile=256:256'] : ['sh', '-c', 'ulimit -n 256 && exec "$0" "$@"']
    const r = await runFixture({ sessionFile, warmup: path.join(dir, 'w.jsonl'), fillFds: true }, { wrap })
    expect(r.fillers).toBeGreaterThan(0)
    expect(r.fillers).toBeLessThan(256)
    expectCleanFailure(r, 'EMFILE', 'open')
    expect(r.retry).toEqual({ ok: true, lockExistedWhileHeld: true })
    expect(fs.existsSync(`${sessionFile}.lock`)).toBe(false)
  })
})

describe('the stress checker itself (scripts/stress.js)', () => {
  it('reports violations and exits 1 when some critical sections skip the lock', async () => {
    const script = path.join(here, '..', 'scripts', 'stress.js')
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, [script, '--quick', '--no-chaos', '--target', '600', '--sabotage', '10'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.on('exit', (code) => resolve({ code, out }))
    })
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/, [1-9]\d* violations\n/)
    expect(r.out).toMatch(/overlap|lost update/)
  })
})
