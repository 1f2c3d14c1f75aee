//! The per-key queue state machine: acquire or queue, cancel, release a
//! lease, and hand the OS lock to the next request in line (in place, with a
//! new token) or let the head contend for it at the OS level (the waiting
//! thread reports back through [`Waiters`]).

use std::collections::VecDeque;
use std::sync::Arc;

use super::{
    AcquireOutcome, AcquireRequest, CtxId, Delivery, Grant, Holder, Inner, KeyState, Queued,
    Registry, ThreadId,
};
use crate::acquire::{self, now_ms, Written};
use crate::lockfile::{self, Attempt, LockFile};
use crate::oserror::OsError;
use crate::wait_thread::{self, HeadSettings, Waiters};

/// An in-process hand-off keeps the payload's `createdAt` when it is younger
/// than this (the refresh keeps held payloads fresh anyway).
const HANDOFF_KEEP_CREATED_MS: i64 = 15_000;

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
    /// Acquire, or queue.
    pub fn acquire(&self, req: AcquireRequest) -> Result<AcquireOutcome, OsError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(key) = inner.keys.get_key_value(&*req.key).map(|(k, _)| k.clone()) {
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
            ks.queue.push_back(Queued::new(request_id, req));
            inner.requests.insert(request_id, key);
            return Ok(AcquireOutcome::Pending(request_id));
        }
        // Nobody here holds or waits: try the OS lock now.
        let (attempt, written) =
            acquire::os_attempt(&req.lock_path, None, req.stale_ms, req.max_hold_ms)?;
        let (token, at) = (written.token, written.at_ms);
        let key = req.key.clone();
        let lock_path = req.lock_path.clone();
        let id = self.id();
        let mut ks = KeyState {
            lock_path: lock_path.clone(),
            holder: None,
            queue: VecDeque::new(),
            contending: false,
        };
        let w = Queued::new(id, req);
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
                wait_thread::contend(self.reporter(), key.clone(), lock_path, Some(wait))?;
                ks.queue.push_back(w);
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
            ks.queue.retain(|w| w.request_id != request_id);
        }
        Self::settle(inner, &key);
        true
    }

    /// After waiters left: stop contending for an empty queue, drop idle keys.
    pub(super) fn settle(inner: &mut Inner, key: &Arc<str>) {
        let Some(ks) = inner.keys.get_mut(key) else {
            return;
        };
        if ks.holder.is_none() && ks.queue.is_empty() {
            if ks.contending {
                wait_thread::stop(key.clone());
            }
            inner.keys.remove(key);
        }
    }

    /// Release one lease; `true` if it dropped a hold. A waiter that gets
    /// the lock is delivered to its context (see [`Registry::has_deliveries`]
    /// for the caller's own).
    pub fn release_lease(&self, caller: CtxId, lease_id: u64) -> bool {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(key) = inner.leases.remove(&lease_id) else {
            return false;
        };
        if let Some(h) = inner.keys.get_mut(&key).and_then(|ks| ks.holder.as_mut()) {
            h.leases.retain(|&l| l != lease_id);
            if h.leases.is_empty() {
                self.pass_on(inner, caller, &key);
            }
        }
        true
    }

    /// [`Registry::release_lease`], then take back the first delivery in the
    /// caller's outbox when it is a grant of the same lock (the one this
    /// release made, when it handed the lock to a waiter of the caller's own
    /// context; its lock path is the released lease's): the caller
    /// settles it directly, and what else is in the outbox is delivered as
    /// usual. Whatever it takes is settled by the caller exactly once, like
    /// anything `take_deliveries` returns.
    pub fn release_lease_own(&self, caller: CtxId, lease_id: u64) -> (bool, Option<(u64, Grant)>) {
        let lock_path = {
            let inner = self.lock();
            inner
                .leases
                .get(&lease_id)
                .and_then(|k| inner.keys.get(k))
                .map(|ks| ks.lock_path.clone())
        };
        let dropped = self.release_lease(caller, lease_id);
        let Some(lock_path) = lock_path.filter(|_| dropped) else {
            return (dropped, None);
        };
        let mut inner = self.lock();
        let Some(c) = inner.ctxs.get_mut(&caller) else {
            return (dropped, None);
        };
        // Only a grant of the same lock (the caller knows its path); a grant
        // of another lock that reached the outbox meanwhile goes the usual way.
        if !matches!(c.outbox.first(), Some(Delivery { result: Ok(g), .. }) if g.lock_path == lock_path)
        {
            return (dropped, None);
        }
        let d = c.outbox.remove(0);
        match d.result {
            Ok(g) => (dropped, Some((d.request_id, g))),
            Err(_) => unreachable!("checked: a grant"),
        }
    }

    /// The holder of `key` is done (all levels gone, or forced): hand the OS
    /// lock to the next waiter in line, or release it.
    pub(super) fn pass_on(&self, inner: &mut Inner, caller: CtxId, key: &Arc<str>) {
        let Some(ks) = inner.keys.get_mut(key) else {
            return;
        };
        let lock_path = ks.lock_path.clone();
        let Some(h) = ks.holder.take() else {
            return;
        };
        for l in &h.leases {
            inner.leases.remove(l);
        }
        self.grant_head(inner, caller, key, &lock_path, h.file, None);
    }

    /// No in-process holder: let the head waiter take the OS lock now, or
    /// start contending for it.
    pub(super) fn advance(&self, inner: &mut Inner, caller: CtxId, key: &Arc<str>) {
        loop {
            let Some(ks) = inner.keys.get_mut(key) else {
                return;
            };
            if ks.holder.is_some() || ks.contending {
                return;
            }
            let Some(w) = ks.queue.front() else {
                inner.keys.remove(key);
                return;
            };
            let lock_path = ks.lock_path.clone();
            let max_hold = w.max_hold_ms;
            let err = match acquire::os_attempt(&lock_path, None, w.stale_ms, max_hold) {
                Ok((Attempt::Acquired(file), written)) => {
                    self.grant_head(inner, caller, key, &lock_path, file, Some(written));
                    return;
                }
                Ok((Attempt::Busy(wait), _)) => {
                    match wait_thread::contend(self.reporter(), key.clone(), lock_path, Some(wait))
                    {
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
            let w = ks.queue.pop_front().expect("head");
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

    /// Give `file`, the OS lock of `key` at `lock_path`, to the head of its
    /// queue: it becomes the holder and its grant is delivered. `written` is
    /// what the file's payload already carries (a fresh acquisition); any
    /// other head gets a new token and a rewritten payload (an in-process
    /// hand-off). If that write fails, the head gets the error and the next
    /// request tries afresh. With nobody left, the lock is released.
    fn grant_head(
        &self,
        inner: &mut Inner,
        caller: CtxId,
        key: &Arc<str>,
        lock_path: &Arc<str>,
        mut file: LockFile,
        written: Option<Written>,
    ) {
        let lock_path = lock_path.clone();
        let Some(ks) = inner.keys.get_mut(key) else {
            file.release(&lock_path);
            return;
        };
        if ks.queue.is_empty() {
            file.release(&lock_path);
            inner.keys.remove(key);
            return;
        }
        if written.is_none() && !file.still_named_by(&lock_path) {
            // The file being handed over was deleted or replaced (an `rm`, a
            // reclaim): it excludes nobody any more. Drop it without touching
            // the path, and let the head contend afresh at the OS level.
            file.abandon();
            self.advance(inner, caller, key);
            return;
        }
        let w = ks.queue.pop_front().expect("not empty");
        inner.requests.remove(&w.request_id);
        let (token, at) = match written {
            Some(Written {
                token,
                at_ms,
                max_hold_ms,
            }) if max_hold_ms == w.max_hold_ms => {
                file.created_ms = at_ms;
                (token, at_ms)
            }
            _ => {
                let token = acquire::new_token();
                let at = now_ms();
                // A recent createdAt is kept (old-module peers only need it
                // fresh), so that a hand-off between holders of the same
                // maxHoldMs changes hex digits only and is rewritten in place.
                let keep = written.is_none()
                    && (0..HANDOFF_KEEP_CREATED_MS).contains(&(at - file.created_ms));
                let created = if keep { file.created_ms } else { at };
                let mut buf = String::with_capacity(320);
                acquire::render_payload(&mut buf, created, w.max_hold_ms, &token);
                match file.rewrite(&lock_path, buf.as_bytes(), None, keep) {
                    Ok(lockfile::Rewrite::Done) => file.created_ms = created,
                    Ok(lockfile::Rewrite::Lost) => {
                        // Deleted or replaced under us: nobody gets this file.
                        ks.queue.push_front(w);
                        inner.requests.insert(ks.queue[0].request_id, key.clone());
                        file.abandon();
                        self.advance(inner, caller, key);
                        return;
                    }
                    Err(e) => {
                        let err = OsError::from_io(&e, "write", &lock_path);
                        file.release(&lock_path);
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
}

impl Registry {
    /// What the waiting thread reports to: this registry, which is the
    /// process's one ([`super::global`] is the only way to get one).
    fn reporter(&self) -> &'static dyn Waiters {
        let me = super::global();
        debug_assert!(std::ptr::eq(self, me));
        me
    }
}

impl Waiters for Registry {
    fn head(&self, key: &str) -> Option<HeadSettings> {
        let inner = self.lock();
        let ks = inner.keys.get(key)?;
        if ks.holder.is_some() {
            return None;
        }
        ks.queue.front().map(|w| HeadSettings {
            stale_ms: w.stale_ms,
            max_hold_ms: w.max_hold_ms,
        })
    }

    fn acquired(&self, key: &Arc<str>, lock_path: &Arc<str>, file: LockFile, written: Written) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        match inner.keys.get_mut(key) {
            Some(ks) if ks.contending && ks.holder.is_none() => {
                ks.contending = false;
                self.grant_head(inner, 0, key, lock_path, file, Some(written));
            }
            // Held here meanwhile, or every request left: not needed.
            _ => file.release(lock_path),
        }
    }

    fn failed(&self, key: &Arc<str>, err: OsError) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(ks) = inner.keys.get_mut(key) else {
            return;
        };
        ks.contending = false;
        if let Some(w) = ks.queue.pop_front() {
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
}
