//! The Node side of a context (one module instance: a napi env, or a jest
//! context in it): its registration with the registry, its wake-up, its
//! teardown, and delivery of the grants a call makes pending for the
//! calling context itself.
//!
//! Delivery (docs/design.md, "Delivering grants"): a grant or failure for a
//! pending request lands in its context's outbox. When another thread or
//! context put it there, the context's wake-up (an unref'd thread-safe
//! function, [`crate::sys::WakeFn`]) calls its JS deliver function soon.
//! When the calling context put it there itself (a release handing the lock
//! to its own next waiter), [`delivering`] takes the deliveries and hands
//! them to that JS function before the native call returns, so JS never has
//! to remember to drain. A delivery already running on this context is not
//! entered again: the running one drains until the outbox is empty.
//! A grant obtained on this env's own loop (`loop_wait`, Linux) is handed
//! over the same way, in the libuv callback that obtained it.
//!
//! Guarantees: nothing is created before the context first waits (no
//! thread-safe function, no reference); a context torn down (worker exit)
//! has its waits cancelled, its locks released and its markers left for
//! recovery. Not guaranteed: delivery to a context that never armed its
//! wake-up (it never waited, so nothing is ever delivered to it).

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use napi::bindgen_prelude::{Function, FunctionRef, Result};
use napi::Env;

use crate::binding::values::NativeDelivery;
use crate::registry::{self, CtxId, Registry, ThreadId, Waker};
use crate::sys::{self, WakeFn};

/// A context's JS deliver function: called with the deliveries, or with
/// nothing (by the wake-up) when it is to take them itself.
pub type Deliver<'a> = Function<'a, Option<Vec<NativeDelivery>>, ()>;

/// A context's JS grant function (optional, given to `armContext`): called
/// with a grant's token, its numbers in the context's out array
/// (`setContextOut`): `out[0]` the request id, `out[1]` the lease id,
/// `out[2]` `acquiredAt`. The lock path is the request's own, which JS
/// knows. A context without one (an older copy of the package sharing this
/// addon) or without an out array gets every delivery as an object.
pub type GrantFn<'a> = Function<'a, String, ()>;

/// A context's JS deliver function, as this thread holds it.
struct Local {
    /// Never dropped: a reference deleted while Node exits (thread-local
    /// destructors run inside `exit()`) would call into a dead env; Node
    /// frees it with the env instead.
    deliver: ManuallyDrop<FunctionRef<Option<Vec<NativeDelivery>>, ()>>,
    /// Its grant function, if it gave one (never dropped, as above).
    grant: Option<ManuallyDrop<FunctionRef<String, ()>>>,
    /// A delivery runs on this context now.
    delivering: bool,
}

thread_local! {
    static THREAD_ID: ThreadId = sys::thread_id();
    /// This thread's armed contexts: a few at most (one per copy of the
    /// package loaded on the thread), so a list, searched without hashing
    /// (looked up several times per delivery).
    static LOCAL: RefCell<Vec<(CtxId, Local)>> = const { RefCell::new(Vec::new()) };
}

/// The Node environment (thread) of the caller.
pub fn thread() -> ThreadId {
    THREAD_ID.with(|t| *t)
}

/// The wake-up of one context: empty until the context first waits (a
/// thread-safe function is an async resource that tools such as jest's
/// `--detectOpenHandles` report, and nothing should exist before it is needed).
type WakeSlot = Arc<Mutex<Option<WakeFn>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake_slots() -> &'static Mutex<HashMap<CtxId, WakeSlot>> {
    static SLOTS: OnceLock<Mutex<HashMap<CtxId, WakeSlot>>> = OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

/// Register a context for `env`; with `wake`, arm it at once. When the env
/// is torn down, its waits are cancelled, its locks released, its markers
/// abandoned (left for recovery) and its wake-up released.
pub fn register(env: &Env, wake: Option<&Deliver<'_>>) -> Result<CtxId> {
    let slot: WakeSlot = Arc::new(Mutex::new(None));
    let for_waker = slot.clone();
    let owner = thread();
    let waker: Waker = Arc::new(move || {
        // Called just after the registry's lock is released. With no
        // wake-up armed yet the delivery stays in the outbox: `arm`'s caller
        // drains it. On this context's own thread inside its loop watcher's
        // callback, `on_loop_fire` delivers right after: a wake-up would only
        // make the loop run once more for an empty outbox (a write to its
        // async descriptor on the hand-off's path, then a read and a JS call).
        if FIRING.with(|f| f.get()) && thread() == owner {
            return;
        }
        if let Some(w) = lock(&for_waker).as_ref() {
            WAKES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            w.call();
        }
    });
    let ctx = registry::global().register_ctx(Some(waker));
    lock(wake_slots()).insert(ctx, slot.clone());
    env.add_env_cleanup_hook((ctx, slot), |(ctx, slot)| {
        registry::global().unregister_ctx(ctx);
        lock(wake_slots()).remove(&ctx);
        // Runs on the env's own thread: its markers become recoverable.
        crate::marker::abandon_thread(thread());
        LOCAL.with(|l| l.borrow_mut().retain(|(c, _)| *c != ctx));
        sys::OutSlots::forget(ctx);
        if let Some(w) = lock(&slot).take() {
            // The context can no longer be woken: release our reference.
            w.abort();
        }
    })?;
    if let Some(wake) = wake {
        arm(env, ctx, wake, None)?;
    }
    Ok(ctx)
}

/// Give `ctx` its wake-up and deliver function `wake`, and optionally its
/// grant function (idempotent: the first arming's functions stay).
/// Deliveries that arrived before are not signalled: the caller drains the
/// outbox once afterwards. `false` when the context is unknown.
pub fn arm(env: &Env, ctx: CtxId, wake: &Deliver<'_>, grant: Option<&GrantFn<'_>>) -> Result<bool> {
    let Some(slot) = lock(wake_slots()).get(&ctx).cloned() else {
        return Ok(false);
    };
    let mut s = lock(&slot);
    if s.is_none() {
        *s = Some(WakeFn::create(env, wake)?);
    }
    drop(s);
    if !LOCAL.with(|l| l.borrow().iter().any(|(c, _)| *c == ctx)) {
        let deliver = ManuallyDrop::new(wake.create_ref()?);
        let grant = match grant {
            Some(g) => Some(ManuallyDrop::new(g.create_ref()?)),
            None => None,
        };
        LOCAL.with(|l| {
            l.borrow_mut().push((
                ctx,
                Local {
                    deliver,
                    grant,
                    delivering: false,
                },
            ))
        });
    }
    Ok(true)
}

thread_local! {
    /// This thread runs its loop watcher's attempts (`on_loop_fire`), which
    /// deliver to this thread's contexts themselves when done.
    static FIRING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as firing until dropped (also when a panic unwinds).
struct Firing;

impl Firing {
    fn enter() -> Firing {
        FIRING.with(|f| f.set(true));
        Firing
    }
}

impl Drop for Firing {
    fn drop(&mut self) {
        FIRING.with(|f| f.set(false));
    }
}

/// Wake-ups sent to contexts through their thread-safe functions so far
/// (test seam: a grant delivered in the callback that obtained it needs none).
pub static WAKES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

thread_local! {
    /// This env's loop watcher could not start: waits use the waiting thread.
    static LOOP_FAILED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// When request `request_id` (just queued by this env) contends at the OS
/// level, watch its lock file on this env's own loop as well
/// (`loop_wait`), starting the env's watcher on first use. A watcher that
/// cannot start leaves the wait to the waiting thread.
pub fn watch_on_loop(env: &Env, request_id: u64) {
    let Some(key) = registry::global().contending_head(request_id) else {
        return;
    };
    if !crate::loop_wait::installed() {
        if LOOP_FAILED.with(|f| f.get()) {
            return;
        }
        match sys::LoopWatch::start(
            env,
            on_loop_fire,
            crate::loop_wait::after_fire,
            crate::loop_wait::on_teardown,
        ) {
            Ok(w) => crate::loop_wait::install(w),
            Err(_) => {
                LOOP_FAILED.with(|f| f.set(true));
                return;
            }
        }
    }
    crate::loop_wait::watch(key);
}

/// This env's loop watcher saw `fired` (on the env's thread, inside a
/// callback scope): attempt the keys whose files changed, then hand what
/// that delivered to this thread's contexts straight to their deliver
/// functions, so the promise resolves in this same callback (the wake-up
/// queued meanwhile finds the outbox empty).
fn on_loop_fire(env: &Env, fired: &[sys::Fired]) {
    {
        let _firing = Firing::enter();
        crate::loop_wait::on_fire(fired);
    }
    let ctxs: Vec<CtxId> = LOCAL.with(|l| l.borrow().iter().map(|(c, _)| *c).collect());
    for ctx in ctxs {
        let _ = deliver(env, ctx);
    }
}

/// Run `op` on the registry for context `ctx`, then deliver what it made
/// pending for `ctx` itself (see the module docs): the one way the binding
/// calls an operation that may hand a lock to a waiter of the caller.
pub fn delivering<T>(env: &Env, ctx: CtxId, op: impl FnOnce(&'static Registry) -> T) -> Result<T> {
    let out = op(registry::global());
    deliver(env, ctx)?;
    Ok(out)
}

/// Hand `ctx`'s deliveries to its JS functions now, until none are left,
/// unless a delivery runs on it already (that one drains them) or it never
/// armed (it never waited, so nothing is ever delivered to it): each grant
/// as numbers and a token to its grant function when it has one and an out
/// array, else (and every failure) as objects to its deliver function.
/// `false`: nothing was done because of either exception.
pub fn deliver(env: &Env, ctx: CtxId) -> Result<bool> {
    let fs = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let local = l
            .iter_mut()
            .find(|(c, _)| *c == ctx)
            .map(|(_, x)| x)
            .filter(|x| !x.delivering)?;
        local.delivering = true;
        let grant = match (&local.grant, sys::OutSlots::of_context(ctx)) {
            (Some(g), Some(out)) => Some((g.borrow_back(env), out)),
            _ => None,
        };
        Some((local.deliver.borrow_back(env), grant))
    });
    let Some((f, grant)) = fs else {
        return Ok(false);
    };
    let drained = f.and_then(|f| {
        let grant = match grant {
            Some((g, out)) => Some((g?, out)),
            None => None,
        };
        // A failed call does not stop the rest: each delivery was taken from
        // the outbox and must reach JS (a grant nobody sees would never be
        // released). The first error is returned at the end.
        let mut first_err = None;
        loop {
            let ds = registry::global().take_deliveries(ctx);
            if ds.is_empty() {
                return first_err.map_or(Ok(()), Err);
            }
            let r = match &grant {
                Some((g, out)) => hand_over(&f, g, *out, ds),
                None => f.call(Some(ds.into_iter().map(Into::into).collect())),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
    });
    LOCAL.with(|l| {
        if let Some((_, local)) = l.borrow_mut().iter_mut().find(|(c, _)| *c == ctx) {
            local.delivering = false;
        }
    });
    drained.map(|()| true)
}

/// Grants handed to contexts as numbers and a token so far (test seam).
pub static NUMBERED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Hand `ds` over in order: each grant to `grant` (its numbers written to
/// `out` just before: JS reads them first thing), each failure to `f` as a
/// one-element array. Every delivery is handed over; the first error is
/// returned.
fn hand_over(
    f: &Deliver<'_>,
    grant: &GrantFn<'_>,
    out: sys::OutSlots,
    ds: Vec<registry::Delivery>,
) -> Result<()> {
    let mut first_err = None;
    for d in ds {
        let r = match &d.result {
            Ok(g) => {
                out.put(0, d.request_id as f64);
                out.put(1, g.lease_id as f64);
                out.put(2, g.acquired_at_ms as f64);
                NUMBERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                grant.call(String::from(&*g.token))
            }
            Err(_) => f.call(Some(vec![d.into()])),
        };
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
