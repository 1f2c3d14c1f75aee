#!/usr/bin/env node
'use strict'
// `napi build` spawns `$CARGO <args>` (default `cargo`). The cross scripts set
// CARGO to this file for the release binaries they ship, and it turns
//   build <args>     into  cargo rustc --lib --crate-type cdylib <args>
//   zigbuild <args>  into  cargo-zigbuild rustc --lib --crate-type cdylib <args>
// and passes anything else through to cargo unchanged.
//
// Why: Cargo.toml's [lib] is `crate-type = ["cdylib", "rlib"]` (the rlib is
// what tests/*.rs link), and cargo runs no LTO for a crate whose crate types
// are not all LTO-able (it passes no `-C lto` at all: `cargo build -v` shows
// it), so the profile's `lto = true` was silently off for every addon. Without
// LTO the linker sees std's and the dependencies' objects with all their global
// symbols: GNU ld/lld drop the unused ones through the version script and
// --gc-sections, but zig's Mach-O linker ignores `-exported_symbols_list`, so
// on darwin every global std symbol stayed exported and kept its code alive
// (2,601 exported symbols, 2.2 MB), and MinGW kept 1.3 MB of code. Asking for
// the cdylib alone (`cargo rustc --crate-type`, the same compile otherwise)
// lets cargo run the fat LTO the profile asks for: rustc internalizes every
// symbol but the addon's exports and LLVM drops what they do not reach.
// docs/distribution.md ("Two addons", sizes) has the numbers.

const { spawnSync } = require('node:child_process')

const [sub, ...rest] = process.argv.slice(2)
const cdylib = ['rustc', '--lib', '--crate-type', 'cdylib', ...rest]
let cmd = 'cargo'
let args = process.argv.slice(2)
if (sub === 'build') args = cdylib
else if (sub === 'zigbuild') {
  cmd = 'cargo-zigbuild'
  args = cdylib
}
// CARGO names this script; cargo and cargo-zigbuild must not run it again.
const env = { ...process.env }
delete env.CARGO
if (args === cdylib) console.error(`cargo-cdylib: ${cmd} ${args.join(' ')}`)
const r = spawnSync(cmd, args, { stdio: 'inherit', env })
if (r.error) {
  console.error(`cargo-cdylib: ${cmd}: ${r.error.message}`)
  process.exit(1)
}
process.exit(r.status === null ? 1 : r.status)
