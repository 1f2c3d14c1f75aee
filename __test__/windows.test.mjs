// What the Windows backend adds or does differently (docs/windows.md), with
// real child processes. The payload tests run everywhere; the rest only on
// Windows (under wine in CI: `node scripts/cross-win.js`), and say so elsewhere.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const WIN = process.platform === 'win32'
const INDEX = fileURLToPath(new URL('../index.js', import.meta.url))
const tmp = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-win-')))
const children = new Set()

afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  swl.resetSessionWriteLockStateForTest()
})

const windowsOnly = (name, fn, timeout) => {
  if (WIN) return it(name, fn, timeout)
  console.warn(`windows.test: "${name}" skipped: Windows only`)
  return it.skip(name, fn, timeout)
}

/** A node child running `script`; resolves `ready` with its first stdout line. */
function child(script) {
  const c = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(c)
  let out = ''
  let err = ''
  c.stdout.setEncoding('utf8')
  c.stderr.setEncoding('utf8')
  c.stderr.on('data', (d) => (err += d))
  const ready = new Promise((resolve, reject) => {
    c.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')))
    })
    c.on('exit', () => reject(new Error(`child exited before its first line; stderr:\n${err}`)))
  })
  const exited = new Promise((resolve) => c.on('exit', (code, signal) => resolve({ code, signal, stdout: out, stderr: err })))
  return { c, ready, exited, stderr: () => err }
}

describe('the lock leaves the payload readable', () => {
  it('another process reads the JSON of a lock we hold (the locked byte lies far past it)', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const r = spawnSync(process.execPath, ['-e', `process.stdout.write(require('fs').readFileSync(${JSON.stringify(lease.lockPath)}, 'utf8'))`], {
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ pid: process.pid, fencingToken: lease.fencingToken, lock: 'os' })
    await lease.release()
  })

  it('while another process holds it, we read its payload and time out naming it', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const h = child(`const swl = require(${JSON.stringify(INDEX)})
      swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)} }).then((l) => console.log(l.lockPath))
      setInterval(() => {}, 1e6)`)
    const lockPath = await h.ready
    expect(JSON.parse(fs.readFileSync(lockPath, 'utf8')).pid).toBe(h.c.pid)
    const err = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 300 }).then(() => null, (e) => e)
    expect(err.message).toBe(`session file locked (timeout 300ms): pid=${h.c.pid} ${lockPath}`)
  })
})

describe('Windows identity and signals', () => {
  windowsOnly('the payload records the creation time as starttime, and no bootId', async () => {
    const sessionFile = path.join(tmp(), 's.jsonl')
    const lease = await swl.acquireSessionWriteLock({ sessionFile })
    const p = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    // Milliseconds since the epoch, before this test ran and after the process started.
    expect(p.starttime).toBeGreaterThan(Date.now() - process.uptime() * 1000 - 60_000)
    expect(p.starttime).toBeLessThanOrEqual(Date.now())
    expect(p.bootId).toBeUndefined()
    expect(p.hostname).toBe(os.hostname())
    await lease.release()
  })

  windowsOnly('SIGBREAK is hooked, and delivered to a lone holder it releases and ends the process', async () => {
    expect(swl.__testing.cleanupSignals).toContain('SIGBREAK')
    const sessionFile = path.join(tmp(), 's.jsonl')
    // Node delivers a signal by emitting it on `process`; no other process can
    // send SIGBREAK on Windows without sharing a console.
    const h = child(`const swl = require(${JSON.stringify(INDEX)})
      swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(sessionFile)} }).then((l) => {
        console.log(l.lockPath)
        process.stdin.on('data', () => process.emit('SIGBREAK', 'SIGBREAK'))
      })
      setInterval(() => {}, 1e6)`)
    const lockPath = await h.ready
    h.c.stdin.write('go\n')
    const exit = await Promise.race([h.exited, new Promise((r) => setTimeout(() => r(null), 20_000))])
    expect(exit, `still running after SIGBREAK; stderr:\n${h.stderr()}`).not.toBeNull()
    expect(exit.stderr).not.toMatch(/could not re-raise/)
    expect(fs.existsSync(lockPath)).toBe(false)
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 2000 })
    await lease.release()
  })
})
