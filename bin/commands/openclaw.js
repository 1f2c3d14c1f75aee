'use strict'
// `session-lock openclaw apply|verify|revert <install dir>`: run this package
// under an installed OpenClaw gateway. An installed gateway has the session
// write-lock module bundled into a hashed chunk of `dist/` with minified
// export names (`export { acquireSessionWriteLock as n, ... }`) that other
// chunks import by those names. `apply` replaces that chunk (and, in the
// 2026.5 generation, its error chunk) with a one-statement chunk that
// re-exports this package under the same names, after keeping a byte-exact
// backup; `revert` puts the original bytes back.
//
// Guarantees: only versions listed in KNOWN are touched, and only when their
// chunks still have the published bytes (sha256); nothing is written unless
// this package's native binary loads here; a patched chunk is verified by
// loading it in a fresh process from the install dir, taking and releasing a
// lock through it and linking every name other chunks import from it; a
// failed verification restores the originals. Not guaranteed: the rest of
// the gateway is not started (its own dependencies are not needed for the
// check), and dynamic `import()`s of the chunk are not checked by name.
//
// Over 400 lines on purpose: one command whose steps (find the chunks by
// content, plan, back up, write, verify in a fresh process, restore on
// failure) share the manifest and the chunk records; its sections below are
// in that order, and nothing outside this file uses them.

const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { pathToFileURL } = require('node:url')

const HELP = `Usage: session-lock openclaw <apply|verify|revert> <openclaw install dir> [--dry-run] [--json]

Run session-write-lock under an installed OpenClaw gateway (the directory of
the installed "openclaw" package, the one holding its package.json and dist/).

  apply    find the bundled session write-lock chunk in dist/ by its content,
           keep a byte-exact backup under <dir>/.session-write-lock/, replace
           the chunk with a re-export of this package under the chunk's own
           export names, then verify (a failed verification restores the
           original). Applying again to a patched install changes nothing.
  verify   load the patched chunks in a fresh process, take and release a lock
           through them, and check every name other chunks import from them
  revert   restore the original chunks byte for byte and remove the backup

Options:
  --dry-run   show what apply or revert would change; write nothing
  --json      print one JSON document
  -h, --help  show this help

The patched chunk imports this package by its absolute path (the installation
that ran "apply"): keep that installation where it is, and run "revert" before
removing or moving it. Running from a temporary npx cache is refused.

Known OpenClaw versions: %KNOWN%. Others are refused.

Exit status: 0 done (or nothing to do), 1 verification failed (the install was
restored) or, for verify, not applied; 2 usage error; 3 refused (unknown
version, chunks not as published, install changed since apply, I/O error);
69 this package's native addon does not load here (nothing written).`

const STATE_DIR = '.session-write-lock'
const MANIFEST = 'manifest.json'

/**
 * The OpenClaw releases this command knows: each bundled chunk it replaces,
 * with its role and the sha256 of the published bytes.
 */
const KNOWN = {
  '2026.4.23': {
    chunks: {
      'session-write-lock-DpiRMtIU.js': {
        role: 'lock',
        sha256: '2f7d4bb0e28cb7b4ca5348c4395044a879e500db578cda2d5ffddaf3a3769229',
      },
    },
  },
  '2026.5.22': {
    chunks: {
      'session-write-lock-_a5O1H8L.js': {
        role: 'lock',
        sha256: 'f8a233bca6baa6f4cb427363bb69d581a225fbff5355b7c63db737ee284c912a',
      },
      'session-write-lock-error-HvDhYM6H.js': {
        role: 'error',
        sha256: '3cb2b9147bcb8c8aea5c624ecec40d7640874292875951276f5b3707617c667d',
      },
    },
  },
}

class OpenclawError extends Error {
  constructor(message, exitCode = 3) {
    super(message)
    this.name = 'OpenclawError'
    this.exitCode = exitCode
  }
}

const usage = (message) => new OpenclawError(message, 2)

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

// ------------------------------------------------------------ finding chunks

const TIMEOUT_MESSAGE = 'session file locked (timeout '
const REGION_MARKERS = ['//#region src/agents/session-write-lock.ts', '//#region src/agents/session-write-lock-error.ts']

/** The last `export { a as b, c };` statement of a chunk: [[local, exported], ...], or null. */
function parseExports(text) {
  const re = /export\s*\{([^{}]*)\}\s*;?/g
  let last = null
  let m
  while ((m = re.exec(text)) !== null) {
    // An `export { ... } from "..."` re-export is not the chunk's own shape.
    const after = text.slice(m.index + m[0].length, m.index + m[0].length + 10)
    if (/^\s*from\b/.test(after)) continue
    last = m[1]
  }
  if (last === null) return null
  const out = []
  for (const part of last.split(',')) {
    const entry = part.trim()
    if (entry === '') continue
    const e = /^([\w$]+)(?:\s+as\s+([\w$]+))?$/.exec(entry)
    if (e === null) return null
    out.push([e[1], e[2] || e[1]])
  }
  return out
}

/** The role of a chunk by its content: 'lock', 'error' or null. */
function chunkRole(text) {
  const looksLikeIt = text.includes(TIMEOUT_MESSAGE) || REGION_MARKERS.some((m) => text.includes(m))
  if (!looksLikeIt) return null
  const exports = parseExports(text)
  if (exports === null) return null
  const locals = new Set(exports.map(([local]) => local))
  if (locals.has('acquireSessionWriteLock')) return 'lock'
  if (locals.has('SessionWriteLockTimeoutError') && text.includes(TIMEOUT_MESSAGE)) return 'error'
  return null
}

/** Every top-level `dist/*.js` chunk that is the lock module or its error module. */
function findLockChunks(distDir) {
  const found = []
  for (const name of fs.readdirSync(distDir).sort()) {
    if (!name.endsWith('.js')) continue
    const file = path.join(distDir, name)
    let st
    try {
      st = fs.statSync(file)
    } catch {
      continue
    }
    if (!st.isFile() || st.size > 4 * 1024 * 1024) continue
    const bytes = fs.readFileSync(file)
    // Cheap byte test before decoding.
    if (bytes.indexOf('session') === -1) continue
    const text = bytes.toString('utf8')
    const role = chunkRole(text)
    if (role !== null) found.push({ name, file, role, sha256: sha256(bytes), exports: parseExports(text) })
  }
  return found
}

/** Every `.js` under `distDir` that imports one of `targets` by name: Map(target -> Set(names)). */
function findImporters(distDir, targets) {
  const byTarget = new Map(targets.map((t) => [t, new Set()]))
  const files = new Map(targets.map((t) => [t, []]))
  const baseNames = targets.map((t) => path.basename(t))
  const walk = (dir) => {
    for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, ent.name)
      if (ent.isDirectory()) {
        walk(p)
        continue
      }
      if (!ent.isFile() || !ent.name.endsWith('.js') || targets.includes(p)) continue
      const bytes = fs.readFileSync(p)
      if (!baseNames.some((b) => bytes.indexOf(b) !== -1)) continue
      const text = bytes.toString('utf8')
      const re = /\b(?:import|export)\s*\{([^{}]*)\}\s*from\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']/g
      let m
      while ((m = re.exec(text)) !== null) {
        const spec = m[2] || m[3]
        if (!spec.startsWith('.')) continue
        const target = path.resolve(path.dirname(p), spec)
        if (!byTarget.has(target)) continue
        if (!files.get(target).includes(p)) files.get(target).push(p)
        if (m[1] === undefined) continue
        for (const part of m[1].split(',')) {
          const e = /^\s*([\w$]+)(?:\s+as\s+[\w$]+)?\s*$/.exec(part)
          if (e !== null) byTarget.get(target).add(e[1])
        }
      }
    }
  }
  walk(distDir)
  return { names: byTarget, files }
}

// ------------------------------------------------------------ this package

/** The root of the session-write-lock package this command belongs to. */
function packageRoot() {
  let dir = __dirname
  for (;;) {
    const pj = path.join(dir, 'package.json')
    try {
      if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'session-write-lock') return dir
    } catch {
      // keep looking upwards
    }
    const up = path.dirname(dir)
    if (up === dir) throw new OpenclawError('cannot find the session-write-lock package root')
    dir = up
  }
}

/** Load the package here (native binary included); its export names, or a refusal. */
function loadPackage(root) {
  if (/[\\/]_npx[\\/]/.test(root)) {
    throw new OpenclawError(
      `this session-write-lock runs from npm's temporary npx cache (${root}); the patched gateway would import it from there. ` +
        'Install it first (npm install -g session-write-lock, or into a fixed directory) and run that copy',
    )
  }
  let pkg
  try {
    pkg = require(path.join(root, 'index.js'))
    // Touch the binding (nothing is held by this process: a no-op).
    pkg.releaseAllSync()
  } catch (err) {
    const why = String((err && err.message) || err).split('\n')[0]
    // 69 as for every session-lock command without its addon (EX_UNAVAILABLE).
    throw new OpenclawError(`the session-write-lock native addon does not load here, refusing to patch: ${why}`, 69)
  }
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version
  return { pkg, version, entry: path.join(root, 'index.mjs'), url: pathToFileURL(path.join(root, 'index.mjs')).href }
}

// ------------------------------------------------------------ the install

function readInstall(dir) {
  const installDir = path.resolve(dir)
  let pj
  try {
    pj = JSON.parse(fs.readFileSync(path.join(installDir, 'package.json'), 'utf8'))
  } catch (err) {
    throw new OpenclawError(`${installDir}: not an installed openclaw package (${err.code || err.message})`)
  }
  if (pj.name !== 'openclaw') throw new OpenclawError(`${installDir}: package "${pj.name}" is not openclaw`)
  const distDir = path.join(installDir, 'dist')
  if (!fs.existsSync(distDir)) throw new OpenclawError(`${distDir}: no dist directory`)
  return { installDir, distDir, version: pj.version, stateDir: path.join(installDir, STATE_DIR) }
}

function readManifest(inst) {
  const file = path.join(inst.stateDir, MANIFEST)
  if (!fs.existsSync(file)) return null
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    throw new OpenclawError(`${file}: unreadable manifest (${err.message}); restore the chunks from ${path.join(inst.stateDir, 'backup')} by hand`)
  }
}

function fileSha(file) {
  try {
    return sha256(fs.readFileSync(file))
  } catch {
    return null
  }
}

/** The chunk that replaces `chunk`: its exports, by the same names, from the package. */
function patchedChunkText(chunk, inst, pkgInfo) {
  const list = chunk.exports.map(([local, exported]) => (local === exported ? local : `${local} as ${exported}`)).join(', ')
  return (
    `// Replaced by session-write-lock ${pkgInfo.version} ("session-lock openclaw apply"): the ${chunk.role} chunk of\n` +
    `// openclaw ${inst.version}, re-exported from the package under the chunk's own export names.\n` +
    `// Original bytes: ${STATE_DIR}/backup/${chunk.name} (sha256 ${chunk.sha256}).\n` +
    `// Undo with: session-lock openclaw revert <this openclaw install dir>\n` +
    `export { ${list} } from ${JSON.stringify(pkgInfo.url)};\n`
  )
}

/** Refuse unless the install is a known version whose chunks are found, as published. */
function planApply(inst, pkgInfo) {
  const known = KNOWN[inst.version]
  if (known === undefined) {
    throw new OpenclawError(`openclaw ${inst.version} is not a version this command knows (${Object.keys(KNOWN).join(', ')}); refusing to patch`)
  }
  const found = findLockChunks(inst.distDir)
  const expected = Object.keys(known.chunks).sort()
  const names = found.map((c) => c.name).sort()
  if (names.join('\n') !== expected.join('\n')) {
    throw new OpenclawError(
      `openclaw ${inst.version}: expected the lock chunks ${expected.join(', ')} in ${inst.distDir}, found ${names.join(', ') || 'none'}; refusing to patch`,
    )
  }
  const pkgExports = new Set(Object.keys(pkgInfo.pkg))
  const chunks = []
  for (const c of found) {
    const want = known.chunks[c.name]
    if (want.role !== c.role || want.sha256 !== c.sha256) {
      throw new OpenclawError(`${c.file}: not the published bytes of openclaw ${inst.version} (sha256 ${c.sha256}); refusing to patch`)
    }
    const missing = c.exports.map(([local]) => local).filter((local) => !pkgExports.has(local))
    if (missing.length > 0) {
      throw new OpenclawError(
        `session-write-lock ${pkgInfo.version} does not export ${missing.join(', ')}, which ${c.name} of openclaw ${inst.version} exports; refusing to patch`,
      )
    }
    const text = patchedChunkText(c, inst, pkgInfo)
    chunks.push({ ...c, patched: text, patchedSha256: sha256(Buffer.from(text)) })
  }
  return chunks
}

// ------------------------------------------------------------ verification

const VERIFY_SCRIPT = `
import fs from 'node:fs'
import path from 'node:path'
const cfg = JSON.parse(process.env.SWL_OPENCLAW_VERIFY)
const pkg = await import(cfg.packageUrl)
const out = { chunks: [], lock: null, importers: null }
for (const c of cfg.chunks) {
  const m = await import(c.url)
  const wrong = c.exports.filter(([local, exported]) => m[exported] === undefined || m[exported] !== pkg[local]).map(([, e]) => e)
  if (wrong.length > 0) throw new Error(c.name + ': exports not the package\\'s: ' + wrong.join(', '))
  out.chunks.push(c.name)
}
const lockChunk = cfg.chunks.find((c) => c.role === 'lock')
const m = await import(lockChunk.url)
const acquire = m[lockChunk.exports.find(([local]) => local === 'acquireSessionWriteLock')[1]]
const lease = await acquire({ sessionFile: cfg.sessionFile, timeoutMs: 10000 })
const payload = JSON.parse(fs.readFileSync(lease.lockPath, 'utf8'))
if (payload.lock !== 'os' || payload.pid !== process.pid) throw new Error('unexpected lock payload: ' + JSON.stringify(payload))
await lease.release()
if (fs.existsSync(lease.lockPath)) throw new Error('lock file left after release: ' + lease.lockPath)
out.lock = { lockPath: lease.lockPath, payloadLock: payload.lock }
if (cfg.importsModule) {
  await import(cfg.importsModule)
  out.importers = 'linked'
}
process.stdout.write(JSON.stringify(out) + '\\n')
`

/**
 * Load the patched chunks in a fresh Node process (cwd: the install dir),
 * check each export is the package's own, take and release a lock through
 * the lock chunk, and link every name other chunks import from them.
 */
function verifyPatched(inst, manifest) {
  const chunks = manifest.chunks.map((c) => ({
    name: path.basename(c.file),
    role: c.role,
    exports: c.exports,
    url: pathToFileURL(path.join(inst.installDir, c.file)).href,
    file: path.join(inst.installDir, c.file),
  }))
  const problems = []
  for (const c of manifest.chunks) {
    const now = fileSha(path.join(inst.installDir, c.file))
    if (now !== c.patchedSha256) problems.push(`${c.file}: not the patched bytes (sha256 ${now})`)
  }
  if (problems.length > 0) return { ok: false, problems }
  const importers = findImporters(
    inst.distDir,
    chunks.map((c) => c.file),
  )
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-openclaw-verify-'))
  try {
    let importsModule = null
    const lines = []
    let importerFiles = 0
    chunks.forEach((c, i) => {
      const names = [...importers.names.get(c.file)].sort()
      importerFiles += importers.files.get(c.file).length
      if (names.length > 0) lines.push(`import { ${names.map((n, j) => `${n} as _${i}_${j}`).join(', ')} } from ${JSON.stringify(c.url)};`)
    })
    if (lines.length > 0) {
      importsModule = path.join(tmp, 'importers.mjs')
      fs.writeFileSync(importsModule, `${lines.join('\n')}\n`)
    }
    const cfg = {
      packageUrl: manifest.packageUrl,
      chunks,
      sessionFile: path.join(tmp, 'verify.jsonl'),
      importsModule: importsModule && pathToFileURL(importsModule).href,
    }
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', VERIFY_SCRIPT], {
      cwd: inst.installDir,
      env: { ...process.env, SWL_OPENCLAW_VERIFY: JSON.stringify(cfg) },
      encoding: 'utf8',
      timeout: 60_000,
    })
    if (r.status !== 0) {
      const why = (r.stderr || '').trim().split('\n').filter(Boolean).slice(0, 6).join('\n  ') || `status ${r.status} ${r.signal || ''}`
      return { ok: false, problems: [`loading the patched chunks failed:\n  ${why}`] }
    }
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    return {
      ok: true,
      problems: [],
      chunks: out.chunks,
      lockPath: out.lock.lockPath,
      importerFiles,
      importedNames: Object.fromEntries(chunks.map((c) => [c.name, [...importers.names.get(c.file)].sort()])),
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

// ------------------------------------------------------------ writing

/** Replace `file` by `bytes` atomically (same directory, same mode). */
function writeAtomic(file, bytes) {
  const mode = fs.statSync(file).mode & 0o7777
  const tmp = `${file}.swl-${process.pid}.tmp`
  try {
    fs.writeFileSync(tmp, bytes, { mode })
    fs.chmodSync(tmp, mode)
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw err
  }
}

/** An fs error as "<path>: <message>", anything else by its message. */
function describe(err) {
  if (err instanceof OpenclawError) return err.message
  return String((err && err.message) || err).split('\n')[0]
}

function restoreFromBackup(inst, manifest) {
  const restored = []
  for (const c of manifest.chunks) {
    const target = path.join(inst.installDir, c.file)
    const backup = path.join(inst.installDir, c.backup)
    if (fileSha(target) === c.originalSha256) {
      restored.push(c.file)
      continue
    }
    let bytes
    try {
      bytes = fs.readFileSync(backup)
    } catch (err) {
      throw new OpenclawError(`cannot read the backup ${backup}: ${describe(err)}`)
    }
    if (sha256(bytes) !== c.originalSha256) throw new OpenclawError(`${backup}: backup does not match the recorded sha256; not restoring it`)
    writeAtomic(target, bytes)
    if (fileSha(target) !== c.originalSha256) throw new OpenclawError(`${target}: restored bytes do not match the original sha256`)
    restored.push(c.file)
  }
  return restored
}

// ------------------------------------------------------------ commands

function apply(dir, { dryRun = false } = {}) {
  const inst = readInstall(dir)
  const manifest = readManifest(inst)
  if (manifest !== null) {
    const states = manifest.chunks.map((c) => fileSha(path.join(inst.installDir, c.file)))
    if (manifest.chunks.every((c, i) => states[i] === c.patchedSha256)) {
      return { action: 'apply', changed: false, alreadyApplied: true, version: inst.version, chunks: manifest.chunks.map((c) => c.file) }
    }
    throw new OpenclawError(
      `${inst.installDir} was patched before (${path.join(inst.stateDir, MANIFEST)}) but its chunks changed since (upgraded?); ` +
        'run "session-lock openclaw revert" or remove that directory after reinstalling openclaw',
    )
  }
  const pkgInfo = loadPackage(packageRoot())
  const chunks = planApply(inst, pkgInfo)
  const plan = chunks.map((c) => ({
    file: path.relative(inst.installDir, c.file),
    role: c.role,
    originalSha256: c.sha256,
    patchedSha256: c.patchedSha256,
    backup: path.join(STATE_DIR, 'backup', c.name),
    exports: c.exports,
    patched: c.patched,
  }))
  if (dryRun) return { action: 'apply', dryRun: true, changed: false, version: inst.version, packageUrl: pkgInfo.url, chunks: plan }
  const backupDir = path.join(inst.stateDir, 'backup')
  const newManifest = {
    tool: 'session-write-lock',
    toolVersion: pkgInfo.version,
    openclawVersion: inst.version,
    packageUrl: pkgInfo.url,
    appliedAt: new Date().toISOString(),
    chunks: plan.map(({ patched, ...rest }) => rest),
  }
  try {
    fs.mkdirSync(backupDir, { recursive: true })
    for (const c of chunks) {
      const dest = path.join(backupDir, c.name)
      fs.copyFileSync(c.file, dest)
      if (fileSha(dest) !== c.sha256) throw new OpenclawError(`${dest}: backup copy does not match the original; nothing patched`)
    }
    fs.writeFileSync(path.join(inst.stateDir, MANIFEST), `${JSON.stringify(newManifest, null, 2)}\n`)
    for (const c of chunks) writeAtomic(c.file, c.patched)
  } catch (err) {
    // Put back whatever was replaced, and leave no backup that would make the
    // next apply think this one happened.
    try {
      if (fs.existsSync(path.join(inst.stateDir, MANIFEST))) restoreFromBackup(inst, newManifest)
      fs.rmSync(inst.stateDir, { recursive: true, force: true })
    } catch (undoErr) {
      throw new OpenclawError(`apply failed (${describe(err)}) and undoing it failed too (${describe(undoErr)}); originals are in ${backupDir}`)
    }
    throw new OpenclawError(`apply failed, nothing changed: ${describe(err)}`)
  }
  const verified = verifyPatched(inst, newManifest)
  if (!verified.ok) {
    restoreFromBackup(inst, newManifest)
    fs.rmSync(inst.stateDir, { recursive: true, force: true })
    const err = new OpenclawError(`verification failed, the original chunks were restored:\n  ${verified.problems.join('\n  ')}`, 1)
    throw err
  }
  return { action: 'apply', changed: true, version: inst.version, packageUrl: pkgInfo.url, chunks: plan.map((c) => c.file), verified }
}

function verify(dir) {
  const inst = readInstall(dir)
  const manifest = readManifest(inst)
  if (manifest === null) return { action: 'verify', applied: false, ok: false, version: inst.version, problems: ['not applied'] }
  const verified = verifyPatched(inst, manifest)
  return { action: 'verify', applied: true, version: inst.version, packageUrl: manifest.packageUrl, ...verified }
}

function revert(dir, { dryRun = false } = {}) {
  const inst = readInstall(dir)
  const manifest = readManifest(inst)
  if (manifest === null) return { action: 'revert', changed: false, applied: false, version: inst.version }
  const plan = []
  for (const c of manifest.chunks) {
    const now = fileSha(path.join(inst.installDir, c.file))
    if (now !== c.patchedSha256 && now !== c.originalSha256) {
      throw new OpenclawError(
        `${c.file}: neither the patched nor the original bytes (sha256 ${now}); openclaw changed since apply. ` +
          `The originals are in ${path.join(inst.stateDir, 'backup')}; not touching anything`,
      )
    }
    plan.push({ file: c.file, restore: now !== c.originalSha256, originalSha256: c.originalSha256 })
  }
  if (dryRun) return { action: 'revert', dryRun: true, changed: false, version: inst.version, chunks: plan }
  restoreFromBackup(inst, manifest)
  fs.rmSync(inst.stateDir, { recursive: true, force: true })
  return { action: 'revert', changed: plan.some((p) => p.restore), version: inst.version, chunks: plan.map((p) => p.file) }
}

// ------------------------------------------------------------ CLI

function printResult(r, json) {
  if (json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`)
    return
  }
  const w = (s) => process.stdout.write(`${s}\n`)
  if (r.action === 'apply') {
    if (r.alreadyApplied) return w(`openclaw ${r.version}: already applied (${r.chunks.join(', ')}); nothing changed`)
    if (r.dryRun) {
      w(`openclaw ${r.version}: would replace ${r.chunks.length} chunk(s), importing ${r.packageUrl}`)
      for (const c of r.chunks) {
        w(`\n${c.file} (${c.role}, sha256 ${c.originalSha256})`)
        w(`  backup -> ${c.backup}`)
        w(`  exports: ${c.exports.map(([l, e]) => `${l} as ${e}`).join(', ')}`)
        w('  new content:')
        for (const line of c.patched.trimEnd().split('\n')) w(`  + ${line}`)
      }
      return w('\n(dry run: nothing written)')
    }
    w(`openclaw ${r.version}: patched ${r.chunks.join(', ')} -> ${r.packageUrl}`)
    return w(`verified: lock taken and released (${r.verified.lockPath}); ${r.verified.importerFiles} importing file(s) link`)
  }
  if (r.action === 'verify') {
    if (!r.applied) return w(`openclaw ${r.version}: not applied`)
    if (!r.ok) return w(`openclaw ${r.version}: verification FAILED\n  ${r.problems.join('\n  ')}`)
    return w(`openclaw ${r.version}: ok (${r.chunks.join(', ')}; lock taken and released; ${r.importerFiles} importing file(s) link)`)
  }
  if (!r.applied && r.applied !== undefined) return w(`openclaw ${r.version}: not applied; nothing to revert`)
  if (r.dryRun) {
    for (const c of r.chunks) w(`${c.file}: ${c.restore ? `would restore the original (sha256 ${c.originalSha256})` : 'already original'}`)
    return w('(dry run: nothing written)')
  }
  return w(`openclaw ${r.version}: restored ${r.chunks.join(', ')} byte for byte`)
}

async function run(argv) {
  const opts = { dryRun: false, json: false }
  const positional = []
  for (const a of argv) {
    if (a === '-h' || a === '--help') {
      process.stdout.write(`${help()}\n`)
      return 0
    }
    if (a === '--dry-run') opts.dryRun = true
    else if (a === '--json') opts.json = true
    else if (a.startsWith('-')) throw usage(`unknown option ${a}`)
    else positional.push(a)
  }
  const [sub, dir, ...extra] = positional
  if (!['apply', 'verify', 'revert'].includes(sub)) throw usage(`expected apply, verify or revert, got ${sub === undefined ? 'nothing' : `"${sub}"`}`)
  if (dir === undefined) throw usage(`${sub} needs the openclaw install dir`)
  if (extra.length > 0) throw usage(`unexpected argument "${extra[0]}"`)
  if (opts.dryRun && sub === 'verify') throw usage('verify changes nothing; --dry-run is for apply and revert')
  let r
  try {
    r = sub === 'apply' ? apply(dir, opts) : sub === 'verify' ? verify(dir) : revert(dir, opts)
  } catch (err) {
    // I/O errors (EACCES on a system-wide install, ...) are refusals, not bugs.
    if (!(err instanceof OpenclawError) && err && typeof err.code === 'string') throw new OpenclawError(describe(err))
    throw err
  }
  printResult(r, opts.json)
  return sub === 'verify' && !r.ok ? 1 : 0
}

function help() {
  return HELP.replace('%KNOWN%', Object.keys(KNOWN).join(', '))
}

module.exports = {
  get HELP() {
    return help()
  },
  run,
  /** The known releases (the tests check their published chunks against it). */
  KNOWN,
}
