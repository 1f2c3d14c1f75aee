'use strict'
// Scenario (e), shared by the bench (warm runs, in its own process) and its
// children (cold runs, in a fresh process): `waiters` concurrent callers in one
// process, each acquiring and releasing one lock `rounds` times. Measures
// hand-offs per second (overall and per round), FIFO violations and waits.

const { IMPLS } = require('./impls')

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b)
  return s.length ? s[Math.ceil(s.length / 2) - 1] : NaN
}

async function fifoRun(impl, file, waiters, rounds) {
  const im = IMPLS[impl]
  let seq = 0
  const pending = new Set()
  let outOfOrder = 0
  let grants = 0
  let worstMs = 0
  const waitsMs = []
  // Grants per round (a round ends when every waiter has had its r-th grant).
  const roundEnd = new Array(rounds).fill(0)
  const roundCount = new Array(rounds).fill(0)
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: waiters }, async () => {
      for (let r = 0; r < rounds; r++) {
        const s = seq++
        pending.add(s)
        const tReq = performance.now()
        const rel = await im.acquire(file, { wait: true })
        const now = performance.now()
        const w = now - tReq
        pending.delete(s)
        for (const p of pending) {
          if (p < s) {
            outOfOrder++
            break
          }
        }
        grants++
        waitsMs.push(w)
        if (w > worstMs) worstMs = w
        if (++roundCount[r] === waiters) roundEnd[r] = now
        await rel()
      }
    }),
  )
  const elapsedMs = performance.now() - t0
  const perRound = roundEnd.map((end, r) => waiters / ((end - (r === 0 ? t0 : roundEnd[r - 1])) / 1000))
  return {
    waiters,
    rounds,
    grants,
    elapsedMs,
    handoffsPerSec: grants / (elapsedMs / 1000),
    firstRoundPerSec: perRound[0],
    perRound,
    outOfOrderPct: (100 * outOfOrder) / grants,
    worstWaitMs: worstMs,
    p50WaitMs: median(waitsMs),
  }
}

module.exports = { fifoRun }
