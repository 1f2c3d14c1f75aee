//! The mailbox of each context (module instance): its outbox of grants and
//! failures for pending requests, and the waker that tells it to drain the
//! outbox when a delivery comes from another context or thread. Wakers run
//! after the registry's lock is released, never under it.

use super::{CtxId, CtxState, Delivery, Inner, Registry, Waker};
use crate::acquire::now_ms;

impl Registry {
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

    /// Whether deliveries wait in `ctx`'s outbox.
    pub fn has_deliveries(&self, ctx: CtxId) -> bool {
        self.lock()
            .ctxs
            .get(&ctx)
            .is_some_and(|c| !c.outbox.is_empty())
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

    pub(super) fn deliver(inner: &mut Inner, caller: CtxId, to: CtxId, d: Delivery) {
        let Some(c) = inner.ctxs.get_mut(&to) else {
            // The context is gone: a grant must not leak the lock.
            return;
        };
        c.outbox.push(d);
        if to != caller && !c.wake_pending {
            if let Some(w) = &c.waker {
                c.wake_pending = true;
                // Called once the registry's lock is released (`Locked`).
                inner.wakes.push(w.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{global, AcquireOutcome, AcquireRequest};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn req(ctx: u64, key: &str) -> AcquireRequest {
        AcquireRequest {
            key: key.into(),
            lock_path: format!("{key}.lock").into(),
            ctx,
            thread: ctx,
            owner: None,
            allow_reentrant: false,
            max_hold_ms: None,
            stale_ms: 1_800_000,
        }
    }

    /// A context woken for a delivery takes it under the registry's lock at
    /// once: its waker must run after that lock is released, or the woken
    /// thread goes back to sleep on the mutex.
    #[test]
    fn a_waker_runs_after_the_registry_lock_is_released() {
        let reg = global();
        let (calls, free) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, f) = (calls.clone(), free.clone());
        let waker: super::Waker = Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            if global().inner.try_lock().is_ok() {
                f.fetch_add(1, Ordering::SeqCst);
            }
        });
        let holder = reg.register_ctx(None);
        let waiter = reg.register_ctx(Some(waker));
        let d = std::env::temp_dir().join(format!("swl-mailbox-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let key = format!("{}/s.jsonl", d.display());
        let AcquireOutcome::Granted(g) = reg.acquire(req(holder, &key)).unwrap() else {
            panic!("not granted");
        };
        let AcquireOutcome::Pending(r) = reg.acquire(req(waiter, &key)).unwrap() else {
            panic!("not pending");
        };
        assert!(reg.release_lease(holder, g.lease_id));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "woken once");
        assert_eq!(free.load(Ordering::SeqCst), 1, "woken outside the lock");
        let ds = reg.take_deliveries(waiter);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].request_id, r);
        reg.unregister_ctx(waiter);
        reg.unregister_ctx(holder);
        let _ = std::fs::remove_dir_all(&d);
    }
}
