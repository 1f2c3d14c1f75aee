#!/usr/bin/env node
'use strict'
// Writes index.js, the package's CommonJS entry, from its sources: lib/index.js
// (the entry's source), the modules every require() of the package runs
// (loader.js, lib/native.js), those the first acquire runs (lib/options.js,
// lib/context.js, lib/leases.js, lib/locks.js), loader.js's fallbacks
// (lib/loader-fallbacks.js) and the test seams (lib/testing.js), in one file.
//
// Why: each module file a fresh process requires costs it resolution, a stat,
// a read and a compile of its own, and require() of the package loaded seven
// (docs/performance.md, scenario h). One file pays that once. lib/ stays the
// source of truth: index.js is generated (and git-ignored) by `npm run build`,
// `npm run build:js`, `npm pack` (prepack), the test runner's global setup
// (vitest.config.mjs) and the bench, so the tests run what ships.
//
// The file is a tiny CommonJS module system of its own: each source keeps its
// exact text inside a function `(exports, require, module, __filename,
// __dirname)` that runs on its first require, as Node would run it. The
// function is parenthesized: V8 then compiles it eagerly with the file
// (each of these runs at require) instead of pre-parsing its text once and
// parsing it again when it is called. A source's relative requires of another
// bundled source go to that source's bundled instance (one instance per copy of
// index.js, as one module per path before); its other relative requires
// (lib/shutdown.js, lib/sessions.js, ... loaded on first use) go to the real
// require, rewritten relative to index.js; anything else (node: builtins,
// packages, the .node files, computed paths) to the real require of index.js.
// `__filename` and `__dirname` are the source's own path in the installed
// package, so messages that name a directory (loader.js's build hint) are
// unchanged.
//
// A module left out of the bundle that requires a bundled one would get a
// second instance of it (its own error classes, its own registry context):
// only lib/options.js (constants and pure functions), loader.js and
// lib/loader-fallbacks.js (stateless) may be; this script refuses anything
// else.
//
//   node scripts/bundle.js            write index.js (when it changed)
//   node scripts/bundle.js --check    exit 1 when index.js is not what the sources give

const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const OUT = path.join(ROOT, 'index.js')

/** The bundled sources every require() of the package runs, the entry first. */
const EAGER = ['lib/index.js', 'loader.js', 'lib/native.js']

/**
 * Bundled sources that a require() of the package does not run (lib/index.js
 * requires lib/locks.js on the first acquire, lib/options.js then or on the
 * first call of an option resolver; loader.js lib/loader-fallbacks.js only
 * off its common path; lib/testing.js on the first access of `__testing`):
 * carried as the text of a
 * string, which V8 only scans at require (about
 * 0.6 M instructions where compiling them cost 2.4 M, docs/performance.md,
 * scenario h), and compiled by a global eval on their first require, as the
 * module wrapper on the source's first line, with a sourceURL naming the
 * source's file: stack traces name lib/locks.js and its line rather than
 * index.js. The global eval runs in this file's realm (a jest vm context
 * included). Where code generation from strings is disallowed
 * (--disallow-code-generation-from-strings), vm.compileFunction instead.
 */
const COMPILED_ON_USE = [
  'lib/loader-fallbacks.js',
  'lib/options.js',
  'lib/context.js',
  'lib/leases.js',
  'lib/locks.js',
  'lib/testing.js',
]

/** The bundled sources, relative to the package root; the entry first. */
const BUNDLED = [...EAGER, ...COMPILED_ON_USE]

function sources() {
  return BUNDLED
}

/**
 * `text` with each line that holds only a comment (`// ...`, or a line of a
 * `/* ... *\/` block that starts its line) left empty: V8 scans every
 * character of index.js when a process requires it (0.34 M instructions for
 * these, docs/performance.md, scenario h), and the comments stay in lib/.
 * Lines are kept, so a stack trace's line in index.js is still the line of
 * the source's text there. A comment after code on its line stays. Refuses a
 * source where a template literal spans lines (a line with an odd number of
 * backticks), where a line starting with `//` could be the literal's text.
 */
function stripCommentLines(text, name) {
  const out = []
  let inBlock = false
  for (const line of text.split('\n')) {
    const t = line.trim()
    if (inBlock) {
      out.push('')
      if (t.includes('*/')) {
        if (!t.endsWith('*/')) throw new Error(`bundle: ${name}: code after the end of a comment block: ${line}`)
        inBlock = false
      }
      continue
    }
    if (t.startsWith('//')) {
      out.push('')
      continue
    }
    if (t.startsWith('/*')) {
      out.push('')
      if (!t.includes('*/', 2)) inBlock = true
      else if (!t.endsWith('*/')) throw new Error(`bundle: ${name}: code after a comment on its line: ${line}`)
      continue
    }
    if ((line.replace(/\\`/g, '').split('`').length - 1) % 2 !== 0) {
      throw new Error(`bundle: ${name}: a template literal spans lines (not supported): ${line}`)
    }
    out.push(line)
  }
  return out.join('\n')
}

/** The literal relative specifiers of `require('...')` calls in `text`. */
function relativeRequires(text) {
  const out = new Set()
  for (const m of text.matchAll(/\brequire\(\s*(['"])(\.{1,2}\/[^'"]*)\1\s*\)/g)) out.add(m[2])
  return [...out]
}

/** The bundled file a relative specifier of `from` names, or null. */
function resolveIn(from, spec, names) {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec))
  for (const cand of [base, `${base}.js`, `${base}/index.js`]) if (names.includes(cand)) return cand
  return null
}

/** Bundled sources a module left out of the bundle may require (a second instance is harmless). */
const SHAREABLE = ['lib/options.js', 'loader.js', 'lib/loader-fallbacks.js']

function checkUnbundled(root, names) {
  for (const f of fs.readdirSync(path.join(root, 'lib')).sort()) {
    const name = `lib/${f}`
    if (!f.endsWith('.js') || names.includes(name)) continue
    for (const spec of relativeRequires(fs.readFileSync(path.join(root, name), 'utf8'))) {
      const target = resolveIn(name, spec, names)
      if (target !== null && !SHAREABLE.includes(target)) {
        throw new Error(
          `bundle: ${name} requires ${spec}, which index.js carries: it would get a second instance. ` +
            'Pass what it needs through its factory (lib/index.js), or bundle it (BUNDLED in scripts/bundle.js).',
        )
      }
    }
  }
}

function generate(root = ROOT) {
  const names = sources(root)
  checkUnbundled(root, names)
  const parts = []
  parts.push(
    "'use strict'",
    '// GENERATED by scripts/bundle.js from lib/index.js, loader.js and lib/*.js: do not edit.',
    '// Edit the sources and run `npm run build` (or `node scripts/bundle.js`); see that',
    '// script for why the package loads as one file.',
    '',
    "const __sep = require('node:path').sep",
    'const __lib = __dirname + __sep + "lib"',
    'const __mods = []',
    '',
    '/** A bundled module by index: its exports, running its source on first use. */',
    'function __load(i) {',
    '  let m = __mods[i]',
    '  if (m !== undefined) return m.exports',
    '  const d = __defs[i]',
    '  m = { exports: {}, id: d.file, filename: d.file, loaded: false }',
    '  __mods[i] = m',
    '  const run = d.run !== null ? d.run : __compile(d)',
    '  run.call(m.exports, m.exports, d.req, m, d.file, d.dir)',
    '  m.loaded = true',
    '  return m.exports',
    '}',
    '',
    '/** The function of a source carried as text (COMPILED_ON_USE in scripts/bundle.js). */',
    'function __compile(d) {',
    "  const params = ['exports', 'require', 'module', '__filename', '__dirname']",
    '  try {',
    "    return (0, eval)('(function (' + params.join(', ') + ') {' + d.src + '\\n})\\n//# sourceURL=' + d.file)",
    '  } catch (e) {',
    '    if (!(e instanceof EvalError)) throw e',
    "    return require('node:vm').compileFunction(d.src, params, { filename: d.file })",
    '  }',
    '}',
    '',
    '/** The require of one bundled source: its bundled siblings by specifier, else the real one. */',
    'function __requireFor(map) {',
    '  const r = (id) => {',
    '    const i = map[id]',
    "    return i === undefined ? require(id) : typeof i === 'string' ? require(i) : __load(i)",
    '  }',
    '  r.resolve = require.resolve',
    '  return r',
    '}',
    '',
    'const __defs = [',
  )
  for (const name of names) {
    const text = fs.readFileSync(path.join(root, name), 'utf8')
    const map = {}
    for (const spec of relativeRequires(text)) {
      const target = resolveIn(name, spec, names)
      if (target !== null) map[spec] = names.indexOf(target)
      else map[spec] = './' + path.posix.normalize(path.posix.join(path.posix.dirname(name), spec))
    }
    const dir = path.posix.dirname(name) === '.' ? '__dirname' : '__lib'
    const file = `${dir} + __sep + ${JSON.stringify(path.posix.basename(name))}`
    const code = stripCommentLines(text, name).replace(/\s+$/, '')
    parts.push(
      `  // ---------------------------------------------------------------- ${name}`,
      '  {',
      `    file: ${file},`,
      `    dir: ${dir},`,
      `    req: __requireFor(${JSON.stringify(map)}),`,
      ...(COMPILED_ON_USE.includes(name)
        ? ['    run: null,', `    src: ${JSON.stringify(code)},`]
        : ['    run: (function (exports, require, module, __filename, __dirname) {', code, '    }),']),
      '  },',
    )
  }
  parts.push(']', '', 'module.exports = __load(0)', '')
  return parts.join('\n')
}

/** Writes index.js when it is not what the sources give; true when it wrote. */
function write(root = ROOT) {
  const out = path.join(root, 'index.js')
  const text = generate(root)
  if (fs.existsSync(out) && fs.readFileSync(out, 'utf8') === text) return false
  // Written next to the target, then renamed: a process requiring index.js
  // meanwhile sees the old file or the new one, never half of one.
  const tmp = `${out}.${process.pid}.tmp`
  fs.writeFileSync(tmp, text)
  fs.renameSync(tmp, out)
  return true
}

if (require.main === module) {
  if (process.argv.includes('--check')) {
    const fresh = fs.existsSync(OUT) && fs.readFileSync(OUT, 'utf8') === generate()
    if (!fresh) {
      console.error('bundle: index.js is not what lib/ and loader.js give: run `node scripts/bundle.js`')
      process.exit(1)
    }
  } else {
    write()
  }
}

module.exports = { generate, write, sources }
