// The two addons (docs/distribution.md): the file lock's addon carries no
// database client and stays under 1 MB; lib/backend.js and the PostgreSQL
// addon load only when a backend is configured; a configured backend whose
// addon is missing fails with a coded error naming the file, never a silent
// fall back to local-only locking. Child processes, so that what is loaded is
// exactly what one `require` of the package loads.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const tag = require('../loader.js').platformTag()
// The addon the package loads (SESSION_WRITE_LOCK_NATIVE_PATH when a row of
// scripts/cross.js points the suite at a cross-built file), else the local build.
const mainAddon = process.env.SESSION_WRITE_LOCK_NATIVE_PATH || path.join(root, `session-write-lock.${tag}.node`)
const pgAddon = path.join(path.dirname(mainAddon), `session-write-lock-postgres.${tag}.node`)
// Nothing listens there: configuring does not connect, acquiring would fail.
const UNREACHABLE = 'postgres://swl:secret@127.0.0.1:9/swl'

function childEnv(extra = {}) {
  const env = { ...process.env }
  for (const k of [
    '__SESSION_WRITE_LOCK_NATIVE',
    '__SESSION_WRITE_LOCK_POSTGRES',
    'SESSION_WRITE_LOCK_POSTGRES_PATH',
    'SESSION_WRITE_LOCK_BACKEND',
    'NODE_OPTIONS',
  ]) {
    delete env[k]
  }
  return { ...env, ...extra }
}

// Runs `body` (an async function's body; `pkg` is the package) in a fresh
// Node and returns what it printed as JSON.
function inChild(pkgDir, body, env = {}) {
  const script = `
    const loadedNow = () => ({
      modules: Object.keys(require.cache).filter((k) => /backend\\.js$|\\.node$/.test(k)).map((k) => require('node:path').basename(k)),
      mapped: require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')
        .filter((l) => /session-write-lock/.test(l)).map((l) => require('node:path').basename(l.trim().split(/\\s+/).pop()))
        .filter((v, i, a) => a.indexOf(v) === i),
    })
    ;(async () => {
      const pkg = require(${JSON.stringify(pkgDir)})
      const out = await (async () => { ${body} })()
      console.log(JSON.stringify(out))
    })().catch((e) => { console.log(JSON.stringify({ thrown: { code: e.code, message: e.message } })) })`
  const r = spawnSync(process.execPath, ['-e', script], { env: childEnv(env), encoding: 'utf8', timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

const linux = process.platform === 'linux'

/**
 * A temporary directory holding `<name>.js`, an addon stand-in for
 * SESSION_WRITE_LOCK_NATIVE_PATH: `a` is the real addon, `body` sets
 * module.exports from it. Returns { dir, shim }.
 */
function shimAddon(name, body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `swl-${name}-`))
  const shim = path.join(dir, `${name}.js`)
  fs.writeFileSync(shim, `const a = require(${JSON.stringify(mainAddon)});${body}`)
  return { dir, shim }
}

/** `node -e script` with the package's addon replaced by `shim`. */
function runWithShim(shim, script) {
  return spawnSync(process.execPath, ['-e', script], { env: childEnv({ SESSION_WRITE_LOCK_NATIVE_PATH: shim }), encoding: 'utf8', timeout: 60_000 })
}

describe('the file-lock addon', () => {
  it('exports nothing of the PostgreSQL backend', () => {
    const names = Object.keys(require(mainAddon))
    expect(names).toContain('acquire')
    expect(names.filter((n) => /^pg/.test(n))).toEqual([])
  })

  // Every target: Linux (gnu, musl, arm64), darwin and Windows, as the release
  // binaries are built (scripts/cross.js and scripts/cross-win.js build the
  // file lock's addon as a cdylib alone, so that the profile's LTO runs;
  // docs/distribution.md, "Two addons").
  // napi-rs creates a JS function for every export when the addon loads, in
  // every process that requires the package: the rarely used ones are made by
  // rareFunctions() instead, on a copy's first call (lib/native.js, ABI 4).
  it('creates its rarely used functions only when asked: rareFunctions() makes them, the exports do not carry them', () => {
    const addon = require(mainAddon)
    const rareNames = [
      'createCounts', 'peekHolder', 'inspectLockFile', 'inspectLockPayload', 'removeStrayTemp',
      'markerOpen', 'markerUpdate', 'markerClose', 'markerOrphans',
      'holderOf', 'listHeld', 'registryCounts', 'loopWaitCounts', 'contextCounts', 'releaseKey',
      'threadId', 'normalize', 'existingKey', 'selfIdentity', 'processStartTime', 'setStartTimeOverride',
      'clearPathCache', 'panicForTest',
    ]
    expect(Object.keys(addon).filter((n) => rareNames.includes(n))).toEqual([])
    expect(addon.abiVersion()).toBe(4)
    const rare = addon.rareFunctions()
    expect(Object.keys(rare).sort()).toEqual([...rareNames].sort())
    for (const n of rareNames) expect(typeof rare[n]).toBe('function')
    expect(rare.selfIdentity().pid).toBe(process.pid)
    expect(rare.existingKey(path.join(root, 'nothing-here', 'x.jsonl.lock'))).toContain('x.jsonl.lock')
  })

  // An addon that exports every function at its top level (an older build
  // named by SESSION_WRITE_LOCK_NATIVE_PATH, an older platform package): the
  // package's JS calls them there.
  it('the package works with an addon that has no rareFunctions (every function exported)', () => {
    const { dir, shim } = shimAddon(
      'old-addon',
      'const all = { ...a, ...(typeof a.rareFunctions === "function" ? a.rareFunctions() : {}) };' +
        'delete all.rareFunctions; module.exports = all',
    )
    const session = path.join(dir, 's.jsonl')
    const out = inChild(
      root,
      `
      const lease = await pkg.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(session)} })
      const held = pkg.listHeldLocks().map((h) => h.sessionFile === undefined ? h.lockPath : h.sessionFile)
      const inspected = await pkg.inspectLockFile(${JSON.stringify(session + '.lock')})
      const counts = pkg.__testing.registryCounts()
      const identity = pkg.__testing.identity().pid === process.pid
      await pkg.release(${JSON.stringify(session)})
      return { held: held.length, inspected: inspected !== null && typeof inspected === 'object', counts: typeof counts, identity, after: pkg.listHeldLocks().length }
      `,
      { SESSION_WRITE_LOCK_NATIVE_PATH: shim },
    )
    expect(out).toEqual({ held: 1, inspected: true, counts: 'object', identity: true, after: 0 })
  })

  // The exit listener of every process that locked releases its thread's
  // holds: that call is an export made at load, so exiting does not make the
  // whole rare object (about 0.26 M instructions) on the way out.
  it('a process that locks, releases and exits never makes the rare functions', () => {
    const { dir, shim } = shimAddon(
      'counting-addon',
      'module.exports = { ...a, rareFunctions() { process.stderr.write("rareFunctions()\\n"); return a.rareFunctions() } }',
    )
    const session = path.join(dir, 's.jsonl')
    const script =
      `const pkg = require(${JSON.stringify(root)});` +
      `pkg.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(session)} }).then((l) => l.release()).then(() => console.log('released'))`
    const r = runWithShim(shim, script)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('released')
    expect(r.stderr).not.toContain('rareFunctions()')
    // The shim is what the package loaded (the same child, asking for a rare function, says so).
    const asked = runWithShim(shim, `require(${JSON.stringify(root)}).listHeldLocks()`)
    expect(asked.stderr).toContain('rareFunctions()')
  })

  it('is under 1 MB, stripped (its size on disk)', () => {
    expect(fs.statSync(mainAddon).size).toBeLessThan(1_000_000)
  })

  it('the PostgreSQL addon is built next to it and exports nothing of the file lock', () => {
    const pg = require(pgAddon)
    const names = Object.keys(pg)
    expect(names).toContain('pgConfigure')
    expect(names).toContain('pgAbiVersion')
    for (const fileLock of ['acquire', 'releaseLease', 'abiVersion', 'normalize', 'registryCounts']) {
      expect(names).not.toContain(fileLock)
    }
  })
})

describe.skipIf(!linux)('what a require loads', () => {
  it('with no backend configured: neither lib/backend.js nor the PostgreSQL addon, even after locking and the backend calls', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-addons-'))
    const out = inChild(
      root,
      `
      const afterRequire = loadedNow()
      const lease = await pkg.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(path.join(dir, 's.jsonl'))} })
      await pkg.release(lease)
      const released = await pkg.release(${JSON.stringify(path.join(dir, 's.jsonl'))})
      const inspected = await pkg.inspectSessionWriteLockBackend()
      const stats = pkg.__testing.backendStats()
      pkg.resetSessionWriteLockStateForTest()
      const configured = pkg.configureSessionWriteLock({ backend: null })
      const file = pkg.configureSessionWriteLock({ backend: { kind: 'file' } })
      await (await pkg.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(path.join(dir, 's.jsonl'))} })).release()
      return { afterRequire, released, inspected, stats, configured, file, afterUse: loadedNow() }`,
    )
    fs.rmSync(dir, { recursive: true, force: true })
    expect(out.afterRequire.modules).toEqual([path.basename(mainAddon)])
    expect(out.afterRequire.mapped).toEqual([path.basename(mainAddon)])
    expect(out.released).toBe(false)
    expect(out.inspected).toBe(null)
    expect(out.stats).toBe(null)
    expect(out.configured).toEqual({ kind: 'file' })
    expect(out.file).toEqual({ kind: 'file' })
    expect(out.afterUse).toEqual(out.afterRequire)
  })

  it('SESSION_WRITE_LOCK_BACKEND=file loads nothing more either', () => {
    const out = inChild(root, `await pkg.inspectSessionWriteLockBackend(); return loadedNow()`, { SESSION_WRITE_LOCK_BACKEND: 'file' })
    expect(out.modules).toEqual([path.basename(mainAddon)])
  })

  it('configuring a PostgreSQL backend loads lib/backend.js and the PostgreSQL addon (one copy of each)', () => {
    const out = inChild(
      root,
      `
      const before = loadedNow()
      const cfg = pkg.configureSessionWriteLock({ backend: { kind: 'postgres', connectionString: ${JSON.stringify(UNREACHABLE)} } })
      return { before, cfg, after: loadedNow() }`,
    )
    expect(out.before.modules).toEqual([path.basename(mainAddon)])
    expect(out.cfg.kind).toBe('postgres')
    expect(JSON.stringify(out.cfg)).not.toContain('secret')
    expect(out.after.modules.sort()).toEqual(['backend.js', path.basename(mainAddon), path.basename(pgAddon)].sort())
    expect(out.after.mapped.sort()).toEqual([path.basename(mainAddon), path.basename(pgAddon)].sort())
  })

  it('SESSION_WRITE_LOCK_BACKEND loads them on first use, not at require', () => {
    const out = inChild(
      root,
      `
      const before = loadedNow()
      const inspected = await pkg.inspectSessionWriteLockBackend().then(() => 'resolved', (e) => e.code)
      return { before, inspected, after: loadedNow() }`,
      { SESSION_WRITE_LOCK_BACKEND: UNREACHABLE },
    )
    expect(out.before.modules).toEqual([path.basename(mainAddon)])
    expect(out.after.modules).toContain('backend.js')
    expect(out.after.modules).toContain(path.basename(pgAddon))
  })
})

describe.skipIf(!linux)('two copies of the package in one process', () => {
  it('share one PostgreSQL addon (one engine), as they share the file-lock addon', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pgcopies-'))
    const copy = (name) => {
      const pkg = path.join(dir, name, 'node_modules', 'session-write-lock')
      fs.mkdirSync(pkg, { recursive: true })
      for (const f of ['index.js', 'loader.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(pkg, f))
      fs.cpSync(path.join(root, 'lib'), path.join(pkg, 'lib'), { recursive: true })
      fs.copyFileSync(mainAddon, path.join(pkg, path.basename(mainAddon)))
      fs.copyFileSync(pgAddon, path.join(pkg, path.basename(pgAddon)))
      return pkg
    }
    const a = copy('a')
    const b = copy('b')
    try {
      const out = inChild(
        a,
        `
        const cfg = { backend: { kind: 'postgres', connectionString: ${JSON.stringify(UNREACHABLE)} } }
        pkg.configureSessionWriteLock(cfg)
        const other = require(${JSON.stringify(b)})
        other.configureSessionWriteLock(cfg)
        const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').map((l) => l.trim().split(/\\s+/).pop())
        return { distinct: other !== pkg, pg: [...new Set(maps.filter((f) => /session-write-lock-postgres/.test(f)))] }`,
        { SESSION_WRITE_LOCK_NATIVE_PATH: '' },
      )
      expect(out.distinct).toBe(true)
      expect(out.pg).toEqual([path.join(a, path.basename(pgAddon))])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('a configured backend whose addon is missing', () => {
  // A copy of the package with the file-lock addon and without the PostgreSQL one.
  function packageWithoutPg() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-nopg-'))
    const pkg = path.join(dir, 'node_modules', 'session-write-lock')
    fs.mkdirSync(pkg, { recursive: true })
    for (const f of ['index.js', 'loader.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(pkg, f))
    fs.cpSync(path.join(root, 'lib'), path.join(pkg, 'lib'), { recursive: true })
    fs.copyFileSync(mainAddon, path.join(pkg, `session-write-lock.${tag}.node`))
    return { dir, pkg }
  }
  const env = { SESSION_WRITE_LOCK_NATIVE_PATH: '' }

  it('configureSessionWriteLock throws SESSION_WRITE_LOCK_BACKEND_CONFIG naming the file', () => {
    const { dir, pkg } = packageWithoutPg()
    try {
      const out = inChild(
        pkg,
        `return pkg.configureSessionWriteLock({ backend: { kind: 'postgres', connectionString: ${JSON.stringify(UNREACHABLE)} } })`,
        env,
      )
      expect(out.thrown.code).toBe('SESSION_WRITE_LOCK_BACKEND_CONFIG')
      expect(out.thrown.message).toContain(`session-write-lock-postgres.${tag}.node`)
      expect(out.thrown.message).not.toContain('secret')
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('with SESSION_WRITE_LOCK_BACKEND: every acquire rejects with it and takes no file lock', () => {
    const { dir, pkg } = packageWithoutPg()
    const session = path.join(dir, 'sessions', 's.jsonl')
    try {
      const out = inChild(
        pkg,
        `
        const errs = []
        for (let i = 0; i < 2; i++) {
          errs.push(await pkg.acquireSessionWriteLock({ sessionFile: ${JSON.stringify(session)} }).then(() => null, (e) => ({ code: e.code, message: e.message })))
        }
        return { errs, lockFile: require('node:fs').existsSync(${JSON.stringify(session + '.lock')}) }`,
        { ...env, SESSION_WRITE_LOCK_BACKEND: UNREACHABLE },
      )
      for (const e of out.errs) {
        expect(e.code).toBe('SESSION_WRITE_LOCK_BACKEND_CONFIG')
        expect(e.message).toContain(`session-write-lock-postgres.${tag}.node`)
      }
      expect(out.lockFile).toBe(false)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
