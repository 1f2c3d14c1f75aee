'use strict'
// A worker process of `session-lock demo`. Usage (internal):
//   node demo-worker.js <role> <json config>
// Reports progress as JSON lines on stdout (written synchronously, so they
// are out before a signal ends the process). Reads commands ("release") on
// stdin and exits when stdin closes, so a worker never outlives the demo.

const fs = require('node:fs')
const { performance } = require('node:perf_hooks')
const lib = require('../index.js')

const now = () => performance.timeOrigin + performance.now()
const emit = (msg) => {
  try {
    fs.writeSync(1, `${JSON.stringify({ pid: process.pid, ...msg })}\n`)
  } catch {
    // the demo is gone
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const [role, rawConfig] = process.argv.slice(2)
const cfg = JSON.parse(rawConfig || '{}')

// Never outlive the demo: its end (or death) closes our stdin.
const commands = []
let onCommand = null
process.stdin.setEncoding('utf8')
let buf = ''
process.stdin.on('data', (chunk) => {
  buf += chunk
  let i
  while ((i = buf.indexOf('\n')) !== -1) {
    const line = buf.slice(0, i).trim()
    buf = buf.slice(i + 1)
    if (onCommand) onCommand(line)
    else commands.push(line)
  }
})
process.stdin.on('end', () => process.exit(0))
setTimeout(() => process.exit(3), cfg.maxLifeMs || 60_000).unref()

function waitCommand(name) {
  return new Promise((resolve) => {
    const idx = commands.indexOf(name)
    if (idx !== -1) {
      commands.splice(idx, 1)
      resolve()
      return
    }
    onCommand = (line) => {
      if (line === name) {
        onCommand = null
        resolve()
      } else {
        commands.push(line)
      }
    }
  })
}

async function contend() {
  const waits = []
  let firstAt = null
  let lastAt = null
  for (let r = 0; r < cfg.rounds; r++) {
    const sessionFile = cfg.sessionFiles[(cfg.id + r) % cfg.sessionFiles.length]
    const t0 = now()
    const lease = await lib.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
    const t1 = now()
    if (firstAt === null) firstAt = t1
    waits.push(t1 - t0)
    fs.appendFileSync(sessionFile, `${cfg.id} begin ${r}\n`)
    await sleep(cfg.holdMs)
    fs.appendFileSync(sessionFile, `${cfg.id} end ${r}\n`)
    await lease.release()
    lastAt = now()
  }
  emit({ type: 'done', waits, firstAt, lastAt })
  process.exit(0)
}

async function lock() {
  const p = lib.acquireSessionWriteLock({ sessionFile: cfg.sessionFile, timeoutMs: Infinity, maxHoldMs: Infinity })
  if (cfg.wait) setImmediate(() => emit({ type: 'waiting', at: now() }))
  const lease = await p
  emit({ type: cfg.wait ? 'acquired' : 'held', at: now(), lockPath: lease.lockPath, fencingToken: lease.fencingToken })
  await waitCommand('release')
  await lease.release()
  emit({ type: 'released', at: now() })
  process.exit(0)
}

async function track() {
  let lockPath = null
  const markers = []
  try {
    lib.onSessionEnd((event, ctx) => {
      emit({ type: 'session_end', at: now(), event, ctx })
    })
    for (const s of cfg.sessions) {
      const a = lib.trackActiveSession(s)
      if (cfg.updateTo) a.update({ messageCount: cfg.updateTo })
      if (s.sessionFile) markers.push(`${s.sessionFile}.active`)
    }
  } catch (err) {
    emit({ type: 'unavailable', message: String((err && err.message) || err) })
  }
  if (cfg.lockFile) {
    const lease = await lib.acquireSessionWriteLock({ sessionFile: cfg.lockFile, maxHoldMs: Infinity })
    lockPath = lease.lockPath
  }
  emit({ type: 'ready', at: now(), markers, lockPath })
  // Idle until a signal (or the demo's end) ends this process.
}

const roles = { contend, lock, track }
if (!roles[role]) {
  process.stderr.write(`demo-worker: unknown role ${role}\n`)
  process.exit(2)
}
roles[role]().catch((err) => {
  emit({ type: 'error', message: String((err && err.stack) || err) })
  process.exit(1)
})
