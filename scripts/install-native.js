#!/usr/bin/env node
'use strict'
// Moves the freshly built addon from target/napi into the package root with an
// atomic rename, so processes that have the old file loaded (mmapped) keep
// running instead of crashing on a file rewritten under them.

const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const from = path.join(root, 'target', 'napi')
for (const name of fs.readdirSync(from)) {
  if (!name.endsWith('.node')) continue
  const tmp = path.join(root, `.${name}.${process.pid}.tmp`)
  fs.copyFileSync(path.join(from, name), tmp)
  fs.renameSync(tmp, path.join(root, name))
  console.log(`installed ${name} (${fs.statSync(path.join(root, name)).size} bytes)`)
}
for (const name of ['native.d.ts']) {
  const src = path.join(from, name)
  if (fs.existsSync(src)) fs.copyFileSync(src, path.join(root, name))
}
