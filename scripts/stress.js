#!/usr/bin/env node
'use strict'
// `npm run stress`: N processes x M critical sections on a handful of session
// files while a chaos loop SIGKILLs random processes (holders or waiters) and
// restarts them. Every critical section, under the lock:
//   1. appends an ENTER record to the session's journal (who, token, the
//      counter state it read),
//   2. read-modify-writes the counter file (one fixed-width pwrite that also
//      names the writer, so a holder killed between its write and its exit
//      record is still accounted for exactly),
//   3. appends an EXIT record.
// The chaos loop mostly kills the process its pick of lock file names (a
// holder, or one about to hand over), otherwise any process.
// At the end the journals are replayed per session:
//   - no overlap: an ENTER may follow an ENTER without EXIT only if that holder
//     was SIGKILLed by the chaos loop before the new ENTER (monotonic clock);
//     an EXIT must belong to the current holder;
//   - no lost update: every ENTER reads exactly the state the previous holder
//     left (its write, or, for a killed holder, either its write or nothing);
//   - the counter equals the number of completed critical sections (EXITs)
//     plus the killed holders whose write landed;
//   - fencing tokens are unique and match the lock file on disk;
//   - no lock file survives a holder that exited normally, and none at all
//     once the final sweep has acquired and released every session;
//   - each worker keeps an active-session marker (trackActiveSession): those
//     of workers killed inside a section are recovered by
//     recoverOrphanedSessions, none twice, only killed workers' at all, and no
//     marker is left.
// Prints one summary line ending in "0 violations" or the count, exits 1 on any.
//
//   node scripts/stress.js [--procs 8] [--target 20000] [--sessions 4]
//        [--loops 2] [--kill-ms 60] [--no-chaos] [--quick] [--keep]
//        [--sabotage K]   (every K-th section skips the lock: must report violations)
//        [--legacy K] [--legacy-sections M]
//        [--backend postgres] (the PostgreSQL backend across two network-namespace
//                         hosts: a throwaway cluster in a third namespace, workers
//                         alternating between the hosts, each host with its own
//                         mount of the sessions, so only the database excludes them;
//                         docs/postgres.md)
//                         (K more processes run the old module's algorithm, the
//                         test suite's stand-in in __test__/fixtures/legacy-lock.js,
//                         M sections each: a mixed fleet, docs/spec.md "Old lock files")
//
// --quick (run by `npm test`): 4 processes, 3,000 sections, faster kills.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')

const USAGE = `usage: node scripts/stress.js [--procs 8] [--target 20000] [--sessions 4] [--loops 2]
       [--kill-ms 60] [--no-chaos] [--quick] [--keep] [--sabotage K]
       [--legacy K] [--legacy-sections M] [--backend postgres]
  --backend postgres  lock through PostgreSQL, workers on two network-namespace hosts
  --quick          4 processes, 3,000 sections, faster kills (run by npm test)
  --sabotage K     every K-th section skips the lock (must report violations)
  --legacy K       K more processes run the old module's algorithm, M sections
                   each (default 150); overlaps are then classified by cause
  --keep           keep the working directory
Prints one summary line ending in the number of violations; exits 1 on any.`

const COUNTER_WIDTH = 64

function counterLine(v, wid, seq) {
  const s = `${String(v).padStart(12)} ${String(wid).padEnd(24)} ${String(seq).padStart(12)}`
  return (s + ' '.repeat(COUNTER_WIDTH - 1 - s.length) + '\n').slice(0, COUNTER_WIDTH)
}

function parseCounter(text) {
  const parts = text.trim().split(/\s+/)
  if (parts.length !== 3) return { v: NaN, wid: '?', seq: -1, raw: text }
  return { v: Number(parts[0]), wid: parts[1], seq: Number(parts[2]) }
}

// ---------------------------------------------------------------- worker

async function worker() {
  const legacy = process.env.SWL_STRESS_LEGACY === '1'
  // An old-module process (the test suite's stand-in for the TypeScript
  // module: exclusive create of a pid file, no OS lock, polling waiters).
  const swl = legacy ? null : require(path.join(__dirname, '..', 'index.js'))
  const old = legacy ? require(path.join(__dirname, '..', '__test__', 'fixtures', 'legacy-lock.js')) : null
  const dir = process.env.SWL_STRESS_DIR
  const sessions = Number(process.env.SWL_STRESS_SESSIONS)
  const remaining = Number(process.env.SWL_STRESS_REMAINING)
  const loops = Number(process.env.SWL_STRESS_LOOPS)
  const wid = process.env.SWL_STRESS_WID
  const counterFds = []
  const journalFds = []
  for (let s = 0; s < sessions; s++) {
    counterFds.push(fs.openSync(path.join(dir, `s${s}.counter`), 'r+'))
    journalFds.push(fs.openSync(path.join(dir, `s${s}.journal`), 'a'))
  }
  // An active-session marker for this worker's life: a killed worker leaves
  // it behind for recoverOrphanedSessions; a worker that finishes ends it.
  const session = legacy ? null : swl.trackActiveSession({ sessionId: wid, sessionFile: path.join(dir, 'markers', `${wid}.jsonl`) })
  let legacyN = 0
  // Each removal the old module makes (what it read, when it removed the
  // path) goes to s<k>.legacy, one write per record: the evidence that
  // classifies overlaps by cause.
  const legacyFds = legacy ? journalFds.map((_, s) => fs.openSync(path.join(dir, `s${s}.legacy`), 'a')) : []
  const trace = (e) => {
    const k = Number(/s(\d+)\.jsonl\.lock$/.exec(e.lockPath)?.[1])
    if (!Number.isInteger(k)) return
    const rec = { wid, t0: String(e.t0), t1: String(e.t1), read: e.read, reasons: e.reasons, ours: /"lock":\s*"os"/.test(e.text), text: e.text.slice(0, 120) }
    fs.writeSync(legacyFds[k], `${JSON.stringify(rec)}\n`)
  }
  const legacyLease = async (sessionFile) => {
    const l = await old.acquireLegacy({ sessionFile, timeoutMs: 300_000, trace })
    return { lockPath: l.lockPath, fencingToken: `legacy-${wid}-${++legacyN}`, release: l.release }
  }
  const buf = Buffer.alloc(COUNTER_WIDTH)
  let claimed = 0
  let seq = 0
  const now = () => process.hrtime.bigint().toString()
  // --sabotage K: every K-th section runs without the lock (proves the checker
  // catches overlaps and lost updates).
  const sabotage = Number(process.env.SWL_STRESS_SABOTAGE || 0)
  let fakes = 0
  const fakeLease = (sessionFile) => ({
    lockPath: `${fs.realpathSync(path.dirname(sessionFile))}/${path.basename(sessionFile)}.lock`,
    fencingToken: `fake-${wid}-${++fakes}`,
    release: async () => {},
  })

  async function loop() {
    while (claimed < remaining) {
      claimed++
      const s = Math.floor(Math.random() * sessions)
      const sessionFile = path.join(process.env.SWL_STRESS_MOUNT || dir, `s${s}.jsonl`)
      const acq = now()
      const lease =
        sabotage > 0 && claimed % sabotage === 0
          ? fakeLease(sessionFile)
          : legacy
            ? await legacyLease(sessionFile)
            : await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 120_000 })
      const my = ++seq
      const seen = now()
      // The lock file on disk must name this acquisition.
      let disk = null
      try {
        disk = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
      } catch (err) {
        disk = { error: String(err && err.code) }
      }
      fs.readSync(counterFds[s], buf, 0, COUNTER_WIDTH, 0)
      const read = parseCounter(buf.toString('latin1'))
      const enter = {
        t: 'E',
        wid,
        seq: my,
        tok: lease.fencingToken,
        mono: now(),
        read,
        // With a database backend the lease carries the database's token and
        // the local file its own (localFencingToken).
        diskTok: legacy
          ? lease.fencingToken
          : disk.fencingToken != null && disk.fencingToken === (lease.localFencingToken ?? lease.fencingToken)
            ? lease.fencingToken
            : (disk.fencingToken ?? null),
        diskPid: disk.pid ?? null,
        pid: process.pid,
        acq,
        seen,
        old: legacy,
      }
      fs.writeSync(journalFds[s], JSON.stringify(enter) + '\n')
      // Give the chaos loop (and the other processes) a chance to land inside.
      await new Promise((r) => setImmediate(r))
      const next = read.v + 1
      fs.writeSync(counterFds[s], counterLine(next, wid, my), 0, 'latin1')
      if (my % 2 === 0) await new Promise((r) => setImmediate(r))
      fs.writeSync(journalFds[s], JSON.stringify({ t: 'X', wid, seq: my, tok: lease.fencingToken, mono: now(), wrote: next }) + '\n')
      await lease.release()
      fs.writeSync(1, '.')
    }
  }
  const all = []
  for (let i = 0; i < loops; i++) all.push(loop())
  await Promise.all(all)
  if (session) await session.end('shutdown')
}

// ---------------------------------------------------------------- orchestrator

function parseArgs(argv) {
  const o = { procs: 8, target: 20_000, sessions: 4, loops: 2, killMs: 60, chaos: true, keep: false, quick: false, stallMs: 90_000, sabotage: 0, legacy: 0, legacySections: 150 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const num = () => Number(argv[++i])
    if (a === '--help' || a === '-h') {
      o.help = true
      return o
    } else if (a === '--procs') o.procs = num()
    else if (a === '--target') o.target = num()
    else if (a === '--sessions') o.sessions = num()
    else if (a === '--loops') o.loops = num()
    else if (a === '--kill-ms') o.killMs = num()
    else if (a === '--no-chaos') o.chaos = false
    else if (a === '--sabotage') o.sabotage = num()
    else if (a === '--legacy') o.legacy = num()
    else if (a === '--legacy-sections') o.legacySections = num()
    else if (a === '--keep') o.keep = true
    else if (a === '--backend') o.backend = argv[++i]
    else if (a === '--quick') {
      o.quick = true
      o.procs = 4
      o.target = 3_000
      o.killMs = 80
      o.stallMs = 25_000
    } else {
      o.bad = a
      return o
    }
  }
  return o
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.help || opts.bad) {
    if (opts.bad) console.error(`unknown argument ${opts.bad}`)
    console.log(USAGE)
    process.exitCode = opts.bad ? 2 : 0
    return
  }
  if (opts.backend !== undefined && opts.backend !== 'postgres') {
    console.error(`unknown backend ${opts.backend}`)
    process.exitCode = 2
    return
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-stress-'))
  fs.mkdirSync(path.join(dir, 'markers'))
  const pg = opts.backend === 'postgres' ? await startPostgresHosts(dir) : null
  try {
    await run(opts, dir, pg)
  } finally {
    if (pg) pg.stop()
  }
}

/**
 * --backend postgres: hosts a and b in network namespaces, a throwaway
 * cluster in a third one, and one mount of the sessions per host.
 */
async function startPostgresHosts(dir) {
  const support = await import(path.join(__dirname, '..', '__test__', 'support', 'postgres.mjs'))
  if (!support.pgAvailable('the stress run on PostgreSQL') || !support.netnsAvailable('the stress run on PostgreSQL')) {
    throw new Error('--backend postgres needs the PostgreSQL server binaries, root and ip netns')
  }
  const net = support.makeHosts(['a', 'b'])
  let cluster
  try {
    cluster = await support.startCluster({ netns: net.db.ns, host: net.db.addr })
  } catch (err) {
    net.teardown()
    throw err
  }
  const mounts = net.hosts.map((h) => {
    const m = path.join(dir, `mnt-${h.name}`)
    fs.mkdirSync(m)
    return m
  })
  return {
    mounts,
    /** argv prefix and env for worker `n`. */
    worker(n) {
      const h = net.hosts[n % net.hosts.length]
      return {
        prefix: ['ip', 'netns', 'exec', h.ns],
        env: {
          SESSION_WRITE_LOCK_BACKEND: cluster.url(),
          SESSION_WRITE_LOCK_SESSIONS_ROOT: mounts[n % mounts.length],
          SESSION_WRITE_LOCK_KEYSPACE: 'stress',
          SWL_STRESS_MOUNT: mounts[n % mounts.length],
        },
      }
    },
    stop() {
      cluster.stop()
      net.teardown()
    },
  }
}

async function run(opts, dir, pg) {
  for (let s = 0; s < opts.sessions; s++) {
    fs.writeFileSync(path.join(dir, `s${s}.counter`), counterLine(0, '-', 0))
    fs.writeFileSync(path.join(dir, `s${s}.journal`), '')
  }
  const t0 = Date.now()
  const perSlot = Math.ceil(opts.target / opts.procs)
  const slots = []
  const violations = []
  const kills = new Map() // wid -> { mono, pid }
  const pidsOf = new Map() // wid -> pid
  const legacyWids = new Set() // old-module workers (no markers)
  const crashed = new Set() // wids that failed on their own (already a violation)
  let restarts = 0
  let lastProgress = Date.now()
  let finished = false

  const violation = (msg) => {
    if (violations.length < 50) violations.push(msg)
    else violations.length++
  }

  await new Promise((resolveAll) => {
    let live = 0
    function start(slot) {
      const gen = slot.gen++
      const wid = `w${slot.id}.${gen}`
      const host = pg && !slot.legacy ? pg.worker(slot.id) : { prefix: [], env: {} }
      const argv = [...host.prefix, process.execPath, __filename, '--worker']
      const child = spawn(argv[0], argv.slice(1), {
        env: {
          ...process.env,
          ...host.env,
          SWL_STRESS_DIR: dir,
          SWL_STRESS_SESSIONS: String(opts.sessions),
          SWL_STRESS_REMAINING: String(slot.remaining),
          SWL_STRESS_LOOPS: String(slot.legacy ? 1 : opts.loops),
          SWL_STRESS_LEGACY: slot.legacy ? '1' : '0',
          SWL_STRESS_WID: wid,
          SWL_STRESS_SABOTAGE: String(opts.sabotage),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      live++
      slot.child = child
      slot.wid = wid
      if (slot.legacy) legacyWids.add(wid)
      pidsOf.set(wid, child.pid)
      let stderr = ''
      slot.done = 0 // sections this process finished: the chaos loop spares it until one
      child.stdout.on('data', (d) => {
        slot.remaining -= d.length
        slot.done += d.length
        lastProgress = Date.now()
      })
      child.stderr.on('data', (d) => {
        if (stderr.length < 4000) stderr += d
      })
      // 'close', not 'exit': on a loaded machine the last dots can arrive
      // after the process exited, and would then look like unfinished work.
      child.on('close', (code, signal) => {
        live--
        slot.child = null
        if (signal === 'SIGKILL' && kills.has(wid)) {
          if (slot.remaining > 0 && !finished) {
            restarts++
            start(slot)
          }
        } else if (code !== 0) {
          // A violation; the slot goes on (to find what else breaks).
          crashed.add(wid)
          violation(`worker ${wid} (pid ${child.pid}) failed: code=${code} signal=${signal} ${stderr.trim().split('\n').slice(0, 3).join(' | ')}`)
          if (slot.remaining > 0 && !finished && crashed.size < 20) {
            restarts++
            start(slot)
          }
        } else if (slot.remaining > 0) {
          violation(`worker ${wid} exited with ${slot.remaining} sections not done`)
        }
        if (live === 0) resolveAll()
      })
    }
    for (let i = 0; i < opts.procs + opts.legacy; i++) {
      const isLegacy = i >= opts.procs
      const slot = { id: i, gen: 0, remaining: isLegacy ? opts.legacySections : perSlot, child: null, wid: null, legacy: isLegacy }
      slots.push(slot)
      start(slot)
    }

    let chaosTimer = null
    const chaos = () => {
      chaosTimer = null
      if (finished) return
      if (Date.now() - lastProgress > opts.stallMs) {
        violation(`no progress for ${opts.stallMs}ms: stalled (killing everything)`)
        finished = true
        for (const s of slots) if (s.child) s.child.kill('SIGKILL')
        return
      }
      if (opts.chaos) {
        // Only a process that finished a section since it started: on a
        // loaded machine a restart can take longer than the kill interval,
        // and killing processes before they get anywhere would only measure
        // the machine (no progress at all), not the lock.
        const alive = slots.filter(
          (s) => s.child !== null && s.done > 0 && s.remaining > 0 && s.child.exitCode === null && !kills.has(s.wid),
        )
        // Mostly a current holder (the pid its lock file names), else anyone.
        let victim = null
        if (Math.random() < 0.75) {
          const k = Math.floor(Math.random() * opts.sessions)
          try {
            const base = pg ? pg.mounts[Math.floor(Math.random() * pg.mounts.length)] : dir
            const pid = JSON.parse(fs.readFileSync(path.join(base, `s${k}.jsonl.lock`), 'utf8')).pid
            victim = alive.find((s) => s.child.pid === pid) ?? null
          } catch {}
        }
        if (victim === null && alive.length > 0) victim = alive[Math.floor(Math.random() * alive.length)]
        if (victim !== null) {
          kills.set(victim.wid, { mono: process.hrtime.bigint(), pid: victim.child.pid })
          victim.child.kill('SIGKILL')
        }
      }
      chaosTimer = setTimeout(chaos, opts.chaos ? Math.random() * 2 * opts.killMs : 1000)
    }
    chaosTimer = setTimeout(chaos, opts.killMs)
    const stop = () => {
      finished = true
      if (chaosTimer) clearTimeout(chaosTimer)
    }
    // Stop the chaos once every slot is done (the exit handler resolves).
    const check = setInterval(() => {
      if (slots.every((s) => s.remaining <= 0) || finished) {
        stop()
        clearInterval(check)
      }
    }, 50)
  })
  finished = true
  const runMs = Date.now() - t0

  // ------------------------------------------------------------ verification
  const killedPids = new Set([...kills.values()].map((k) => k.pid))
  const tokens = new Set()
  let completed = 0
  let enters = 0
  let killedInside = 0
  let killedAfterWrite = 0
  let leftoverLocks = 0
  let counterTotal = 0
  const killedInsideWids = new Set() // killed inside a section: their session was live
  const swl = require(path.join(__dirname, '..', 'index.js'))

  // Mixed fleets (--legacy): overlaps classified by cause.
  const overlapCauses = new Map() // "<inside> inside, <entering> entered: <cause>" -> count
  let oursOverlaps = 0
  let oldOverlaps = 0
  let attributedLost = 0
  const classify = (key, ours, isOverlap = true) => {
    overlapCauses.set(key, (overlapCauses.get(key) || 0) + 1)
    if (!isOverlap) return
    if (ours) oursOverlaps++
    else oldOverlaps++
  }

  const implOf = (r) => (r.old ? 'old' : 'ours')
  const minBig = (a, b) => (BigInt(a) < BigInt(b) ? a : b)
  /**
   * Replay one session's journal with old-module contenders. Every section
   * entered while another (not killed before) was inside is an overlap; its
   * cause is read from the old module's removals (s<k>.legacy): a removal of
   * the path after the inside holder began acquiring and before the entering
   * one entered means the old module deleted a live holder's file; what it had
   * read says why (the file gone after its existence check, a file between
   * its create and its write, a torn file). Overlaps that no removal by the
   * old module explains, or that began with it reading a torn file of ours,
   * are this package's: violations. Lost updates inside an overlap caused by
   * the old module are counted with it.
   */
  /** Session `s`'s journal as records; a torn line (never expected: a record
   *  is one write(2), which SIGKILL does not tear) is a violation. */
  let tornByKill = 0
  function readJournal(s) {
    const lines = fs.readFileSync(path.join(dir, `s${s}.journal`), 'utf8').split('\n').filter(Boolean)
    const records = []
    for (let i = 0; i < lines.length; i++) {
      try {
        records.push(JSON.parse(lines[i]))
      } catch {
        // A SIGKILL can cut one write() short at a page boundary: the killed
        // writer's record is then lost and the next record follows it on the
        // same line. Only a writer the chaos loop killed may leave one.
        const cut = lines[i].lastIndexOf('{"t":')
        const who = /"wid":"([^"]+)"/.exec(lines[i].slice(0, cut))?.[1]
        let tail = null
        try {
          tail = cut > 0 ? JSON.parse(lines[i].slice(cut)) : null
        } catch {}
        if (tail !== null && who !== undefined && kills.has(who)) {
          tornByKill++
          records.push(tail)
        } else {
          violation(`s${s}: torn journal line ${i}: ${lines[i].slice(0, 80)}`)
        }
      }
    }
    return records
  }

  async function replayMixed(s) {
    const out = { completed: 0, enters: 0, killedInside: 0, killedAfterWrite: 0, leftover: 0, counter: 0 }
    const records = readJournal(s)
    let removals = []
    try {
      removals = fs
        .readFileSync(path.join(dir, `s${s}.legacy`), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    } catch {}
    const removalIn = (after, before) =>
      removals.filter((R) => BigInt(R.t1) > BigInt(after) && BigInt(R.t0) < BigInt(before))
    const why = (R) =>
      R.read === 'release'
        ? "old module's release removed the path without checking that it still named its own file"
        : R.read === 'enoent'
        ? 'old module removed the path after its existence check found the file gone'
        : R.read === 'empty'
          ? "old module removed a file between another old holder's create and write"
          : R.read === 'invalid'
            ? `old module removed a file it could not parse (${R.ours ? 'ours, torn' : 'not ours'})`
            : `old module removed a file it judged stale (${R.reasons.join(',')})`
    const keyOf = (r) => `${r.wid}#${r.seq}`
    const same = (a, b) => a.v === b.v && a.wid === b.wid && a.seq === b.seq
    const insiders = new Map()
    const entries = new Map()
    const involved = new Set() // sections in an overlap caused by the old module
    let expected = { v: 0, wid: '-', seq: 0 }
    let writes = 0
    let tainted = false
    // A process of ours hands the lock to its next in-process waiter
    // without reopening the path: a chain of its consecutive sections holds
    // one file. `chain` = when that file was acquired.
    let lastPid = null
    let chainAcq = null
    // No removal by the old module after the holder read its own lock file,
    // but one earlier in its process's run of consecutive sections: a file
    // of ours that was already gone (an in-process hand-off without a path
    // check, before the engine fix), or a check-then-unlink of ours (reclaim
    // of a dead file, release) whose check passed before the old module's
    // removal and whose unlink then took the next holder's file. Counted as
    // ours.
    const HANDOFF =
      "ours, after an old-module removal: a hand-off of a file already gone, or a check-then-unlink of ours that took the next holder's file"
    const overlap = (A, B, hidden = '') => {
      // A removal after A read its lock file (its file was at the path: its
      // own disk check said so), or the one that had already replaced A's
      // file before A read it.
      // An old holder's file may go between its create and its record: its
      // window starts when it began acquiring (its own removals excepted).
      const Rs = A.old ? removalIn(A.acq, B.mono).filter((R) => R.wid !== A.wid || BigInt(R.t0) > BigInt(A.mono)) : removalIn(A.seen ?? A.mono, B.mono)
      if (Rs.length === 0 && A.replacedBy) Rs.push(A.replacedBy)
      const pair = `${hidden}${implOf(A)} inside, ${implOf(B)} entered`
      const torn = Rs.find((R) => R.read === 'invalid' && R.ours)
      const chained = Rs.length === 0 ? removalIn(minBig(A.chain, B.chain), B.mono) : []
      if (torn) {
        classify(`${pair}: ${why(torn)}`, true)
        violation(`s${s}: ${keyOf(B)} entered while ${keyOf(A)} was inside: ${why(torn)}`)
      } else if (chained.length > 0 && (!A.old || !B.old)) {
        classify(`${pair}: ${HANDOFF}`, true)
        violation(`s${s}: ${keyOf(B)} entered while ${keyOf(A)} was inside: ${HANDOFF}`)
      } else if (Rs.length > 0) {
        classify(`${pair}: ${why(Rs[0])}`, false)
        involved.add(keyOf(A))
        involved.add(keyOf(B))
        tainted = true
      } else if (A.old && B.old) {
        classify(`${pair}: old vs old, no removal seen`, false)
        involved.add(keyOf(A))
        involved.add(keyOf(B))
        tainted = true
      } else {
        classify(`${pair}: nothing the old module did explains it`, true)
        violation(`s${s}: ${keyOf(B)} entered while ${keyOf(A)} (not killed) was inside: overlap (${pair})`)
      }
    }
    const settle = (I, read) => {
      out.killedInside++
      killedInsideWids.add(I.wid)
      const wroteState = { v: expected.v + 1, wid: I.wid, seq: I.seq }
      if (read && same(read, wroteState)) {
        out.killedAfterWrite++
        writes++
        expected = wroteState
      }
      insiders.delete(keyOf(I))
    }
    for (const r of records) {
      if (r.t === 'E') {
        out.enters++
        if (r.pid === lastPid && !r.old) r.chain = chainAcq
        else chainAcq = r.chain = r.acq
        lastPid = r.pid
        if (tokens.has(r.tok)) violation(`s${s}: fencing token ${r.tok} reused`)
        tokens.add(r.tok)
        for (const I of Array.from(insiders.values())) {
          const k = kills.get(I.wid)
          if ((k && BigInt(k.mono) <= BigInt(r.mono)) || (!k && crashed.has(I.wid))) settle(I, r.read)
          else overlap(I, r)
        }
        if (!r.old && (r.diskTok !== r.tok || r.diskPid !== r.pid)) {
          const Rs = removalIn(r.acq, r.mono)
          if (Rs.length > 0) {
            r.replacedBy = Rs[0]
            const torn = Rs[0].read === 'invalid' && Rs[0].ours
            classify(`(not an overlap by itself) ours entered, its file gone or replaced before it read it: ${why(Rs[0])}`, torn, false)
            if (torn) violation(`s${s}: ${keyOf(r)}: ${why(Rs[0])}`)
            involved.add(keyOf(r))
            tainted = true
          } else if (removalIn(r.chain, r.mono).length > 0) {
            classify(`(not an overlap by itself) ours entered, its file gone or replaced before it read it: ${HANDOFF}`, true, false)
            violation(`s${s}: ${keyOf(r)}: lock file names token ${r.diskTok}/pid ${r.diskPid}: ${HANDOFF}`)
          } else {
            violation(`s${s}: lock file names token ${r.diskTok}/pid ${r.diskPid}, holder has ${r.tok}/pid ${r.pid}`)
          }
        }
        if (!same(r.read, expected)) {
          // A section that read a state older than the last write held the
          // lock while that write's section ran (an overlap the journal's
          // order hides: it entered before the other's exit but logged its
          // entry after it): classify it like any other.
          const W = entries.get(`${expected.wid}#${expected.seq}`)
          if (W && !involved.has(keyOf(r)) && !involved.has(keyOf(W)) && BigInt(W.mono) > BigInt(r.acq)) overlap(W, r, 'hidden: ')
          if (involved.has(keyOf(r)) || involved.has(`${expected.wid}#${expected.seq}`) || involved.has(`${r.read.wid}#${r.read.seq}`)) {
            attributedLost++
          } else {
            violation(`s${s}: ${keyOf(r)} read ${JSON.stringify(r.read)}, expected ${JSON.stringify(expected)}: lost update`)
          }
          expected = r.read
        }
        insiders.set(keyOf(r), r)
        entries.set(keyOf(r), r)
      } else if (r.t === 'X') {
        if (!insiders.delete(keyOf(r))) violation(`s${s}: exit of ${keyOf(r)} without its entry`)
        if (r.wrote !== expected.v + 1 && !involved.has(keyOf(r))) {
          violation(`s${s}: ${keyOf(r)} wrote ${r.wrote}, expected ${expected.v + 1}`)
        }
        expected = { v: r.wrote, wid: r.wid, seq: r.seq }
        writes++
        out.completed++
      }
    }
    const sessionFile = path.join(dir, `s${s}.jsonl`)
    const lockPath = `${fs.realpathSync(dir)}/s${s}.jsonl.lock`
    if (fs.existsSync(lockPath)) out.leftover++
    // Final sweep (waits out an old holder's payload-less file if one was
    // killed between its create and its write).
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    const final = parseCounter(fs.readFileSync(path.join(dir, `s${s}.counter`), 'latin1'))
    await lease.release()
    for (const I of Array.from(insiders.values())) {
      if (kills.has(I.wid) || crashed.has(I.wid)) settle(I, final)
      else violation(`s${s}: ${keyOf(I)} (not killed) never exited`)
    }
    out.counter = Number.isFinite(final.v) ? final.v : 0
    if (final.v !== writes && !tainted) {
      violation(`s${s}: counter ${final.v} != ${writes} completed sections + landed writes of killed holders`)
    }
    return out
  }

  for (let s = 0; s < opts.sessions; s++) {
    if (opts.legacy > 0) {
      const r = await replayMixed(s)
      completed += r.completed
      enters += r.enters
      killedInside += r.killedInside
      killedAfterWrite += r.killedAfterWrite
      leftoverLocks += r.leftover
      counterTotal += r.counter
      continue
    }
    const records = readJournal(s)
    let expected = { v: 0, wid: '-', seq: 0 }
    let inside = null
    let sessionWrites = 0
    const same = (a, b) => a.v === b.v && a.wid === b.wid && a.seq === b.seq
    // A killed holder (no EXIT) either wrote the counter or did not.
    const settleKilled = (read, where) => {
      const k = kills.get(inside.wid)
      if (!k && crashed.has(inside.wid)) {
        // Its crash is reported already; the kernel freed its lock when it died.
      } else if (!k) {
        violation(`s${s}: ${where} while ${inside.wid}#${inside.seq} (not killed) was inside: overlap`)
      } else if (where !== 'final sweep' && BigInt(k.mono) > BigInt(read.mono)) {
        violation(`s${s}: entered before the kill of ${inside.wid}#${inside.seq}: overlap`)
      }
      killedInside++
      killedInsideWids.add(inside.wid)
      const wroteState = { v: expected.v + 1, wid: inside.wid, seq: inside.seq }
      if (same(read.read, wroteState)) {
        killedAfterWrite++
        sessionWrites++
        expected = wroteState
      } else if (!same(read.read, expected)) {
        violation(`s${s}: ${where} read ${JSON.stringify(read.read)} after killed ${inside.wid}#${inside.seq}, expected ${JSON.stringify(expected)}: lost update`)
        expected = read.read
      }
      inside = null
    }
    for (const r of records) {
      if (r.t === 'E') {
        enters++
        if (tokens.has(r.tok)) violation(`s${s}: fencing token ${r.tok} reused`)
        tokens.add(r.tok)
        if (r.diskTok !== r.tok || r.diskPid !== r.pid) {
          violation(`s${s}: lock file names token ${r.diskTok}/pid ${r.diskPid}, holder has ${r.tok}/pid ${r.pid}`)
        }
        if (inside !== null) settleKilled(r, `${r.wid}#${r.seq} entered`)
        else if (!same(r.read, expected)) {
          violation(`s${s}: ${r.wid}#${r.seq} read ${JSON.stringify(r.read)}, expected ${JSON.stringify(expected)}: lost update`)
          expected = r.read
        }
        inside = r
      } else if (r.t === 'X') {
        if (inside === null || inside.wid !== r.wid || inside.seq !== r.seq || inside.tok !== r.tok) {
          violation(`s${s}: exit of ${r.wid}#${r.seq} while ${inside ? `${inside.wid}#${inside.seq}` : 'nobody'} was inside`)
        } else if (r.wrote !== expected.v + 1) {
          violation(`s${s}: ${r.wid}#${r.seq} wrote ${r.wrote}, expected ${expected.v + 1}`)
        }
        expected = { v: r.wrote, wid: r.wid, seq: r.seq }
        sessionWrites++
        completed++
        inside = null
      }
    }
    // A lock file still on disk must belong to a killed process (each host's
    // mount with --backend; the sweep below reclaims every one of them).
    const sessionFile = path.join(dir, `s${s}.jsonl`)
    const bases = pg ? pg.mounts : [dir]
    for (const base of bases) {
    const lockPath = `${fs.realpathSync(base)}/s${s}.jsonl.lock`
    if (fs.existsSync(lockPath)) {
      leftoverLocks++
      let p = null
      try {
        p = JSON.parse(fs.readFileSync(lockPath, 'utf8'))
      } catch {}
      if (!p && opts.legacy > 0) {
        // An old-module process killed between its create and its write (its
        // known window; ours never leaves an empty file): reclaimed after grace.
      } else if (!p || !killedPids.has(p.pid)) {
        violation(`s${s}: lock file left by pid ${p && p.pid}, which was not killed: leak`)
      }
    }
    if (base !== dir) {
      // This process has no backend: a file-only sweep of the host's mount.
      const l = await swl.acquireSessionWriteLock({ sessionFile: path.join(base, `s${s}.jsonl`), timeoutMs: 30_000 })
      await l.release()
    }
    }
    // Final sweep: acquire (reclaiming a killed holder's file), read, release.
    const lease = await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    const final = parseCounter(fs.readFileSync(path.join(dir, `s${s}.counter`), 'latin1'))
    await lease.release()
    if (inside !== null) settleKilled({ read: final, mono: null }, 'final sweep')
    else if (!same(final, expected)) {
      violation(`s${s}: final counter ${JSON.stringify(final)}, expected ${JSON.stringify(expected)}`)
    }
    counterTotal += Number.isFinite(final.v) ? final.v : 0
    if (final.v !== sessionWrites) {
      violation(`s${s}: counter ${final.v} != ${sessionWrites} completed sections + landed writes of killed holders`)
    }
  }
  // Markers: the killed workers' are orphans, recovered once; no other is left.
  const markersDir = path.join(dir, 'markers')
  const { recovered } = await swl.recoverOrphanedSessions({ sessionsDir: markersDir })
  const recoveredIds = new Set(recovered.map((e) => e.sessionId))
  for (const e of recovered) {
    if (!kills.has(e.sessionId) && !crashed.has(e.sessionId)) violation(`marker of ${e.sessionId} (not killed) was orphaned`)
    if (e.reason !== 'unknown' || !e.recovered || e.recovered.pid !== pidsOf.get(e.sessionId)) {
      violation(`recovered event for ${e.sessionId} is wrong: ${JSON.stringify(e)}`)
    }
  }
  if (recoveredIds.size !== recovered.length) violation('an orphaned session was recovered twice')
  for (const wid of killedInsideWids) {
    if (kills.has(wid) && !legacyWids.has(wid) && !recoveredIds.has(wid)) violation(`${wid}, killed inside a section, left no recoverable marker`)
  }
  const leftMarkers = fs.readdirSync(markersDir)
  if (leftMarkers.length > 0) violation(`markers left: ${leftMarkers.join(', ')}`)
  const left = [dir, ...(pg ? pg.mounts : [])].flatMap((d) =>
    fs.readdirSync(d).filter((f) => f.endsWith('.lock') || f.endsWith('.active')),
  )
  if (left.length > 0) violation(`left behind after everyone is gone: ${left.join(', ')}`)
  if (completed < opts.target) violation(`only ${completed} sections completed (target ${opts.target})`)

  const line =
    `stress${pg ? ' (PostgreSQL backend, 2 network-namespace hosts)' : ''}: ${opts.procs} processes x ${opts.loops} loops${opts.legacy ? ` + ${opts.legacy} old-module processes` : ''}, ${opts.sessions} sessions, ` +
    `${completed} critical sections completed (${enters} entered), counters sum ${counterTotal} ` +
    `(= ${completed} completed + ${killedAfterWrite} writes of killed holders), ${kills.size} SIGKILLs ` +
    `(${restarts} restarts, ${killedInside} inside a section), ` +
    `${leftoverLocks} lock files left by killed holders reclaimed, ${recovered.length} orphaned markers recovered, ` +
    `${tokens.size} unique fencing tokens, ` +
    (tornByKill > 0 ? `${tornByKill} journal records cut short by a SIGKILL, ` : '') +
    `${(runMs / 1000).toFixed(1)}s, ${violations.length} violations`
  console.log(line)
  if (opts.legacy > 0) {
    console.log(`  overlaps with old-module contenders: ${oursOverlaps + oldOverlaps} seen, ${oursOverlaps} caused by this package, ${oldOverlaps} by the old module (${attributedLost} lost updates inside those)`)
    for (const [k, n] of [...overlapCauses].sort((a, b) => b[1] - a[1])) console.log(`    ${String(n).padStart(5)}  ${k}`)
  }
  for (const v of violations.slice(0, 50)) console.log(`  violation: ${v}`)
  if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true })
  else console.log(`  kept ${dir}`)
  process.exitCode = violations.length === 0 ? 0 : 1
}

if (process.argv[2] === '--worker') {
  worker().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${err && err.stack}\n`)
      process.exit(3)
    },
  )
} else {
  main().catch((err) => {
    console.error(err)
    process.exit(2)
  })
}
