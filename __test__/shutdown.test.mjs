// Shutdown hooks (docs/spec.md "Shutdown and session_end"): real child processes, real signals, real
// SIGKILL. Each child records what its session_end handlers saw in an
// evidence file (one JSON line per fact) that the test reads afterwards.
import { describe, it, expect, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const fixture = (name) => path.join(here, 'fixtures', name)
const tmp = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-shutdown-')))
const HUB = Symbol.for('session-write-lock.shutdown-hub')
const HOOKED = ['exit', 'SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP', 'SIGABRT']

afterEach(() => swl.resetSessionWriteLockStateForTest())

async function waitUntil(cond, what, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function withTimeout(p, what, ms = 30_000) {
  let t
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

/** Spawn a fixture; `ready` resolves on its "ready" line, `closed` gives {code, signal, stdout, stderr}. */
function spawnFixture(name, { args = [], env = {} } = {}) {
  const child = spawn(process.execPath, [fixture(name), ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const closed = new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d
      if (stdout.includes('ready\n')) resolve()
    })
    closed.then((r) => reject(new Error(`${name} ended before ready: ${r.code} ${r.signal}\n${r.stderr}`)))
  })
  ready.catch(() => {})
  return { child, ready: withTimeout(ready, `${name} ready`), closed: withTimeout(closed, `${name} to end`) }
}

function spawnChild(cfg, env = {}) {
  return spawnFixture('shutdown-child.js', { env: { SWL_CHILD: JSON.stringify(cfg), ...env } })
}

function readEvidence(file) {
  if (!fs.existsSync(file)) return []
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
}

/** A scenario dir with two tracked sessions (one with a file) and two held locks. */
function scenario(extra = {}) {
  const dir = tmp()
  const evidence = path.join(dir, 'evidence.jsonl')
  const cfg = {
    evidence,
    sessions: [
      { sessionId: 's1', sessionKey: 'agent:main:s1', agentId: 'main', sessionFile: path.join(dir, 's1.jsonl'), messageCount: 3 },
      { sessionId: 's2' },
    ],
    locks: [path.join(dir, 'l1.jsonl'), path.join(dir, 'l2.jsonl')],
    handlers: ['record', 'async'],
    ...extra,
  }
  return { dir, evidence, cfg }
}

const lockFilesIn = (dir) => fs.readdirSync(dir).filter((n) => n.endsWith('.lock'))
const markersIn = (dir) => fs.readdirSync(dir).filter((n) => n.endsWith('.active'))

describe('signal with no other listener', () => {
  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'])(
    '%s: drains session_end, releases every lock, then dies by that signal',
    async (sig) => {
      const { dir, evidence, cfg } = scenario()
      const c = spawnChild(cfg)
      await c.ready
      expect(lockFilesIn(dir).sort()).toEqual(['l1.jsonl.lock', 'l2.jsonl.lock'])
      expect(markersIn(dir)).toEqual(['s1.jsonl.active'])
      c.child.kill(sig)
      const r = await c.closed
      expect(r.signal).toBe(sig)
      expect(r.code).toBe(null)

      const ev = readEvidence(evidence)
      const starts = ev.filter((e) => e.kind === 'start')
      // Both handlers, both sessions, once each, reason "shutdown".
      expect(starts.map((e) => `${e.name}:${e.event.sessionId}`).sort()).toEqual(
        ['async1:s1', 'async1:s2', 'record0:s1', 'record0:s2'],
      )
      for (const s of starts) expect(s.event.reason).toBe('shutdown')
      const s1 = starts.find((e) => e.event.sessionId === 's1')
      expect(s1.event).toMatchObject({ sessionKey: 'agent:main:s1', messageCount: 3, sessionFile: path.join(dir, 's1.jsonl') })
      expect(s1.ctx).toEqual({ agentId: 'main', sessionId: 's1', sessionKey: 'agent:main:s1' })
      // Locks were still held while the handlers ran (released after the drain).
      for (const s of starts) expect(s.locksPresent).toEqual([true, true])
      // The drain waited for the async handler before the process died.
      expect(ev.filter((e) => e.kind === 'done' && e.name === 'async1').map((e) => e.sessionId).sort()).toEqual(['s1', 's2'])
      expect(lockFilesIn(dir)).toEqual([])
      expect(markersIn(dir)).toEqual([])
    },
  )

  it('a handler that throws or rejects is reported and the others still run', async () => {
    const { dir, evidence, cfg } = scenario({ handlers: ['throw', 'reject', 'record'] })
    const c = spawnChild(cfg)
    await c.ready
    c.child.kill('SIGTERM')
    const r = await c.closed
    expect(r.signal).toBe('SIGTERM')
    const starts = readEvidence(evidence).filter((e) => e.kind === 'start')
    expect(starts.map((e) => `${e.name}:${e.event.sessionId}`).sort()).toEqual(['record2:s1', 'record2:s2'])
    expect(r.stderr).toContain('handler throw0 throws')
    expect(r.stderr).toContain('handler reject1 rejects')
    expect(lockFilesIn(dir)).toEqual([])
  })

  it('a slow async handler is cut off by the budget (env override) and the process still exits', async () => {
    const { dir, evidence, cfg } = scenario({ handlers: ['never', 'record'] })
    // "never" waits 120 s on a ref'd timer: only the budget can end the process in time.
    const c = spawnChild(cfg, { SESSION_WRITE_LOCK_DRAIN_TIMEOUT_MS: '300' })
    await c.ready
    c.child.kill('SIGTERM')
    const r = await c.closed
    expect(r.signal).toBe('SIGTERM')
    const ev = readEvidence(evidence)
    expect(ev.filter((e) => e.kind === 'start' && e.name === 'never0')).toHaveLength(2)
    expect(ev.filter((e) => e.kind === 'done' && e.name === 'never0')).toHaveLength(0)
    expect(ev.filter((e) => e.kind === 'done' && e.name === 'record1')).toHaveLength(2)
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })

  it('the default budget (2 s) also cuts a slow handler off', async () => {
    const { dir, evidence, cfg } = scenario({ handlers: ['never'], locks: [] })
    // An empty value is not digits: the default applies.
    const c = spawnChild(cfg, { SESSION_WRITE_LOCK_DRAIN_TIMEOUT_MS: '' })
    await c.ready
    c.child.kill('SIGINT')
    const r = await c.closed
    expect(r.signal).toBe('SIGINT')
    expect(readEvidence(evidence).filter((e) => e.kind === 'done')).toHaveLength(0)
    expect(markersIn(dir)).toEqual([])
  })

  it('a second signal during the drain stops waiting and ends the process by that signal', async () => {
    const { dir, evidence, cfg } = scenario({ handlers: ['never'] })
    // A budget far past the test's timeout: only the second signal can end it in time.
    const c = spawnChild(cfg, { SESSION_WRITE_LOCK_DRAIN_TIMEOUT_MS: '600000' })
    await c.ready
    c.child.kill('SIGTERM')
    await waitUntil(() => readEvidence(evidence).filter((e) => e.kind === 'start').length === 2, 'drain started')
    expect(c.child.exitCode).toBe(null)
    c.child.kill('SIGINT')
    const r = await c.closed
    expect(r.signal).toBe('SIGINT')
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })

  it('locks only (no sessions): released and the signal re-raised before handleTerminationSignal returns', async () => {
    const { dir, evidence, cfg } = scenario({ sessions: [], handlers: [], action: 'handle-sync', signal: 'SIGTERM' })
    const r = await spawnChild(cfg).closed
    expect(r).toMatchObject({ code: 0, signal: null })
    const sync = readEvidence(evidence).find((e) => e.kind === 'sync')
    expect(sync).toEqual({ kind: 'sync', kills: [{ self: true, sig: 'SIGTERM' }], locksPresent: [false, false], listeners: 0 })
    expect(lockFilesIn(dir)).toEqual([])
  })

  it('locks only: a real SIGTERM releases them and kills by SIGTERM', async () => {
    const { dir, cfg } = scenario({ sessions: [], handlers: [] })
    const c = spawnChild(cfg)
    await c.ready
    expect(lockFilesIn(dir)).toHaveLength(2)
    c.child.kill('SIGTERM')
    expect((await c.closed).signal).toBe('SIGTERM')
    expect(lockFilesIn(dir)).toEqual([])
  })

  it('a session ended by end() before the signal is not emitted again', async () => {
    const { evidence, cfg } = scenario({ endFirst: ['s1'], handlers: ['record'] })
    const c = spawnChild(cfg)
    await c.ready
    c.child.kill('SIGTERM')
    const r = await c.closed
    expect(r.signal).toBe('SIGTERM')
    const starts = readEvidence(evidence).filter((e) => e.kind === 'start')
    expect(starts.map((e) => `${e.event.sessionId}:${e.event.reason}`).sort()).toEqual(['s1:idle', 's2:shutdown'])
  })
})

describe('signal with an app listener', () => {
  // The application decides how the process ends, so the locks stay with the
  // process (the old module released them here, and a process that went on
  // running then wrote its session unlocked): gone at exit, or with the process.
  it('ends sessions, keeps the locks, never kills the process, keeps every listener; exit releases', async () => {
    const { dir, evidence, cfg } = scenario({ appListener: 'SIGTERM' })
    const c = spawnChild(cfg)
    await c.ready
    c.child.kill('SIGTERM')
    await waitUntil(
      () => readEvidence(evidence).filter((e) => e.kind === 'done' && e.name === 'async1').length === 2,
      'async handlers done',
    )
    expect(readEvidence(evidence).some((e) => e.kind === 'app' && e.signal === 'SIGTERM')).toBe(true)
    expect(markersIn(dir)).toEqual([])
    // The handlers ran with the locks held, and they are still held.
    for (const s of readEvidence(evidence).filter((e) => e.kind === 'start')) expect(s.locksPresent).toEqual([true, true])
    expect(lockFilesIn(dir).sort()).toEqual(['l1.jsonl.lock', 'l2.jsonl.lock'])
    await expect(swl.acquireSessionWriteLock({ sessionFile: cfg.locks[0], timeoutMs: 200 })).rejects.toMatchObject({
      code: 'OPENCLAW_SESSION_WRITE_LOCK_TIMEOUT',
    })
    // Still alive, and it exits on its own terms.
    expect(c.child.exitCode).toBe(null)
    expect(c.child.signalCode).toBe(null)
    c.child.stdin.write('exit 7\n')
    const r = await c.closed
    expect(r).toMatchObject({ code: 7, signal: null })
    expect(lockFilesIn(dir)).toEqual([])
    // The app's listener and ours, both still there.
    expect(readEvidence(evidence).find((e) => e.kind === 'listeners').count).toBe(2)
    // Ended once: the exit hook found nothing left to end.
    const starts = readEvidence(evidence).filter((e) => e.kind === 'start')
    expect(starts).toHaveLength(4)
  })
})

describe('the signal handling is loaded when a signal arrives', () => {
  // The first acquire installs the listeners without loading lib/shutdown.js;
  // a signal listener loads it. A copy of the package whose lib/shutdown.js
  // vanished in between (removed or replaced on disk while the process ran)
  // must still never change whether the signal ends the process.
  const root = path.join(here, '..')
  function copyWithoutShutdown(appListener) {
    const dir = tmp()
    const pkg = path.join(dir, 'pkg')
    fs.mkdirSync(path.join(pkg, 'lib'), { recursive: true })
    for (const f of fs.readdirSync(root)) {
      if (f === 'index.js' || f === 'loader.js' || f === 'package.json' || f.endsWith('.node')) fs.copyFileSync(path.join(root, f), path.join(pkg, f))
    }
    for (const f of fs.readdirSync(path.join(root, 'lib'))) fs.copyFileSync(path.join(root, 'lib', f), path.join(pkg, 'lib', f))
    const lock = path.join(dir, 'held.jsonl')
    const code =
      `const swl=require(${JSON.stringify(path.join(pkg, 'index.js'))});` +
      (appListener ? `process.on('SIGTERM',()=>{console.log('app')});` : '') +
      `swl.acquireSessionWriteLock({sessionFile:${JSON.stringify(lock)}}).then((l)=>{` +
      `require('node:fs').rmSync(${JSON.stringify(path.join(pkg, 'lib', 'shutdown.js'))});` +
      `globalThis.lease=l;setInterval(()=>{},1000);console.log('ready')});` +
      `process.stdin.on('data',(d)=>{if(String(d).startsWith('exit'))process.exit(3)})`
    const child = spawn(process.execPath, ['-e', code], { env: { ...process.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d) => (stderr += d))
    child.stdout.on('data', (d) => (stdout += d))
    const closed = withTimeout(new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))), 'child to end')
    return { dir, child, closed, out: () => stdout }
  }

  it('alone: the locks are released and the process ends by the signal, the failure reported', async () => {
    const c = copyWithoutShutdown(false)
    await waitUntil(() => c.out().includes('ready\n'), 'ready')
    expect(lockFilesIn(c.dir)).toEqual(['held.jsonl.lock'])
    c.child.kill('SIGTERM')
    const r = await c.closed
    expect(r.signal).toBe('SIGTERM')
    expect(r.stderr).toMatch(/could not load the signal handling for SIGTERM/)
    expect(lockFilesIn(c.dir)).toEqual([])
  })

  it('with an application listener: the process goes on and keeps its lock until exit', async () => {
    const c = copyWithoutShutdown(true)
    await waitUntil(() => c.out().includes('ready\n'), 'ready')
    c.child.kill('SIGTERM')
    await waitUntil(() => c.out().includes('app\n'), 'the app listener')
    await new Promise((r) => setTimeout(r, 100))
    expect(c.child.exitCode).toBe(null)
    expect(lockFilesIn(c.dir)).toEqual(['held.jsonl.lock'])
    c.child.stdin.write('exit\n')
    const r = await c.closed
    expect(r).toMatchObject({ code: 3, signal: null })
    expect(lockFilesIn(c.dir)).toEqual([])
  })
})

describe('exit paths', () => {
  it('process.exit(): handlers called synchronously (reason shutdown), no lock file or marker left', async () => {
    const { dir, evidence, cfg } = scenario({ action: 'exit', exitCode: 3, endFirst: ['s2'] })
    const c = spawnChild(cfg)
    const r = await c.closed
    expect(r).toMatchObject({ code: 3, signal: null })
    const starts = readEvidence(evidence).filter((e) => e.kind === 'start')
    expect(starts.map((e) => `${e.name}:${e.event.sessionId}:${e.event.reason}`).sort()).toEqual([
      'async1:s1:shutdown',
      'async1:s2:idle',
      'record0:s1:shutdown',
      'record0:s2:idle',
    ])
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })

  it('an uncaught exception: handlers called, no lock file or marker left', async () => {
    const { dir, evidence, cfg } = scenario({ action: 'throw' })
    const c = spawnChild(cfg)
    const r = await c.closed
    expect(r.signal).toBe(null)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('deliberate uncaught exception')
    const starts = readEvidence(evidence).filter((e) => e.kind === 'start' && e.name === 'record0')
    expect(starts.map((e) => e.event.sessionId).sort()).toEqual(['s1', 's2'])
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })
})

describe('worker threads', () => {
  it('a worker terminated while holding a lock leaves no lock file, and the lock is free', async () => {
    const dir = tmp()
    const lockFile = path.join(dir, 'w.jsonl')
    const w = new Worker(fixture('shutdown-worker.js'), { workerData: { lockFile, then: 'hold' } })
    const msg = await withTimeout(new Promise((r) => w.once('message', r)), 'worker lock')
    expect(msg.error).toBeUndefined()
    expect(fs.existsSync(msg.lockPath)).toBe(true)
    await w.terminate()
    await waitUntil(() => !fs.existsSync(msg.lockPath), 'worker lock file removed')
    // Free for us now (a lock still held would time out here).
    const lease = await swl.acquireSessionWriteLock({ sessionFile: lockFile, timeoutMs: 5000 })
    await lease.release()
  })

  it("a worker's natural exit ends its own sessions only; the main thread's stay", async () => {
    const dir = tmp()
    const evidence = path.join(dir, 'evidence.jsonl')
    const mine = swl.trackActiveSession({ sessionId: 'main-1', sessionFile: path.join(dir, 'main-1.jsonl') })
    const mainLease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'main-lock.jsonl') })
    const w = new Worker(fixture('shutdown-worker.js'), {
      workerData: {
        evidence,
        lockFile: path.join(dir, 'worker-lock.jsonl'),
        session: { sessionId: 'worker-1', sessionFile: path.join(dir, 'worker-1.jsonl') },
        then: 'return',
      },
    })
    // Listen for the exit first: a worker that returns right after posting can
    // emit 'exit' in the same turn as its last 'message'.
    const exited = new Promise((r) => w.once('exit', r))
    const msg = await withTimeout(new Promise((r) => w.once('message', r)), 'worker ready')
    expect(msg.error).toBeUndefined()
    await withTimeout(exited, 'worker exit')
    const ev = readEvidence(evidence)
    expect(ev.map((e) => `${e.event.sessionId}:${e.event.reason}`)).toEqual(['worker-1:shutdown'])
    expect(fs.existsSync(msg.lockPath)).toBe(false)
    expect(markersIn(dir)).toEqual(['main-1.jsonl.active'])
    expect(fs.existsSync(mainLease.lockPath)).toBe(true)
    expect(swl.listActiveSessions().map((s) => s.sessionId)).toEqual(['main-1'])
    mainLease.assertOwned()
    await mainLease.release()
    mine.forget()
  })

  // `worker.terminate()` runs no JS (no `exit` event in the worker): the env
  // cleanup hook unlocks the worker's markers without removing them, so
  // recovery can report those sessions at once.
  it('a worker terminated while tracking a session leaves a recoverable marker', async () => {
    const dir = tmp()
    const w = new Worker(fixture('shutdown-worker.js'), {
      workerData: { session: { sessionId: 'wt-1', sessionFile: path.join(dir, 'wt-1.jsonl') }, then: 'hold' },
    })
    await withTimeout(new Promise((r) => w.once('message', r)), 'worker ready')
    await w.terminate()
    const r = await swl.recoverOrphanedSessions({ sessionsDir: dir })
    expect(r.recovered.map((e) => e.sessionId)).toEqual(['wt-1'])
  })
})

describe('crash recovery (SIGKILL)', () => {
  it('emits one "unknown" event per orphaned session, removes those markers, never touches a live one', async () => {
    const dir = tmp()
    const dead = spawnChild({
      evidence: path.join(dir, 'dead.jsonl'),
      sessions: [
        { sessionId: 'd1', sessionKey: 'agent:a:d1', agentId: 'a', sessionFile: path.join(dir, 'd1.jsonl'), messageCount: 4 },
        { sessionId: 'd2', sessionFile: path.join(dir, 'd2.jsonl') },
        { sessionId: 'd3' }, // no file: nothing to recover
      ],
      locks: [path.join(dir, 'd1.jsonl')],
      handlers: ['record'],
    })
    const liveEvidence = path.join(dir, 'live.jsonl')
    const live = spawnChild({
      evidence: liveEvidence,
      sessions: [{ sessionId: 'l1', sessionFile: path.join(dir, 'l1.jsonl') }],
      handlers: ['record'],
    })
    await Promise.all([dead.ready, live.ready])
    const deadMarker = JSON.parse(fs.readFileSync(path.join(dir, 'd1.jsonl.active'), 'utf8'))
    const liveMarkerPath = path.join(dir, 'l1.jsonl.active')
    const liveBefore = fs.readFileSync(liveMarkerPath, 'utf8')
    dead.child.kill('SIGKILL')
    const r = await dead.closed
    expect(r.signal).toBe('SIGKILL')
    // SIGKILL ran no handler, so the markers are still there.
    expect(readEvidence(path.join(dir, 'dead.jsonl')).filter((e) => e.kind === 'start')).toEqual([])
    expect(markersIn(dir).sort()).toEqual(['d1.jsonl.active', 'd2.jsonl.active', 'l1.jsonl.active'])

    const seen = []
    swl.onSessionEnd((e, ctx) => {
      seen.push({ e, ctx })
    })
    const out = await swl.recoverOrphanedSessions({ sessionsDir: dir })
    const byId = Object.fromEntries(out.recovered.map((e) => [e.sessionId, e]))
    expect(Object.keys(byId).sort()).toEqual(['d1', 'd2'])
    expect(byId.d1).toEqual({
      sessionId: 'd1',
      sessionKey: 'agent:a:d1',
      messageCount: 4,
      reason: 'unknown',
      sessionFile: path.join(dir, 'd1.jsonl'),
      recovered: { pid: dead.child.pid, hostname: deadMarker.hostname, startedAt: deadMarker.startedAt },
    })
    expect(byId.d2).toMatchObject({ messageCount: 0, reason: 'unknown', recovered: { pid: dead.child.pid } })
    expect(seen.map((s) => s.e.sessionId).sort()).toEqual(['d1', 'd2'])
    expect(seen.find((s) => s.e.sessionId === 'd1').ctx).toEqual({ agentId: 'a', sessionId: 'd1', sessionKey: 'agent:a:d1' })
    // Orphans gone, the live marker untouched.
    expect(markersIn(dir)).toEqual(['l1.jsonl.active'])
    expect(fs.readFileSync(liveMarkerPath, 'utf8')).toBe(liveBefore)
    // Nothing more to recover.
    expect((await swl.recoverOrphanedSessions({ sessionsDir: dir })).recovered).toEqual([])
    // The live session still ends normally (its marker was not disturbed).
    live.child.kill('SIGTERM')
    expect((await live.closed).signal).toBe('SIGTERM')
    expect(readEvidence(liveEvidence).filter((e) => e.kind === 'start').map((e) => e.event.sessionId)).toEqual(['l1'])
    expect(markersIn(dir)).toEqual([])
  })

  it('two processes recovering at once: each orphan emitted exactly once in total', async () => {
    const dir = tmp()
    const ids = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6']
    const dead = spawnChild({
      evidence: path.join(dir, 'dead.jsonl'),
      sessions: ids.map((id) => ({ sessionId: id, sessionFile: path.join(dir, `${id}.jsonl`) })),
    })
    await dead.ready
    dead.child.kill('SIGKILL')
    await dead.closed
    const other = spawnFixture('shutdown-recover.js', { args: [dir] })
    await other.ready
    other.child.stdin.write('go\n')
    const [mine, theirs] = await Promise.all([
      swl.recoverOrphanedSessions({ sessionsDir: dir }),
      other.closed.then((r) => JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{')))),
    ])
    const all = [...mine.recovered.map((e) => e.sessionId), ...theirs.recovered]
    expect(all.sort()).toEqual(ids)
    expect(theirs.seen.sort()).toEqual([...theirs.recovered].sort())
    expect(markersIn(dir)).toEqual([])
  })
})

describe('hooks installed once', () => {
  const ours = (ev) => {
    const hub = process[HUB]
    return process.listeners(ev).filter((f) => f === hub.listeners[ev]).length
  }

  it('cleanupSignals names every hooked signal, the old four included', () => {
    expect(swl.__testing.cleanupSignals).toEqual(expect.arrayContaining(['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGABRT', 'SIGHUP']))
  })

  it('listener counts stay flat over 20 reset cycles', async () => {
    const dir = tmp()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'first.jsonl') })
    await lease.release()
    const counts = () => HOOKED.map((ev) => process.listenerCount(ev))
    const start = counts()
    for (const ev of HOOKED) expect(ours(ev)).toBe(1)
    for (let i = 0; i < 20; i++) {
      const l = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, `c${i}.jsonl`) })
      swl.trackActiveSession({ sessionId: `c${i}`, sessionFile: path.join(dir, `c${i}.jsonl`) })
      swl.onSessionEnd(() => {})
      expect(l.lockPath).toBeTruthy()
      swl.resetSessionWriteLockStateForTest()
      expect(counts()).toEqual(start)
    }
    for (const ev of HOOKED) expect(ours(ev)).toBe(1)
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })

  it('a reset puts back a hook that was removed, without duplicating it', async () => {
    const dir = tmp()
    await (await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'a.jsonl') })).release()
    const hub = process[HUB]
    process.removeListener('SIGHUP', hub.listeners.SIGHUP)
    expect(ours('SIGHUP')).toBe(0)
    swl.resetSessionWriteLockStateForTest()
    expect(ours('SIGHUP')).toBe(1)
    swl.resetSessionWriteLockStateForTest()
    expect(ours('SIGHUP')).toBe(1)
  })

  it('two copies of the package in one process: one listener each, both drained on SIGTERM', async () => {
    const dir = tmp()
    const evidence = path.join(dir, 'evidence.jsonl')
    const c = spawnFixture('shutdown-copies.js', { args: [dir, evidence] })
    await c.ready
    c.child.kill('SIGTERM')
    const r = await c.closed
    expect(r.signal).toBe('SIGTERM')
    const info = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{')))
    expect(info.distinct).toBe(true)
    for (const ev of HOOKED) {
      expect(info.after[ev]).toBe(info.before[ev] + 1)
      for (const cycle of info.perCycle) expect(cycle[ev]).toBe(info.after[ev])
    }
    const ev = readEvidence(evidence)
    expect(ev.map((e) => `${e.copy}:${e.event.sessionId}:${e.event.reason}`).sort()).toEqual([
      'a:final-a:shutdown',
      'b:final-b:shutdown',
    ])
    expect(lockFilesIn(dir)).toEqual([])
    expect(markersIn(dir)).toEqual([])
  })

  it('handleTerminationSignal with another listener present: ends sessions, keeps the lock and the listeners, no kill', async () => {
    const dir = tmp()
    const other = () => {}
    process.on('SIGTERM', other)
    try {
      const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'h.jsonl') })
      swl.trackActiveSession({ sessionId: 'h1', sessionFile: path.join(dir, 'h.jsonl') })
      const seen = []
      swl.onSessionEnd((e) => {
        seen.push(`${e.sessionId}:${e.reason}`)
      })
      const before = process.listenerCount('SIGTERM')
      swl.__testing.handleTerminationSignal('SIGTERM')
      await waitUntil(() => seen.length === 1, 'the drain')
      expect(seen).toEqual(['h1:shutdown'])
      expect(markersIn(dir)).toEqual([])
      // The application decides: the lock stays held until exit or releaseAll.
      expect(fs.existsSync(lease.lockPath)).toBe(true)
      lease.assertOwned()
      expect(process.listenerCount('SIGTERM')).toBe(before)
      expect(ours('SIGTERM')).toBe(1)
      expect(await swl.releaseAll()).toBe(1)
      expect(fs.existsSync(lease.lockPath)).toBe(false)
    } finally {
      process.removeListener('SIGTERM', other)
    }
  })
})

describe('signal-exit counts as "nobody else" (handleTerminationSignal, process.kill recorded)', () => {
  const V4 = Symbol.for('signal-exit emitter')

  /** Hold a lock, add `others` listeners, fake signal-exit's counters, run our listener. */
  async function scenarioWith({ v3 = 0, v4 = 0, others = 0 }) {
    const dir = tmp()
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'se.jsonl') })
    const fns = Array.from({ length: others }, () => () => {})
    for (const fn of fns) process.on('SIGTERM', fn)
    const hadV3 = Object.prototype.hasOwnProperty.call(process, '__signal_exit_emitter__')
    if (v3) process.__signal_exit_emitter__ = { count: v3 }
    if (v4) globalThis[V4] = { count: v4 }
    const kills = []
    const realKill = process.kill
    process.kill = (pid, sig) => {
      kills.push(sig)
      return true
    }
    try {
      swl.__testing.handleTerminationSignal('SIGTERM')
    } finally {
      process.kill = realKill
      for (const fn of fns) process.removeListener('SIGTERM', fn)
      if (!hadV3) delete process.__signal_exit_emitter__
      delete globalThis[V4]
    }
    const held = fs.existsSync(lease.lockPath)
    await swl.releaseAll()
    return { kills, held }
  }

  it.each([
    { name: 'v3 listener alone', v3: 1, others: 1, ends: true },
    { name: 'v4 listener alone', v4: 1, others: 1, ends: true },
    { name: 'v3 and v4 together', v3: 1, v4: 1, others: 2, ends: true },
    { name: 'two v3 copies', v3: 2, others: 2, ends: true },
    { name: 'v3 plus an application listener', v3: 1, others: 2, ends: false },
    { name: 'an application listener, no signal-exit', others: 1, ends: false },
  ])('$name', async ({ v3, v4, others, ends }) => {
    const r = await scenarioWith({ v3, v4, others })
    if (ends) expect(r).toEqual({ kills: ['SIGTERM'], held: false })
    else expect(r).toEqual({ kills: [], held: true })
  })
})
