// Nothing of the waiting machinery exists before it is needed: requiring the
// package, and taking a free lock, create no thread-safe function (an async
// resource that jest --detectOpenHandles reports), no waiting thread and no
// inotify descriptor or wake pipe. The first wait creates the wake-up (seen
// below, which also shows the probe can see it).
import { describe, it, expect, afterAll } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const entry = process.env.SWL_IDLE_ENTRY || path.join(here, '..', 'index.js')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-idle-'))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

// napi-rs creates one unref'd thread-safe function of its own ("CustomGC") when
// any napi-rs addon registers; it is not ours to defer.
const NAPI_RS_OWN = ['CustomGC']

function probe() {
  const r = spawnSync(process.execPath, [path.join(here, 'fixtures', 'idle-probe.js'), entry, dir], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

describe('idle: no waiting machinery before the first wait', () => {
  const s = probe()

  it('require creates no active resource and no async resource of ours', () => {
    expect(s.afterRequire.resources).toEqual(s.before.resources)
    expect(s.afterRequire.asyncTypes.filter((t) => !NAPI_RS_OWN.includes(t))).toEqual([])
    expect(s.afterRequire.waiterThreads).toBe(0)
    expect(s.afterRequire.fds).toEqual(s.before.fds)
  })

  it('an uncontended acquire + release creates no wake-up, thread, pipe or inotify descriptor', () => {
    expect(s.afterUncontended.asyncTypes).not.toContain('session-write-lock-wake')
    expect(s.afterUncontended.waiterThreads).toBe(0)
    expect(s.afterUncontended.fds).toEqual(s.before.fds)
    // Only the lease's timer is left active (the watchdog, unref'd) plus what hooks install.
    expect(s.afterUncontended.resources.filter((r) => r !== 'Timeout')).toEqual(s.before.resources)
  })

  it('the first wait creates the wake-up (the probe sees it)', () => {
    expect(s.afterContended.asyncTypes).toContain('session-write-lock-wake')
  })

  it("the first wait's drain of early grants is a plain promise job (no queueMicrotask resource to build)", () => {
    // queueMicrotask wraps each callback in an AsyncResource: in a fresh
    // process that runs (and compiles) node:async_hooks code on the first wait.
    expect(s.afterContended.asyncTypes).not.toContain('Microtask')
  })
})

describe('main-thread detection without node:worker_threads', () => {
  // The shutdown hooks ask the addon whether this is the main thread (loading
  // node:worker_threads costs milliseconds at require); it must agree with Node.
  const code = `
    const { parentPort, isMainThread } = require('node:worker_threads')
    const swl = require(${JSON.stringify(entry)})
    const native = require(${JSON.stringify(path.join(here, '..', 'loader.js'))}).load()
    swl.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(path.join(dir, 'worker.jsonl'))} })
      .then((l) => l.release())
      .then(() => parentPort.postMessage({ isMainThread, native: native.isMainThread(), sigterm: process.listenerCount('SIGTERM') }))
  `

  it('agrees with worker_threads.isMainThread, and a worker hooks no signals', async () => {
    const { Worker, isMainThread } = await import('node:worker_threads')
    const native = (await import('../loader.js')).default.load()
    // Windows cannot tell cheaply: the addon says null there, and the
    // package asks worker_threads instead (lib/shutdown.js).
    const answer = (v) => (process.platform === 'win32' ? null : v)
    expect(native.isMainThread()).toBe(answer(isMainThread))
    const w = new Worker(code, { eval: true })
    const msg = await new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    await w.terminate()
    expect(msg).toEqual({ isMainThread: false, native: answer(false), sigterm: 0 })
  })
})
