// Packaging: a platform package must never ship without its binaries (the
// file lock's addon and the PostgreSQL backend's, docs/distribution.md).
// `npm pack` (and so `npm publish`) in npm/<target> refuses while either
// .node is missing, and packs both once they are there.
import { describe, it, expect, afterEach } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const targets = fs.readdirSync(path.join(root, 'npm')).sort()
const dirs = []

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

/** A copy of npm/<target> without any .node, in a temporary directory. */
function stage(target) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `swl-pack-${target}-`))
  dirs.push(d)
  for (const f of fs.readdirSync(path.join(root, 'npm', target))) {
    if (!f.endsWith('.node')) fs.copyFileSync(path.join(root, 'npm', target, f), path.join(d, f))
  }
  return d
}

function npmPack(cwd) {
  return spawnSync('npm', ['pack', '--json', '--pack-destination', cwd], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_update_notifier: 'false' },
  })
}

describe('platform packages', () => {
  it('there are six, each naming its binary in main and both addons in files', () => {
    expect(targets).toHaveLength(6)
    for (const t of targets) {
      const pkg = JSON.parse(fs.readFileSync(path.join(root, 'npm', t, 'package.json'), 'utf8'))
      expect(pkg.main, t).toBe(`session-write-lock.${t}.node`)
      expect(pkg.files, t).toEqual([pkg.main, `session-write-lock-postgres.${t}.node`])
    }
  })

  it.each(targets)('npm pack in npm/%s refuses without its .node: a clear message, no tarball', (target) => {
    const d = stage(target)
    const r = npmPack(d)
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain(`refusing to pack session-write-lock-${target}: session-write-lock.${target}.node is missing`)
    expect(fs.readdirSync(d).filter((f) => f.endsWith('.tgz'))).toEqual([])
  }, 60_000)

  it('npm pack refuses with the file-lock addon alone, naming the PostgreSQL one', () => {
    const d = stage('linux-x64-gnu')
    fs.writeFileSync(path.join(d, 'session-write-lock.linux-x64-gnu.node'), 'not really an addon')
    const r = npmPack(d)
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain('refusing to pack session-write-lock-linux-x64-gnu: session-write-lock-postgres.linux-x64-gnu.node is missing')
  }, 60_000)

  it('npm pack packs both .node files once they are there', () => {
    const d = stage('linux-x64-gnu')
    fs.writeFileSync(path.join(d, 'session-write-lock.linux-x64-gnu.node'), 'not really an addon')
    fs.writeFileSync(path.join(d, 'session-write-lock-postgres.linux-x64-gnu.node'), 'not really an addon either')
    const r = npmPack(d)
    expect(r.status, r.stderr).toBe(0)
    const info = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0]
    expect(info.files.map((f) => f.path).sort()).toEqual([
      'README.md',
      'package.json',
      'session-write-lock-postgres.linux-x64-gnu.node',
      'session-write-lock.linux-x64-gnu.node',
    ])
    expect(fs.existsSync(path.join(d, info.filename))).toBe(true)
  }, 60_000)
})

describe('types', () => {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')

  /** A consumer project in a temporary directory with the package's types. */
  function consumer(withNodeTypes) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-types-'))
    dirs.push(d)
    const pkg = path.join(d, 'node_modules', 'session-write-lock')
    fs.mkdirSync(pkg, { recursive: true })
    for (const f of ['package.json', 'index.d.ts']) fs.copyFileSync(path.join(root, f), path.join(pkg, f))
    if (withNodeTypes) fs.symlinkSync(path.join(root, 'node_modules', '@types'), path.join(d, 'node_modules', '@types'), 'dir')
    fs.writeFileSync(
      path.join(d, 'a.ts'),
      'import { acquireSessionWriteLock } from "session-write-lock";\n' +
        'export async function f(): Promise<void> {\n' +
        '  await using lease = await acquireSessionWriteLock({ sessionFile: "s.jsonl" });\n' +
        '  lease.assertOwned();\n}\n',
    )
    fs.writeFileSync(
      path.join(d, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'ESNext.Disposable'] },
        files: ['a.ts'],
      }),
    )
    return spawnSync(process.execPath, [tsc, '-p', d], { encoding: 'utf8' })
  }

  // Under an emulator (SWL_TEST_EMULATED) this is tsc, plain JavaScript whose
  // result does not depend on the architecture, only many times slower.
  const typesIt = process.env.SWL_TEST_EMULATED
    ? (name, fn, timeout) => {
        console.warn(`packaging.test: "${name}" skipped under ${process.env.SWL_TEST_EMULATED}: type-checking with tsc does not depend on the architecture (it runs natively in npm test)`)
        return it.skip(name, fn, timeout)
      }
    : it
  typesIt('declare their need for Node\'s types: without @types/node the error names it; with it they compile', () => {
    const without = consumer(false)
    expect(without.status).not.toBe(0)
    expect(without.stdout).toContain("Cannot find type definition file for 'node'")
    const withTypes = consumer(true)
    expect(withTypes.stdout + withTypes.stderr).toBe('')
    expect(withTypes.status).toBe(0)
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
    expect(pkg.peerDependenciesMeta['@types/node']).toEqual({ optional: true })
  }, 120_000)
})
