#!/usr/bin/env node
// The PostgreSQL backend's bench rows (docs/postgres.md, targets on loopback):
//   uncontended acquire + release (warm; after 50 ms idle; the first acquire of
//     a process, which connects), session files on tmpfs and on disk, against
//     the test settings (fsync off) and a durable server (fsync and
//     synchronous_commit on, PostgreSQL's defaults); hand-off between
//     processes, SIGKILLed holder to waiter acquiring, 1,000 sessions held by
//     one process, connections used.
// With a baseline build (npm run bench -- --baseline <dir>, passed on as
// SWL_BENCH_BASELINE) every row but the 1,000 sessions runs for both builds in
// the same run, alternating fresh processes, each build in its own schema.
// A throwaway cluster on loopback (__test__/support/postgres.mjs); the two
// processes of the hand-off and SIGKILL rows mount the sessions at different
// roots, so only the database hands the lock over. Cross-process instants
// use performance.timeOrigin + performance.now() in each process.
//   node bench/postgres.mjs [--quick]     (npm run bench runs it last; --only p alone)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const here = path.dirname(fileURLToPath(import.meta.url))
const now = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ------------------------------------------------ child: uncontended rounds
// node bench/postgres.mjs --uncontended '<json>': one fresh process of one
// build; prints one JSON line of samples (ms).
if (process.argv[2] === '--uncontended') {
  const o = JSON.parse(process.argv[3])
  const api = createRequire(import.meta.url)(o.pkg)
  api.configureSessionWriteLock({
    backend: { kind: 'postgres', connectionString: o.url, sessionsRoot: o.root, keyspace: 'bench', schema: o.schema },
  })
  const out = { first: 0 }
  const file = (d) => path.join(d, 'self', 's.jsonl')
  let t = now()
  let l = await api.acquireSessionWriteLock({ sessionFile: file(o.dirs[0]) })
  out.first = now() - t
  await l.release()
  for (const d of o.dirs) {
    const warm = []
    for (let i = 0; i < o.warm; i++) {
      t = now()
      l = await api.acquireSessionWriteLock({ sessionFile: file(d) })
      await l.release()
      warm.push(now() - t)
    }
    const idle = []
    for (let i = 0; i < o.idle; i++) {
      await sleep(50)
      t = now()
      l = await api.acquireSessionWriteLock({ sessionFile: file(d) })
      await l.release()
      idle.push(now() - t)
    }
    out[d] = { warm, idle }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
  process.exit(0)
}

const { pgAvailable, startCluster } = await import('../__test__/support/postgres.mjs')
const { startChild } = await import('../__test__/support/pgchild.mjs')
const QUICK = process.argv.includes('--quick')
const log = (m) => process.stderr.write(`[bench pg] ${m}\n`)
const BASE = process.env.SWL_BENCH_BASELINE || null
const BUILDS = [['ours', path.join(here, '..', 'index.js'), 'swl_bench_ours']]
if (BASE) BUILDS.push(['base', path.join(path.resolve(BASE), 'index.js'), 'swl_bench_base'])

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]
  return { n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1] }
}
const fmt = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`)

function runChild(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let buf = ''
    p.stdout.setEncoding('utf8')
    p.stdout.on('data', (d) => (buf += d))
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(buf.trim().split('\n').pop())) : reject(new Error(`uncontended child exited ${code}`))))
  })
}

async function main() {
  if (!pgAvailable('the PostgreSQL bench rows')) return
  const cluster = await startCluster()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pgb-'))
  const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/swl-pgb-') : null
  const kids = []
  // rows: [scenario, { build: stats }, target, ok(stats) | null]
  const rows = []
  const perBuild = async (rounds, fn) => {
    const acc = Object.fromEntries(BUILDS.map(([b]) => [b, []]))
    for (let r = 0; r < rounds; r++) {
      // Alternate which build goes first.
      const order = r % 2 === 0 ? BUILDS : [...BUILDS].reverse()
      for (const b of order) acc[b[0]].push(...(await fn(b)))
    }
    return Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, stats(v)]))
  }
  try {
    // ---------------- uncontended, fresh processes, alternating builds
    const dirs = [...(shm ? [['tmpfs', shm]] : []), ['disk', tmp]]
    const R = QUICK ? 4 : 8
    for (const [mode, label] of [
      ['test', 'test settings: fsync off'],
      ['durable', 'durable server: fsync, synchronous_commit on'],
    ]) {
      if (mode === 'durable') {
        for (const s of ['fsync = on', 'synchronous_commit = on', 'full_page_writes = on']) cluster.psql(`ALTER SYSTEM SET ${s}`)
        cluster.psql('SELECT pg_reload_conf()')
      }
      const useDirs = mode === 'durable' ? dirs.slice(0, 1) : dirs
      const samples = Object.fromEntries(BUILDS.map(([b]) => [b, []]))
      for (let r = 0; r < R; r++) {
        const order = r % 2 === 0 ? BUILDS : [...BUILDS].reverse()
        for (const [b, pkg, schema] of order) {
          const o = {
            pkg,
            schema,
            url: cluster.url(),
            root: path.dirname(useDirs[0][1]),
            dirs: useDirs.map(([, d]) => path.join(d, b)),
            warm: QUICK ? 100 : 300,
            idle: QUICK ? 8 : 20,
          }
          samples[b].push({ o, res: await runChild(['--uncontended', JSON.stringify(o)]) })
        }
      }
      for (const [fsName, d] of useDirs) {
        for (const kind of ['warm', 'idle']) {
          const per = {}
          for (const [b] of BUILDS) {
            per[b] = stats(samples[b].flatMap(({ res }) => res[path.join(d, b)][kind]))
          }
          const what = kind === 'warm' ? 'warm' : 'after 50 ms idle'
          rows.push([`uncontended acquire + release, ${what}, ${fsName} (${label})`, per, '<= 1 ms p50', (s) => s.p50 <= 1])
        }
      }
      if (mode === 'test') {
        const per = {}
        for (const [b] of BUILDS) per[b] = stats(samples[b].map(({ res }) => res.first))
        rows.push(['first acquire of a process (connect, schema check, prepare)', per, '-', null])
      }
    }
    for (const s of ['fsync', 'synchronous_commit', 'full_page_writes']) cluster.psql(`ALTER SYSTEM RESET ${s}`)
    cluster.psql('SELECT pg_reload_conf()')

    // ---------------- children of one build
    const child = (b, root) => {
      fs.mkdirSync(root, { recursive: true })
      const [, pkg, schema] = BUILDS.find(([n]) => n === b)
      const c = startChild({
        env: {
          SESSION_WRITE_LOCK_BACKEND: cluster.url(),
          SESSION_WRITE_LOCK_SESSIONS_ROOT: root,
          SESSION_WRITE_LOCK_KEYSPACE: 'bench',
          SESSION_WRITE_LOCK_SCHEMA: schema,
          SWL_PG_CHILD_PACKAGE: pkg,
        },
      })
      kids.push(c)
      return c
    }

    // Hand-off between two processes with different mounts.
    const maxConn = {}
    let hid = 0
    const hand = await perBuild(2, async ([b]) => {
      const ra = path.join(tmp, `ha-${b}-${hid}`)
      const rb = path.join(tmp, `hb-${b}-${hid++}`)
      const a = child(b, ra)
      const c = child(b, rb)
      let holder = { c: a, f: path.join(ra, 's.jsonl') }
      let waiter = { c, f: path.join(rb, 's.jsonl') }
      let id = 0
      let cur = `h${id}`
      await holder.c.ask({ op: 'acquire', id: cur, sessionFile: holder.f }, ['acquired'])
      const out = []
      const n = QUICK ? 10 : 30
      for (let i = 0; i < n; i++) {
        const next = `h${++id}`
        waiter.c.send({ op: 'acquire', id: next, sessionFile: waiter.f, timeoutMs: 60_000 })
        await sleep(60) // the waiter is waiting (and idle) when the holder lets go
        const rel = await holder.c.ask({ op: 'release', id: cur }, ['released'])
        const got = await waiter.c.next((e) => e.ev === 'acquired' && e.id === next, 60_000, 'hand-off')
        out.push(got.hr - rel.hr0)
        cur = next
        ;[holder, waiter] = [waiter, holder]
      }
      await holder.c.ask({ op: 'release', id: cur }, ['released'])
      const bs = await c.ask({ op: 'stats' }, ['stats'])
      maxConn[b] = Math.max(maxConn[b] ?? 0, bs.maxConnections)
      for (const k of [a, c]) k.proc.kill('SIGKILL')
      return out
    })
    rows.push(['hand-off between processes (holder releases, waiter resolves)', hand, '<= 5 ms p50', (s) => s.p50 <= 5])
    const raw = (v) => ({ n: 1, p50: v, p99: v, max: v, raw: true })
    rows.push([
      'connections of a process that held and waited',
      Object.fromEntries(Object.entries(maxConn).map(([b, v]) => [b, raw(v)])),
      '<= 1 + poolSize (3)',
      (s) => s.p50 <= 3,
    ])

    // SIGKILLed holder to waiter acquiring.
    let kid = 0
    const kill = await perBuild(2, async ([b]) => {
      const out = []
      const wroot = path.join(tmp, `kw-${b}-${kid++}`)
      const w = child(b, wroot)
      for (let i = 0; i < (QUICK ? 3 : 8); i++) {
        const hroot = path.join(tmp, `kh-${b}-${kid++}`)
        const hk = child(b, hroot)
        await hk.ask({ op: 'acquire', id: 'k', sessionFile: path.join(hroot, 's.jsonl') }, ['acquired'])
        w.send({ op: 'acquire', id: `k${i}`, sessionFile: path.join(wroot, 's.jsonl'), timeoutMs: 60_000 })
        for (;;) {
          const s = await w.ask({ op: 'stats' }, ['stats'])
          if (s.connections >= 3) break
          await sleep(20)
        }
        await sleep(60)
        const t0 = now()
        hk.proc.kill('SIGKILL')
        const got = await w.next((e) => e.ev === 'acquired' && e.id === `k${i}`, 60_000, 'after SIGKILL')
        out.push(got.hr - t0)
        await w.ask({ op: 'release', id: `k${i}` }, ['released'])
      }
      w.proc.kill('SIGKILL')
      return out
    })
    rows.push(['SIGKILLed holder to waiter acquiring', kill, '<= 50 ms p50', (s) => s.p50 <= 50])

    // 1,000 sessions held by one process (this build only).
    const m = child('ours', path.join(tmp, 'many'))
    await m.next((e) => e.ev === 'ready')
    const from = m.events.length
    const t1 = now()
    for (let i = 0; i < 1000; i++) m.send({ op: 'acquire', id: `m${i}`, sessionFile: path.join(tmp, 'many', `s${i}.jsonl`) })
    await m.next((e) => e.ev === 'acquired' && e.id === 'm999', 120_000, '1,000 acquired')
    const all = m.events.slice(from).filter((e) => e.ev === 'acquired')
    const took = Math.max(...all.map((e) => e.hr)) - t1
    const ms = await m.ask({ op: 'stats' }, ['stats'])
    rows.push(['1,000 sessions acquired at once by one process (total)', { ours: stats([took]) }, '-', null])
    rows.push(['connections for 1,000 held sessions', { ours: raw(ms.maxConnections) }, '<= 3', (s) => s.p50 <= 3])
  } finally {
    for (const c of kids) c.proc.kill('SIGKILL')
    cluster.stop()
    fs.rmSync(tmp, { recursive: true, force: true })
    if (shm) fs.rmSync(shm, { recursive: true, force: true })
  }
  console.log('\nPostgreSQL backend (loopback, throwaway cluster; docs/postgres.md):')
  const names = BUILDS.map(([b]) => b)
  const head = names.flatMap((b) => [`${b} p50`, `${b} p99`])
  console.log(`| scenario | n | ${head.join(' | ')} |${BASE ? ' ours/base p50 |' : ''} target | verdict (ours) |`)
  console.log(`|${' --- |'.repeat(4 + head.length + (BASE ? 1 : 0))}`)
  for (const [name, per, target, ok] of rows) {
    const o = per.ours
    const v = (s, x) => (s === undefined ? '-' : s.raw ? String(x) : fmt(x))
    const cells = names.flatMap((b) => [v(per[b], per[b]?.p50), v(per[b], per[b]?.p99)])
    const ratio = BASE ? (per.base && !o.raw ? ` ${(o.p50 / per.base.p50).toFixed(2)}x |` : ' - |') : ''
    console.log(`| ${name} | ${o.n} | ${cells.join(' | ')} |${ratio} ${target} | ${ok === null ? '-' : ok(o) ? 'PASS' : 'MISS'} |`)
  }
}

main()
  .catch((err) => {
    process.stderr.write(`bench pg failed: ${(err && err.stack) || err}\n`)
    process.exitCode = 1
  })
  .finally(() => setImmediate(() => process.exit()))
