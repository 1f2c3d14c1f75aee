// session_end API in one process (docs/spec.md "Shutdown and session_end"): tracking, markers, handlers,
// drains, recovery of hand-made orphans. Cross-process and signal cases are
// in shutdown.test.mjs.
import { describe, it, expect, afterEach, vi } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as swl from '../index.mjs'

const tmp = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-sessions-')))
const markersIn = (dir) => fs.readdirSync(dir).filter((n) => n.endsWith('.active'))

afterEach(() => {
  vi.restoreAllMocks()
  swl.resetSessionWriteLockStateForTest()
})

function deferred() {
  let resolve
  const promise = new Promise((r) => {
    resolve = r
  })
  return { promise, resolve }
}

function captureStderr() {
  const lines = []
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk))
    return true
  })
  return lines
}

describe('trackActiveSession and markers', () => {
  it('writes a flat pretty marker with keys in order, absent values omitted', () => {
    const dir = tmp()
    const file = path.join(dir, 'a.jsonl')
    swl.trackActiveSession({ sessionId: 'a', sessionKey: 'agent:x:a', agentId: 'x', sessionFile: file, messageCount: 2 })
    const text = fs.readFileSync(`${file}.active`, 'utf8')
    const m = JSON.parse(text)
    expect(text).toBe(JSON.stringify(m, null, 2))
    const id = swl.__testing.identity()
    const keys = ['sessionId', 'sessionKey', 'agentId', 'sessionFile', 'messageCount', 'startedAt', 'pid', 'starttime', 'hostname', 'bootId', 'lock']
    expect(Object.keys(m)).toEqual(keys.filter((k) => !(k === 'starttime' && id.starttime == null) && !(k === 'bootId' && id.bootId == null)))
    expect(m).toMatchObject({ sessionId: 'a', sessionKey: 'agent:x:a', agentId: 'x', sessionFile: file, messageCount: 2, pid: process.pid, hostname: id.hostname, lock: 'os' })
    expect(new Date(m.startedAt).toISOString()).toBe(m.startedAt)

    swl.trackActiveSession({ sessionId: 'b', sessionFile: path.join(dir, 'b.jsonl') })
    const b = JSON.parse(fs.readFileSync(path.join(dir, 'b.jsonl.active'), 'utf8'))
    expect(Object.keys(b)).not.toContain('sessionKey')
    expect(Object.keys(b)).not.toContain('agentId')
    expect(b.messageCount).toBe(0)
  })

  it('update() rewrites the marker; end() removes it and emits once', async () => {
    const dir = tmp()
    const file = path.join(dir, 'u.jsonl')
    const events = []
    swl.onSessionEnd((e, c) => {
      events.push({ e, c })
    })
    const s = swl.trackActiveSession({ sessionId: 'u', sessionKey: 'k', agentId: 'ag', sessionFile: file })
    expect(s.sessionId).toBe('u')
    s.update({ messageCount: 9 })
    expect(JSON.parse(fs.readFileSync(`${file}.active`, 'utf8')).messageCount).toBe(9)
    await s.end('idle')
    expect(fs.existsSync(`${file}.active`)).toBe(false)
    expect(events).toHaveLength(1)
    const { e, c } = events[0]
    expect(Object.keys(e)).toEqual(['sessionId', 'sessionKey', 'messageCount', 'durationMs', 'reason', 'sessionFile'])
    expect(e).toMatchObject({ sessionId: 'u', sessionKey: 'k', messageCount: 9, reason: 'idle', sessionFile: file })
    expect(e.durationMs).toBeGreaterThanOrEqual(0)
    expect(c).toEqual({ agentId: 'ag', sessionId: 'u', sessionKey: 'k' })
    await s.end('reset')
    s.update({ messageCount: 10 })
    expect(events).toHaveLength(1)
    expect(swl.listActiveSessions()).toEqual([])
  })

  it('forget() removes the marker without an event', async () => {
    const dir = tmp()
    const events = []
    swl.onSessionEnd((e) => events.push(e))
    const s = swl.trackActiveSession({ sessionId: 'f', sessionFile: path.join(dir, 'f.jsonl') })
    s.forget()
    await s.end('idle')
    expect(events).toEqual([])
    expect(markersIn(dir)).toEqual([])
    expect((await swl.drainActiveSessions()).emittedSessionIds).toEqual([])
  })

  it('tracking the same sessionId again returns the same session (one event)', async () => {
    const events = []
    swl.onSessionEnd((e) => events.push(e))
    const a = swl.trackActiveSession({ sessionId: 'same' })
    const b = swl.trackActiveSession({ sessionId: 'same', messageCount: 5 })
    expect(b).toBe(a)
    await a.end()
    await b.end()
    expect(events).toEqual([expect.objectContaining({ sessionId: 'same', messageCount: 5 })])
    expect(events[0]).not.toHaveProperty('reason')
  })

  it('a marker path held by another live session: tracked anyway, reported, first marker intact', () => {
    const dir = tmp()
    const file = path.join(dir, 'shared.jsonl')
    const err = captureStderr()
    swl.trackActiveSession({ sessionId: 'one', sessionFile: file })
    const before = fs.readFileSync(`${file}.active`, 'utf8')
    swl.trackActiveSession({ sessionId: 'two', sessionFile: file })
    expect(err.join('')).toMatch(/could not create the session marker .*shared\.jsonl\.active: EBUSY/)
    expect(fs.readFileSync(`${file}.active`, 'utf8')).toBe(before)
    expect(swl.listActiveSessions().map((s) => s.sessionId)).toEqual(['one', 'two'])
  })

  it('listActiveSessions gives context, sessionFile and startedAt', () => {
    const dir = tmp()
    swl.trackActiveSession({ sessionId: 'l1', sessionKey: 'k1', agentId: 'a1', sessionFile: path.join(dir, 'l1.jsonl') })
    swl.trackActiveSession({ sessionId: 'l2' })
    const list = swl.listActiveSessions()
    expect(list).toEqual([
      { agentId: 'a1', sessionId: 'l1', sessionKey: 'k1', sessionFile: path.join(dir, 'l1.jsonl'), startedAt: expect.any(String) },
      { sessionId: 'l2', startedAt: expect.any(String) },
    ])
  })

  it('rejects bad input with TypeError', () => {
    expect(() => swl.trackActiveSession()).toThrow(TypeError)
    expect(() => swl.trackActiveSession({ sessionId: '' })).toThrow(TypeError)
    expect(() => swl.trackActiveSession({ sessionId: 'x', sessionFile: 'a\0b' })).toThrow(TypeError)
    expect(() => swl.trackActiveSession({ sessionId: 'x', messageCount: -1 })).toThrow(TypeError)
    expect(() => swl.onSessionEnd('nope')).toThrow(TypeError)
    expect(swl.listActiveSessions()).toEqual([])
  })
})

describe('handlers', () => {
  it('run concurrently: each is called before any is awaited', async () => {
    const bCalled = deferred()
    const order = []
    swl.onSessionEnd(async () => {
      order.push('a-start')
      await bCalled.promise // would never resolve if handlers ran one after another
      order.push('a-end')
    })
    swl.onSessionEnd(() => {
      order.push('b')
      bCalled.resolve()
    })
    swl.trackActiveSession({ sessionId: 'c' })
    const r = await swl.drainActiveSessions({ totalTimeoutMs: 10_000 })
    expect(r).toEqual({ emittedSessionIds: ['c'], timedOut: false })
    expect(order).toEqual(['a-start', 'b', 'a-end'])
  })

  it('one that throws or rejects is reported; the others run; end() still resolves', async () => {
    const err = captureStderr()
    const seen = []
    swl.onSessionEnd(() => {
      throw new Error('sync boom')
    })
    swl.onSessionEnd(async () => {
      throw new Error('async boom')
    })
    swl.onSessionEnd((e) => seen.push(e.sessionId))
    await swl.trackActiveSession({ sessionId: 't' }).end('deleted')
    expect(seen).toEqual(['t'])
    const text = err.join('')
    expect(text).toContain('session_end handler failed for session t')
    expect(text).toContain('sync boom')
    expect(text).toContain('async boom')
  })

  it('the unsubscribe function removes a handler (idempotent)', async () => {
    const seen = []
    const off = swl.onSessionEnd((e) => seen.push(e.sessionId))
    await swl.trackActiveSession({ sessionId: 'x1' }).end()
    off()
    off()
    await swl.trackActiveSession({ sessionId: 'x2' }).end()
    expect(seen).toEqual(['x1'])
  })

  it('reset unregisters handlers', async () => {
    const seen = []
    swl.onSessionEnd((e) => seen.push(e.sessionId))
    swl.resetSessionWriteLockStateForTest()
    await swl.trackActiveSession({ sessionId: 'after-reset' }).end()
    expect(seen).toEqual([])
  })
})

describe('drainActiveSessions', () => {
  it('ends every active session (reason shutdown by default, or restart) and forgets them', async () => {
    const dir = tmp()
    const seen = []
    swl.onSessionEnd((e) => seen.push(`${e.sessionId}:${e.reason}`))
    swl.trackActiveSession({ sessionId: 'd1', sessionFile: path.join(dir, 'd1.jsonl') })
    swl.trackActiveSession({ sessionId: 'd2' })
    expect(await swl.drainActiveSessions()).toEqual({ emittedSessionIds: ['d1', 'd2'], timedOut: false })
    swl.trackActiveSession({ sessionId: 'd3' })
    expect(await swl.drainActiveSessions({ reason: 'restart' })).toEqual({ emittedSessionIds: ['d3'], timedOut: false })
    expect(seen).toEqual(['d1:shutdown', 'd2:shutdown', 'd3:restart'])
    expect(markersIn(dir)).toEqual([])
    expect(swl.listActiveSessions()).toEqual([])
  })

  it('times out on a handler that never settles, reporting timedOut', async () => {
    swl.onSessionEnd(() => new Promise(() => {}))
    swl.trackActiveSession({ sessionId: 'slow' })
    expect(await swl.drainActiveSessions({ totalTimeoutMs: 50 })).toEqual({ emittedSessionIds: ['slow'], timedOut: true })
  })

  it('also waits for handlers still running from an earlier end()', async () => {
    const gate = deferred()
    swl.onSessionEnd((e) => (e.sessionId === 'early' ? gate.promise : undefined))
    const endDone = swl.trackActiveSession({ sessionId: 'early' }).end('idle')
    let settled = false
    const d = swl.drainActiveSessions({ totalTimeoutMs: 30_000 }).then((r) => {
      settled = true
      return r
    })
    await new Promise((r) => setTimeout(r, 30))
    expect(settled).toBe(false)
    gate.resolve()
    expect(await d).toEqual({ emittedSessionIds: [], timedOut: false })
    await endDone
  })

  it('end() and a drain in the same tick: exactly one event', async () => {
    const seen = []
    swl.onSessionEnd((e) => seen.push(`${e.sessionId}:${e.reason}`))
    const s = swl.trackActiveSession({ sessionId: 'race' })
    const [, r] = await Promise.all([s.end('idle'), swl.drainActiveSessions()])
    expect(r.emittedSessionIds).toEqual([])
    expect(seen).toEqual(['race:idle'])
  })

  it('drainSessionWriteLockStateForTest waits for running handlers and forgets the rest silently', async () => {
    const dir = tmp()
    const gate = deferred()
    const seen = []
    swl.onSessionEnd(async (e) => {
      await gate.promise
      seen.push(e.sessionId)
    })
    const ended = swl.trackActiveSession({ sessionId: 'running' }).end()
    swl.trackActiveSession({ sessionId: 'left', sessionFile: path.join(dir, 'left.jsonl') })
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'held.jsonl') })
    const drained = swl.drainSessionWriteLockStateForTest()
    setTimeout(() => gate.resolve(), 20)
    await drained
    expect(seen).toEqual(['running'])
    expect(swl.listActiveSessions()).toEqual([])
    expect(markersIn(dir)).toEqual([])
    expect(fs.existsSync(lease.lockPath)).toBe(false)
    await ended
  })
})

describe('recoverOrphanedSessions (in-process cases)', () => {
  it("never touches this process's own live markers", async () => {
    const dir = tmp()
    swl.trackActiveSession({ sessionId: 'mine', sessionFile: path.join(dir, 'mine.jsonl') })
    const before = fs.readFileSync(path.join(dir, 'mine.jsonl.active'), 'utf8')
    expect(await swl.recoverOrphanedSessions({ sessionsDir: dir })).toEqual({ recovered: [] })
    expect(fs.readFileSync(path.join(dir, 'mine.jsonl.active'), 'utf8')).toBe(before)
  })

  it('a marker nobody locks is recovered once; a file that is not our marker is left alone', async () => {
    const dir = tmp()
    // Markers as a dead owner leaves them (no process holds their lock).
    fs.writeFileSync(
      path.join(dir, 'gone.jsonl.active'),
      JSON.stringify({ sessionId: 'gone', agentId: 'ag', sessionFile: path.join(dir, 'gone.jsonl'), messageCount: 7, startedAt: '2026-01-01T00:00:00.000Z', pid: 999999, hostname: 'elsewhere', lock: 'os' }, null, 2),
    )
    // Not a marker we wrote (ours are linked into place complete): never touched.
    fs.writeFileSync(path.join(dir, 'torn.jsonl.active'), '')
    fs.writeFileSync(path.join(dir, 'tool.active'), '{"sessionId":"x"}')
    const seen = []
    swl.onSessionEnd((e, c) => seen.push({ e, c }))
    const r = await swl.recoverOrphanedSessions({ sessionsDir: dir })
    expect(r.recovered).toEqual([
      {
        sessionId: 'gone',
        messageCount: 7,
        reason: 'unknown',
        sessionFile: path.join(dir, 'gone.jsonl'),
        recovered: { pid: 999999, hostname: 'elsewhere', startedAt: '2026-01-01T00:00:00.000Z' },
      },
    ])
    expect(seen).toEqual([{ e: r.recovered[0], c: { agentId: 'ag', sessionId: 'gone' } }])
    expect(markersIn(dir).sort()).toEqual(['tool.active', 'torn.jsonl.active'])
    expect(fs.readFileSync(path.join(dir, 'torn.jsonl.active'), 'utf8')).toBe('')
    expect((await swl.recoverOrphanedSessions({ sessionsDir: dir })).recovered).toEqual([])
  })

  it('a missing directory recovers nothing; bad arguments reject with TypeError', async () => {
    expect(await swl.recoverOrphanedSessions({ sessionsDir: path.join(tmp(), 'nope') })).toEqual({ recovered: [] })
    await expect(swl.recoverOrphanedSessions({})).rejects.toThrow(TypeError)
    await expect(swl.recoverOrphanedSessions()).rejects.toThrow(TypeError)
  })
})
