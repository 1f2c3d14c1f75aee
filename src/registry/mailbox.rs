//! The mailbox of each context (module instance): its outbox of grants and
//! failures for pending requests, and the waker that tells it to drain the
//! outbox when a delivery comes from another context or thread.

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
                w();
            }
        }
    }
}
