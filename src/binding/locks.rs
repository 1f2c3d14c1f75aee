//! The exports of acquiring, waiting, releasing and asking about locks.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::values::NativeDelivery;
use super::values::{ms_or_max, none_or_ms, NativeError};
use crate::context::{self, thread, Deliver};
use crate::registry::{self, AcquireOutcome, Dropped, HolderInfo};
use crate::session;

/// Register this module instance; returns the context id. When the env is torn
/// down (worker exit), the context's waiters are cancelled and its locks
/// released. The wake-up (see `arm_context`) is created only when `wake` is
/// given here (older callers) or on the context's first wait: an acquire that
/// never waits creates no thread-safe function, no thread and no descriptor.
#[napi(catch_unwind)]
pub fn register_context(env: Env, wake: Option<Deliver<'_>>) -> Result<f64> {
    Ok(context::register(&env, wake.as_ref())? as f64)
}

/// Give context `ctx` its wake-up and deliver function: `wake` is called on
/// this thread whenever grants for the context arrive: soon after, with no
/// argument (it takes them with `takeDeliveries`), when they come from
/// another thread or context; before the call returns, with the deliveries
/// themselves, when the context's own call made them. Idempotent.
/// Deliveries that arrived before it was armed are not signalled: the caller
/// drains the context's outbox once right after this returns. Returns false
/// when the context is unknown.
///
/// `grant` (optional; an older copy of the package sharing this addon gives
/// none): with it, and an out array registered (`setContextOut`), a grant
/// goes to `grant(token)` with `out[0]` its request id, `out[1]` its lease
/// id, `out[2]` its `acquiredAt` (the lock path is the request's), instead
/// of an object per grant to `wake`; failures still go to `wake` as objects.
#[napi(catch_unwind)]
pub fn arm_context(
    env: Env,
    ctx: f64,
    wake: Deliver<'_>,
    grant: Option<context::GrantFn<'_>>,
) -> Result<bool> {
    context::arm(&env, ctx as u64, &wake, grant.as_ref())
}

/// Hand context `ctx`'s deliveries to its JS functions now (as its own
/// calls do: grants as numbers where it armed a grant function), unless a
/// delivery runs on it already (that one drains them). False when nothing
/// was done because the context never armed its wake-up (the caller then
/// takes them with `takeDeliveries`) or a delivery runs on it already.
#[napi(catch_unwind)]
pub fn deliver_context(env: Env, ctx: f64) -> Result<bool> {
    context::deliver(&env, ctx as u64)
}

/// What an acquire did.
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum AcquireStatus {
    /// Held now: `id` is the lease id.
    Granted = 0,
    /// Queued: `id` is the request id; its grant or failure is delivered.
    Pending = 1,
    /// Failed at once: `error` says why.
    Failed = 2,
}

#[napi(object)]
pub struct AcquireResult {
    pub status: AcquireStatus,
    pub id: f64,
    pub lock_path: String,
    pub key: String,
    pub token: Option<String>,
    pub acquired_at: Option<f64>,
    pub error: Option<NativeError>,
}

/// Acquire the lock of the session at `resolved` (already `path.resolve`d).
/// `max_hold_ms`: `Infinity` (or any negative) for never force-released;
/// `stale_ms`: `Infinity` for never stale.
#[napi(catch_unwind)]
pub fn acquire(
    ctx: f64,
    resolved: String,
    owner: Option<String>,
    allow_reentrant: bool,
    max_hold_ms: f64,
    stale_ms: f64,
) -> AcquireResult {
    let settings = session::Settings {
        owner,
        allow_reentrant,
        max_hold_ms: none_or_ms(max_hold_ms),
        stale_ms: ms_or_max(stale_ms),
    };
    let (p, outcome) = session::acquire(ctx as u64, thread(), &resolved, settings);
    let (status, id, token, acquired_at, error) = match outcome {
        Ok(AcquireOutcome::Granted(g)) => (
            AcquireStatus::Granted,
            g.lease_id,
            Some(g.token.to_string()),
            Some(g.acquired_at_ms as f64),
            None,
        ),
        Ok(AcquireOutcome::Pending(r)) => (AcquireStatus::Pending, r, None, None, None),
        Err(e) => (AcquireStatus::Failed, 0, None, None, Some(e.into())),
    };
    AcquireResult {
        status,
        id: id as f64,
        lock_path: p.lock_path.to_string(),
        key: p.key.to_string(),
        token,
        acquired_at,
        error,
    }
}

thread_local! {
    /// The error of this thread's last failed [`acquire_into`].
    static ACQUIRE_ERROR: std::cell::RefCell<Option<crate::oserror::OsError>> =
        const { std::cell::RefCell::new(None) };
}

/// `acquire` in one call that builds no object (the hot path of every
/// acquire: an object with seven named fields cost more instructions than the
/// acquisition's own work). `session_file` is absolute: `path.resolve`d by
/// the caller, or, where the caller leaves that to this call (POSIX paths
/// starting with `/`), normalized here exactly as `path.resolve` would.
/// Numbers go to `out`: `out[0]` the [`AcquireStatus`], `out[1]` the lease
/// id (granted) or request id (pending), `out[2]` `acquiredAt` (epoch ms,
/// granted), `out[3]` where the returned string splits (granted).
/// Returns, when granted, the fencing token, followed by the lock path unless
/// that is the normalized `session_file` + `.lock` (then `out[3]` is 0 and
/// the whole string is the token; else `out[3]` is the token's length);
/// when pending, the lock path; when failed, nothing: `takeAcquireError`
/// gives the error.
#[napi(catch_unwind)]
#[allow(clippy::too_many_arguments)]
pub fn acquire_into(
    env: Env,
    ctx: f64,
    session_file: String,
    owner: Option<String>,
    allow_reentrant: bool,
    max_hold_ms: f64,
    stale_ms: f64,
    mut out: Float64ArraySlice<'_>,
) -> Option<String> {
    let out = crate::sys::f64_slice_mut(&mut out);
    let put = |i: usize, v: f64| {
        if let Some(slot) = out.get_mut(i) {
            *slot = v;
        }
    };
    let settings = session::Settings {
        owner,
        allow_reentrant,
        max_hold_ms: none_or_ms(max_hold_ms),
        stale_ms: ms_or_max(stale_ms),
    };
    acquire_answer(&env, ctx, &session_file, settings, false, put)
}

/// The out array context `ctx` registered on this thread.
fn out_of(ctx: u64) -> Option<crate::sys::OutSlots> {
    crate::sys::OutSlots::of_context(ctx)
}

/// Register `out` (a `Float64Array` over its own `ArrayBuffer`, kept and
/// never detached by the caller: see `sys::OutSlots`) as where `acquireOut`
/// and `releaseLeaseOut` of context `ctx` put their numbers. False if `out`
/// is not such an array.
#[napi(catch_unwind)]
pub fn set_context_out(env: Env, ctx: f64, out: Unknown<'_>) -> bool {
    let Some(slots) = crate::sys::OutSlots::of(&env, &out) else {
        return false;
    };
    slots.register(ctx as u64);
    true
}

/// `acquireInto` with the numbers in the array the context registered
/// (`setContextOut`), which it must have done.
#[napi(catch_unwind)]
pub fn acquire_out(
    env: Env,
    ctx: f64,
    session_file: Unknown<'_>,
    owner: Option<String>,
    allow_reentrant: bool,
    max_hold_ms: f64,
    stale_ms: f64,
) -> Result<Option<String>> {
    let out = out_of(ctx as u64);
    let put = |i: usize, v: f64| {
        if let Some(o) = &out {
            o.put(i, v);
        }
    };
    let settings = session::Settings {
        owner,
        allow_reentrant,
        max_hold_ms: none_or_ms(max_hold_ms),
        stale_ms: ms_or_max(stale_ms),
    };
    crate::sys::with_js_str(&env, &session_file, |file| {
        acquire_answer(&env, ctx, file, settings, true, put)
    })
}

/// The acquire of `acquireInto` / `acquireOut`: numbers through `put`.
/// `pending_plain_null`: a pending answer whose lock path is `session_file`
/// with `.lock` appended returns null instead of that path (`acquireOut`'s
/// callers make it themselves; creating the JS string cost more than the
/// enqueue).
fn acquire_answer(
    env: &Env,
    ctx: f64,
    session_file: &str,
    settings: session::Settings,
    pending_plain_null: bool,
    mut put: impl FnMut(usize, f64),
) -> Option<String> {
    let resolved = crate::paths::resolve_absolute(session_file);
    let (p, outcome) = session::acquire(ctx as u64, thread(), &resolved, settings);
    let plain = || {
        p.lock_path.len() == session_file.len() + 5
            && p.lock_path.starts_with(session_file)
            && p.lock_path.ends_with(".lock")
    };
    match outcome {
        Ok(AcquireOutcome::Granted(g)) => {
            put(0, AcquireStatus::Granted as i32 as f64);
            put(1, g.lease_id as f64);
            put(2, g.acquired_at_ms as f64);
            if plain() {
                put(3, 0.0);
                Some(g.token.to_string())
            } else {
                put(3, g.token.len() as f64);
                let mut s = String::with_capacity(g.token.len() + p.lock_path.len());
                s.push_str(&g.token);
                s.push_str(&p.lock_path);
                Some(s)
            }
        }
        Ok(AcquireOutcome::Pending(r)) => {
            put(0, AcquireStatus::Pending as i32 as f64);
            put(1, r as f64);
            context::watch_on_loop(env, r);
            if pending_plain_null && plain() {
                None
            } else {
                Some(p.lock_path.to_string())
            }
        }
        Err(e) => {
            put(0, AcquireStatus::Failed as i32 as f64);
            ACQUIRE_ERROR.with(|c| *c.borrow_mut() = Some(e));
            None
        }
    }
}

/// The error of the calling thread's last failed `acquireInto` (once).
#[napi(catch_unwind)]
pub fn take_acquire_error() -> Option<NativeError> {
    ACQUIRE_ERROR
        .with(|c| c.borrow_mut().take())
        .map(Into::into)
}

/// Cancel a pending request; `false` if it was already granted or failed.
#[napi(catch_unwind)]
pub fn cancel(request_id: f64) -> bool {
    registry::global().cancel(request_id as u64)
}

/// Take the grants and failures delivered to context `ctx`.
#[napi(catch_unwind)]
pub fn take_deliveries(ctx: f64) -> Vec<NativeDelivery> {
    registry::global()
        .take_deliveries(ctx as u64)
        .into_iter()
        .map(Into::into)
        .collect()
}

/// Release one lease; `true` if it dropped a hold. A waiter of this context
/// that gets the lock is delivered before this returns.
#[napi(catch_unwind)]
pub fn release_lease(env: Env, ctx: f64, lease_id: f64) -> Result<bool> {
    let ctx = ctx as u64;
    context::delivering(&env, ctx, |r| r.release_lease(ctx, lease_id as u64))
}

/// `releaseLease` for the hot path: `out[0]` is 1 if it dropped a hold.
/// When the release handed the lock to a waiter of this same context (an
/// in-process FIFO hand-off), that grant comes back here instead of through
/// the context's deliver function (which builds an object per delivery):
/// `out[1]` its request id, `out[2]` its lease id, `out[3]` its
/// `acquiredAt`, and the token is returned (the lock path is the released
/// lease's). Anything else for this context is delivered before this returns.
/// `null`: no grant came back.
#[napi(catch_unwind)]
pub fn release_lease_into(
    env: Env,
    ctx: f64,
    lease_id: f64,
    mut out: Float64ArraySlice<'_>,
) -> Result<Option<String>> {
    let ctx = ctx as u64;
    let (dropped, own) =
        context::delivering(&env, ctx, |r| r.release_lease_own(ctx, lease_id as u64))?;
    // Written after the deliveries above, which run JS that may use `out`.
    let out = crate::sys::f64_slice_mut(&mut out);
    let mut put = |i: usize, v: f64| {
        if let Some(slot) = out.get_mut(i) {
            *slot = v;
        }
    };
    put(0, if dropped { 1.0 } else { 0.0 });
    Ok(own.map(|(request_id, g)| {
        put(1, request_id as f64);
        put(2, g.lease_id as f64);
        put(3, g.acquired_at_ms as f64);
        g.token.to_string()
    }))
}

/// `releaseLeaseInto` with the numbers in the array the context registered
/// (`setContextOut`), which it must have done.
#[napi(catch_unwind)]
pub fn release_lease_out(env: Env, ctx: f64, lease_id: f64) -> Result<Option<String>> {
    let ctx = ctx as u64;
    let (dropped, own) =
        context::delivering(&env, ctx, |r| r.release_lease_own(ctx, lease_id as u64))?;
    // Written after the deliveries above, which run JS that may use the array.
    let Some(out) = out_of(ctx) else {
        return Ok(None);
    };
    out.put(0, if dropped { 1.0 } else { 0.0 });
    Ok(own.map(|(request_id, g)| {
        out.put(1, request_id as f64);
        out.put(2, g.lease_id as f64);
        out.put(3, g.acquired_at_ms as f64);
        g.token.to_string()
    }))
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
/// A waiter of this context that gets the lock is delivered before this
/// returns.
#[napi(no_export, catch_unwind)]
pub fn release_key(env: Env, ctx: f64, key: String) -> Result<Option<NativeDropped>> {
    let ctx = ctx as u64;
    let d = context::delivering(&env, ctx, |r| r.release_key(ctx, thread(), &key))?;
    Ok(d.map(Into::into))
}

/// Drop every hold of the calling thread. Waiters of this context that get
/// a lock are delivered before this returns. An export made at load, not a
/// rare function: the `exit` listener of every process that locked calls it,
/// and it alone would make the whole rare object then.
#[napi(catch_unwind)]
pub fn release_thread(env: Env, ctx: f64) -> Result<Vec<NativeDropped>> {
    let ctx = ctx as u64;
    let d = context::delivering(&env, ctx, |r| r.release_thread(ctx, thread()))?;
    Ok(d.into_iter().map(Into::into).collect())
}

#[napi(object)]
pub struct ExpireResult {
    pub dropped: Vec<NativeDropped>,
    pub next_deadline: Option<f64>,
}

/// Force-release the calling thread's holds past their max hold at `now_ms`.
/// Waiters of this context that get a lock are delivered before this
/// returns.
#[napi(catch_unwind)]
pub fn expire(env: Env, ctx: f64, now_ms: f64) -> Result<ExpireResult> {
    let ctx = ctx as u64;
    let (dropped, next) =
        context::delivering(&env, ctx, |r| r.expire(ctx, thread(), now_ms as i64))?;
    Ok(ExpireResult {
        dropped: dropped.into_iter().map(Into::into).collect(),
        next_deadline: next.map(|n| n as f64),
    })
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

#[napi(no_export, catch_unwind)]
pub fn holder_of(key: String) -> Option<NativeHolder> {
    registry::global().holder_of(&key).map(Into::into)
}

#[napi(no_export, catch_unwind)]
pub fn list_held() -> Vec<NativeHolder> {
    registry::global()
        .list()
        .into_iter()
        .map(Into::into)
        .collect()
}

#[napi(object)]
pub struct RegistryCounts {
    pub keys: u32,
    pub holders: u32,
    pub waiters: u32,
}

#[napi(no_export, catch_unwind)]
pub fn registry_counts() -> RegistryCounts {
    let (k, h, w) = registry::global().counts();
    RegistryCounts {
        keys: k as u32,
        holders: h as u32,
        waiters: w as u32,
    }
}

/// Test seam: the JS-thread loop watchers running in the process, the
/// locks obtained by an attempt on a JS thread's own loop so far, and the
/// OS attempts made for contended keys so far (waiting thread and loop
/// watchers; the acquire's own first attempt is not counted), and the
/// wake-ups sent to contexts through their thread-safe functions, and the
/// grants handed to contexts as numbers and a token (not objects).
#[napi(object)]
pub struct LoopWaitCounts {
    pub watchers: u32,
    pub obtained: u32,
    pub attempts: u32,
    pub wakes: u32,
    pub numbered: u32,
}

/// Test seam: the contexts registered and not torn down yet, and those of
/// them that registered an out array (`setContextOut`), in the process.
#[napi(object)]
pub struct ContextCounts {
    pub contexts: u32,
    pub out_arrays: u32,
}

#[napi(no_export, catch_unwind)]
pub fn context_counts() -> ContextCounts {
    ContextCounts {
        contexts: registry::global().contexts() as u32,
        out_arrays: crate::sys::OutSlots::registered(),
    }
}

#[napi(no_export, catch_unwind)]
pub fn loop_wait_counts() -> LoopWaitCounts {
    let (watchers, obtained, attempts) = crate::loop_wait::counts();
    let wakes = crate::context::WAKES.load(std::sync::atomic::Ordering::Relaxed);
    let numbered = crate::context::NUMBERED.load(std::sync::atomic::Ordering::Relaxed);
    LoopWaitCounts {
        watchers,
        obtained,
        attempts,
        wakes,
        numbered,
    }
}

/// This file's rarely used exports (see `super::rare_functions`).
pub(super) const RARE: &[(&str, napi::Callback)] = &[
    ("holderOf", holder_of_c_callback),
    ("listHeld", list_held_c_callback),
    ("registryCounts", registry_counts_c_callback),
    ("loopWaitCounts", loop_wait_counts_c_callback),
    ("contextCounts", context_counts_c_callback),
    ("releaseKey", release_key_c_callback),
];
