//! The waiting thread: takes OS locks held by other processes as soon as they
//! are freed, for the head waiter of each contended key.
//!
//! Design: one thread for the whole process (started on first contention),
//! never one of Node's libuv pool threads, so blocked acquisitions cannot
//! starve `fs`, `dns` or `zlib`. For each contended key it keeps one open,
//! unlocked descriptor of the lock file and an inotify watch on its inode. A
//! holder that releases (unlink, close) or dies (the kernel closes its
//! descriptors) produces `IN_ATTRIB` / `IN_CLOSE_WRITE` on that inode, which
//! wakes the thread to retry `flock(LOCK_NB)` within microseconds. A blocking
//! `flock` per key would be as fast but cannot be cancelled without signals;
//! this design cancels by dropping a descriptor.
//!
//! Our retries reuse the kept descriptor (no open/close churn, so waiters do
//! not wake each other), and a fallback poll (every [`FALLBACK_POLL`], or
//! [`LEGACY_POLL`] for a file held by the old module, which offers no OS lock
//! and no close event) covers file systems where inotify stays silent. A
//! lock file that cannot be watched (`inotify_add_watch` fails: `ENOSPC` when
//! `fs.inotify.max_user_watches` is used up, `EACCES`, ...) is polled (see
//! [`unwatched_poll`]), and the process says so once on stderr.
//! On macOS kqueue plays inotify's part (`sys::ChangeWatcher`); where a
//! platform has no change notification the thread polls every
//! [`PORTABLE_POLL`].
//!
//! The thread knows nothing of queues: whoever asks it to contend for a key
//! passes the [`Waiters`] it reports to (the registry), which says who waits
//! first and takes every lock obtained.
//!
//! Guarantees: at most one attempt in flight per key; a key nobody waits for
//! any more is dropped with its descriptor and watch; every OS lock obtained
//! is handed to its [`Waiters`], which gives it to the current head of the
//! queue or releases it. Not guaranteed: wake-ups on network file systems
//! faster than the fallback poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::acquire::{self, Written};
use crate::lockfile::{Attempt, LockFile, WaitFile};
use crate::oserror::OsError;
use crate::sys::{self, ChangeWatcher, WakeReceiver, WakeSender, WatchId};

mod start;
mod watches;

use start::shared;
use watches::Watches;

/// The settings of the request that waits first for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSettings {
    /// How old an old-module file must be to count as stale.
    pub stale_ms: u64,
    /// The `maxHoldMs` its payload records (`None`: never force-released).
    pub max_hold_ms: Option<u64>,
}

/// The waiters of the keys this thread contends for: what the thread asks
/// before each attempt and tells after one that ended. Called on the waiting
/// thread, never while it holds anything of its own.
pub trait Waiters: Sync {
    /// Who waits first for `key` now; `None` when nobody does any more (the
    /// thread then drops the key).
    fn head(&self, key: &str) -> Option<HeadSettings>;
    /// The OS lock of `key` at `lock_path` was obtained, its payload
    /// carrying `written`. The callee owns `file` from here: it gives it to
    /// the head of the queue, or releases it at `lock_path`.
    fn acquired(&self, key: &Arc<str>, lock_path: &Arc<str>, file: LockFile, written: Written);
    /// The attempt for `key` failed with an OS error (the head gets it).
    fn failed(&self, key: &Arc<str>, err: OsError);
}

/// Fallback poll for a lock held through the OS lock elsewhere.
pub const FALLBACK_POLL: Duration = Duration::from_millis(50);
/// Poll for a file held by the old module (no OS lock, no close event).
pub const LEGACY_POLL: Duration = Duration::from_millis(25);
/// Poll where no change notification is available.
pub const PORTABLE_POLL: Duration = Duration::from_millis(5);

enum Cmd {
    Contend {
        to: &'static dyn Waiters,
        key: Arc<str>,
        lock_path: Arc<str>,
        wait: Option<WaitFile>,
    },
    Stop {
        key: Arc<str>,
    },
}

struct Shared {
    cmds: Mutex<Vec<Cmd>>,
    wake: WakeSender,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn send(s: &Shared, cmd: Cmd) {
    s.cmds.lock().unwrap_or_else(|e| e.into_inner()).push(cmd);
    s.wake.wake();
}

/// Start contending for `key` (lock file `lock_path`) on behalf of the
/// head of its queue in `to`. `wait` is the descriptor of the busy attempt
/// that led here. Fails (dropping `wait`) when the waiting machinery cannot
/// be started; the caller then fails the acquire that needed it.
pub fn contend(
    to: &'static dyn Waiters,
    key: Arc<str>,
    lock_path: Arc<str>,
    wait: Option<WaitFile>,
) -> Result<(), OsError> {
    let s = shared(&lock_path)?;
    send(
        s,
        Cmd::Contend {
            to,
            key,
            lock_path,
            wait,
        },
    );
    Ok(())
}

/// Stop contending for `key` (its queue emptied).
pub fn stop(key: Arc<str>) {
    // Contention ran, so the machinery exists.
    if let Some(s) = SHARED.get() {
        send(s, Cmd::Stop { key });
    }
}

struct Entry {
    to: &'static dyn Waiters,
    lock_path: Arc<str>,
    wait: Option<WaitFile>,
    wd: Option<WatchId>,
    due: Instant,
    /// Quick retries left after a wake-up whose attempt still found the lock
    /// busy (see [`RETRY_AFTER_WAKE`]).
    quick: u8,
    /// Polls in a row while its file could not be watched (see
    /// [`unwatched_poll`]).
    unwatched: u8,
    /// The next attempt must (re)watch the path first: the entry is new, so
    /// its watch (if any) may be on an inode the caller's busy attempt never
    /// saw. Afterwards each busy attempt leaves the path's current inode
    /// watched, and a change to the path fires on that watch.
    rewatch: bool,
}

/// The poll interval of a file that cannot be watched although inotify
/// works (`inotify_add_watch` failed): [`PORTABLE_POLL`], doubling with each
/// busy poll up to [`FALLBACK_POLL`], so a short hold is still followed
/// closely while many such waits do not each cost 200 attempts a second.
fn unwatched_poll(n: u8) -> Duration {
    (PORTABLE_POLL * (1u32 << n.min(4))).min(FALLBACK_POLL)
}

/// Linux sends the close event of a dying holder's descriptor just before it
/// drops the descriptor's `flock` (`__fput`: `fsnotify_close`, then
/// `locks_remove_file`). A waiter woken by that event can retry a moment too
/// early: it first spins for [`SPIN_AFTER_WAKE`], then these short retries
/// (1, 2, 4 ms) catch a later release without waiting for the fallback poll.
const RETRY_AFTER_WAKE: [Duration; 3] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
];

/// How long a freshly woken waiter keeps retrying (yielding between tries)
/// before it sleeps: the `flock` of a dying holder goes microseconds after
/// its close event. Costs at most this much CPU per spurious wake-up.
const SPIN_AFTER_WAKE: Duration = Duration::from_micros(150);

fn run(wake: WakeReceiver, watcher: Option<ChangeWatcher>) {
    let mut entries: HashMap<Arc<str>, Entry> = HashMap::new();
    let mut watches = Watches::new(watcher);
    loop {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tick(&wake, &mut entries, &mut watches)
        }));
        if step.is_err() {
            // A bug must not kill waiting for good: forget the entries (their
            // waiters stay queued and are retried on the next contend).
            entries.clear();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn tick(wake: &WakeReceiver, entries: &mut HashMap<Arc<str>, Entry>, watches: &mut Watches) {
    let now = Instant::now();
    let timeout_ms: Option<u32> = entries
        .values()
        .map(|e| e.due.saturating_duration_since(now))
        .min()
        .map(|d| d.as_millis().min(60_000) as u32 + u32::from(d.subsec_micros() % 1000 != 0));
    let changed = watches.wait(wake, timeout_ms);
    let Some(s) = SHARED.get() else {
        // Published right after the spawn; a command cannot predate it.
        return;
    };
    let cmds = std::mem::take(&mut *s.cmds.lock().unwrap_or_else(|e| e.into_inner()));
    let now = Instant::now();
    for cmd in cmds {
        match cmd {
            Cmd::Contend {
                to,
                key,
                lock_path,
                wait,
            } => {
                let old_wd = entries.get(&key).and_then(|e| e.wd);
                entries.insert(
                    key,
                    Entry {
                        to,
                        lock_path,
                        wait,
                        wd: old_wd,
                        due: now,
                        quick: RETRY_AFTER_WAKE.len() as u8,
                        unwatched: 0,
                        rewatch: true,
                    },
                );
            }
            Cmd::Stop { key } => drop_entry(&key, entries, watches),
        }
    }
    for key in changed {
        if let Some(e) = entries.get_mut(&key) {
            e.due = now;
            e.quick = RETRY_AFTER_WAKE.len() as u8;
        }
    }
    let due: Vec<Arc<str>> = entries
        .iter()
        .filter(|(_, e)| e.due <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for key in due {
        try_key(&key, entries, watches);
    }
}

/// Forget `key`: its entry, and its watch.
fn drop_entry(key: &Arc<str>, entries: &mut HashMap<Arc<str>, Entry>, watches: &mut Watches) {
    if let Some(e) = entries.remove(key) {
        if let Some(wd) = e.wd {
            watches.unwatch(key, wd);
        }
    }
}

fn try_key(key: &Arc<str>, entries: &mut HashMap<Arc<str>, Entry>, watches: &mut Watches) {
    let entry = entries.get_mut(key).expect("due entry");
    let to = entry.to;
    let Some(head) = to.head(key) else {
        drop_entry(key, entries, watches);
        return;
    };
    let HeadSettings {
        stale_ms,
        max_hold_ms,
    } = head;
    // Watch before trying, so a release between the try and the wait is
    // seen. A watch left by the previous busy attempt is already on the
    // path's current inode (any change since fired on it): watching again
    // would cost a path lookup on the hand-off's critical path, and when the
    // holder just unlinked the file it only fails with ENOENT.
    if entry.rewatch || entry.wd.is_none() {
        entry.wd = watches.watch(key, &entry.lock_path, entry.wd);
        entry.rewatch = false;
    }
    let lock_path = entry.lock_path.clone();
    let fresh_wake = entry.quick as usize == RETRY_AFTER_WAKE.len();
    let mut result = acquire::os_attempt(&lock_path, entry.wait.take(), stale_ms, max_hold_ms);
    if fresh_wake {
        // The dying holder's flock goes a few microseconds after its close
        // event (see RETRY_AFTER_WAKE): spin briefly before sleeping.
        let until = Instant::now() + SPIN_AFTER_WAKE;
        while let Ok((Attempt::Busy(w), _)) = &result {
            if w.legacy || Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
            let Ok((Attempt::Busy(w), _)) = result else {
                unreachable!()
            };
            result = acquire::os_attempt(&lock_path, Some(w), stale_ms, max_hold_ms);
        }
    }
    match result {
        Ok((Attempt::Acquired(file), written)) => {
            // Hand the lock over first: removing the watch can wait.
            to.acquired(key, &lock_path, file, written);
            drop_entry(key, entries, watches);
        }
        Ok((Attempt::Busy(wait), _)) => {
            let legacy = wait.legacy;
            entry.wait = sys::KEEP_WAIT_HANDLES.then_some(wait);
            // The path may name a new inode now: watch that one.
            entry.wd = watches.watch(key, &lock_path, entry.wd);
            if entry.wd.is_some() {
                entry.unwatched = 0;
            }
            let every = if !watches.available() {
                PORTABLE_POLL
            } else if entry.wd.is_none() {
                // No change notification for this file: poll, slowing down.
                let every = unwatched_poll(entry.unwatched);
                entry.unwatched = entry.unwatched.saturating_add(1);
                every
            } else if entry.quick > 0 {
                let i = RETRY_AFTER_WAKE.len() - entry.quick as usize;
                entry.quick -= 1;
                RETRY_AFTER_WAKE[i]
            } else if legacy {
                LEGACY_POLL
            } else {
                FALLBACK_POLL
            };
            entry.due = Instant::now() + every;
        }
        Err(err) => {
            drop_entry(key, entries, watches);
            to.failed(key, err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_polls_start_fast_and_slow_down_to_the_fallback() {
        let seq: Vec<u128> = (0..8).map(|n| unwatched_poll(n).as_millis()).collect();
        assert_eq!(seq, [5, 10, 20, 40, 50, 50, 50, 50]);
        assert_eq!(unwatched_poll(u8::MAX), FALLBACK_POLL);
    }
}
