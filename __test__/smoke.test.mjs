import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'swl-smoke-'))

afterEach(() => swl.resetSessionWriteLockStateForTest())

describe('smoke', () => {
  it('acquires, writes the payload, releases and removes the file', async () => {
    const dir = tmp()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 's.jsonl') })
    expect(lease.lockPath).toBe(path.join(fs.realpathSync(dir), 's.jsonl.lock'))
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    // No boot id on Windows (nothing like /proc/sys/kernel/random/boot_id): omitted.
    const keys = ['pid', 'createdAt', 'starttime', 'maxHoldMs', 'fencingToken', 'hostname', 'bootId', 'lock']
    expect(Object.keys(payload)).toEqual(process.platform === 'win32' ? keys.filter((k) => k !== 'bootId') : keys)
    expect(fs.readFileSync(lease.lockPath, 'utf8')).toBe(JSON.stringify(payload, null, 2))
    expect(payload.pid).toBe(process.pid)
    expect(payload.fencingToken).toBe(lease.fencingToken)
    await lease.release()
    expect(fs.existsSync(lease.lockPath)).toBe(false)
  })

  it('a native panic surfaces as a JS error', () => {
    // In a child, so Rust's panic report (a backtrace when RUST_BACKTRACE is
    // set) lands in the child's captured stderr, not in the test output.
    const entry = fileURLToPath(new URL('../index.js', import.meta.url))
    const script = `const swl = require(${JSON.stringify(entry)})
      try { swl.__testing.panicForTest(); console.log('no error') }
      catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })) }
      console.log('still alive')`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, RUST_BACKTRACE: '0' } })
    expect(r.status, r.stderr).toBe(0)
    const [thrown, alive] = r.stdout.trim().split('\n')
    expect(JSON.parse(thrown).message).toMatch(/panic/)
    expect(alive).toBe('still alive')
    expect(r.stderr).toMatch(/deliberate panic for test/)
    expect(r.stderr).not.toMatch(/stack backtrace/)
  })
})
