// The cross-process waiting path's own guarantees, with real child processes:
// process signals keep reaching Node's listeners while the waiting thread runs
// (it blocks them on itself so that they are delivered to the main thread).
import { describe, it, expect, afterEach } from 'vitest'
import path from 'node:path'
import helpers from './fixtures/core-helpers.js'

const { tmpDir, spawnNode, holderPath, fixture } = helpers
const children = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill()
})

describe.skipIf(process.platform === 'win32')('signals while a cross-process wait is pending', () => {
  it('every SIGUSR2 reaches the waiter\'s process.on listener, and the wait still ends in a grant', async () => {
    const sessionFile = path.join(tmpDir(), 's.jsonl')
    const holder = spawnNode([holderPath, sessionFile])
    children.push(holder)
    await holder.waitLine((l) => l.startsWith('acquired '))
    const waiter = spawnNode([fixture('wait-signals.js'), sessionFile])
    children.push(waiter)
    await waiter.waitLine('waiting')
    for (let i = 1; i <= 5; i++) {
      waiter.child.kill('SIGUSR2')
      await waiter.waitLine(`signal ${i}`)
    }
    holder.send('release')
    await waiter.waitLine('acquired')
    expect(await waiter.exited).toEqual({ code: 0, signal: null })
  }, 60_000)
})
