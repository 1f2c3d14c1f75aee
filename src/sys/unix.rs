//! What every Unix target shares: opening a lock path without following or
//! blocking, `flock`, inode identity and modification times, positional
//! reads and writes, liveness by `kill(pid, 0)`, the host name, and the wake
//! channel (a non-blocking pipe) of the waiting thread.
//!
//! The surface is described in [`crate::sys`]; the Linux and macOS files add
//! what differs between the two.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::FileId;

/// Errno values by name, for the error table of `oserror` and for the few
/// comparisons the engine makes (`EEXIST` on create, `ENOENT` on open, ...).
pub mod errno {
    pub use libc::{
        EACCES, EAGAIN, EBADF, EBUSY, EDQUOT, EEXIST, EFBIG, EINTR, EINVAL, EIO, EISDIR, ELOOP,
        EMFILE, EMLINK, ENAMETOOLONG, ENFILE, ENOENT, ENOLCK, ENOMEM, ENOSPC, ENOSYS, ENOTDIR,
        ENXIO, EOPNOTSUPP, EPERM, EROFS, ETXTBSY, EXDEV,
    };
    /// Network errors of the PostgreSQL backend's connections.
    pub use libc::{
        EADDRNOTAVAIL, ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH, EPIPE, ETIMEDOUT,
    };
}

/// The name a failed lock call reports as `syscall`.
pub const LOCK_SYSCALL: &str = "flock";

/// Flags of every open of a lock path: never follow a symlink in the last
/// component, never block (FIFOs, devices). std adds `O_CLOEXEC` itself.
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// The mode of every file we create (before the umask).
const FILE_MODE: u32 = 0o644;

/// The identity of an open file, from the metadata already read from it
/// (`fstat`); the file itself is not consulted here.
pub fn file_id(_file: &File, m: &Metadata) -> FileId {
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// The identity of what `path` names, not following a final symlink
/// (`lstat`); `None` when nothing is there.
pub fn path_id(path: impl AsRef<Path>) -> Option<FileId> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The identity of the directory `path` names (following symlinks when
/// `follow`); `None` when it is not a directory.
pub fn dir_id(path: impl AsRef<Path>, follow: bool) -> Option<FileId> {
    let m = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    }
    .ok()?;
    m.is_dir().then(|| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The errno an `io::Error` carries (std and this layer report errno values
/// on Unix).
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

/// Path separators, the one to join with, and whether `X:` drive roots exist.
pub const SEPARATORS: &[char] = &['/'];
pub const SEPARATOR: char = '/';
pub const DRIVE_ROOTS: bool = false;

/// A path std returned (`canonicalize`), as a string JS would show.
pub fn display_path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// Give the complete, locked file built under the temporary name `tmp` the
/// name `target`, failing with `EEXIST` rather than replacing anything
/// (`link`), then drop the temporary name (whatever the outcome).
pub fn publish_temp(
    _file: &File,
    tmp: impl AsRef<Path>,
    target: impl AsRef<Path>,
) -> io::Result<()> {
    let linked = std::fs::hard_link(&tmp, target);
    let _ = std::fs::remove_file(tmp);
    linked
}

/// Remove the name `path` of `file`, a file we hold locked (the caller has
/// checked that the path names it): `unlink`.
pub fn remove_name(_file: &File, path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Whether the waiting thread keeps the descriptor of a busy lock file
/// between its attempts (so that retries neither open nor close, which
/// would wake every inotify watcher of the file).
pub const KEEP_WAIT_HANDLES: bool = true;

/// No native start-time call: the start time comes from [`proc_stat`]
/// where there is one.
pub fn start_time(_pid: u32) -> Option<u64> {
    None
}

pub fn mtime_ms(m: &Metadata) -> i64 {
    m.mtime() * 1000 + m.mtime_nsec() / 1_000_000
}

/// Create `path` exclusively (read-write, mode 0644), never following a
/// symlink and never blocking.
pub fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(OPEN_FLAGS)
        .mode(FILE_MODE)
        .open(path)
}

/// Open an existing `path` read-only, never following a symlink and never
/// blocking.
pub fn open_existing(path: impl AsRef<Path>) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
}

/// Open an existing `path` to lock and wait on, read-write when we may (so
/// that a dead holder's file can be taken over in place, see `lockfile`),
/// else read-only; never following a symlink, never blocking. The flag
/// says whether the descriptor is writable. Opening for writing changes
/// nothing in the file; its close reports `IN_CLOSE_WRITE` instead of
/// `IN_CLOSE_NOWRITE`, and watchers take both alike.
pub fn open_existing_for_lock(path: impl AsRef<Path>) -> io::Result<(File, bool)> {
    let path = path.as_ref();
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        // Not ours to write (another user's file, a read-only mount), or a
        // directory (which read-only opening reports as such): read-only.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY | libc::EISDIR)
            ) =>
        {
            open_existing(path).map(|f| (f, false))
        }
        Err(e) => Err(e),
    }
}

/// Whether the file has exactly one name (no hard link elsewhere that an
/// in-place write would reach).
pub fn single_link(m: &Metadata) -> bool {
    m.nlink() == 1
}

/// Whether the file has no name left (its holder unlinked it): then no
/// path can name it, and a waiter need not ask the path.
pub fn unlinked(m: &Metadata) -> bool {
    m.nlink() == 0
}

fn flock(file: &File, op: i32) -> io::Result<bool> {
    loop {
        // SAFETY: the descriptor is owned by `file` and open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Take the exclusive OS lock of `file` without blocking: `false` when
/// someone else holds it. The lock belongs to the open file description, so
/// two opens of one file exclude each other even in one process.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// Drop the OS lock of `file` (best effort; closing drops it too).
pub fn unlock(file: &File) {
    let _ = flock(file, libc::LOCK_UN);
}

/// Write all of `bytes` at offset `off`.
pub fn write_at(file: &File, bytes: &[u8], off: u64) -> io::Result<()> {
    file.write_all_at(bytes, off)
}

/// Read into `buf` from offset `off`; the count read (0 at the end).
pub fn read_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    file.read_at(buf, off)
}

/// Set a file's modification time (access time untouched); best effort.
pub fn set_mtime(file: &File, ms: i64) {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: ms.div_euclid(1000) as _, // time_t (deprecated by name on musl)
            tv_nsec: (ms.rem_euclid(1000) * 1_000_000) as libc::c_long,
        },
    ];
    // SAFETY: an open descriptor and two valid timespecs.
    unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) };
}

/// Whether a process `pid` exists: `kill(pid, 0)` succeeds, or fails with
/// `EPERM` (a live process of another user). `pid` must be positive.
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The host name as `os.hostname()` reports it (`gethostname`); empty when
/// it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes and we stop at the first NUL ourselves.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    String::new()
}

/// The sending end of the waiting thread's wake channel: any thread may
/// call [`WakeSender::wake`].
#[derive(Debug)]
pub struct WakeSender(OwnedFd);

/// The receiving end, owned by the waiting thread.
#[derive(Debug)]
pub struct WakeReceiver(OwnedFd);

/// Create the wake channel: a pipe, both ends non-blocking and
/// close-on-exec. The error is `pipe`'s.
pub fn wake_channel() -> io::Result<(WakeSender, WakeReceiver)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in fds {
        // SAFETY: plain fcntl flag updates on descriptors we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: two fresh descriptors nobody else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((WakeSender(w), WakeReceiver(r)))
}

impl WakeSender {
    /// Wake the receiver (never blocks; a full pipe already guarantees a
    /// pending wake-up).
    pub fn wake(&self) {
        let b = 1u8;
        // SAFETY: writing one byte from a valid buffer to our descriptor.
        unsafe { libc::write(self.0.as_raw_fd(), (&b as *const u8).cast(), 1) };
    }
}

impl WakeReceiver {
    /// Block until woken or `timeout_ms` passes (`None`: no timeout), then
    /// consume every pending wake-up.
    pub fn wait(&self, timeout_ms: Option<u32>) {
        poll_and_drain(self, None, timeout_ms);
    }

    /// Consume every pending wake-up without blocking.
    fn drain(&self) {
        let mut b = [0u8; 256];
        // SAFETY: draining the non-blocking pipe into a valid buffer.
        while unsafe { libc::read(self.0.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) } > 0 {}
    }
}

/// `poll` the wake channel and, when given, one more descriptor (a change
/// notification queue) for `timeout_ms`; drain the wake channel if it fired.
/// Returns whether the extra descriptor is readable.
pub(super) fn poll_and_drain(
    wake: &WakeReceiver,
    extra: Option<i32>,
    timeout_ms: Option<u32>,
) -> bool {
    let timeout = timeout_ms.map_or(-1, |t| t.min(i32::MAX as u32) as i32);
    let mut fds = [
        libc::pollfd {
            fd: wake.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: extra.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfd structs (a negative fd is ignored by poll).
    unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
    if fds[0].revents != 0 {
        wake.drain();
    }
    fds[1].revents != 0
}

/// Keep process-directed signals off the calling thread (the waiting
/// thread calls this first): the kernel then delivers them to a thread that
/// does not block them, Node's main thread, instead of interrupting a wait
/// or a lock attempt here to run libuv's handler (strace showed SIGCHLD
/// landing on the waiting thread between its `flock` and its `linkat`).
/// Signals raised by a fault of this thread still reach it.
pub fn block_signals_on_this_thread() {
    // SAFETY: sigfillset initializes the set; pthread_sigmask changes only
    // the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The parent process id (tests use it as a live process of ours).
#[cfg(test)]
pub fn parent_pid() -> u32 {
    std::os::unix::process::parent_id()
}
