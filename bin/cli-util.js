'use strict'
// Shared helpers of the session-lock CLI's commands: errors with exit codes, option
// parsing, colors (TTY only), durations and plain-text tables.

const fs = require('node:fs')
const os = require('node:os')

/** A mistake in how the CLI was called: one line on stderr, exit 2. */
class UsageError extends Error {
  constructor(message, command) {
    super(message)
    this.name = 'UsageError'
    this.exitCode = 2
    this.command = command
  }
}

/** A failure to do the job (bad path, I/O error): one line, its own exit code. */
class CliError extends Error {
  constructor(message, exitCode = 2) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

const CAUSES = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ELOOP: 'is a symbolic link (never followed)',
  EINVAL: 'not a regular file',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EBUSY: 'busy',
  EIO: 'input/output error',
}

/** "<path>: <cause> (<CODE>)" for an fs-style error. */
function describeError(err, fallbackPath) {
  if (err == null) return 'unknown error'
  const p = err.path || fallbackPath
  const code = typeof err.code === 'string' ? err.code : null
  const cause = code && CAUSES[code] ? `${CAUSES[code]} (${code})` : String(err.message || err).split('\n')[0]
  return p ? `${p}: ${cause}` : cause
}

/** Parse a non-negative integer option value (digits only). */
function parseMs(value, flag, command, { allowZero = true, allowInfinity = false } = {}) {
  if (value === undefined || value === true || value === '') {
    throw new UsageError(`${flag} needs a value in milliseconds`, command)
  }
  const v = String(value).trim()
  if (allowInfinity && (v === 'Infinity' || v === 'inf' || v === 'infinity')) return Infinity
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number of milliseconds, got "${value}"`, command)
  const n = Number(v)
  if (!allowZero && n === 0) throw new UsageError(`${flag} must be greater than 0`, command)
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} is too large: ${value}`, command)
  return n
}

/**
 * Parse `argv` (no command name) against `spec` = { name: { type: 'boolean'|'string', short? } }.
 * Options may appear anywhere before a bare `--`; `--name=value` and
 * `--name value` both work. Returns { values, positionals, rest } where
 * `rest` is everything after `--` (null when there was none), or, with
 * `stopAtPositional: n`, everything from the positional after the n+1th.
 */
function parseOptions(argv, spec, command, { maxPositionals = Infinity, stopAtPositional = -1 } = {}) {
  const values = {}
  const positionals = []
  let rest = null
  const byShort = {}
  for (const [name, s] of Object.entries(spec)) if (s.short) byShort[s.short] = name
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      rest = argv.slice(i + 1)
      break
    }
    if (a.startsWith('--') || (a.startsWith('-') && a.length === 2 && a !== '-')) {
      let name
      let inline
      if (a.startsWith('--')) {
        const eq = a.indexOf('=')
        name = eq === -1 ? a.slice(2) : a.slice(2, eq)
        inline = eq === -1 ? undefined : a.slice(eq + 1)
      } else {
        name = byShort[a[1]]
        if (name === undefined) throw new UsageError(`unknown option ${a}`, command)
      }
      const s = spec[name]
      if (s === undefined) throw new UsageError(`unknown option --${name}`, command)
      if (s.type === 'boolean') {
        if (inline !== undefined) throw new UsageError(`--${name} takes no value`, command)
        values[name] = true
      } else {
        let v = inline
        if (v === undefined) {
          if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`, command)
          v = argv[++i]
        }
        values[name] = v
      }
      continue
    }
    if (stopAtPositional >= 0 && positionals.length > stopAtPositional) {
      // e.g. `hold <file> cmd args...`: the command starts here, unparsed.
      rest = argv.slice(i)
      break
    }
    positionals.push(a)
  }
  if (positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${positionals[maxPositionals]}"`, command)
  }
  return { values, positionals, rest }
}

// ---------------------------------------------------------------- colors

function useColor(stream) {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  return Boolean(stream && stream.isTTY)
}

function painter(enabled) {
  const wrap = (open, close) => (s) => (enabled ? `\x1b[${open}m${s}\x1b[${close}m` : String(s))
  return {
    enabled,
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  }
}

// ---------------------------------------------------------------- formatting

/** 850ms, 12.3s, 5m03s, 2h10m, 3d04h */
function fmtDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '-'
  const neg = ms < 0
  let a = Math.abs(ms)
  let s
  if (a < 1000) s = `${Math.round(a)}ms`
  else if (a < 60_000) s = `${(a / 1000).toFixed(a < 10_000 ? 2 : 1)}s`
  else if (a < 3_600_000) {
    const m = Math.floor(a / 60_000)
    s = `${m}m${String(Math.floor((a % 60_000) / 1000)).padStart(2, '0')}s`
  } else if (a < 86_400_000) {
    const h = Math.floor(a / 3_600_000)
    s = `${h}h${String(Math.floor((a % 3_600_000) / 60_000)).padStart(2, '0')}m`
  } else {
    const d = Math.floor(a / 86_400_000)
    s = `${d}d${String(Math.floor((a % 86_400_000) / 3_600_000)).padStart(2, '0')}h`
  }
  return neg ? `-${s}` : s
}

/**
 * Split `text` into lines of at most `width` characters, breaking after a
 * space, comma, slash, dot, dash or underscore where possible (so paths and
 * file names wrap at their separators), hard-splitting what is longer.
 */
function wrap(text, width, breaks = /(?<=[ ,/._-])/) {
  const s = String(text)
  if (width <= 0 || s.length <= width) return [s]
  const tokens = s.split(breaks)
  const lines = []
  let cur = ''
  for (let tok of tokens) {
    if (cur.length + tok.trimEnd().length > width && cur !== '') {
      lines.push(cur.trimEnd())
      cur = ''
      tok = tok.trimStart()
    }
    while (tok.length > width) {
      lines.push(tok.slice(0, width))
      tok = tok.slice(width)
    }
    cur += tok
  }
  if (cur.trim() !== '') lines.push(cur.trimEnd())
  return lines
}

/**
 * Render rows under headers, columns separated by two spaces, every line at
 * most `maxWidth` columns: the columns listed in `minWidths` ({ index: min })
 * give up width (the widest first) and their cells wrap onto continuation
 * lines, broken where `breaks` ({ index: RegExp }, default: after a space,
 * comma, slash, dot, dash or underscore) allows. A cell is a string, or
 * [text, paint] where paint colors each line (after wrapping, so escapes
 * never split).
 */
function table(headers, rows, paint, { maxWidth = 100, minWidths = {}, breaks = {} } = {}) {
  const n = headers.length
  const cell = (c) => (Array.isArray(c) ? [String(c[0]), c[1]] : [String(c), null])
  const body = rows.map((r) => r.map(cell))
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => r[i][0].length)))
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (n - 1)
  const flex = Object.keys(minWidths).map(Number)
  // Shrink the flexible column with the most room above its minimum; should
  // the minimums not fit (a long pid@host), go below them down to 6.
  for (const floor of [(i) => minWidths[i], () => 6]) {
    while (total() > maxWidth) {
      let best = -1
      let bestSlack = 0
      for (const i of flex) {
        const slack = widths[i] - floor(i)
        if (slack > bestSlack) [best, bestSlack] = [i, slack]
      }
      if (best < 0) break
      widths[best]--
    }
  }
  const render = (cells) => {
    const wrapped = cells.map(([t, p], i) => wrap(t, widths[i], breaks[i]).map((l) => [l, p]))
    const height = Math.max(...wrapped.map((w) => w.length))
    const lines = []
    for (let k = 0; k < height; k++) {
      const parts = wrapped.map((w, i) => {
        const [t, p] = w[k] ?? ['', null]
        const pad = i === n - 1 ? '' : ' '.repeat(Math.max(0, widths[i] - t.length))
        return (p && t ? p(t) : t) + pad
      })
      lines.push(parts.join('  ').trimEnd())
    }
    return lines
  }
  return [...render(headers.map((h) => [h, paint.bold])), ...body.flatMap(render)].join('\n')
}

/**
 * The names in `dir`, or a CliError (one line, exit 2) when it is missing, not
 * a directory, or cannot be read (EACCES: run as the owner).
 */
function readDirectory(dir) {
  let st
  try {
    st = fs.statSync(dir)
  } catch (err) {
    throw new CliError(describeError(err, dir))
  }
  if (!st.isDirectory()) throw new CliError(`${dir}: not a directory (ENOTDIR)`)
  try {
    return fs.readdirSync(dir)
  } catch (err) {
    throw new CliError(describeError(err, dir))
  }
}

/** What an operator can do about a failed removal or an unreadable path, or null. */
function hintFor(code) {
  if (code === 'EACCES' || code === 'EPERM') return 'run as the user that owns the sessions directory'
  if (code === 'EROFS') return 'the file system is mounted read-only'
  if (code === 'EBUSY') return 'the file is in use by another process'
  return null
}

const localHost = os.hostname()

module.exports = {
  // errors and arguments
  UsageError, CliError, describeError, hintFor, parseMs, parseOptions, readDirectory,
  // output
  useColor, painter, fmtDuration, table, wrap, localHost,
}
