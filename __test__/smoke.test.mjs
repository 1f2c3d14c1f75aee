import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as swl from '../index.mjs'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'swl-smoke-'))

afterEach(() => swl.resetSessionWriteLockStateForTest())

describe('smoke', () => {
  it('acquires, writes the payload, releases and removes the file', async () => {
    const dir = tmp()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 's.jsonl') })
    expect(lease.lockPath).toBe(path.join(fs.realpathSync(dir), 's.jsonl.lock'))
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    expect(Object.keys(payload)).toEqual(
      ['pid', 'createdAt', 'starttime', 'maxHoldMs', 'fencingToken', 'hostname', 'bootId', 'lock'],
    )
    expect(fs.readFileSync(lease.lockPath, 'utf8')).toBe(JSON.stringify(payload, null, 2))
    expect(payload.pid).toBe(process.pid)
    expect(payload.fencingToken).toBe(lease.fencingToken)
    await lease.release()
    expect(fs.existsSync(lease.lockPath)).toBe(false)
  })

  it('a native panic surfaces as a JS error', () => {
    expect(() => swl.__testing.panicForTest()).toThrow(/panic/)
  })
})
