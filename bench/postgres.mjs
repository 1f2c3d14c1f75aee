#!/usr/bin/env node
// The PostgreSQL backend's bench rows (docs/postgres.md, targets on loopback):
//   uncontended acquire + release (this process, warm; and the first acquire,
//     which connects), hand-off between processes, SIGKILLed holder to waiter
//     acquiring, 1,000 sessions held by one process, connections used.
// A throwaway cluster on loopback (__test__/support/postgres.mjs); the two
// processes of the hand-off and SIGKILL rows mount the sessions at different
// roots, so only the database hands the lock over. Cross-process instants
// use performance.timeOrigin + performance.now() in each process.
//   node bench/postgres.mjs [--quick]     (npm run bench runs it last)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pgAvailable, startCluster } from '../__test__/support/postgres.mjs'
import { startChild } from '../__test__/support/pgchild.mjs'

const require = createRequire(import.meta.url)
const QUICK = process.argv.includes('--quick')
const now = () => performance.timeOrigin + performance.now()
const log = (m) => process.stderr.write(`[bench pg] ${m}\n`)

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]
  return { n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1] }
}
const fmt = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`)

async function main() {
  if (!pgAvailable('the PostgreSQL bench rows')) return
  const cluster = await startCluster()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pgb-'))
  const kids = []
  const rows = []
  try {
    const env = (root) => ({
      SESSION_WRITE_LOCK_BACKEND: cluster.url(),
      SESSION_WRITE_LOCK_SESSIONS_ROOT: root,
      SESSION_WRITE_LOCK_KEYSPACE: 'bench',
    })
    const child = (root) => {
      fs.mkdirSync(root, { recursive: true })
      const c = startChild({ env: env(root) })
      kids.push(c)
      return c
    }

    // Uncontended, in this process.
    const api = require('../index.js')
    api.configureSessionWriteLock({
      backend: { kind: 'postgres', connectionString: cluster.url(), sessionsRoot: tmp, keyspace: 'bench' },
    })
    const file = path.join(tmp, 'self', 's.jsonl')
    let t = now()
    let l = await api.acquireSessionWriteLock({ sessionFile: file })
    const first = now() - t
    await l.release()
    const warm = []
    const N = QUICK ? 200 : 1000
    for (let i = 0; i < N; i++) {
      t = now()
      l = await api.acquireSessionWriteLock({ sessionFile: file })
      await l.release()
      warm.push(now() - t)
    }
    const idle = []
    for (let i = 0; i < (QUICK ? 10 : 30); i++) {
      await new Promise((r) => setTimeout(r, 50))
      t = now()
      l = await api.acquireSessionWriteLock({ sessionFile: file })
      await l.release()
      idle.push(now() - t)
    }
    const u = stats(warm)
    const ui = stats(idle)
    rows.push(['uncontended acquire + release, warm', u, '<= 1 ms p50', u.p50 <= 1])
    rows.push(['uncontended acquire + release, after 50 ms idle', ui, '<= 1 ms p50', ui.p50 <= 1])
    rows.push(['first acquire of a process (connect, schema check)', stats([first]), '-', null])

    // Hand-off between two processes with different mounts.
    const a = child(path.join(tmp, 'ha'))
    const b = child(path.join(tmp, 'hb'))
    const fa = path.join(tmp, 'ha', 's.jsonl')
    const fb = path.join(tmp, 'hb', 's.jsonl')
    let holder = { c: a, f: fa }
    let waiter = { c: b, f: fb }
    let id = 0
    let cur = `h${id}`
    await holder.c.ask({ op: 'acquire', id: cur, sessionFile: holder.f }, ['acquired'])
    const hand = []
    const R = QUICK ? 20 : 60
    for (let i = 0; i < R; i++) {
      const next = `h${++id}`
      waiter.c.send({ op: 'acquire', id: next, sessionFile: waiter.f, timeoutMs: 60_000 })
      await new Promise((r) => setTimeout(r, 60)) // the waiter is waiting (and idle) when the holder lets go
      const rel = await holder.c.ask({ op: 'release', id: cur }, ['released'])
      const got = await waiter.c.next((e) => e.ev === 'acquired' && e.id === next, 60_000, 'hand-off')
      hand.push(got.hr - rel.hr0)
      cur = next
      ;[holder, waiter] = [waiter, holder]
    }
    await holder.c.ask({ op: 'release', id: cur }, ['released'])
    const h = stats(hand)
    rows.push(['hand-off between processes (holder releases, waiter resolves)', h, '<= 5 ms p50', h.p50 <= 5])
    const bs = await b.ask({ op: 'stats' }, ['stats'])
    rows.push([`connections of a process that held and waited`, { n: 1, p50: bs.maxConnections, p99: bs.maxConnections, max: bs.maxConnections, raw: true }, '<= 1 + poolSize (3)', bs.maxConnections <= 3])

    // SIGKILLed holder to waiter acquiring.
    const kill = []
    const K = QUICK ? 5 : 15
    const w = child(path.join(tmp, 'kw'))
    for (let i = 0; i < K; i++) {
      const hk = child(path.join(tmp, `kh${i}`))
      await hk.ask({ op: 'acquire', id: 'k', sessionFile: path.join(tmp, `kh${i}`, 's.jsonl') }, ['acquired'])
      w.send({ op: 'acquire', id: `k${i}`, sessionFile: path.join(tmp, 'kw', 's.jsonl'), timeoutMs: 60_000 })
      for (;;) {
        const s = await w.ask({ op: 'stats' }, ['stats'])
        if (s.connections >= 3) break
        await new Promise((r) => setTimeout(r, 20))
      }
      await new Promise((r) => setTimeout(r, 60))
      const t0 = now()
      hk.proc.kill('SIGKILL')
      const got = await w.next((e) => e.ev === 'acquired' && e.id === `k${i}`, 60_000, 'after SIGKILL')
      kill.push(got.hr - t0)
      await w.ask({ op: 'release', id: `k${i}` }, ['released'])
    }
    const k = stats(kill)
    rows.push(['SIGKILLed holder to waiter acquiring', k, '<= 50 ms p50', k.p50 <= 50])

    // 1,000 sessions held by one process.
    const m = child(path.join(tmp, 'many'))
    await m.next((e) => e.ev === 'ready')
    const from = m.events.length
    const t1 = now()
    for (let i = 0; i < 1000; i++) m.send({ op: 'acquire', id: `m${i}`, sessionFile: path.join(tmp, 'many', `s${i}.jsonl`) })
    await m.next((e) => e.ev === 'acquired' && e.id === 'm999', 120_000, '1,000 acquired')
    const all = m.events.slice(from).filter((e) => e.ev === 'acquired')
    const took = Math.max(...all.map((e) => e.hr)) - t1
    const ms = await m.ask({ op: 'stats' }, ['stats'])
    rows.push(['1,000 sessions acquired at once by one process (total)', stats([took]), '-', null])
    rows.push(['connections for 1,000 held sessions', { n: 1, p50: ms.maxConnections, p99: ms.maxConnections, max: ms.maxConnections, raw: true }, '<= 3', ms.maxConnections <= 3])
  } finally {
    for (const c of kids) c.proc.kill('SIGKILL')
    cluster.stop()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  console.log('\nPostgreSQL backend (loopback, throwaway cluster; docs/postgres.md):')
  console.log('| scenario | n | p50 | p99 | target | verdict |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const [name, s, target, ok] of rows) {
    const v = (x) => (s.raw ? String(x) : fmt(x))
    console.log(`| ${name} | ${s.n} | ${v(s.p50)} | ${v(s.p99)} | ${target} | ${ok === null ? '-' : ok ? 'PASS' : 'MISS'} |`)
  }
}

main()
  .catch((err) => {
    process.stderr.write(`bench pg failed: ${(err && err.stack) || err}\n`)
    process.exitCode = 1
  })
  .finally(() => setImmediate(() => process.exit()))
