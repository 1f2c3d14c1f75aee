'use strict'
// Bench child process: takes one JSON command per line on stdin, answers one JSON line
// per command on stdout. Exits when stdin closes (so it can never outlive the bench).
// Timestamps are performance.timeOrigin + performance.now(): wall-clock milliseconds
// with sub-microsecond resolution, comparable between processes on one machine.
//
//   {id, op:'acquire', impl, file, wait, stale}  -> {id, ok, t, m}   t = when acquire resolved
//   {id, op:'release', impl, file}               -> {id, ok, t, m}   t = just before release()
//   {id, op:'watch', file}                       -> {id, ok, t, m}   t = a promise resolved by the first
//        fs.watch event of `file` ran its continuation (a bare Node waiter: no lock)
//   (m: the same instant on CLOCK_MONOTONIC in µs, process.hrtime)
//   {id, op:'cpu'}                               -> {id, ok, user, system}  (µs, all threads)
//   {id, op:'many', impl, dir, n, cold}          -> {id, ok, ms, fdBefore, fdAfter, rssBefore, rssAfter}
//        (cold: no warm-up round and no garbage collection around the figures)
//   {id, op:'loop', impl, file, n, idleMs, reentrant} -> {id, ok, samples}  acquire + release n times,
//        each after idleMs of idle (µs per call; reentrant: inside an outer hold of the same lock)
//   {id, op:'fifo', impl, file, waiters, rounds} -> {id, ok, ...}  scenario (e), see fifo.js

const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const { IMPLS } = require('./impls')
const { fifoRun } = require('./fifo')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const now = () => performance.timeOrigin + performance.now()
// CLOCK_MONOTONIC in µs, the clock bench/bare stamps with (a cross-check of `t`).
const mono = () => Number(process.hrtime.bigint()) / 1e3
const held = new Map() // `${impl}\0${file}` -> release()

function send(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function fdCount() {
  return fs.readdirSync('/proc/self/fd').length
}

async function many({ impl, dir, n, cold }) {
  const im = IMPLS[impl]
  im.load()
  if (cold) {
    const files = []
    for (let i = 0; i < n; i++) files.push(path.join(dir, `s${i}.jsonl`))
    const fdBefore = fdCount()
    const rssBefore = process.memoryUsage().rss
    const t0 = performance.now()
    const releases = await Promise.all(files.map((f) => im.acquire(f)))
    const ms = performance.now() - t0
    const fdAfter = fdCount()
    const rssAfter = process.memoryUsage().rss
    await Promise.all(releases.map((r) => r()))
    return { ms, fdBefore, fdAfter, rssBefore, rssAfter }
  }
  // Warm the implementation with one identical round on other files (lazy
  // initialisation and V8's baseline tiers are not part of the figure: a gateway
  // locks sessions all day). Every implementation gets the same warm-up.
  const warmFiles = []
  for (let i = 0; i < n; i++) warmFiles.push(path.join(dir, `warm${i}.jsonl`))
  const warmReleases = await Promise.all(warmFiles.map((f) => im.acquire(f)))
  await Promise.all(warmReleases.map((r) => r()))
  const files = []
  for (let i = 0; i < n; i++) files.push(path.join(dir, `s${i}.jsonl`))
  if (global.gc) global.gc()
  const fdBefore = fdCount()
  const rssBefore = process.memoryUsage().rss
  const t0 = performance.now()
  const releases = await Promise.all(files.map((f) => im.acquire(f)))
  const ms = performance.now() - t0
  const fdAfter = fdCount()
  if (global.gc) global.gc()
  const rssAfter = process.memoryUsage().rss
  await Promise.all(releases.map((r) => r()))
  return { ms, fdBefore, fdAfter, rssBefore, rssAfter }
}

async function handle(msg) {
  const key = `${msg.impl}\0${msg.file}`
  switch (msg.op) {
    case 'acquire': {
      const rel = await IMPLS[msg.impl].acquire(msg.file, { wait: msg.wait !== false, stale: msg.stale })
      const t = now()
      const m = mono()
      held.set(key, rel)
      return { t, m }
    }
    case 'watch': {
      // A bare Node waiter, for scale: no lock, an fs.watch (inotify through
      // libuv) whose first event resolves a promise; t/m stamped in its
      // continuation, as 'acquire' stamps after its promise.
      let w
      await new Promise((resolve) => {
        w = fs.watch(msg.file, resolve)
      })
      const t = now()
      const m = mono()
      w.close()
      return { t, m }
    }
    case 'release': {
      const rel = held.get(key)
      held.delete(key)
      const m = mono()
      const t = now()
      await rel()
      return { t, m }
    }
    case 'cpu':
      return process.cpuUsage()
    case 'load':
      IMPLS[msg.impl].load()
      return {}
    case 'many':
      return many(msg)
    case 'loop': {
      const im = IMPLS[msg.impl]
      const outer = msg.reentrant ? await im.acquire(msg.file, { reentrant: true }) : null
      const samples = []
      for (let i = 0; i < msg.n; i++) {
        if (msg.idleMs > 0) await sleep(msg.idleMs)
        const t0 = process.hrtime.bigint()
        const rel = await im.acquire(msg.file, { reentrant: msg.reentrant === true })
        await rel()
        samples.push(Number(process.hrtime.bigint() - t0) / 1000)
      }
      if (outer) await outer()
      return { samples }
    }
    case 'fifo':
      return fifoRun(msg.impl, msg.file, msg.waiters, msg.rounds)
    default:
      throw new Error(`unknown op ${msg.op}`)
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return
  }
  handle(msg).then(
    (r) => send({ id: msg.id, ok: true, ...r }),
    (err) => send({ id: msg.id, ok: false, error: String((err && err.stack) || err) }),
  )
})
rl.on('close', () => process.exit(0))
send({ ready: true, pid: process.pid })
