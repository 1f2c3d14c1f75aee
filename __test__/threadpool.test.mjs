// docs/spec.md "Paths and exclusion": a waiter never occupies a thread of Node's libuv pool (four
// threads shared with fs, dns, zlib). Eight acquisitions blocked on locks held
// by another process must leave fs.readFile free to complete.
import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const children = []

afterAll(() => {
  for (const c of children) c.kill('SIGKILL')
  swl.resetSessionWriteLockStateForTest()
})

function holdAll(files) {
  const code = `
    const swl = require(${JSON.stringify(path.join(root, 'index.js'))})
    const files = ${JSON.stringify(files)}
    Promise.all(files.map((f) => swl.acquireSessionWriteLock({ sessionFile: f })))
      .then(() => process.stdout.write('held\\n'))
    setInterval(() => {}, 1000)
  `
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('held')) resolve(child)
    })
    child.on('exit', (code) => reject(new Error(`holder exited early (${code})`)))
  })
}

describe('waiting does not use the libuv thread pool', () => {
  it('fs.readFile completes while eight acquisitions are blocked', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pool-'))
    const files = Array.from({ length: 8 }, (_, i) => path.join(dir, `s${i}.jsonl`))
    const holder = await holdAll(files)
    const settled = []
    const waiters = files.map((f, i) =>
      swl.acquireSessionWriteLock({ sessionFile: f, timeoutMs: 60_000 }).then(
        (lease) => {
          settled.push(i)
          return lease
        },
        (err) => {
          settled.push(i)
          throw err
        },
      ),
    )
    // Several pool round trips, none of which may wait for the blocked acquisitions.
    const target = path.join(dir, 'data.txt')
    fs.writeFileSync(target, 'x'.repeat(1024))
    for (let i = 0; i < 8; i++) {
      const text = await fs.promises.readFile(target, 'utf8')
      expect(text.length).toBe(1024)
    }
    await fs.promises.stat(dir)
    expect(settled).toEqual([])
    expect(swl.__testing.registryCounts().waiters).toBe(8)
    // Now let them through: the holder dies, every waiter acquires.
    holder.kill('SIGKILL')
    const leases = await Promise.all(waiters)
    expect(leases).toHaveLength(8)
    for (const l of leases) await l.release()
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.lock'))).toEqual([])
  })
})
