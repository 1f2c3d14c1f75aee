'use strict'
// `session-lock demo [dir]`: the package's main job, shown with real
// processes on a throw-away sessions directory:
//   1. workers contend on a few sessions; transcripts prove no interleaving
//   2. a holder is SIGKILLed; a blocked waiter takes over (timed), twice
//   3. a process tracking sessions gets SIGTERM and emits session_end
//   4. a crash leaves a lock file and a marker; inspect shows them, clean
//      removes them (and recovers the session), inspect shows nothing stuck
// Progress is printed as it happens with timings; everything it created
// (files, directory, processes) is gone at the end.
//
// Over 400 lines on purpose: the four steps read as one script, top to
// bottom, as the output shows them; the Worker class above them is the
// parent's handle on one bin/demo-worker.js process.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { CliError, describeError, parseOptions, useColor, painter, fmtDuration } = require('../cli-util')
const { inspectDir, renderInspection } = require('./inspect')
const { cleanDir, renderClean } = require('./clean')

const WORKER = path.join(__dirname, '..', 'demo-worker.js')
const STEP_TIMEOUT_MS = 20_000

const HELP = `Usage: session-lock demo [dir]

Run the session write lock's main job with real processes, on a temporary
sessions directory (inside [dir] when given, else in the system temp dir):

  1. 4 workers contend on 3 sessions; each critical section appends a begin and
     an end line to the transcript, which the demo then checks for interleaving
  2. a holder is killed with SIGKILL; a blocked waiter takes over at once
     (the measured takeover time is printed), then once more
  3. a process tracking two sessions gets SIGTERM and emits their session_end
     events (reason "shutdown") before it exits by that signal
  4. a process is SIGKILLed while holding a lock and tracking a session;
     inspect shows what it left, clean removes it and recovers the session

It takes a few seconds and leaves nothing behind: the directory it creates is
removed and every worker process it started has exited.

Options:
  -h, --help   show this help

Exit status: 0 every step behaved, 1 a step did not, 2 usage error.`

const now = () => performance.timeOrigin + performance.now()
const ms = (x) => (x < 10 ? `${x.toFixed(2)} ms` : x < 1000 ? `${x.toFixed(1)} ms` : fmtDuration(x))

class Worker {
  constructor(role, cfg, registry) {
    this.role = role
    this.proc = spawn(process.execPath, [WORKER, role, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.pid = this.proc.pid
    this.stderr = ''
    this.firsts = new Map() // type -> { promise, resolve, reject, value }
    this.listeners = []
    this.exitInfo = null
    registry.add(this)
    let buf = ''
    this.proc.stdout.setEncoding('utf8')
    this.proc.stdout.on('data', (chunk) => {
      buf += chunk
      let i
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        let msg
        try {
          msg = JSON.parse(line)
        } catch {
          continue
        }
        this.onMessage(msg)
      }
    })
    this.proc.stderr.setEncoding('utf8')
    this.proc.stderr.on('data', (c) => {
      if (this.stderr.length < 8192) this.stderr += c
    })
    this.proc.stdin.on('error', () => {}) // EPIPE after a kill
    // The exit is timed at 'exit', but judged at 'close': 'exit' can come
    // before the last lines the worker wrote are read from its stdout (seen
    // under qemu: a worker that wrote "done" and exited reported as exiting
    // before "done"), and 'close' comes once its stdio has ended.
    let exitAt = null
    this.proc.on('exit', (code, signal) => {
      exitAt = { code, signal, at: now() }
    })
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.exitInfo = exitAt || { code, signal, at: now() }
        registry.delete(this)
        for (const [type, f] of this.firsts) {
          if (f.value === undefined) f.reject(this.failure(`exited (${signal || `code ${code}`}) before "${type}"`))
        }
        resolve(this.exitInfo)
      })
    })
  }

  failure(what) {
    const err = this.stderr.trim().split('\n').slice(-3).join(' | ')
    return new Error(`worker ${this.role} pid ${this.pid} ${what}${err ? `: ${err}` : ''}`)
  }

  entry(type) {
    let f = this.firsts.get(type)
    if (f === undefined) {
      f = {}
      f.promise = new Promise((res, rej) => {
        f.resolve = res
        f.reject = rej
      })
      f.promise.catch(() => {})
      this.firsts.set(type, f)
      if (this.exitInfo !== null) f.reject(this.failure(`exited before "${type}"`))
    }
    return f
  }

  onMessage(msg) {
    if (msg.type === 'error') {
      const f = this.entry('__error')
      f.value = msg
      this.stderr += `\n${msg.message}`
    }
    for (const l of this.listeners) l(msg)
    const f = this.entry(msg.type)
    if (f.value === undefined) {
      f.value = msg
      f.resolve(msg)
    }
  }

  /** The first message of `type` (resolved even if it came before the call). */
  first(type, timeoutMs = STEP_TIMEOUT_MS) {
    const f = this.entry(type)
    if (f.value !== undefined) return Promise.resolve(f.value)
    let timer
    return Promise.race([
      f.promise,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(this.failure(`sent no "${type}" within ${fmtDuration(timeoutMs)}`)), timeoutMs)
      }),
    ]).finally(() => clearTimeout(timer))
  }

  /** The first of `types` to arrive. */
  firstOf(types, timeoutMs) {
    return Promise.race(types.map((t) => this.first(t, timeoutMs)))
  }

  onEach(fn) {
    this.listeners.push(fn)
  }

  send(line) {
    try {
      this.proc.stdin.write(`${line}\n`)
    } catch {
      // gone
    }
  }

  kill(sig) {
    try {
      return this.proc.kill(sig)
    } catch {
      return false
    }
  }

  async waitExit(timeoutMs = STEP_TIMEOUT_MS) {
    let timer
    const r = await Promise.race([
      this.exited,
      new Promise((res) => {
        timer = setTimeout(() => res(null), timeoutMs)
      }),
    ])
    clearTimeout(timer)
    if (r === null) throw this.failure(`did not exit within ${fmtDuration(timeoutMs)}`)
    return r
  }
}

function exitStatusText(info) {
  if (info.signal) {
    const n = os.constants.signals[info.signal] || 0
    return `${info.signal} (exit status ${128 + n} in a shell)`
  }
  return `exit code ${info.code}`
}

async function runDemo(dirArg, out = process.stdout) {
  const paint = painter(useColor(out))
  const t0 = now()
  // A closed stdout (`| head`) must not leave workers or files behind: stop
  // writing, stop the workers, clean up as for an interrupt.
  let broken = false
  const write = (s) => {
    if (!broken) out.write(s)
  }
  const onOutError = () => {
    broken = true
    onSignal('EPIPE')
  }
  out.on('error', onOutError)
  const log = (msg) => write(`${paint.dim(`[${((now() - t0) / 1000).toFixed(3)}s]`)} ${msg}\n`)
  const step = (n, title) => write(`\n${paint.bold(`${n}. ${title}`)}\n`)
  const ok = (msg) => log(`${paint.green('ok')} ${msg}`)
  const problems = []
  const bad = (msg) => {
    problems.push(msg)
    log(`${paint.red('FAILED')} ${msg}`)
  }
  const skipped = []

  // ------------------------------------------------------------ setup
  let parent = os.tmpdir()
  let firstCreated // the topmost directory this run created for [dir], if any
  if (dirArg !== undefined) {
    parent = path.resolve(dirArg)
    try {
      firstCreated = fs.mkdirSync(parent, { recursive: true })
    } catch (err) {
      throw new CliError(describeError(err, parent))
    }
  }
  let dir
  try {
    dir = fs.mkdtempSync(path.join(parent, 'session-lock-demo-'))
  } catch (err) {
    throw new CliError(describeError(err, parent))
  }
  const workers = new Set()
  const spawned = []
  const start = (role, cfg) => {
    const w = new Worker(role, cfg, workers)
    spawned.push(w)
    return w
  }
  const f = (name) => path.join(dir, name)

  let interrupted = null
  const onSignal = (sig) => {
    if (interrupted !== null) return
    interrupted = sig
    for (const w of workers) w.kill('SIGKILL')
  }
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP']
  for (const s of sigs) process.on(s, onSignal)

  write(`${paint.bold('session-lock demo')}: sessions directory ${dir}\n`)
  try {
    // ---------------------------------------------------------- 1. contention
    step(1, 'Workers contending on sessions')
    const sessions = ['s-alpha.jsonl', 's-beta.jsonl', 's-gamma.jsonl'].map(f)
    const N = 4
    const ROUNDS = 12
    const HOLD_MS = 3
    log(`starting ${N} worker processes: ${ROUNDS} rounds each over ${sessions.length} sessions (acquire, append "begin", hold ${HOLD_MS} ms, append "end", release)`)
    const contenders = []
    for (let i = 0; i < N; i++) {
      contenders.push(start('contend', { id: i, sessionFiles: sessions, rounds: ROUNDS, holdMs: HOLD_MS }))
    }
    const dones = await Promise.all(
      contenders.map((w, i) =>
        w.first('done').then((m) => {
          const worst = Math.max(...m.waits)
          log(`worker ${i} (pid ${w.pid}) finished ${m.waits.length} rounds; longest wait for a lock ${ms(worst)}`)
          return m
        }),
      ),
    )
    await Promise.all(contenders.map((w) => w.waitExit()))
    let sections = 0
    let interleaved = 0
    for (const s of sessions) {
      const lines = fs.existsSync(s) ? fs.readFileSync(s, 'utf8').split('\n').filter(Boolean) : []
      for (let i = 0; i < lines.length; i += 2) {
        const [a, b] = [lines[i], lines[i + 1] || '']
        const [ida, what, r] = a.split(' ')
        if (what !== 'begin' || b !== `${ida} end ${r}`) interleaved++
        else sections++
      }
    }
    const first = Math.min(...dones.map((d) => d.firstAt))
    const last = Math.max(...dones.map((d) => d.lastAt))
    if (interleaved === 0 && sections === N * ROUNDS) {
      ok(`${sections} critical sections in ${ms(last - first)}, none interleaved: every "begin" in the transcripts is followed by its own "end"`)
    } else {
      bad(`${interleaved} interleaved critical sections, ${sections} of ${N * ROUNDS} intact`)
    }

    // ---------------------------------------------------------- 2. SIGKILL takeover
    step(2, 'A holder killed with SIGKILL; the waiter takes over')
    const alpha = f('alpha.jsonl')
    const holder = start('lock', { sessionFile: alpha })
    const held = await holder.first('held')
    log(`pid ${holder.pid} holds ${path.basename(held.lockPath)}`)
    const waiters = [start('lock', { sessionFile: alpha, wait: true }), start('lock', { sessionFile: alpha, wait: true })]
    await Promise.all(waiters.map((w) => w.first('waiting')))
    await new Promise((r) => setTimeout(r, 150)) // let both block in the kernel
    log(`pids ${waiters.map((w) => w.pid).join(' and ')} are blocked waiting for it (woken by the kernel, no polling ramp)`)
    const takeovers = []
    let victim = holder
    let remaining = waiters.slice()
    while (remaining.length > 0) {
      const tKill = now()
      victim.kill('SIGKILL')
      const winner = await Promise.race(remaining.map((w) => w.first('acquired').then(() => w)))
      const m = await winner.first('acquired')
      const took = m.at - tKill
      takeovers.push(took)
      log(`SIGKILL pid ${victim.pid} -> pid ${winner.pid} acquired the lock ${paint.bold(ms(took))} later`)
      await victim.waitExit()
      remaining = remaining.filter((w) => w !== winner)
      victim = winner
    }
    const survivor = victim // holds alpha until the end (a live holder for inspect)
    let named = null
    try {
      named = JSON.parse(fs.readFileSync(held.lockPath, 'utf8')).pid
    } catch {
      // checked below
    }
    if (named === survivor.pid) {
      ok(
        `takeover times ${takeovers.map(ms).join(', ')} (from the kill() call to the waiter's acquire resolving,` +
          ` the kernel's teardown of the dead process included); ${path.basename(held.lockPath)} now names pid ${survivor.pid}`,
      )
    } else {
      bad(`${path.basename(held.lockPath)} names pid ${named}, expected ${survivor.pid}`)
    }

    // ---------------------------------------------------------- 3. SIGTERM -> session_end
    step(3, 'SIGTERM to a process tracking sessions: session_end events')
    const tracked = [
      { sessionId: 'beta-1', sessionKey: 'agent:main:beta-1', agentId: 'main', sessionFile: f('beta-1.jsonl'), messageCount: 3 },
      { sessionId: 'beta-2', sessionKey: 'agent:main:beta-2', agentId: 'main', sessionFile: f('beta-2.jsonl'), messageCount: 5 },
    ]
    const tracker = start('track', { sessions: tracked, lockFile: f('beta-1.jsonl') })
    const events = []
    let tTerm = null
    tracker.onEach((m) => {
      if (m.type !== 'session_end') return
      events.push(m)
      const e = m.event
      log(
        `  +${ms(m.at - tTerm)} session_end ${e.sessionId}: reason=${e.reason} messageCount=${e.messageCount}` +
          `${e.durationMs != null ? ` durationMs=${Math.round(e.durationMs)}` : ''}`,
      )
    })
    const first3 = await tracker.firstOf(['ready', 'unavailable'])
    const unavailable = first3.type === 'unavailable' ? first3 : null
    const ready = await tracker.first('ready')
    if (unavailable) {
      skipped.push('session_end on SIGTERM')
      log(`${paint.yellow('SKIPPED')} session tracking is not available in this build: ${unavailable.message}`)
    }
    const markersBefore = ready.markers.filter((p) => fs.existsSync(p))
    log(
      `pid ${tracker.pid} tracks ${tracked.length} sessions (markers: ${markersBefore.map((p) => path.basename(p)).join(', ') || 'none'})` +
        ` and holds ${path.basename(ready.lockPath)}; sending SIGTERM`,
    )
    tTerm = now()
    tracker.kill('SIGTERM')
    const exit3 = await tracker.waitExit()
    log(`pid ${tracker.pid} ended by ${exitStatusText(exit3)} ${ms(exit3.at - tTerm)} after the signal`)
    const leftovers3 = [...ready.markers, ready.lockPath].filter((p) => fs.existsSync(p))
    if (!unavailable) {
      const ids = events.map((m) => m.event.sessionId).sort()
      const reasonsOk = events.every((m) => m.event.reason === 'shutdown')
      if (ids.join() !== 'beta-1,beta-2' || !reasonsOk) {
        bad(`expected session_end (reason shutdown) for beta-1 and beta-2, got ${JSON.stringify(events.map((m) => m.event))}`)
      } else if (exit3.signal !== 'SIGTERM') {
        bad(`expected the process to end by SIGTERM, got ${exitStatusText(exit3)}`)
      } else if (leftovers3.length > 0) {
        bad(`left behind: ${leftovers3.map((p) => path.basename(p)).join(', ')}`)
      } else {
        ok(`both sessions ended once with reason "shutdown"; markers and lock released; the exit status still says SIGTERM`)
      }
    }

    // ---------------------------------------------------------- 4. crash, inspect, clean
    step(4, 'A crash leaves files behind; inspect and clean')
    const gamma = { sessionId: 'gamma', sessionKey: 'agent:main:gamma', agentId: 'main', sessionFile: f('gamma.jsonl'), messageCount: 7 }
    const crasher = start('track', { sessions: unavailable ? [] : [gamma], lockFile: gamma.sessionFile })
    const ready4 = await crasher.first('ready')
    crasher.kill('SIGKILL')
    await crasher.waitExit()
    // An old-module lock file (no OS lock) naming the same dead pid.
    fs.writeFileSync(
      f('delta.jsonl.lock'),
      JSON.stringify({ pid: crasher.pid, createdAt: new Date(Date.now() - 90_000).toISOString() }, null, 2),
    )
    log(
      `pid ${crasher.pid} was SIGKILLed while holding ${path.basename(ready4.lockPath)}` +
        `${ready4.markers.length ? ` and tracking session gamma (${path.basename(ready4.markers[0])})` : ''};` +
        ` delta.jsonl.lock is an old-module lock naming the same dead pid`,
    )
    write(`\n$ session-lock inspect ${dir}\n`)
    const before = inspectDir(dir)
    write(`${renderInspection(before, paint)}\n`)
    log(`inspect exit status: ${before.stuck ? 1 : 0} (${before.stuck ? 'something is stuck' : 'nothing stuck'})`)
    if (!before.stuck) bad('inspect should have reported the crash leftovers as stuck')
    write(`\n$ session-lock clean ${dir}\n`)
    const cleaned = await cleanDir(dir)
    write(`${renderClean(cleaned, paint)}\n`)
    write(`\n$ session-lock inspect ${dir}\n`)
    const after = inspectDir(dir)
    write(`${renderInspection(after, paint)}\n`)
    log(`inspect exit status: ${after.stuck ? 1 : 0}`)
    const aliveRow = after.rows.find((r) => r.file === 'alpha.jsonl.lock')
    const wantRecovered = unavailable ? 0 : 1
    if (after.stuck) bad('still stuck after clean')
    else if (!aliveRow || !aliveRow.held) bad('clean must leave the live holder of alpha.jsonl.lock alone')
    else if (cleaned.removed.length !== 2 || cleaned.recovered.length !== wantRecovered) {
      bad(`clean removed ${cleaned.removed.length} lock files (expected 2), recovered ${cleaned.recovered.length} sessions (expected ${wantRecovered})`)
    } else {
      ok(`clean removed the 2 leftovers${wantRecovered ? ' and recovered session gamma' : ''}; the live holder of alpha.jsonl.lock was left alone`)
    }

    // ---------------------------------------------------------- wrap up
    step(5, 'Wrap up')
    survivor.send('release')
    await survivor.first('released')
    await survivor.waitExit()
    const left = fs.readdirSync(dir).filter((n) => n.endsWith('.lock') || n.endsWith('.active'))
    if (left.length === 0) ok(`pid ${survivor.pid} released alpha.jsonl.lock; no lock files or markers remain`)
    else bad(`lock files or markers remain: ${left.join(', ')}`)
  } catch (err) {
    if (interrupted === null) bad(err.message)
  } finally {
    for (const w of workers) w.kill('SIGKILL')
    await Promise.all(spawned.map((w) => w.exited))
    try {
      fs.rmSync(dir, { recursive: true, force: true })
      if (firstCreated !== undefined) {
        // Remove what mkdir -p created, innermost first.
        for (let d = parent; ; d = path.dirname(d)) {
          fs.rmdirSync(d)
          if (d === firstCreated) break
        }
      }
    } catch (err) {
      problems.push(`cleanup: ${describeError(err)}`)
    }
    for (const s of sigs) process.removeListener(s, onSignal)
  }
  out.removeListener('error', onOutError)
  if (broken) return { code: 1, signal: null }
  if (interrupted !== null) {
    write(`\ninterrupted by ${interrupted}; workers stopped and ${dir} removed\n`)
    return { code: 128 + (os.constants.signals[interrupted] || 0), signal: interrupted }
  }
  const total = now() - t0
  const gone = !fs.existsSync(dir)
  log(
    `${spawned.length} worker processes started, all exited; ${gone ? `removed ${dir}` : `could not remove ${dir}`}`,
  )
  if (!gone) problems.push(`${dir} still exists`)
  const verdict = problems.length === 0 ? paint.green('demo finished') : paint.red(`demo finished with ${problems.length} problem(s)`)
  write(`\n${verdict} in ${fmtDuration(total)}${skipped.length ? ` (skipped: ${skipped.join(', ')})` : ''}\n`)
  return { code: problems.length === 0 ? 0 : 1, signal: null }
}

async function run(argv) {
  const { values, positionals } = parseOptions(argv, { help: { type: 'boolean', short: 'h' } }, 'demo', { maxPositionals: 1 })
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  const r = await runDemo(positionals[0])
  if (r.signal) {
    process.kill(process.pid, r.signal)
  }
  return r.code
}

module.exports = { run, HELP }
