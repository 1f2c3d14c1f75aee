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

use crate::fasthash::FastMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::acquire::{self, Written};
use crate::lockfile::{Attempt, LockFile, WaitFile};
use crate::oserror::OsError;
use crate::sys::{self, ChangeWatcher, WakeReceiver, WakeSender, WatchId};

mod start;
mod watches;

use start::shared;

/// Test seam (`SESSION_WRITE_LOCK_TEST_WAITER_FAIL=add-watch:<n>`): the
/// first `n` watches a JS thread's loop watcher adds fail with `ENOSPC`, as
/// the waiting thread's do (the inotify limit is per user: both hit it).
pub fn loop_watch_fails() -> bool {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LEFT: OnceLock<AtomicU32> = OnceLock::new();
    let left = LEFT.get_or_init(|| AtomicU32::new(start::injected_add_watch_failures()));
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}
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
        key: Arc<str>,
        slot: Arc<Slot>,
    },
    Stop {
        key: Arc<str>,
    },
    /// Attempt `key` now and retry quickly (a JS thread's attempt after a
    /// wake-up found it busy, or the JS thread stopped watching it).
    Kick {
        key: Arc<str>,
        after_spin: bool,
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

/// What the waiting thread and a JS thread's own watcher ([`attempt_here`])
/// share for one contended key: the kept descriptor, and the claim that
/// keeps attempts one at a time.
pub struct Slot {
    to: &'static dyn Waiters,
    lock_path: Arc<str>,
    /// Which contention of the key this is: each [`contend`] starts a new
    /// one (see [`contention`]).
    id: u64,
    st: Mutex<SlotState>,
}

struct SlotState {
    wait: Option<WaitFile>,
    /// An attempt for the key runs now (on either side).
    attempting: bool,
    /// A JS thread watches the key on its own loop: the waiting thread's
    /// wake-ups defer to it for [`DEFER_TO_LOOP`].
    on_loop: bool,
    /// Contention ended (obtained, failed, or stopped): nobody attempts.
    gone: bool,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The slots of the keys contended now, for [`attempt_here`].
fn slots() -> &'static Mutex<FastMap<Arc<str>, Arc<Slot>>> {
    static SLOTS: OnceLock<Mutex<FastMap<Arc<str>, Arc<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

fn slots_locked() -> std::sync::MutexGuard<'static, FastMap<Arc<str>, Arc<Slot>>> {
    slots().lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the waiting thread, woken for a key a JS thread watches itself,
/// leaves the attempt to that thread (it is woken by the same event). Past
/// it (a busy JS thread, a missed event) the waiting thread attempts.
pub const DEFER_TO_LOOP: Duration = Duration::from_millis(2);

/// What [`attempt_here`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Here {
    /// The key is no longer contended (the lock was obtained and handed to
    /// its waiters, the attempt failed and the head got the error, or
    /// nobody waits): stop watching it.
    Done,
    /// Still held elsewhere: keep watching (the path may name a new file).
    Busy,
    /// Another attempt runs now; it reports.
    Skipped,
}

/// Mark `key`, contended now, as watched by the calling JS thread's own
/// loop; its lock path, or `None` when it is not contended (nothing to
/// watch).
pub fn watch_on_loop(key: &str) -> Option<Arc<str>> {
    let slot = slots_locked().get(key).cloned()?;
    let mut st = slot.state();
    if st.gone {
        return None;
    }
    st.on_loop = true;
    Some(slot.lock_path.clone())
}

/// `key` is no longer watched on a JS thread's loop (its env went).
pub fn unwatch_on_loop(key: &str) {
    if let Some(slot) = slots_locked().get(key).cloned() {
        slot.state().on_loop = false;
        kick(key, false);
    }
}

/// Have the waiting thread attempt `key` now (`after_spin`: after the
/// first quick retry's delay), then retry it quickly.
fn kick(key: &str, after_spin: bool) {
    if let Some(s) = SHARED.get() {
        send(
            s,
            Cmd::Kick {
                key: key.into(),
                after_spin,
            },
        );
    }
}

/// The contention of `key` now: its id, unique in the process (a key
/// contended again after its contention ended gets a new one), and its lock
/// path; `None` when `key` is not contended. A watcher that kept a watch
/// from an earlier contention tells by the id that events queued on it may
/// be our own (the payload read of a wait that timed out, the close of the
/// descriptor it kept), not a change this contention must look at.
pub fn contention(key: &str) -> Option<(u64, Arc<str>)> {
    slots_locked()
        .get(key)
        .filter(|s| !s.state().gone)
        .map(|s| (s.id, s.lock_path.clone()))
}

/// The payload of the file at `lock_path`, read through the descriptor
/// kept for its key while the key is contended (no open, so no close event
/// to wake the waiters of the file: a wait that times out names the holder
/// this way while others still wait). `None`: no kept descriptor (not
/// contended, an attempt has it now, a platform that keeps none) or the path
/// names another file now; the caller then opens the file itself.
pub fn peek_kept(lock_path: &str) -> Option<crate::payload::ParsedPayload> {
    let key = lock_path.strip_suffix(".lock")?;
    let slot = slots_locked().get(key).cloned()?;
    if *slot.lock_path != *lock_path {
        return None;
    }
    let st = slot.state();
    st.wait.as_ref()?.payload_if_named(lock_path)
}

/// Count a lock obtained by [`attempt_here`] (a test seam reads it).
fn on_obtained_here() {
    OBTAINED_HERE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Locks obtained by [`attempt_here`] so far.
pub static OBTAINED_HERE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// OS attempts made for contended keys (waiting thread and JS threads'
/// loop watchers together) so far: a test seam for how often a waiter
/// retries.
pub static ATTEMPTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One attempt for a contended key, counted.
fn counted_attempt(
    lock_path: &str,
    wait: Option<WaitFile>,
    stale_ms: u64,
    max_hold_ms: Option<u64>,
) -> Result<(Attempt, Written), OsError> {
    ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    acquire::os_attempt(lock_path, wait, stale_ms, max_hold_ms)
}

/// Attempt the OS lock of contended `key` now, on the calling thread (a JS
/// thread whose own watcher saw its file change), under the same rules as
/// the waiting thread: one attempt at a time, the kept descriptor reused,
/// whatever is obtained handed to the key's [`Waiters`].
pub fn attempt_here(key: &str) -> Here {
    let Some(slot) = slots_locked().get(key).cloned() else {
        return Here::Done;
    };
    let wait = {
        let mut st = slot.state();
        if st.gone {
            return Here::Done;
        }
        if st.attempting {
            // The waiting thread attempts now, maybe from before this
            // wake-up: have it look again once done.
            drop(st);
            kick(key, false);
            return Here::Skipped;
        }
        st.attempting = true;
        st.wait.take()
    };
    let key: Arc<str> = key.into();
    let Some(head) = slot.to.head(&key) else {
        let mut st = slot.state();
        st.wait = wait;
        st.attempting = false;
        return Here::Done;
    };
    let result = attempt_spinning(&slot.lock_path, wait, head);
    let obtained = matches!(result, Ok((Attempt::Acquired(_), _)));
    let here = finish(&slot, &key, result);
    if obtained {
        on_obtained_here();
    }
    if here == Here::Busy {
        // Woken but still busy (a dying holder's close event comes just
        // before its flock goes): the waiting thread retries quickly.
        kick(&key, true);
    }
    here
}

/// Report an attempt's result and release the claim.
fn finish(slot: &Slot, key: &Arc<str>, result: Result<(Attempt, Written), OsError>) -> Here {
    match result {
        Ok((Attempt::Acquired(file), written)) => {
            slot.to.acquired(key, &slot.lock_path, file, written);
            let mut st = slot.state();
            st.gone = true;
            st.attempting = false;
            Here::Done
        }
        Ok((Attempt::Busy(wait), _)) => {
            let mut st = slot.state();
            st.wait = sys::KEEP_WAIT_HANDLES.then_some(wait);
            st.attempting = false;
            Here::Busy
        }
        Err(err) => {
            {
                let mut st = slot.state();
                st.gone = true;
                st.attempting = false;
            }
            slot.to.failed(key, err);
            Here::Done
        }
    }
}

/// One attempt; right after a wake-up, retried briefly while busy (see
/// [`SPIN_AFTER_WAKE`]).
fn attempt_spinning(
    lock_path: &str,
    wait: Option<WaitFile>,
    head: HeadSettings,
) -> Result<(Attempt, Written), OsError> {
    let HeadSettings {
        stale_ms,
        max_hold_ms,
    } = head;
    let mut result = counted_attempt(lock_path, wait, stale_ms, max_hold_ms);
    let until = Instant::now() + SPIN_AFTER_WAKE;
    while let Ok((Attempt::Busy(w), _)) = &result {
        if w.legacy || Instant::now() >= until {
            break;
        }
        std::thread::yield_now();
        let Ok((Attempt::Busy(w), _)) = result else {
            unreachable!()
        };
        result = counted_attempt(lock_path, Some(w), stale_ms, max_hold_ms);
    }
    result
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
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let s = shared(&lock_path)?;
    let slot = Arc::new(Slot {
        to,
        lock_path,
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        st: Mutex::new(SlotState {
            wait,
            attempting: false,
            on_loop: false,
            gone: false,
        }),
    });
    let old = slots_locked().insert(key.clone(), slot.clone());
    if let Some(old) = old {
        end(&old);
    }
    send(s, Cmd::Contend { key, slot });
    Ok(())
}

/// Mark `slot` ended and close the descriptor it kept, now, on the calling
/// thread: left to the waiting thread, the close (an inotify event on the
/// file) could come after the caller contends for the key again and reach
/// that new contention's watch as a change (an attempt that spins for
/// nothing).
fn end(slot: &Slot) {
    let wait = {
        let mut st = slot.state();
        st.gone = true;
        st.wait.take()
    };
    drop(wait);
}

/// Stop contending for `key` (its queue emptied).
pub fn stop(key: Arc<str>) {
    let slot = slots_locked().remove(&key);
    if let Some(slot) = slot {
        end(&slot);
    }
    // Contention ran, so the machinery exists.
    if let Some(s) = SHARED.get() {
        send(s, Cmd::Stop { key });
    }
}

struct Entry {
    slot: Arc<Slot>,
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
    /// No attempt was made for this entry yet (see `try_key`).
    first: bool,
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
    let mut entries: FastMap<Arc<str>, Entry> = FastMap::default();
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

fn tick(wake: &WakeReceiver, entries: &mut FastMap<Arc<str>, Entry>, watches: &mut Watches) {
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
            Cmd::Contend { key, slot } => {
                let old_wd = entries.get(&key).and_then(|e| e.wd);
                entries.insert(
                    key,
                    Entry {
                        slot,
                        wd: old_wd,
                        due: now,
                        quick: RETRY_AFTER_WAKE.len() as u8,
                        unwatched: 0,
                        rewatch: true,
                        first: true,
                    },
                );
            }
            Cmd::Stop { key } => drop_entry(&key, entries, watches),
            Cmd::Kick { key, after_spin } => {
                if let Some(e) = entries.get_mut(&key) {
                    if after_spin {
                        // The caller spun already: go on with the retries.
                        e.due = now + RETRY_AFTER_WAKE[0];
                        e.quick = RETRY_AFTER_WAKE.len() as u8 - 1;
                    } else {
                        e.due = now;
                        e.quick = RETRY_AFTER_WAKE.len() as u8;
                    }
                }
            }
        }
    }
    for key in changed {
        if let Some(e) = entries.get_mut(&key) {
            // A JS thread that watches the key itself was woken by the same
            // event: leave it the attempt for a moment.
            let on_loop = e.slot.state().on_loop;
            e.due = if on_loop { now + DEFER_TO_LOOP } else { now };
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
fn drop_entry(key: &Arc<str>, entries: &mut FastMap<Arc<str>, Entry>, watches: &mut Watches) {
    if let Some(e) = entries.remove(key) {
        e.slot.state().gone = true;
        let mut slots = slots_locked();
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &e.slot)) {
            slots.remove(key);
        }
        drop(slots);
        if let Some(wd) = e.wd {
            watches.unwatch(key, wd);
        }
    }
}

fn try_key(key: &Arc<str>, entries: &mut FastMap<Arc<str>, Entry>, watches: &mut Watches) {
    let entry = entries.get_mut(key).expect("due entry");
    let slot = entry.slot.clone();
    let wait = {
        let mut st = slot.state();
        if st.gone {
            drop(st);
            drop_entry(key, entries, watches);
            return;
        }
        if st.attempting {
            // A JS thread attempts now; it reports. Look again shortly.
            entry.due = Instant::now() + RETRY_AFTER_WAKE[0];
            return;
        }
        st.attempting = true;
        st.wait.take()
    };
    let Some(head) = slot.to.head(key) else {
        slot.state().attempting = false;
        drop_entry(key, entries, watches);
        return;
    };
    // Watch before trying, so a release between the try and the wait is
    // seen. A watch left by the previous busy attempt is already on the
    // path's current inode (any change since fired on it): watching again
    // would cost a path lookup on the hand-off's critical path, and when the
    // holder just unlinked the file it only fails with ENOENT.
    // A new entry's first attempt follows the caller's own busy attempt by
    // microseconds, not a change event: nothing suggests a release is under
    // way, so it does not spin (spinning there burnt up to SPIN_AFTER_WAKE
    // of CPU, a payload read per try, at the start of every contention).
    let first = std::mem::replace(&mut entry.first, false);
    let on_loop = slot.state().on_loop;
    if on_loop {
        // A JS thread watches it: waking here too would only compete with
        // that thread for the CPU at the hand-off.
        if let Some(wd) = entry.wd.take() {
            watches.unwatch(key, wd);
        }
    } else if entry.rewatch || entry.wd.is_none() {
        entry.wd = watches.watch(key, &slot.lock_path, entry.wd);
        entry.rewatch = false;
    }
    let lock_path = slot.lock_path.clone();
    let fresh_wake = entry.quick as usize == RETRY_AFTER_WAKE.len() && !first;
    let result = if fresh_wake {
        // The dying holder's flock goes a few microseconds after its close
        // event (see RETRY_AFTER_WAKE): spin briefly before sleeping.
        attempt_spinning(&lock_path, wait, head)
    } else {
        counted_attempt(&lock_path, wait, head.stale_ms, head.max_hold_ms)
    };
    let legacy = matches!(&result, Ok((Attempt::Busy(w), _)) if w.legacy);
    match finish(&slot, key, result) {
        Here::Busy => {
            // The path may name a new inode now: watch that one.
            if !on_loop {
                entry.wd = watches.watch(key, &lock_path, entry.wd);
                if entry.wd.is_some() {
                    entry.unwatched = 0;
                }
            }
            let every = if on_loop && entry.quick == 0 {
                // The JS thread's watch wakes it; this poll is the backstop.
                if legacy {
                    LEGACY_POLL
                } else {
                    FALLBACK_POLL
                }
            } else if on_loop {
                let i = RETRY_AFTER_WAKE.len() - entry.quick as usize;
                entry.quick -= 1;
                RETRY_AFTER_WAKE[i]
            } else if !watches.available() {
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
        // Obtained and handed over first, or failed and reported: removing
        // the watch can wait until now.
        Here::Done | Here::Skipped => drop_entry(key, entries, watches),
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
