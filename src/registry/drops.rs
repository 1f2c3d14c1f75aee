//! Bulk drops: every hold (and wait) of a context or thread, one key's hold
//! at every reentrant level, and the watchdog's holds past their max hold.

use std::sync::Arc;

use super::{CtxId, Dropped, Holder, Inner, Queued, Registry, ThreadId};
use crate::acquire::now_ms;

impl Registry {
    /// Drop holds and waiters matching the predicates (teardown, releaseAll).
    pub(super) fn drop_where(
        &self,
        inner: &mut Inner,
        caller: CtxId,
        now: i64,
        hold: impl Fn(&Holder) -> bool,
        wait: impl Fn(&Queued) -> bool,
    ) -> Vec<Dropped> {
        let mut out = Vec::new();
        let keys: Vec<Arc<str>> = inner.keys.keys().cloned().collect();
        for key in keys {
            let Some(ks) = inner.keys.get_mut(&key) else {
                continue;
            };
            let before = ks.queue.len();
            let mut gone = Vec::new();
            ks.queue.retain(|w| {
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
            } else if before != ks.queue.len() {
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

    pub(super) fn next_deadline_locked(inner: &Inner, thread: ThreadId) -> Option<i64> {
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
}
