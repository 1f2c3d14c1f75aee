//! macOS: what differs from Linux. No unnamed files and no name exchange
//! are used (new lock files take the portable create of `lockfile`, a
//! rewrite pads in place), no `/proc` (start times and boot id are unknown),
//! thread ids from `pthread_threadid_np`.
//!
//! Change notification: kqueue. [`ChangeWatcher`] keeps one `EVFILT_VNODE`
//! registration per watched lock file (an `O_EVTONLY` descriptor of its
//! inode, never following a final symlink) and one per directory holding
//! watched files. The file's filter fires on `NOTE_FUNLOCK` (its `flock` was
//! released, by `flock(2)` or by the last close of the holder's open file,
//! which is also what a dying holder's exit does), `NOTE_DELETE`,
//! `NOTE_RENAME`, `NOTE_LINK`, `NOTE_ATTRIB` and `NOTE_REVOKE`; the
//! directory's on `NOTE_WRITE` (an entry was added, removed or renamed: a
//! lock file replaced or created at a watched name) and wakes every watched
//! file in it. The waiting thread's fallback poll stays underneath, so a
//! file system that posts no vnode events (some network ones) is still
//! followed, only later. The same interface as the Linux watcher; kqueue is
//! the BSDs' facility too (FreeBSD has no `NOTE_FUNLOCK` but `NOTE_CLOSE`),
//! but only macOS is built here.
//!
//! Not verified at run time: nothing in this project's CI runs Mach-O; this
//! file is checked, linted and linked for both darwin targets.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::unix::{file_id, poll_and_drain, WakeReceiver};
use super::{FileId, Fired, WatchId};

/// No unnamed files here: new lock files take the portable create.
pub const UNNAMED_FILES: bool = false;
/// No name exchange is used here: rewrites pad in place.
pub const CAN_EXCHANGE: bool = false;

/// Never called ([`UNNAMED_FILES`] is false).
pub fn create_unnamed(_dir: &Path) -> Option<File> {
    None
}

/// Never called ([`UNNAMED_FILES`] is false).
pub fn link_unnamed(_file: &File, _target: impl AsRef<Path>) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Never called ([`CAN_EXCHANGE`] is false).
pub fn exchange(_a: impl AsRef<Path>, _b: impl AsRef<Path>) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Unknown on macOS.
pub fn boot_id() -> Option<String> {
    None
}

/// No `/proc` on macOS.
pub fn proc_stat(_pid: u32) -> Option<Vec<u8>> {
    None
}

/// The system-wide id of the calling thread.
pub fn thread_id() -> u64 {
    let mut id: u64 = 0;
    // SAFETY: writes the calling thread's id into `id`.
    unsafe { libc::pthread_threadid_np(0 as _, &mut id) };
    id
}

/// Whether the calling thread is the process's main thread.
pub fn is_main_thread() -> Option<bool> {
    // SAFETY: pthread_main_np has no preconditions.
    Some(unsafe { libc::pthread_main_np() } != 0)
}

/// One watched lock file: its `O_EVTONLY` descriptor (the kqueue ident and
/// the [`WatchId`]), its inode, and the directory watch it counts on.
#[derive(Debug)]
struct FileWatch {
    fd: OwnedFd,
    id: FileId,
    dir: Option<(u64, u64)>,
}

/// One watched directory and the files watched in it.
#[derive(Debug)]
struct DirWatch {
    fd: OwnedFd,
    files: Vec<WatchId>,
}

/// Change notification on lock files by kqueue (see the module docs).
#[derive(Debug)]
pub struct ChangeWatcher {
    kq: OwnedFd,
    files: HashMap<WatchId, FileWatch>,
    dirs: HashMap<(u64, u64), DirWatch>,
    /// Directory idents, to tell their events from the files'.
    dir_by_fd: HashMap<i32, (u64, u64)>,
}

/// What a file's registration reports.
const FILE_NOTES: u32 = libc::NOTE_FUNLOCK
    | libc::NOTE_DELETE
    | libc::NOTE_RENAME
    | libc::NOTE_LINK
    | libc::NOTE_ATTRIB
    | libc::NOTE_REVOKE;
/// What a directory's registration reports: its entries changed.
const DIR_NOTES: u32 = libc::NOTE_WRITE | libc::NOTE_DELETE | libc::NOTE_RENAME | libc::NOTE_REVOKE;

/// Open `path` for events only: no read or write access, not keeping a
/// volume from unmounting, never following a final symlink, never blocking.
fn open_evtonly(path: &Path, directory: bool) -> Result<File, i32> {
    let mut flags = libc::O_EVTONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

impl ChangeWatcher {
    pub const NAME: &'static str = "kqueue";
    pub const CREATE_SYSCALL: &'static str = "kqueue";
    pub const WATCH_SYSCALL: &'static str = "kevent";

    /// A new kqueue; `Err(errno)` when none can be made (see
    /// [`ChangeWatcher::unsupported`]).
    pub fn create() -> Result<Option<Self>, i32> {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let kq = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a plain flag update on our descriptor (kqueues are not
        // inherited across fork; close-on-exec keeps exec'd programs clean).
        unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Some(ChangeWatcher {
            kq,
            files: HashMap::new(),
            dirs: HashMap::new(),
            dir_by_fd: HashMap::new(),
        }))
    }

    /// kqueue exists on every macOS; a failure is a resource failure.
    pub fn unsupported(errno: i32) -> bool {
        matches!(errno, libc::ENOSYS | libc::EOPNOTSUPP)
    }

    /// What to add to a message about a failed [`ChangeWatcher::add`]: each
    /// watch costs a descriptor.
    pub fn limit_hint(errno: i32) -> &'static str {
        if errno == libc::EMFILE || errno == libc::ENFILE {
            " (each watched lock file costs a descriptor: the open-file limit is reached)"
        } else {
            ""
        }
    }

    /// Register `fd` with `notes` (edge-triggered: `EV_CLEAR`).
    fn register(&self, fd: i32, notes: u32) -> Result<(), i32> {
        // SAFETY: kevent is plain data; zeroed is a valid value.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = fd as libc::uintptr_t;
        ev.filter = libc::EVFILT_VNODE;
        ev.flags = libc::EV_ADD | libc::EV_ENABLE | libc::EV_CLEAR;
        ev.fflags = notes;
        // SAFETY: one valid change, no event list, our kqueue descriptor.
        let rc = unsafe {
            libc::kevent(
                self.kq.as_raw_fd(),
                &ev,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(())
        }
    }

    /// Watch the inode currently at `path` (never following a final
    /// symlink), and its directory. Watching one inode twice gives the same
    /// id. The id is the watch's descriptor.
    pub fn add(&mut self, path: &str) -> Result<WatchId, i32> {
        let file = open_evtonly(Path::new(path), false)?;
        let meta = file
            .metadata()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let id = file_id(&file, &meta);
        if let Some((&wid, _)) = self.files.iter().find(|(_, w)| w.id == id) {
            return Ok(wid);
        }
        let fd: OwnedFd = file.into();
        let wid = fd.as_raw_fd();
        self.register(wid, FILE_NOTES)?;
        // The directory: best effort (the file's own events are the main
        // signal, and the fallback poll covers the rest).
        let dir = Path::new(path)
            .parent()
            .and_then(|d| self.watch_dir(d, wid));
        self.files.insert(wid, FileWatch { fd, id, dir });
        Ok(wid)
    }

    /// Count `file` on the watch of `dir`, adding it when new. `None` when
    /// the directory cannot be watched.
    fn watch_dir(&mut self, dir: &Path, file: WatchId) -> Option<(u64, u64)> {
        let d = open_evtonly(
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            true,
        )
        .ok()?;
        let FileId { dev, ino } = file_id(&d, &d.metadata().ok()?);
        let id = (dev, ino);
        if let Some(w) = self.dirs.get_mut(&id) {
            w.files.push(file);
            return Some(id);
        }
        let fd: OwnedFd = d.into();
        self.register(fd.as_raw_fd(), DIR_NOTES).ok()?;
        self.dir_by_fd.insert(fd.as_raw_fd(), id);
        self.dirs.insert(
            id,
            DirWatch {
                fd,
                files: vec![file],
            },
        );
        Some(id)
    }

    /// Remove a watch (closing its descriptor drops its registration), and
    /// its directory's when no other watched file is in it.
    pub fn remove(&mut self, id: WatchId) {
        let Some(w) = self.files.remove(&id) else {
            return;
        };
        if let Some(d) = w.dir {
            if let Some(dw) = self.dirs.get_mut(&d) {
                dw.files.retain(|f| *f != id);
                if dw.files.is_empty() {
                    if let Some(dw) = self.dirs.remove(&d) {
                        self.dir_by_fd.remove(&dw.fd.as_raw_fd());
                    }
                }
            }
        }
        drop(w.fd);
    }

    /// Block until `wake` is signalled, a watch fires, or `timeout_ms`
    /// passes (`None`: no timeout); consume the wake-ups and append every
    /// file whose watch (or directory) fired to `fired`. Watches are never
    /// dropped by the platform here: a watched file that is gone keeps its
    /// registration until [`ChangeWatcher::remove`].
    pub fn wait(&mut self, wake: &WakeReceiver, timeout_ms: Option<u32>, fired: &mut Vec<Fired>) {
        poll_and_drain(wake, Some(self.kq.as_raw_fd()), timeout_ms);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            // SAFETY: kevent is plain data; zeroed is a valid value.
            let mut evs: [libc::kevent; 32] = unsafe { std::mem::zeroed() };
            // SAFETY: no changes, an event list of its length, a zero
            // timeout (never blocks), our kqueue descriptor.
            let n = unsafe {
                libc::kevent(
                    self.kq.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    evs.as_mut_ptr(),
                    evs.len() as i32,
                    &zero,
                )
            };
            if n <= 0 {
                break;
            }
            for ev in &evs[..n as usize] {
                let ident = ev.ident as i32;
                if let Some(d) = self.dir_by_fd.get(&ident) {
                    if let Some(dw) = self.dirs.get(d) {
                        fired.extend(dw.files.iter().map(|&id| Fired { id, dropped: false }));
                    }
                } else if self.files.contains_key(&ident) {
                    fired.push(Fired {
                        id: ident,
                        dropped: false,
                    });
                }
            }
            if (n as usize) < evs.len() {
                break;
            }
        }
    }
}
