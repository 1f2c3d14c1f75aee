// `session-lock openclaw apply|verify|revert` against the real published
// OpenClaw tarballs (npm pack openclaw@<version>, cached in .cache/openclaw/).
// Without the registry the tests skip loudly, unless CI is set: then they fail.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import * as swl from '../index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const CLI = path.join(root, 'bin', 'session-lock.js')
const COMMAND = path.join(root, 'bin', 'commands', 'openclaw.js')
const CACHE = path.join(root, '.cache', 'openclaw')
const WORK = path.join(CACHE, 'work')
const { KNOWN } = await import(pathToFileURL(COMMAND).href).then((m) => m.default ?? m)
const VERSIONS = ['2026.4.23', '2026.5.22']
// The 2026.5 chunk exports the later generation's names; a package without
// them must be refused by name (and is, until it has them).
const HAS_LATER_SURFACE = typeof swl.resolveSessionWriteLockOptions === 'function' && 'testing' in swl

afterAll(() => fs.rmSync(WORK, { recursive: true, force: true }))

/** spawn, collect output: { status, signal, stdout, stderr } (never spawnSync: it would stall vitest's worker RPC). */
function run(cmd, args, { cwd, env, timeout = 240_000, shell = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, shell, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout)
    child.on('error', (error) => {
      clearTimeout(timer)
      resolve({ status: null, signal: null, stdout, stderr: `${stderr}${error.message}` })
    })
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      resolve({ status, signal, stdout, stderr })
    })
  })
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

/** The pristine extracted package of `version` (package.json + dist/), or { error }. */
async function ensureOpenclaw(version) {
  const dest = path.join(CACHE, version)
  const pkgDir = path.join(dest, 'package')
  const ready = path.join(dest, '.complete')
  const pristine = () =>
    Object.entries(KNOWN[version].chunks).every(([name, c]) => {
      try {
        return sha(fs.readFileSync(path.join(pkgDir, 'dist', name))) === c.sha256
      } catch {
        return false
      }
    })
  if (fs.existsSync(ready) && pristine()) return { pkgDir }
  fs.rmSync(dest, { recursive: true, force: true })
  fs.mkdirSync(dest, { recursive: true })
  const tgz = path.join(CACHE, `openclaw-${version}.tgz`)
  if (!fs.existsSync(tgz)) {
    const r = await run('npm', ['pack', `openclaw@${version}`, '--pack-destination', CACHE, '--silent'], {
      timeout: 600_000,
      shell: process.platform === 'win32',
    })
    if (r.status !== 0 || !fs.existsSync(tgz)) {
      return { error: `npm pack openclaw@${version} failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}` }
    }
  }
  const x = await run('tar', ['-xzf', tgz, '-C', dest, 'package/package.json', 'package/dist'], { timeout: 300_000 })
  if (x.status !== 0) return { error: `extracting ${tgz} failed: ${x.stderr}` }
  if (!pristine()) return { error: `${tgz}: chunks do not match the known sha256 (a different tarball?)` }
  fs.writeFileSync(ready, '')
  return { pkgDir }
}

/** A working install: package.json copied, dist/ hard-linked from the pristine one (the tool replaces files by rename). */
function workInstall(pkgDir, label) {
  fs.mkdirSync(WORK, { recursive: true })
  const dir = fs.mkdtempSync(path.join(WORK, `${label}-`))
  fs.copyFileSync(path.join(pkgDir, 'package.json'), path.join(dir, 'package.json'))
  const link = (from, to) => {
    fs.mkdirSync(to, { recursive: true })
    for (const ent of fs.readdirSync(from, { withFileTypes: true })) {
      const a = path.join(from, ent.name)
      const b = path.join(to, ent.name)
      if (ent.isDirectory()) link(a, b)
      else {
        try {
          fs.linkSync(a, b)
        } catch {
          fs.copyFileSync(a, b)
        }
      }
    }
  }
  link(path.join(pkgDir, 'dist'), path.join(dir, 'dist'))
  return dir
}

/** sha256 of every file under dir, by relative path. */
function treeHashes(dir) {
  const out = {}
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name)
      if (ent.isDirectory()) walk(p)
      else out[path.relative(dir, p)] = sha(fs.readFileSync(p))
    }
  }
  walk(dir)
  return out
}

async function cli(args, env = {}) {
  const r = await run(process.execPath, [CLI, 'openclaw', ...args], { env: { ...process.env, ...env } })
  let json = null
  if (args.includes('--json') && r.status === 0) json = JSON.parse(r.stdout)
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json }
}

/** Load the patched lock chunk in a fresh process and take/release a lock through its minified export. */
async function lockThroughChunk(installDir, chunkName, acquireName) {
  const dir = fs.mkdtempSync(path.join(WORK, 'lockfile-'))
  const script = `
    import fs from 'node:fs'
    const m = await import(${JSON.stringify(pathToFileURL(path.join(installDir, 'dist', chunkName)).href)})
    const lease = await m[${JSON.stringify(acquireName)}]({ sessionFile: ${JSON.stringify(path.join(dir, 's.jsonl'))} })
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
    await lease.release()
    console.log(JSON.stringify({ pid: process.pid, payload, after: fs.existsSync(lease.lockPath) }))
  `
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: installDir, timeout: 60_000 })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  return JSON.parse(r.stdout.trim())
}

const lockChunkOf = (version) => Object.entries(KNOWN[version].chunks).find(([, c]) => c.role === 'lock')[0]

describe('session-lock openclaw (no tarball needed)', () => {
  it('--help, and usage errors exit 2', async () => {
    const h = await cli(['--help'])
    expect(h.status).toBe(0)
    expect(h.stdout).toMatch(/^Usage: session-lock openclaw <apply\|verify\|revert>/)
    expect(h.stdout).toContain(Object.keys(KNOWN).join(', '))
    for (const args of [[], ['frobnicate', '/tmp'], ['apply'], ['verify', '/tmp', '--dry-run'], ['apply', '/tmp', '--nope']]) {
      const r = await cli(args)
      expect(r.status, args.join(' ')).toBe(2)
    }
  })

  it('a directory that is not an openclaw install is refused (exit 3)', async () => {
    fs.mkdirSync(WORK, { recursive: true })
    const dir = fs.mkdtempSync(path.join(WORK, 'notoc-'))
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'something-else', version: '1.0.0' }))
    const r = await cli(['apply', dir])
    expect(r.status).toBe(3)
    expect(r.stderr).toContain('is not openclaw')
    expect(fs.readdirSync(dir)).toEqual(['package.json'])
  })
})

describe.each(VERSIONS)('openclaw %s', (version) => {
  let pkgDir = null
  let unavailable = null

  beforeAll(async () => {
    const r = await ensureOpenclaw(version)
    if (r.error) {
      if (process.env.CI) throw new Error(`CI: cannot get openclaw@${version}: ${r.error}`)
      unavailable = r.error
      console.warn(`\n*** SKIPPING openclaw@${version} tests: ${r.error} ***\n`)
    } else pkgDir = r.pkgDir
  }, 900_000)

  const needTarball = (ctx) => {
    if (unavailable !== null) ctx.skip()
  }
  const canPatch = version !== '2026.5.22' || HAS_LATER_SURFACE

  it('--dry-run shows the replacement and changes nothing', async (ctx) => {
    needTarball(ctx)
    const dir = workInstall(pkgDir, 'dry')
    const before = treeHashes(dir)
    const r = await cli(['apply', dir, '--dry-run'])
    if (canPatch) {
      expect(r.status).toBe(0)
      expect(r.stdout).toContain('dry run: nothing written')
      for (const name of Object.keys(KNOWN[version].chunks)) expect(r.stdout).toContain(`dist/${name}`)
      expect(r.stdout).toMatch(/\+ export \{ .* \} from "file:\/\//)
    } else {
      expect(r.status).toBe(3)
    }
    expect(treeHashes(dir)).toEqual(before)
    expect(fs.existsSync(path.join(dir, '.session-write-lock'))).toBe(false)
    expect((await cli(['revert', dir, '--dry-run'])).status).toBe(0)
    expect(treeHashes(dir)).toEqual(before)
  })

  it('apply, verify, apply again (no change), revert: byte-exact, and the patched chunk locks with "lock": "os"', async (ctx) => {
    needTarball(ctx)
    const dir = workInstall(pkgDir, 'apply')
    const before = treeHashes(dir)
    const applied = await cli(['apply', dir, '--json'])
    if (!canPatch) {
      // This package lacks the later generation's exports: refused by name, nothing written.
      console.warn(`*** openclaw@${version}: this build lacks the 2026.5 exports; checking the refusal instead of the patch ***`)
      expect(applied.status).toBe(3)
      expect(applied.stderr).toMatch(/does not export .*resolveSessionWriteLockOptions/)
      expect(treeHashes(dir)).toEqual(before)
      return
    }
    expect(applied.stderr).toBe('')
    expect(applied.status).toBe(0)
    expect(applied.json).toMatchObject({ action: 'apply', changed: true, version })
    expect(applied.json.verified.ok).toBe(true)
    expect(applied.json.verified.importerFiles).toBeGreaterThan(0)
    const chunk = lockChunkOf(version)
    const chunkFile = path.join(dir, 'dist', chunk)
    const patchedText = fs.readFileSync(chunkFile, 'utf8')
    expect(patchedText).toMatch(/^export \{ .* \} from "file:\/\/.*index\.mjs";$/m)
    // Same names as the original chunk exported.
    const original = fs.readFileSync(path.join(pkgDir, 'dist', chunk), 'utf8')
    const namesOf = (text) => [...text.matchAll(/(\w+) as (\w+)/g)].map((m) => `${m[1]}>${m[2]}`).sort()
    const lastExport = (text) => text.slice(text.lastIndexOf('export {'))
    expect(namesOf(lastExport(patchedText))).toEqual(namesOf(lastExport(original)))
    // The patched chunk's minified acquire export takes a real OS lock.
    const acquireName = /acquireSessionWriteLock as (\w+)/.exec(lastExport(original))[1]
    const got = await lockThroughChunk(dir, chunk, acquireName)
    expect(got.payload).toMatchObject({ pid: got.pid, lock: 'os' })
    expect(got.after).toBe(false)
    if (version === '2026.5.22') {
      // A real importing chunk (the module's public re-export) loads for real.
      const r = await run(
        process.execPath,
        ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(path.join(dir, 'dist', 'session-write-lock-2_ria5BA.js')).href)}); console.log(typeof m.acquireSessionWriteLock, typeof m.testing, m.DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS)`],
        { cwd: dir, timeout: 60_000 },
      )
      expect(r.stdout.trim()).toBe('function object 60000')
    }
    // verify agrees; a second apply is a no-op.
    const v = await cli(['verify', dir, '--json'])
    expect(v.status).toBe(0)
    expect(v.json).toMatchObject({ applied: true, ok: true })
    const patchedTree = treeHashes(dir)
    const again = await cli(['apply', dir, '--json'])
    expect(again.status).toBe(0)
    expect(again.json).toMatchObject({ changed: false, alreadyApplied: true })
    expect(treeHashes(dir)).toEqual(patchedTree)
    // revert --dry-run changes nothing; revert restores every byte.
    expect((await cli(['revert', dir, '--dry-run'])).stdout).toContain('would restore the original')
    expect(treeHashes(dir)).toEqual(patchedTree)
    const rv = await cli(['revert', dir, '--json'])
    expect(rv.status).toBe(0)
    expect(rv.json).toMatchObject({ action: 'revert', changed: true })
    expect(treeHashes(dir)).toEqual(before)
    expect(fs.existsSync(path.join(dir, '.session-write-lock'))).toBe(false)
    // And the original is what the pristine tarball has.
    expect(sha(fs.readFileSync(chunkFile))).toBe(KNOWN[version].chunks[chunk].sha256)
    expect((await cli(['verify', dir])).status).toBe(1)
  })

  it('an importing chunk that needs a name the patch lacks fails verification, and apply restores the original', async (ctx) => {
    needTarball(ctx)
    if (!canPatch) ctx.skip()
    const dir = workInstall(pkgDir, 'broken')
    const chunk = lockChunkOf(version)
    fs.writeFileSync(path.join(dir, 'dist', 'zz-test-importer.js'), `import { zzNotExported } from "./${chunk}";\nexport { zzNotExported };\n`)
    const before = treeHashes(dir)
    const r = await cli(['apply', dir])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('verification failed, the original chunks were restored')
    expect(r.stderr).toContain('zzNotExported')
    expect(treeHashes(dir)).toEqual(before)
    expect(fs.existsSync(path.join(dir, '.session-write-lock'))).toBe(false)
  })

  it('an unknown version, or a chunk that is not the published bytes, is refused and nothing is written', async (ctx) => {
    needTarball(ctx)
    const dir = workInstall(pkgDir, 'unknown')
    const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ ...pj, version: `${version}-9` }))
    const before = treeHashes(dir)
    const r = await cli(['apply', dir])
    expect(r.status).toBe(3)
    expect(r.stderr).toContain(`openclaw ${version}-9 is not a version this command knows`)
    expect(treeHashes(dir)).toEqual(before)

    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pj))
    const chunkFile = path.join(dir, 'dist', lockChunkOf(version))
    const bytes = fs.readFileSync(chunkFile)
    fs.rmSync(chunkFile) // break the hard link before editing
    fs.writeFileSync(chunkFile, Buffer.concat([bytes, Buffer.from('\n// local edit\n')]))
    const edited = treeHashes(dir)
    const r2 = await cli(['apply', dir])
    expect(r2.status).toBe(3)
    expect(r2.stderr).toContain('not the published bytes')
    expect(treeHashes(dir)).toEqual(edited)
  })

  it('refuses when the native binary does not load', async (ctx) => {
    needTarball(ctx)
    const dir = workInstall(pkgDir, 'nonative')
    const before = treeHashes(dir)
    const r = await cli(['apply', dir], { SESSION_WRITE_LOCK_NATIVE_PATH: path.join(dir, 'missing.node') })
    expect(r.status).toBe(69)
    expect(r.stderr).toContain('native addon does not load here, refusing to patch')
    expect(treeHashes(dir)).toEqual(before)
  })
})
