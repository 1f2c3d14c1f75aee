// release(path) when nothing is held must not touch the disk: no directory
// is created while normalizing the path.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as swl from '../index.mjs'

afterEach(() => swl.resetSessionWriteLockStateForTest())
// Under wine: symlinked directories are not reparse points, and a directory
// holding a file we have open cannot be removed (the classic delete).
const WINE = process.platform === 'win32' && process.env.SWL_TEST_WINE === '1'
const notUnderWine = (reason) => (name, fn, timeout) => {
  if (!WINE) return it(name, fn, timeout)
  console.warn(`release-path.test: "${name}" skipped: under wine: ${reason}`)
  return it.skip(name, fn, timeout)
}

describe('release(path) with nothing held', () => {
  it('resolves false and creates no directory', async () => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-relpath-')))
    const missing = path.join(root, 'x', 'does', 'not', 'exist')
    expect(await swl.release(path.join(missing, 's.jsonl'))).toBe(false)
    expect(fs.existsSync(path.join(root, 'x'))).toBe(false)
    expect(fs.readdirSync(root)).toEqual([])
  })

  it("the issue's own example under /tmp: resolves false, creates nothing", async () => {
    const top = path.join(os.tmpdir(), `swl-relpath-${process.pid}-x`)
    fs.rmSync(top, { recursive: true, force: true })
    expect(await swl.release(path.join(top, 'does/not/exist/s.jsonl'))).toBe(false)
    expect(fs.existsSync(top)).toBe(false)
  })

  notUnderWine('symlinked directories are not reparse points there')('still releases a held lock by path, also through a symlinked directory', async () => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-relpath-')))
    fs.mkdirSync(path.join(root, 'real'))
    fs.symlinkSync(path.join(root, 'real'), path.join(root, 'link'))
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(root, 'real', 's.jsonl') })
    expect(fs.existsSync(lease.lockPath)).toBe(true)
    expect(await swl.release(path.join(root, 'link', 's.jsonl'))).toBe(true)
    expect(fs.existsSync(lease.lockPath)).toBe(false)
    expect(await swl.release(path.join(root, 'real', 's.jsonl'))).toBe(false)
  })

  notUnderWine('a directory holding a file we have open cannot be removed there')('releases a held lock whose directory was removed meanwhile, creating nothing', async () => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-relpath-')))
    const dir = path.join(root, 'gone')
    fs.mkdirSync(dir)
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 's.jsonl') })
    fs.rmSync(dir, { recursive: true, force: true })
    expect(await swl.release(path.join(dir, 's.jsonl'))).toBe(true)
    expect(fs.existsSync(dir)).toBe(false)
    expect(() => lease.assertOwned()).toThrow()
  })
})
