// Throwaway PostgreSQL clusters and network-namespace "hosts" for the
// backend's tests (docs/postgres.md, "Tests").
//
// startCluster() runs `initdb` into a fresh temporary directory and starts the
// server with `pg_ctl` on a free loopback port (or on a given address inside a
// given network namespace); stop() stops it and removes the directory. The
// server refuses to run as root: as root, every server command runs as the
// `postgres` user (or `swltest`, created if neither exists) through `runuser`.
//
// makeHosts() builds a small network of its own: one namespace per host and
// one for the database, joined by veth pairs on a bridge inside the database's
// namespace, with addresses from the benchmarking range 198.18.0.0/15 that
// exist only inside those namespaces. teardown() deletes every namespace it
// made (and so every interface and address in them).
//
// Nothing here is mocked: the tests talk to a real server over real sockets.

import { execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** The directory holding initdb/pg_ctl/postgres, or null when the server is not installed. */
export function findPgBin() {
  const candidates = []
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir) candidates.push(dir)
  }
  // Debian keeps the server binaries out of PATH.
  try {
    const versions = fs
      .readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`)
  } catch {}
  for (const dir of candidates) {
    if (['initdb', 'pg_ctl', 'postgres'].every((b) => isExecutable(path.join(dir, b)))) {
      return fs.realpathSync(path.dirname(fs.realpathSync(path.join(dir, 'initdb'))))
    }
  }
  return null
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

/**
 * Whether the server tests can run. When they cannot, say so loudly; under CI
 * (CI=true) a missing server is a failure, never a skip.
 */
export function pgAvailable(what = 'PostgreSQL backend tests') {
  // Under an emulator (npm run cross: arm64 under qemu) the backend's code is
  // the same architecture-neutral Rust the native run of npm test covers; its
  // cluster and namespace set-up only multiply qemu's slowness. Printed, not silent.
  if (process.env.SWL_TEST_EMULATED) {
    process.stderr.write(`\n${what} skipped under ${process.env.SWL_TEST_EMULATED}: the backend runs in npm test natively and in the musl row\n`)
    return false
  }
  const bin = findPgBin()
  if (bin !== null) return true
  const msg = `\n!!! SKIPPING ${what}: the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed.\n!!! Install them (Debian: apt-get install postgresql) to run these tests.\n`
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`${msg}CI is set: the PostgreSQL tests must run in CI.`)
  }
  process.stderr.write(msg)
  return false
}

/** Whether network namespaces can be made here (root and `ip netns`). */
export function netnsAvailable(what = 'network-namespace tests') {
  const ok =
    typeof process.getuid === 'function' &&
    process.getuid() === 0 &&
    spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0
  if (ok) return true
  const msg = `\n!!! SKIPPING ${what}: they need root and \`ip netns\` (iproute2).\n`
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${msg}CI is set: they must run in CI.`)
  process.stderr.write(msg)
  return false
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
let serverUser = null

/** The unprivileged user the server runs as when we are root (created if missing). */
function ensureServerUser() {
  if (!isRoot) return null
  if (serverUser !== null) return serverUser
  for (const u of ['postgres', 'swltest']) {
    if (spawnSync('id', ['-u', u], { stdio: 'ignore' }).status === 0) {
      serverUser = u
      return u
    }
  }
  execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'swltest'])
  serverUser = 'swltest'
  return serverUser
}

/** argv that runs `cmd args` as the server user, inside `netns` when given. */
function asServer(netns, cmd, args) {
  let argv = [cmd, ...args]
  const user = ensureServerUser()
  if (user !== null) argv = ['runuser', '-u', user, '--', ...argv]
  if (netns) argv = ['ip', 'netns', 'exec', netns, ...argv]
  return argv
}

function run(argv, opts = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', ...opts })
  if (r.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`)
  }
  return r.stdout
}

/** A TCP port free on loopback right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

export const PG_USER = 'swl'
export const PG_PASSWORD = 'swl-secret-pw-8d1c'

/**
 * Start a throwaway cluster. Options: `host` (listen address, default
 * 127.0.0.1), `port` (default: a free loopback port, 5432 inside a
 * namespace), `netns` (run the server inside that namespace).
 * Returns { host, port, dir, url(opts), stop(), restart(), stopServer(), startServer() }.
 */
export async function startCluster(opts = {}) {
  const bin = findPgBin()
  if (bin === null) throw new Error('PostgreSQL server binaries not found')
  const netns = opts.netns ?? null
  const host = opts.host ?? '127.0.0.1'
  const port = opts.port ?? (netns ? 5432 : await freePort())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swl-pg-'))
  fs.chmodSync(dir, 0o755)
  const data = path.join(dir, 'data')
  const sock = path.join(dir, 'sock')
  fs.mkdirSync(sock)
  const pwfile = path.join(dir, 'pw')
  fs.writeFileSync(pwfile, `${PG_PASSWORD}\n`)
  const user = ensureServerUser()
  if (user !== null) execFileSync('chown', ['-R', user, dir])
  run(
    asServer(null, path.join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      PG_USER,
      `--pwfile=${pwfile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=trust',
      '--no-sync',
      '-E',
      'UTF8',
      '--locale=C',
    ]),
  )
  const conf = [
    `listen_addresses = '${host}'`,
    `port = ${port}`,
    `unix_socket_directories = '${sock}'`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 200',
    'shared_buffers = 16MB',
    'log_min_messages = warning',
  ]
  fs.appendFileSync(path.join(data, 'postgresql.conf'), `\n${conf.join('\n')}\n`)
  // Host connections from anywhere the test network reaches (the namespaces only).
  fs.appendFileSync(path.join(data, 'pg_hba.conf'), '\nhost all all 0.0.0.0/0 scram-sha-256\n')
  if (user !== null) execFileSync('chown', ['-R', user, dir])
  const log = path.join(dir, 'server.log')

  const pgctl = (args) => run(asServer(netns, path.join(bin, 'pg_ctl'), ['-D', data, ...args]))
  const startServer = () => pgctl(['-l', log, '-w', '-t', '60', 'start'])
  const stopServer = (mode = 'fast') => pgctl(['-m', mode, '-w', '-t', '60', 'stop'])
  startServer()
  let stopped = false
  return {
    host,
    port,
    dir,
    log,
    /** A connection string; `password` false leaves it out, a string replaces it. */
    url({ password = PG_PASSWORD, user: u = PG_USER, db = 'postgres', params = '' } = {}) {
      const auth = password === false ? u : `${u}:${encodeURIComponent(password)}`
      return `postgres://${auth}@${host}:${port}/${db}${params ? `?${params}` : ''}`
    },
    /** Run SQL through psql over the unix socket (as the server user). */
    psql(sql) {
      return run(
        asServer(netns, path.join(bin, 'psql'), ['-h', sock, '-p', String(port), '-U', PG_USER, '-d', 'postgres', '-XAtqc', sql]),
      )
    },
    startServer,
    stopServer,
    restart() {
      pgctl(['-m', 'fast', '-l', log, '-w', '-t', '60', 'restart'])
    },
    stop() {
      if (stopped) return
      stopped = true
      try {
        stopServer('immediate')
      } catch {}
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * A network of `hosts` namespaces plus one for the database. Returns
 * { db: { ns, addr }, hosts: [{ ns, addr, dev }], exec(host, argv, opts),
 *   linkDown(host), linkUp(host), teardown() }.
 */
export function makeHosts(names = ['a', 'b']) {
  const tag = `${process.pid % 100000}${Math.floor(Math.random() * 100)}`
  const subnet = 18 + (process.pid % 2) // 198.18.x or 198.19.x
  const third = (process.pid >> 1) % 250
  const prefix = `198.${subnet}.${third}`
  const made = []
  const ip = (...args) => run(['ip', ...args])
  const dbNs = `swl${tag}db`
  try {
    ip('netns', 'add', dbNs)
    made.push(dbNs)
    ip('-n', dbNs, 'link', 'set', 'lo', 'up')
    ip('-n', dbNs, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', dbNs, 'addr', 'add', `${prefix}.1/24`, 'dev', 'br0')
    ip('-n', dbNs, 'link', 'set', 'br0', 'up')
    const hosts = names.map((name, i) => {
      const ns = `swl${tag}${name}`
      ip('netns', 'add', ns)
      made.push(ns)
      ip('-n', ns, 'link', 'set', 'lo', 'up')
      const dev = `eth${name}`
      const peer = `v${tag}${name}`.slice(0, 15)
      ip('-n', ns, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', peer, 'netns', dbNs)
      ip('-n', dbNs, 'link', 'set', peer, 'master', 'br0')
      ip('-n', dbNs, 'link', 'set', peer, 'up')
      const addr = `${prefix}.${i + 2}`
      ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev)
      ip('-n', ns, 'link', 'set', dev, 'up')
      return { name, ns, addr, dev }
    })
    const byName = (h) => (typeof h === 'string' ? hosts.find((x) => x.name === h) : h)
    return {
      db: { ns: dbNs, addr: `${prefix}.1` },
      hosts,
      /** Spawn argv inside a host's namespace (child_process.spawn options). */
      spawn(host, argv, opts = {}) {
        return spawn('ip', ['netns', 'exec', byName(host).ns, ...argv], opts)
      },
      linkDown(host) {
        const h = byName(host)
        ip('-n', h.ns, 'link', 'set', h.dev, 'down')
      },
      linkUp(host) {
        const h = byName(host)
        ip('-n', h.ns, 'link', 'set', h.dev, 'up')
      },
      teardown() {
        for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
      },
    }
  } catch (err) {
    for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    throw err
  }
}
