//! The napi layer: converts between JS values and the lock engine. Every
//! export is `catch_unwind`: a Rust panic becomes a JS `Error`, never an abort.
//! These exports are internal; `index.js` wraps them into the public API.

#![cfg_attr(test, allow(dead_code))]

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue};
use napi_derive::napi;

use crate::identity;
use crate::lockfile;
use crate::oserror::OsError;
use crate::paths;
use crate::registry::{self, AcquireOutcome, AcquireRequest, Dropped, Grant, HolderInfo};

thread_local! {
    static THREAD_ID: u64 = crate::sys::thread_id();
}

fn thread() -> u64 {
    THREAD_ID.with(|t| *t)
}

#[napi(object)]
pub struct NativeError {
    pub code: String,
    pub errno: i32,
    pub syscall: String,
    pub path: String,
    pub message: String,
}

impl From<OsError> for NativeError {
    fn from(e: OsError) -> Self {
        NativeError {
            code: e.code.to_string(),
            errno: e.errno,
            syscall: e.syscall.to_string(),
            path: e.path,
            message: e.message,
        }
    }
}

/// A thread-safe function that asks a context to drain its outbox. Unref'd:
/// it never keeps the event loop alive.
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: napi thread-safe functions are made to be called from any thread;
// the handle is only released from the cleanup hook of its own env.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

unsafe extern "C" fn call_wake(
    env: sys::napi_env,
    js_cb: sys::napi_value,
    _ctx: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() || js_cb.is_null() {
        return;
    }
    let mut undefined = ptr::null_mut();
    // SAFETY: called by Node on the env's thread with a live env and callback.
    unsafe {
        sys::napi_get_undefined(env, &mut undefined);
        let mut result = ptr::null_mut();
        let status = sys::napi_call_function(env, undefined, js_cb, 0, ptr::null(), &mut result);
        if status == sys::Status::napi_pending_exception {
            // The JS side catches its own errors; never leave one pending.
            let mut exc = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut exc);
        }
    }
}

/// The wake-up of one context: empty until the context first waits (a
/// thread-safe function is an async resource that tools such as jest's
/// `--detectOpenHandles` report, and nothing should exist before it is needed).
type WakeSlot = Arc<std::sync::Mutex<Option<Tsfn>>>;

fn wake_slots() -> &'static std::sync::Mutex<std::collections::HashMap<u64, WakeSlot>> {
    static SLOTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u64, WakeSlot>>> =
        std::sync::OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

fn lock_slot<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Create the unref'd thread-safe function that calls `wake` on this env's thread.
fn create_wake_tsfn(env: &Env, wake: &Function<'_, (), ()>) -> Result<Tsfn> {
    let raw_env = env.raw();
    let mut tsfn: sys::napi_threadsafe_function = ptr::null_mut();
    let mut name = ptr::null_mut();
    let label = "session-write-lock-wake";
    // SAFETY: standard napi calls on the live env of this call.
    unsafe {
        check(sys::napi_create_string_utf8(
            raw_env,
            label.as_ptr().cast(),
            label.len() as isize,
            &mut name,
        ))?;
        check(sys::napi_create_threadsafe_function(
            raw_env,
            wake.value().value,
            ptr::null_mut(),
            name,
            0,
            1,
            ptr::null_mut(),
            None,
            ptr::null_mut(),
            Some(call_wake),
            &mut tsfn,
        ))?;
        if let Err(e) = check(sys::napi_unref_threadsafe_function(raw_env, tsfn)) {
            sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::abort);
            return Err(e);
        }
    }
    Ok(Tsfn(tsfn))
}

/// Register this module instance; returns the context id. When the env is torn
/// down (worker exit), the context's waiters are cancelled and its locks
/// released. The wake-up (see `arm_context`) is created only when `wake` is
/// given here (older callers) or on the context's first wait: an acquire that
/// never waits creates no thread-safe function, no thread and no descriptor.
#[napi(catch_unwind)]
pub fn register_context(env: Env, wake: Option<Function<'_, (), ()>>) -> Result<f64> {
    let slot: WakeSlot = Arc::new(std::sync::Mutex::new(None));
    let for_waker = slot.clone();
    let waker: registry::Waker = Arc::new(move || {
        // Called under the registry's lock. With no wake-up armed yet the
        // delivery stays in the outbox: `arm_context`'s caller drains it.
        if let Some(t) = lock_slot(&for_waker).as_ref() {
            // SAFETY: the context is unregistered (under the registry lock)
            // before the handle is released, so the handle is live here.
            unsafe {
                sys::napi_call_threadsafe_function(
                    t.0,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                );
            }
        }
    });
    let ctx = registry::global().register_ctx(Some(waker));
    lock_slot(wake_slots()).insert(ctx, slot.clone());
    env.add_env_cleanup_hook((ctx, slot), |(ctx, slot)| {
        registry::global().unregister_ctx(ctx);
        lock_slot(wake_slots()).remove(&ctx);
        // Runs on the env's own thread: its markers become recoverable.
        crate::marker::abandon_thread(thread());
        if let Some(t) = lock_slot(&slot).take() {
            // SAFETY: the context can no longer be woken; release our reference.
            unsafe {
                sys::napi_release_threadsafe_function(
                    t.0,
                    sys::ThreadsafeFunctionReleaseMode::abort,
                );
            }
        }
    })?;
    if let Some(wake) = wake {
        arm(&env, ctx, &wake)?;
    }
    Ok(ctx as f64)
}

fn arm(env: &Env, ctx: u64, wake: &Function<'_, (), ()>) -> Result<bool> {
    let Some(slot) = lock_slot(wake_slots()).get(&ctx).cloned() else {
        return Ok(false);
    };
    let mut s = lock_slot(&slot);
    if s.is_none() {
        *s = Some(create_wake_tsfn(env, wake)?);
    }
    Ok(true)
}

/// Give context `ctx` its wake-up (`wake` is called, asynchronously on this
/// thread, whenever grants for it arrive from another thread). Idempotent.
/// Deliveries that arrived before it was armed are not signalled: the caller
/// drains the context's outbox once right after this returns. Returns false
/// when the context is unknown.
#[napi(catch_unwind)]
pub fn arm_context(env: Env, ctx: f64, wake: Function<'_, (), ()>) -> Result<bool> {
    arm(&env, ctx as u64, &wake)
}

fn check(status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::from_reason(format!("napi call failed ({status})")))
    }
}

/// The Node environment id of the calling thread.
#[napi(catch_unwind)]
pub fn thread_id() -> f64 {
    thread() as f64
}

#[napi(object)]
pub struct AcquireResult {
    /// 0 granted, 1 pending, 2 error.
    pub status: u32,
    pub id: f64,
    pub lock_path: String,
    pub key: String,
    pub token: Option<String>,
    pub acquired_at: Option<f64>,
    pub error: Option<NativeError>,
}

fn none_or_ms(v: f64) -> Option<u64> {
    if v.is_finite() && v >= 0.0 {
        Some(v as u64)
    } else {
        None
    }
}

/// Acquire the lock of the session at `resolved` (already `path.resolve`d).
#[napi(catch_unwind)]
pub fn acquire(
    ctx: f64,
    resolved: String,
    owner: Option<String>,
    allow_reentrant: bool,
    max_hold_ms: f64,
    stale_ms: f64,
) -> AcquireResult {
    let err = |e: OsError, key: String, lock_path: String| AcquireResult {
        status: 2,
        id: 0.0,
        lock_path,
        key,
        token: None,
        acquired_at: None,
        error: Some(e.into()),
    };
    let mut retried = false;
    let (p, outcome) = loop {
        let p = match paths::normalize(&resolved) {
            Ok(p) => p,
            Err(e) => {
                let lp = format!("{resolved}.lock");
                return err(e, resolved, lp);
            }
        };
        let req = AcquireRequest {
            key: p.key.clone(),
            lock_path: p.lock_path.clone(),
            ctx: ctx as u64,
            thread: thread(),
            owner: owner.clone(),
            allow_reentrant,
            max_hold_ms: none_or_ms(max_hold_ms),
            stale_ms: none_or_ms(stale_ms).unwrap_or(u64::MAX),
        };
        match registry::global().acquire(req) {
            // The cached real directory may have been renamed away: resolve
            // it afresh once (see paths.rs).
            Err(e) if e.code == "ENOENT" && !retried => {
                retried = true;
                paths::forget(&resolved);
            }
            outcome => break (p, outcome),
        }
    };
    match outcome {
        Ok(AcquireOutcome::Granted(g)) => AcquireResult {
            status: 0,
            id: g.lease_id as f64,
            lock_path: p.lock_path,
            key: p.key,
            token: Some(g.token.to_string()),
            acquired_at: Some(g.acquired_at_ms as f64),
            error: None,
        },
        Ok(AcquireOutcome::Pending(r)) => AcquireResult {
            status: 1,
            id: r as f64,
            lock_path: p.lock_path,
            key: p.key,
            token: None,
            acquired_at: None,
            error: None,
        },
        Err(e) => err(e, p.key, p.lock_path),
    }
}

#[napi(object)]
pub struct NormalizedPath {
    pub key: String,
    pub lock_path: String,
    pub error: Option<NativeError>,
}

/// Normalize a resolved session path (creating its directory).
#[napi(catch_unwind)]
pub fn normalize(resolved: String) -> NormalizedPath {
    match paths::normalize(&resolved) {
        Ok(p) => NormalizedPath {
            key: p.key,
            lock_path: p.lock_path,
            error: None,
        },
        Err(e) => NormalizedPath {
            key: resolved.clone(),
            lock_path: format!("{resolved}.lock"),
            error: Some(e.into()),
        },
    }
}

/// The key a resolved session path normalizes to, creating nothing.
#[napi(catch_unwind)]
pub fn existing_key(resolved: String) -> String {
    paths::existing_key(&resolved)
}

/// Cancel a pending request; `false` if it was already granted or failed.
#[napi(catch_unwind)]
pub fn cancel(request_id: f64) -> bool {
    registry::global().cancel(request_id as u64)
}

#[napi(object)]
pub struct NativeDelivery {
    pub request_id: f64,
    pub lease_id: Option<f64>,
    pub lock_path: Option<String>,
    pub token: Option<String>,
    pub acquired_at: Option<f64>,
    pub error: Option<NativeError>,
}

fn grant_fields(g: Grant) -> (Option<f64>, Option<String>, Option<String>, Option<f64>) {
    (
        Some(g.lease_id as f64),
        Some(g.lock_path.to_string()),
        Some(g.token.to_string()),
        Some(g.acquired_at_ms as f64),
    )
}

/// Take the grants and failures delivered to context `ctx`.
#[napi(catch_unwind)]
pub fn take_deliveries(ctx: f64) -> Vec<NativeDelivery> {
    registry::global()
        .take_deliveries(ctx as u64)
        .into_iter()
        .map(|d| match d.result {
            Ok(g) => {
                let (lease_id, lock_path, token, acquired_at) = grant_fields(g);
                NativeDelivery {
                    request_id: d.request_id as f64,
                    lease_id,
                    lock_path,
                    token,
                    acquired_at,
                    error: None,
                }
            }
            Err(e) => NativeDelivery {
                request_id: d.request_id as f64,
                lease_id: None,
                lock_path: None,
                token: None,
                acquired_at: None,
                error: Some(e.into()),
            },
        })
        .collect()
}

/// Release one lease. Bit 0: it dropped a hold; bit 1: deliveries wait in
/// this context's outbox (the caller should drain it).
#[napi(catch_unwind)]
pub fn release_lease(ctx: f64, lease_id: f64) -> u32 {
    let (dropped, pending) = registry::global().release_lease_and_peek(ctx as u64, lease_id as u64);
    u32::from(dropped) | (u32::from(pending) << 1)
}

#[napi(object)]
pub struct NativeDropped {
    pub lock_path: String,
    pub lease_ids: Vec<f64>,
    pub held_ms: f64,
    pub max_hold_ms: Option<f64>,
}

impl From<Dropped> for NativeDropped {
    fn from(d: Dropped) -> Self {
        NativeDropped {
            lock_path: d.lock_path.to_string(),
            lease_ids: d.lease_ids.into_iter().map(|l| l as f64).collect(),
            held_ms: d.held_ms as f64,
            max_hold_ms: d.max_hold_ms.map(|m| m as f64),
        }
    }
}

/// Drop the calling thread's hold on the session at `key` (every level).
#[napi(catch_unwind)]
pub fn release_key(ctx: f64, key: String) -> Option<NativeDropped> {
    registry::global()
        .release_key(ctx as u64, thread(), &key)
        .map(Into::into)
}

/// Drop every hold of the calling thread.
#[napi(catch_unwind)]
pub fn release_thread(ctx: f64) -> Vec<NativeDropped> {
    registry::global()
        .release_thread(ctx as u64, thread())
        .into_iter()
        .map(Into::into)
        .collect()
}

#[napi(object)]
pub struct ExpireResult {
    pub dropped: Vec<NativeDropped>,
    pub next_deadline: Option<f64>,
}

/// Force-release the calling thread's holds past their max hold at `now_ms`.
#[napi(catch_unwind)]
pub fn expire(ctx: f64, now_ms: f64) -> ExpireResult {
    let (dropped, next) = registry::global().expire(ctx as u64, thread(), now_ms as i64);
    ExpireResult {
        dropped: dropped.into_iter().map(Into::into).collect(),
        next_deadline: next.map(|n| n as f64),
    }
}

#[napi(catch_unwind)]
pub fn lease_held(lease_id: f64) -> bool {
    registry::global().lease_held(lease_id as u64)
}

/// `null` when the lease is held and its lock path still names its file
/// (one `lstat`), else why not.
#[napi(catch_unwind)]
pub fn lease_owned(lease_id: f64) -> Option<String> {
    registry::global()
        .lease_owned(lease_id as u64)
        .err()
        .map(str::to_string)
}

#[napi(object)]
pub struct LostLease {
    pub lease_id: f64,
    pub lock_path: String,
}

#[napi(object)]
pub struct RefreshResult {
    /// Holds of this thread, refreshed or not.
    pub holds: u32,
    pub refreshed: u32,
    pub lost: Vec<LostLease>,
    pub errors: Vec<NativeError>,
}

/// Rewrite `createdAt` (to `now_ms`) in the payload of every hold of this
/// thread written `older_than_ms` or more ago; report leases whose file was
/// deleted or replaced.
#[napi(catch_unwind)]
pub fn refresh_held(now_ms: f64, older_than_ms: f64) -> RefreshResult {
    let r = registry::global().refresh(thread(), now_ms as i64, older_than_ms as i64);
    RefreshResult {
        holds: r.holds as u32,
        refreshed: r.refreshed as u32,
        lost: r
            .lost
            .into_iter()
            .map(|(id, p)| LostLease {
                lease_id: id as f64,
                lock_path: p.to_string(),
            })
            .collect(),
        errors: r.errors.into_iter().map(Into::into).collect(),
    }
}

#[napi(object)]
pub struct CreateCounts {
    pub tmpfile: f64,
    pub temp_link: f64,
    pub exclusive: f64,
    pub fallbacks: f64,
}

/// How this process's lock-file creates went (tests, diagnostics).
#[napi(catch_unwind)]
pub fn create_counts() -> CreateCounts {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &lockfile::CREATE_COUNTS;
    CreateCounts {
        tmpfile: c[0].load(Relaxed) as f64,
        temp_link: c[1].load(Relaxed) as f64,
        exclusive: c[2].load(Relaxed) as f64,
        fallbacks: c[3].load(Relaxed) as f64,
    }
}

/// `null` when the lease is current on disk, else why not.
#[napi(catch_unwind)]
pub fn lease_current(lease_id: f64) -> Option<String> {
    registry::global()
        .lease_current(lease_id as u64)
        .err()
        .map(str::to_string)
}

#[napi(object)]
pub struct NativeHolder {
    pub lock_path: String,
    pub acquired_at: f64,
    pub max_hold_ms: Option<f64>,
    pub reentrant_count: u32,
    pub owner: Option<String>,
    pub thread_id: f64,
    pub fencing_token: String,
}

impl From<HolderInfo> for NativeHolder {
    fn from(h: HolderInfo) -> Self {
        NativeHolder {
            lock_path: h.lock_path,
            acquired_at: h.acquired_at_ms as f64,
            max_hold_ms: h.max_hold_ms.map(|m| m as f64),
            reentrant_count: h.reentrant_count,
            owner: h.owner,
            thread_id: h.thread as f64,
            fencing_token: h.token,
        }
    }
}

#[napi(catch_unwind)]
pub fn holder_of(key: String) -> Option<NativeHolder> {
    registry::global().holder_of(&key).map(Into::into)
}

#[napi(catch_unwind)]
pub fn list_held() -> Vec<NativeHolder> {
    registry::global()
        .list()
        .into_iter()
        .map(Into::into)
        .collect()
}

#[napi(object)]
pub struct PeekedHolder {
    pub pid: Option<u32>,
    pub created_at: Option<String>,
}

/// What the lock file at `lock_path` says about its holder (bounded read, no
/// lock taken, nothing created); `null` when there is no regular file.
#[napi(catch_unwind)]
pub fn peek_holder(lock_path: String) -> Option<PeekedHolder> {
    lockfile::peek(std::path::Path::new(&lock_path)).map(|p| PeekedHolder {
        pid: p.pid,
        created_at: p.created_at,
    })
}

/// What the JS side gets from [`inspect_lock_file`].
#[napi(object)]
pub struct LockFileReport {
    pub lock_path: String,
    pub pid: Option<u32>,
    pub pid_alive: bool,
    pub created_at: Option<String>,
    pub age_ms: Option<f64>,
    pub stale: bool,
    pub stale_reasons: Vec<String>,
    pub removed: bool,
    pub held: bool,
    /// Milliseconds since the epoch when the current hold began (the file's
    /// mtime), for a `"lock": "os"` file whose OS lock is held; else absent.
    pub held_since_ms: Option<f64>,
    /// "os" or "legacy".
    pub kind: String,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub owner_checkable: bool,
    pub error: Option<NativeError>,
}

fn ms_or_max(v: f64) -> u64 {
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        u64::MAX
    }
}

/// Inspect one lock file (see [`crate::inspect::inspect_with`]); remove it when stale and
/// `remove`, under its OS lock and only if the path still names the inode
/// inspected. Never follows symlinks; a non-regular file reports an error.
#[napi(catch_unwind)]
pub fn inspect_lock_file(
    lock_path: String,
    now_ms: f64,
    stale_ms: f64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> LockFileReport {
    let r = crate::inspect::inspect_with(
        &lock_path,
        now_ms as i64,
        ms_or_max(stale_ms),
        remove,
        non_openclaw_pid,
    );
    LockFileReport {
        lock_path,
        pid: r.pid,
        pid_alive: r.pid_alive,
        created_at: r.created_at,
        age_ms: r.age_ms.map(|a| a as f64),
        stale: r.stale,
        stale_reasons: r.reasons.into_iter().map(str::to_string).collect(),
        removed: r.removed,
        held: r.held,
        held_since_ms: r.held_since_ms.map(|m| m as f64),
        kind: if r.os { "os" } else { "legacy" }.to_string(),
        hostname: r.hostname,
        max_hold_ms: r.max_hold_ms,
        owner_checkable: r.owner_checkable,
        error: r.error.map(Into::into),
    }
}

/// The verdict of [`inspect_lock_payload`].
#[napi(object)]
pub struct PayloadVerdict {
    pub pid: Option<u32>,
    pub pid_alive: bool,
    pub created_at: Option<String>,
    pub age_ms: Option<f64>,
    pub stale: bool,
    pub stale_reasons: Vec<String>,
}

/// The old rules (sweep variant) applied to a payload given as JSON text, with
/// no file behind it: no mtime grace (a payload-less verdict is stale at
/// once), and nothing is held.
#[napi(catch_unwind)]
pub fn inspect_lock_payload(json: String, now_ms: f64, stale_ms: f64) -> PayloadVerdict {
    let (p, v) =
        crate::inspect::judge_payload_text(json.as_bytes(), now_ms as i64, ms_or_max(stale_ms));
    PayloadVerdict {
        pid: p.pid,
        pid_alive: v.pid_alive,
        created_at: p.created_at,
        age_ms: v.age_ms.map(|a| a as f64),
        stale: v.stale,
        stale_reasons: v.reasons.into_iter().map(str::to_string).collect(),
    }
}

/// What [`remove_stray_temp`] did with one temporary file.
#[napi(object)]
pub struct StrayTempReport {
    /// The name was removed.
    pub removed: bool,
    /// Someone holds its OS lock (a create or rewrite in progress): kept.
    pub held: bool,
    /// Younger than the grace: kept.
    pub young: bool,
    pub error: Option<NativeError>,
}

/// Remove a stray temporary file of a create or rewrite if nobody holds it
/// and it is older than `grace_ms` (see [`crate::inspect::remove_stray_temp`]).
#[napi(catch_unwind)]
pub fn remove_stray_temp(path: String, now_ms: f64, grace_ms: f64) -> StrayTempReport {
    use crate::inspect::StrayTemp;
    let mut r = StrayTempReport {
        removed: false,
        held: false,
        young: false,
        error: None,
    };
    match crate::inspect::remove_stray_temp(&path, now_ms, grace_ms) {
        Ok(StrayTemp::Gone) => {}
        Ok(StrayTemp::Young) => r.young = true,
        Ok(StrayTemp::Held) => r.held = true,
        Ok(StrayTemp::Removed(removed)) => r.removed = removed,
        Err(e) => r.error = Some(e.into()),
    }
    r
}

#[napi(object)]
pub struct NativeIdentity {
    pub pid: u32,
    pub starttime: Option<f64>,
    pub boot_id: Option<String>,
    pub hostname: String,
}

#[napi(catch_unwind)]
pub fn self_identity() -> NativeIdentity {
    let me = identity::self_identity();
    NativeIdentity {
        pid: me.pid,
        starttime: identity::own_start_time().map(|s| s as f64),
        boot_id: me.boot_id.clone(),
        hostname: me.hostname.clone(),
    }
}

/// The start time of `pid` as payloads record it (`/proc/<pid>/stat` field
/// 22 on Linux, the creation time in ms since the epoch on Windows), honouring
/// the override seam; null when unknown. For tests that write old-module
/// files naming a live process on a platform without `/proc`.
#[napi(catch_unwind)]
pub fn process_start_time(pid: u32) -> Option<f64> {
    identity::proc_start_time(pid).map(|s| s as f64)
}

/// Test seam (PID reuse): report `value` as the start time of `pid`;
/// `value` null means "unknown"; `clear` removes the override (all of them
/// when `pid` is 0).
#[napi(catch_unwind)]
pub fn set_start_time_override(pid: u32, value: Option<f64>, clear: bool) {
    if clear && pid == 0 {
        identity::clear_start_time_overrides();
    } else {
        identity::set_start_time_override(pid, value.map(|v| v as u64), clear);
    }
}

#[napi(object)]
pub struct RegistryCounts {
    pub keys: u32,
    pub holders: u32,
    pub waiters: u32,
}

#[napi(catch_unwind)]
pub fn registry_counts() -> RegistryCounts {
    let (k, h, w) = registry::global().counts();
    RegistryCounts {
        keys: k as u32,
        holders: h as u32,
        waiters: w as u32,
    }
}

/// Forget cached directory realpaths (test resets).
#[napi(catch_unwind)]
pub fn clear_path_cache() {
    paths::clear_cache();
}

/// Deliberately panic (tests: a panic must surface as a JS error).
#[napi(catch_unwind)]
pub fn panic_for_test() {
    panic!("deliberate panic for test");
}

#[napi(object)]
pub struct MarkerResult {
    pub id: f64,
    pub error: Option<NativeError>,
    /// A dead owner's marker content taken over at that path (its
    /// session_end is the caller's to emit).
    pub recovered: Option<String>,
}

/// Create and OS-lock an active-session marker with `json` as content,
/// taking over a dead owner's marker and never overwriting anything else.
#[napi(catch_unwind)]
pub fn marker_open(path: String, json: String) -> MarkerResult {
    let o = crate::marker::open(&path, &json, thread());
    match o.id {
        Ok(id) => MarkerResult {
            id: id as f64,
            error: None,
            recovered: o.recovered,
        },
        Err(e) => MarkerResult {
            id: 0.0,
            error: Some(e.into()),
            recovered: o.recovered,
        },
    }
}

/// Rewrite an open marker; `null` on success, else the error.
#[napi(catch_unwind)]
pub fn marker_update(id: f64, json: String) -> Option<NativeError> {
    crate::marker::update(id as u64, &json)
        .err()
        .map(Into::into)
}

/// Remove an open marker; `true` if it was open.
#[napi(catch_unwind)]
pub fn marker_close(id: f64) -> bool {
    crate::marker::close(id as u64)
}

#[napi(object)]
pub struct NativeOrphan {
    pub path: String,
    pub content: String,
}

#[napi(object)]
pub struct OrphanScan {
    pub orphans: Vec<NativeOrphan>,
    pub error: Option<NativeError>,
}

/// Markers in `dir` whose lock is free (owner dead); removed when `remove`.
#[napi(catch_unwind)]
pub fn marker_orphans(dir: String, remove: bool) -> OrphanScan {
    match crate::marker::collect_orphans(&dir, remove) {
        Ok(v) => OrphanScan {
            orphans: v
                .into_iter()
                .map(|o| NativeOrphan {
                    path: o.path,
                    content: o.content,
                })
                .collect(),
            error: None,
        },
        Err(e) => OrphanScan {
            orphans: Vec::new(),
            error: Some(e.into()),
        },
    }
}

/// Version of the internal JS <-> native interface. A second copy of the
/// package in one process reuses the first copy's addon (and so its registry)
/// only when this matches its own. 2: the calls added for the rewrite swap,
/// the createdAt refresh, lazy wake-ups, marker take-over, `release(path)`
/// without mkdir, the later generation's inspection and stray temp files.
#[napi(catch_unwind)]
pub fn abi_version() -> u32 {
    2
}

/// Whether the calling thread is the process's main thread (Node's main
/// thread: `worker_threads.isMainThread`), or null where this cannot be told
/// cheaply (the caller then asks `node:worker_threads`, which costs a couple of
/// milliseconds to load).
#[napi(catch_unwind)]
pub fn is_main_thread() -> Option<bool> {
    crate::sys::is_main_thread()
}
