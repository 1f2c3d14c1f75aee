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
//! Off Linux there is no inotify: the thread polls every [`PORTABLE_POLL`].
//!
//! Guarantees: at most one attempt in flight per key; a key nobody waits for
//! any more is dropped with its descriptor and watch; every OS lock obtained
//! is handed to the registry, which gives it to the current head of the queue
//! or releases it. Not guaranteed: wake-ups on network file systems faster
//! than the fallback poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::lockfile::{Attempt, WaitFile};
use crate::oserror::OsError;
use crate::registry;
use crate::sys::{self, errno, ChangeWatcher, WakeReceiver, WakeSender, WatchId};

/// Fallback poll for a lock held through the OS lock elsewhere.
pub const FALLBACK_POLL: Duration = Duration::from_millis(50);
/// Poll for a file held by the old module (no OS lock, no close event).
pub const LEGACY_POLL: Duration = Duration::from_millis(25);
/// Poll where no change notification is available.
pub const PORTABLE_POLL: Duration = Duration::from_millis(5);

enum Cmd {
    Contend {
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
/// Serializes attempts to start the machinery.
static STARTING: Mutex<()> = Mutex::new(());

/// Test-only seam: `SESSION_WRITE_LOCK_TEST_WAITER_FAIL=<what>:<n>` makes the
/// first `n` attempts to start the waiting machinery fail at `<what>`:
/// `pipe` (EMFILE), `inotify` (EMFILE), `spawn` (EAGAIN), or
/// `inotify-missing` (ENOSYS, as on a kernel without inotify). Read only while
/// the machinery is not running; never set it in production. (`add-watch`,
/// read once as the thread starts, is [`injected_add_watch_failures`].)
fn injected(what: &str) -> bool {
    use std::sync::atomic::{AtomicU32, Ordering};
    static USED: AtomicU32 = AtomicU32::new(0);
    let Some(n) = seam_count(what) else {
        return false;
    };
    USED.fetch_add(1, Ordering::Relaxed) < n
}

/// `n` when the test seam is set to `<what>:<n>`.
fn seam_count(what: &str) -> Option<u32> {
    let v = std::env::var_os("SESSION_WRITE_LOCK_TEST_WAITER_FAIL")?;
    let v = v.to_string_lossy();
    let (w, n) = v.split_once(':')?;
    (w == what).then(|| n.parse().unwrap_or(0))
}

/// Test-only seam, `SESSION_WRITE_LOCK_TEST_WAITER_FAIL=add-watch:<n>`: the
/// first `n` watches the waiting thread adds fail with `ENOSPC` (as when
/// `fs.inotify.max_user_watches` is exhausted). Read once, when the thread
/// starts.
fn injected_add_watch_failures() -> u32 {
    seam_count("add-watch").unwrap_or(0)
}

fn make_wake(lock_path: &str) -> Result<(WakeSender, WakeReceiver), OsError> {
    if injected("pipe") {
        return Err(OsError::new("EMFILE", errno::EMFILE, "pipe", lock_path));
    }
    sys::wake_channel().map_err(|e| OsError::from_io(&e, "pipe", lock_path))
}

/// The change watcher, `None` when this platform or kernel has none
/// (polling; a kernel without it is said once on stderr), or the error that
/// stops waiting from starting.
fn make_watcher(lock_path: &str) -> Result<Option<ChangeWatcher>, OsError> {
    let created = if injected("inotify") {
        Err(errno::EMFILE)
    } else if injected("inotify-missing") {
        Err(errno::ENOSYS)
    } else {
        ChangeWatcher::create()
    };
    match created {
        Ok(w) => Ok(w),
        Err(errno) if ChangeWatcher::unsupported(errno) => {
            report_polling(errno);
            Ok(None)
        }
        Err(errno) => Err(OsError::new(
            crate::oserror::code_of(errno),
            errno,
            ChangeWatcher::CREATE_SYSCALL,
            lock_path,
        )),
    }
}

/// Say once per process that cross-process waits poll.
fn report_polling(errno: i32) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "[session-write-lock] {} is unavailable ({}): waits for locks held by other processes fall back to polling every {} ms",
            ChangeWatcher::NAME,
            crate::oserror::code_of(errno),
            PORTABLE_POLL.as_millis()
        );
    });
}

/// Say once per process that a lock file could not be watched, so waits
/// for it poll ([`unwatched_poll`]) instead of waking on its events.
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

/// The running machinery, started on first use. When it cannot be started
/// (no descriptor for the wake channel or the watcher, no thread), the error
/// is returned, nothing is kept (dropping what was made closes it), and the
/// next call tries again.
fn shared(lock_path: &str) -> Result<&'static Shared, OsError> {
    if let Some(s) = SHARED.get() {
        return Ok(s);
    }
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = SHARED.get() {
        return Ok(s);
    }
    let (wake, wake_rx) = make_wake(lock_path)?;
    let watcher = make_watcher(lock_path)?;
    let spawned = if injected("spawn") {
        Err(std::io::Error::from_raw_os_error(errno::EAGAIN))
    } else {
        std::thread::Builder::new()
            .name("session-write-lock-waiter".into())
            .stack_size(256 * 1024)
            .spawn(move || run(wake_rx, watcher))
    };
    if let Err(e) = spawned {
        let mut err = OsError::from_io(&e, "pthread_create", lock_path);
        if e.raw_os_error().is_none() {
            err = OsError::new("EAGAIN", errno::EAGAIN, "pthread_create", lock_path);
        }
        return Err(err);
    }
    Ok(SHARED.get_or_init(|| Shared {
        cmds: Mutex::new(Vec::new()),
        wake,
    }))
}

fn send(s: &Shared, cmd: Cmd) {
    s.cmds.lock().unwrap_or_else(|e| e.into_inner()).push(cmd);
    s.wake.wake();
}

/// Start contending for `key` on behalf of its queue head. `wait` is the
/// descriptor of the busy attempt that led here. Fails (dropping `wait`)
/// when the waiting machinery cannot be started; the caller then fails the
/// acquire that needed it.
pub fn contend(key: Arc<str>, lock_path: Arc<str>, wait: Option<WaitFile>) -> Result<(), OsError> {
    let s = shared(&lock_path)?;
    send(
        s,
        Cmd::Contend {
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

struct Watches {
    /// `None`: no change notification here; every wait polls.
    watcher: Option<ChangeWatcher>,
    by_wd: HashMap<WatchId, Vec<Arc<str>>>,
    /// Test seam: watches left to fail (see
    /// [`injected_add_watch_failures`]).
    fail_add_watch: u32,
}

impl Watches {
    fn new(watcher: Option<ChangeWatcher>) -> Self {
        let fail_add_watch = if watcher.is_some() {
            injected_add_watch_failures()
        } else {
            0
        };
        Watches {
            watcher,
            by_wd: HashMap::new(),
            fail_add_watch,
        }
    }

    fn available(&self) -> bool {
        self.watcher.is_some()
    }

    /// Watch the file currently at `path` for `key`; returns the watch, or
    /// `None` when it cannot be watched (the caller then polls; a failure
    /// other than `ENOENT` is said once per process on stderr).
    fn watch(&mut self, key: &Arc<str>, path: &str, old: Option<WatchId>) -> Option<WatchId> {
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

    fn unwatch(&mut self, key: &Arc<str>, wd: WatchId) {
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
    fn wait(&mut self, wake: &WakeReceiver, timeout_ms: Option<u32>) -> Vec<Arc<str>> {
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
                key,
                lock_path,
                wait,
            } => {
                let old_wd = entries.get(&key).and_then(|e| e.wd);
                entries.insert(
                    key,
                    Entry {
                        lock_path,
                        wait,
                        wd: old_wd,
                        due: now,
                        quick: RETRY_AFTER_WAKE.len() as u8,
                        unwatched: 0,
                    },
                );
            }
            Cmd::Stop { key } => {
                if let Some(e) = entries.remove(&key) {
                    if let Some(wd) = e.wd {
                        watches.unwatch(&key, wd);
                    }
                }
            }
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

fn try_key(key: &Arc<str>, entries: &mut HashMap<Arc<str>, Entry>, watches: &mut Watches) {
    let Some(settings) = registry::global().head_settings(key) else {
        if let Some(e) = entries.remove(key) {
            if let Some(wd) = e.wd {
                watches.unwatch(key, wd);
            }
        }
        return;
    };
    let (stale_ms, max_hold_ms) = settings;
    let entry = entries.get_mut(key).expect("due entry");
    // Watch before trying, so a release between the try and the wait is seen.
    entry.wd = watches.watch(key, &entry.lock_path, entry.wd);
    let lock_path = entry.lock_path.clone();
    let fresh_wake = entry.quick as usize == RETRY_AFTER_WAKE.len();
    let mut result = registry::os_attempt(&lock_path, entry.wait.take(), stale_ms, max_hold_ms);
    if fresh_wake {
        // The dying holder's flock goes a few microseconds after its close
        // event (see RETRY_AFTER_WAKE): spin briefly before sleeping.
        let until = Instant::now() + SPIN_AFTER_WAKE;
        while let Ok((Attempt::Busy(w), _, _)) = &result {
            if w.legacy || Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
            let Ok((Attempt::Busy(w), _, _)) = result else {
                unreachable!()
            };
            result = registry::os_attempt(&lock_path, Some(w), stale_ms, max_hold_ms);
        }
    }
    match result {
        Ok((Attempt::Acquired(file), token, at)) => {
            if let Some(e) = entries.remove(key) {
                if let Some(wd) = e.wd {
                    watches.unwatch(key, wd);
                }
            }
            registry::global().os_acquired(key, file, token, at, max_hold_ms);
        }
        Ok((Attempt::Busy(wait), _, _)) => {
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
            if let Some(e) = entries.remove(key) {
                if let Some(wd) = e.wd {
                    watches.unwatch(key, wd);
                }
            }
            registry::global().os_failed(key, err);
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
