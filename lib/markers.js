'use strict'
// The active-session marker format (docs/spec.md, "Shutdown and session_end"):
// `<sessionFile>.active`, flat pretty JSON {sessionId, sessionKey, agentId,
// sessionFile, messageCount, startedAt, pid, starttime, hostname, bootId,
// "lock": "os"} in that order, absent values omitted. The one place in the
// JavaScript that writes or reads it: sessions write and recover markers with
// it, and readSessionMarker gives tools (the CLI) the same reading.
// Stateless: no addon, no per-copy state.

const fs = require('node:fs')

const MARKER_SUFFIX = '.active'
/** The most a marker may hold (the addon's bound on every payload it reads). */
const MAX_MARKER_BYTES = 64 * 1024

/** Marker JSON for session record `rec` owned by process `me` (selfIdentity). */
function renderMarker(rec, me) {
  const m = {}
  m.sessionId = rec.sessionId
  if (rec.sessionKey !== undefined) m.sessionKey = rec.sessionKey
  if (rec.agentId !== undefined) m.agentId = rec.agentId
  if (rec.sessionFile !== undefined) m.sessionFile = rec.sessionFile
  m.messageCount = rec.messageCount
  m.startedAt = rec.startedAt
  m.pid = me.pid
  if (me.starttime != null) m.starttime = me.starttime
  m.hostname = me.hostname
  if (me.bootId != null) m.bootId = me.bootId
  m.lock = 'os'
  return JSON.stringify(m, null, 2)
}

const STRING_FIELDS = ['sessionId', 'sessionKey', 'agentId', 'sessionFile', 'startedAt', 'hostname', 'bootId', 'lock']
const NUMBER_FIELDS = ['messageCount', 'pid', 'starttime']

/**
 * The fields of a marker's text that have the format's type (strings,
 * numbers); null when the text is not a JSON object. Says nothing about
 * whether its owner lives (that is the marker's OS lock).
 */
function parseMarker(text) {
  let v
  try {
    v = JSON.parse(text)
  } catch {
    return null
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null
  const m = {}
  for (const k of STRING_FIELDS) if (typeof v[k] === 'string') m[k] = v[k]
  for (const k of NUMBER_FIELDS) if (typeof v[k] === 'number' && Number.isFinite(v[k])) m[k] = v[k]
  return m
}

/**
 * The session_end a dead owner's marker stands for (reason "unknown",
 * `recovered` = the dead owner) and its context; null when the text names no
 * session. `markerPath` supplies the sessionFile a marker does not record.
 */
function recoveredEvent(text, markerPath) {
  const m = parseMarker(text)
  if (m === null || m.sessionId === undefined || m.sessionId === '') return null
  const e = { sessionId: m.sessionId }
  if (m.sessionKey !== undefined) e.sessionKey = m.sessionKey
  e.messageCount = m.messageCount !== undefined && m.messageCount >= 0 ? m.messageCount : 0
  e.reason = 'unknown'
  e.sessionFile = m.sessionFile ?? markerPath.slice(0, -MARKER_SUFFIX.length)
  e.recovered = {
    pid: m.pid ?? 0,
    hostname: m.hostname ?? '',
    startedAt: m.startedAt ?? '',
  }
  const ctx = {}
  if (m.agentId !== undefined) ctx.agentId = m.agentId
  ctx.sessionId = m.sessionId
  if (e.sessionKey !== undefined) ctx.sessionKey = e.sessionKey
  return { event: e, ctx }
}

/**
 * Read the marker at `markerPath` without taking its lock: at most 64 KiB,
 * never following a symlink, never blocking on a FIFO. The parsed fields
 * (parseMarker), or null when there is no readable regular file there or its
 * content is not a JSON object of at most 64 KiB.
 */
function readSessionMarker(markerPath) {
  if (typeof markerPath !== 'string' || markerPath.length === 0 || markerPath.includes('\0')) {
    throw new TypeError('readSessionMarker expects a marker file path (a non-empty string without NUL)')
  }
  let fd
  try {
    fd = fs.openSync(markerPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  } catch {
    return null
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return null
    const buf = Buffer.alloc(MAX_MARKER_BYTES + 1)
    let n = 0
    for (;;) {
      const r = fs.readSync(fd, buf, n, buf.length - n, null)
      if (r === 0) break
      n += r
      if (n > MAX_MARKER_BYTES) return null
    }
    return parseMarker(buf.subarray(0, n).toString('utf8'))
  } catch {
    return null
  } finally {
    fs.closeSync(fd)
  }
}

module.exports = { MARKER_SUFFIX, renderMarker, recoveredEvent, readSessionMarker }
