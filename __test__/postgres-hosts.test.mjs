// The PostgreSQL backend across hosts (docs/postgres.md): a throwaway cluster in
// its own network namespace, and processes in two other namespaces ("hosts" A
// and B) joined to it by veth pairs on a bridge. Each host mounts the sessions
// at its own root, so only the database excludes them. Needs the server
// binaries, root and `ip netns`: skips loudly without them, fails under CI.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { makeHosts, netnsAvailable, pgAvailable, startCluster } from './support/postgres.mjs'
import { startChild } from './support/pgchild.mjs'

const HAVE = pgAvailable('PostgreSQL multi-host tests') && netnsAvailable('PostgreSQL multi-host tests')

describe.skipIf(!HAVE)('PostgreSQL backend, two hosts in network namespaces', () => {
  let net
  let cluster
  let tmp
  const children = []
  beforeAll(async () => {
    net = makeHosts(['a', 'b'])
    cluster = await startCluster({ netns: net.db.ns, host: net.db.addr })
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pgh-'))
  })
  afterAll(() => {
    for (const c of children.splice(0)) c.proc.kill('SIGKILL')
    cluster?.stop()
    net?.teardown()
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
  })
  afterEach(() => {
    for (const c of children.splice(0)) c.proc.kill('SIGKILL')
  })

  /** A process on `host`, with the sessions mounted at <tmp>/<test>/<host>. */
  function onHost(host, test) {
    const root = path.join(tmp, test, host)
    fs.mkdirSync(path.join(root, 'agent'), { recursive: true })
    const c = startChild({
      net,
      host,
      env: {
        SESSION_WRITE_LOCK_BACKEND: cluster.url(),
        SESSION_WRITE_LOCK_SESSIONS_ROOT: root,
        SESSION_WRITE_LOCK_KEYSPACE: 'hosts',
      },
    })
    children.push(c)
    c.session = path.join(root, 'agent', 'session.jsonl')
    return c
  }

  async function queued(c) {
    for (;;) {
      const s = await c.ask({ op: 'stats' }, ['stats'])
      if (s.connections >= 3) return
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  it('a SIGKILLed holder on host A: the waiter on host B acquires at once', async () => {
    const a = onHost('a', 'kill')
    const b = onHost('b', 'kill')
    const ga = await a.ask({ op: 'acquire', id: 'h', sessionFile: a.session }, ['acquired'])
    b.send({ op: 'acquire', id: 'w', sessionFile: b.session, timeoutMs: 120_000 })
    await queued(b)
    expect(b.events.some((e) => e.ev === 'acquired')).toBe(false)
    const killedAt = Date.now()
    await a.kill('SIGKILL')
    const gb = await b.next((e) => e.ev === 'acquired' && e.id === 'w', 60_000, 'B acquires')
    const ms = gb.t - killedAt
    process.stderr.write(`[pg hosts] SIGKILL on host A -> host B acquired in ${ms} ms\n`)
    expect(BigInt(gb.token) > BigInt(ga.token)).toBe(true)
    // The server freed A's lock with its connection: no keepalive wait (10 s).
    expect(ms).toBeLessThan(5_000)
  }, 120_000)

  it('a partition: B acquires only after A was told; A\'s late release leaves B alone', async () => {
    const a = onHost('a', 'part')
    const b = onHost('b', 'part')
    const ga = await a.ask({ op: 'acquire', id: 'h', sessionFile: a.session }, ['acquired'])
    b.send({ op: 'acquire', id: 'w', sessionFile: b.session, timeoutMs: 120_000 })
    await queued(b)
    const cutAt = Date.now()
    net.linkDown('a')
    let gb
    let lostA
    try {
      lostA = await a.next((e) => e.ev === 'lost' && e.id === 'h', 60_000, "A's lease signal")
      gb = await b.next((e) => e.ev === 'acquired' && e.id === 'w', 90_000, 'B acquires')
    } finally {
      net.linkUp('a')
    }
    process.stderr.write(
      `[pg hosts] partition: A's signal aborted after ${lostA.t - cutAt} ms, B acquired after ${gb.t - cutAt} ms\n`,
    )
    expect(lostA.why).toMatch(/database connection/)
    expect(gb.t).toBeGreaterThan(lostA.t)
    expect(BigInt(gb.token) > BigInt(ga.token)).toBe(true)
    // A, back on the network, releases its lost lease and checks it: B is undisturbed.
    await a.ask({ op: 'release', id: 'h' }, ['released'])
    const curA = await a.ask({ op: 'assertCurrent', id: 'h' }, ['current'])
    expect(curA.ok).toBe(false)
    const curB = await b.ask({ op: 'assertCurrent', id: 'w' }, ['current'])
    expect(curB.ok).toBe(true)
    // A's next acquire waits for B (B still holds), then gets a larger token.
    a.send({ op: 'acquire', id: 'h2', sessionFile: a.session, timeoutMs: 120_000 })
    await new Promise((r) => setTimeout(r, 300))
    expect(a.events.some((e) => e.ev === 'acquired' && e.id === 'h2')).toBe(false)
    await b.ask({ op: 'release', id: 'w' }, ['released'])
    const ga2 = await a.next((e) => e.ev === 'acquired' && e.id === 'h2', 60_000, 'A acquires again')
    expect(BigInt(ga2.token) > BigInt(gb.token)).toBe(true)
  }, 240_000)

  it('a host cut off before it connects gets a coded error at once, not a wait', async () => {
    const a = onHost('a', 'unreach')
    await a.next((e) => e.ev === 'ready')
    net.linkDown('a')
    let ev
    try {
      ev = await a.ask({ op: 'acquire', id: 'u', sessionFile: a.session, timeoutMs: 120_000 }, ['acquired', 'error'], 60_000)
    } finally {
      net.linkUp('a')
    }
    expect(ev.ev).toBe('error')
    expect(ev.code).toMatch(/^(ENETUNREACH|EHOSTUNREACH|ETIMEDOUT)$/)
    expect(ev.message).not.toContain('swl-secret')
  }, 120_000)

  it('two hosts, one counter: the journal check across hosts', async () => {
    const counter = path.join(tmp, 'counter.txt')
    const journal = path.join(tmp, 'journal.txt')
    fs.writeFileSync(counter, '0')
    fs.writeFileSync(journal, '')
    const N = 20
    const hosts = [onHost('a', 'journal'), onHost('b', 'journal')]
    await Promise.all(hosts.map((h) => h.next((e) => e.ev === 'ready')))
    await Promise.all(
      hosts.map((h) => h.ask({ op: 'journal', sessionFile: h.session, counter, journal, n: N }, ['journaled'], 180_000)),
    )
    expect(fs.readFileSync(counter, 'utf8')).toBe(String(2 * N))
    const lines = fs.readFileSync(journal, 'utf8').trim().split('\n')
    let prev = 0n
    lines.forEach((l, i) => {
      const [token, , value] = l.split(' ')
      expect(Number(value)).toBe(i + 1)
      expect(BigInt(token) > prev).toBe(true)
      prev = BigInt(token)
    })
  }, 240_000)
})
