// A marker left at a session file's `.active` path: a crashed session's
// session_end must not be lost on re-track. trackActiveSession on a file whose marker
// belongs to a dead owner recovers that session first (one session_end with
// `recovered`, exactly once), then writes its own; a file there that is not a
// marker is never overwritten. The first owner really dies (SIGKILL).
import { describe, it, expect, afterEach, vi } from 'vitest'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const tmp = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-markers-')))

afterEach(() => {
  vi.restoreAllMocks()
  swl.resetSessionWriteLockStateForTest()
})

function captureStderr() {
  const lines = []
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk))
    return true
  })
  return lines
}

/** A child tracking `sessions`, ready once its markers are written; killed with SIGKILL. */
async function trackedThenKilled(dir, sessions) {
  const cfg = { evidence: path.join(dir, 'evidence.jsonl'), sessions }
  const child = spawn(process.execPath, [path.join(here, 'fixtures', 'shutdown-child.js')], {
    env: { ...process.env, SWL_CHILD: JSON.stringify(cfg) },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const closed = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('ready\n')) resolve()
    })
    closed.then((r) => reject(new Error(`child ended before ready: ${JSON.stringify(r)}`)))
  })
  child.kill('SIGKILL')
  expect((await closed).signal).toBe('SIGKILL')
  return child.pid
}

describe('trackActiveSession over a dead owner\'s marker', () => {
  it('recovers that session once (session_end with recovered), then writes its own marker', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const pid = await trackedThenKilled(dir, [
      { sessionId: 'old', sessionKey: 'agent:a:old', agentId: 'a', sessionFile: file, messageCount: 7 },
    ])
    const dead = JSON.parse(fs.readFileSync(`${file}.active`, 'utf8'))
    expect(dead.sessionId).toBe('old')
    const seen = []
    swl.onSessionEnd((e, ctx) => {
      seen.push({ e, ctx })
    })
    const s = swl.trackActiveSession({ sessionId: 'new', sessionFile: file, messageCount: 1 })
    // The dead owner's session ended exactly once, as recovery reports it.
    await new Promise((r) => setImmediate(r))
    expect(seen).toEqual([
      {
        e: {
          sessionId: 'old',
          sessionKey: 'agent:a:old',
          messageCount: 7,
          reason: 'unknown',
          sessionFile: file,
          recovered: { pid, hostname: dead.hostname, startedAt: dead.startedAt },
        },
        ctx: { agentId: 'a', sessionId: 'old', sessionKey: 'agent:a:old' },
      },
    ])
    // Our own marker is in place and nothing is left to recover.
    const mine = JSON.parse(fs.readFileSync(`${file}.active`, 'utf8'))
    expect(mine).toMatchObject({ sessionId: 'new', pid: process.pid, messageCount: 1 })
    expect((await swl.recoverOrphanedSessions({ sessionsDir: dir })).recovered).toEqual([])
    expect(seen.length).toBe(1)
    await s.end('idle')
    expect(seen.map((x) => x.e.sessionId)).toEqual(['old', 'new'])
    expect(fs.existsSync(`${file}.active`)).toBe(false)
  })

  it('the same sessionId tracked again after its owner died: the old run still gets its event', async () => {
    const dir = tmp()
    const file = path.join(dir, 'same.jsonl')
    const pid = await trackedThenKilled(dir, [{ sessionId: 'same', sessionFile: file, messageCount: 3 }])
    const seen = []
    swl.onSessionEnd((e) => {
      seen.push(e)
    })
    swl.trackActiveSession({ sessionId: 'same', sessionFile: file })
    await new Promise((r) => setImmediate(r))
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ sessionId: 'same', messageCount: 3, reason: 'unknown', recovered: { pid } })
    expect(JSON.parse(fs.readFileSync(`${file}.active`, 'utf8')).pid).toBe(process.pid)
  })

  it('re-tracking while another process recovers the same orphan: one session_end in total', async () => {
    const dir = tmp()
    const files = ['a', 'b', 'c', 'd'].map((n) => path.join(dir, `${n}.jsonl`))
    await trackedThenKilled(
      dir,
      files.map((f, i) => ({ sessionId: `orphan${i}`, sessionFile: f })),
    )
    const other = spawn(process.execPath, [path.join(here, 'fixtures', 'shutdown-recover.js'), dir], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    let out = ''
    other.stdout.setEncoding('utf8')
    const ready = new Promise((resolve) => {
      other.stdout.on('data', (d) => {
        out += d
        if (out.includes('ready\n')) resolve()
      })
    })
    const closed = new Promise((resolve) => other.on('close', resolve))
    await ready
    const seen = []
    swl.onSessionEnd((e) => {
      if (e.recovered) seen.push(e.sessionId)
    })
    other.stdin.write('go\n')
    for (const [i, f] of files.entries()) swl.trackActiveSession({ sessionId: `new${i}`, sessionFile: f })
    await closed
    const theirs = JSON.parse(out.split('\n').find((l) => l.startsWith('{')))
    await new Promise((r) => setImmediate(r))
    expect([...seen, ...theirs.recovered].sort()).toEqual(['orphan0', 'orphan1', 'orphan2', 'orphan3'])
    for (const [i, f] of files.entries()) expect(JSON.parse(fs.readFileSync(`${f}.active`, 'utf8')).sessionId).toBe(`new${i}`)
  })

  it('a foreign regular file at the marker path is never overwritten: tracked without a marker, warned', async () => {
    const dir = tmp()
    const file = path.join(dir, 'f.jsonl')
    const foreign = `${file}.active`
    fs.writeFileSync(foreign, 'not a marker: somebody else\'s file\n')
    const lines = captureStderr()
    const seen = []
    swl.onSessionEnd((e) => {
      seen.push(e)
    })
    const s = swl.trackActiveSession({ sessionId: 'f', sessionFile: file })
    expect(fs.readFileSync(foreign, 'utf8')).toBe('not a marker: somebody else\'s file\n')
    expect(lines.join('')).toContain(foreign)
    expect(swl.listActiveSessions().map((x) => x.sessionId)).toEqual(['f'])
    s.update({ messageCount: 2 })
    await s.end('idle')
    expect(seen).toEqual([expect.objectContaining({ sessionId: 'f', messageCount: 2, reason: 'idle' })])
    // Still there after the session ended.
    expect(fs.readFileSync(foreign, 'utf8')).toBe('not a marker: somebody else\'s file\n')
  })

  it('JSON that is not one of our markers (no "lock": "os") is not overwritten either', () => {
    const dir = tmp()
    const file = path.join(dir, 'j.jsonl')
    const text = JSON.stringify({ sessionId: 'x', pid: 1 })
    fs.writeFileSync(`${file}.active`, text)
    captureStderr()
    swl.trackActiveSession({ sessionId: 'j', sessionFile: file })
    expect(fs.readFileSync(`${file}.active`, 'utf8')).toBe(text)
  })
})

describe('findOrphanedSessions and readSessionMarker (what tools such as the CLI read)', () => {
  it('findOrphanedSessions lists what recoverOrphanedSessions then emits, and emits and removes nothing itself', async () => {
    const dir = tmp()
    const dead = path.join(dir, 'dead.jsonl')
    const pid = await trackedThenKilled(dir, [{ sessionId: 'gone', sessionKey: 'agent:a:gone', agentId: 'a', sessionFile: dead, messageCount: 5 }])
    swl.trackActiveSession({ sessionId: 'live', sessionFile: path.join(dir, 'live.jsonl') })
    fs.writeFileSync(path.join(dir, 'notes.active'), 'not a marker')
    const seen = []
    swl.onSessionEnd((e) => {
      seen.push(e)
    })
    const before = fs.readdirSync(dir).sort()
    const found = swl.findOrphanedSessions({ sessionsDir: dir })
    expect(found.map((o) => o.markerPath)).toEqual([`${dead}.active`])
    expect(found[0].event).toMatchObject({ sessionId: 'gone', messageCount: 5, reason: 'unknown', recovered: { pid } })
    await new Promise((r) => setImmediate(r))
    expect(seen).toEqual([])
    expect(fs.readdirSync(dir).sort()).toEqual(before)
    const { recovered } = await swl.recoverOrphanedSessions({ sessionsDir: dir })
    expect(recovered).toEqual([found[0].event])
    expect(seen).toEqual([found[0].event])
    expect(swl.findOrphanedSessions({ sessionsDir: dir })).toEqual([])
    expect(swl.findOrphanedSessions({ sessionsDir: path.join(dir, 'missing') })).toEqual([])
    expect(() => swl.findOrphanedSessions({})).toThrow(TypeError)
  })

  it('readSessionMarker reads a live marker as written; null for what is not a readable marker', () => {
    const dir = tmp()
    const file = path.join(dir, 'r.jsonl')
    swl.trackActiveSession({ sessionId: 'r', sessionKey: 'agent:a:r', sessionFile: file, messageCount: 2 })
    const marker = `${file}.active`
    expect(swl.readSessionMarker(marker)).toEqual(JSON.parse(fs.readFileSync(marker, 'utf8')))
    expect(swl.readSessionMarker(marker)).toMatchObject({ sessionId: 'r', pid: process.pid, lock: 'os', messageCount: 2 })
    fs.symlinkSync(marker, path.join(dir, 'link.active'))
    fs.writeFileSync(path.join(dir, 'text.active'), 'not json')
    fs.writeFileSync(path.join(dir, 'huge.active'), JSON.stringify({ sessionId: 'h', pad: 'x'.repeat(70 * 1024) }))
    fs.writeFileSync(path.join(dir, 'typed.active'), JSON.stringify({ sessionId: 7, pid: '12', hostname: 'h' }))
    expect(swl.readSessionMarker(path.join(dir, 'link.active'))).toBeNull()
    expect(swl.readSessionMarker(path.join(dir, 'text.active'))).toBeNull()
    expect(swl.readSessionMarker(path.join(dir, 'huge.active'))).toBeNull()
    expect(swl.readSessionMarker(path.join(dir, 'missing.active'))).toBeNull()
    expect(swl.readSessionMarker(dir)).toBeNull()
    // Only fields of the format's types.
    expect(swl.readSessionMarker(path.join(dir, 'typed.active'))).toEqual({ hostname: 'h' })
    expect(() => swl.readSessionMarker('')).toThrow(TypeError)
  })
})
