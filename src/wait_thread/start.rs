//! Starting the waiting machinery (wake channel, change watcher, thread) on
//! first contention, with the test seams that make each step fail. Nothing
//! is kept when a step fails, and the next contention tries again.

use std::sync::Mutex;

use super::{run, Shared, PORTABLE_POLL, SHARED};
use crate::oserror::OsError;
use crate::sys::{self, errno, ChangeWatcher, WakeReceiver, WakeSender};

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
pub(super) fn injected_add_watch_failures() -> u32 {
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

/// The running machinery, started on first use. When it cannot be started
/// (no descriptor for the wake channel or the watcher, no thread), the error
/// is returned, nothing is kept (dropping what was made closes it), and the
/// next call tries again.
pub(super) fn shared(lock_path: &str) -> Result<&'static Shared, OsError> {
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
            .spawn(move || {
                sys::block_signals_on_this_thread();
                run(wake_rx, watcher)
            })
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
