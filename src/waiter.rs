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
    wake_w: i32,
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
/// first `n` calls to `inotify_add_watch` of the waiting thread fail with
/// `ENOSPC` (as when `fs.inotify.max_user_watches` is exhausted). Read once,
/// when the thread starts.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // inotify is Linux-only
fn injected_add_watch_failures() -> u32 {
    seam_count("add-watch").unwrap_or(0)
}

fn close_fd(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing a descriptor we created and nobody else owns.
        unsafe { libc::close(fd) };
    }
}

fn make_pipe(lock_path: &str) -> Result<[i32; 2], OsError> {
    if injected("pipe") {
        return Err(OsError::new("EMFILE", libc::EMFILE, "pipe", lock_path));
    }
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(OsError::from_io(
            &std::io::Error::last_os_error(),
            "pipe",
            lock_path,
        ));
    }
    for fd in fds {
        // SAFETY: plain fcntl flag updates on descriptors we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(fds)
}

/// The inotify descriptor, `-1` when this kernel has none (polling, said
/// once on stderr), or the error that stops waiting from starting.
#[cfg(target_os = "linux")]
fn make_inotify(lock_path: &str) -> Result<i32, OsError> {
    let errno = if injected("inotify") {
        libc::EMFILE
    } else if injected("inotify-missing") {
        libc::ENOSYS
    } else {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd >= 0 {
            return Ok(fd);
        }
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    };
    if matches!(errno, libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) {
        report_polling(errno);
        return Ok(-1);
    }
    Err(OsError::new(
        crate::oserror::code_of(errno),
        errno,
        "inotify_init1",
        lock_path,
    ))
}

#[cfg(not(target_os = "linux"))]
fn make_inotify(_lock_path: &str) -> Result<i32, OsError> {
    Ok(-1)
}

/// Say once per process that cross-process waits poll.
#[cfg(target_os = "linux")]
fn report_polling(errno: i32) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "[session-write-lock] inotify is unavailable ({}): waits for locks held by other processes fall back to polling every {} ms",
            crate::oserror::code_of(errno),
            PORTABLE_POLL.as_millis()
        );
    });
}

/// Say once per process that a lock file could not be watched, so waits
/// for it poll ([`unwatched_poll`]) instead of waking on its events.
/// `ENOENT` is not reported: the file was just removed (its holder released),
/// and the next attempt runs at once.
#[cfg(target_os = "linux")]
fn report_watch_failed(errno: i32, path: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let hint = if errno == libc::ENOSPC {
            " (fs.inotify.max_user_watches is used up)"
        } else {
            ""
        };
        eprintln!(
            "[session-write-lock] inotify_add_watch failed with {} for {}{}: waits for a lock file that cannot be watched fall back to polling (every {} ms, slowing to {} ms; said once per process)",
            crate::oserror::code_of(errno),
            path,
            hint,
            PORTABLE_POLL.as_millis(),
            FALLBACK_POLL.as_millis()
        );
    });
}

/// The running machinery, started on first use. When it cannot be started
/// (no descriptor for the wake pipe or inotify, no thread), the error is
/// returned, nothing is kept, and the next call tries again.
fn shared(lock_path: &str) -> Result<&'static Shared, OsError> {
    if let Some(s) = SHARED.get() {
        return Ok(s);
    }
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = SHARED.get() {
        return Ok(s);
    }
    let [read_fd, write_fd] = make_pipe(lock_path)?;
    let inotify_fd = match make_inotify(lock_path) {
        Ok(fd) => fd,
        Err(e) => {
            close_fd(read_fd);
            close_fd(write_fd);
            return Err(e);
        }
    };
    let spawned = if injected("spawn") {
        Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
    } else {
        std::thread::Builder::new()
            .name("session-write-lock-waiter".into())
            .stack_size(256 * 1024)
            .spawn(move || run(read_fd, inotify_fd))
    };
    if let Err(e) = spawned {
        close_fd(read_fd);
        close_fd(write_fd);
        close_fd(inotify_fd);
        let mut err = OsError::from_io(&e, "pthread_create", lock_path);
        if e.raw_os_error().is_none() {
            err = OsError::new("EAGAIN", libc::EAGAIN, "pthread_create", lock_path);
        }
        return Err(err);
    }
    Ok(SHARED.get_or_init(|| Shared {
        cmds: Mutex::new(Vec::new()),
        wake_w: write_fd,
    }))
}

fn send(s: &Shared, cmd: Cmd) {
    s.cmds.lock().unwrap_or_else(|e| e.into_inner()).push(cmd);
    let b = 1u8;
    // SAFETY: writing one byte from a valid buffer; a full pipe (EAGAIN)
    // already guarantees a pending wake-up.
    unsafe { libc::write(s.wake_w, (&b as *const u8).cast(), 1) };
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
    wd: Option<i32>,
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
    #[cfg(target_os = "linux")]
    fd: i32,
    by_wd: HashMap<i32, Vec<Arc<str>>>,
    /// Test seam: `inotify_add_watch` calls left to fail (see
    /// [`injected_add_watch_failures`]).
    #[cfg(target_os = "linux")]
    fail_add_watch: u32,
}

#[cfg(target_os = "linux")]
const WATCH_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_CLOSE_NOWRITE
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_DONT_FOLLOW;

impl Watches {
    fn new(fd: i32) -> Self {
        #[cfg(not(target_os = "linux"))]
        let _ = fd;
        Watches {
            #[cfg(target_os = "linux")]
            fd,
            by_wd: HashMap::new(),
            #[cfg(target_os = "linux")]
            fail_add_watch: if fd >= 0 {
                injected_add_watch_failures()
            } else {
                0
            },
        }
    }

    fn available(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.fd >= 0
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// Watch the inode currently at `path` for `key`; returns the wd, or
    /// `None` when it cannot be watched (the caller then polls; a failure
    /// other than `ENOENT` is said once per process on stderr).
    fn watch(&mut self, key: &Arc<str>, path: &str, old: Option<i32>) -> Option<i32> {
        #[cfg(target_os = "linux")]
        {
            if self.fd < 0 {
                return None;
            }
            let c = std::ffi::CString::new(path).ok()?;
            let wd = if self.fail_add_watch > 0 {
                self.fail_add_watch -= 1;
                Err(libc::ENOSPC)
            } else {
                // SAFETY: valid NUL-terminated path and our inotify descriptor.
                let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), WATCH_MASK) };
                if wd >= 0 {
                    Ok(wd)
                } else {
                    Err(std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO))
                }
            };
            let new = match wd {
                Ok(wd) => Some(wd),
                Err(errno) => {
                    if errno != libc::ENOENT {
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
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (key, path, old);
            None
        }
    }

    fn unwatch(&mut self, key: &Arc<str>, wd: i32) {
        if let Some(v) = self.by_wd.get_mut(&wd) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_wd.remove(&wd);
                #[cfg(target_os = "linux")]
                // SAFETY: removing a watch we added; failure is harmless.
                unsafe {
                    libc::inotify_rm_watch(self.fd, wd);
                }
            }
        }
    }

    /// Read pending events; returns the keys to retry now.
    fn drain(&mut self) -> Vec<Arc<str>> {
        #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
        // filled from inotify on Linux only
        let mut due = Vec::new();
        #[cfg(target_os = "linux")]
        {
            if self.fd < 0 {
                return due;
            }
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a valid buffer of its length.
                let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                let n = n as usize;
                let mut off = 0;
                let hdr = std::mem::size_of::<libc::inotify_event>();
                while off + hdr <= n {
                    // SAFETY: the kernel wrote whole events; read_unaligned
                    // copes with the byte buffer's alignment.
                    let ev: libc::inotify_event =
                        unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                    if let Some(keys) = self.by_wd.get(&ev.wd) {
                        due.extend(keys.iter().cloned());
                    }
                    if ev.mask & libc::IN_IGNORED != 0 {
                        // The kernel dropped the watch (inode gone); the wd
                        // may be reused, so forget it.
                        self.by_wd.remove(&ev.wd);
                    }
                    off += hdr + ev.len as usize;
                }
            }
        }
        due
    }
}

fn run(wake_r: i32, inotify_fd: i32) {
    let mut entries: HashMap<Arc<str>, Entry> = HashMap::new();
    let mut watches = Watches::new(inotify_fd);
    loop {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tick(wake_r, &mut entries, &mut watches)
        }));
        if step.is_err() {
            // A bug must not kill waiting for good: forget the entries (their
            // waiters stay queued and are retried on the next contend).
            entries.clear();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn tick(wake_r: i32, entries: &mut HashMap<Arc<str>, Entry>, watches: &mut Watches) {
    let now = Instant::now();
    let timeout_ms: i32 = entries
        .values()
        .map(|e| e.due.saturating_duration_since(now))
        .min()
        .map(|d| d.as_millis().min(60_000) as i32 + i32::from(d.subsec_micros() % 1000 != 0))
        .unwrap_or(-1);
    let mut fds = [
        libc::pollfd {
            fd: wake_r,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            #[cfg(target_os = "linux")]
            fd: watches.fd,
            #[cfg(not(target_os = "linux"))]
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfd structs.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if fds[0].revents != 0 {
        let mut b = [0u8; 256];
        // SAFETY: draining the non-blocking wake pipe into a valid buffer.
        while unsafe { libc::read(wake_r, b.as_mut_ptr().cast(), b.len()) } > 0 {}
    }
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
    for key in watches.drain() {
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
            entry.wait = Some(wait);
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
