//! macOS: what differs from Linux. No unnamed files and no name exchange
//! are used (new lock files take the portable create of `lockfile`, a
//! rewrite pads in place), no `/proc` (start times and boot id are unknown),
//! thread ids from `pthread_threadid_np`.
//!
//! Change notification: none yet. `ChangeWatcher` is the shared
//! [`super::NoChangeWatcher`] (uninhabited): `create` reports "no facility"
//! and the waiting thread polls every `PORTABLE_POLL` (see `wait_thread`).
//! An event-driven watcher (kqueue `EVFILT_VNODE`) replaces that re-export
//! with its own type, with the interface of the Linux one: `create`,
//! `unsupported`, `limit_hint`, `add`, `remove`, `wait`, `NAME`,
//! `CREATE_SYSCALL`, `WATCH_SYSCALL`.

use std::fs::File;
use std::io;
use std::path::Path;

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

/// No change notification yet (see the module docs).
pub use super::NoChangeWatcher as ChangeWatcher;
