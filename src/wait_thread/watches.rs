//! The change watches of the waiting thread: one per contended lock file
//! (keys sharing an inode share a watch), through the platform's
//! `sys::ChangeWatcher`; without one, every wait polls.

use crate::fasthash::FastMap;
use std::sync::Arc;

use super::start::injected_add_watch_failures;
use super::{FALLBACK_POLL, PORTABLE_POLL};
use crate::sys::{errno, ChangeWatcher, WakeReceiver, WatchId};

pub(super) struct Watches {
    /// `None`: no change notification here; every wait polls.
    watcher: Option<ChangeWatcher>,
    by_wd: FastMap<WatchId, Vec<Arc<str>>>,
    /// Test seam: watches left to fail (see
    /// [`injected_add_watch_failures`]).
    fail_add_watch: u32,
}

impl Watches {
    pub(super) fn new(watcher: Option<ChangeWatcher>) -> Self {
        let fail_add_watch = if watcher.is_some() {
            injected_add_watch_failures()
        } else {
            0
        };
        Watches {
            watcher,
            by_wd: FastMap::default(),
            fail_add_watch,
        }
    }

    pub(super) fn available(&self) -> bool {
        self.watcher.is_some()
    }

    /// Watch the file currently at `path` for `key`; returns the watch, or
    /// `None` when it cannot be watched (the caller then polls; a failure
    /// other than `ENOENT` is said once per process on stderr).
    pub(super) fn watch(
        &mut self,
        key: &Arc<str>,
        path: &str,
        old: Option<WatchId>,
    ) -> Option<WatchId> {
        let watcher = self.watcher.as_mut()?;
        let wd = if self.fail_add_watch > 0 {
            self.fail_add_watch -= 1;
            Err(errno::ENOSPC)
        } else {
            watcher.add(path)
        };
        let new = match wd {
            Ok(wd) => Some(wd),
            Err(errno) => {
                if errno != errno::ENOENT {
                    report_watch_failed(errno, path);
                }
                None
            }
        };
        if new != old {
            if let Some(o) = old {
                self.unwatch(key, o);
            }
            if let Some(n) = new {
                let v = self.by_wd.entry(n).or_default();
                if !v.iter().any(|k| k == key) {
                    v.push(key.clone());
                }
            }
        }
        new
    }

    pub(super) fn unwatch(&mut self, key: &Arc<str>, wd: WatchId) {
        if let Some(v) = self.by_wd.get_mut(&wd) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_wd.remove(&wd);
                if let Some(w) = self.watcher.as_mut() {
                    w.remove(wd);
                }
            }
        }
    }

    /// Block until woken, a watch fires or `timeout_ms` passes; returns the
    /// keys whose files changed (to retry now).
    pub(super) fn wait(&mut self, wake: &WakeReceiver, timeout_ms: Option<u32>) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        let Some(watcher) = self.watcher.as_mut() else {
            wake.wait(timeout_ms);
            return due;
        };
        let mut fired = Vec::new();
        watcher.wait(wake, timeout_ms, &mut fired);
        for f in fired {
            if let Some(keys) = self.by_wd.get(&f.id) {
                due.extend(keys.iter().cloned());
            }
            if f.dropped {
                // The watch is gone (inode gone); the id may be reused, so
                // forget it.
                self.by_wd.remove(&f.id);
            }
        }
        due
    }
}

/// Say once per process that a lock file could not be watched, so waits
/// for it poll ([`super::unwatched_poll`]) instead of waking on its events.
/// `ENOENT` is not reported: the file was just removed (its holder released),
/// and the next attempt runs at once.
fn report_watch_failed(errno: i32, path: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "[session-write-lock] {} failed with {} for {}{}: waits for a lock file that cannot be watched fall back to polling (every {} ms, slowing to {} ms; said once per process)",
            ChangeWatcher::WATCH_SYSCALL,
            crate::oserror::code_of(errno),
            path,
            ChangeWatcher::limit_hint(errno),
            PORTABLE_POLL.as_millis(),
            FALLBACK_POLL.as_millis()
        );
    });
}
