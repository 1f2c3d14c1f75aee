#!/usr/bin/env node
'use strict'
// `npm run pack-check`: proves the published shape works without a Rust toolchain.
//
// 1. `npm pack` the main package, and the linux-x64-gnu platform package from a
//    staging copy of npm/linux-x64-gnu with both built addons copied in (the
//    file lock's and the PostgreSQL backend's; nothing is left in npm/).
// 2. Check both tarballs' file lists (what must and must not ship).
// 3. In a fresh temporary consumer project: install the consumer's tools from
//    the registry (pinned), then both tarballs with `--offline` (so the five
//    other platform packages, which npm cannot find offline, are skipped as
//    failed optional dependencies and nothing else comes from the network),
//    with no cargo/rustc on PATH.
// 4. In that project, still without cargo/rustc on PATH:
//    - tsc --noEmit: a module shaped like the gateway's
//      (`export * from "session-write-lock"`) and code using every export the
//      old TypeScript module had and every export the later generation
//      (openclaw 2026.5.x) added, under NodeNext and under Bundler resolution;
//    - vitest: an ESM test file imports the package and acquires/releases;
//    - jest: two CommonJS test files in one process (--runInBand), so the addon
//      is loaded again in each test file's context;
//    - the addon was loaded from the platform package, not from a local build;
//    - configuring a PostgreSQL backend loads the second addon from the same
//      platform package (nothing connects: configuring does not).
// 5. Print the tarball sizes, both .node sizes (the file lock's must stay
//    under 1 MB), the highest GLIBC symbol version each addon needs
//    (objdump -T; fails above SWL_MAX_GLIBC when that is set, as the release
//    workflow does) and the time each step took.
//
// Option: --keep keeps the temporary directory and prints where the two
// tarballs are and the command that installs them (the documented way to get
// installable tarballs before anything is on the registry: docs/distribution.md).

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const TAG = 'linux-x64-gnu'
const NODE_FILE = `session-write-lock.${TAG}.node`
const PG_FILE = `session-write-lock-postgres.${TAG}.node`
const MAX_NODE_BYTES = 1_000_000
const CONSUMER_TOOLS = ['typescript@5.9.3', 'vitest@3.2.4', 'jest@29.7.0', '@types/node@20.19.43']
const keep = process.argv.includes('--keep')

const t0 = Date.now()
const timings = []
function step(name, fn) {
  const t = Date.now()
  console.log(`\n== pack-check: ${name}`)
  const r = fn()
  timings.push([name, Date.now() - t])
  return r
}

function fail(msg) {
  console.error(`\npack-check FAILED: ${msg}`)
  process.exit(1)
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd || root,
    env: opts.env || process.env,
    encoding: 'utf8',
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    maxBuffer: 64 * 1024 * 1024,
  })
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`)
  if (r.status !== 0) {
    if (opts.capture) process.stderr.write(`${r.stdout || ''}${r.stderr || ''}`)
    fail(`${cmd} ${args.join(' ')} exited with ${r.status}${r.signal ? ` (${r.signal})` : ''} in ${opts.cwd || root}`)
  }
  return r.stdout
}

// npm pack --json prints one array; npm may print warnings on stderr only.
function pack(dir, dest) {
  const out = run('npm', ['pack', '--json', '--pack-destination', dest], { cwd: dir, capture: true })
  const info = JSON.parse(out.slice(out.indexOf('[')))[0]
  return { file: path.join(dest, info.filename), size: info.size, unpackedSize: info.unpackedSize, files: info.files.map((f) => f.path) }
}

// PATH without any directory that provides cargo or rustc.
function pathWithoutRust() {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean)
  const kept = dirs.filter(
    (d) => !['cargo', 'rustc', 'rustup'].some((b) => fs.existsSync(path.join(d, b))),
  )
  return kept.join(path.delimiter)
}

function noRustEnv() {
  const env = { ...process.env, PATH: pathWithoutRust() }
  for (const k of ['SESSION_WRITE_LOCK_NATIVE_PATH', '__SESSION_WRITE_LOCK_NATIVE', 'SESSION_WRITE_LOCK_POSTGRES_PATH', '__SESSION_WRITE_LOCK_POSTGRES', 'SESSION_WRITE_LOCK_BACKEND', 'CARGO', 'RUSTC', 'CARGO_HOME', 'RUSTUP_HOME', 'RUSTUP_TOOLCHAIN', 'NODE_OPTIONS']) {
    delete env[k]
  }
  env.npm_config_update_notifier = 'false'
  env.npm_config_fund = 'false'
  env.npm_config_audit = 'false'
  return env
}

function kib(n) {
  return `${(n / 1024).toFixed(1)} KiB`
}

// ---------------------------------------------------------------------------

const addon = path.join(root, NODE_FILE)
const pgAddon = path.join(root, PG_FILE)
if (process.platform !== 'linux' || process.arch !== 'x64') {
  fail(`pack-check packs the ${TAG} platform package and runs only on Linux x64 (this is ${process.platform}-${process.arch})`)
}
for (const f of [NODE_FILE, PG_FILE]) {
  if (!fs.existsSync(path.join(root, f))) fail(`${f} not found in ${root}: run "npm run build" first (it builds both addons)`)
}
if (fs.statSync(addon).size >= MAX_NODE_BYTES) fail(`${NODE_FILE} is ${fs.statSync(addon).size} bytes, not under 1 MB`)

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pack-check-'))
const tarballs = path.join(work, 'tarballs')
fs.mkdirSync(tarballs)

const main = step('npm pack (main package)', () => pack(root, tarballs))

const platform = step(`npm pack (${TAG}, staged)`, () => {
  const stage = path.join(work, `stage-${TAG}`)
  fs.mkdirSync(stage)
  for (const f of fs.readdirSync(path.join(root, 'npm', TAG))) {
    if (f.endsWith('.node')) continue
    fs.copyFileSync(path.join(root, 'npm', TAG, f), path.join(stage, f))
  }
  fs.copyFileSync(addon, path.join(stage, NODE_FILE))
  fs.copyFileSync(pgAddon, path.join(stage, PG_FILE))
  return pack(stage, tarballs)
})

step('tarball contents', () => {
  // Every module of lib/ (the runtime loads some of them only on first use).
  const libFiles = fs.readdirSync(path.join(root, 'lib')).filter((f) => f.endsWith('.js')).map((f) => `lib/${f}`)
  const must = ['package.json', 'index.js', 'index.mjs', 'index.d.ts', 'loader.js', ...libFiles, 'Cargo.toml', 'Cargo.lock', 'build.rs', 'src/lib.rs', 'src/binding/mod.rs', 'src/sys/mod.rs']
  const missing = must.filter((f) => !main.files.includes(f))
  if (missing.length) fail(`main tarball lacks ${missing.join(', ')}`)
  const forbidden = main.files.filter((f) => /\.node$|^target\/|^node_modules\/|^__test__\/|^npm\/|^\.cache\/|^bench\/|\.tgz$/.test(f))
  if (forbidden.length) fail(`main tarball ships files it must not: ${forbidden.join(', ')}`)
  const want = ['package.json', 'README.md', NODE_FILE, PG_FILE].sort()
  const got = platform.files.slice().sort()
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`platform tarball holds ${got.join(', ')}; expected ${want.join(', ')}`)
  const pkgMain = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
  const pkgPlat = JSON.parse(fs.readFileSync(path.join(root, 'npm', TAG, 'package.json'), 'utf8'))
  if (pkgMain.optionalDependencies[pkgPlat.name] !== pkgPlat.version) {
    fail(`main package's optionalDependencies["${pkgPlat.name}"] is ${pkgMain.optionalDependencies[pkgPlat.name]}, the platform package is ${pkgPlat.version}`)
  }
  // Every platform package: same version as the main package, listed in its
  // optionalDependencies, `main` naming its own .node, `files` both addons.
  const tags = fs.readdirSync(path.join(root, 'npm')).sort()
  const names = tags.map((t) => `session-write-lock-${t}`)
  const listed = Object.keys(pkgMain.optionalDependencies || {}).sort()
  if (JSON.stringify(names) !== JSON.stringify(listed)) fail(`npm/ has ${names.join(', ')}; optionalDependencies lists ${listed.join(', ')}`)
  for (const t of tags) {
    const p = JSON.parse(fs.readFileSync(path.join(root, 'npm', t, 'package.json'), 'utf8'))
    const file = `session-write-lock.${t}.node`
    const pgFile = `session-write-lock-postgres.${t}.node`
    if (p.name !== `session-write-lock-${t}` || p.version !== pkgMain.version || pkgMain.optionalDependencies[p.name] !== p.version) {
      fail(`npm/${t}/package.json: ${p.name}@${p.version} does not match the main package ${pkgMain.version}`)
    }
    if (p.main !== file || JSON.stringify(p.files) !== JSON.stringify([file, pgFile]) || !p.os || !p.cpu) {
      fail(`npm/${t}/package.json: main must name ${file}, files ${file} and ${pgFile}, and os/cpu must be set`)
    }
  }
  console.log(`main: ${main.files.length} files; ${TAG}: ${platform.files.join(', ')}`)
})

const consumer = path.join(work, 'consumer')
const env = noRustEnv()

step('consumer: tools from the registry (pinned)', () => {
  for (const b of ['cargo', 'rustc']) {
    const r = spawnSync('sh', ['-c', `command -v ${b}`], { env, encoding: 'utf8' })
    if (r.status === 0) fail(`${b} is still on PATH for the consumer step: ${r.stdout.trim()}`)
  }
  fs.mkdirSync(path.join(consumer, 'src', 'agents'), { recursive: true })
  fs.mkdirSync(path.join(consumer, 'test'), { recursive: true })
  fs.writeFileSync(
    path.join(consumer, 'package.json'),
    `${JSON.stringify({ name: 'swl-consumer', version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
  )
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--save-exact', ...CONSUMER_TOOLS], { cwd: consumer, env })
})

step('consumer: install both tarballs (offline, no Rust on PATH)', () => {
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', main.file, platform.file], { cwd: consumer, env })
  const installed = path.join(consumer, 'node_modules', 'session-write-lock')
  const plat = path.join(consumer, 'node_modules', `session-write-lock-${TAG}`)
  for (const f of [NODE_FILE, PG_FILE]) {
    if (!fs.existsSync(path.join(plat, f))) fail(`${plat}/${f} was not installed`)
  }
  const stray = fs.readdirSync(installed).filter((f) => f.endsWith('.node'))
  if (stray.length) fail(`the main package carries a .node (${stray.join(', ')})`)
  const others = fs.readdirSync(path.join(consumer, 'node_modules')).filter((f) => f.startsWith('session-write-lock-') && f !== `session-write-lock-${TAG}`)
  if (others.length) fail(`other platform packages were installed: ${others.join(', ')}`)
})

// --- the consumer's files ---------------------------------------------------

const GATEWAY_MODULE = 'export * from "session-write-lock";\n'

// Uses every export of OpenClaw's old src/agents/session-write-lock.ts the way
// the gateway and its tests do, through the re-exporting module.
const USES_OLD_API = `import {
  acquireSessionWriteLock,
  cleanStaleLockFiles,
  resolveSessionLockMaxHoldFromTimeout,
  SessionWriteLockError,
  __testing,
  drainSessionWriteLockStateForTest,
  resetSessionWriteLockStateForTest,
  type SessionLockInspection,
} from "./agents/session-write-lock.js";

export async function appendTurn(sessionFile: string, timeoutMs: number): Promise<void> {
  const maxHoldMs: number = resolveSessionLockMaxHoldFromTimeout({ timeoutMs, graceMs: 1000, minMs: 5000 });
  const lock: { release: () => Promise<void> } = await acquireSessionWriteLock({
    sessionFile,
    timeoutMs,
    staleMs: 30 * 60 * 1000,
    maxHoldMs,
    allowReentrant: true,
  });
  try {
    // write the transcript
  } finally {
    await lock.release();
  }
}

export function describeBusy(err: unknown): string | undefined {
  if (err instanceof SessionWriteLockError) {
    const reason: "session_busy" = err.reason;
    const owner: string = err.owner;
    const lockPath: string = err.lockPath;
    const timeoutMs: number = err.timeoutMs;
    const name: string = err.name;
    return \`\${name} \${reason} \${owner} \${lockPath} \${timeoutMs} \${err.message}\`;
  }
  return undefined;
}

export async function doctor(sessionsDir: string): Promise<SessionLockInspection[]> {
  const result: { locks: SessionLockInspection[]; cleaned: SessionLockInspection[] } = await cleanStaleLockFiles({
    sessionsDir,
    staleMs: 60_000,
    removeStale: true,
    nowMs: Date.now(),
    log: { warn: (message: string) => console.warn(message), info: (message: string) => console.info(message) },
  });
  for (const l of result.locks) {
    const fields: [string, number | null, boolean, string | null, number | null, boolean, string[], boolean] = [
      l.lockPath, l.pid, l.pidAlive, l.createdAt, l.ageMs, l.stale, l.staleReasons, l.removed,
    ];
    void fields;
  }
  return result.cleaned;
}

export async function testHooks(): Promise<number> {
  const signals: readonly string[] = __testing.cleanupSignals;
  for (const s of ["SIGINT", "SIGTERM", "SIGQUIT", "SIGABRT"] as const) {
    if (!signals.includes(s)) throw new Error(s);
  }
  __testing.releaseAllLocksSync();
  const released: number = await __testing.runLockWatchdogCheck(Date.now());
  const noArg: number = await __testing.runLockWatchdogCheck();
  if (false as boolean) __testing.handleTerminationSignal("SIGTERM");
  await drainSessionWriteLockStateForTest();
  resetSessionWriteLockStateForTest();
  return released + noArg;
}
`

// The new API through the same module (what migrated gateway code may use).
const USES_NEW_API = `import {
  acquireSessionWriteLock,
  release,
  releaseAll,
  releaseAllSync,
  SessionWriteLockTimeoutError,
  SessionWriteLockLostError,
  isSessionWriteLockTimeoutError,
  type SessionWriteLockLease,
  type SessionEndEvent,
  type SessionContext,
  onSessionEnd,
  trackActiveSession,
} from "./agents/session-write-lock.js";

export async function withLease(sessionFile: string, signal: AbortSignal): Promise<string> {
  let lease: SessionWriteLockLease;
  try {
    lease = await acquireSessionWriteLock({ sessionFile, timeoutMs: Infinity, signal, reentrantOwner: "turn-1" });
  } catch (err) {
    if (isSessionWriteLockTimeoutError(err) && err instanceof SessionWriteLockTimeoutError) return err.code;
    if (err instanceof SessionWriteLockLostError) return err.code;
    throw err;
  }
  await using _auto = lease;
  lease.assertOwned();
  await lease.assertCurrent();
  const dropped: boolean = await release(lease);
  const n: number = (await releaseAll()) + releaseAllSync();
  return \`\${lease.lockPath} \${lease.fencingToken} \${lease.signal.aborted} \${dropped} \${n}\`;
}

export function wireSessionEnd(): () => void {
  const s = trackActiveSession({ sessionId: "s1", sessionFile: "/tmp/s1.jsonl" });
  s.update({ messageCount: 1 });
  return onSessionEnd((e: SessionEndEvent, c: SessionContext) => {
    void e.reason;
    void c.sessionId;
  });
}
`

// The later generation's surface (openclaw 2026.5.x) through the same
// module: every export it added, the way its gateway and tests use them.
const USES_LATER_API = `import {
  acquireSessionWriteLock,
  cleanStaleLockFiles,
  inspectLockFile,
  SessionWriteLockTimeoutError,
  DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS,
  DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
  DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS,
  resolveSessionLockMaxHoldFromTimeout,
  resolveSessionWriteLockAcquireTimeoutMs,
  resolveSessionWriteLockStaleMs,
  resolveSessionWriteLockMaxHoldMs,
  resolveSessionWriteLockOptions,
  testing,
  type SessionWriteLockAcquireTimeoutConfig,
  type SessionWriteLockConfig,
  type SessionLockCleanEntry,
  type SessionLockPayloadInspection,
  type ReadOwnerProcessArgs,
} from "./agents/session-write-lock.js";

export async function runTurn(sessionFile: string, config?: SessionWriteLockAcquireTimeoutConfig): Promise<string> {
  const timeoutMs: number = resolveSessionWriteLockAcquireTimeoutMs(config);
  const options: { timeoutMs: number; staleMs: number; maxHoldMs: number } = resolveSessionWriteLockOptions(config, {
    env: process.env,
    maxHoldMsFallback: resolveSessionLockMaxHoldFromTimeout({ timeoutMs }),
  });
  try {
    const lock = await acquireSessionWriteLock({ sessionFile, ...options });
    await lock.release();
    return "ok";
  } catch (err) {
    if (err instanceof SessionWriteLockTimeoutError) {
      return \`\${err.message} \${err.hint ?? ""} \${err.holder?.inProcess ?? false}\`;
    }
    throw err;
  }
}

export async function doctorLocks(sessionsDir: string, config: SessionWriteLockConfig): Promise<number> {
  const staleMs: number = resolveSessionWriteLockStaleMs(config, process.env);
  const maxHoldMs: number = resolveSessionWriteLockMaxHoldMs(config, { env: process.env, fallback: 600_000 });
  const readOwnerProcessArgs: ReadOwnerProcessArgs = (pid: number) => (pid > 0 ? null : ["openclaw", "gateway"]);
  const result: { locks: SessionLockCleanEntry[]; cleaned: SessionLockCleanEntry[] } = await cleanStaleLockFiles({
    sessionsDir,
    config,
    env: { OPENCLAW_SESSION_WRITE_LOCK_STALE_MS: "60000" },
    removeStale: false,
    readOwnerProcessArgs,
  });
  const failed: string[] = result.locks.flatMap((l) => (l.removeError ? [l.removeError] : []));
  const one = inspectLockFile(\`\${sessionsDir}/a.jsonl.lock\`, { config, readOwnerProcessArgs });
  testing.setProcessStartTimeResolverForTest((pid: number) => (pid === process.pid ? 12345 : null));
  const verdict: SessionLockPayloadInspection = testing.inspectLockPayloadForTest(
    { pid: process.pid, createdAt: new Date().toISOString() },
    DEFAULT_SESSION_WRITE_LOCK_STALE_MS,
    Date.now(),
  );
  testing.setProcessStartTimeResolverForTest(null);
  const defaults: number =
    DEFAULT_SESSION_WRITE_LOCK_ACQUIRE_TIMEOUT_MS + DEFAULT_SESSION_WRITE_LOCK_STALE_MS + DEFAULT_SESSION_WRITE_LOCK_MAX_HOLD_MS;
  return staleMs + maxHoldMs + failed.length + one.staleReasons.length + verdict.staleReasons.length + defaults;
}
`

function tsconfig(moduleKind, resolution) {
  return `${JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: moduleKind,
        moduleResolution: resolution,
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        lib: ['ES2022', 'ESNext.Disposable'],
      },
      include: ['src/**/*.ts'],
    },
    null,
    2,
  )}\n`
}

const VITEST_TEST = `import { describe, it, expect } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import * as swl from "session-write-lock";

describe("session-write-lock under vitest, from the tarballs", () => {
  it("acquires and releases a lock", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swl-consumer-vitest-"));
    const lease = await swl.acquireSessionWriteLock({ sessionFile: path.join(dir, "s.jsonl") });
    expect(lease.lockPath).toBe(path.join(fs.realpathSync(dir), "s.jsonl.lock"));
    const payload = JSON.parse(fs.readFileSync(lease.lockPath, "utf8"));
    expect(payload.pid).toBe(process.pid);
    expect(payload.lock).toBe("os");
    await expect(
      swl.acquireSessionWriteLock({ sessionFile: path.join(dir, "s.jsonl"), timeoutMs: 50 }),
    ).rejects.toSatisfy((e) => swl.isSessionWriteLockTimeoutError(e));
    await lease.release();
    expect(fs.existsSync(lease.lockPath)).toBe(false);
    expect(() => lease.assertOwned()).toThrow(swl.SessionWriteLockLostError);
  });

  it("loaded the addon from the platform package", () => {
    const require = createRequire(import.meta.url);
    const nodeFiles = Object.keys(require.cache).filter((k) => k.endsWith(".node"));
    const real = (p) => fs.realpathSync(p);
    const expected = real(path.join(path.dirname(require.resolve("session-write-lock-linux-x64-gnu/package.json")), "${NODE_FILE}"));
    expect(nodeFiles.map(real)).toContain(expected);
    expect(nodeFiles.filter((f) => /session-write-lock-postgres/.test(f))).toEqual([]);
  });

  it("loads the PostgreSQL addon from the same platform package once a backend is configured", () => {
    const require = createRequire(import.meta.url);
    swl.resetSessionWriteLockStateForTest();
    const cfg = swl.configureSessionWriteLock({ backend: { kind: "postgres", connectionString: "postgres://swl@127.0.0.1:9/swl" } });
    expect(cfg.kind).toBe("postgres");
    const real = (p) => fs.realpathSync(p);
    const expected = real(path.join(path.dirname(require.resolve("session-write-lock-linux-x64-gnu/package.json")), "${PG_FILE}"));
    expect(Object.keys(require.cache).filter((k) => k.endsWith(".node")).map(real)).toContain(expected);
    swl.configureSessionWriteLock({ backend: null });
    swl.resetSessionWriteLockStateForTest();
  });
});
`

const VITEST_CONFIG = `import { defineConfig } from "vitest/config";
export default defineConfig({ test: { include: ["test/**/*.vitest.mjs"], testTimeout: 60_000 } });
`

function jestTest(n) {
  return `"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const swl = require("session-write-lock");

describe("session-write-lock under jest (file ${n})", () => {
  afterAll(() => swl.resetSessionWriteLockStateForTest());

  test("acquires and releases a lock", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swl-consumer-jest-"));
    const sessionFile = path.join(dir, "s.jsonl");
    const lease = await swl.acquireSessionWriteLock({ sessionFile });
    expect(fs.existsSync(lease.lockPath)).toBe(true);
    expect(JSON.parse(fs.readFileSync(lease.lockPath, "utf8")).fencingToken).toBe(lease.fencingToken);
    let err;
    try {
      await swl.acquireSessionWriteLock({ sessionFile, timeoutMs: 50 });
    } catch (e) {
      err = e;
    }
    expect(swl.isSessionWriteLockTimeoutError(err)).toBe(true);
    expect(err).toBeInstanceOf(swl.SessionWriteLockTimeoutError);
    expect(err.message).toBe(\`session file locked (timeout 50ms): pid=\${process.pid} \${lease.lockPath}\`);
    await lease.release();
    expect(fs.existsSync(lease.lockPath)).toBe(false);
    expect(await swl.release(sessionFile)).toBe(false);
  });
});
`
}

const JEST_CONFIG = `module.exports = { testEnvironment: "node", testMatch: ["**/test/*.jest.cjs"], testTimeout: 60000 };\n`

step('consumer: write the gateway-shaped module and tests', () => {
  fs.writeFileSync(path.join(consumer, 'src', 'agents', 'session-write-lock.ts'), GATEWAY_MODULE)
  fs.writeFileSync(path.join(consumer, 'src', 'uses-old-api.ts'), USES_OLD_API)
  fs.writeFileSync(path.join(consumer, 'src', 'uses-new-api.ts'), USES_NEW_API)
  fs.writeFileSync(path.join(consumer, 'src', 'uses-later-api.ts'), USES_LATER_API)
  fs.writeFileSync(path.join(consumer, 'tsconfig.json'), tsconfig('NodeNext', 'NodeNext'))
  fs.writeFileSync(path.join(consumer, 'tsconfig.bundler.json'), tsconfig('ESNext', 'Bundler'))
  fs.writeFileSync(path.join(consumer, 'vitest.config.mjs'), VITEST_CONFIG)
  fs.writeFileSync(path.join(consumer, 'test', 'lock.vitest.mjs'), VITEST_TEST)
  fs.writeFileSync(path.join(consumer, 'jest.config.cjs'), JEST_CONFIG)
  fs.writeFileSync(path.join(consumer, 'test', 'a.jest.cjs'), jestTest(1))
  fs.writeFileSync(path.join(consumer, 'test', 'b.jest.cjs'), jestTest(2))
})

const bin = (p) => path.join(consumer, 'node_modules', p)

step('consumer: tsc --noEmit (NodeNext)', () => {
  run(process.execPath, [bin('typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.json'], { cwd: consumer, env })
})
step('consumer: tsc --noEmit (Bundler)', () => {
  run(process.execPath, [bin('typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.bundler.json'], { cwd: consumer, env })
})
step('consumer: tsc rejects a wrong use (the check can fail)', () => {
  fs.writeFileSync(path.join(consumer, 'src', 'wrong.ts'), 'import { acquireSessionWriteLock } from "./agents/session-write-lock.js";\nvoid acquireSessionWriteLock({ timeoutMs: 5 });\n')
  const r = spawnSync(process.execPath, [bin('typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.json'], { cwd: consumer, env, encoding: 'utf8' })
  fs.rmSync(path.join(consumer, 'src', 'wrong.ts'))
  if (r.status === 0 || !/sessionFile/.test(r.stdout)) fail(`tsc accepted acquireSessionWriteLock() without sessionFile:\n${r.stdout}${r.stderr}`)
})
step('consumer: vitest', () => {
  run(process.execPath, [bin('vitest/vitest.mjs'), 'run'], { cwd: consumer, env })
})
step('consumer: jest (two files, one process)', () => {
  run(process.execPath, [bin('jest/bin/jest.js'), '--ci', '--runInBand'], { cwd: consumer, env })
})

// Highest GLIBC_x.y among the addon's versioned dynamic symbols.
function highestGlibc(file) {
  const r = spawnSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.error || r.status !== 0) {
    if (process.env.SWL_MAX_GLIBC) fail(`objdump -T failed: ${r.error ? r.error.message : r.stderr}`)
    console.log('objdump not available: GLIBC check skipped')
    return null
  }
  const cmp = (a, b) => {
    const x = a.split('.').map(Number)
    const y = b.split('.').map(Number)
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0)
    return 0
  }
  const versions = [...new Set([...r.stdout.matchAll(/\(GLIBC_([0-9.]+)\)/g)].map((m) => m[1]))].sort(cmp)
  const highest = versions[versions.length - 1] || null
  const needing = highest === null ? [] : r.stdout.split('\n').filter((l) => l.includes(`(GLIBC_${highest})`)).map((l) => l.trim().split(/\s+/).pop())
  console.log(`${path.basename(file)}: GLIBC versions: ${versions.join(' ')}; highest ${highest} (${needing.join(', ')})`)
  const max = process.env.SWL_MAX_GLIBC
  if (max && highest !== null && cmp(highest, max) > 0) {
    fail(`${path.basename(file)} needs GLIBC_${highest}, above SWL_MAX_GLIBC=${max} (Node's own Linux binaries need 2.28): build it against an older glibc`)
  }
  return highest
}
const [glibc, pgGlibc] = step('addons: highest GLIBC symbol version (objdump -T)', () => [highestGlibc(addon), highestGlibc(pgAddon)])

const nodeSize = fs.statSync(addon).size
const pgSize = fs.statSync(pgAddon).size
const totalMs = Date.now() - t0
console.log('\n== pack-check: summary')
console.log(`main tarball     ${path.basename(main.file)}  ${kib(main.size)} packed, ${kib(main.unpackedSize)} unpacked, ${main.files.length} files`)
console.log(`platform tarball ${path.basename(platform.file)}  ${kib(platform.size)} packed, ${kib(platform.unpackedSize)} unpacked`)
console.log(`addon            ${NODE_FILE}  ${nodeSize} bytes (${kib(nodeSize)}), needs GLIBC ${glibc === null ? '(not checked)' : glibc}`)
console.log(`postgres addon   ${PG_FILE}  ${pgSize} bytes (${kib(pgSize)}), needs GLIBC ${pgGlibc === null ? '(not checked)' : pgGlibc}`)
for (const [name, ms] of timings) console.log(`  ${(ms / 1000).toFixed(1).padStart(6)}s  ${name}`)
console.log(`pack-check: ok in ${(totalMs / 1000).toFixed(1)}s`)
console.log(
  `PACK_CHECK_JSON ${JSON.stringify({ mainTarballBytes: main.size, platformTarballBytes: platform.size, nodeBytes: nodeSize, postgresNodeBytes: pgSize, maxGlibc: glibc, postgresMaxGlibc: pgGlibc, totalMs })}`,
)

if (keep) {
  console.log(`kept ${work}`)
  console.log(`tarballs in ${tarballs}; install both in a project with:`)
  console.log(`  npm install ${main.file} ${platform.file}`)
}
else fs.rmSync(work, { recursive: true, force: true })
