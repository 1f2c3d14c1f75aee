// The documentation is part of the product: every relative link in README.md
// and docs/*.md resolves inside the repository (anchors included), nothing
// points outside it, the README stays within its size budget, its code blocks
// parse (the ESM and CommonJS tours also run), its CLI examples run against a
// temporary directory, and it names every export of the package.
import { describe, it, expect, afterAll } from 'vitest'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('..', import.meta.url))
const readme = path.join(root, 'README.md')
const docsDir = path.join(root, 'docs')
const docFiles = [readme, ...fs.readdirSync(docsDir).filter((f) => f.endsWith('.md')).sort().map((f) => path.join(docsDir, f))]
const rel = (f) => path.relative(root, f)
const cleanup = []

afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true })
})

/** Fenced code blocks: { lang, code, line }. */
function codeBlocks(text) {
  const out = []
  const re = /^( *)(```+)([\w-]*)[^\n]*\n([\s\S]*?)^\1\2\s*$/gm
  let m
  while ((m = re.exec(text)) !== null) {
    const indent = m[1].length
    const code = m[4]
      .split('\n')
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join('\n')
    out.push({ lang: m[3], code, line: text.slice(0, m.index).split('\n').length })
  }
  return out
}

/** The text outside fenced code blocks and inline code spans. */
function prose(text) {
  return text.replace(/^( *)(```+)[^\n]*\n[\s\S]*?^\1\2\s*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** Markdown links and images outside code: [text](target). */
function links(text) {
  const out = []
  const re = /!?\[(?:[^\][]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g
  let m
  while ((m = re.exec(prose(text))) !== null) out.push(m[1])
  return out
}

/** GitHub's heading anchors of a Markdown file. */
function anchors(text) {
  const seen = new Map()
  const out = new Set()
  for (const m of prose(text.replace(/`/g, '')).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = m[1]
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .trim()
      .replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

describe('links in README.md and docs/', () => {
  it.each(docFiles.map((f) => [rel(f), f]))('%s: every relative link resolves inside the repository', (_, file) => {
    const text = fs.readFileSync(file, 'utf8')
    const broken = []
    for (const target of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
      const [p, anchor] = target.split('#')
      const dest = p === '' ? file : path.resolve(path.dirname(file), decodeURI(p))
      if (path.relative(root, dest).startsWith('..') || path.isAbsolute(path.relative(root, dest))) {
        broken.push(`${target}: outside the repository`)
        continue
      }
      if (!fs.existsSync(dest)) {
        broken.push(`${target}: no such file`)
        continue
      }
      if (anchor && dest.endsWith('.md') && !anchors(fs.readFileSync(dest, 'utf8')).has(anchor)) {
        broken.push(`${target}: no heading with that anchor in ${rel(dest)}`)
      }
    }
    expect(broken).toEqual([])
  })

  it('nothing in README.md, docs/ or the code comments points outside the repository', () => {
    const files = [...docFiles, path.join(root, 'index.js'), path.join(root, 'index.d.ts')]
    for (const dir of ['lib', 'src', 'bin', path.join('bin', 'commands'), path.join('bin', 'lib')]) {
      const d = path.join(root, dir)
      if (!fs.existsSync(d)) continue
      for (const f of fs.readdirSync(d)) if (/\.(js|rs|ts|mjs)$/.test(f)) files.push(path.join(d, f))
    }
    const hits = []
    for (const f of files) {
      fs.readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/\.\.\/shared|CONTRACT/.test(line)) hits.push(`${rel(f)}:${i + 1}: ${line.trim()}`)
        })
    }
    expect(hits).toEqual([])
  })

  it('code blocks never use the bare `npx session-lock` (another registry name)', () => {
    const hits = []
    for (const f of docFiles) {
      for (const b of codeBlocks(fs.readFileSync(f, 'utf8'))) {
        if (/\bnpx\s+session-lock\b/.test(b.code)) hits.push(`${rel(f)}:${b.line}`)
      }
    }
    expect(hits).toEqual([])
  })
})

describe('README.md', () => {
  const text = fs.readFileSync(readme, 'utf8')
  const blocks = codeBlocks(text)

  it('fits its budget of 12,000 bytes and has a table of contents', () => {
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(12_000)
    const toc = links(text).filter((l) => l.startsWith('#'))
    expect(toc.length).toBeGreaterThanOrEqual(6)
  })

  it('every js/mjs/cjs block parses, and the ESM and CommonJS tours run', () => {
    // A scratch project under node_modules/.cache (git-ignored) where
    // `session-write-lock` resolves to this checkout, as it would once installed.
    const scratch = path.join(root, 'node_modules', '.cache', `swl-docs-test-${process.pid}`)
    fs.mkdirSync(path.join(scratch, 'node_modules'), { recursive: true })
    fs.symlinkSync(root, path.join(scratch, 'node_modules', 'session-write-lock'), 'dir')
    cleanup.push(scratch)
    const js = blocks.filter((b) => ['js', 'mjs', 'cjs', 'javascript'].includes(b.lang))
    expect(js.map((b) => b.lang)).toEqual(expect.arrayContaining(['mjs', 'cjs']))
    for (const [i, b] of js.entries()) {
      const ext = b.lang === 'cjs' ? '.cjs' : '.mjs'
      const file = path.join(scratch, `block-${i}${ext}`)
      fs.writeFileSync(file, b.code)
      const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' })
      expect(check.status, `README.md:${b.line}: ${check.stderr}`).toBe(0)
      if (b.lang === 'mjs' || b.lang === 'cjs') {
        const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 })
        expect(r.status, `README.md:${b.line}: ${r.stderr}`).toBe(0)
      }
    }
  }, 120_000)

  it('every ts block parses', () => {
    const ts = require('typescript')
    const tsBlocks = blocks.filter((b) => ['ts', 'typescript'].includes(b.lang))
    expect(tsBlocks.length).toBeGreaterThan(0)
    for (const b of tsBlocks) {
      const sf = ts.createSourceFile('block.ts', b.code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
      expect(sf.parseDiagnostics.map((d) => d.messageText), `README.md:${b.line}`).toEqual([])
    }
  })

  it('the CLI examples run against a temporary sessions directory', () => {
    const cli = blocks.filter((b) => b.lang === 'sh' && b.code.includes('session-lock '))
    const examples = cli.filter((b) => /npx -p session-write-lock session-lock/.test(b.code))
    expect(examples.length).toBeGreaterThan(0)
    const bin = path.join(root, 'bin', 'session-lock.js')
    for (const b of examples) {
      const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'swl-docs-cli-')))
      cleanup.push(dir)
      fs.writeFileSync(path.join(dir, 'abc.jsonl'), '{"turn":1}\n')
      const script = b.code
        .split('\n')
        .map((l) => (/^S=/.test(l) ? `S=${JSON.stringify(dir)}` : l))
        .join('\n')
        .replaceAll('npx -p session-write-lock session-lock', `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)}`)
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8', timeout: 120_000, cwd: dir })
      expect(r.status, `README.md:${b.line}:\n${r.stdout}\n${r.stderr}`).toBe(0)
      expect(r.stderr).toBe('')
      // Each command ran: inspect's summary, the demo's end, hold's command.
      if (b.code.includes(' inspect ')) expect(r.stdout).toMatch(/lock files?, \d+ markers?/)
      if (b.code.includes(' demo')) expect(r.stdout).toMatch(/demo finished in/)
      if (b.code.includes(' hold ')) expect(fs.existsSync(path.join(dir, 'abc.jsonl.gz'))).toBe(true)
      expect(fs.readdirSync(dir).filter((f) => f.endsWith('.lock'))).toEqual([])
    }
  }, 180_000)

  it('names every export of the package', () => {
    const missing = Object.keys(require('../index.js')).filter((name) => !text.includes(`\`${name}`) && !text.includes(` ${name}`))
    expect(missing).toEqual([])
  })
})
