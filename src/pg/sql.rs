//! The schema and statements, rendered for a configured schema name (a
//! validated identifier, see `config`).
//!
//! Creation is idempotent and safe when many processes start at once: the
//! whole DDL runs in one transaction that first takes a transaction-level
//! advisory lock, so creators run one after another and each sees what the
//! previous one made.
//!
//! `acquire` takes the advisory lock without waiting and, only if it got it,
//! takes the next fencing token and writes the holder row, in one round trip.
//! `release` deletes the holder's own row (key and token), unlocks, and sends
//! a NOTIFY that wakes every waiting host; the NOTIFY is delivered at commit,
//! after the unlock.
//!
//! The holder table is UNLOGGED: its rows describe locks that live only as
//! long as their connections, so a server crash (which truncates unlogged
//! tables) loses nothing a lock still needs. Writing it makes no WAL, so the
//! commit of an acquire or a release waits for no WAL flush on a durable
//! server (`fsync` and `synchronous_commit` on, PostgreSQL's defaults: about
//! 2 ms each on the test VM's disk with a logged table, 0.06-0.2 ms without).
//! The sequence stays logged: `nextval` logs 32 values ahead and the
//! transaction that logs them commits synchronously, so no token is reissued
//! after a crash.

/// Marks the functions of schema version 1 (kept as they are: a process of
/// that version reads this marker and then skips its DDL).
pub const VERSION: &str = "session-write-lock schema 1";
/// Marks schema version 2 (the holder table unlogged), on the table.
pub const TABLE_VERSION: &str = "session-write-lock schema 2";

/// Whether the schema is in place: (functions and table of version 1, the
/// table made unlogged). The DDL runs only without the first (one round trip
/// instead of a serialized transaction per process start), [`upgrade`] only
/// without the second: a role that may use the schema but does not own it
/// (its functions cannot be replaced by that role) keeps working.
pub fn ready(schema: &str) -> String {
    format!(
        "SELECT coalesce(obj_description(to_regprocedure('{schema}.release(bigint,text,bigint)'), 'pg_proc') = '{VERSION}', false) \
           AND to_regclass('{schema}.holders') IS NOT NULL, \
         coalesce(obj_description(to_regclass('{schema}.holders'), 'pg_class') = '{TABLE_VERSION}', false)"
    )
}

/// A logged holder table (schema 1) made unlogged, rows kept, and marked.
/// Never fails for want of rights (another owner, a publication): the table
/// then stays logged (slower commits on a durable server, nothing else) and
/// the next process start tries again.
fn unlog(s: &str) -> String {
    format!(
        r#"DO $do$
BEGIN
  IF (SELECT relpersistence FROM pg_class WHERE oid = '{s}.holders'::regclass) = 'p' THEN
    ALTER TABLE {s}.holders SET UNLOGGED;
  END IF;
  COMMENT ON TABLE {s}.holders IS '{TABLE_VERSION}';
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'session-write-lock: {s}.holders stays logged: %', SQLERRM;
END
$do$;"#
    )
}

/// Schema 1 in place, its table not yet unlogged: only that, serialized like the DDL.
pub fn upgrade(schema: &str) -> String {
    format!(
        "BEGIN;\nSELECT pg_advisory_xact_lock({DDL_LOCK});\n{}\nCOMMIT;",
        unlog(schema)
    )
}

/// Transaction-level advisory lock id serializing the DDL of every schema.
pub const DDL_LOCK: i64 = 0x5357_4c5f_4444_4c31; // "SWL_DDL1"

pub fn ddl(schema: &str) -> String {
    let s = schema;
    let ch = format!("{s}_released");
    let unlog = unlog(s);
    format!(
        r#"BEGIN;
SELECT pg_advisory_xact_lock({DDL_LOCK});
CREATE SCHEMA IF NOT EXISTS {s};
CREATE SEQUENCE IF NOT EXISTS {s}.fencing_token;
CREATE UNLOGGED TABLE IF NOT EXISTS {s}.holders (
  key text PRIMARY KEY,
  lock_id bigint NOT NULL,
  fencing_token bigint NOT NULL,
  pid integer NOT NULL,
  hostname text NOT NULL,
  boot_id text,
  backend_pid integer NOT NULL,
  acquired_at timestamptz NOT NULL,
  max_hold_ms bigint
);
{unlog}
CREATE OR REPLACE FUNCTION {s}.acquire(p_lock bigint, p_key text, p_pid integer, p_host text, p_boot text, p_max_hold bigint)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE tok bigint;
BEGIN
  IF NOT pg_try_advisory_lock(p_lock) THEN
    RETURN NULL;
  END IF;
  BEGIN
    tok := nextval('{s}.fencing_token');
    INSERT INTO {s}.holders AS h (key, lock_id, fencing_token, pid, hostname, boot_id, backend_pid, acquired_at, max_hold_ms)
    VALUES (p_key, p_lock, tok, p_pid, p_host, p_boot, pg_backend_pid(), clock_timestamp(), p_max_hold)
    ON CONFLICT (key) DO UPDATE SET lock_id = EXCLUDED.lock_id, fencing_token = EXCLUDED.fencing_token,
      pid = EXCLUDED.pid, hostname = EXCLUDED.hostname, boot_id = EXCLUDED.boot_id,
      backend_pid = EXCLUDED.backend_pid, acquired_at = EXCLUDED.acquired_at, max_hold_ms = EXCLUDED.max_hold_ms;
  EXCEPTION WHEN OTHERS THEN
    PERFORM pg_advisory_unlock(p_lock);
    RAISE;
  END;
  RETURN tok;
END
$fn$;
CREATE OR REPLACE FUNCTION {s}.release(p_lock bigint, p_key text, p_token bigint)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE ok boolean;
BEGIN
  DELETE FROM {s}.holders WHERE key = p_key AND fencing_token = p_token;
  ok := pg_advisory_unlock(p_lock);
  PERFORM pg_notify('{ch}', p_lock::text);
  RETURN ok;
END
$fn$;
COMMENT ON FUNCTION {s}.release(bigint, text, bigint) IS '{VERSION}';
COMMIT;"#
    )
}

/// `$1` lock id, `$2` key, `$3` pid, `$4` hostname, `$5` boot id, `$6` maxHoldMs (null = none).
pub fn acquire(schema: &str) -> String {
    format!("SELECT {schema}.acquire($1::bigint, $2::text, $3::integer, $4::text, $5::text, $6::bigint)")
}

/// `$1` lock id, `$2` key, `$3` token.
pub fn release(schema: &str) -> String {
    format!("SELECT {schema}.release($1::bigint, $2::text, $3::bigint)")
}

/// Whether this connection holds the lock of classid `$1`, objid `$2` (see
/// [`lock_parts`]) and the row for key `$3` still carries token `$4`.
pub fn check(schema: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
           AND objsubid = 1 AND classid::bigint = $1::bigint AND objid::bigint = $2::bigint) \
         AND EXISTS (SELECT 1 FROM {schema}.holders WHERE key = $3::text AND fencing_token = $4::bigint)"
    )
}

/// The holder row of key `$1` (for timeout messages).
pub fn holder_of(schema: &str) -> String {
    format!("SELECT pid, hostname FROM {schema}.holders WHERE key = $1::text")
}

/// Wait in the server's lock queue for lock `$1` to be free, then let it go
/// and tell every host (channel `$2`).
pub const BLOCK: &str = "SELECT pg_advisory_lock($1::bigint), pg_advisory_unlock($1::bigint), pg_notify($2::text, $1::text)";

/// Holders (rows whose lock is granted to their backend) and waiters (any
/// session queued on one of those locks), for `inspect`.
pub fn inspect(schema: &str) -> String {
    format!(
        "SELECT h.key, h.lock_id, h.fencing_token, h.pid, h.hostname, h.boot_id, \
                to_char(h.acquired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS acquired_at, \
                h.max_hold_ms, l.pid AS backend_pid, l.granted, host(a.client_addr) AS client_addr \
         FROM {schema}.holders h \
         JOIN pg_locks l ON l.locktype = 'advisory' AND l.objsubid = 1 \
           AND l.classid::bigint = ((h.lock_id >> 32) & 4294967295) AND l.objid::bigint = (h.lock_id & 4294967295) \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.granted = false OR l.pid = h.backend_pid \
         ORDER BY h.key, l.granted DESC, l.pid"
    )
}

/// Split a lock id into pg_locks' (classid, objid).
pub fn lock_parts(lock_id: i64) -> (i64, i64) {
    let u = lock_id as u64;
    ((u >> 32) as i64, (u & 0xffff_ffff) as i64)
}
