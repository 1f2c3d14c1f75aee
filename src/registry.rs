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
//! thread-safe function in the binding) unless the caller is that context,
//! which then drains its outbox itself.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::identity;
use crate::legacy;
use crate::lockfile::{self, Attempt, Judgement, LockFile, WaitFile};
use crate::oserror::OsError;
use crate::payload::{LockPayload, ParsedPayload};
use crate::waiter;

/// A module instance (one `napi_env`: a thread, or a jest context in it).
pub type CtxId = u64;
/// A Node environment: the JS thread's OS thread id.
pub type ThreadId = u64;

pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub key: String,
    pub lock_path: String,
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

struct Waiter {
    request_id: u64,
    ctx: CtxId,
    thread: ThreadId,
    owner: Option<String>,
    max_hold_ms: Option<u64>,
    stale_ms: u64,
}

impl Waiter {
    fn new(request_id: u64, req: AcquireRequest) -> Self {
        Waiter {
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
    fn of(w: Waiter, file: LockFile, token: Arc<str>, at: i64, lease_id: u64) -> Self {
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
    waiters: VecDeque<Waiter>,
    /// The waiter thread is trying to take the OS lock for this key.
    contending: bool,
}

#[derive(Default)]
struct CtxState {
    outbox: Vec<Delivery>,
    waker: Option<Waker>,
    wake_pending: bool,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<Arc<str>, KeyState>,
    leases: HashMap<u64, Arc<str>>,
    requests: HashMap<u64, Arc<str>>,
    ctxs: HashMap<CtxId, CtxState>,
}

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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An in-process hand-off keeps the payload's `createdAt` when it is younger
/// than this (the refresh keeps held payloads fresh anyway).
const HANDOFF_KEEP_CREATED_MS: i64 = 15_000;

/// Fencing tokens: 64 random bits fixed per process, then a counter, as 24
/// hex digits (fixed length, so in-place payload rewrites never shrink).
fn new_token() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_i64(now_ms());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{seed:016x}{:08x}", n as u32).into()
}

/// Render our payload for a new OS-level holder.
pub fn render_payload(out: &mut String, created_at_ms: i64, max_hold_ms: Option<u64>, token: &str) {
    let me = identity::self_identity();
    LockPayload {
        pid: me.pid,
        created_at_ms,
        start_time: identity::own_start_time(),
        max_hold_ms,
        fencing_token: token,
        hostname: &me.hostname,
        boot_id: me.boot_id.as_deref(),
    }
    .render(out);
}

/// What to do with a file found in place whose OS lock we obtained.
pub fn judge_found(p: &ParsedPayload, mtime_ms: i64, stale_ms: u64) -> Judgement {
    if p.os_lock {
        // Its writer held it by the OS lock, which is now ours: gone.
        return Judgement::Reclaim;
    }
    if legacy::judge(p, mtime_ms, now_ms(), stale_ms, false).stale {
        Judgement::Reclaim
    } else {
        Judgement::Wait
    }
}

/// Attempt the OS lock once for a new holder: returns the attempt and the
/// token/time written when acquired.
pub fn os_attempt(
    lock_path: &str,
    wait: Option<WaitFile>,
    stale_ms: u64,
    max_hold_ms: Option<u64>,
) -> Result<(Attempt, Arc<str>, i64), OsError> {
    let token = new_token();
    let at = now_ms();
    let attempt = lockfile::attempt(
        Path::new(lock_path),
        lock_path,
        wait,
        &mut |p, mtime| judge_found(p, mtime, stale_ms),
        &mut |buf| render_payload(buf, at, max_hold_ms, &token),
    )?;
    Ok((attempt, token, at))
}

fn reentry_allowed(h: &Holder, thread: ThreadId, owner: &Option<String>, allow: bool) -> bool {
    if h.thread != thread {
        return false;
    }
    match (owner, &h.owner) {
        (Some(o), Some(ho)) => o == ho,
        (_, None) => allow,
        (None, Some(_)) => false,
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Register a context (module instance) and the waker that makes it drain
    /// its outbox.
    pub fn register_ctx(&self, waker: Option<Waker>) -> CtxId {
        let id = self.id();
        self.lock().ctxs.insert(
            id,
            CtxState {
                waker,
                ..Default::default()
            },
        );
        id
    }

    /// A context is going away (env teardown): cancel its waiters, release its
    /// holds, forget it. Returns the number of lock files released.
    pub fn unregister_ctx(&self, ctx: CtxId) -> usize {
        let mut inner = self.lock();
        inner.ctxs.remove(&ctx);
        let n = self.drop_where(
            &mut inner,
            ctx,
            now_ms(),
            |h| h.ctx == ctx,
            |w| w.ctx == ctx,
        );
        n.len()
    }

    /// Take everything delivered to `ctx`.
    pub fn take_deliveries(&self, ctx: CtxId) -> Vec<Delivery> {
        let mut inner = self.lock();
        match inner.ctxs.get_mut(&ctx) {
            Some(c) => {
                c.wake_pending = false;
                std::mem::take(&mut c.outbox)
            }
            None => Vec::new(),
        }
    }

    fn deliver(inner: &mut Inner, caller: CtxId, to: CtxId, d: Delivery) {
        let Some(c) = inner.ctxs.get_mut(&to) else {
            // The context is gone: a grant must not leak the lock.
            return;
        };
        c.outbox.push(d);
        if to != caller && !c.wake_pending {
            if let Some(w) = &c.waker {
                c.wake_pending = true;
                w();
            }
        }
    }

    /// Acquire, or queue.
    pub fn acquire(&self, req: AcquireRequest) -> Result<AcquireOutcome, OsError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(key) = inner
            .keys
            .get_key_value(req.key.as_str())
            .map(|(k, _)| k.clone())
        {
            let ks = inner.keys.get_mut(&key).expect("just found");
            if let Some(h) = ks.holder.as_mut() {
                if reentry_allowed(h, req.thread, &req.owner, req.allow_reentrant) {
                    let lease_id = self.id();
                    h.leases.push(lease_id);
                    let g = Grant {
                        lease_id,
                        lock_path: ks.lock_path.clone(),
                        token: h.token.clone(),
                        acquired_at_ms: h.acquired_at_ms,
                    };
                    inner.leases.insert(lease_id, key);
                    return Ok(AcquireOutcome::Granted(g));
                }
            }
            // Busy in process (held or queued): join the queue.
            let request_id = self.id();
            ks.waiters.push_back(Waiter::new(request_id, req));
            inner.requests.insert(request_id, key);
            return Ok(AcquireOutcome::Pending(request_id));
        }
        // Nobody here holds or waits: try the OS lock now.
        let (attempt, token, at) = os_attempt(&req.lock_path, None, req.stale_ms, req.max_hold_ms)?;
        let key: Arc<str> = req.key.as_str().into();
        let lock_path: Arc<str> = req.lock_path.as_str().into();
        let id = self.id();
        let mut ks = KeyState {
            lock_path: lock_path.clone(),
            holder: None,
            waiters: VecDeque::new(),
            contending: false,
        };
        let w = Waiter::new(id, req);
        let outcome = match attempt {
            Attempt::Acquired(mut file) => {
                file.created_ms = at;
                ks.holder = Some(Holder::of(w, file, token.clone(), at, id));
                inner.leases.insert(id, key.clone());
                AcquireOutcome::Granted(Grant {
                    lease_id: id,
                    lock_path: lock_path.clone(),
                    token,
                    acquired_at_ms: at,
                })
            }
            Attempt::Busy(wait) => {
                // Nothing is recorded unless the waiting machinery runs: an
                // acquire that cannot wait fails at once, leaving nothing.
                waiter::contend(key.clone(), lock_path, Some(wait))?;
                ks.waiters.push_back(w);
                ks.contending = true;
                inner.requests.insert(id, key.clone());
                AcquireOutcome::Pending(id)
            }
        };
        inner.keys.insert(key, ks);
        Ok(outcome)
    }

    /// Cancel a pending request. `false` if it is no longer pending (granted
    /// or failed already: its delivery is in the outbox).
    pub fn cancel(&self, request_id: u64) -> bool {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(key) = inner.requests.remove(&request_id) else {
            return false;
        };
        if let Some(ks) = inner.keys.get_mut(&key) {
            ks.waiters.retain(|w| w.request_id != request_id);
        }
        Self::settle(inner, &key);
        true
    }

    /// After waiters left: stop contending for an empty queue, drop idle keys.
    fn settle(inner: &mut Inner, key: &Arc<str>) {
        let Some(ks) = inner.keys.get_mut(key) else {
            return;
        };
        if ks.holder.is_none() && ks.waiters.is_empty() {
            if ks.contending {
                waiter::stop(key.clone());
            }
            inner.keys.remove(key);
        }
    }

    /// Release one lease. `true` if it dropped a hold.
    pub fn release_lease(&self, caller: CtxId, lease_id: u64) -> bool {
        self.release_lease_and_peek(caller, lease_id).0
    }

    /// Release one lease; also says whether `caller`'s outbox now holds
    /// deliveries (one lock round trip for the release hot path).
    pub fn release_lease_and_peek(&self, caller: CtxId, lease_id: u64) -> (bool, bool) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let dropped = match inner.leases.remove(&lease_id) {
            None => false,
            Some(key) => {
                if let Some(h) = inner.keys.get_mut(&key).and_then(|ks| ks.holder.as_mut()) {
                    h.leases.retain(|&l| l != lease_id);
                    if h.leases.is_empty() {
                        self.pass_on(inner, caller, &key);
                    }
                }
                true
            }
        };
        let pending = inner
            .ctxs
            .get(&caller)
            .is_some_and(|c| !c.outbox.is_empty());
        (dropped, pending)
    }

    /// The holder of `key` is done (all levels gone, or forced): hand the OS
    /// lock to the next waiter in line, or release it.
    fn pass_on(&self, inner: &mut Inner, caller: CtxId, key: &Arc<str>) {
        let Some(h) = inner.keys.get_mut(key).and_then(|ks| ks.holder.take()) else {
            return;
        };
        for l in &h.leases {
            inner.leases.remove(l);
        }
        self.grant_head(inner, caller, key, h.file, None);
    }

    /// No in-process holder: let the head waiter take the OS lock now, or
    /// start contending for it.
    fn advance(&self, inner: &mut Inner, caller: CtxId, key: &Arc<str>) {
        loop {
            let Some(ks) = inner.keys.get_mut(key) else {
                return;
            };
            if ks.holder.is_some() || ks.contending {
                return;
            }
            let Some(w) = ks.waiters.front() else {
                inner.keys.remove(key);
                return;
            };
            let lock_path = ks.lock_path.clone();
            let max_hold = w.max_hold_ms;
            let err = match os_attempt(&lock_path, None, w.stale_ms, max_hold) {
                Ok((Attempt::Acquired(file), token, at)) => {
                    self.grant_head(inner, caller, key, file, Some((token, at, max_hold)));
                    return;
                }
                Ok((Attempt::Busy(wait), _, _)) => {
                    match waiter::contend(key.clone(), lock_path, Some(wait)) {
                        Ok(()) => {
                            ks.contending = true;
                            return;
                        }
                        // The waiting machinery cannot start: this head fails
                        // now (never hangs); the next one tries again.
                        Err(err) => err,
                    }
                }
                Err(err) => err,
            };
            let w = ks.waiters.pop_front().expect("head");
            inner.requests.remove(&w.request_id);
            Self::deliver(
                inner,
                caller,
                w.ctx,
                Delivery {
                    request_id: w.request_id,
                    result: Err(err),
                },
            );
        }
    }

    /// Give `file`, the OS lock of `key`, to the head of its queue: it becomes
    /// the holder and its grant is delivered. `written` is the (token, time,
    /// max hold) the file's payload already carries (a fresh acquisition); any
    /// other head gets a new token and a rewritten payload (an in-process
    /// hand-off). If that write fails, the head gets the error and the next
    /// waiter tries afresh. With nobody left, the lock is released.
    fn grant_head(
        &self,
        inner: &mut Inner,
        caller: CtxId,
        key: &Arc<str>,
        mut file: LockFile,
        written: Option<(Arc<str>, i64, Option<u64>)>,
    ) {
        let Some(ks) = inner.keys.get_mut(key) else {
            file.release(Path::new(&format!("{key}.lock")));
            return;
        };
        let lock_path = ks.lock_path.clone();
        if ks.waiters.is_empty() {
            file.release(Path::new(&*lock_path));
            inner.keys.remove(key);
            return;
        }
        if written.is_none() && !file.still_named_by(Path::new(&*lock_path)) {
            // The file being handed over was deleted or replaced (an `rm`, a
            // reclaim): it excludes nobody any more. Drop it without touching
            // the path, and let the head contend afresh at the OS level.
            file.abandon();
            self.advance(inner, caller, key);
            return;
        }
        let w = ks.waiters.pop_front().expect("not empty");
        inner.requests.remove(&w.request_id);
        let (token, at) = match written {
            Some((token, at, max_hold)) if max_hold == w.max_hold_ms => {
                file.created_ms = at;
                (token, at)
            }
            _ => {
                let token = new_token();
                let at = now_ms();
                // A recent createdAt is kept (old-module peers only need it
                // fresh), so that a hand-off between holders of the same
                // maxHoldMs changes hex digits only and is rewritten in place.
                let keep = written.is_none()
                    && (0..HANDOFF_KEEP_CREATED_MS).contains(&(at - file.created_ms));
                let created = if keep { file.created_ms } else { at };
                let mut buf = String::with_capacity(320);
                render_payload(&mut buf, created, w.max_hold_ms, &token);
                match file.rewrite(Path::new(&*lock_path), buf.as_bytes(), None, keep) {
                    Ok(lockfile::Rewrite::Done) => file.created_ms = created,
                    Ok(lockfile::Rewrite::Lost) => {
                        // Deleted or replaced under us: nobody gets this file.
                        ks.waiters.push_front(w);
                        inner.requests.insert(ks.waiters[0].request_id, key.clone());
                        file.abandon();
                        self.advance(inner, caller, key);
                        return;
                    }
                    Err(e) => {
                        let err = OsError::from_io(&e, "write", &lock_path);
                        file.release(Path::new(&*lock_path));
                        let request_id = w.request_id;
                        Self::deliver(
                            inner,
                            caller,
                            w.ctx,
                            Delivery {
                                request_id,
                                result: Err(err),
                            },
                        );
                        self.advance(inner, caller, key);
                        return;
                    }
                }
                (token, at)
            }
        };
        let lease_id = self.id();
        let (ctx, request_id) = (w.ctx, w.request_id);
        let ks = inner.keys.get_mut(key).expect("key present");
        ks.holder = Some(Holder::of(w, file, token.clone(), at, lease_id));
        inner.leases.insert(lease_id, key.clone());
        let grant = Grant {
            lease_id,
            lock_path,
            token,
            acquired_at_ms: at,
        };
        Self::deliver(
            inner,
            caller,
            ctx,
            Delivery {
                request_id,
                result: Ok(grant),
            },
        );
    }

    /// The waiter thread's view of the head waiter of `key`: its stale and
    /// max-hold settings, or `None` when nobody waits any more.
    pub fn head_settings(&self, key: &str) -> Option<(u64, Option<u64>)> {
        let inner = self.lock();
        let ks = inner.keys.get(key)?;
        if ks.holder.is_some() {
            return None;
        }
        ks.waiters.front().map(|w| (w.stale_ms, w.max_hold_ms))
    }

    /// The waiter thread obtained the OS lock for `key`.
    pub fn os_acquired(
        &self,
        key: &Arc<str>,
        file: LockFile,
        token: Arc<str>,
        at: i64,
        rendered_max_hold: Option<u64>,
    ) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.keys.get_mut(key) {
            Some(ks) if ks.contending && ks.holder.is_none() => {
                ks.contending = false;
                self.grant_head(inner, 0, key, file, Some((token, at, rendered_max_hold)));
            }
            Some(ks) => {
                let p = ks.lock_path.clone();
                file.release(Path::new(&*p));
            }
            None => {
                // Every waiter left meanwhile.
                let mut p = key.to_string();
                p.push_str(".lock");
                file.release(Path::new(&p));
            }
        }
    }

    /// The waiter thread failed for `key` with an OS error: fail the head.
    pub fn os_failed(&self, key: &Arc<str>, err: OsError) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(ks) = inner.keys.get_mut(key) else {
            return;
        };
        ks.contending = false;
        if let Some(w) = ks.waiters.pop_front() {
            inner.requests.remove(&w.request_id);
            Self::deliver(
                inner,
                0,
                w.ctx,
                Delivery {
                    request_id: w.request_id,
                    result: Err(err),
                },
            );
        }
        self.advance(inner, 0, key);
    }

    /// Drop holds and waiters matching the predicates (teardown, releaseAll).
    fn drop_where(
        &self,
        inner: &mut Inner,
        caller: CtxId,
        now: i64,
        hold: impl Fn(&Holder) -> bool,
        wait: impl Fn(&Waiter) -> bool,
    ) -> Vec<Dropped> {
        let mut out = Vec::new();
        let keys: Vec<Arc<str>> = inner.keys.keys().cloned().collect();
        for key in keys {
            let Some(ks) = inner.keys.get_mut(&key) else {
                continue;
            };
            let before = ks.waiters.len();
            let mut gone = Vec::new();
            ks.waiters.retain(|w| {
                let keep = !wait(w);
                if !keep {
                    gone.push(w.request_id);
                }
                keep
            });
            for r in gone {
                inner.requests.remove(&r);
            }
            let ks = inner.keys.get_mut(&key).expect("key");
            if let Some(h) = ks.holder.as_ref().filter(|h| hold(h)) {
                out.push(Dropped {
                    lock_path: ks.lock_path.clone(),
                    lease_ids: h.leases.clone(),
                    held_ms: now - h.acquired_at_ms,
                    max_hold_ms: h.max_hold_ms,
                });
                self.pass_on(inner, caller, &key);
            } else if before != ks.waiters.len() {
                Self::settle(inner, &key);
            }
        }
        out
    }

    /// Release every hold of a Node environment (thread), cancelling nothing
    /// that waits. Returns what was dropped.
    pub fn release_thread(&self, caller: CtxId, thread: ThreadId) -> Vec<Dropped> {
        let mut inner = self.lock();
        self.drop_where(
            &mut inner,
            caller,
            now_ms(),
            |h| h.thread == thread,
            |_| false,
        )
    }

    /// Release a thread's hold on one key, every reentrant level.
    pub fn release_key(&self, caller: CtxId, thread: ThreadId, key: &str) -> Option<Dropped> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let (k, ks) = inner.keys.get_key_value(key)?;
        let k = k.clone();
        let h = ks.holder.as_ref().filter(|h| h.thread == thread)?;
        let d = Dropped {
            lock_path: ks.lock_path.clone(),
            lease_ids: h.leases.clone(),
            held_ms: now_ms() - h.acquired_at_ms,
            max_hold_ms: h.max_hold_ms,
        };
        self.pass_on(inner, caller, &k);
        Some(d)
    }

    /// Force-release holds of `thread` held past their max hold at `now`.
    /// Returns them and the next deadline among the thread's remaining holds.
    pub fn expire(&self, caller: CtxId, thread: ThreadId, now: i64) -> (Vec<Dropped>, Option<i64>) {
        let mut inner = self.lock();
        let dropped = self.drop_where(
            &mut inner,
            caller,
            now,
            |h| {
                h.thread == thread
                    && h.max_hold_ms
                        .is_some_and(|m| now - h.acquired_at_ms >= m.min(i64::MAX as u64) as i64)
            },
            |_| false,
        );
        let next = Self::next_deadline_locked(&inner, thread);
        (dropped, next)
    }

    fn next_deadline_locked(inner: &Inner, thread: ThreadId) -> Option<i64> {
        inner
            .keys
            .values()
            .filter_map(|ks| ks.holder.as_ref())
            .filter(|h| h.thread == thread)
            .filter_map(|h| {
                h.max_hold_ms.map(|m| {
                    h.acquired_at_ms
                        .saturating_add(m.min(i64::MAX as u64) as i64)
                })
            })
            .min()
    }

    /// Is the lease still held (in this process's view)?
    pub fn lease_held(&self, lease_id: u64) -> bool {
        self.lock().leases.contains_key(&lease_id)
    }

    /// Is the lease still held, and does the lock path still name its file
    /// (one `lstat`)? `Err` with the reason otherwise.
    pub fn lease_owned(&self, lease_id: u64) -> Result<(), &'static str> {
        let inner = self.lock();
        let key = inner.leases.get(&lease_id).ok_or("no longer held")?;
        let ks = inner.keys.get(key).ok_or("no longer held")?;
        let h = ks.holder.as_ref().ok_or("no longer held")?;
        if !h.file.still_named_by(Path::new(&*ks.lock_path)) {
            return Err("lock file deleted or replaced");
        }
        Ok(())
    }

    /// Keep the payloads of `thread`'s holds fresh for old-module peers:
    /// every hold whose `createdAt` was written `older_than_ms` or more before
    /// `now` gets it rewritten to `now` (same token, same everything else,
    /// swapped in whole by [`LockFile::rewrite`]), with the file's
    /// mtime kept at the hold's real start. A hold whose path no longer names
    /// its file is not written; its lease ids are returned as lost.
    pub fn refresh(&self, thread: ThreadId, now: i64, older_than_ms: i64) -> Refreshed {
        let mut inner = self.lock();
        let mut out = Refreshed::default();
        let mut buf = String::new();
        for ks in inner.keys.values_mut() {
            let lock_path = ks.lock_path.clone();
            let Some(h) = ks.holder.as_mut().filter(|h| h.thread == thread) else {
                continue;
            };
            out.holds += 1;
            if now - h.file.created_ms < older_than_ms {
                continue;
            }
            if !h.file.still_named_by(Path::new(&*lock_path)) {
                // Never swap another holder's file out, even for a moment.
                out.lost
                    .extend(h.leases.iter().map(|&l| (l, lock_path.clone())));
                continue;
            }
            render_payload(&mut buf, now, h.max_hold_ms, &h.token);
            match h.file.rewrite(
                Path::new(&*lock_path),
                buf.as_bytes(),
                Some(h.acquired_at_ms),
                false,
            ) {
                Ok(lockfile::Rewrite::Done) => {
                    h.file.created_ms = now;
                    out.refreshed += 1;
                }
                Ok(lockfile::Rewrite::Lost) => {
                    out.lost
                        .extend(h.leases.iter().map(|&l| (l, lock_path.clone())));
                }
                Err(e) => out.errors.push(OsError::from_io(&e, "write", &lock_path)),
            }
        }
        out
    }

    /// Check a lease against the disk: `Ok` if held and the path still names
    /// our file with our token; otherwise the reason.
    pub fn lease_current(&self, lease_id: u64) -> Result<(), &'static str> {
        let inner = self.lock();
        let key = inner.leases.get(&lease_id).ok_or("released")?;
        let ks = inner.keys.get(key).ok_or("released")?;
        let h = ks.holder.as_ref().ok_or("released")?;
        if !h.file.still_named_by(Path::new(&*ks.lock_path)) {
            return Err("lock file deleted or replaced");
        }
        let p = h.file.read_payload();
        if p.fencing_token.as_deref() != Some(&*h.token) {
            return Err("fencing token changed");
        }
        Ok(())
    }

    /// The in-process holder of `key`, if any.
    pub fn holder_of(&self, key: &str) -> Option<HolderInfo> {
        let inner = self.lock();
        let ks = inner.keys.get(key)?;
        ks.holder.as_ref().map(|h| info(ks, h))
    }

    /// Every lock held in this process.
    pub fn list(&self) -> Vec<HolderInfo> {
        let inner = self.lock();
        let mut v: Vec<HolderInfo> = inner
            .keys
            .values()
            .filter_map(|ks| ks.holder.as_ref().map(|h| info(ks, h)))
            .collect();
        v.sort_by(|a, b| a.lock_path.cmp(&b.lock_path));
        v
    }

    /// Counts for diagnostics and tests: (keys, holders, waiters).
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let holders = inner.keys.values().filter(|k| k.holder.is_some()).count();
        let waiters = inner.keys.values().map(|k| k.waiters.len()).sum();
        (inner.keys.len(), holders, waiters)
    }
}

fn info(ks: &KeyState, h: &Holder) -> HolderInfo {
    HolderInfo {
        lock_path: ks.lock_path.to_string(),
        acquired_at_ms: h.acquired_at_ms,
        max_hold_ms: h.max_hold_ms,
        reentrant_count: h.leases.len() as u32,
        owner: h.owner.clone(),
        thread: h.thread,
        token: h.token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> String {
        let d = std::env::temp_dir().join(format!("swl-reg-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.to_str().unwrap().to_string()
    }

    fn req(
        ctx: CtxId,
        key: &str,
        thread: ThreadId,
        owner: Option<&str>,
        allow: bool,
    ) -> AcquireRequest {
        AcquireRequest {
            key: key.to_string(),
            lock_path: format!("{key}.lock"),
            ctx,
            thread,
            owner: owner.map(str::to_string),
            allow_reentrant: allow,
            max_hold_ms: Some(300_000),
            stale_ms: 1_800_000,
        }
    }

    fn granted(o: AcquireOutcome) -> Grant {
        match o {
            AcquireOutcome::Granted(g) => g,
            AcquireOutcome::Pending(r) => panic!("pending {r}"),
        }
    }

    fn pending(o: AcquireOutcome) -> u64 {
        match o {
            AcquireOutcome::Pending(r) => r,
            AcquireOutcome::Granted(_) => panic!("granted"),
        }
    }

    #[test]
    fn fifo_hand_off_in_place_with_new_tokens() {
        let reg = global();
        let ctx = reg.register_ctx(None);
        let key = format!("{}/s.jsonl", dir("fifo"));
        let first = granted(reg.acquire(req(ctx, &key, 1, None, false)).unwrap());
        let waits: Vec<u64> = (0..5)
            .map(|_| pending(reg.acquire(req(ctx, &key, 1, None, false)).unwrap()))
            .collect();
        let mut lease = first.lease_id;
        let mut token = first.token.clone();
        for expected in &waits {
            assert_eq!(reg.release_lease_and_peek(ctx, lease), (true, true));
            let d = reg.take_deliveries(ctx);
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].request_id, *expected, "strict FIFO");
            let g = d[0].result.as_ref().unwrap();
            assert_ne!(g.token, token, "a new holder gets a new token");
            let on_disk = crate::payload::parse(&std::fs::read(format!("{key}.lock")).unwrap());
            assert_eq!(on_disk.fencing_token.as_deref(), Some(&*g.token));
            lease = g.lease_id;
            token = g.token.clone();
        }
        assert!(reg.release_lease(ctx, lease));
        assert!(!std::path::Path::new(&format!("{key}.lock")).exists());
        assert!(!reg.release_lease(ctx, lease), "a lease releases once");
        reg.unregister_ctx(ctx);
    }

    #[test]
    fn reentrancy_needs_same_thread_and_owner_rules() {
        let reg = global();
        let ctx = reg.register_ctx(None);
        let key = format!("{}/s.jsonl", dir("reent"));
        let a = granted(reg.acquire(req(ctx, &key, 7, Some("o"), false)).unwrap());
        // Same owner: reenters (shares the token).
        let b = granted(reg.acquire(req(ctx, &key, 7, Some("o"), false)).unwrap());
        assert_eq!(a.token, b.token);
        // allowReentrant while the holder has an owner: waits.
        let w1 = pending(reg.acquire(req(ctx, &key, 7, None, true)).unwrap());
        // Another thread with the same owner: waits.
        let w2 = pending(reg.acquire(req(ctx, &key, 8, Some("o"), false)).unwrap());
        assert!(reg.cancel(w1) && reg.cancel(w2));
        assert!(!reg.cancel(w1), "cancel is once");
        assert!(reg.release_lease(ctx, a.lease_id));
        assert!(
            std::path::Path::new(&format!("{key}.lock")).exists(),
            "one level left"
        );
        assert!(reg.release_lease(ctx, b.lease_id));
        assert!(!std::path::Path::new(&format!("{key}.lock")).exists());
        // Holder without owner: allowReentrant reenters on the same thread only.
        let c = granted(reg.acquire(req(ctx, &key, 7, None, false)).unwrap());
        let d = granted(reg.acquire(req(ctx, &key, 7, None, true)).unwrap());
        let w3 = pending(reg.acquire(req(ctx, &key, 9, None, true)).unwrap());
        assert_eq!(
            reg.release_thread(ctx, 7).len(),
            1,
            "one lock file, every level"
        );
        let got = reg.take_deliveries(ctx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].request_id, w3);
        let e = got[0].result.as_ref().unwrap().lease_id;
        assert!(!reg.lease_held(c.lease_id) && !reg.lease_held(d.lease_id));
        assert!(reg.release_lease(ctx, e));
        reg.unregister_ctx(ctx);
    }
}
