//! The PostgreSQL backend's engine against a real throwaway cluster (initdb
//! into a temporary directory, a free loopback port, stopped and removed at
//! the end). Without the server binaries these tests skip with a loud
//! message; with CI=true they fail instead.
//!
//! Each `Engine` has its own holding connection, so two engines contend like
//! two processes (or two hosts) do.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use session_write_lock::pg::config::RawOptions;
use session_write_lock::pg::engine::AcquireError;
use session_write_lock::pg::{BackendConfig, Engine, Grant, HolderInfo};

const PASSWORD: &str = "swl-rust-pw-51aa";

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        v.reverse();
        dirs.extend(v);
    }
    dirs.into_iter().find(|d| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    })
}

fn skip_or_fail(what: &str) -> bool {
    if pg_bin().is_some() {
        return false;
    }
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"));
    let msg = format!(
        "!!! SKIPPING {what}: PostgreSQL server binaries (initdb, pg_ctl, postgres) not installed (Debian: apt-get install postgresql)"
    );
    if ci {
        panic!("{msg}; CI is set: these tests must run");
    }
    eprintln!("\n{msg}\n");
    true
}

struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<String>,
}

fn run_as(user: &Option<String>, argv: &[&str]) -> std::process::Output {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bin().expect("checked");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = if root {
            let u = ["postgres", "swltest"]
                .into_iter()
                .find(|u| {
                    Command::new("id")
                        .arg("-u")
                        .arg(u)
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .map(String::from);
            Some(u.unwrap_or_else(|| {
                let _ = Command::new("useradd")
                    .args([
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        "swltest",
                    ])
                    .status();
                "swltest".into()
            }))
        } else {
            None
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("swl-pg-rs-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
        if let Some(u) = &user {
            run_as(&None, &["chown", "-R", u, dir.to_str().unwrap()]);
        }
        let data = dir.join("data");
        let pwfile = format!("--pwfile={}", dir.join("pw").display());
        run_as(
            &user,
            &[
                bin.join("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "swl",
                &pwfile,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "--locale=C",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 200\n",
            dir.join("sock").display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let c = Cluster {
            dir,
            port,
            bin,
            user,
        };
        c.pg_ctl(&["start", "-w", "-t", "60", "-l"], true);
        c
    }

    fn pg_ctl(&self, args: &[&str], with_log: bool) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let mut argv = vec![
            self.bin.join("pg_ctl").to_str().unwrap().to_string(),
            "-D".into(),
            data.to_str().unwrap().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        if with_log {
            argv.push(log.to_str().unwrap().to_string());
        }
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        run_as(&self.user, &refs);
    }

    /// Run SQL through psql over the unix socket (trusted), as the server user.
    fn psql(&self, sql: &str) -> String {
        let sock = self.dir.join("sock");
        let port = self.port.to_string();
        // PATH may hold links to the server binaries only: psql sits next to
        // the real initdb.
        let real = std::fs::canonicalize(self.bin.join("initdb")).unwrap();
        let psql = real.with_file_name("psql");
        let out = run_as(
            &self.user,
            &[
                psql.to_str().unwrap(),
                "-h",
                sock.to_str().unwrap(),
                "-p",
                &port,
                "-U",
                "swl",
                "-d",
                "postgres",
                "-XAtqc",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn url(&self, password: &str) -> String {
        format!("postgres://swl:{password}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Cluster {
    /// Stop the server and remove its directory.
    fn stop(&self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", self.user.as_deref().unwrap_or("root"), "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn engine(url: &str, schema: &str, pool: Option<f64>) -> Engine {
    let cfg = BackendConfig::parse(
        &RawOptions {
            connection_string: url,
            sessions_root: Some("/srv/sessions"),
            schema: Some(schema),
            pool_size: pool,
            ..Default::default()
        },
        None,
        None,
    )
    .unwrap();
    Engine::start(cfg).unwrap()
}

fn holder(pid: i32) -> HolderInfo {
    HolderInfo {
        pid,
        hostname: "test-host".into(),
        boot_id: None,
        max_hold_ms: Some(300_000),
    }
}

fn acquire(e: &Engine, req: u64, key: &str, timeout_ms: u64) -> Result<Grant, AcquireError> {
    let (tx, rx) = mpsc::channel();
    e.acquire(
        req,
        key.into(),
        holder(1000 + req as i32),
        Some(Duration::from_millis(timeout_ms)),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_millis(timeout_ms + 30_000))
        .expect("the engine answers")
}

fn acquire_async(
    e: &Engine,
    req: u64,
    key: &str,
    timeout_ms: u64,
) -> mpsc::Receiver<Result<Grant, AcquireError>> {
    let (tx, rx) = mpsc::channel();
    e.acquire(
        req,
        key.into(),
        holder(2000 + req as i32),
        Some(Duration::from_millis(timeout_ms)),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx
}

fn release(e: &Engine, key: &str, g: Grant) -> bool {
    let (tx, rx) = mpsc::channel();
    e.release(
        key.into(),
        g,
        Some(Box::new(move |ok| {
            let _ = tx.send(ok);
        })),
    );
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn check(e: &Engine, key: &str, g: Grant) -> bool {
    let (tx, rx) = mpsc::channel();
    e.check(
        key.into(),
        g,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// One cluster for the whole file: tests run in parallel threads on it, each
// in its own schema.
static CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();

/// The cluster every test of this binary shares, stopped when the binary
/// exits: a `static` is never dropped, so without the exit handler every
/// run left a PostgreSQL server (and its background processes) running.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let c = Cluster::start();
        extern "C" fn stop_at_exit() {
            if let Some(c) = CLUSTER.get() {
                c.stop();
            }
        }
        // SAFETY: registers a function without arguments to run at the
        // process's normal exit (the test harness ends with `exit`).
        unsafe { libc::atexit(stop_at_exit) };
        c
    })
}

#[test]
fn exclusion_release_wakes_the_waiter_and_tokens_increase() {
    if skip_or_fail("pg exclusion test") {
        return;
    }
    let c = cluster();
    let a = engine(&c.url(PASSWORD), "t_excl", None);
    let b = engine(&c.url(PASSWORD), "t_excl", None);
    let key = "openclaw/agent/s1.jsonl";
    let ga = acquire(&a, 1, key, 5_000).expect("a acquires");
    assert!(check(&a, key, ga));
    // B connected first (a loaded machine may take longer than the short
    // timeout below to connect, and a timeout while connecting names nobody).
    let warm = acquire(&b, 9, "openclaw/agent/warm.jsonl", 30_000).expect("b connects");
    release(&b, "openclaw/agent/warm.jsonl", warm);
    // B times out and learns who holds it.
    match acquire(&b, 2, key, 300) {
        Err(AcquireError::Busy { pid, hostname }) => {
            assert_eq!(pid, Some(1001));
            assert_eq!(hostname.as_deref(), Some("test-host"));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // B waits; A's release wakes it.
    let rx = acquire_async(&b, 3, key, 60_000);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        rx.try_recv().is_err(),
        "B must not get the lock while A holds it"
    );
    assert!(release(&a, key, ga));
    let gb = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("b acquires");
    assert!(
        gb.token > ga.token,
        "fencing tokens increase: {} then {}",
        ga.token,
        gb.token
    );
    assert!(!check(&a, key, ga), "A's grant is no longer current");
    assert!(check(&b, key, gb));
    // A's late second release does not disturb B.
    release(&a, key, ga);
    assert!(check(&b, key, gb));
    assert!(release(&b, key, gb));
}

#[test]
fn a_dead_holder_wakes_a_waiter_in_the_server_queue() {
    if skip_or_fail("pg dead-holder test") {
        return;
    }
    let c = cluster();
    let a = engine(&c.url(PASSWORD), "t_dead", None);
    let b = engine(&c.url(PASSWORD), "t_dead", None);
    let key = "openclaw/dead.jsonl";
    let _ga = acquire(&a, 1, key, 5_000).expect("a acquires");
    let rx = acquire_async(&b, 2, key, 60_000);
    // B is queued (its waiting slot is in pg_locks) before A dies.
    wait_until("b queued", Duration::from_secs(30), || {
        b.connections().0 >= 3
    });
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(a); // closes A's connections without releasing: no NOTIFY is sent
    let gb = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("b acquires");
    let waited = t.elapsed();
    eprintln!("dead holder -> waiter acquired in {waited:?}");
    assert!(
        waited < super_uncovered_retry(),
        "woken by the server's queue, not by the backstop retry ({waited:?})"
    );
    assert!(release(&b, key, gb));
}

/// A holder dying without a word frees every lock it held. The waiting slot
/// (poolSize 2: one) wakes for the lock it waits on and then moves on to the
/// next awaited lock, whose wait then ends at once too, and so on: the waits
/// beyond the slots end without the once-a-second backstop. (The slot once
/// went back to the lock it had just served, which its own process was about
/// to take, and stayed blocked behind it.)
#[test]
fn a_dead_holder_wakes_every_waiter_beyond_the_slots_without_the_backstop() {
    if skip_or_fail("pg dead-holder slots test") {
        return;
    }
    let c = cluster();
    let a = engine(&c.url(PASSWORD), "t_dead_many", Some(2.0));
    let b = engine(&c.url(PASSWORD), "t_dead_many", Some(2.0));
    let keys: Vec<String> = (0..3)
        .map(|i| format!("openclaw/dead-many/{i}.jsonl"))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        acquire(&a, i as u64, k, 30_000).expect("a acquires");
    }
    let rxs: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let rx = acquire_async(&b, 100 + i as u64, k, 60_000);
            std::thread::sleep(Duration::from_millis(20));
            rx
        })
        .collect();
    wait_until("b queued", Duration::from_secs(30), || {
        b.connections().0 >= 3
    });
    // The waits began about 100 ms before A dies: a backstop retry (every
    // UNCOVERED_RETRY from then) cannot land within the bound below.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(a);
    for (rx, k) in rxs.into_iter().zip(&keys) {
        let g = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("b acquires");
        let waited = t.elapsed();
        eprintln!("dead holder -> {k} acquired in {waited:?}");
        assert!(
            waited < super_uncovered_retry() * 7 / 10,
            "{k}: woken by the slot moving on, not by the backstop ({waited:?})"
        );
        let _ = g;
    }
}

fn super_uncovered_retry() -> Duration {
    session_write_lock::pg::engine::UNCOVERED_RETRY
}

#[test]
fn connections_stay_bounded_whatever_the_number_of_locks() {
    if skip_or_fail("pg connection-bound test") {
        return;
    }
    let c = cluster();
    let a = engine(&c.url(PASSWORD), "t_bound", Some(2.0));
    let b = engine(&c.url(PASSWORD), "t_bound", Some(2.0));
    let mut grants = Vec::new();
    for i in 0..300u64 {
        let key = format!("openclaw/bound/{i}.jsonl");
        grants.push((key.clone(), acquire(&a, i, &key, 10_000).expect("acquire")));
    }
    assert_eq!(a.connections().0, 1, "300 locks on one connection");
    // B waits for 20 of them at once: one holding + at most poolSize waiting.
    let rxs: Vec<_> = (0..20u64)
        .map(|i| acquire_async(&b, 1000 + i, &format!("openclaw/bound/{i}.jsonl"), 60_000))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (_, max_b, _) = b.connections();
    assert!(max_b <= 3, "B used {max_b} connections");
    for (key, g) in grants.drain(..) {
        release(&a, &key, g);
    }
    for rx in rxs {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("b acquires");
    }
    assert!(b.connections().1 <= 3);
}

#[test]
fn cancel_leaves_nothing_behind() {
    if skip_or_fail("pg cancel test") {
        return;
    }
    let c = cluster();
    let a = engine(&c.url(PASSWORD), "t_cancel", None);
    let b = engine(&c.url(PASSWORD), "t_cancel", None);
    let key = "openclaw/cancel.jsonl";
    let ga = acquire(&a, 1, key, 5_000).unwrap();
    let rx = acquire_async(&b, 7, key, 60_000);
    std::thread::sleep(Duration::from_millis(200));
    b.cancel(7);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        Err(AcquireError::Cancelled)
    );
    release(&a, key, ga);
    // Nothing of B's is queued or held: A takes it again at once.
    let ga2 = acquire(&a, 2, key, 10_000).expect("free again");
    release(&a, key, ga2);
}

#[test]
fn concurrent_first_use_creates_the_schema_once() {
    if skip_or_fail("pg schema test") {
        return;
    }
    let c = cluster();
    let engines: Vec<Engine> = (0..6)
        .map(|_| engine(&c.url(PASSWORD), "t_ddl", None))
        .collect();
    let rxs: Vec<_> = engines
        .iter()
        .enumerate()
        .map(|(i, e)| acquire_async(e, i as u64, &format!("openclaw/ddl/{i}"), 30_000))
        .collect();
    for rx in rxs {
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("acquire after concurrent DDL");
    }
}

/// The holder rows live only as long as their locks, so the table is
/// UNLOGGED: the commit of an acquire or a release then waits for no WAL
/// flush on a durable server. A logged table left by schema version 1 is
/// converted with its rows, and a process of version 1 still finds the
/// schema ready (its own marker untouched: no DDL back and forth).
#[test]
fn the_holder_table_is_unlogged_and_a_logged_one_is_converted() {
    if skip_or_fail("pg unlogged table test") {
        return;
    }
    let c = cluster();
    let persistence = |s: &str| {
        c.psql(&format!(
            "SELECT relpersistence FROM pg_class WHERE oid = '{s}.holders'::regclass"
        ))
    };

    let e = engine(&c.url(PASSWORD), "t_unlogged", None);
    let g = acquire(&e, 1, "openclaw/u/s.jsonl", 30_000).expect("acquire");
    assert_eq!(
        persistence("t_unlogged"),
        "u",
        "a fresh holder table is unlogged"
    );
    assert!(check(&e, "openclaw/u/s.jsonl", g));
    assert!(release(&e, "openclaw/u/s.jsonl", g));

    // Version 1's layout: a logged table (with a row) and the sequence.
    c.psql(
        "CREATE SCHEMA t_migrate; CREATE SEQUENCE t_migrate.fencing_token; \
         CREATE TABLE t_migrate.holders (key text PRIMARY KEY, lock_id bigint NOT NULL, \
           fencing_token bigint NOT NULL, pid integer NOT NULL, hostname text NOT NULL, boot_id text, \
           backend_pid integer NOT NULL, acquired_at timestamptz NOT NULL, max_hold_ms bigint); \
         INSERT INTO t_migrate.holders VALUES ('openclaw/old', 1, 1, 1, 'h', NULL, 1, now(), NULL)",
    );
    assert_eq!(persistence("t_migrate"), "p");
    let e2 = engine(&c.url(PASSWORD), "t_migrate", None);
    let g2 = acquire(&e2, 1, "openclaw/m/s.jsonl", 30_000).expect("acquire after conversion");
    assert_eq!(persistence("t_migrate"), "u", "converted to unlogged");
    assert_eq!(
        c.psql("SELECT count(*) FROM t_migrate.holders WHERE key = 'openclaw/old'"),
        "1",
        "rows kept"
    );
    assert!(check(&e2, "openclaw/m/s.jsonl", g2));
    assert!(release(&e2, "openclaw/m/s.jsonl", g2));
    // Version 1's readiness check, verbatim.
    assert_eq!(
        c.psql(
            "SELECT coalesce(obj_description(to_regprocedure('t_migrate.release(bigint,text,bigint)'), 'pg_proc') \
               = 'session-write-lock schema 1', false) AND to_regclass('t_migrate.holders') IS NOT NULL"
        ),
        "t"
    );
}

/// A role that may use the schema but does not own it (a deployment whose
/// gateways log in as another role than the one that created the schema)
/// keeps working when the table is still logged: it cannot replace the
/// functions or alter the table, so it only tries the conversion, and the
/// table stays logged for it.
#[test]
fn a_role_that_does_not_own_a_schema_1_table_still_acquires() {
    if skip_or_fail("pg non-owner test") {
        return;
    }
    let c = cluster();
    // Schema 1's state: made by the owner, then its table logged and unmarked.
    let owner = engine(&c.url(PASSWORD), "t_other_role", None);
    let g = acquire(&owner, 1, "openclaw/o/s.jsonl", 30_000).expect("owner acquires");
    assert!(release(&owner, "openclaw/o/s.jsonl", g));
    drop(owner);
    c.psql(
        "ALTER TABLE t_other_role.holders SET LOGGED; COMMENT ON TABLE t_other_role.holders IS NULL; \
         CREATE ROLE swl_user LOGIN PASSWORD 'user-pw-77'; \
         GRANT USAGE ON SCHEMA t_other_role TO swl_user; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON t_other_role.holders TO swl_user; \
         GRANT USAGE, SELECT ON SEQUENCE t_other_role.fencing_token TO swl_user",
    );
    let url = format!(
        "postgres://swl_user:user-pw-77@127.0.0.1:{}/postgres",
        c.port
    );
    let e = engine(&url, "t_other_role", None);
    let g = acquire(&e, 1, "openclaw/o/s.jsonl", 30_000).expect("a non-owner acquires");
    assert!(check(&e, "openclaw/o/s.jsonl", g));
    assert!(release(&e, "openclaw/o/s.jsonl", g));
    assert_eq!(
        c.psql("SELECT relpersistence FROM pg_class WHERE oid = 't_other_role.holders'::regclass"),
        "p",
        "left logged: only its owner may change it"
    );
}

#[test]
fn bad_password_and_refused_port_are_coded_errors_without_the_password() {
    if skip_or_fail("pg failure test") {
        return;
    }
    let c = cluster();
    let bad = engine(&c.url("wrong-pw-QQQ"), "t_fail", None);
    let t = Instant::now();
    match acquire(&bad, 1, "openclaw/x", 30_000) {
        Err(AcquireError::Failed(e)) => {
            assert_eq!(e.code, "SESSION_WRITE_LOCK_BACKEND_AUTH", "{e}");
            assert!(!e.message.contains("wrong-pw-QQQ"), "{}", e.message);
            assert!(e.message.contains("swl@127.0.0.1"), "{}", e.message);
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "at once, not after the timeout"
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = engine(
        &format!("postgres://swl:pw-ZZZ@127.0.0.1:{port}/postgres"),
        "t_fail",
        None,
    );
    match acquire(&refused, 2, "openclaw/x", 30_000) {
        Err(AcquireError::Failed(e)) => {
            assert_eq!(e.code, "ECONNREFUSED", "{e}");
            assert!(!e.message.contains("pw-ZZZ"));
        }
        other => panic!("expected ECONNREFUSED, got {other:?}"),
    }
}

#[test]
fn server_restart_ends_the_epoch_and_new_acquires_work() {
    if skip_or_fail("pg restart test") {
        return;
    }
    // A cluster of its own: the others keep theirs.
    let c = Cluster::start();
    let a = engine(&c.url(PASSWORD), "t_restart", None);
    let key = "openclaw/restart.jsonl";
    let g = acquire(&a, 1, key, 5_000).unwrap();
    assert_eq!(g.epoch, a.epoch());
    c.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-l"], true);
    wait_until("epoch advances", Duration::from_secs(30), || {
        a.epoch() != g.epoch
    });
    assert!(!check(&a, key, g));
    let g2 = acquire(&a, 2, key, 10_000).expect("acquire after restart");
    assert!(g2.token > g.token);
    assert!(release(&a, key, g2));
}
