// The loader (loader.js): Node version gate, platform package resolution and
// its error messages. Child processes load copies of loader.js from temporary
// directories, so what they find is exactly what a consumer's node_modules has.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const loader = require('../loader.js')
const tag = loader.platformTag()
const builtAddon = path.join(root, `session-write-lock.${tag}.node`)

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'swl-loader-'))

function childEnv() {
  const env = { ...process.env }
  for (const k of ['SESSION_WRITE_LOCK_NATIVE_PATH', '__SESSION_WRITE_LOCK_NATIVE', 'NODE_PATH', 'NODE_OPTIONS']) delete env[k]
  return env
}

function node(args, cwd = root) {
  const r = spawnSync(process.execPath, args, { cwd, env: childEnv(), encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

// A directory laid out like node_modules/session-write-lock holding only
// loader.js and what it loads off its common path (lib/loader-fallbacks.js:
// the errors of a failed load).
function packageCopy() {
  const dir = tmp()
  const pkg = path.join(dir, 'node_modules', 'session-write-lock')
  fs.mkdirSync(path.join(pkg, 'lib'), { recursive: true })
  fs.copyFileSync(path.join(root, 'loader.js'), path.join(pkg, 'loader.js'))
  fs.copyFileSync(path.join(root, 'lib', 'loader-fallbacks.js'), path.join(pkg, 'lib', 'loader-fallbacks.js'))
  return { dir, pkg }
}

function platformPackage(dir, nodeFile) {
  const p = path.join(dir, 'node_modules', `session-write-lock-${tag}`)
  fs.mkdirSync(p, { recursive: true })
  const main = `session-write-lock.${tag}.node`
  fs.writeFileSync(path.join(p, 'package.json'), JSON.stringify({ name: `session-write-lock-${tag}`, version: '0.1.0', main }))
  if (nodeFile !== null) fs.copyFileSync(nodeFile, path.join(p, main))
  return path.join(p, main)
}

// Prints the error code and message of requiring the loader copy, or the .node it loaded.
const probe = (loaderPath) => `
  try {
    require(${JSON.stringify(loaderPath)}).load()
    const loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node'))
    console.log(JSON.stringify({ ok: true, loaded }))
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code, message: e.message }))
  }`

function runProbe(loaderPath) {
  const r = node(['-e', probe(loaderPath)])
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

describe('Node.js version gate', () => {
  it('refuses Node < 18.17 with a message naming both versions', () => {
    let err
    try {
      loader.checkNode('16.20.0')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(Error)
    expect(err.code).toBe('SESSION_WRITE_LOCK_UNSUPPORTED_NODE')
    expect(err.message).toBe(
      'session-write-lock needs Node.js >= 18.17.0 with N-API 8; this is Node.js v16.20.0. ' +
        'Upgrade Node.js (the gateway itself runs on Node 22 or later).',
    )
  })

  it.each(['16.20.0', 'v16.20.0', '18.16.1', '18.0.0', '17.99.99', '14.21.3', '0.12.0', 'garbage'])(
    'refuses %s',
    (v) => {
      expect(() => loader.checkNode(v)).toThrow(/needs Node\.js >= 18\.17\.0/)
    },
  )

  it.each(['18.17.0', 'v18.17.0', '18.17.1', '18.20.8', '19.0.0', '20.0.0', '22.12.0', '24.0.0', '25.1.0', '100.0.0'])(
    'accepts %s',
    (v) => {
      expect(() => loader.checkNode(v)).not.toThrow()
    },
  )

  it('refuses an N-API below 8 even on a new enough version number', () => {
    expect(() => loader.checkNode('20.0.0', '7')).toThrow(/\(N-API 7\)/)
    expect(() => loader.checkNode('20.0.0', '8')).not.toThrow()
    expect(() => loader.checkNode('22.0.0', '10')).not.toThrow()
  })

  it('this Node passes the gate', () => {
    expect(() => loader.checkNode(process.versions.node, process.versions.napi)).not.toThrow()
  })

  // The whole package refuses to load, for require and import, on an old Node
  // (faked by a preload that replaces process.versions), and loads on a new one.
  it.each([
    ['require', (p) => `require(${JSON.stringify(p)})`, 'index.js'],
    ['import', (p) => `import(${JSON.stringify(new URL(`file://${p}`).href)}).catch((e) => { console.error(e.message); process.exit(3) })`, 'index.mjs'],
  ])('the package refuses to load on Node 16.20.0 (%s)', (_kind, load, entry) => {
    const dir = tmp()
    const preload = (v) => {
      const f = path.join(dir, `fake-${v}.cjs`)
      fs.writeFileSync(f, `Object.defineProperty(process, 'versions', { value: { ...process.versions, node: ${JSON.stringify(v)} } })\n`)
      return f
    }
    const old = node(['-r', preload('16.20.0'), '-e', load(path.join(root, entry))])
    expect(old.status).not.toBe(0)
    expect(old.stderr).toContain('session-write-lock needs Node.js >= 18.17.0 with N-API 8; this is Node.js v16.20.0')
    const ok = node(['-r', preload('22.0.0'), '-e', load(path.join(root, entry))])
    expect(ok.stderr).toBe('')
    expect(ok.status).toBe(0)
  })
})

describe('C library detection', () => {
  // The truth from Node itself (slow, so the loader does not use it first):
  // glibcVersionRuntime is set exactly when this Node runs on glibc.
  const glibcRuntime = process.platform === 'linux' ? process.report.getReport().header.glibcVersionRuntime : undefined

  it.runIf(process.platform === 'linux')('the platform tag names the C library this Node really runs on', () => {
    if (glibcRuntime) {
      expect(tag, `glibc ${glibcRuntime} Node detected as musl`).toMatch(/-gnu$/)
    } else {
      expect(tag, 'musl Node detected as glibc').toMatch(/-musl$/)
    }
  })

  it('decides from the loader mapped into the process, not from files on disk', () => {
    const line = (p) => `7f9164462000-7f9164488000 r--p 00000000 fe:00 326279   ${p}\n`
    expect(loader.libcFromMaps(line('/usr/lib/x86_64-linux-gnu/libc.so.6') + line('/lib64/ld-linux-x86-64.so.2'))).toBe('glibc')
    expect(loader.libcFromMaps(line('/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1'))).toBe('glibc')
    expect(loader.libcFromMaps(line('/lib/ld-musl-x86_64.so.1'))).toBe('musl')
    expect(loader.libcFromMaps(line('/usr/lib/ld-musl-aarch64.so.1') + line('/usr/lib/libgcompat.so.0'))).toBe('musl')
    expect(loader.libcFromMaps(line('/usr/local/bin/node') + line('[vdso]'))).toBe(null)
    expect(loader.libcFromMaps(null)).toBe(null)
  })

  it.runIf(process.platform === 'linux')("this process's own map gives the same answer as Node's report", () => {
    const own = loader.libcFromMaps(fs.readFileSync('/proc/self/maps', 'latin1'))
    expect(own).toBe(glibcRuntime ? 'glibc' : 'musl')
  })

  it('knows the layouts where the mapped loader is not named ld-musl or ld-linux', () => {
    const line = (p) => `7f9164462000-7f9164488000 r-xp 00000000 fe:00 326279   ${p}\n`
    // musl packaged on Debian (ld-musl-x86_64.so.1 is a symlink; the map shows its target).
    expect(loader.libcFromMaps(line('/usr/lib/x86_64-linux-musl/libc.so'))).toBe('musl')
    expect(loader.libcFromMaps(line('/lib/libc.musl-x86_64.so.1'))).toBe('musl')
    // glibc before 2.34 (ld-linux-x86-64.so.2 and libc.so.6 are symlinks to these).
    expect(loader.libcFromMaps(line('/lib/x86_64-linux-gnu/ld-2.28.so') + line('/lib/x86_64-linux-gnu/libc-2.28.so'))).toBe('glibc')
    // A musl triplet directory holding something else is not the C library.
    expect(loader.libcFromMaps(line('/usr/lib/x86_64-linux-musl/libz.so.1'))).toBe(null)
  })

  it('names the C library from the interpreter path, by its ABI name', () => {
    expect(loader.libcFromInterpreter('/lib/ld-musl-x86_64.so.1')).toBe('musl')
    expect(loader.libcFromInterpreter('/opt/musl/lib/ld-musl-aarch64.so.1')).toBe('musl')
    expect(loader.libcFromInterpreter('/lib64/ld-linux-x86-64.so.2')).toBe('glibc')
    expect(loader.libcFromInterpreter('/lib/ld-linux-aarch64.so.1')).toBe('glibc')
    expect(loader.libcFromInterpreter('/nix/store/abc-glibc-2.40/lib/ld-linux-x86-64.so.2')).toBe('glibc')
    expect(loader.libcFromInterpreter('/usr/lib/x86_64-linux-musl/libc.so')).toBe(null)
    expect(loader.libcFromInterpreter('/lib/ld-musl-x86_64.so.1/evil')).toBe(null)
    expect(loader.libcFromInterpreter(null)).toBe(null)
  })

  it.runIf(process.platform === 'linux')("this process's executable names the interpreter of Node's own C library", () => {
    const interp = loader.elfInterpreter('/proc/self/exe')
    expect(loader.libcFromInterpreter(interp), `PT_INTERP ${interp}`).toBe(glibcRuntime ? 'glibc' : 'musl')
  })

  // Synthetic ELF64 files: the header, program headers and the interpreter
  // path where a linker puts them (all in the first KiB), where patchelf
  // moves them (past the first KiB), big-endian, and the cases without one.
  function elf64({ interp, le = true, phFar = false, interpFar = false, cls = 2, truncate = null }) {
    const phoff = phFar ? 8192 : 64
    const phnum = 3
    const interpOff = interpFar ? 16384 : 64 + 56 * phnum
    const b = Buffer.alloc(Math.max(phoff + 56 * phnum, interpOff + Buffer.byteLength(interp ?? '') + 1) + 16)
    b.writeUInt32BE(0x7f454c46, 0)
    b[4] = cls
    b[5] = le ? 1 : 2
    b[6] = 1
    const w16 = (v, o) => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o))
    const w32 = (v, o) => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o))
    const w64 = (v, o) => (le ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o))
    w16(3, 0x10) // ET_DYN
    w64(phoff, 0x20)
    w16(56, 0x36)
    w16(phnum, 0x38)
    // PT_PHDR, then PT_INTERP (if any), then PT_LOAD.
    const types = [6, interp === undefined ? 1 : 3, 1]
    types.forEach((t, i) => {
      const at = phoff + i * 56
      w32(t, at)
      if (t === 3) {
        w64(interpOff, at + 8)
        w64(Buffer.byteLength(interp) + 1, at + 32)
      }
    })
    if (interp !== undefined) b.write(interp + '\0', interpOff, 'latin1')
    const f = path.join(tmp(), 'exe')
    fs.writeFileSync(f, truncate === null ? b : b.subarray(0, truncate))
    return f
  }

  it('reads PT_INTERP from an ELF64 file wherever its program headers and path are', () => {
    const musl = '/lib/ld-musl-x86_64.so.1'
    expect(loader.elfInterpreter(elf64({ interp: musl }))).toBe(musl)
    expect(loader.elfInterpreter(elf64({ interp: musl, phFar: true, interpFar: true }))).toBe(musl)
    expect(loader.elfInterpreter(elf64({ interp: '/lib/ld-linux-aarch64.so.1', le: false }))).toBe('/lib/ld-linux-aarch64.so.1')
    const long = `/opt/${'x'.repeat(1500)}/ld-musl-x86_64.so.1`
    expect(loader.elfInterpreter(elf64({ interp: long }))).toBe(long)
  })

  it('gives null, never throws, for a static binary, ELF32, a truncated file, garbage and a missing file', () => {
    expect(loader.elfInterpreter(elf64({}))).toBe(null)
    expect(loader.elfInterpreter(elf64({ interp: '/lib/ld-musl-x86_64.so.1', cls: 1 }))).toBe(null)
    expect(loader.elfInterpreter(elf64({ interp: '/lib/ld-musl-x86_64.so.1', interpFar: true, truncate: 16390 }))).toBe(null)
    expect(loader.elfInterpreter(elf64({ interp: '/lib/ld-musl-x86_64.so.1', truncate: 40 }))).toBe(null)
    const junk = path.join(tmp(), 'junk')
    fs.writeFileSync(junk, 'not an executable\n'.repeat(100))
    expect(loader.elfInterpreter(junk)).toBe(null)
    expect(loader.elfInterpreter(path.join(tmp(), 'missing'))).toBe(null)
    expect(loader.elfInterpreter(tmp())).toBe(null)
  })
})

describe('platform packages', () => {
  it.runIf(process.platform === 'linux' && process.arch === 'x64')('a Linux x64 Node is linux-x64-gnu on glibc, linux-x64-musl on musl', () => {
    const glibc = process.report.getReport().header.glibcVersionRuntime
    expect(tag).toBe(glibc ? 'linux-x64-gnu' : 'linux-x64-musl')
  })

  it('without a local build or a platform package, the error names the package and the way to build', () => {
    const { pkg } = packageCopy()
    const r = runProbe(path.join(pkg, 'loader.js'))
    expect(r.ok).toBe(false)
    expect(r.code).toBe('SESSION_WRITE_LOCK_NO_NATIVE')
    expect(r.message).toContain(`no native addon for ${tag}`)
    expect(r.message).toContain(`"session-write-lock-${tag}" is not installed`)
    expect(r.message).toContain('--omit=optional')
    expect(r.message).toContain(path.join(pkg, `session-write-lock.${tag}.node`))
    expect(r.message).toContain('npx --yes @napi-rs/cli@3 build --platform --release --no-js --dts native.d.ts')
    expect(r.message).toContain('Rust >= 1.89')
  })

  it.skipIf(!fs.existsSync(builtAddon))('loads the addon from the installed platform package', () => {
    const { dir, pkg } = packageCopy()
    const installed = platformPackage(dir, builtAddon)
    const r = runProbe(path.join(pkg, 'loader.js'))
    expect(r).toEqual({ ok: true, loaded: [installed] })
  })

  it.skipIf(!fs.existsSync(builtAddon))('a local build next to loader.js wins over the platform package', () => {
    const { dir, pkg } = packageCopy()
    platformPackage(dir, builtAddon)
    const local = path.join(pkg, `session-write-lock.${tag}.node`)
    fs.copyFileSync(builtAddon, local)
    expect(runProbe(path.join(pkg, 'loader.js'))).toEqual({ ok: true, loaded: [local] })
  })

  it.skipIf(process.env.SWL_TEST_WINE === '1')('an installed but unloadable platform package is reported with the cause (skipped under wine: its loader error for a non-PE file names no format)', () => {
    const { dir, pkg } = packageCopy()
    const broken = platformPackage(dir, null)
    fs.writeFileSync(broken, 'this is not a shared library\n'.repeat(200))
    // What this platform's dynamic loader says about such a file (glibc:
    // "invalid ELF header", musl: "Exec format error", macOS, Windows: their
    // own words): the loader must quote it, whatever it is.
    let own
    try {
      process.dlopen({ exports: {} }, broken)
    } catch (e) {
      own = e.message
    }
    expect(own, 'dlopen of a text file succeeded').toBeTypeOf('string')
    const r = runProbe(path.join(pkg, 'loader.js'))
    expect(r.ok).toBe(false)
    expect(r.code).toBe('SESSION_WRITE_LOCK_NO_NATIVE')
    expect(r.message).toContain(`"session-write-lock-${tag}" is installed but its addon failed to load (${broken}): ${own}`)
    expect(r.message).toContain('npx --yes @napi-rs/cli@3 build')
  })
})
