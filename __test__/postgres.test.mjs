// The PostgreSQL backend on one host (docs/postgres.md): a throwaway cluster on
// loopback, real child processes, the public API. Skips loudly without the
// server binaries; fails instead under CI=true.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freePort, pgAvailable, PG_PASSWORD, startCluster } from './support/postgres.mjs'
import { startChild } from './support/pgchild.mjs'

const require = createRequire(import.meta.url)
const api = require('../index.js')
const HAVE_PG = pgAvailable('PostgreSQL backend tests (postgres.test.mjs)')

describe.skipIf(!HAVE_PG)('PostgreSQL backend, one host', () => {
  let cluster
  let tmp
  const children = []
  beforeAll(async () => {
    cluster = await startCluster()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pgt-'))
  })
  afterAll(() => {
    cluster?.stop()
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
  })
  afterEach(async () => {
    for (const c of children.splice(0)) c.proc.kill('SIGKILL')
    api.resetSessionWriteLockStateForTest()
  })

  /** A child whose sessions live under its own root (its own "mount point"). */
  function child(root, extra = {}) {
    fs.mkdirSync(root, { recursive: true })
    const c = startChild({
      env: {
        SESSION_WRITE_LOCK_BACKEND: cluster.url(),
        SESSION_WRITE_LOCK_SESSIONS_ROOT: root,
        SESSION_WRITE_LOCK_KEYSPACE: 'test',
        ...extra,
      },
    })
    children.push(c)
    return c
  }

  it('excludes processes whose local lock files differ: the journal-style counter check', async () => {
    const counter = path.join(tmp, 'counter')
    const journal = path.join(tmp, 'journal')
    fs.writeFileSync(counter, '0')
    fs.writeFileSync(journal, '')
    const N = 25
    // Three "mounts" of the same sessions: three different lock files, one key.
    const kids = [0, 1, 2].map((i) => child(path.join(tmp, `mount${i}`)))
    await Promise.all(kids.map((k) => k.next((e) => e.ev === 'ready')))
    const done = kids.map((k, i) =>
      k.ask(
        { op: 'journal', sessionFile: path.join(tmp, `mount${i}`, 'agent', 's.jsonl'), counter, journal, n: N },
        ['journaled'],
        180_000,
      ),
    )
    await Promise.all(done)
    expect(fs.readFileSync(counter, 'utf8')).toBe(String(3 * N))
    const lines = fs.readFileSync(journal, 'utf8').trim().split('\n')
    expect(lines).toHaveLength(3 * N)
    let prev = 0n
    lines.forEach((l, i) => {
      const [token, , value] = l.split(' ')
      expect(Number(value)).toBe(i + 1) // no lost update
      expect(BigInt(token) > prev).toBe(true) // tokens strictly increase
      prev = BigInt(token)
    })
  }, 240_000)

  it('grants in FIFO order within a process while another process holds', async () => {
    const root = path.join(tmp, 'fifo')
    const a = child(path.join(root, 'a'))
    const b = child(path.join(root, 'b'))
    const fa = path.join(root, 'a', 's.jsonl')
    const fb = path.join(root, 'b', 's.jsonl')
    await a.ask({ op: 'acquire', id: 'h', sessionFile: fa }, ['acquired'])
    for (let i = 0; i < 5; i++) b.send({ op: 'acquire', id: `w${i}`, sessionFile: fb, timeoutMs: 120_000 })
    await a.ask({ op: 'release', id: 'h' }, ['released'])
    const order = []
    for (let i = 0; i < 5; i++) {
      const ev = await b.next((e) => e.ev === 'acquired' && !order.includes(e.id), 60_000, `grant ${i}`)
      order.push(ev.id)
      b.send({ op: 'release', id: ev.id })
    }
    expect(order).toEqual(['w0', 'w1', 'w2', 'w3', 'w4'])
  }, 120_000)

  it('a SIGKILLed holder frees the lock for a waiting process (no NOTIFY needed)', async () => {
    const root = path.join(tmp, 'kill')
    const a = child(path.join(root, 'a'))
    const b = child(path.join(root, 'b'))
    const got = await a.ask({ op: 'acquire', id: 'h', sessionFile: path.join(root, 'a', 's.jsonl') }, ['acquired'])
    b.send({ op: 'acquire', id: 'w', sessionFile: path.join(root, 'b', 's.jsonl'), timeoutMs: 120_000 })
    // B is queued in the server once it has its waiting connections.
    for (;;) {
      const s = await b.ask({ op: 'stats' }, ['stats'])
      if (s.connections >= 3) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const killedAt = Date.now()
    await a.kill('SIGKILL')
    const ev = await b.next((e) => e.ev === 'acquired' && e.id === 'w', 60_000, 'B acquires')
    const ms = ev.t - killedAt
    process.stderr.write(`[pg] SIGKILLed holder -> waiter acquired in ${ms} ms\n`)
    expect(BigInt(ev.token) > BigInt(got.token)).toBe(true)
    // Woken by the server's lock queue, well before the 10 s keepalive.
    expect(ms).toBeLessThan(5_000)
  }, 120_000)

  it('a server restart loses every lease (and says so); new acquires work after', async () => {
    const root = path.join(tmp, 'restart')
    const a = child(root)
    const tokens = []
    for (const id of ['x', 'y', 'z']) {
      const ev = await a.ask({ op: 'acquire', id, sessionFile: path.join(root, `${id}.jsonl`) }, ['acquired'])
      tokens.push(BigInt(ev.token))
    }
    // A process waiting for one of them when the server goes away.
    const w = child(path.join(tmp, 'restart-w'))
    w.send({ op: 'acquire', id: 'w', sessionFile: path.join(tmp, 'restart-w', 'x.jsonl'), timeoutMs: 120_000 })
    for (;;) {
      const s = await w.ask({ op: 'stats' }, ['stats'])
      if (s.connections >= 3) break
      await new Promise((r) => setTimeout(r, 50))
    }
    cluster.restart()
    // The waiter fails at once with a coded error (never a wait to its timeout).
    const failed = await w.next((e) => e.id === 'w' && (e.ev === 'error' || e.ev === 'acquired'), 30_000, 'waiter outcome')
    expect(failed.ev).toBe('error')
    expect(failed.code).toMatch(/^(SESSION_WRITE_LOCK_BACKEND_(LOST|UNAVAILABLE)|ECONNRESET|ECONNREFUSED)$/)
    for (const id of ['x', 'y', 'z']) {
      const lost = await a.next((e) => e.ev === 'lost' && e.id === id, 30_000, `lost ${id}`)
      expect(lost.why).toMatch(/database connection/)
      const cur = await a.ask({ op: 'assertCurrent', id }, ['current'])
      expect(cur.ok).toBe(false)
      expect(cur.code).toBe('OPENCLAW_SESSION_WRITE_LOCK_LOST')
    }
    const again = await a.ask({ op: 'acquire', id: 'x2', sessionFile: path.join(root, 'x.jsonl') }, ['acquired', 'error'])
    expect(again.ev).toBe('acquired')
    expect(BigInt(again.token) > tokens[2]).toBe(true)
    const cur = await a.ask({ op: 'assertCurrent', id: 'x2' }, ['current'])
    expect(cur.ok).toBe(true)
  }, 120_000)

  it('session-lock inspect lists the database holder and a queued waiter', async () => {
    const root = path.join(tmp, 'inspect')
    const a = child(path.join(root, 'a'))
    const b = child(path.join(root, 'b'))
    const held = await a.ask({ op: 'acquire', id: 'h', sessionFile: path.join(root, 'a', 's.jsonl') }, ['acquired'])
    b.send({ op: 'acquire', id: 'w', sessionFile: path.join(root, 'b', 's.jsonl'), timeoutMs: 120_000 })
    for (;;) {
      const s = await b.ask({ op: 'stats' }, ['stats'])
      if (s.connections >= 3) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const cli = path.join(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'session-lock.js')
    const env = { ...process.env, SESSION_WRITE_LOCK_BACKEND: cluster.url(), SESSION_WRITE_LOCK_SESSIONS_ROOT: path.join(root, 'a'), SESSION_WRITE_LOCK_KEYSPACE: 'test' }
    const r = spawnSync(process.execPath, [cli, 'inspect', path.join(root, 'a'), '--json'], { env, encoding: 'utf8' })
    const report = JSON.parse(r.stdout)
    const rows = report.database.rows.filter((x) => x.key === 'test/s.jsonl')
    expect(rows.find((x) => x.granted)).toMatchObject({ pid: a.proc.pid, fencingToken: held.token })
    expect(rows.some((x) => !x.granted)).toBe(true)
    expect(r.stdout).not.toContain(PG_PASSWORD)
    const text = spawnSync(process.execPath, [cli, 'inspect', path.join(root, 'a')], { env, encoding: 'utf8' }).stdout
    expect(text).toContain(`held    test/s.jsonl  pid ${a.proc.pid}@`)
    expect(text).toContain('waiting test/s.jsonl')
    expect(text).not.toContain(PG_PASSWORD)
  }, 120_000)

  it('1,000 sessions held by one process use one connection', async () => {
    const root = path.join(tmp, 'many')
    const a = child(root)
    const acquired = []
    for (let i = 0; i < 1000; i++) {
      a.send({ op: 'acquire', id: `s${i}`, sessionFile: path.join(root, `s${i}.jsonl`) })
    }
    await a.next((e) => e.ev === 'acquired' && e.id === 's999', 120_000, 'all acquired')
    for (const e of a.events) if (e.ev === 'acquired') acquired.push(e.id)
    expect(new Set(acquired).size).toBe(1000)
    const s = await a.ask({ op: 'stats' }, ['stats'])
    expect(s.holds).toBe(1000)
    expect(s.maxConnections).toBeLessThanOrEqual(3)
    expect(s.maxConnections).toBe(1)
  }, 180_000)

  describe('configuration and failures (this process)', () => {
    const sessionFile = () => path.join(tmp, 'inproc', 's.jsonl')

    it('configure, acquire, assertCurrent, release; the database token is the lease token', async () => {
      api.configureSessionWriteLock({
        backend: { kind: 'postgres', connectionString: cluster.url(), sessionsRoot: tmp, keyspace: 'inproc' },
      })
      const lease = await api.acquireSessionWriteLock({ sessionFile: sessionFile() })
      expect(lease.fencingToken).toMatch(/^\d+$/)
      expect(lease.databaseKey).toBe('inproc/inproc/s.jsonl')
      await lease.assertCurrent()
      const rows = (await api.inspectSessionWriteLockBackend()).rows.filter((r) => r.key === lease.databaseKey)
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ granted: true, pid: process.pid, fencingToken: lease.fencingToken })
      // Reentry shares the hold and the token.
      const inner = await api.acquireSessionWriteLock({ sessionFile: sessionFile(), allowReentrant: true })
      expect(inner.fencingToken).toBe(lease.fencingToken)
      await inner.release()
      await lease.assertCurrent()
      expect(await api.release(lease)).toBe(true)
      expect(() => lease.assertOwned()).toThrow(api.SessionWriteLockLostError)
      expect(lease.signal.aborted).toBe(true)
      const next = await api.acquireSessionWriteLock({ sessionFile: sessionFile() })
      expect(BigInt(next.fencingToken) > BigInt(lease.fencingToken)).toBe(true)
      // A released lease's late release never touches the next holder.
      await lease.release()
      await next.assertCurrent()
      await next.release()
    })

    it('timeout, abort, releaseAll and the watchdog behave as with files, and free the database lock', async () => {
      api.configureSessionWriteLock({
        backend: { kind: 'postgres', connectionString: cluster.url(), sessionsRoot: path.join(tmp, 'rules', 'me'), keyspace: 'rules' },
      })
      const mine = path.join(tmp, 'rules', 'me', 's.jsonl')
      const other = child(path.join(tmp, 'rules', 'other'), { SESSION_WRITE_LOCK_KEYSPACE: 'rules' })
      const theirs = path.join(tmp, 'rules', 'other', 's.jsonl')
      // Timeout: the database holder's pid in the old message format.
      await other.ask({ op: 'acquire', id: 'h', sessionFile: theirs }, ['acquired'])
      const err = await api.acquireSessionWriteLock({ sessionFile: mine, timeoutMs: 300 }).catch((e) => e)
      expect(api.isSessionWriteLockTimeoutError(err)).toBe(true)
      expect(err.message).toBe(`session file locked (timeout 300ms): pid=${other.proc.pid} ${err.lockPath}`)
      // Abort while waiting in the database: rejects with the reason, leaves nothing.
      const ac = new AbortController()
      const pending = api.acquireSessionWriteLock({ sessionFile: mine, timeoutMs: 60_000, signal: ac.signal })
      setTimeout(() => ac.abort(new Error('stop waiting')), 200)
      await expect(pending).rejects.toThrow('stop waiting')
      await other.ask({ op: 'release', id: 'h' }, ['released'])
      // releaseAll frees the database lock: the other process gets it at once.
      const l1 = await api.acquireSessionWriteLock({ sessionFile: mine, timeoutMs: 10_000 })
      expect(await api.releaseAll()).toBe(1)
      expect(l1.signal.aborted).toBe(true)
      const g1 = await other.ask({ op: 'acquire', id: 'g1', sessionFile: theirs, timeoutMs: 2_000 }, ['acquired', 'error'])
      expect(g1.ev).toBe('acquired')
      await other.ask({ op: 'release', id: 'g1' }, ['released'])
      // The watchdog's release frees it too.
      const l2 = await api.acquireSessionWriteLock({ sessionFile: mine, timeoutMs: 10_000, maxHoldMs: 60_000 })
      const n = await api.__testing.runLockWatchdogCheck(Date.now() + 120_000)
      expect(n).toBe(1)
      expect(() => l2.assertOwned()).toThrow(api.SessionWriteLockLostError)
      const g2 = await other.ask({ op: 'acquire', id: 'g2', sessionFile: theirs, timeoutMs: 2_000 }, ['acquired', 'error'])
      expect(g2.ev).toBe('acquired')
      expect(BigInt(g2.token) > BigInt(g1.token)).toBe(true)
    }, 120_000)

    it('configuring after a lock was taken throws', async () => {
      const l = await api.acquireSessionWriteLock({ sessionFile: sessionFile() })
      expect(() =>
        api.configureSessionWriteLock({ backend: { kind: 'postgres', connectionString: cluster.url() } }),
      ).toThrow(expect.objectContaining({ code: 'SESSION_WRITE_LOCK_CONFIGURED_TOO_LATE' }))
      await l.release()
    })

    it('a wrong password rejects at once with SESSION_WRITE_LOCK_BACKEND_AUTH, without the password', async () => {
      const bad = 'not-the-pw-7731'
      api.configureSessionWriteLock({
        backend: { kind: 'postgres', connectionString: cluster.url({ password: bad }), sessionsRoot: tmp },
      })
      const err = await api.acquireSessionWriteLock({ sessionFile: sessionFile(), timeoutMs: 60_000 }).catch((e) => e)
      expect(err.code).toBe('SESSION_WRITE_LOCK_BACKEND_AUTH')
      expect(err.message).not.toContain(bad)
      expect(err.message).not.toContain(PG_PASSWORD)
      expect(err.message).toContain(`swl@${cluster.host}:${cluster.port}`)
      // Nothing left behind: the local lock is free again.
      api.resetSessionWriteLockStateForTest()
      const l = await api.acquireSessionWriteLock({ sessionFile: sessionFile(), timeoutMs: 1000 })
      await l.release()
    })

    it('a refusing port rejects with ECONNREFUSED; never a fall back to files only', async () => {
      const port = await freePort()
      const url = `postgres://swl:${PG_PASSWORD}@127.0.0.1:${port}/postgres`
      api.configureSessionWriteLock({ backend: { kind: 'postgres', connectionString: url, sessionsRoot: tmp } })
      const err = await api.acquireSessionWriteLock({ sessionFile: sessionFile(), timeoutMs: 60_000 }).catch((e) => e)
      expect(err.code).toBe('ECONNREFUSED')
      expect(err.message).not.toContain(PG_PASSWORD)
    })

    it('bad configuration: coded errors that never print the password', () => {
      const cases = [
        { kind: 'postgres', connectionString: '' },
        { kind: 'postgres', connectionString: `postgres://swl:${PG_PASSWORD}@h:notaport/db` },
        { kind: 'postgres', connectionString: `postgres://swl:${PG_PASSWORD}@h/db`, poolSize: 0 },
        { kind: 'postgres', connectionString: `postgres://swl:${PG_PASSWORD}@h/db`, schema: 'Bad-Schema' },
        { kind: 'mysql', connectionString: `postgres://swl:${PG_PASSWORD}@h/db` },
      ]
      for (const backend of cases) {
        let err
        try {
          api.configureSessionWriteLock({ backend })
        } catch (e) {
          err = e
        }
        expect(err, JSON.stringify(backend.kind)).toBeDefined()
        expect(err.code).toBe('SESSION_WRITE_LOCK_BACKEND_CONFIG')
        expect(err.message).not.toContain(PG_PASSWORD)
      }
    })

    it('an invalid SESSION_WRITE_LOCK_BACKEND rejects every acquire (no silent local-only locking)', async () => {
      const c = startChild({ env: { SESSION_WRITE_LOCK_BACKEND: 'mysql://u:pw-4242@h/db' } })
      children.push(c)
      const ev = await c.ask({ op: 'acquire', id: 'e', sessionFile: sessionFile() }, ['acquired', 'error'])
      expect(ev.ev).toBe('error')
      expect(ev.code).toBe('SESSION_WRITE_LOCK_BACKEND_CONFIG')
      expect(ev.message).not.toContain('pw-4242')
    })
  })
})
