// Drives __test__/fixtures/pg-child.js: a child process (optionally inside a
// network-namespace host) that takes session locks through the PostgreSQL
// backend configured by its environment. Events are JSON lines; next() waits
// for the first one matching a predicate (event-driven, no polling).

import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
export const CHILD = path.join(here, '..', 'fixtures', 'pg-child.js')

/**
 * Start a child. `env`: extra environment (the backend settings); `net` and
 * `host`: run inside that host of a makeHosts() network.
 */
export function startChild({ env = {}, net = null, host = null } = {}) {
  const argv = [process.execPath, CHILD]
  const opts = { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } }
  const proc = net ? net.spawn(host, argv, opts) : spawn(argv[0], argv.slice(1), opts)
  const events = []
  const waiters = []
  let stderr = ''
  let buf = ''
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (!line.trim()) continue
      let ev
      try {
        ev = JSON.parse(line)
      } catch {
        continue
      }
      events.push(ev)
      for (const w of [...waiters]) {
        if (w.pred(ev)) {
          waiters.splice(waiters.indexOf(w), 1)
          clearTimeout(w.timer)
          w.resolve(ev)
        }
      }
    }
  })
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d) => {
    stderr += d
  })
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const c = {
    proc,
    events,
    get stderr() {
      return stderr
    },
    exited,
    send(msg) {
      proc.stdin.write(`${JSON.stringify(msg)}\n`)
    },
    /** The first event (already seen or to come) matching `pred`. */
    next(pred, timeoutMs = 60_000, what = 'event') {
      const seen = events.find(pred)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const w = { pred, resolve }
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1)
          reject(new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events)}; stderr: ${stderr}`))
        }, timeoutMs)
        waiters.push(w)
      })
    },
    /** Send `msg` and wait for the event of its id/op. */
    async ask(msg, evs, timeoutMs = 60_000) {
      const from = events.length
      c.send(msg)
      const ev = await c.next(
        (e) => events.indexOf(e) >= from && evs.includes(e.ev) && (msg.id === undefined || e.id === msg.id),
        timeoutMs,
        `${evs.join('|')} for ${JSON.stringify(msg)}`,
      )
      return ev
    },
    kill(sig = 'SIGKILL') {
      proc.kill(sig)
      return exited
    },
  }
  return c
}
