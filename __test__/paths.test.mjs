// docs/spec.md "Paths and exclusion": the directory realpath cache never serves a stale
// answer. Each case changes what a cached directory path leads to, then
// checks the lock lands where a fresh realpath says it must.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as swl from '../index.mjs'

const tmp = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-paths-')))

afterEach(() => swl.resetSessionWriteLockStateForTest())

async function lockPathVia(sessionFile) {
  const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 2000 })
  const p = lease.lockPath
  expect(fs.existsSync(p)).toBe(true)
  await lease.release()
  return p
}

// Under wine 8 a Unix symlink shows as the directory itself (no reparse
// point), so nothing can resolve it: these symlink cases skip there.
const WINE = process.platform === 'win32' && process.env.SWL_TEST_WINE === '1'
if (WINE) console.warn('paths.test: "directory realpath cache" skipped: under wine: symlinked directories are not reparse points there')
describe.skipIf(WINE)('directory realpath cache', () => {
  it('a re-pointed symlinked directory is resolved afresh', async () => {
    const root = tmp()
    fs.mkdirSync(path.join(root, 'a'))
    fs.mkdirSync(path.join(root, 'b'))
    fs.symlinkSync(path.join(root, 'a'), path.join(root, 'link'))
    const via = path.join(root, 'link', 's.jsonl')
    expect(await lockPathVia(via)).toBe(path.join(root, 'a', 's.jsonl.lock'))
    fs.unlinkSync(path.join(root, 'link'))
    fs.symlinkSync(path.join(root, 'b'), path.join(root, 'link'))
    expect(await lockPathVia(via)).toBe(path.join(root, 'b', 's.jsonl.lock'))
  })

  it('the real directory renamed and the symlink re-pointed to it: no stale path, no error', async () => {
    const root = tmp()
    fs.mkdirSync(path.join(root, 'a'))
    fs.symlinkSync(path.join(root, 'a'), path.join(root, 'link'))
    const via = path.join(root, 'link', 's.jsonl')
    expect(await lockPathVia(via)).toBe(path.join(root, 'a', 's.jsonl.lock'))
    fs.renameSync(path.join(root, 'a'), path.join(root, 'a2'))
    fs.unlinkSync(path.join(root, 'link'))
    fs.symlinkSync(path.join(root, 'a2'), path.join(root, 'link'))
    expect(await lockPathVia(via)).toBe(path.join(root, 'a2', 's.jsonl.lock'))
  })

  it('a directory removed and recreated (or replaced by a symlink) is resolved afresh', async () => {
    const root = tmp()
    const dir = path.join(root, 'sessions')
    fs.mkdirSync(dir)
    const file = path.join(dir, 's.jsonl')
    expect(await lockPathVia(file)).toBe(path.join(dir, 's.jsonl.lock'))
    fs.rmSync(dir, { recursive: true })
    expect(await lockPathVia(file)).toBe(path.join(dir, 's.jsonl.lock'))
    fs.rmSync(dir, { recursive: true })
    fs.mkdirSync(path.join(root, 'elsewhere'))
    fs.symlinkSync(path.join(root, 'elsewhere'), dir)
    expect(await lockPathVia(file)).toBe(path.join(root, 'elsewhere', 's.jsonl.lock'))
  })
})

describe('session paths normalized as path.resolve does', () => {
  // The addon normalizes absolute POSIX paths itself (the JS path.resolve is
  // skipped on the hot path): every spelling must give path.resolve's key.
  it('dots, doubled and trailing separators give the same lock as the resolved path', async () => {
    const root = tmp()
    const plain = path.join(root, 'a', 's.jsonl')
    fs.mkdirSync(path.join(root, 'a', 'b'), { recursive: true })
    const spellings = [
      `${root}/a/b/../s.jsonl`,
      `${root}//a/./s.jsonl`,
      `${root}/a/s.jsonl/`,
      `${root}/a/b/c/../../s.jsonl/.`,
    ]
    for (const p of spellings) {
      expect(path.resolve(p)).toBe(plain)
      const lease = await swl.acquireSessionWriteLock({ sessionFile: p, timeoutMs: 2000 })
      expect(lease.lockPath).toBe(`${plain}.lock`)
      expect(fs.existsSync(`${plain}.lock`)).toBe(true)
      // The same lock: a second acquire through the plain path waits (and times out).
      await expect(swl.acquireSessionWriteLock({ sessionFile: plain, timeoutMs: 30 })).rejects.toMatchObject({
        code: 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT',
        lockPath: `${plain}.lock`,
      })
      await lease.release()
      expect(fs.existsSync(`${plain}.lock`)).toBe(false)
    }
  })

  it('a relative path resolves against the working directory', async () => {
    const root = tmp()
    const cwd = process.cwd()
    process.chdir(root)
    try {
      const lease = await swl.acquireSessionWriteLock({ sessionFile: 'rel/s.jsonl', timeoutMs: 2000 })
      expect(lease.lockPath).toBe(path.join(root, 'rel', 's.jsonl.lock'))
      await lease.release()
    } finally {
      process.chdir(cwd)
    }
  })
})

// The addon reads the session path with one call into a fixed buffer when it
// fits and falls back to reading its length first: paths of every length
// around that buffer (1 KiB of UTF-8), in ASCII and with multi-byte
// characters cut anywhere near its end, lock the file they name.
describe.skipIf(process.platform === 'win32')('long and non-ASCII session paths', () => {
  it('paths around 1 KiB of UTF-8 lock exactly <path>.lock', async () => {
    const root = tmp()
    for (const unit of ['d', 'é', '€', '😀']) {
      for (let total = 1000; total <= 1040; total += 3) {
        // Directories of at most 200 bytes each until the path is `total` bytes long.
        let dir = root
        let left = total - Buffer.byteLength(root) - '/s.jsonl'.length
        while (left > 1) {
          let name = ''
          while (Buffer.byteLength(name + unit) <= Math.min(200, left - 1)) name += unit
          if (name === '') name = 'x'.repeat(Math.min(200, left - 1))
          dir = path.join(dir, name)
          left -= Buffer.byteLength(name) + 1
        }
        const file = path.join(dir, 's.jsonl')
        const lease = await swl.acquireSessionWriteLock({ sessionFile: file, timeoutMs: 2000 })
        expect(lease.lockPath).toBe(`${file}.lock`)
        expect(fs.existsSync(lease.lockPath)).toBe(true)
        const held = swl.listHeldLocks().map((h) => h.lockPath)
        expect(held).toEqual([`${file}.lock`])
        await lease.release()
        expect(fs.existsSync(lease.lockPath)).toBe(false)
      }
    }
  })
})
