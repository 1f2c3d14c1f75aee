// What loading the package costs a fresh process, asserted through what Node
// loads (process.moduleLoadList), never through a clock: the bench measures
// the time (bench/run.js, scenario h).
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
// SWL_LOAD_COST_ROOT=<another checkout> runs the same checks against that tree's entries.
const ENTRY = process.env.SWL_LOAD_COST_ROOT || root

function childEnv() {
  const env = { ...process.env }
  for (const k of ['SESSION_WRITE_LOCK_NATIVE_PATH', '__SESSION_WRITE_LOCK_NATIVE', 'NODE_OPTIONS', 'SESSION_WRITE_LOCK_BACKEND']) delete env[k]
  return env
}

/** The builtins (and internal modules) Node loaded in a fresh process while `step` ran. */
function loadedDuring(setup, step, type = 'commonjs') {
  const code =
    `${setup};const before=new Set(process.moduleLoadList);` +
    `Promise.resolve().then(async()=>{${step}}).then(()=>{` +
    `console.log(JSON.stringify(process.moduleLoadList.filter((m)=>!before.has(m))))})`
  const r = spawnSync(process.execPath, ['--input-type', type === 'module' ? 'module' : 'commonjs', '-e', code], {
    cwd: root,
    env: childEnv(),
    encoding: 'utf8',
    timeout: 60_000,
  })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

describe('load cost', () => {
  it('import of the ESM entry does not run Node\'s CommonJS export lexer over index.js', () => {
    const mjs = pathToFileURL(path.join(ENTRY, 'index.mjs')).href
    const loaded = loadedDuring('', `const m=await import(${JSON.stringify(mjs)});if(typeof m.acquireSessionWriteLock!=='function')throw new Error('no export')`)
    expect(loaded.filter((m) => m.includes('cjs-module-lexer'))).toEqual([])
  })

  it('the first acquire loads neither node:os nor node:worker_threads', () => {
    const index = path.join(ENTRY, 'index.js')
    const file = path.join(fileURLToPath(new URL('.', import.meta.url)), '..', 'target', `load-cost-${process.pid}.jsonl`)
    const loaded = loadedDuring(
      `const m=require(${JSON.stringify(index)})`,
      `const l=await m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}});await l.release()`,
    )
    expect(loaded.filter((m) => /^NativeModule (os|worker_threads)$/.test(m))).toEqual([])
  })

  it('the first acquire installs the process hooks without loading lib/shutdown.js (loaded when a signal arrives)', () => {
    const index = path.join(ENTRY, 'index.js')
    const file = path.join(fileURLToPath(new URL('.', import.meta.url)), '..', 'target', `load-cost-hooks-${process.pid}.jsonl`)
    const code =
      `const m=require(${JSON.stringify(index)});` +
      `const loaded=()=>Object.keys(require.cache).some((k)=>/[\\\\/]lib[\\\\/]shutdown\\.js$/.test(k));` +
      `m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}}).then(async(l)=>{` +
      `const ev=['exit','SIGINT','SIGTERM','SIGQUIT','SIGHUP','SIGABRT'].map((e)=>process.listenerCount(e));` +
      `await l.release();console.log(JSON.stringify({ev,loaded:loaded()}))})`
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    expect(out).toEqual({ ev: [1, 1, 1, 1, 1, 1], loaded: false })
  })

  // Each fs function Node runs for the first time in a process is compiled
  // then (about 1 M instructions for an open/read/close of the executable,
  // docs/performance.md, scenario h). The C library probe reads the memory map
  // with readFileSync(path, 'utf8'), the call Node's CommonJS loader made to
  // read index.js itself.
  it.runIf(process.platform === 'linux')('require() opens and reads no file through fs calls the CommonJS loader did not make (the C library probe reads the memory map)', () => {
    const index = path.join(ENTRY, 'index.js')
    const code =
      `const fs=require('node:fs');const calls=[];` +
      `for(const k of ['openSync','readSync','closeSync','fstatSync','readFileSync']){const f=fs[k];` +
      `fs[k]=function(...a){if(!(k==='readFileSync'&&(a[1]==='utf8'||a[1]==='utf-8')))calls.push(k);return f.apply(this,a)}}` +
      `const m=require(${JSON.stringify(index)});if(typeof m.acquireSessionWriteLock!=='function')throw new Error('no export');` +
      `console.log(JSON.stringify(calls))`
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout.trim().split('\n').pop())).toEqual([])
  })

  // lib/locks.js, lib/leases.js and lib/context.js run on the first acquire,
  // from their text in index.js (scripts/bundle.js, COMPILED_ON_USE): an
  // error raised there names the source's file and line, and the first
  // acquire works where Node refuses code generation from strings.
  for (const flags of [[], ['--disallow-code-generation-from-strings']]) {
    it(`an error raised in lib/locks.js names lib/locks.js and its line in its stack${flags.length ? ` (${flags[0]})` : ''}`, () => {
      const index = path.join(ENTRY, 'index.js')
      const file = path.join(root, 'target', `load-cost-stack-${process.pid}.jsonl`)
      const code =
        `const m=require(${JSON.stringify(index)});` +
        `m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}}).then(async(l)=>{` +
        `let stack='';try{await m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)},timeoutMs:1})}catch(e){stack=e.stack}` +
        `await l.release();console.log(JSON.stringify(stack))})`
      const r = spawnSync(process.execPath, [...flags, '-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
      const stack = JSON.parse(r.stdout.trim().split('\n').pop())
      const src = fs.readFileSync(path.join(ENTRY, 'lib', 'locks.js'), 'utf8').split('\n')
      const at = /\(([^()]*)[\\/]lib[\\/]locks\.js:(\d+):\d+\)/.exec(stack)
      expect(at, stack).not.toBe(null)
      expect(src[Number(at[2]) - 1]).toMatch(/SessionWriteLockTimeoutError\(/)
    })
  }

  // lib/options.js is carried as text too (COMPILED_ON_USE): a require()
  // compiles none of those sources; an option resolver compiles lib/options.js
  // on its first call, the first acquire the rest. Seen through the global
  // eval that compiles them (each text ends with a sourceURL naming its file).
  it('require() compiles no lib/ source carried as text; an option resolver compiles lib/options.js alone, the first acquire the others', () => {
    const index = path.join(ENTRY, 'index.js')
    const file = path.join(root, 'target', `load-cost-options-${process.pid}.jsonl`)
    const code =
      `const seen=[];const ev=globalThis.eval;` +
      `globalThis.eval=function(t){const u=/sourceURL=(.*)$/.exec(String(t));` +
      `if(u)seen.push(require('node:path').relative(${JSON.stringify(ENTRY)},u[1]).split(require('node:path').sep).join('/'));return ev(t)};` +
      `const m=require(${JSON.stringify(index)});const atRequire=seen.slice();` +
      `const resolved=m.resolveSessionWriteLockOptions({},{env:{}});const afterResolve=seen.slice();` +
      `const defaults=[m.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,m.DEFAULT_SESSION_WRITE_LOCK_STALE_MS,m.DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS];` +
      `m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}}).then((l)=>l.release()).then(()=>{` +
      `console.log(JSON.stringify({atRequire,afterResolve,resolved,defaults,afterAcquire:seen.slice()}))})`
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    expect(out.atRequire).toEqual([])
    expect(out.afterResolve).toEqual(['lib/options.js'])
    expect(out.defaults).toEqual([60_000, 1_800_000, 300_000])
    expect(out.resolved).toEqual({ timeoutMs: 60_000, staleMs: 1_800_000, maxHoldMs: 300_000 })
    expect(out.afterAcquire.sort()).toEqual(['lib/context.js', 'lib/leases.js', 'lib/locks.js', 'lib/options.js'])
  })

  // The test seams are lib/testing.js, carried as text too: made on the first
  // access of __testing (or testing, the same object), never by a require().
  it('the test seams compile lib/testing.js on the first access of __testing, once; testing is the same object', () => {
    const index = path.join(ENTRY, 'index.js')
    const code =
      `const seen=[];const ev=globalThis.eval;` +
      `globalThis.eval=function(t){const u=/sourceURL=(.*)$/.exec(String(t));` +
      `if(u)seen.push(require('node:path').relative(${JSON.stringify(ENTRY)},u[1]).split(require('node:path').sep).join('/'));return ev(t)};` +
      `const m=require(${JSON.stringify(index)});const atRequire=seen.slice();` +
      `const t=m.__testing;const same=t===m.testing&&t===m.__testing;const counts=t.registryCounts();` +
      `console.log(JSON.stringify({atRequire,seen,same,counts:typeof counts}))`
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout.trim().split('\n').pop())).toEqual({ atRequire: [], seen: ['lib/testing.js'], same: true, counts: 'object' })
  })

  // loader.js's code off its common path (the C library fallbacks, the errors
  // of a failed load) is lib/loader-fallbacks.js, carried as text and compiled
  // only when a load takes that path: here, a copy of index.js with no addon
  // anywhere, which must still fail with the coded error naming its directory,
  // also where code generation from strings is disallowed.
  for (const flags of [[], ['--disallow-code-generation-from-strings']]) {
    it(`a require() that finds no addon compiles lib/loader-fallbacks.js from its text and reports SESSION_WRITE_LOCK_NO_NATIVE${flags.length ? ` (${flags[0]})` : ''}`, () => {
      const dir = fs.mkdtempSync(path.join(root, 'target', 'load-cost-noaddon-'))
      try {
        fs.copyFileSync(path.join(ENTRY, 'index.js'), path.join(dir, 'index.js'))
        fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'session-write-lock', main: 'index.js' }))
        const code =
          `const seen=[];const ev=globalThis.eval;` +
          `globalThis.eval=function(t){const u=/sourceURL=(.*)$/.exec(String(t));` +
          `if(u)seen.push(require('node:path').relative(${JSON.stringify(dir)},u[1]).split(require('node:path').sep).join('/'));return ev(t)};` +
          `let err=null;try{require(${JSON.stringify(path.join(dir, 'index.js'))})}catch(e){err={code:e.code,message:e.message}}` +
          `console.log(JSON.stringify({seen,err}))`
        const r = spawnSync(process.execPath, [...flags, '-e', code], { cwd: dir, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
        expect(r.stderr).toBe('')
        expect(r.status).toBe(0)
        const out = JSON.parse(r.stdout.trim().split('\n').pop())
        expect(out.err && out.err.code).toBe('SESSION_WRITE_LOCK_NO_NATIVE')
        expect(out.err.message).toContain(dir)
        expect(out.seen).toEqual(['lib/loader-fallbacks.js'])
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }

  // Each module file a fresh process requires costs it resolution, a read and
  // a compile of its own (docs/performance.md, scenario h): require() of the
  // package reads one JS file, index.js, generated from lib/ by
  // scripts/bundle.js; the modules used later still load on first use.
  it('require() reads one JS file of the package; and still one after the first acquire (the process hooks are installed by index.js)', () => {
    const index = path.join(ENTRY, 'index.js')
    const file = path.join(root, 'target', `load-cost-files-${process.pid}.jsonl`)
    const files = `Object.keys(require.cache).filter((f)=>f.startsWith(${JSON.stringify(ENTRY + path.sep)})&&f.endsWith('.js')).map((f)=>f.slice(${ENTRY.length + 1}).split(${JSON.stringify(path.sep)}).join('/'))`
    const code =
      `const m=require(${JSON.stringify(index)});const atRequire=${files};` +
      `m.acquireSessionWriteLock({sessionFile:${JSON.stringify(file)}}).then((l)=>l.release()).then(()=>{` +
      `console.log(JSON.stringify({atRequire,afterAcquire:${files}}))})`
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const { atRequire, afterAcquire } = JSON.parse(r.stdout.trim().split('\n').pop())
    expect(atRequire).toEqual(['index.js'])
    expect(afterAcquire.sort()).toEqual(['index.js'])
  })
})
