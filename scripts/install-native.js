#!/usr/bin/env node
'use strict'
// Moves the freshly built addons into the package root with an atomic rename,
// so processes that have the old file loaded (mmapped) keep running instead of
// crashing on a file rewritten under them: the file lock's
// session-write-lock.<platform>.node from target/napi and the PostgreSQL
// backend's session-write-lock-postgres.<platform>.node from
// target/napi-postgres (docs/distribution.md, "Two addons").

const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
for (const [dir, dts] of [
  ['napi', 'native.d.ts'],
  ['napi-postgres', 'postgres.d.ts'],
]) {
  const from = path.join(root, 'target', dir)
  if (!fs.existsSync(from)) continue
  for (const name of fs.readdirSync(from)) {
    if (!name.endsWith('.node')) continue
    const tmp = path.join(root, `.${name}.${process.pid}.tmp`)
    fs.copyFileSync(path.join(from, name), tmp)
    fs.renameSync(tmp, path.join(root, name))
    console.log(`installed ${name} (${fs.statSync(path.join(root, name)).size} bytes)`)
  }
  const src = path.join(from, dts)
  if (fs.existsSync(src)) fs.copyFileSync(src, path.join(root, dts))
}
