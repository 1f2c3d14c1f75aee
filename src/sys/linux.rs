//! Linux: unnamed files (`O_TMPFILE`, named by `linkat`), the atomic name
//! exchange (`renameat2(RENAME_EXCHANGE)`), `/proc` reads (start times,
//! process states, boot id), thread ids, and change notification by inotify.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::unix::{poll_and_drain, WakeReceiver};
use super::{Fired, WatchId};
use crate::decimal;

/// Unnamed files can be built and then linked into place here.
pub const UNNAMED_FILES: bool = true;
/// Two names can be exchanged in one step here.
pub const CAN_EXCHANGE: bool = true;

/// A new unnamed regular file in `dir` (`O_TMPFILE`, read-write, mode 0644),
/// or `None` when this directory cannot have one (no `O_TMPFILE` support,
/// or any other refusal: the caller's portable path reports real errors).
pub fn create_unnamed(dir: &Path) -> Option<File> {
    let cdir = c_path(dir).ok()?;
    // SAFETY: a valid NUL-terminated path; the returned descriptor is owned
    // by the File below.
    let fd = unsafe {
        libc::open(
            cdir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// Give the unnamed `file` the name `target` (`linkat` through
/// `/proc/self/fd`), failing with `EEXIST` rather than replacing anything.
/// Any other error (no `/proc`, a file system that refuses) means this file
/// cannot be named this way.
pub fn link_unnamed(file: &File, target: impl AsRef<Path>) -> io::Result<()> {
    // `/proc/self/fd/<fd>` on the stack (`format!` and a `CString` were an
    // allocation and a formatter run on every acquire).
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut buf = [0u8; PREFIX.len() + decimal::MAX_DIGITS + 1];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; decimal::MAX_DIGITS];
    let i = decimal::write_u64(&mut digits, file.as_raw_fd().unsigned_abs().into());
    buf[PREFIX.len()..PREFIX.len() + digits.len() - i].copy_from_slice(&digits[i..]);
    let proc_path = std::ffi::CStr::from_bytes_until_nul(&buf)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let target = c_path(target)?;
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    rc_result(rc)
}

/// Exchange the names `a` and `b` in one step (`renameat2` with
/// `RENAME_EXCHANGE`). `EINVAL`, `ENOSYS` or `EOPNOTSUPP`: not supported
/// on this file system or kernel.
pub fn exchange(a: impl AsRef<Path>, b: impl AsRef<Path>) -> io::Result<()> {
    let (ca, cb) = (c_path(a)?, c_path(b)?);
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    rc_result(rc)
}

/// A path as a C string (`EINVAL` when it holds a NUL).
fn c_path(p: impl AsRef<Path>) -> io::Result<CString> {
    CString::new(p.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A libc return code: 0 is success, anything else the thread's errno.
fn rc_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `/proc/sys/kernel/random/boot_id`, trimmed; `None` when unreadable.
pub fn boot_id() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The raw `/proc/<pid>/stat` line; `None` when unreadable.
pub fn proc_stat(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/stat")).ok()
}

/// The kernel id of the calling thread.
pub fn thread_id() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

/// Whether the calling thread is the process's main thread (its thread id
/// is the process id).
pub fn is_main_thread() -> Option<bool> {
    // SAFETY: gettid and getpid have no preconditions.
    Some(unsafe { libc::gettid() == libc::getpid() })
}

/// Change notification on lock files (inotify): a holder that releases
/// (unlink, close) or dies (the kernel closes its descriptors) produces
/// `IN_ATTRIB` / `IN_CLOSE_WRITE` on the file's inode.
#[derive(Debug)]
pub struct ChangeWatcher {
    fd: OwnedFd,
}

const WATCH_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_CLOSE_NOWRITE
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_DONT_FOLLOW;

impl ChangeWatcher {
    /// The facility's name, for messages.
    pub const NAME: &'static str = "inotify";
    /// The call that creates it, reported as `syscall` when it fails.
    pub const CREATE_SYSCALL: &'static str = "inotify_init1";
    /// The call that adds a watch, for messages.
    pub const WATCH_SYSCALL: &'static str = "inotify_add_watch";

    /// `Ok(None)`: this platform has no change notification (never the case
    /// here). `Err(errno)` otherwise; see [`ChangeWatcher::unsupported`].
    pub fn create() -> Result<Option<Self>, i32> {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Some(ChangeWatcher {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }))
    }

    /// Whether a creation error means "not available on this kernel"
    /// (waits then poll) rather than a resource failure.
    pub fn unsupported(errno: i32) -> bool {
        matches!(errno, libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
    }

    /// What to add to a message about a failed [`ChangeWatcher::add`].
    pub fn limit_hint(errno: i32) -> &'static str {
        if errno == libc::ENOSPC {
            " (fs.inotify.max_user_watches is used up)"
        } else {
            ""
        }
    }

    /// Watch the inode currently at `path` (never following a final
    /// symlink). Watching one inode twice gives the same id.
    pub fn add(&mut self, path: &str) -> Result<WatchId, i32> {
        inotify_add(self.fd.as_raw_fd(), path)
    }

    /// Remove a watch; failure (already dropped) is harmless.
    pub fn remove(&mut self, id: WatchId) {
        inotify_remove(self.fd.as_raw_fd(), id)
    }

    /// Block until `wake` is signalled, a watch fires, or `timeout_ms`
    /// passes (`None`: no timeout); consume the wake-ups and append every
    /// pending event to `fired`.
    pub fn wait(&mut self, wake: &WakeReceiver, timeout_ms: Option<u32>, fired: &mut Vec<Fired>) {
        // Read events only when poll saw some (a timeout or a wake-up alone
        // costs no read returning EAGAIN).
        if poll_and_drain(wake, Some(self.fd.as_raw_fd()), timeout_ms) {
            drain_inotify(self.fd.as_raw_fd(), fired);
        }
    }
}

/// Watch the inode now at `path` on inotify descriptor `fd` (never
/// following a final symlink). Watching one inode twice gives the same id.
pub(super) fn inotify_add(fd: i32, path: &str) -> Result<WatchId, i32> {
    let c = c_path(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid NUL-terminated path and an inotify descriptor.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), WATCH_MASK) };
    if wd >= 0 {
        Ok(wd)
    } else {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// Remove a watch of inotify descriptor `fd`; failure is harmless.
pub(super) fn inotify_remove(fd: i32, id: WatchId) {
    // SAFETY: removing a watch on an inotify descriptor.
    unsafe { libc::inotify_rm_watch(fd, id) };
}

/// Append every pending event of non-blocking inotify descriptor `fd`.
pub(super) fn drain_inotify(fd: i32, fired: &mut Vec<Fired>) {
    const CAP: usize = 4096;
    // Not zeroed: only the bytes the kernel wrote are read (zeroing 4 KiB
    // was about 4,000 instructions per wake-up, on the path from a release
    // to the grant).
    let mut buf = std::mem::MaybeUninit::<[u8; CAP]>::uninit();
    let base: *mut u8 = buf.as_mut_ptr().cast();
    let hdr = std::mem::size_of::<libc::inotify_event>();
    loop {
        // SAFETY: reading into a valid buffer of CAP bytes (uninitialized
        // memory is a valid target for read(2)).
        let n = unsafe { libc::read(fd, base.cast(), CAP) };
        if n <= 0 {
            break;
        }
        let n = n as usize;
        let mut off = 0;
        while off + hdr <= n {
            // SAFETY: the kernel wrote whole events into the first `n`
            // bytes, which this stays within; read_unaligned copes with the
            // byte buffer's alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(base.add(off).cast()) };
            fired.push(Fired {
                id: ev.wd,
                dropped: ev.mask & libc::IN_IGNORED != 0,
            });
            off += hdr + ev.len as usize;
        }
        // Room was left for one more event of any size: the queue was empty
        // when the kernel filled this read, so a second read would only
        // return EAGAIN (one system call less per wake-up, on the path from
        // a release to the grant). An event queued since keeps the
        // descriptor readable: its (level-triggered) poll reports it.
        if n + hdr + (libc::NAME_MAX as usize) < CAP {
            break;
        }
    }
}
