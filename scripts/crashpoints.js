#!/usr/bin/env node
'use strict'
// `npm run crashpoints`: a crash-point proof for the lock and the session
// markers (see docs/crashpoints.md).
//
// For each operation below, a victim process sets everything up, then waits.
// `strace` attaches to the thread that will do the work, and the victim is
// told to go. A first, clean run (discovery) records every system call the
// operation makes on our files (a path in the session directory, or a
// descriptor opened on one), with its occurrence number among the calls of
// that name on that thread since the attach. Then, for every such call, a
// fresh victim runs the operation again with that one call
//   (a) made to kill the process: `-e inject=<call>:signal=KILL:when=<n>`
//   (b) made to fail: `-e inject=<call>:error=<E>:when=<n>` for ENOSPC, EIO,
//       EMFILE, EINTR, EACCES,
// and the harness checks what is left:
//   - no empty or invalid lock file or marker (a complete one, or none);
//   - inspectLockFile tells the truth about a file left behind: not held,
//     and stale (it would be removed) since its owner is gone;
//   - another process (this one) acquires the session with timeoutMs: 50;
//   - a tracked session is recovered exactly once by recoverOrphanedSessions
//     in another process (this one), twice asked;
//   - a failure surfaced as a coded error (code and syscall; a warning naming
//     the code for marker calls, which never throw) with nothing left behind:
//     no lock file or marker, no descriptor (counted in /proc/self/fd).
// The injected call is verified in strace's own log, so a cell never passes
// because the injection missed. Prints a table (call x outcome) and exits 1
// on any bad outcome, known ones included.
//
//   node scripts/crashpoints.js [--quick] [--only op,...] [--jobs N] [--json]
//        [--verbose]
// --quick (run by `npm test`): every call of every operation killed, and
// one error (EIO) on every call; it says which faults it left out.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const ERRORS = ['ENOSPC', 'EIO', 'EMFILE', 'EINTR', 'EACCES']
const SESSION = 's.jsonl'
const SESSION_ID = 'crash-session'

// ------------------------------------------------------------------ victim
//
// node crashpoints.js --victim <op> <dir>
// Prints one JSON line {ready, fdBase} once set up, reads "go", runs the
// operation, prints one JSON result line, then waits to be killed.

function victim(op, dir) {
  const swl = require(ROOT)
  const file = path.join(dir, SESSION)
  const lockPath = `${file}.lock`
  const markerPath = `${file}.active`
  const warnings = []
  const origWrite = process.stderr.write.bind(process.stderr)
  process.stderr.write = (chunk, ...rest) => {
    warnings.push(String(chunk))
    return origWrite(chunk, ...rest)
  }
  const fdCount = () => fs.readdirSync('/proc/self/fd').length
  const describe = (e) =>
    e && { name: e.name, code: e.code ?? null, syscall: e.syscall ?? null, path: e.path ?? null, message: String(e.message) }
  const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`)

  ;(async () => {
    // Warm up: load everything lazy (addon, identity, directory cache,
    // session machinery) so that the operation's window holds only its own
    // calls.
    const warm = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, 'warm.jsonl') })
    await warm.release()
    const ws = swl.trackActiveSession({ sessionId: 'warm', sessionFile: path.join(dir, 'warm.jsonl') })
    ws.update({ messageCount: 1 })
    ws.forget()
    swl.onSessionEnd(() => {})

    let lease = null
    let session = null
    let pending = null
    if (op === 'release' || op === 'handoff') lease = await swl.acquireSessionWriteLock({ sessionFile: file })
    if (op === 'handoff') {
      // A waiter in the same process whose payload renders shorter (no
      // maxHoldMs): the hand-off rewrites the file in place and trims it.
      pending = swl.acquireSessionWriteLock({ sessionFile: file, maxHoldMs: Infinity, timeoutMs: 60_000 })
      pending.catch(() => {})
      await new Promise((r) => setTimeout(r, 50))
    }
    if (op === 'marker-update') {
      session = swl.trackActiveSession({ sessionId: SESSION_ID, sessionFile: file, messageCount: 1_000_000 })
    }
    const fdBase = fdCount()
    warnings.length = 0
    out({ ready: true, pid: process.pid, fdBase })
    process.stdin.once('data', async () => {
      let result = 'ok'
      let error = null
      try {
        if (op === 'acquire' || op === 'acquire-portable') {
          lease = await swl.acquireSessionWriteLock({ sessionFile: file, timeoutMs: 2000 })
        } else if (op === 'release') {
          await lease.release()
        } else if (op === 'handoff') {
          await lease.release()
          lease = await pending
        } else if (op === 'marker-write') {
          session = swl.trackActiveSession({ sessionId: SESSION_ID, sessionFile: file, messageCount: 3 })
        } else if (op === 'marker-update') {
          session.update({ messageCount: 7 })
        }
      } catch (e) {
        result = 'error'
        error = describe(e)
      }
      // The end of the operation's window (the checks below make calls of
      // their own).
      out({ phase: 'done' })
      out({
        result,
        error,
        fdDelta: fdCount() - fdBase,
        lockExists: fs.existsSync(lockPath),
        markerExists: fs.existsSync(markerPath),
        held: lease !== null && (() => {
          try {
            lease.assertOwned()
            return true
          } catch {
            return false
          }
        })(),
        warnings: warnings.join(''),
      })
    })
  })().catch((e) => {
    out({ fatal: String((e && e.stack) || e) })
    process.exit(3)
  })
}

// ------------------------------------------------------------------ harness

const OPS = {
  acquire: { env: {}, lock: true },
  'acquire-portable': { env: { SESSION_WRITE_LOCK_PORTABLE_CREATE: '1' }, lock: true },
  handoff: { env: {}, lock: true },
  release: { env: {}, lock: true },
  'marker-write': { env: {}, marker: true },
  'marker-update': { env: {}, marker: true },
}

/**
 * Cells whose bad outcome has a known, still-open cause: each entry is
 * { op, call?, fault?, why } (regexps). They still count as bad (the run
 * exits 1); the mark only says the cause is understood. Empty: the last known
 * cause (an fstat after the new file was already linked or swapped into
 * place) is fixed, and the history is in docs/crashpoints.md.
 */
const KNOWN_BAD = []

function knownBad(op, call, fault) {
  const is = (m, v) => (m instanceof RegExp ? m.test(v) : m === v)
  return KNOWN_BAD.find((k) => is(k.op, op) && (!k.call || k.call.test(call)) && (!k.fault || k.fault.test(fault))) || null
}

function parseArgs(argv) {
  const o = { quick: false, only: null, jobs: 2, json: false, verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') o.quick = true
    else if (a === '--only') o.only = argv[++i].split(',')
    else if (a === '--jobs') o.jobs = Math.max(1, Number(argv[++i]) || 1)
    else if (a === '--json') o.json = true
    else if (a === '--verbose') o.verbose = true
    else if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/crashpoints.js [--quick] [--only op,...] [--jobs N] [--json] [--verbose]')
      console.log(`operations: ${Object.keys(OPS).join(', ')}`)
      process.exit(0)
    } else {
      console.error(`unknown argument ${a} (see --help)`)
      process.exit(2)
    }
  }
  return o
}

function lines(stream) {
  let buf = ''
  const waiters = []
  const queue = []
  stream.setEncoding('utf8')
  stream.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (waiters.length) waiters.shift().resolve(l)
      else queue.push(l)
    }
  })
  stream.on('end', () => {
    while (waiters.length) waiters.shift().resolve(null)
  })
  return () =>
    queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push({ resolve }))
}

function withTimeout(p, ms, what) {
  let t
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

function startVictim(op, dir) {
  const child = spawn(process.execPath, [__filename, '--victim', op, dir], {
    env: { ...process.env, ...OPS[op].env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const next = lines(child.stdout)
  return { child, exited, next, stderr: () => stderr }
}

/** Resolves once every thread of `pid` (or only `tid`) has a tracer. */
async function waitTraced(pid, tid, follow) {
  const until = Date.now() + 20_000
  for (;;) {
    let all = true
    let tids = []
    try {
      tids = follow ? fs.readdirSync(`/proc/${pid}/task`) : [String(tid)]
    } catch {}
    for (const t of tids) {
      try {
        const st = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')
        if (/^TracerPid:\s+0$/m.test(st)) all = false
      } catch {}
    }
    if (all) return
    if (Date.now() > until) throw new Error('strace did not attach')
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Attach strace to `tid` (and its threads with -f); resolves once attached. */
function attach(tid, args, logFile, follow, pid = tid) {
  const st = spawn('strace', [...(follow ? ['-f'] : []), '-p', String(tid), '-o', logFile, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  st.stderr.setEncoding('utf8')
  const exited = new Promise((resolve) => st.on('exit', (code, signal) => resolve({ code, signal, err })))
  const attached = new Promise((resolve, reject) => {
    st.stderr.on('data', (d) => {
      err += d
      if (/attached/.test(err)) resolve()
    })
    exited.then((r) => reject(new Error(`strace ended before attaching: ${r.code} ${r.err}`)))
  })
  attached.catch(() => {})
  const all = withTimeout(attached, 20_000, 'strace attach').then(() => waitTraced(pid, tid, follow))
  return { st, attached: all, exited }
}

const tempRoot = () => fs.mkdtempSync(path.join(os.tmpdir(), 'swl-crashpoints-'))

/** strace -o line: "<tid> <name>(<args>) = <ret>" (with -f) or "<name>(...) = ...". */
function parseStraceLine(l) {
  const m = /^(?:(\d+)\s+)?([a-z_0-9]+)\((.*)$/.exec(l)
  if (!m) return null
  return { tid: m[1] ? Number(m[1]) : null, name: m[2], rest: m[3] }
}

/**
 * strace's log as calls in entry order: with several threads, a call is
 * split into "name(args <unfinished ...>" and "<... name resumed>rest";
 * the two halves are joined at the entry's place.
 */
function straceCalls(text) {
  const out = []
  const open = new Map()
  for (const l of text.split('\n')) {
    const r = /^(?:(\d+)\s+)?<\.\.\. ([a-z_0-9]+) resumed>(.*)$/.exec(l)
    if (r) {
      const e = open.get(r[1] || '')
      if (e && e.name === r[2]) {
        e.rest += r[3]
        open.delete(r[1] || '')
      }
      continue
    }
    const p = parseStraceLine(l)
    if (!p) continue
    if (/ <unfinished \.\.\.>$/.test(p.rest)) {
      p.rest = p.rest.replace(/ <unfinished \.\.\.>$/, '')
      open.set(p.tid === null ? '' : String(p.tid), p)
    }
    out.push(p)
  }
  return out
}

/**
 * Arguments without what differs from run to run: the directory, payloads
 * (pid, time, token) and the pid in temporary names.
 */
function normalizeArgs(rest, dir) {
  return rest
    .split(dir)
    .join('<dir>')
    .replace(/"\{(?:[^"\\]|\\.)*"(?:\.\.\.)?/g, '"<payload>"')
    .replace(/\.\d+-(\d+)\.tmp/g, '.<pid>-$1.tmp')
}

function firstArg(rest) {
  const i = rest.search(/[,)]/)
  return i < 0 ? rest : rest.slice(0, i)
}

/**
 * Discovery: run the operation untouched under `strace -f` and list the calls
 * it makes on our files, in order, each with its thread and occurrence number.
 */
async function discover(op) {
  const dir = fs.realpathSync(tempRoot())
  const log = path.join(dir, '..', `${path.basename(dir)}.strace`)
  const v = startVictim(op, dir)
  const ready = JSON.parse(await withTimeout(v.next(), 60_000, 'victim ready'))
  if (!ready.ready) throw new Error(`victim failed: ${JSON.stringify(ready)} ${v.stderr()}`)
  const s = attach(ready.pid, ['-s', '256'], log, true)
  await s.attached
  const comms = {}
  for (const t of fs.readdirSync(`/proc/${ready.pid}/task`)) {
    try {
      comms[t] = fs.readFileSync(`/proc/${ready.pid}/task/${t}/comm`, 'utf8').trim()
    } catch {}
  }
  // Descriptors already open on our files (a held lock, a marker).
  const preFds = []
  for (const fd of fs.readdirSync(`/proc/${ready.pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${ready.pid}/fd/${fd}`).startsWith(`${dir}/`)) preFds.push(Number(fd))
    } catch {}
  }
  v.child.stdin.write('go\n')
  await withTimeout(v.next(), 60_000, 'victim done')
  const res = JSON.parse(await withTimeout(v.next(), 60_000, 'victim result'))
  v.child.kill('SIGKILL')
  await v.exited
  await s.exited
  const text = fs.readFileSync(log, 'utf8')
  if (process.env.SWL_CRASHPOINTS_KEEP) fs.copyFileSync(log, path.join(os.tmpdir(), `swl-crashpoints-${op}.strace`))
  fs.rmSync(log, { force: true })
  fs.rmSync(dir, { recursive: true, force: true })
  // Order of events as strace saw them; "<unfinished ...>" and "resumed"
  // pairs are folded onto the entry line.
  const calls = []
  const counts = new Map()
  const ourFds = new Set(preFds)
  let inWindow = false
  let done = false
  for (const p of straceCalls(text)) {
    if (done) continue
    const key = `${p.tid}:${p.name}`
    counts.set(key, (counts.get(key) || 0) + 1)
    if (!inWindow) {
      if (p.name === 'read' && /^0, "go\\n"/.test(p.rest)) inWindow = true
      continue
    }
    if (p.name === 'write' && /^1, "\{/.test(p.rest)) {
      done = true
      continue
    }
    const fd = firstArg(p.rest)
    const touchesDir = p.rest.includes(dir)
    const onOurFd = /^\d+$/.test(fd) && ourFds.has(Number(fd))
    if (!touchesDir && !onOurFd) continue
    if (/warm\.jsonl/.test(p.rest)) continue
    const ret = /=\s+(-?\d+)/.exec(p.rest.slice(p.rest.lastIndexOf(') =')))
    if ((p.name === 'openat' || p.name === 'open') && ret && Number(ret[1]) >= 0) ourFds.add(Number(ret[1]))
    if (p.name === 'close' && onOurFd) ourFds.delete(Number(fd))
    const sig = normalizeArgs(p.rest, dir)
    calls.push({
      tid: p.tid,
      comm: comms[p.tid] || '?',
      main: p.tid === ready.pid,
      name: p.name,
      n: counts.get(key),
      arg: firstArg(sig),
      label: `${p.name}(${sig.length > 60 ? `${sig.slice(0, 57)}...` : sig}`,
    })
  }
  if (!inWindow) throw new Error(`${op}: discovery saw no "go" read on the main thread`)
  return { calls, baseline: res }
}

/** Run one cell: the operation with `call` made to kill or to fail with `fault`. */
async function runCell(op, call, fault, verbose) {
  const dir = fs.realpathSync(tempRoot())
  const log = path.join(dir, '..', `${path.basename(dir)}.strace`)
  const file = path.join(dir, SESSION)
  const lockPath = `${file}.lock`
  const markerPath = `${file}.active`
  const bad = []
  const notes = []
  let outcome = '?'
  const v = startVictim(op, dir)
  try {
    const ready = JSON.parse(await withTimeout(v.next(), 60_000, 'victim ready'))
    if (!ready.ready) throw new Error(`victim failed: ${JSON.stringify(ready)}`)
    let tid = ready.pid
    let follow = false
    if (!call.main) {
      const same = fs
        .readdirSync(`/proc/${ready.pid}/task`)
        .filter((t) => fs.readFileSync(`/proc/${ready.pid}/task/${t}/comm`, 'utf8').trim() === call.comm)
      if (same.length === 1) tid = Number(same[0])
      else follow = true
    }
    const action = fault === 'KILL' ? 'signal=KILL' : `error=${fault}`
    const s = attach(tid, ['-s', '256', '-e', `trace=${call.name}`, '-e', `inject=${call.name}:${action}:when=${call.n}`], log, follow, ready.pid)
    await s.attached
    v.child.stdin.write('go\n')
    const line = () => withTimeout(Promise.race([v.next(), v.exited.then(() => null)]), 60_000, 'victim result')
    let first = await line()
    if (first && first.startsWith('{"phase"')) first = await line()
    const res = first && first.startsWith('{') ? JSON.parse(first) : null
    if (res === null) {
      const ex = await v.exited
      if (ex.signal !== 'SIGKILL') bad.push(`victim died: ${ex.code} ${ex.signal} ${v.stderr().slice(-300)}`)
    }
    if (res && res.fatal) bad.push(`victim: ${res.fatal}`)
    // Kill the victim now (whatever state it is in), then look.
    v.child.kill('SIGKILL')
    await v.exited
    await withTimeout(s.exited, 20_000, 'strace exit')

    // Did the injection hit the intended call?
    const traced = straceCalls(fs.readFileSync(log, 'utf8')).filter(
      (p) => p.name === call.name && (!follow || p.tid === null || fs.existsSync(`/proc/${p.tid}`) || true),
    )
    const hit = traced[call.n - 1]
    const hitText = hit ? normalizeArgs(hit.rest, dir) : ''
    const injected =
      hit && (fault === 'KILL' ? res === null || /INJECTED/.test(hit.rest) || !/=/.test(hit.rest) : /INJECTED/.test(hit.rest))
    if (!injected) bad.push(`injection missed (call ${call.name} #${call.n} ${hit ? hitText.slice(0, 60) : 'not reached'})`)
    else if (firstArg(hitText) !== call.arg) bad.push(`injected a different call: ${hitText.slice(0, 60)}`)

    // The victim's own view of a failure (before it was killed).
    if (res && !res.fatal) {
      if (res.result === 'error') {
        outcome = `error ${res.error.code}/${res.error.syscall}`
        if (typeof res.error.code !== 'string' || !/^E[A-Z0-9]+$/.test(res.error.code) || typeof res.error.syscall !== 'string') {
          bad.push(`uncoded error: ${res.error.name}: ${res.error.message}`)
        }
        if (res.lockExists) bad.push('failed acquire left a lock file')
        if (op === 'handoff' ? res.fdDelta !== -1 : res.fdDelta !== 0) bad.push(`descriptors: ${res.fdDelta} after a failure`)
      } else if (OPS[op].marker) {
        const warned = /could not (create|update) the session marker/.test(res.warnings)
        if (warned) {
          const code = /: (E[A-Z0-9]+)\b/.exec(res.warnings)
          outcome = `warned ${code ? code[1] : '?'}`
          if (!code) bad.push(`marker warning without a code: ${res.warnings.trim().slice(0, 80)}`)
          if (op === 'marker-write' && res.markerExists) bad.push('failed marker write left a marker')
          if (op === 'marker-write' && res.fdDelta !== 0) bad.push(`descriptors: ${res.fdDelta} after a failed marker write`)
        } else {
          outcome = 'absorbed'
          if (op === 'marker-write' && !res.markerExists) bad.push('no marker and no warning')
        }
        if (op === 'marker-update' && res.fdDelta !== 0) bad.push(`descriptors: ${res.fdDelta}`)
      } else {
        outcome = 'absorbed'
        if (op === 'release') {
          if (res.fdDelta !== -1) bad.push(`descriptors: ${res.fdDelta} after release`)
          if (res.lockExists) notes.push('file left (free)')
        } else if (op === 'handoff') {
          if (!res.held) bad.push('hand-off resolved without holding')
          if (res.fdDelta !== 0) bad.push(`descriptors: ${res.fdDelta} after hand-off`)
        } else if (!res.held || res.fdDelta !== 1) bad.push(`acquire resolved: held=${res.held} descriptors ${res.fdDelta}`)
      }
    } else if (res === null) {
      outcome = 'killed'
    }

    // What is left on disk once the victim is dead.
    const swl = require(ROOT)
    if (OPS[op].lock || op === 'handoff') {
      if (fs.existsSync(lockPath)) {
        const text = fs.readFileSync(lockPath, 'utf8')
        let parsed = null
        try {
          parsed = JSON.parse(text)
        } catch {}
        if (parsed === null || typeof parsed !== 'object' || typeof parsed.pid !== 'number') {
          bad.push(`${text.length === 0 ? 'empty' : 'invalid'} lock file left (${text.length} B)`)
        }
        const i = swl.inspectLockFile(lockPath)
        if (i.held) bad.push('inspect: held by a dead process')
        if (!i.stale) bad.push(`inspect: not stale (${i.staleReasons.join(',') || 'no reason'}) though its owner is dead`)
        notes.push('file left')
      }
      const t0 = process.hrtime.bigint()
      try {
        const l = await swl.acquireSessionWriteLock({ sessionFile: file, timeoutMs: 50 })
        const ms = Number(process.hrtime.bigint() - t0) / 1e6
        await l.release()
        // The bound is the acquire's own timeout (a wait of any length for
        // a file nobody holds fails it); the wall time is only noted, since
        // a loaded machine can stall any call.
        if (ms > 50) notes.push(`next acquire ${ms.toFixed(1)} ms`)
      } catch (e) {
        bad.push(`next acquire failed: ${e.code || e.message}`)
      }
    }
    if (OPS[op].marker) {
      let markerValid = null
      if (fs.existsSync(markerPath)) {
        try {
          const m = JSON.parse(fs.readFileSync(markerPath, 'utf8'))
          markerValid = m && m.sessionId === SESSION_ID && m.lock === 'os'
        } catch {
          markerValid = false
        }
        if (!markerValid) bad.push('invalid marker left')
      }
      const seen = []
      const off = swl.onSessionEnd((e) => {
        if (e.sessionId === SESSION_ID) seen.push(e)
      })
      const origWrite = process.stderr.write
      process.stderr.write = () => true
      try {
        const a = await swl.recoverOrphanedSessions({ sessionsDir: dir })
        const b = await swl.recoverOrphanedSessions({ sessionsDir: dir })
        const n = a.recovered.filter((e) => e.sessionId === SESSION_ID).length
        const n2 = b.recovered.filter((e) => e.sessionId === SESSION_ID).length
        if (n2 !== 0 || seen.length !== n) bad.push(`recovered twice (${n} + ${n2})`)
        const tracked = op === 'marker-update' || (res && !res.fatal && (outcome === 'absorbed' || res.markerExists))
        if (tracked && n !== 1) bad.push(`tracked session recovered ${n} times`)
        if (markerValid && n !== 1) bad.push(`a marker was left but recovered ${n} times`)
        if (n === 1 && op === 'marker-update' && ![1_000_000, 7].includes(seen[0].messageCount)) {
          bad.push(`recovered messageCount ${seen[0].messageCount}`)
        }
        if (fs.existsSync(markerPath)) bad.push('marker left after recovery')
        notes.push(`recovered ${n}`)
      } finally {
        process.stderr.write = origWrite
        off()
      }
    }
  } catch (e) {
    bad.push(`harness: ${e.message}`)
    try {
      v.child.kill('SIGKILL')
    } catch {}
  } finally {
    fs.rmSync(log, { force: true })
    fs.rmSync(dir, { recursive: true, force: true })
  }
  if (verbose) console.error(`${op} ${call.label} ${fault}: ${outcome} ${notes.join(' ')} ${bad.join('; ')}`)
  return { op, call: call.label, fault, outcome, notes, bad }
}

async function pool(items, jobs, fn) {
  const out = new Array(items.length)
  let i = 0
  await Promise.all(
    Array.from({ length: Math.min(jobs, items.length) }, async () => {
      while (i < items.length) {
        const k = i++
        out[k] = await fn(items[k])
      }
    }),
  )
  return out
}

function cellText(r) {
  if (r.bad.length) return `BAD${knownBad(r.op, r.call, r.fault) ? '(known)' : ''}`
  if (r.fault === 'KILL') return r.outcome === 'killed' ? 'ok' : r.outcome
  if (r.outcome.startsWith('error ') || r.outcome.startsWith('warned ')) return 'coded'
  return r.outcome
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  if (process.platform !== 'linux') {
    console.log('crashpoints: Linux only (strace); nothing to do here')
    return
  }
  if (spawnSync('strace', ['-V']).status !== 0) {
    console.error('crashpoints: strace is required (Debian: apt-get install -y strace)')
    process.exit(2)
  }
  const ops = o.only ?? Object.keys(OPS)
  const faults = o.quick ? ['KILL', 'EIO'] : ['KILL', ...ERRORS]
  if (o.quick) {
    console.log(`crashpoints --quick: every call of every operation, faults ${faults.join(', ')} only (not run here: ${ERRORS.filter((e) => !faults.includes(e)).join(', ')}; \`npm run crashpoints\` runs them all)`)
  }
  const t0 = Date.now()
  const cells = []
  const discovered = {}
  for (const op of ops) {
    if (!OPS[op]) {
      console.error(`unknown operation ${op}`)
      process.exit(2)
    }
    const d = await discover(op)
    discovered[op] = d
    if (d.calls.length === 0) {
      console.error(`${op}: discovery found no call on our files`)
      process.exit(1)
    }
    for (const call of d.calls) {
      for (const fault of faults) {
        // close(2) on Linux frees the descriptor even when it reports an
        // error; an injected error skips the call, which no real failure
        // does. Only the kill applies.
        if (call.name === 'close' && fault !== 'KILL') continue
        cells.push({ op, call, fault })
      }
    }
  }
  const callCount = Object.values(discovered).reduce((n, d) => n + d.calls.length, 0)
  const results = await pool(cells, o.jobs, (c) => runCell(c.op, c.call, c.fault, o.verbose))
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (o.json) {
    console.log(JSON.stringify({ results, discovered }, null, 2))
  }
  // Table: one row per (op, call), one column per fault.
  const w = Math.max(...results.map((r) => `${r.op} ${r.call}`.length)) + 2
  const colW = 14
  console.log(`${'operation / call'.padEnd(w)}${faults.map((f) => f.padEnd(colW)).join('')}`)
  let lastOp = null
  const rows = new Map()
  for (const r of results) {
    const key = `${r.op}\u0000${r.call}`
    if (!rows.has(key)) rows.set(key, {})
    rows.get(key)[r.fault] = r
  }
  for (const [key, row] of rows) {
    const [op, call] = key.split('\u0000')
    if (op !== lastOp && lastOp !== null) console.log('')
    lastOp = op
    console.log(`${`${op} ${call}`.padEnd(w)}${faults.map((f) => (row[f] ? cellText(row[f]) : '-').padEnd(colW)).join('')}`)
  }
  const badOnes = results.filter((r) => r.bad.length)
  if (badOnes.length) {
    console.log('\nbad outcomes:')
    for (const r of badOnes) {
      const k = knownBad(r.op, r.call, r.fault)
      console.log(`  ${r.op} ${r.call} ${r.fault}: ${r.bad.join('; ')}${k ? `  [known, open on main: ${k.why}]` : ''}`)
    }
  }
  const known = badOnes.filter((r) => knownBad(r.op, r.call, r.fault)).length
  console.log(
    `\ncrashpoints: ${results.length} cells (${ops.length} operations, ${callCount} calls x up to ${faults.length} faults) in ${secs}s: ` +
      `${badOnes.length} bad${badOnes.length ? ` (${known} known and still open on main, ${badOnes.length - known} new)` : ''}`,
  )
  console.log('legend: ok = killed, nothing wrong left; coded = failed with code and syscall, nothing left; absorbed = the call failed and the operation still completed correctly')
  process.exit(badOnes.length ? 1 : 0)
}

if (process.argv[2] === '--victim') victim(process.argv[3], process.argv[4])
else
  main().catch((e) => {
    console.error(e)
    process.exit(2)
  })
