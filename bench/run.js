#!/usr/bin/env node
'use strict'
// `npm run bench [-- --quick] [-- --json <file>] [-- --only a,c] [-- --baseline <dir>]`
//
// Measures this package ("ours") side by side with proper-lockfile ("proper"), a
// reference of the old TypeScript module's algorithm ("legacy", the test fixture),
// optionally another build of this package ("base", --baseline <dir>: a directory with
// index.js and its built .node, for before/after figures in one run), and the floors:
// bare native programs (bench/bare, std-only Rust, built here with cargo) doing
//   floor (1): the package's own system calls for one uncontended acquire + release,
//              read off `strace -f` of an acquire + release in this run, replayed;
//   floor (2): a bare waiter blocked in flock on a Node holder (this package) that
//              releases, or that is SIGKILLed.
// Every scenario is measured warm (long-lived processes, back-to-back calls, warm-up
// rounds as a steady-state gateway would have) and cold (a fresh process, no warm-up,
// each call after >= 50 ms idle where the scenario allows): a gateway takes one lock
// per agent turn after seconds of idle, so cold is what users feel.
// Prints medians, p99, ratios and the performance targets with PASS/MISS. Scenarios:
//   (a) uncontended acquire + release, tmpfs and disk   (e) 50 in-process waiters x 20 rounds
//   (b) reentrant acquire                                (f) 1,000 sessions locked at once
//   (c) cross-process hand-off latency                   (g) waiter CPU use while waiting
//   (d) SIGKILLed holder to waiter acquiring             (h) require() time and addon size
//   (p) the PostgreSQL backend (bench/postgres.mjs, loopback), printed last
// Children always die with the bench (they exit when their stdin closes, and are
// SIGKILLed on exit); every file lives in temporary directories removed at the end.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync, execFileSync } = require('node:child_process')
const readline = require('node:readline')

// ---------------------------------------------------------------- options

const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const argOf = (name) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] || '' : null
}
const JSON_OUT = argOf('--json')
const onlyArg = argOf('--only')
const ONLY = onlyArg ? new Set(onlyArg.split(',')) : null
const baselineArg = argOf('--baseline')
if (argv.includes('--help') || JSON_OUT === '' || onlyArg === '' || baselineArg === '') {
  console.log('usage: node bench/run.js [--quick] [--json <file>] [--only a,b,c,...] [--baseline <dir>]')
  process.exit(argv.includes('--help') ? 0 : 2)
}
if (baselineArg) {
  const dir = path.resolve(baselineArg)
  if (!fs.existsSync(path.join(dir, 'index.js'))) {
    console.error(`bench: --baseline ${dir} has no index.js`)
    process.exit(2)
  }
  process.env.SWL_BENCH_BASELINE = dir // read by impls.js, here and in every child
}
// index.js is generated from lib/ and loader.js (scripts/bundle.js): bench the sources as they are.
require('../scripts/bundle').write()
const { IMPLS, LEGACY_PATH, PROPER_RETRIES, ROOT, BASELINE } = require('./impls')
const { fifoRun } = require('./fifo')

// Sizes: a full run takes several minutes, --quick about two.
// cold: {procs, n}: `procs` fresh processes per implementation, `n` calls each, 50 ms apart.
const CFG = QUICK
  ? {
      a: { batches: 4, batch: 200, otherBatch: 50, cold: { procs: 3, n: 8 } },
      b: { n: 2000, cold: { procs: 2, n: 8 } },
      c: { ours: 40, base: 40, proper: 12, legacy: 10, cold: { ours: 16, base: 16, proper: 6, legacy: 4 } },
      d: { ours: 8, base: 8, proper: 2, legacy: 3, bare: 8, cold: { ours: 5, base: 5, proper: 1, legacy: 2, bare: 5 } },
      e: { waiters: 50, rounds: 20, otherWaiters: 10, otherRounds: 20, oursReps: 3, coldProcs: 3, otherColdProcs: 1 },
      f: { n: 1000, reps: 1, coldReps: 2 },
      g: { seconds: 2 },
      h: { reps: 9 },
      idleMs: 50,
    }
  : {
      a: { batches: 20, batch: 500, otherBatch: 100, cold: { procs: 8, n: 20 } },
      b: { n: 20000, cold: { procs: 4, n: 20 } },
      c: { ours: 400, base: 400, proper: 80, legacy: 60, cold: { ours: 100, base: 100, proper: 20, legacy: 12 } },
      d: { ours: 40, base: 40, proper: 5, legacy: 12, bare: 40, cold: { ours: 20, base: 20, proper: 3, legacy: 6, bare: 20 } },
      e: { waiters: 50, rounds: 20, otherWaiters: 50, otherRounds: 20, oursReps: 5, coldProcs: 7, otherColdProcs: 1 },
      f: { n: 1000, reps: 3, coldReps: 5 },
      g: { seconds: 10 },
      h: { reps: 31 },
      idleMs: 50,
    }

const HAVE_LEGACY = fs.existsSync(LEGACY_PATH)
const IMPL_NAMES = ['ours', ...(BASELINE ? ['base'] : []), 'proper', ...(HAVE_LEGACY ? ['legacy'] : [])]
const OURS_LIKE = new Set(['ours', 'base']) // builds of this package (reentry, ...)

// ---------------------------------------------------------------- cleanup

const children = new Set()
const tmpDirs = []

function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL')
    } catch {}
  }
  children.clear()
  for (const d of tmpDirs.splice(0)) {
    try {
      fs.rmSync(d, { recursive: true, force: true })
    } catch {}
  }
}
process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })
}

function tmpDir(base, tag) {
  const d = fs.mkdtempSync(path.join(base, `swl-bench-${tag}-`))
  tmpDirs.push(d)
  return d
}

const SHM = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
const DISK = os.tmpdir()

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => performance.timeOrigin + performance.now()
const rand = (lo, hi) => lo + Math.random() * (hi - lo)

function pct(sorted, p) {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/** Samples in microseconds -> summary. */
function stats(samplesUs) {
  const s = samplesUs.slice().sort((x, y) => x - y)
  return {
    n: s.length,
    p50: pct(s, 50),
    p99: pct(s, 99),
    min: s[0],
    max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  }
}

function median(xs) {
  return pct(xs.slice().sort((a, b) => a - b), 50)
}

/** Evenly spread `count` participations over `total` cycles. */
function takesPart(cycle, count, total) {
  return Math.floor(((cycle + 1) * count) / total) !== Math.floor((cycle * count) / total)
}

// ---------------------------------------------------------------- bare (Rust)

const BARE_NODE = 'bare, node holder'
const BARE_BIN = path.join(ROOT, 'target', 'bare', 'release', 'bare-flock')
let haveBare = false

function buildBare() {
  const r = spawnSync(
    'cargo',
    ['build', '--release', '--quiet', '--manifest-path', path.join(__dirname, 'bare', 'Cargo.toml'),
      '--target-dir', path.join(ROOT, 'target', 'bare')],
    { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' },
  )
  haveBare = r.status === 0 && fs.existsSync(BARE_BIN)
  if (!haveBare) {
    const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').pop()
    process.stderr.write(`bench: bare OS-call figures skipped (could not build bench/bare: ${why})\n`)
  }
}

/** Runs a bare mode; returns samples in µs (or the raw JSON for `many`). */
function bare(mode, ...args) {
  const r = spawnSync(BARE_BIN, [mode, ...args.map(String)], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`bare ${mode} failed: ${r.stderr || r.error}`)
  const out = JSON.parse(r.stdout)
  return out.samples_ns ? out.samples_ns.map((ns) => ns / 1000) : out
}

// ---------------------------------------------------------------- children

class Child {
  constructor(extraArgs = []) {
    this.proc = spawn(process.execPath, [...extraArgs, path.join(__dirname, 'child.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    children.add(this.proc)
    this.pid = this.proc.pid
    this.nextId = 1
    this.waiting = new Map()
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', () => {
        children.delete(this.proc)
        for (const w of this.waiting.values()) w.reject(new Error(`child ${this.pid} exited`))
        this.waiting.clear()
        resolve()
      })
    })
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve
      this.proc.on('error', reject)
    })
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let msg
      try {
        msg = JSON.parse(line)
      } catch {
        return
      }
      if (msg.ready) return this.readyResolve()
      const w = this.waiting.get(msg.id)
      if (!w) return
      this.waiting.delete(msg.id)
      if (msg.ok) w.resolve(msg)
      else w.reject(new Error(`child ${this.pid}: ${msg.error}`))
    })
  }

  call(msg) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.proc.stdin.write(`${JSON.stringify({ id, ...msg })}\n`)
    })
  }

  kill() {
    this.proc.kill('SIGKILL')
    return this.exited
  }

  async close() {
    this.proc.stdin.end()
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000)
    await this.exited
    clearTimeout(t)
  }
}

async function startChild(extraArgs) {
  const c = new Child(extraArgs)
  await c.ready
  return c
}

// ---------------------------------------------------------------- results

const results = {} // scenario -> impl -> data
function record(scenario, impl, data) {
  ;(results[scenario] ??= {})[impl] = data
}

function log(msg) {
  process.stderr.write(`bench: ${msg}\n`)
}

// ---------------------------------------------------------------- cold helpers

/** Cold calls: `procs` fresh children, each making `n` acquire + release, idleMs apart. */
async function coldLoop(impl, dir, procs, n, reentrant = false) {
  const all = []
  const first = []
  for (let p = 0; p < procs; p++) {
    const c = await startChild()
    await c.call({ op: 'load', impl })
    const file = path.join(dir, `cold-${impl}-${p}.jsonl`)
    const r = await c.call({ op: 'loop', impl, file, n, idleMs: CFG.idleMs, reentrant })
    await c.close()
    all.push(...r.samples)
    first.push(r.samples[0])
  }
  return { all, first }
}

// ---------------------------------------------------------------- floor (1): our system calls, replayed

// The sequence when strace is missing (read off strace -f on Linux, tmpfs, at the time of writing).
const FALLBACK_SEQUENCE = 'statx_dir,open_tmpfile,flock_ex_nb,pwrite:239,statx_fd,linkat_fd,statx_path,unlink,close'
let floorSequence = { ops: FALLBACK_SEQUENCE, source: 'built-in (strace unavailable)', unreplayed: [] }

/**
 * Run one steady-state acquire + release of this package under `strace -f` and turn
 * its system calls into the bare replayer's tokens.
 */
function traceSequence(dir) {
  const out = path.join(dir, 'strace.out')
  const file = path.join(dir, 'trace.jsonl')
  const code =
    `const fs=require('fs');const m=require(${JSON.stringify(path.join(ROOT, 'index.js'))});` +
    `(async()=>{for(let i=0;i<5;i++){const l=await m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}});await l.release()}` +
    `fs.writeSync(2,'SWL-MARK-BEGIN\\n');const l=await m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}});` +
    `await l.release();fs.writeSync(2,'SWL-MARK-END\\n')})()`
  const r = spawnSync('strace', ['-f', '-qq', '-o', out, '-e', 'trace=!futex,mmap,munmap,mprotect,madvise,brk,epoll_wait,epoll_pwait,epoll_ctl,getpid,gettid,clock_gettime', process.execPath, '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  if (r.status !== 0 || !fs.existsSync(out)) return null
  const lines = fs.readFileSync(out, 'utf8').split('\n')
  const begin = lines.findIndex((l) => l.includes('SWL-MARK-BEGIN'))
  const end = lines.findIndex((l) => l.includes('SWL-MARK-END'))
  if (begin < 0 || end < begin) return null
  const lockPath = `${file}.lock`
  const ops = []
  const unreplayed = []
  const raw = []
  for (const l of lines.slice(begin + 1, end)) {
    const m = /^\d+\s+(\w+)\((.*)$/.exec(l)
    if (!m) continue
    const [, name, rest] = m
    raw.push(name)
    const size = () => (/,\s*(\d+)(?:,\s*\d+)?\)\s*=/.exec(rest) || [])[1] || '0'
    if (name === 'statx' || name === 'newfstatat' || name === 'fstat' || name === 'lstat' || name === 'stat') {
      if (/^\d+,\s*""/.test(rest) || name === 'fstat') ops.push('statx_fd')
      else if (rest.includes(JSON.stringify(lockPath))) ops.push('statx_path')
      else ops.push('statx_dir')
    } else if (name === 'openat' || name === 'open') {
      if (rest.includes('O_TMPFILE')) ops.push('open_tmpfile')
      else if (rest.includes('O_EXCL')) ops.push('open_excl')
      else ops.push('open')
    } else if (name === 'flock') {
      ops.push(rest.includes('LOCK_UN') ? 'flock_un' : rest.includes('LOCK_NB') ? 'flock_ex_nb' : 'flock_ex')
    } else if (name === 'pwrite64' || name === 'write' || name === 'pwrite') {
      if (/^[12],/.test(rest)) continue // our own stdout/stderr
      ops.push(`pwrite:${size()}`)
    } else if (name === 'pread64' || name === 'read') {
      ops.push(`pread:${size()}`)
    } else if (name === 'linkat' || name === 'link') {
      ops.push('linkat_fd')
    } else if (name === 'unlink' || name === 'unlinkat') {
      ops.push('unlink')
    } else if (name === 'close') {
      ops.push('close')
    } else if (name === 'ftruncate') {
      ops.push(`ftruncate:${(/,\s*(\d+)\)/.exec(rest) || [])[1] || '0'}`)
    } else if (name === 'fsync' || name === 'fdatasync') {
      ops.push('fsync')
    } else {
      unreplayed.push(name)
    }
  }
  if (ops.length === 0) return null
  return { ops: ops.join(','), source: `strace -f of this package (${raw.length} calls)`, unreplayed }
}

function replayFloor(dir, n, idleMs) {
  return bare('replay', dir, path.join(dir, 'floor.jsonl.lock'), n, idleMs, floorSequence.ops)
}

// ---------------------------------------------------------------- (a) uncontended

async function timedLoop(impl, file, n, out) {
  const im = IMPLS[impl]
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    const rel = await im.acquire(file)
    await rel()
    out.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
}

const FLOOR1 = 'floor (1): our calls replayed'
const BARE_FLOCK = 'bare open+flock+unlock+close'

async function scenarioA() {
  if (haveBare) {
    const traced = traceSequence(tmpDir(SHM, 'trace'))
    if (traced) floorSequence = traced
    else log('(a) strace unavailable or failed: floor (1) replays the built-in sequence')
    log(`(a) floor (1) sequence: ${floorSequence.ops}`)
  }
  for (const [fsName, base] of [['tmpfs', SHM], ['disk', DISK]]) {
    const dir = tmpDir(base, 'a')
    const warm = Object.fromEntries([...IMPL_NAMES, FLOOR1, BARE_FLOCK].map((k) => [k, []]))
    // Warm: a discarded warm-up batch, then interleaved batches.
    for (const impl of IMPL_NAMES) await timedLoop(impl, path.join(dir, `${impl}.jsonl`), 20, [])
    for (let b = 0; b < CFG.a.batches; b++) {
      for (const impl of IMPL_NAMES) {
        const n = OURS_LIKE.has(impl) ? CFG.a.batch : CFG.a.otherBatch
        await timedLoop(impl, path.join(dir, `${impl}.jsonl`), n, warm[impl])
      }
      if (haveBare) {
        warm[FLOOR1].push(...replayFloor(dir, CFG.a.batch, 0).slice(1))
        warm[BARE_FLOCK].push(...bare('uncontended', path.join(dir, 'bare.jsonl.lock'), CFG.a.batch).slice(1))
      }
    }
    for (const [impl, s] of Object.entries(warm)) if (s.length) record(`a.${fsName}`, impl, { warm: stats(s) })
    if (fsName !== 'tmpfs') continue
    // Cold: fresh processes, calls 50 ms apart, the first call of each process included.
    const { procs, n } = CFG.a.cold
    for (const impl of IMPL_NAMES) {
      const r = await coldLoop(impl, dir, procs, n)
      results[`a.${fsName}`][impl].cold = stats(r.all)
      record('a.first', impl, { cold: stats(r.first) })
    }
    if (haveBare) {
      results[`a.${fsName}`][FLOOR1].cold = stats(replayFloor(dir, procs * n, CFG.idleMs))
      results[`a.${fsName}`][BARE_FLOCK].cold = stats(
        // uncontended has no idle option: one call per run, each run a fresh process.
        Array.from({ length: procs * 2 }, () => bare('uncontended', path.join(dir, 'bare.jsonl.lock'), 1)[0]),
      )
    }
  }
}

// ---------------------------------------------------------------- (b) reentrant

async function scenarioB() {
  const dir = tmpDir(SHM, 'b')
  for (const impl of IMPL_NAMES.filter((k) => OURS_LIKE.has(k))) {
    const file = path.join(dir, `${impl}.jsonl`)
    const im = IMPLS[impl]
    const outer = await im.acquire(file, { reentrant: true })
    const s = []
    for (let i = 0; i < CFG.b.n; i++) {
      const t0 = process.hrtime.bigint()
      const rel = await im.acquire(file, { reentrant: true })
      await rel()
      if (i >= 50) s.push(Number(process.hrtime.bigint() - t0) / 1000)
    }
    await outer()
    const cold = await coldLoop(impl, dir, CFG.b.cold.procs, CFG.b.cold.n, true)
    record('b', impl, { warm: stats(s), cold: stats(cold.all) })
  }
}

// ---------------------------------------------------------------- (c) hand-off

const FLOOR2_REL = 'floor (2): Node holder -> bare waiter'

/** One hand-off between the two children of `pair`; `idle` = [lo, hi] ms before the release. */
async function handoff(pair, st, impl, idle) {
  const holder = pair[st.holder]
  const waiter = pair[1 - st.holder]
  const got = waiter.call({ op: 'acquire', impl, file: st.file })
  await sleep(rand(idle[0], idle[1])) // the waiter is blocked by now; both sit idle
  const rel = await holder.call({ op: 'release', impl, file: st.file })
  const acq = await got
  clockDiffMax = Math.max(clockDiffMax, Math.abs((acq.t - rel.t) * 1000 - (acq.m - rel.m)))
  st.holder = 1 - st.holder
  return (acq.t - rel.t) * 1000
}

async function scenarioC() {
  const dir = tmpDir(SHM, 'c')
  // Warm: one long-lived pair for every implementation, hand-offs 5-15 ms apart.
  const pair = [await startChild(), await startChild()]
  const state = {}
  const warm = Object.fromEntries([...IMPL_NAMES, FLOOR2_REL, OURS_TO_BARE, BARE_TO_OURS, BARE_TO_NODE, OURS_TO_NODE].map((k) => [k, []]))
  for (const impl of IMPL_NAMES) {
    const file = path.join(dir, `${impl}.jsonl`)
    await pair[0].call({ op: 'acquire', impl, file })
    state[impl] = { file, holder: 0 }
  }
  const total = Math.max(...IMPL_NAMES.map((k) => CFG.c[k]))
  for (let cycle = 0; cycle < total; cycle++) {
    for (const impl of IMPL_NAMES) {
      if (!takesPart(cycle, CFG.c[impl], total)) continue
      warm[impl].push(await handoff(pair, state[impl], impl, [5, 15]))
    }
  }
  for (const impl of IMPL_NAMES) await pair[state[impl].holder].call({ op: 'release', impl, file: state[impl].file })
  // Floor (2), warm, and where ours' time goes (each half against bare flock, CLOCK_MONOTONIC):
  //   ours holder -> bare waiter: our release path (JS release -> unlink + unlock) = floor (2)
  //   bare holder -> ours waiter: our waiting path (kernel wake -> waiting thread -> promise)
  //   bare holder -> bare Node waiter: what Node alone costs a waiter (fs.watch -> promise, no lock)
  //   ours holder -> bare Node waiter: ours' hand-off with a waiter that takes no lock, the
  //     least any Node waiter can take after our holder's release
  if (haveBare) {
    const n = Math.max(10, Math.round(CFG.c.ours / 4))
    for (let i = 0; i < n; i++) {
      warm[FLOOR2_REL].push(await oursToBare(pair[0], path.join(dir, `otb${i}.jsonl`), [5, 15]))
      warm[BARE_TO_OURS].push(await bareToOurs(pair[1], path.join(dir, `bto${i}.jsonl`), [5, 15]))
      warm[BARE_TO_NODE].push(await bareToNode(pair[1], path.join(dir, `btn${i}.lock`), [5, 15]))
      warm[OURS_TO_NODE].push(await oursToNode(pair[0], pair[1], path.join(dir, `otn${i}.jsonl`), [5, 15]))
    }
  }
  await Promise.all(pair.map((c) => c.close()))
  // Cold: a fresh pair per implementation, no warm-up, every hand-off after >= 50 ms idle.
  const cold = Object.fromEntries([...IMPL_NAMES, FLOOR2_REL, BARE_TO_OURS, BARE_TO_NODE, OURS_TO_NODE].map((k) => [k, []]))
  for (const impl of IMPL_NAMES) {
    const cp = [await startChild(), await startChild()]
    await Promise.all(cp.map((c) => c.call({ op: 'load', impl })))
    const st = { file: path.join(dir, `cold-${impl}.jsonl`), holder: 0 }
    await cp[0].call({ op: 'acquire', impl, file: st.file })
    for (let i = 0; i < CFG.c.cold[impl]; i++) cold[impl].push(await handoff(cp, st, impl, [CFG.idleMs, CFG.idleMs + 20]))
    await cp[st.holder].call({ op: 'release', impl, file: st.file })
    await Promise.all(cp.map((c) => c.close()))
  }
  {
    // As ours' cold row: one fresh pair, every hand-off after >= 50 ms idle.
    const cp = [await startChild(), await startChild()]
    await Promise.all(cp.map((c) => c.call({ op: 'load', impl: 'ours' })))
    for (let i = 0; i < CFG.c.cold.ours; i++) {
      cold[OURS_TO_NODE].push(await oursToNode(cp[0], cp[1], path.join(dir, `cotn${i}.jsonl`), [CFG.idleMs, CFG.idleMs + 20]))
    }
    await Promise.all(cp.map((c) => c.close()))
  }
  if (haveBare) {
    const n = Math.max(6, Math.round(CFG.c.cold.ours / 2))
    for (let i = 0; i < n; i++) {
      // Each measurement in fresh Node processes: the first lock call of each.
      const h = await startChild()
      await h.call({ op: 'load', impl: 'ours' })
      cold[FLOOR2_REL].push(await oursToBare(h, path.join(dir, `cotb${i}.jsonl`), [CFG.idleMs, CFG.idleMs + 20]))
      await h.close()
      const w = await startChild()
      await w.call({ op: 'load', impl: 'ours' })
      cold[BARE_TO_OURS].push(await bareToOurs(w, path.join(dir, `cbto${i}.jsonl`), [CFG.idleMs, CFG.idleMs + 20]))
      await w.close()
      const n = await startChild()
      await n.call({ op: 'load', impl: 'ours' })
      cold[BARE_TO_NODE].push(await bareToNode(n, path.join(dir, `cbtn${i}.lock`), [CFG.idleMs, CFG.idleMs + 20]))
      await n.close()
    }
  }
  for (const k of Object.keys(warm)) {
    const entry = {}
    if (warm[k].length) entry.warm = stats(warm[k])
    if (cold[k] && cold[k].length) entry.cold = stats(cold[k])
    if (entry.warm || entry.cold) record('c', k, entry)
  }
  record('c.clockCheck', 'all', { maxAbsDiffUs: clockDiffMax })
}

const OURS_TO_BARE = 'ours -> bare'
const BARE_TO_OURS = 'bare holder -> ours waiter'
const BARE_TO_NODE = 'bare holder -> bare Node waiter'
const OURS_TO_NODE = 'ours holder -> bare Node waiter'
let clockDiffMax = 0

function spawnBare(args, env) {
  const p = spawn(BARE_BIN, args, { stdio: ['pipe', 'pipe', 'inherit'], env: env ? { ...process.env, ...env } : process.env })
  children.add(p)
  const lines = []
  let wake = null
  readline.createInterface({ input: p.stdout }).on('line', (l) => {
    lines.push(l)
    if (wake) wake()
  })
  const exited = new Promise((r) => p.once('exit', () => {
    children.delete(p)
    r()
  }))
  const line = async () => {
    while (!lines.length) await new Promise((r) => (wake = r))
    return lines.shift()
  }
  return { p, line, exited }
}

async function oursToBare(holder, file, idle) {
  await holder.call({ op: 'acquire', impl: 'ours', file })
  const b = spawnBare(['waitstamp', `${file}.lock`])
  await b.line() // "waiting": it is about to block in flock
  await sleep(rand(idle[0], idle[1]))
  const rel = await holder.call({ op: 'release', impl: 'ours', file })
  const { t } = JSON.parse(await b.line())
  await b.exited
  return t - rel.m
}

async function bareToOurs(waiter, file, idle) {
  const lockPath = `${file}.lock`
  const b = spawnBare(['holdstamp', lockPath])
  await b.line() // "ready": it holds the flock
  // A payload like ours, so the waiter treats the file as an OS-locked one.
  fs.writeFileSync(lockPath, JSON.stringify({ pid: b.p.pid, createdAt: new Date().toISOString(), hostname: os.hostname(), lock: 'os' }, null, 2))
  const got = waiter.call({ op: 'acquire', impl: 'ours', file })
  await sleep(rand(idle[0], idle[1]))
  b.p.stdin.write('go\n')
  const { t } = JSON.parse(await b.line())
  const acq = await got
  await b.exited
  await waiter.call({ op: 'release', impl: 'ours', file })
  return acq.m - t
}

/**
 * For scale: what Node alone costs a waiter, with no lock. A bare holder
 * releases; a Node process's fs.watch of the file (inotify through libuv, as
 * our own loop watch) resolves a promise, stamped in its continuation. The
 * same kernel event, the same thread woken from the same idle; no attempt,
 * no lock, no delivery.
 */
async function bareToNode(waiter, lockPath, idle) {
  const b = spawnBare(['holdstamp', lockPath])
  await b.line() // "ready": it holds the flock
  const got = waiter.call({ op: 'watch', file: lockPath })
  await sleep(rand(idle[0], idle[1]))
  b.p.stdin.write('go\n')
  const { t } = JSON.parse(await b.line())
  const seen = await got
  await b.exited
  return seen.m - t
}

/**
 * Ours' hand-off with the waiter replaced by one that takes no lock: our
 * holder releases (stamped before `release()`, as in ours' row); a Node
 * process's fs.watch of the lock file resolves a promise, stamped in its
 * continuation. No Node waiter, whatever it does, resolves sooner after the
 * same release: the share of (c) that is the holder, the kernel and Node.
 */
async function oursToNode(holder, waiter, file, idle) {
  await holder.call({ op: 'acquire', impl: 'ours', file })
  const got = waiter.call({ op: 'watch', file: `${file}.lock` })
  await sleep(rand(idle[0], idle[1]))
  const rel = await holder.call({ op: 'release', impl: 'ours', file })
  const seen = await got
  return (seen.t - rel.t) * 1000
}

// ---------------------------------------------------------------- (d) SIGKILL

const FLOOR2_KILL = 'floor (2): Node holder killed -> bare waiter'

async function killOnce(dir, impl, waiter, holderP, idle) {
  const file = path.join(dir, `${impl}.jsonl`)
  const stale = 2000 // proper-lockfile's minimum; the others ignore it
  const holder = await holderP
  await holder.call({ op: 'acquire', impl, file, stale })
  const got = waiter.call({ op: 'acquire', impl, file, stale })
  await sleep(rand(idle[0], idle[1]))
  const t1 = now()
  holder.proc.kill('SIGKILL')
  const acq = await got
  await waiter.call({ op: 'release', impl, file })
  await holder.exited
  return (acq.t - t1) * 1000
}

function floorKill(dir, n, idleMs) {
  // A bare flock waiter on a lock held by a Node process (this package) that is SIGKILLed.
  // The kernel drops the lock only when it closes the dead process's descriptors, after
  // tearing down its address space.
  const sf = path.join(dir, 'node-held.jsonl')
  const holder = `require(${JSON.stringify(path.join(ROOT, 'index.js'))}).acquireSessionWriteLock(` +
    `{sessionFile:${JSON.stringify(sf)},timeoutMs:60000}).then(()=>{console.log('ready');process.stdin.resume()})`
  const r = spawnSync(BARE_BIN, ['kill', `${sf}.lock`, String(n), '--', process.execPath, '-e', holder], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, BARE_IDLE_MS: String(idleMs) },
  })
  if (r.status !== 0) throw new Error(`bare kill failed: ${r.stderr || r.error}`)
  return JSON.parse(r.stdout).samples_ns.map((ns) => ns / 1000)
}

async function scenarioD() {
  const dir = tmpDir(SHM, 'd')
  // Warm: one long-lived waiter; 10-20 ms idle. The next holder is started once a
  // round is measured (and is ready before the next kill): a Node process booting
  // during the kill takes one of the 2 CPUs from the dying holder and the waiter
  // (+1-2 ms on p50), which the bare floor (2) beside it never pays.
  const waiter = await startChild()
  const warm = Object.fromEntries([...IMPL_NAMES, 'bare', FLOOR2_KILL].map((k) => [k, []]))
  const total = Math.max(...IMPL_NAMES.map((k) => CFG.d[k]))
  let spare = startChild()
  for (let cycle = 0; cycle < total; cycle++) {
    for (const impl of IMPL_NAMES) {
      if (!takesPart(cycle, CFG.d[impl], total)) continue
      const holderP = spare
      warm[impl].push(await killOnce(dir, impl, waiter, holderP, [10, 20]))
      spare = startChild()
    }
  }
  ;(await spare).close()
  await waiter.close()
  if (haveBare) {
    warm.bare.push(...bare('kill', path.join(dir, 'bare.jsonl.lock'), CFG.d.bare))
    warm[FLOOR2_KILL].push(...floorKill(dir, CFG.d.bare, 0))
  }
  // Cold: a fresh waiter and holder per sample, >= 50 ms idle before the kill.
  const cold = Object.fromEntries([...IMPL_NAMES, FLOOR2_KILL].map((k) => [k, []]))
  for (const impl of IMPL_NAMES) {
    for (let i = 0; i < CFG.d.cold[impl]; i++) {
      const w = await startChild()
      await w.call({ op: 'load', impl })
      const h = startChild()
      await (await h).call({ op: 'load', impl })
      cold[impl].push(await killOnce(dir, impl, w, h, [CFG.idleMs, CFG.idleMs + 20]))
      await w.close()
    }
  }
  if (haveBare) cold[FLOOR2_KILL].push(...floorKill(dir, CFG.d.cold.bare, CFG.idleMs))
  for (const k of Object.keys(warm)) {
    const entry = {}
    if (warm[k].length) entry.warm = stats(warm[k])
    if (cold[k] && cold[k].length) entry.cold = stats(cold[k])
    if (entry.warm || entry.cold) record('d', k, entry)
  }
}

// ---------------------------------------------------------------- (e) FIFO

function summarizeFifo(rs) {
  // The median run by throughput, with the worst FIFO figures of all runs.
  const byRate = rs.slice().sort((x, y) => x.handoffsPerSec - y.handoffsPerSec)
  const mid = byRate[Math.floor(byRate.length / 2)]
  return {
    waiters: mid.waiters,
    rounds: mid.rounds,
    handoffsPerSec: mid.handoffsPerSec,
    firstRoundPerSec: median(rs.map((r) => r.firstRoundPerSec)),
    runs: rs.length,
    outOfOrderPctMax: Math.max(...rs.map((r) => r.outOfOrderPct)),
    worstWaitMsMax: Math.max(...rs.map((r) => r.worstWaitMs)),
    perRound: mid.perRound,
  }
}

async function scenarioE() {
  const dir = tmpDir(SHM, 'e')
  // The others poll with synchronised backoff ramps (a thundering herd), so their run
  // time grows with the number of waiters, not rounds: --quick gives them 10 waiters.
  const { waiters, rounds, otherWaiters, otherRounds, oursReps, coldProcs, otherColdProcs } = CFG.e
  const size = (impl) => (OURS_LIKE.has(impl) ? [waiters, rounds] : [otherWaiters, otherRounds])
  // Warm: in this process, after discarded warm-up runs (the first thousand hand-offs
  // run in V8's baseline tiers). The others spend their time in timers: short warm-ups.
  const warm = {}
  for (const impl of IMPL_NAMES) {
    const ours = OURS_LIKE.has(impl)
    for (let i = 0; i < (ours ? 4 : 1); i++) await fifoRun(impl, path.join(dir, `warm-${impl}${i}.jsonl`), ours ? waiters : 5, ours ? rounds : 2)
  }
  for (let rep = 0; rep < oursReps; rep++) {
    for (const impl of IMPL_NAMES) {
      if (!OURS_LIKE.has(impl) && rep !== Math.floor(oursReps / 2)) continue
      if (!OURS_LIKE.has(impl)) log(`(e) ${impl}: ${otherWaiters} waiters x ${otherRounds} rounds ...`)
      ;(warm[impl] ??= []).push(await fifoRun(impl, path.join(dir, `${impl}${rep}.jsonl`), ...size(impl)))
    }
  }
  // Cold: the first run of a fresh process, no warm-up.
  const cold = {}
  for (const impl of IMPL_NAMES) {
    const procs = OURS_LIKE.has(impl) ? coldProcs : otherColdProcs
    for (let p = 0; p < procs; p++) {
      const c = await startChild()
      await c.call({ op: 'load', impl })
      const [w, r] = size(impl)
      ;(cold[impl] ??= []).push(await c.call({ op: 'fifo', impl, file: path.join(dir, `cold-${impl}${p}.jsonl`), waiters: w, rounds: r }))
      await c.close()
    }
  }
  for (const impl of IMPL_NAMES) record('e', impl, { warm: summarizeFifo(warm[impl]), cold: summarizeFifo(cold[impl]) })
}

// ---------------------------------------------------------------- (f) 1,000 at once

async function scenarioF() {
  const runs = Object.fromEntries([...IMPL_NAMES, 'bare'].map((k) => [k, { warm: [], cold: [] }]))
  const one = async (impl, cold) => {
    const dir = tmpDir(SHM, 'f')
    const c = await startChild(['--expose-gc'])
    const r = await c.call({ op: 'many', impl, dir, n: CFG.f.n, cold })
    await c.close()
    return { ms: r.ms, fds: r.fdAfter - r.fdBefore, rssMiB: (r.rssAfter - r.rssBefore) / 2 ** 20 }
  }
  for (let rep = 0; rep < Math.max(CFG.f.reps, CFG.f.coldReps); rep++) {
    for (const impl of IMPL_NAMES) {
      if (rep < CFG.f.reps) runs[impl].warm.push(await one(impl, false))
      if (rep < CFG.f.coldReps) runs[impl].cold.push(await one(impl, true))
    }
    if (haveBare && rep < CFG.f.reps) {
      const r = bare('many', tmpDir(SHM, 'f'), CFG.f.n)
      runs.bare.warm.push({ ms: r.ns / 1e6, fds: r.fdAfter - r.fdBefore, rssMiB: (r.rssAfter - r.rssBefore) / 2 ** 20 })
    }
  }
  const sum = (rs) =>
    rs.length
      ? { n: CFG.f.n, runs: rs.length, ms: median(rs.map((r) => r.ms)), fds: Math.max(...rs.map((r) => r.fds)), rssMiB: median(rs.map((r) => r.rssMiB)), all: rs }
      : null
  for (const [impl, r] of Object.entries(runs)) {
    const entry = {}
    if (r.warm.length) entry.warm = sum(r.warm)
    if (r.cold.length) entry.cold = sum(r.cold)
    if (entry.warm || entry.cold) record('f', impl, entry)
  }
}

// ---------------------------------------------------------------- (g) waiter CPU

function procCpuTicks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12]) // utime + stime (fields 14, 15), all threads
}

async function scenarioG() {
  const dir = tmpDir(SHM, 'g')
  const holder = await startChild()
  const waiters = {}
  for (const impl of IMPL_NAMES) {
    const file = path.join(dir, `${impl}.jsonl`)
    await holder.call({ op: 'acquire', impl, file })
    waiters[impl] = { child: await startChild(), file }
    await waiters[impl].child.call({ op: 'load', impl })
  }
  let bareHold = null
  let bareWait = null
  if (haveBare) {
    const f = path.join(dir, 'bare.jsonl.lock')
    bareHold = spawn(BARE_BIN, ['hold', f], { stdio: ['pipe', 'pipe', 'inherit'] })
    children.add(bareHold)
    await new Promise((r) => bareHold.stdout.once('data', r))
    bareWait = spawn(BARE_BIN, ['wait', f], { stdio: ['pipe', 'pipe', 'inherit'] })
    children.add(bareWait)
  }
  const pendings = []
  for (const impl of IMPL_NAMES) {
    const p = waiters[impl].child.call({ op: 'acquire', impl, file: waiters[impl].file })
    p.catch(() => {})
    pendings.push(p)
  }
  await sleep(300) // every waiter is settled in its wait
  const before = {}
  for (const impl of IMPL_NAMES) before[impl] = await waiters[impl].child.call({ op: 'cpu' })
  const bareBefore = bareWait ? procCpuTicks(bareWait.pid) : 0
  const t0 = performance.now()
  await sleep(CFG.g.seconds * 1000)
  const wallUs = (performance.now() - t0) * 1000
  for (const impl of IMPL_NAMES) {
    const after = await waiters[impl].child.call({ op: 'cpu' })
    const cpuUs = after.user - before[impl].user + (after.system - before[impl].system)
    record('g', impl, { seconds: CFG.g.seconds, cpuMs: cpuUs / 1000, pctCore: (100 * cpuUs) / wallUs })
  }
  if (bareWait) {
    const ticks = procCpuTicks(bareWait.pid) - bareBefore
    const hz = 100
    const cpuUs = (ticks / hz) * 1e6
    record('g', 'bare', { seconds: CFG.g.seconds, cpuMs: cpuUs / 1000, pctCore: (100 * cpuUs) / wallUs })
  }
  // Let every waiter through, then tear everything down.
  for (const impl of IMPL_NAMES) await holder.call({ op: 'release', impl, file: waiters[impl].file })
  await Promise.allSettled(pendings)
  await Promise.all([holder.close(), ...Object.values(waiters).map((w) => w.child.close())])
  for (const p of [bareHold, bareWait]) {
    if (!p) continue
    const exited = p.exitCode !== null || p.signalCode !== null ? null : new Promise((r) => p.once('exit', r))
    p.stdin.end()
    p.kill('SIGKILL')
    if (exited) await exited // reaped here, never left as a zombie
    children.delete(p)
  }
}

// ---------------------------------------------------------------- (h) load time + size

function nodeMs(code) {
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', cwd: ROOT, timeout: 30_000 })
  if (r.status !== 0) throw new Error(`node -e failed: ${r.stderr}`)
  return Number(r.stdout.trim())
}

function addonPath() {
  const tag = require(path.join(ROOT, 'loader.js')).platformTag()
  const local = path.join(ROOT, `session-write-lock.${tag}.node`)
  return fs.existsSync(local) ? local : null
}

async function scenarioH() {
  const addon = addonPath()
  const targets = {
    ours: path.join(ROOT, 'index.js'),
    ...(addon ? { 'ours-addon': addon } : {}),
    ...(BASELINE ? { base: path.join(BASELINE, 'index.js') } : {}),
    proper: 'proper-lockfile',
    ...(HAVE_LEGACY ? { legacy: LEGACY_PATH } : {}),
  }
  const samples = Object.fromEntries(Object.keys(targets).map((k) => [k, []]))
  // Where the require time goes: the loader's body alone (finding and loading
  // the addon: node version gate, C library probe, dlopen), for ours and the
  // baseline; and what a gateway's first turn costs, require + the first
  // acquire + release of a fresh process, for every implementation.
  const loaders = { ours: path.join(ROOT, 'loader.js'), ...(BASELINE ? { base: path.join(BASELINE, 'loader.js') } : {}) }
  const loaderSamples = Object.fromEntries(Object.keys(loaders).map((k) => [k, []]))
  const firstCode = {
    ours: (f) => `require(${JSON.stringify(targets.ours)}).acquireSessionWriteLock({sessionFile:${JSON.stringify(f)}}).then((l)=>l.release())`,
    ...(BASELINE ? { base: (f) => `require(${JSON.stringify(targets.base)}).acquireSessionWriteLock({sessionFile:${JSON.stringify(f)}}).then((l)=>l.release())` } : {}),
    proper: (f) => `require('proper-lockfile').lock(${JSON.stringify(f)},{realpath:false,retries:0}).then((r)=>r())`,
    ...(HAVE_LEGACY ? { legacy: (f) => `require(${JSON.stringify(LEGACY_PATH)}).acquireLegacy({sessionFile:${JSON.stringify(f)}}).then((h)=>h.release())` } : {}),
  }
  const firstSamples = Object.fromEntries(Object.keys(firstCode).map((k) => [k, []]))
  const firstDir = tmpDir(SHM, 'h-first')
  const wall = { baseline: [], ours: [] }
  for (let i = 0; i < CFG.h.reps; i++) {
    for (const [k, mod] of Object.entries(targets)) {
      samples[k].push(nodeMs(`const t=performance.now();require(${JSON.stringify(mod)});console.log(performance.now()-t)`))
    }
    for (const [k, file] of Object.entries(loaders)) {
      loaderSamples[k].push(nodeMs(`const t=performance.now();require(${JSON.stringify(file)}).load();console.log(performance.now()-t)`))
    }
    for (const [k, code] of Object.entries(firstCode)) {
      const f = path.join(firstDir, `${k}-${i}.jsonl`)
      firstSamples[k].push(nodeMs(`const t=performance.now();${code(f)}.then(()=>console.log(performance.now()-t))`))
    }
    // Whole fresh-process cost, for the record: node startup alone vs startup + require.
    for (const [k, code] of [['baseline', '0'], ['ours', `require(${JSON.stringify(targets.ours)})`]]) {
      const t0 = performance.now()
      const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT })
      if (r.status === 0) wall[k].push(performance.now() - t0)
    }
  }
  for (const [k, s] of Object.entries(samples)) record('h.load', k, stats(s.map((ms) => ms * 1000)))
  for (const [k, s] of Object.entries(loaderSamples)) record('h.loader', k, stats(s.map((ms) => ms * 1000)))
  for (const [k, s] of Object.entries(firstSamples)) record('h.first', k, stats(s.map((ms) => ms * 1000)))
  record('h.process', 'ours', {
    baselineMs: median(wall.baseline),
    withOursMs: median(wall.ours),
    deltaMs: median(wall.ours) - median(wall.baseline),
  })
  if (addon) {
    const size = fs.statSync(addon).size
    let stripped = size
    let note = 'as shipped'
    try {
      const desc = execFileSync('file', [addon], { encoding: 'utf8' })
      if (/not stripped/.test(desc)) {
        const tmp = path.join(tmpDir(os.tmpdir(), 'h'), 'addon.node')
        execFileSync('strip', ['-s', '-o', tmp, addon])
        stripped = fs.statSync(tmp).size
        note = 'stripped copy'
      } else {
        note = 'already stripped'
      }
    } catch {}
    record('h.size', 'ours', { bytes: size, strippedBytes: stripped, note })
  }
}

// ---------------------------------------------------------------- report

const fmtUs = (us) => {
  if (!Number.isFinite(us)) return 'n/a'
  if (us < 1000) return `${us < 10 ? us.toFixed(2) : us < 100 ? us.toFixed(1) : us.toFixed(0)} us`
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`
  return `${(us / 1e6).toFixed(2)} s`
}
const fmtRatio = (x) => (Number.isFinite(x) ? `${x >= 100 ? x.toFixed(0) : x.toFixed(x >= 10 ? 1 : 2)}x` : '')
const fmtRate = (x) => (Number.isFinite(x) ? `${Math.round(x).toLocaleString('en-US')}/s` : 'n/a')
/** ok: boolean, or a list of [name, ok] parts (the MISS names the parts missed). */
const verdict = (ok) => {
  if (!Array.isArray(ok)) return ok ? 'PASS' : 'MISS'
  const missed = ok.filter(([, good]) => !good).map(([name]) => name)
  return missed.length ? `MISS (${missed.join(', ')})` : 'PASS'
}
const allOk = (ok) => (Array.isArray(ok) ? ok.every(([, good]) => good) : !!ok)

const HEAD = ['scenario', 'impl', 'warm p50', 'warm p99', 'cold p50', 'cold p99', 'cold vs ours', 'target (ours)', '']

function buildRows() {
  const rows = []
  const checks = []
  const row = (scenario, impl, cells, vs, target, ok) => {
    const v = target ? verdict(ok) : ''
    rows.push([scenario, impl, ...cells, vs, target || '', v])
    if (target) checks.push({ scenario, target, ok: allOk(ok), verdict: v })
  }
  const w = (e, k) => (e && e.warm ? e.warm[k] : NaN)
  const c = (e, k) => (e && e.cold ? e.cold[k] : NaN)
  // Latency scenarios: warm and cold p50 / p99; ratio of cold p50 vs ours.
  const lat = (key, label, targetFn) => {
    const r = results[key]
    if (!r) return
    const ours = r.ours
    for (const [impl, e] of Object.entries(r)) {
      const base = impl !== 'ours' && ours ? c(e, 'p50') / c(ours, 'p50') : NaN
      const [target, ok] = impl === 'ours' && targetFn ? targetFn(e, r) : [null, null]
      row(label, impl, [fmtUs(w(e, 'p50')), fmtUs(w(e, 'p99')), fmtUs(c(e, 'p50')), fmtUs(c(e, 'p99'))], fmtRatio(base), target, ok)
    }
  }
  lat('a.tmpfs', '(a) uncontended, tmpfs', (e, r) => {
    const f = r[FLOOR1]
    if (!f) return ['warm p50 <= 1.3x floor (1); cold p50 <= 3x warm p50', [['cold', c(e, 'p50') <= 3 * w(e, 'p50')]]]
    return [
      `warm p50 <= 1.3x floor (1) (${fmtUs(1.3 * w(f, 'p50'))}, now ${fmtRatio(w(e, 'p50') / w(f, 'p50'))}); cold p50 <= 3x warm p50 (now ${fmtRatio(c(e, 'p50') / w(e, 'p50'))})`,
      [['warm vs floor', w(e, 'p50') <= 1.3 * w(f, 'p50')], ['cold vs warm', c(e, 'p50') <= 3 * w(e, 'p50')]],
    ]
  })
  lat('a.first', '(a) first call of a fresh process', null)
  lat('a.disk', '(a) uncontended, disk (warm)', null)
  lat('b', '(b) reentrant acquire', null)
  const twoMs = (e, k) => [['p50', e[k].p50 <= 200], ['p99', e[k].p99 <= 2000]]
  lat('c', '(c) hand-off, 2 processes', (e) => [
    'p50 <= 200 us, p99 <= 2 ms, cold and warm',
    [...twoMs(e, 'cold').map(([n, ok]) => [`cold ${n}`, ok]), ...twoMs(e, 'warm').map(([n, ok]) => [`warm ${n}`, ok])],
  ])
  lat('d', '(d) SIGKILL -> waiter', (e, r) => {
    const f = r[FLOOR2_KILL]
    const parts = [['cold p99', c(e, 'p99') <= 10000], ['warm p99', w(e, 'p99') <= 10000]]
    if (f) parts.unshift(['cold p50', c(e, 'p50') <= c(f, 'p50') + 500], ['warm p50', w(e, 'p50') <= w(f, 'p50') + 500])
    return ['p50 <= floor (2) kill + 0.5 ms, p99 <= 10 ms', parts]
  })
  if (results.e) {
    const ours = results.e.ours
    for (const [impl, e] of Object.entries(results.e)) {
      const label = `(e) ${e.cold.waiters} waiters x ${e.cold.rounds}`
      const ok = [
        ['FIFO', e.warm.outOfOrderPctMax === 0 && e.cold.outOfOrderPctMax === 0],
        ['warm rate', e.warm.handoffsPerSec >= 50_000],
        ['cold rate', e.cold.handoffsPerSec >= 50_000],
        ['cold first round', e.cold.firstRoundPerSec >= 50_000],
      ]
      const vs = impl !== 'ours' && ours ? fmtRatio(ours.cold.handoffsPerSec / e.cold.handoffsPerSec) : ''
      row(label, impl,
        [fmtRate(e.warm.handoffsPerSec), `${e.warm.outOfOrderPctMax.toFixed(1)}% unfair`,
          `${fmtRate(e.cold.handoffsPerSec)} (1st round ${fmtRate(e.cold.firstRoundPerSec)})`,
          `${e.cold.outOfOrderPctMax.toFixed(1)}% unfair, worst ${fmtUs(Math.max(e.cold.worstWaitMsMax, e.warm.worstWaitMsMax) * 1000)}`],
        vs, impl === 'ours' ? 'FIFO, >= 50,000/s from the first round, cold and warm' : null, ok)
    }
  }
  if (results.f) {
    const ours = results.f.ours
    for (const [impl, f] of Object.entries(results.f)) {
      const cell = (x) => (x ? `${fmtUs(x.ms * 1000)}, ${x.rssMiB >= 0 ? '+' : ''}${x.rssMiB.toFixed(1)} MiB` : 'n/a')
      const fds = (x) => (x ? `+${x.fds} fds` : '')
      const parts = []
      for (const [k, x] of [['cold', f.cold], ['warm', f.warm]]) {
        if (!x) continue
        parts.push([`${k} time`, x.ms <= 30], [`${k} fds`, x.fds <= x.n + 16], [`${k} memory`, x.rssMiB <= 5])
      }
      const vs = impl !== 'ours' && ours && f.cold ? fmtRatio(f.cold.ms / ours.cold.ms) : ''
      row(`(f) ${CFG.f.n} sessions at once`, impl, [cell(f.warm), fds(f.warm), cell(f.cold), fds(f.cold)], vs,
        impl === 'ours' ? '<= 30 ms, 1 fd each, <= 5 MiB, cold and warm' : null, parts)
    }
  }
  if (results.g) {
    for (const [impl, g] of Object.entries(results.g)) {
      row(`(g) waiter CPU over ${g.seconds} s`, impl, [`${g.pctCore.toFixed(3)}% core`, `${g.cpuMs.toFixed(1)} ms cpu`, '', ''], '',
        impl === 'ours' ? '< 1% of a core' : null, g.pctCore < 1)
    }
  }
  if (results['h.load']) {
    const r = results['h.load']
    for (const [impl, s] of Object.entries(r)) {
      const vs = impl !== 'ours' && r.ours ? fmtRatio(s.p50 / r.ours.p50) : ''
      row('(h) require() in a fresh node', impl, ['', '', fmtUs(s.p50), fmtUs(s.p99)], vs,
        impl === 'ours' ? 'p50 <= 3 ms' : null, s.p50 <= 3000)
    }
    const legacy = r.legacy
    if (legacy && r.ours) {
      // docs/spec.md's 3 ms was set where the old module loaded in 2.4 ms: the same bar as a ratio.
      row('(h) require(): ours vs legacy', 'ours', ['', '', fmtRatio(r.ours.p50 / legacy.p50), ''], '', 'p50 <= 1.25x legacy (3 ms / 2.4 ms)', r.ours.p50 <= 1.25 * legacy.p50)
    }
    for (const [impl, s] of Object.entries(results['h.loader'] || {})) {
      row('(h) loader.js load() in a fresh node', impl, ['', '', fmtUs(s.p50), fmtUs(s.p99)], '', '', '')
    }
    const first = results['h.first'] || {}
    for (const [impl, s] of Object.entries(first)) {
      const vs = impl !== 'ours' && first.ours ? fmtRatio(s.p50 / first.ours.p50) : ''
      row('(h) require() + first acquire/release', impl, ['', '', fmtUs(s.p50), fmtUs(s.p99)], vs, '', '')
    }
    const p = results['h.process'] && results['h.process'].ours
    if (p) row('(h) node -e startup', 'ours', ['', '', `+${p.deltaMs.toFixed(1)} ms`, `base ${p.baselineMs.toFixed(0)} ms`], '', '', '')
  }
  if (results['h.size']) {
    const s = results['h.size'].ours
    row('(h) .node size', 'ours', [`${(s.strippedBytes / 1024).toFixed(0)} KiB`, s.note, '', ''], '', '< 1 MB stripped', s.strippedBytes < 1_000_000)
  }
  return { rows, checks }
}

function renderTable(rows) {
  const all = [HEAD, ...rows]
  const widths = HEAD.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)))
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()
  const out = [line(HEAD), widths.map((w) => '-'.repeat(w)).join('  ')]
  let last = null
  for (const r of rows) {
    out.push(line(r[0] === last ? ['', ...r.slice(1)] : r))
    last = r[0]
  }
  return out.join('\n')
}

/** Which binary was measured: sha256 prefix and mtime of the local .node (the lead may rebuild it mid-run). */
function addonId() {
  try {
    const p = addonPath()
    if (!p) return null
    const hash = require('node:crypto').createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 12)
    return { file: path.basename(p), sha256: hash, mtime: fs.statSync(p).mtime.toISOString() }
  } catch {
    return null
  }
}

function machine() {
  let cpu = 'unknown'
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)
    if (m) cpu = m[1]
  } catch {}
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  } catch {}
  return {
    date: new Date().toISOString(),
    commit,
    addon: addonId(),
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    cpu,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tmpfsDir: SHM,
    diskDir: DISK,
    quick: QUICK,
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const started = performance.now()
  const meta = machine()
  buildBare()
  if (!HAVE_LEGACY) log(`legacy reference not found at ${LEGACY_PATH}; skipping it`)
  const scenarios = [
    ['a', scenarioA],
    ['b', scenarioB],
    ['c', scenarioC],
    ['d', scenarioD],
    ['e', scenarioE],
    ['f', scenarioF],
    ['g', scenarioG],
    ['h', scenarioH],
  ]
  for (const [name, fn] of scenarios) {
    if (ONLY && !ONLY.has(name)) continue
    const t = performance.now()
    log(`(${name}) ...`)
    await fn()
    log(`(${name}) done in ${((performance.now() - t) / 1000).toFixed(1)} s`)
  }
  const { rows, checks } = buildRows()
  const addonEnd = addonId()
  const addonChanged = meta.addon && addonEnd && addonEnd.sha256 !== meta.addon.sha256
  const elapsed = (performance.now() - started) / 1000
  console.log(
    `session-write-lock bench ${QUICK ? '(--quick) ' : ''}${meta.date} commit ${meta.commit}\n` +
      `machine: ${meta.nproc} cpus, ${meta.cpu}, ${meta.kernel}, node ${meta.node}, load average at start ${meta.loadavg}; ` +
      `tmpfs ${meta.tmpfsDir}, disk ${meta.diskDir}\n` +
      (meta.addon ? `addon: ${meta.addon.file} sha256 ${meta.addon.sha256}, built ${meta.addon.mtime}\n` : '') +
      (addonChanged ? `WARNING: the addon was rebuilt during this run (now sha256 ${addonEnd.sha256}); figures mix two builds\n` : '') +
      `impls: ours = this package${BASELINE ? `; base = ${BASELINE} (another build, for before/after)` : ''}; ` +
      `proper = proper-lockfile 4.1.2 (retries min 10 ms x1.5 max 100 ms, stale 2 s in (d)); ` +
      `legacy = old algorithm reference${HAVE_LEGACY ? '' : ' (missing)'}; bare = native programs (bench/bare)${haveBare ? '' : ' (unavailable)'}\n` +
      `floor (1) replays, per call, the system calls of one acquire + release read off ${floorSequence.source}: ` +
      `${floorSequence.ops}${floorSequence.unreplayed.length ? ` (not replayed: ${floorSequence.unreplayed.join(', ')})` : ''}\n` +
      `warm: long-lived processes, back-to-back calls after warm-up; cold: fresh processes, no warm-up, calls >= ${CFG.idleMs} ms apart.\n` +
      `"cold vs ours": cold p50 ratio (other / ours; for (e) ours' rate / other's rate). Times per operation.\n`,
  )
  console.log(renderTable(rows))
  const missed = checks.filter((c) => !c.ok)
  console.log(
    `\ntargets (docs/performance.md): ${checks.length - missed.length}/${checks.length} PASS` +
      (missed.length ? `; missed: ${missed.map((c) => `${c.scenario} ${c.verdict}`).join('; ')}` : '') +
      `\ntotal ${elapsed.toFixed(1)} s`,
  )
  // (p) the PostgreSQL backend's rows (bench/postgres.mjs; skipped without the server binaries).
  if (!ONLY || ONLY.has('p')) spawnSync(process.execPath, [path.join(__dirname, 'postgres.mjs'), ...(QUICK ? ['--quick'] : [])], { stdio: 'inherit' })
  if (JSON_OUT) {
    fs.writeFileSync(
      JSON_OUT,
      JSON.stringify({ meta: { ...meta, addonAtEnd: addonEnd, elapsedS: elapsed, config: CFG, properRetries: PROPER_RETRIES }, results, checks }, null, 2),
    )
    log(`wrote ${JSON_OUT}`)
  }
}

main()
  .catch((err) => {
    process.stderr.write(`bench failed: ${(err && err.stack) || err}\n`)
    process.exitCode = 1
  })
  .finally(() => {
    cleanup()
    // Our own module may hold nothing now; exit even if a library left a timer behind.
    setImmediate(() => process.exit())
  })
