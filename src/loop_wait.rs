//! Cross-process waits woken on the JS thread's own event loop (Linux).
//!
//! The waiting thread (`wait_thread`) covers every contended key; for the
//! head waiter of an env that waits on its own loop as well, the env's
//! [`sys::LoopWatch`] (an inotify descriptor polled by libuv) watches the
//! lock file, and its release wakes the JS thread itself, which makes the
//! attempt there ([`wait_thread::attempt_here`]): one kernel wake-up reaches
//! the thread that resolves the promise. The waiting thread, woken by the
//! same event, leaves the attempt to the JS thread for
//! [`wait_thread::DEFER_TO_LOOP`] and stays the robust path (fallback polls,
//! old-module files, a busy JS thread, other envs, other platforms).
//!
//! Guarantees: attempts stay one at a time per key (the slot's claim), the
//! lock obtained goes to the registry like the waiting thread's; a key is
//! unwatched once its contention ends; nothing here keeps the loop alive,
//! and the env's teardown closes the watcher. Not guaranteed: the fast path
//! (a watcher that cannot start leaves every wait to the waiting thread).

use crate::fasthash::FastMap;
use std::cell::RefCell;
use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::lockfile;
use crate::sys::{Fired, LoopWatch, WatchId};
use crate::wait_thread::{self, Here};

struct Loop {
    watch: LoopWatch,
    by_wd: FastMap<WatchId, Vec<Arc<str>>>,
    /// Each watched key: its lock path, its watch, and the contention
    /// (`wait_thread::contention`) it was watched for.
    keys: FastMap<Arc<str>, (Arc<str>, WatchId, u64)>,
    /// What [`on_fire`]'s grants let go of, kept until [`after_fire`] (the
    /// promises they resolved have run their continuations): watches to
    /// remove (unless watched again meanwhile) and descriptors to close.
    later_unwatch: Vec<WatchId>,
    later_close: Vec<File>,
}

thread_local! {
    static LOOP: RefCell<Option<Loop>> = const { RefCell::new(None) };
}

/// Watchers running (test seam).
static WATCHERS: AtomicU32 = AtomicU32::new(0);

/// The watchers running in the process, the locks obtained on a JS
/// thread's loop so far, and the attempts made for contended keys so far
/// (for tests).
pub fn counts() -> (u32, u32, u32) {
    (
        WATCHERS.load(Ordering::Relaxed),
        wait_thread::OBTAINED_HERE.load(Ordering::Relaxed),
        wait_thread::ATTEMPTS.load(Ordering::Relaxed),
    )
}

/// Whether this thread's watcher runs.
pub fn installed() -> bool {
    LOOP.with(|l| l.borrow().is_some())
}

/// Keep `watch`, just started on this thread's env.
pub fn install(watch: LoopWatch) {
    WATCHERS.fetch_add(1, Ordering::Relaxed);
    LOOP.with(|l| {
        *l.borrow_mut() = Some(Loop {
            watch,
            by_wd: FastMap::default(),
            keys: FastMap::default(),
            later_unwatch: Vec::new(),
            later_close: Vec::new(),
        })
    });
}

/// The env goes: forget the watcher (its handle closes after this).
pub fn on_teardown() {
    if let Some(lp) = LOOP.with(|l| l.borrow_mut().take()) {
        WATCHERS.fetch_sub(1, Ordering::Relaxed);
        for k in lp.keys.keys() {
            wait_thread::unwatch_on_loop(k);
        }
    }
}

impl Loop {
    fn unwatch(&mut self, key: &Arc<str>) {
        if let Some((_, wd, _)) = self.keys.remove(key) {
            self.drop_wd(key, wd, false);
        }
    }

    /// Stop watching `key`, whose wait a grant just ended: its watch is
    /// removed in [`after_fire`].
    fn unwatch_after_fire(&mut self, key: &Arc<str>) {
        if let Some((_, wd, _)) = self.keys.remove(key) {
            self.drop_wd(key, wd, true);
        }
    }

    fn drop_wd(&mut self, key: &Arc<str>, wd: WatchId, after_fire: bool) {
        if let Some(v) = self.by_wd.get_mut(&wd) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_wd.remove(&wd);
                if after_fire {
                    self.later_unwatch.push(wd);
                } else {
                    self.watch.remove(wd);
                }
            }
        }
    }

    /// Watch the file now at `lock_path` for `key`, contention `id`; `false`
    /// if it cannot be.
    fn watch(&mut self, key: &Arc<str>, lock_path: &Arc<str>, id: u64) -> bool {
        let added = if wait_thread::loop_watch_fails() {
            Err(0)
        } else {
            self.watch.add(lock_path)
        };
        let Ok(wd) = added else {
            // Not watchable from here (gone, or no watch left): the waiting
            // thread watches it again.
            self.unwatch(key);
            wait_thread::unwatch_on_loop(key);
            return false;
        };
        match self.keys.insert(key.clone(), (lock_path.clone(), wd, id)) {
            Some((_, old, _)) if old != wd => self.drop_wd(key, old, false),
            _ => {}
        }
        let v = self.by_wd.entry(wd).or_default();
        if !v.iter().any(|k| k == key) {
            v.push(key.clone());
        }
        true
    }
}

/// Watch `key`, which the caller's request now contends for at the OS
/// level, on this thread's loop (when its watcher runs).
pub fn watch(key: Arc<str>) {
    LOOP.with(|l| {
        let mut l = l.borrow_mut();
        let Some(lp) = l.as_mut() else {
            return;
        };
        // Keys whose contention ended without an event here, `key` too if
        // its watch is from an earlier contention: that watch may hold
        // events of our own (a timed-out wait's payload read, the close of
        // the descriptor it kept), which would wake this contention for
        // nothing (an attempt that spins). Removed and added again, the
        // watch gets a new id (inotify does not reuse them at once), so the
        // queued events match nothing.
        let ended: Vec<Arc<str>> = lp
            .keys
            .iter()
            .filter(|(k, (_, _, id))| wait_thread::contention(k).map(|c| c.0) != Some(*id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            lp.unwatch(&k);
        }
        // Watch first, then tell the waiting thread to defer: a release
        // between the two is seen by the watch.
        let Some((id, lock_path)) = wait_thread::contention(&key) else {
            return;
        };
        if lp.watch(&key, &lock_path, id) && wait_thread::watch_on_loop(&key).is_none() {
            lp.unwatch(&key);
        }
    });
}

/// The watcher saw `fired`: attempt each key whose file changed.
pub fn on_fire(fired: &[Fired]) {
    let keys: Vec<(Arc<str>, Arc<str>, u64)> = LOOP.with(|l| {
        let mut l = l.borrow_mut();
        let Some(lp) = l.as_mut() else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for f in fired {
            if let Some(v) = lp.by_wd.get(&f.id) {
                for k in v {
                    if !keys.iter().any(|(x, _, _)| x == k) {
                        if let Some((p, _, id)) = lp.keys.get(k) {
                            keys.push((k.clone(), p.clone(), *id));
                        }
                    }
                }
            }
            if f.dropped {
                if let Some(v) = lp.by_wd.remove(&f.id) {
                    for k in v {
                        if lp.keys.get(&k).is_some_and(|(_, wd, _)| *wd == f.id) {
                            lp.keys.remove(&k);
                        }
                    }
                }
            }
        }
        keys
    });
    // Attempts run with no borrow held: handing a lock over may call back
    // into this module (a release that contends again).
    for (key, lock_path, id) in keys {
        let (here, retired) = lockfile::defer_closes(|| wait_thread::attempt_here(&key));
        LOOP.with(|l| {
            let mut l = l.borrow_mut();
            let Some(lp) = l.as_mut() else {
                return;
            };
            lp.later_close.extend(retired);
            match here {
                Here::Done => lp.unwatch_after_fire(&key),
                // The path may name a new file now: watch that one (a
                // dropped watch is re-added here too).
                Here::Busy => {
                    lp.watch(&key, &lock_path, id);
                }
                Here::Skipped => {
                    if !lp.keys.contains_key(&key) {
                        lp.watch(&key, &lock_path, id);
                    }
                }
            }
        });
    }
}

/// The callback that ran [`on_fire`] has closed its scope: the grants it
/// delivered have resolved their promises and run their continuations. Now
/// remove the watches and close the descriptors that firing let go of.
///
/// Why later: both free a watched inode's inotify mark, and the kernel hands
/// that teardown to a kernel worker it wakes at once, which on a busy CPU
/// preempts the JS thread between the grant and the waiter's continuation
/// (seen in scheduler traces of a cross-process hand-off: every hand-off
/// woke one, and the close of the unlinked file's descriptor was that
/// call). Nothing here is needed for the grant: the lock was taken on a new
/// descriptor, and a stale watch only fires spuriously (ignored: its key is
/// gone from `by_wd`).
pub fn after_fire() {
    let close = LOOP.with(|l| {
        let mut l = l.borrow_mut();
        let Some(lp) = l.as_mut() else {
            return Vec::new();
        };
        for wd in std::mem::take(&mut lp.later_unwatch) {
            // A key watched again meanwhile (a continuation contending for
            // the same file) got the same watch back: keep it.
            if !lp.by_wd.contains_key(&wd) {
                lp.watch.remove(wd);
            }
        }
        std::mem::take(&mut lp.later_close)
    });
    drop(close);
}
