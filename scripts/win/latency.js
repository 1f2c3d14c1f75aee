'use strict'
// Hand-off and killed-holder latency between two processes, for the Windows
// backend under wine (run by `node scripts/cross-win.js --latency`; runs on
// any platform). Prints medians and maxima over ROUNDS rounds, in ms.
//   hand-off: the holder releases (timestamp taken just before release());
//             the waiter's acquire resolves.
//   killed:   the parent kills the holder (TerminateProcess on Windows);
//             the waiter's acquire resolves.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const swl = require('../../index.js')
const { spawnNode } = require('../../__test__/fixtures/core-helpers.js')

const ROUNDS = Number(process.env.ROUNDS || 15)
const now = () => performance.timeOrigin + performance.now()

if (process.argv[2] === 'holder') {
  ;(async () => {
    const lease = await swl.acquireSessionWriteLock({ sessionFile: process.argv[3] })
    process.stdout.write('held\n')
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', async (d) => {
      if (!d.includes('release')) return
      const t = now()
      await lease.release()
      process.stdout.write(`released ${t}\n`)
      setTimeout(() => process.exit(0), 50)
    })
  })()
  return
}

// The holder child, through the tests' child-process helper (its stdout lines
// and waitLine), so this script and the suite read children the same way.
function holder(sessionFile) {
  const h = spawnNode([__filename, 'holder', sessionFile])
  return { child: h.child, line: (prefix) => h.waitLine(prefix, 60_000) }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-latency-'))
  const sessionFile = path.join(dir, 's.jsonl')
  const result = {}
  for (const mode of ['hand-off', 'killed']) {
    const xs = []
    for (let i = 0; i < ROUNDS; i++) {
      const h = holder(sessionFile)
      await h.line('held')
      const p = swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 30_000 })
      await new Promise((r) => setTimeout(r, 100)) // the waiter is parked
      let t0
      if (mode === 'hand-off') {
        h.child.stdin.write('release\n')
        const lease = await p
        const t1 = now()
        t0 = Number((await h.line('released')).split(' ')[1])
        xs.push(t1 - t0)
        await lease.release()
      } else {
        t0 = now()
        h.child.kill('SIGKILL')
        const lease = await p
        xs.push(now() - t0)
        await lease.release()
      }
      await new Promise((r) => h.child.exitCode !== null || h.child.signalCode !== null ? r() : h.child.on('exit', r))
    }
    result[mode] = { p50: +median(xs).toFixed(2), max: +Math.max(...xs).toFixed(2), rounds: xs.length }
  }
  console.log(JSON.stringify({ platform: process.platform, node: process.version, ...result }))
  fs.rmSync(dir, { recursive: true, force: true })
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
