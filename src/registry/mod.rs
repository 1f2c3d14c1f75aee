//! The in-process registry: one per process, shared by every Node
//! environment (main thread, worker threads, jest contexts) that loads this
//! copy of the addon.
//!
//! Per lock key it keeps the in-process holder (the OS lock, its token, the
//! leases sharing it) and a FIFO queue of waiters. Only the head of a queue
//! contends at the OS level, and only while no in-process holder exists; when a
//! holder releases with waiters queued, the OS lock is handed straight to the
//! next waiter (new fencing token, payload rewritten in place), so in-process
//! hand-off costs one `pwrite`, not an unlink/create/lock cycle.
//!
//! Guarantees: grants within one process are strictly in request order per
//! key (reentrant acquisitions, which never wait, aside); a lease id is never
//! reused, so a lost lease's `release` cannot touch a later holder.
//! Not guaranteed: fairness between processes. While waiters of this process
//! are queued the OS lock stays here; other processes get it when the queue
//! drains (the old module gave no cross-process fairness either).
//!
//! Delivery: a grant or failure for a pending request is pushed to the
//! requesting context's outbox; the context is woken through its waker (a
//! thread-safe function, see `context`) unless the caller is that context,
//! whose call then delivers before it returns.
//!
//! One job per file: this one holds the state and the types; `queue.rs` the
//! per-key state machine (acquire, cancel, release, hand-off, and what the
//! waiting thread reports), `mailbox.rs` the contexts and their outboxes,
//! `drops.rs` bulk drops (a thread's holds, one key's, the watchdog's),
//! `queries.rs` read-only questions, `refresh.rs` keeping held payloads
//! fresh. The OS attempt itself is `acquire::os_attempt`.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::lockfile::LockFile;
use crate::oserror::OsError;

mod drops;
mod mailbox;
mod queries;
mod queue;
mod refresh;
#[cfg(test)]
mod tests;

/// A module instance (one `napi_env`: a thread, or a jest context in it).
pub type CtxId = u64;
/// A Node environment: the JS thread's OS thread id.
pub type ThreadId = u64;

pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub key: Arc<str>,
    pub lock_path: Arc<str>,
    pub ctx: CtxId,
    pub thread: ThreadId,
    pub owner: Option<String>,
    pub allow_reentrant: bool,
    /// `None`: never force-released.
    pub max_hold_ms: Option<u64>,
    pub stale_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub lease_id: u64,
    pub lock_path: Arc<str>,
    pub token: Arc<str>,
    pub acquired_at_ms: i64,
}

#[derive(Debug)]
pub enum AcquireOutcome {
    Granted(Grant),
    Pending(u64),
}

#[derive(Debug)]
pub struct Delivery {
    pub request_id: u64,
    pub result: Result<Grant, OsError>,
}

/// One lock force-released or dropped.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub lock_path: Arc<str>,
    pub lease_ids: Vec<u64>,
    pub held_ms: i64,
    pub max_hold_ms: Option<u64>,
}

/// What [`Registry::refresh`] did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Holds of the thread (refreshed or not).
    pub holds: usize,
    pub refreshed: usize,
    /// Leases whose lock file was deleted or replaced, with their lock path.
    pub lost: Vec<(u64, Arc<str>)>,
    pub errors: Vec<OsError>,
}

#[derive(Debug, Clone)]
pub struct HolderInfo {
    pub lock_path: String,
    pub acquired_at_ms: i64,
    pub max_hold_ms: Option<u64>,
    pub reentrant_count: u32,
    pub owner: Option<String>,
    pub thread: ThreadId,
    pub token: String,
}

struct Holder {
    file: LockFile,
    token: Arc<str>,
    ctx: CtxId,
    thread: ThreadId,
    owner: Option<String>,
    leases: Vec<u64>,
    acquired_at_ms: i64,
    max_hold_ms: Option<u64>,
}

/// A request queued for a key (it waits its turn in this process).
struct Queued {
    request_id: u64,
    ctx: CtxId,
    thread: ThreadId,
    owner: Option<String>,
    max_hold_ms: Option<u64>,
    stale_ms: u64,
}

impl Queued {
    fn new(request_id: u64, req: AcquireRequest) -> Self {
        Queued {
            request_id,
            ctx: req.ctx,
            thread: req.thread,
            owner: req.owner,
            max_hold_ms: req.max_hold_ms,
            stale_ms: req.stale_ms,
        }
    }
}

impl Holder {
    /// `w` becomes the holder of `file`, with one lease.
    fn of(w: Queued, file: LockFile, token: Arc<str>, at: i64, lease_id: u64) -> Self {
        Holder {
            file,
            token,
            ctx: w.ctx,
            thread: w.thread,
            owner: w.owner,
            leases: vec![lease_id],
            acquired_at_ms: at,
            max_hold_ms: w.max_hold_ms,
        }
    }
}

struct KeyState {
    lock_path: Arc<str>,
    holder: Option<Holder>,
    queue: VecDeque<Queued>,
    /// The waiting thread is trying to take the OS lock for this key.
    contending: bool,
}

#[derive(Default)]
struct CtxState {
    outbox: Vec<Delivery>,
    waker: Option<Waker>,
    wake_pending: bool,
}

/// The registry's maps hash with [`FastHash`]: every acquire and release
/// looks up a path and an id or two, and SipHash (std's default, made to
/// resist keys chosen by an attacker) cost more than the lookups' other work.
/// The keys here are this process's own session paths and counters.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<FastHash>>;

#[derive(Default)]
struct Inner {
    keys: Map<Arc<str>, KeyState>,
    leases: Map<u64, Arc<str>>,
    requests: Map<u64, Arc<str>>,
    ctxs: Map<CtxId, CtxState>,
    /// Wakers of contexts that got a delivery under the current lock, called
    /// once it is released (see [`Locked`]).
    wakes: Vec<Waker>,
}

pub use crate::fasthash::FastHash;

pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The process-wide registry.
pub fn global() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry {
        inner: Mutex::new(Inner::default()),
        next_id: AtomicU64::new(1),
    })
}

/// The registry's lock, held. Dropping it releases the lock and only then
/// calls the wakers of the contexts that got a delivery meanwhile: a woken
/// thread's first act is to take its deliveries under this lock, and a waker
/// called under it made that thread sleep again on the mutex until the
/// waking thread let go (a futex round trip on every cross-thread grant).
struct Locked<'a>(Option<MutexGuard<'a, Inner>>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.0.as_deref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.0.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut g) = self.0.take() else {
            return;
        };
        if g.wakes.is_empty() {
            return;
        }
        let wakes = std::mem::take(&mut g.wakes);
        drop(g);
        for w in wakes {
            w();
        }
    }
}

impl Registry {
    fn lock(&self) -> Locked<'_> {
        Locked(Some(self.inner.lock().unwrap_or_else(|e| e.into_inner())))
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
