//! The napi layer of the PostgreSQL backend (`crate::pg`): converts values and
//! nothing else. `lib/backend.js` wraps these exports; they are internal.
//!
//! One engine per process (every Node environment and every copy of the
//! package shares it, as they share the file-lock registry). Asynchronous
//! answers settle a promise from the engine's own thread: no waiter ever
//! occupies a thread of libuv's pool. Failures come back as `{ error: { code,
//! message } }` values that the JS side turns into coded `Error`s.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{Env, JsDeferred};
use napi_derive::napi;

use crate::identity;
use crate::pg::config::RawOptions;
use crate::pg::engine::AcquireError;
use crate::pg::{BackendConfig, Engine, Grant, HolderInfo, PgError};

static ENGINE: Mutex<Option<Arc<Engine>>> = Mutex::new(None);

fn engine() -> Option<Arc<Engine>> {
    ENGINE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[napi(object)]
pub struct PgErrorValue {
    pub code: String,
    pub message: String,
    pub sqlstate: Option<String>,
}

impl From<PgError> for PgErrorValue {
    fn from(e: PgError) -> Self {
        PgErrorValue {
            code: e.code.to_string(),
            message: e.message,
            sqlstate: e.sqlstate,
        }
    }
}

fn not_configured() -> PgErrorValue {
    PgErrorValue {
        code: crate::pg::error::CONFIG.into(),
        message: "PostgreSQL backend: not configured".into(),
        sqlstate: None,
    }
}

#[napi(object)]
pub struct PgConfigInput {
    pub connection_string: String,
    pub keyspace: Option<String>,
    pub sessions_root: Option<String>,
    pub pool_size: Option<f64>,
    pub schema: Option<String>,
    /// `OPENCLAW_STATE_DIR` and the home directory, for the default root.
    pub state_dir: Option<String>,
    pub home: Option<String>,
}

#[napi(object)]
pub struct PgConfigured {
    pub server: Option<String>,
    pub keyspace: Option<String>,
    pub sessions_root: Option<String>,
    pub pool_size: Option<u32>,
    pub schema: Option<String>,
    pub error: Option<PgErrorValue>,
}

/// Validate and install the configuration (replacing an unused engine).
#[napi(catch_unwind)]
pub fn pg_configure(input: PgConfigInput) -> PgConfigured {
    let raw = RawOptions {
        connection_string: &input.connection_string,
        keyspace: input.keyspace.as_deref(),
        sessions_root: input.sessions_root.as_deref(),
        pool_size: input.pool_size,
        schema: input.schema.as_deref(),
    };
    let cfg = match BackendConfig::parse(&raw, input.state_dir.as_deref(), input.home.as_deref()) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let info = PgConfigured {
        server: Some(cfg.server.clone()),
        keyspace: Some(cfg.keyspace.clone()),
        sessions_root: Some(cfg.sessions_root.to_string_lossy().into_owned()),
        pool_size: Some(cfg.pool_size as u32),
        schema: Some(cfg.schema.clone()),
        error: None,
    };
    match Engine::start(cfg) {
        Ok(e) => {
            *ENGINE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(e));
            info
        }
        Err(e) => failed(e),
    }
}

fn failed(e: PgError) -> PgConfigured {
    PgConfigured {
        server: None,
        keyspace: None,
        sessions_root: None,
        pool_size: None,
        schema: None,
        error: Some(e.into()),
    }
}

/// Drop the engine (its connections close; the server frees their locks).
#[napi(catch_unwind)]
pub fn pg_unconfigure() {
    ENGINE.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// The database key of a normalized session path; null when not configured.
#[napi(catch_unwind)]
pub fn pg_key(session_path: String) -> Option<String> {
    engine().map(|e| e.key_of(Path::new(&session_path)))
}

#[napi(object)]
pub struct PgAcquireResult {
    /// Decimal fencing token (a 64-bit sequence value).
    pub token: Option<String>,
    pub epoch: Option<f64>,
    /// The timeout passed: the holder as the database names it.
    pub busy: Option<bool>,
    pub pid: Option<i32>,
    pub hostname: Option<String>,
    pub cancelled: Option<bool>,
    pub error: Option<PgErrorValue>,
}

impl PgAcquireResult {
    fn empty() -> Self {
        PgAcquireResult {
            token: None,
            epoch: None,
            busy: None,
            pid: None,
            hostname: None,
            cancelled: None,
            error: None,
        }
    }
}

type Settle<T> = Box<dyn FnOnce(Env) -> Result<T> + Send>;

fn deferred<T: ToNapiValue + Send + 'static>(
    env: &Env,
) -> Result<(JsDeferred<T, Settle<T>>, Object<'_>)> {
    env.create_deferred::<T, Settle<T>>()
}

fn resolve<T: ToNapiValue + Send + 'static>(d: JsDeferred<T, Settle<T>>, v: T) {
    d.resolve(Box::new(move |_| Ok(v)));
}

/// Acquire `key` in the database. `timeout_ms` < 0: no timeout; `max_hold_ms`
/// < 0: none. Resolves with the grant, `busy`, `cancelled` or `error`.
#[napi(catch_unwind)]
pub fn pg_acquire<'a>(
    env: &'a Env,
    req: f64,
    key: String,
    max_hold_ms: f64,
    timeout_ms: f64,
) -> Result<Object<'a>> {
    let (d, promise) = deferred::<PgAcquireResult>(env)?;
    let Some(engine) = engine() else {
        let mut r = PgAcquireResult::empty();
        r.error = Some(not_configured());
        resolve(d, r);
        return Ok(promise);
    };
    let me = identity::self_identity();
    let holder = HolderInfo {
        pid: me.pid as i32,
        hostname: me.hostname.clone(),
        boot_id: me.boot_id.clone(),
        max_hold_ms: (max_hold_ms >= 0.0).then_some(max_hold_ms as i64),
    };
    let timeout = (timeout_ms >= 0.0 && timeout_ms.is_finite())
        .then(|| Duration::from_millis(timeout_ms as u64));
    engine.acquire(
        req as u64,
        key,
        holder,
        timeout,
        Box::new(move |r| {
            let mut out = PgAcquireResult::empty();
            match r {
                Ok(g) => {
                    out.token = Some(g.token.to_string());
                    out.epoch = Some(g.epoch as f64);
                }
                Err(AcquireError::Busy { pid, hostname }) => {
                    out.busy = Some(true);
                    out.pid = pid;
                    out.hostname = hostname;
                }
                Err(AcquireError::Cancelled) => out.cancelled = Some(true),
                Err(AcquireError::Failed(e)) => out.error = Some(e.into()),
            }
            resolve(d, out);
        }),
    );
    Ok(promise)
}

/// Cancel a pending acquire.
#[napi(catch_unwind)]
pub fn pg_cancel(req: f64) {
    if let Some(e) = engine() {
        e.cancel(req as u64);
    }
}

fn grant(token: &str, epoch: f64) -> Option<Grant> {
    Some(Grant {
        token: token.parse().ok()?,
        epoch: epoch as u64,
    })
}

/// Release a grant (no answer awaited; the server frees it anyway when the
/// holding connection ends).
#[napi(catch_unwind)]
pub fn pg_release(key: String, token: String, epoch: f64) {
    if let (Some(e), Some(g)) = (engine(), grant(&token, epoch)) {
        e.release(key, g, None);
    }
}

#[napi(object)]
pub struct PgCheckResult {
    pub held: bool,
    pub error: Option<PgErrorValue>,
}

/// Whether the grant is still held, asking the server.
#[napi(catch_unwind)]
pub fn pg_check<'a>(env: &'a Env, key: String, token: String, epoch: f64) -> Result<Object<'a>> {
    let (d, promise) = deferred::<PgCheckResult>(env)?;
    match (engine(), grant(&token, epoch)) {
        (Some(e), Some(g)) => e.check(
            key,
            g,
            Box::new(move |r| {
                let out = match r {
                    Ok(held) => PgCheckResult { held, error: None },
                    Err(e) => PgCheckResult {
                        held: false,
                        error: Some(e.into()),
                    },
                };
                resolve(d, out);
            }),
        ),
        _ => resolve(
            d,
            PgCheckResult {
                held: false,
                error: None,
            },
        ),
    }
    Ok(promise)
}

#[napi(object)]
pub struct PgStats {
    pub epoch: f64,
    pub connections: u32,
    pub max_connections: u32,
    pub holds: u32,
}

/// The holding connection's epoch and connection counts (null when not configured).
#[napi(catch_unwind)]
pub fn pg_stats() -> Option<PgStats> {
    engine().map(|e| {
        let (connections, max_connections, holds) = e.connections();
        PgStats {
            epoch: e.epoch() as f64,
            connections: connections as u32,
            max_connections: max_connections as u32,
            holds: holds as u32,
        }
    })
}

/// The current epoch alone (cheap: one atomic load), 0 when not configured.
#[napi(catch_unwind)]
pub fn pg_epoch() -> f64 {
    engine().map(|e| e.epoch() as f64).unwrap_or(0.0)
}

#[napi(object)]
pub struct PgInspectRow {
    pub key: String,
    pub fencing_token: String,
    pub pid: i32,
    pub hostname: String,
    pub boot_id: Option<String>,
    pub acquired_at: String,
    pub max_hold_ms: Option<f64>,
    pub backend_pid: i32,
    pub granted: bool,
    pub client_addr: Option<String>,
}

#[napi(object)]
pub struct PgInspectResult {
    pub rows: Vec<PgInspectRow>,
    pub error: Option<PgErrorValue>,
}

/// Holders and queued sessions from the database.
#[napi(catch_unwind)]
pub fn pg_inspect(env: &Env) -> Result<Object<'_>> {
    let (d, promise) = deferred::<PgInspectResult>(env)?;
    let Some(e) = engine() else {
        resolve(
            d,
            PgInspectResult {
                rows: vec![],
                error: Some(not_configured()),
            },
        );
        return Ok(promise);
    };
    e.inspect(Box::new(move |r| {
        let out = match r {
            Ok(rows) => PgInspectResult {
                rows: rows
                    .into_iter()
                    .map(|r| PgInspectRow {
                        key: r.key,
                        fencing_token: r.fencing_token.to_string(),
                        pid: r.pid,
                        hostname: r.hostname,
                        boot_id: r.boot_id,
                        acquired_at: r.acquired_at,
                        max_hold_ms: r.max_hold_ms.map(|m| m as f64),
                        backend_pid: r.backend_pid,
                        granted: r.granted,
                        client_addr: r.client_addr,
                    })
                    .collect(),
                error: None,
            },
            Err(e) => PgInspectResult {
                rows: vec![],
                error: Some(e.into()),
            },
        };
        resolve(d, out);
    }));
    Ok(promise)
}

/// Version of the internal interface between `lib/backend.js` and this
/// addon's exports (`loader.js` refuses an addon whose version differs, for
/// example a file left from another version of the package). 1: the backend
/// as its own addon, `session-write-lock-postgres.<platform>.node`.
#[napi(catch_unwind)]
pub fn pg_abi_version() -> u32 {
    1
}
