#!/usr/bin/env node
'use strict'
// `npm test`: every check the project promises, in order, failing fast.
// Set SWL_TEST_SKIP=fmt,clippy,... to skip steps locally (never in CI).

const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
const skip = new Set((process.env.CI ? '' : process.env.SWL_TEST_SKIP || '').split(',').filter(Boolean))
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx'

const steps = [
  ['fmt', 'cargo', ['fmt', '--all', '--', '--check']],
  // Both addons' feature sets (docs/distribution.md, "Two addons"): the
  // default (file lock), the PostgreSQL addon alone, and both, which the
  // tests use so that one run covers src/pg too.
  ['clippy', 'cargo', ['clippy', '--all-targets', '--', '-D', 'warnings']],
  ['clippy-postgres', 'cargo', ['clippy', '--all-targets', '--no-default-features', '--features', 'napi-dyn-symbols,postgres', '--', '-D', 'warnings']],
  ['clippy-both', 'cargo', ['clippy', '--all-targets', '--features', 'postgres', '--', '-D', 'warnings']],
  ['cargo-test', 'cargo', ['test', '--quiet', '--features', 'postgres']],
  ['build', 'npm', ['run', '--silent', 'build']],
  ['vitest', npx, ['vitest', 'run']],
  ['tsc', npx, ['tsc', '--noEmit', '-p', '__test__/types/tsconfig.json']],
  ['stress', process.execPath, ['scripts/stress.js', '--quick']],
  ['crashpoints', process.execPath, ['scripts/crashpoints.js', '--quick']],
]

for (const [name, cmd, args] of steps) {
  if (skip.has(name)) {
    console.log(`\n== ${name}: skipped (SWL_TEST_SKIP)`)
    continue
  }
  if (name === 'stress' && !require('node:fs').existsSync(path.join(root, 'scripts/stress.js'))) continue
  console.log(`\n== ${name}: ${cmd} ${args.join(' ')}`)
  const t0 = Date.now()
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env })
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (r.status !== 0) {
    console.error(`\n== ${name} FAILED after ${secs}s (exit ${r.status}${r.signal ? `, ${r.signal}` : ''})`)
    process.exit(r.status || 1)
  }
  console.log(`== ${name}: ok (${secs}s)`)
}
