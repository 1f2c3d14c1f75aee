// The session-lock CLI, run as a real process against real child
// holders: inspect rows, exit status and --json schema; clean --dry-run and
// clean; hold's exclusion, exit status and signal forwarding; the demo.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

const BIN = fileURLToPath(new URL('../bin/session-lock.js', import.meta.url))
const HOLDER = fileURLToPath(new URL('./fixtures/cli-holder.js', import.meta.url))

const children = new Set()
const dirs = []

function tmp() {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-cli-')))
  dirs.push(d)
  return d
}

function track(child) {
  children.add(child)
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  return child
}

/** Start the CLI; `done` resolves with { code, signal, stdout, stderr }. */
function startCli(args, { env } = {}) {
  const child = track(
    spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '', ...env },
    }),
  )
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c) => (stderr += c))
  const done = new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return { child, done }
}

const cli = (args, opts) => startCli(args, opts).done

/** A real holder process; resolves once it holds (and tracks, with --track). */
function startHolder(sessionFile, extra = []) {
  const child = track(spawn(process.execPath, [HOLDER, sessionFile, ...extra], { stdio: ['pipe', 'pipe', 'pipe'] }))
  let out = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (c) => (err += c))
  const held = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (c) => {
      out += c
      const m = /^held (.*)$/m.exec(out)
      if (m) resolve(JSON.parse(m[1]))
      if (/^error /m.test(out)) reject(new Error(`holder failed: ${out} ${err}`))
    })
    child.on('exit', (code, signal) => reject(new Error(`holder exited (${code ?? signal}) before holding: ${out} ${err}`)))
  })
  return { child, held }
}

async function kill9(child) {
  child.kill('SIGKILL')
  await child.exited
}

/** A pid that is certainly dead (a child that has exited and been reaped). */
async function deadPid() {
  const c = track(spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }))
  await c.exited
  return c.pid
}

function legacyLock(file, pid, createdAt = new Date().toISOString()) {
  fs.writeFileSync(file, JSON.stringify({ pid, createdAt }, null, 2))
}

/** Whether process `pid` has `file` open (Linux /proc). */
function hasOpen(pid, file) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file
      } catch {
        return false
      }
    })
  } catch {
    return false
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function waitFor(pred, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(20)
  }
}

afterEach(async () => {
  for (const c of [...children]) {
    c.kill('SIGKILL')
    await c.exited
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

function rowsOf(json) {
  return Object.fromEntries(json.rows.map((r) => [r.file, r]))
}

describe('session-lock inspect', () => {
  it('shows live holders with exit 0, then the leftovers of a SIGKILLed holder with exit 1', async () => {
    const dir = tmp()
    const a = startHolder(path.join(dir, 'a.jsonl'))
    const b = startHolder(path.join(dir, 'b.jsonl'))
    const [ia, ib] = await Promise.all([a.held, b.held])

    let r = await cli(['inspect', dir])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[1]).toMatch(/^FILE\s+KIND\s+PID\s+ALIVE\s+HELD\s+AGE\s+STALE REASONS\s+CLEAN WOULD$/)
    const rowA = lines.find((l) => l.startsWith('a.jsonl.lock'))
    expect(rowA.split(/\s+/).slice(0, 5)).toEqual(['a.jsonl.lock', 'os', String(ia.pid), 'yes', 'yes'])
    expect(rowA).toMatch(/keep: held$/)
    expect(r.stdout).toMatch(/2 lock files, 0 markers, 2 held, nothing stuck/)
    expect(r.stdout).not.toMatch(/\x1b\[/) // not a TTY: no color

    await kill9(b.child)
    r = await cli(['inspect', dir])
    expect(r.code).toBe(1)
    const rowB = r.stdout.split('\n').find((l) => l.startsWith('b.jsonl.lock'))
    expect(rowB.split(/\s+/).slice(0, 5)).toEqual(['b.jsonl.lock', 'os', String(ib.pid), 'no', 'no'])
    expect(rowB).toMatch(/dead-pid,not-held\s+remove: dead-pid, not-held$/)
    expect(r.stdout).toMatch(/1 stuck \(session-lock clean would remove 1\)/)
  })

  it('--json: the documented schema, rows sorted, legacy and os kinds, markers of tracked sessions', async () => {
    const dir = tmp()
    const h = startHolder(path.join(dir, 'live.jsonl'), ['--track', 'sess-live'])
    const k = startHolder(path.join(dir, 'crashed.jsonl'), ['--track', 'sess-crashed'])
    const [ih, ik] = await Promise.all([h.held, k.held])
    await kill9(k.child)
    const dead = await deadPid()
    legacyLock(path.join(dir, 'old.jsonl.lock'), dead)

    const r = await cli(['inspect', dir, '--json', '--stale-ms', '600000'])
    expect(r.code).toBe(1)
    const j = JSON.parse(r.stdout)
    expect(Object.keys(j)).toEqual(['version', 'sessionsDir', 'hostname', 'nowMs', 'staleMs', 'stuck', 'summary', 'rows'])
    expect(j).toMatchObject({ version: 1, sessionsDir: dir, hostname: os.hostname(), staleMs: 600000, stuck: true })
    expect(j.summary).toEqual({ locks: 3, markers: 2, held: 2, stuck: 3, wouldRemove: 2, wouldRecover: 1 })
    expect(j.rows.map((x) => x.file)).toEqual([
      'crashed.jsonl.active',
      'crashed.jsonl.lock',
      'live.jsonl.active',
      'live.jsonl.lock',
      'old.jsonl.lock',
    ])
    const keys = ['file', 'path', 'type', 'kind', 'pid', 'hostname', 'pidAlive', 'held', 'createdAt', 'ageMs', 'heldSince', 'maxHoldMs',
      'stale', 'staleReasons', 'action', 'why', 'stuck', 'session', 'error']
    for (const row of j.rows) {
      expect(Object.keys(row)).toEqual(keys)
      expect(row.path).toBe(path.join(dir, row.file))
      expect(typeof row.ageMs).toBe('number')
      expect(Array.isArray(row.staleReasons)).toBe(true)
      expect(row.error).toBeNull()
    }
    const rows = rowsOf(j)
    expect(rows['live.jsonl.lock']).toMatchObject({
      type: 'lock', kind: 'os', pid: ih.pid, hostname: os.hostname(), pidAlive: true, held: true, maxHoldMs: null,
      stale: false, staleReasons: [], action: 'keep', stuck: false, session: null,
    })
    expect(rows['live.jsonl.active']).toMatchObject({
      type: 'marker', kind: 'os', pid: ih.pid, pidAlive: true, held: true, stale: false, action: 'keep', stuck: false,
      session: { sessionId: 'sess-live', sessionKey: 'agent:test:sess-live', messageCount: 4 },
    })
    expect(rows['crashed.jsonl.lock']).toMatchObject({
      kind: 'os', pid: ik.pid, pidAlive: false, held: false, stale: true, staleReasons: ['dead-pid', 'not-held'],
      action: 'remove', stuck: true,
    })
    expect(rows['crashed.jsonl.active']).toMatchObject({
      type: 'marker', pid: ik.pid, held: false, staleReasons: ['dead-pid', 'not-held'], action: 'recover', stuck: true,
      session: { sessionId: 'sess-crashed' },
    })
    expect(rows['old.jsonl.lock']).toMatchObject({
      kind: 'legacy', pid: dead, hostname: null, pidAlive: false, held: false, stale: true, staleReasons: ['dead-pid'],
      action: 'remove', stuck: true,
    })
  })

  it('a live old-module holder is not stuck until --stale-ms says it is too old', async () => {
    const dir = tmp()
    // The old holder runs as an OpenClaw process (an `openclaw` argument): a live pid whose
    // command line is something else would be stale as non-openclaw-owner.
    const holder = track(spawn(process.execPath, ['-e', 'console.log("ready"); setInterval(() => {}, 1000)', 'openclaw'], { stdio: ['ignore', 'pipe', 'ignore'] }))
    await new Promise((resolve) => holder.stdout.once('data', resolve)) // exec'd: its own command line
    legacyLock(path.join(dir, 'old.jsonl.lock'), holder.pid, new Date(Date.now() - 60_000).toISOString())
    let r = await cli(['inspect', dir, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout).rows[0]).toMatchObject({ kind: 'legacy', pidAlive: true, stale: false, action: 'keep' })
    r = await cli(['inspect', dir, '--json', '--stale-ms', '1000'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout).rows[0]).toMatchObject({ staleReasons: ['too-old'], action: 'remove', stuck: true })
  })

  it('a holder whose event loop is stuck past its max hold is reported stuck, and kept', async () => {
    const dir = tmp()
    const h = startHolder(path.join(dir, 's.jsonl'), ['--max-hold-ms', '100', '--block-ms', '30000'])
    await h.held
    await sleep(300)
    const r = await cli(['inspect', dir, '--json'])
    expect(r.code).toBe(1)
    const row = JSON.parse(r.stdout).rows[0]
    expect(row).toMatchObject({ held: true, maxHoldMs: 100, action: 'keep', stuck: true })
    expect(row.why).toMatch(/past its max hold/)
  })

  it('a lock path that is a directory is stuck; errors and usage are one line with exit 2', async () => {
    const dir = tmp()
    fs.mkdirSync(path.join(dir, 'x.jsonl.lock'))
    const r = await cli(['inspect', dir, '--json'])
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout).rows[0]).toMatchObject({ action: 'none', stuck: true, error: { code: 'EISDIR' } })

    const missing = path.join(dir, 'nope')
    const e = await cli(['inspect', missing])
    expect(e.code).toBe(2)
    expect(e.stdout).toBe('')
    expect(e.stderr).toBe(`session-lock inspect: ${missing}: no such file or directory (ENOENT)\n`)

    for (const args of [['inspect'], ['inspect', dir, '--bogus'], ['inspect', dir, '--stale-ms', 'soon'], ['clean'],
      ['hold', path.join(dir, 's.jsonl')], ['frobnicate'], ['demo', 'a', 'b']]) {
      const u = await cli(args)
      expect(u.code, args.join(' ')).toBe(2)
      expect(u.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
      expect(u.stderr).toMatch(/^session-lock/)
    }
  })
})

describe('session-lock clean', () => {
  it('--dry-run removes nothing; clean removes the stale, recovers the orphaned marker, keeps the live', async () => {
    const dir = tmp()
    const live = startHolder(path.join(dir, 'live.jsonl'), ['--track', 'sess-live'])
    const crashed = startHolder(path.join(dir, 'crashed.jsonl'), ['--track', 'sess-crashed'])
    await Promise.all([live.held, crashed.held])
    await kill9(crashed.child)
    legacyLock(path.join(dir, 'old.jsonl.lock'), await deadPid())
    const snapshot = () =>
      Object.fromEntries(fs.readdirSync(dir).sort().map((n) => [n, fs.readFileSync(path.join(dir, n), 'utf8')]))
    const before = snapshot()
    expect(Object.keys(before)).toEqual(['crashed.jsonl.active', 'crashed.jsonl.lock', 'live.jsonl.active', 'live.jsonl.lock', 'old.jsonl.lock'])

    const dry = await cli(['clean', dir, '--dry-run'])
    expect(dry.code).toBe(0)
    expect(snapshot()).toEqual(before)
    expect(dry.stdout).toMatch(/^would remove crashed\.jsonl\.lock: dead-pid, not-held \(pid \d+/m)
    expect(dry.stdout).toMatch(/^would remove old\.jsonl\.lock: dead-pid/m)
    expect(dry.stdout).toMatch(/^would recover crashed\.jsonl\.active: session sess-crashed .*4 messages.*session_end reason=unknown$/m)
    expect(dry.stdout).not.toMatch(/live\.jsonl/)
    const dryJson = JSON.parse((await cli(['clean', dir, '--dry-run', '--json'])).stdout)
    expect(snapshot()).toEqual(before)
    expect(dryJson).toMatchObject({ dryRun: true, heldLocks: 1, failed: [], markerError: null })
    expect(dryJson.removed.map((x) => path.basename(x.lockPath))).toEqual(['crashed.jsonl.lock', 'old.jsonl.lock'])
    expect(dryJson.recovered.map((x) => x.sessionId)).toEqual(['sess-crashed'])

    const real = await cli(['clean', dir, '--json'])
    expect(real.code).toBe(0)
    const j = JSON.parse(real.stdout)
    expect(j.removed.map((x) => [path.basename(x.lockPath), x.staleReasons, x.removed])).toEqual([
      ['crashed.jsonl.lock', ['dead-pid', 'not-held'], true],
      ['old.jsonl.lock', ['dead-pid'], true],
    ])
    expect(j.recovered).toHaveLength(1)
    expect(j.recovered[0]).toMatchObject({ sessionId: 'sess-crashed', reason: 'unknown', messageCount: 4 })
    expect(j.recovered[0].recovered.pid).toBe((await crashed.held).pid)
    expect(fs.readdirSync(dir).sort()).toEqual(['live.jsonl.active', 'live.jsonl.lock'])
    expect(snapshot()['live.jsonl.lock']).toBe(before['live.jsonl.lock'])

    const again = await cli(['clean', dir])
    expect(again.code).toBe(0)
    expect(again.stdout).toBe(`${dir}: nothing to clean; 1 held lock left alone\n`)
  })

  it('inspect and clean agree on an unheld *.active that is not a session marker: clean leaves it, so it is not stuck', async () => {
    const dir = tmp()
    const crashed = startHolder(path.join(dir, 'crashed.jsonl'), ['--track', 'sess-crashed'])
    await crashed.held
    await kill9(crashed.child)
    // Another tool's file with the suffix: not JSON, and a JSON object without "lock": "os".
    fs.writeFileSync(path.join(dir, 'notes.active'), 'not a marker')
    fs.writeFileSync(path.join(dir, 'other.jsonl.active'), JSON.stringify({ sessionId: 'x' }))

    const dry = JSON.parse((await cli(['clean', dir, '--dry-run', '--json'])).stdout)
    expect(dry.recovered.map((x) => [path.basename(x.path), x.sessionId])).toEqual([['crashed.jsonl.active', 'sess-crashed']])
    const before = JSON.parse((await cli(['inspect', dir, '--json'])).stdout)
    expect(before.rows.filter((r) => r.action === 'recover').map((r) => r.file)).toEqual(['crashed.jsonl.active'])
    expect(before.summary.wouldRecover).toBe(1)

    const real = JSON.parse((await cli(['clean', dir, '--json'])).stdout)
    expect(real.recovered.map((x) => x.sessionId)).toEqual(['sess-crashed'])
    expect(fs.readdirSync(dir).sort()).toEqual(['notes.active', 'other.jsonl.active'])
    const after = await cli(['inspect', dir, '--json'])
    expect(after.code).toBe(0)
    const rows = rowsOf(JSON.parse(after.stdout))
    expect(rows['notes.active']).toMatchObject({ type: 'marker', held: false, action: 'keep', stuck: false, session: null })
    expect(rows['other.jsonl.active']).toMatchObject({ type: 'marker', held: false, action: 'keep', stuck: false, session: { sessionId: 'x' } })
  })

  it('--locks-only leaves markers for the gateway', async () => {
    const dir = tmp()
    const crashed = startHolder(path.join(dir, 'c.jsonl'), ['--track', 'sess-c'])
    await crashed.held
    await kill9(crashed.child)
    const r = await cli(['clean', dir, '--locks-only'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^removed c\.jsonl\.lock: dead-pid, not-held/m)
    expect(fs.readdirSync(dir)).toEqual(['c.jsonl.active'])
  })
})

describe('session-lock hold', () => {
  it('excludes a concurrent hold: critical sections never interleave', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const log = path.join(dir, 'log')
    const script = `echo "start $$" >> "${log}"; sleep 0.3; echo "end $$" >> "${log}"`
    const runs = [0, 1, 2].map(() => cli(['hold', file, '--wait', '--', 'sh', '-c', script]))
    const results = await Promise.all(runs)
    for (const r of results) {
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
    }
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n')
    expect(lines).toHaveLength(6)
    for (let i = 0; i < lines.length; i += 2) {
      const id = lines[i].split(' ')[1]
      expect([lines[i], lines[i + 1]]).toEqual([`start ${id}`, `end ${id}`])
    }
    expect(fs.existsSync(`${file}.lock`)).toBe(false)
  })

  it('passes the exit status through and gives the command the lock path and token', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    expect((await cli(['hold', file, '--', 'sh', '-c', 'exit 7'])).code).toBe(7)
    expect((await cli(['hold', file, '--', 'true'])).code).toBe(0)
    const env = await cli(['hold', file, 'sh', '-c', 'cat "$SESSION_WRITE_LOCK_PATH"; echo; echo "$SESSION_WRITE_LOCK_FENCING_TOKEN"'])
    const [payload, token] = env.stdout.trim().split(/\n(?=[^\n]*$)/)
    expect(JSON.parse(payload)).toMatchObject({ lock: 'os', fencingToken: token })
    const killed = await cli(['hold', file, '--', 'sh', '-c', 'kill -TERM $$'])
    expect(killed.signal).toBe('SIGTERM')
    const missing = await cli(['hold', file, '--', 'no-such-command-swl'])
    expect(missing.code).toBe(127)
    expect(missing.stderr).toBe('session-lock hold: no-such-command-swl: command not found (ENOENT)\n')
    expect(fs.existsSync(`${file}.lock`)).toBe(false)
  })

  it('fails with 75 and one line naming the lock and its holder when busy', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const h = startHolder(file)
    const { pid, lockPath } = await h.held
    const now = await cli(['hold', file, '--timeout', '0', '--', 'true'])
    expect(now.code).toBe(75)
    expect(now.stderr).toBe(`session-lock hold: ${lockPath}: busy, held by pid=${pid}; gave up without waiting (--timeout 0)\n`)
    const quiet = await cli(['hold', file, '--timeout', '0', '-q', '--', 'true'])
    expect([quiet.code, quiet.stderr]).toEqual([75, ''])
    const later = await cli(['hold', file, '--timeout', '200', '--', 'true'])
    expect(later.code).toBe(75)
    expect(later.stderr).toMatch(new RegExp(`^session-lock hold: ${lockPath}: busy, held by pid=${pid}; gave up after \\S+\\n$`))
  })

  it('forwards SIGTERM and releases only after the command exits', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const log = path.join(dir, 'log')
    // The command traps TERM, takes a while to finish, then exits 0.
    const script = `trap 'kill $!; sleep 0.4; echo first-done >> "${log}"; exit 0' TERM; echo up >> "${log}"; sleep 30 & wait`
    const first = startCli(['hold', file, '--', 'sh', '-c', script])
    await waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('up'))
    const second = startCli(['hold', file, '--wait', '--', 'sh', '-c', `echo second >> "${log}"`])
    // The second hold is blocked once its waiting thread has the lock file open.
    const lockPath = path.join(dir, 's.jsonl.lock')
    await waitFor(() => hasOpen(second.child.pid, lockPath))
    first.child.kill('SIGTERM')
    const r1 = await first.done
    expect(r1.code).toBe(0) // the command's status (its trap exited 0)
    const r2 = await second.done
    expect(r2.code).toBe(0)
    expect(fs.readFileSync(log, 'utf8').trim().split('\n')).toEqual(['up', 'first-done', 'second'])
  })

  it('a signal while waiting ends hold by that signal; the command never runs, nothing is left', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const h = startHolder(file)
    const { lockPath } = await h.held
    const ran = path.join(dir, 'ran')
    const waiting = startCli(['hold', file, '--wait', '--', 'sh', '-c', `touch "${ran}"`])
    await waitFor(() => hasOpen(waiting.child.pid, lockPath))
    waiting.child.kill('SIGTERM')
    const r = await waiting.done
    expect(r.signal).toBe('SIGTERM')
    expect(fs.existsSync(ran)).toBe(false)
    // The holder still holds; once it is gone a try-once hold runs at once.
    await kill9(h.child)
    const once = await cli(['hold', file, '--timeout', '0', '--', 'sh', '-c', `touch "${ran}"`])
    expect(once.code).toBe(0)
    expect(fs.existsSync(ran)).toBe(true)
    expect(fs.readdirSync(dir).sort()).toEqual(['ran'])
  })

  it('a command killed by the signal ends hold by the same signal, lock released', async () => {
    const dir = tmp()
    const file = path.join(dir, 's.jsonl')
    const pidFile = path.join(dir, 'pid')
    const h = startCli(['hold', file, '--', 'sh', '-c', `echo $$ > "${pidFile}"; exec sleep 30`])
    await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '')
    const cmdPid = Number(fs.readFileSync(pidFile, 'utf8'))
    h.child.kill('SIGTERM')
    const r = await h.done
    expect(r.signal).toBe('SIGTERM')
    expect(() => process.kill(cmdPid, 0)).toThrow()
    expect(fs.existsSync(`${file}.lock`)).toBe(false)
  })
})

const hasScript = (() => {
  try {
    return require('node:child_process').spawnSync('script', ['--version']).status === 0
  } catch {
    return false
  }
})()

describe('color', () => {
  it.skipIf(!hasScript)('only on a terminal, and not with NO_COLOR', async () => {
    const dir = tmp()
    fs.mkdirSync(path.join(dir, 'x.jsonl.lock')) // a red row
    const run = (env) =>
      new Promise((resolve) => {
        const c = track(spawn('script', ['-qec', `"${process.execPath}" "${BIN}" inspect "${dir}"`, '/dev/null'], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, ...env },
        }))
        let out = ''
        c.stdout.setEncoding('utf8').on('data', (d) => (out += d))
        c.on('close', (code) => resolve({ code, out }))
      })
    const tty = await run({ NO_COLOR: '' })
    expect(tty.out).toMatch(/\x1b\[31mnone: /)
    expect(tty.code).toBe(1)
    const plain = await run({ NO_COLOR: '1' })
    expect(plain.out).toMatch(/none: /)
    expect(plain.out).not.toMatch(/\x1b\[/)
  })
})

describe('--help', () => {
  it('every command has one, exit 0', async () => {
    for (const args of [['--help'], ['inspect', '--help'], ['clean', '--help'], ['hold', '--help'], ['demo', '--help'], ['help', 'hold']]) {
      const r = await cli(args)
      expect(r.code, args.join(' ')).toBe(0)
      expect(r.stdout, args.join(' ')).toMatch(/^Usage: session-lock/)
    }
  })
})

describe('session-lock demo', () => {
  it('runs to completion: exit 0, every step ok, nothing left behind', async () => {
    const parent = tmp()
    const r = await cli(['demo', parent])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^session-lock demo: sessions directory /)
    expect(r.stdout).toMatch(/ok 48 critical sections .* none interleaved/)
    expect(r.stdout.match(/SIGKILL pid \d+ -> pid \d+ acquired the lock [\d.]+ ms later/g)).toHaveLength(2)
    expect(r.stdout).toMatch(/session_end beta-1: reason=shutdown messageCount=3/)
    expect(r.stdout).toMatch(/session_end beta-2: reason=shutdown messageCount=5/)
    expect(r.stdout).toMatch(/ended by SIGTERM/)
    expect(r.stdout).toMatch(/recovered gamma\.jsonl\.active: session gamma/)
    expect(r.stdout).not.toMatch(/FAILED|SKIPPED/)
    expect(r.stdout).toMatch(/demo finished in/)
    expect(fs.readdirSync(parent)).toEqual([])
    // No worker outlived it (their command lines name the demo directory).
    const demoDir = /sessions directory (\S+)/.exec(r.stdout)[1]
    const survivors = fs.readdirSync('/proc').filter((p) => {
      if (!/^\d+$/.test(p)) return false
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(demoDir)
      } catch {
        return false
      }
    })
    expect(survivors).toEqual([])
  })
})

// What a new operator ran into: refusals that protect a cron job from a typo,
// one-line errors instead of stack traces, failures that say what to do.
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** A temporary directory that uid 65534 can enter (mkdtemp makes 0700 ones). */
function sharedTmp() {
  const d = tmp()
  fs.chmodSync(d, 0o755)
  return d
}

describe('session-lock hold refuses paths that would protect nothing', () => {
  it('a missing directory: one line, exit 2, nothing created', async () => {
    const dir = tmp()
    const missing = path.join(dir, 'no-such-dir')
    const r = await cli(['hold', path.join(missing, 's.jsonl'), '--', 'true'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`session-lock hold: ${missing}: no such directory (ENOENT); the session file's directory must exist\n`)
    expect(fs.existsSync(missing)).toBe(false)
  })

  it('a directory instead of a session file: one line, exit 2, no <dir>.lock', async () => {
    const dir = tmp()
    const sessions = path.join(dir, 'sessions')
    fs.mkdirSync(sessions)
    const r = await cli(['hold', sessions, '--', 'true'])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`session-lock hold: ${sessions}: is a directory (EISDIR); pass a session file (for example ${sessions}/<id>.jsonl)\n`)
    expect(fs.readdirSync(dir)).toEqual(['sessions'])
  })
})

describe('session-lock clean reports failures with their cause', () => {
  it.skipIf(!isRoot)('an unreadable directory: one line and exit 2, like inspect (as uid 65534)', async () => {
    const dir = sharedTmp()
    const locked = path.join(dir, 'private')
    fs.mkdirSync(locked, { mode: 0o700 })
    for (const cmd of ['clean', 'inspect']) {
      const r = await new Promise((resolve) => {
        const c = track(spawn(process.execPath, [BIN, cmd, locked], { stdio: ['ignore', 'pipe', 'pipe'], uid: 65534, gid: 65534 }))
        let stdout = ''
        let stderr = ''
        c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
        c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
        c.on('close', (code) => resolve({ code, stdout, stderr }))
      })
      expect(r.code, cmd).toBe(2)
      expect(r.stdout, cmd).toBe('')
      expect(r.stderr, cmd).toBe(`session-lock ${cmd}: ${locked}: permission denied (EACCES)\n`)
    }
  })

  it.skipIf(!isRoot)('a removal that fails names the path, the code and what to do; --json carries the code', async () => {
    const dir = sharedTmp()
    const sticky = path.join(dir, 'sessions')
    fs.mkdirSync(sticky)
    fs.chmodSync(sticky, 0o1777) // anyone may create, only the owner may remove
    const lockPath = path.join(sticky, 'old.jsonl.lock')
    legacyLock(lockPath, await deadPid())
    const asNobody = (args) =>
      new Promise((resolve) => {
        const c = track(spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], uid: 65534, gid: 65534 }))
        let stdout = ''
        let stderr = ''
        c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
        c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
        c.on('close', (code) => resolve({ code, stdout, stderr }))
      })
    const r = await asNobody(['clean', sticky])
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(
      `failed to remove ${lockPath}: operation not permitted (EPERM); run as the user that owns the sessions directory`,
    )
    const j = JSON.parse((await asNobody(['clean', sticky, '--json'])).stdout)
    expect(j.failed).toEqual([
      expect.objectContaining({ path: lockPath, code: 'EPERM', hint: 'run as the user that owns the sessions directory' }),
    ])
    expect(fs.existsSync(lockPath)).toBe(true)
  })

  it('says what still needs a hand (a FIFO, a directory, a symlink at lock paths) and exits 1', async () => {
    const dir = tmp()
    fs.mkdirSync(path.join(dir, 'd.jsonl.lock'))
    require('node:child_process').execFileSync('mkfifo', [path.join(dir, 'f.jsonl.lock')])
    fs.symlinkSync('/etc/hostname', path.join(dir, 's.jsonl.lock'))
    const r = await cli(['clean', dir])
    expect(r.code).toBe(1)
    expect(r.stdout).not.toMatch(/nothing to clean/)
    expect(r.stdout).toMatch(/^needs a hand: d\.jsonl\.lock: is a directory \(EISDIR\)/m)
    expect(r.stdout).toMatch(/^needs a hand: f\.jsonl\.lock: not a regular file \(EINVAL\)/m)
    expect(r.stdout).toMatch(/^needs a hand: s\.jsonl\.lock: is a symbolic link/m)
    expect(r.stdout).toMatch(/3 entries need a hand/)
    const j = JSON.parse((await cli(['clean', dir, '--json'])).stdout)
    expect(j.needsHand.map((x) => [x.file, x.code])).toEqual([
      ['d.jsonl.lock', 'EISDIR'],
      ['f.jsonl.lock', 'EINVAL'],
      ['s.jsonl.lock', 'ELOOP'],
    ])
    expect(fs.readdirSync(dir).sort()).toEqual(['d.jsonl.lock', 'f.jsonl.lock', 's.jsonl.lock'])
  })
})

describe('session-lock output an operator can read', () => {
  it('inspect fits 100 columns with long names, and labels a garbage file "garbage", not "legacy"', async () => {
    const dir = tmp()
    const long = `agent-main-${'0123456789abcdef'.repeat(4)}`
    const crashed = startHolder(path.join(dir, `${long}.jsonl`), ['--track', `session-${'x'.repeat(40)}`])
    await crashed.held
    await kill9(crashed.child)
    const junk = path.join(dir, 'junk.jsonl.lock')
    fs.writeFileSync(junk, '\u0000\u0001not json at all')
    fs.utimesSync(junk, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000))
    const r = await cli(['inspect', dir])
    expect(r.code).toBe(1)
    for (const line of r.stdout.trimEnd().split('\n')) expect(line.length, line).toBeLessThanOrEqual(100)
    const junkRow = r.stdout.split('\n').find((l) => l.startsWith('junk.jsonl.lock'))
    expect(junkRow.split(/\s+/)[1]).toBe('garbage')
    const j = JSON.parse((await cli(['inspect', dir, '--json'])).stdout)
    expect(rowsOf(j)['junk.jsonl.lock']).toMatchObject({ kind: 'garbage', pid: null, action: 'remove' })
    // A long name wraps inside its column, never cut: its pieces join up again.
    const lines = r.stdout.split('\n')
    const fileWidth = lines[1].indexOf('KIND')
    const fileColumn = lines.slice(2).map((l) => l.slice(0, fileWidth).trim()).join('')
    expect(fileColumn).toContain(`${long}.jsonl.lock`)
    expect(fileColumn).toContain(`${long}.jsonl.active`)
  })

  it('an unknown command says "see --help" once', async () => {
    const r = await cli(['frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr.match(/--help/g)).toHaveLength(1)
  })

  it('without its native addon: the loader\'s message on one line and exit 69, no stack', async () => {
    const root = tmp()
    const repo = fileURLToPath(new URL('..', import.meta.url))
    for (const f of ['index.js', 'loader.js', 'package.json']) fs.copyFileSync(path.join(repo, f), path.join(root, f))
    for (const d of ['lib', 'bin']) fs.cpSync(path.join(repo, d), path.join(root, d), { recursive: true })
    const env = { ...process.env, NO_COLOR: '' }
    delete env.SESSION_WRITE_LOCK_NATIVE_PATH
    delete env.__SESSION_WRITE_LOCK_NATIVE
    const r = await new Promise((resolve) => {
      const c = track(spawn(process.execPath, [path.join(root, 'bin', 'session-lock.js'), 'inspect', root], { stdio: ['ignore', 'pipe', 'pipe'], env }))
      let stdout = ''
      let stderr = ''
      c.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
      c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
      c.on('close', (code) => resolve({ code, stdout, stderr }))
    })
    expect(r.code).toBe(69)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    // The platform tag of the Node running the tests (linux-arm64-gnu under qemu, for one).
    const tag = require('../loader.js').platformTag()
    expect(r.stderr.startsWith(`session-lock inspect: session-write-lock: no native addon for ${tag}. `)).toBe(true)
    expect(r.stderr).toMatch(/npm run build/)
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /)
  })
})
