//! macOS: what differs from Linux. No unnamed files and no name exchange
//! are used (new lock files take the portable create of `lockfile`, a
//! rewrite pads in place), no `/proc` (start times and boot id are unknown),
//! thread ids from `pthread_threadid_np`.
//!
//! Change notification: none yet. [`ChangeWatcher`] is uninhabited, so
//! [`ChangeWatcher::create`] reports "no facility" and the waiting thread
//! polls every `PORTABLE_POLL` (see `waiter`). An event-driven watcher
//! (kqueue `EVFILT_VNODE`) replaces this type with the same interface as the
//! Linux one: `create`, `unsupported`, `limit_hint`, `add`, `remove`, `wait`, `NAME`,
//! `CREATE_SYSCALL`, `WATCH_SYSCALL`.

use std::fs::File;
use std::io;
use std::path::Path;

use super::unix::WakeReceiver;
use super::{Fired, WatchId};

/// No unnamed files here: new lock files take the portable create.
pub const UNNAMED_FILES: bool = false;
/// No name exchange is used here: rewrites pad in place.
pub const CAN_EXCHANGE: bool = false;

/// Never called ([`UNNAMED_FILES`] is false).
pub fn create_unnamed(_dir: &Path) -> Option<File> {
    None
}

/// Never called ([`UNNAMED_FILES`] is false).
pub fn link_unnamed(_file: &File, _target: &Path) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Never called ([`CAN_EXCHANGE`] is false).
pub fn exchange(_a: &Path, _b: &Path) -> io::Result<()> {
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

/// No change notification yet (see the module docs): this type has no
/// values, so none of its methods can run.
#[derive(Debug)]
pub enum ChangeWatcher {}

impl ChangeWatcher {
    pub const NAME: &'static str = "kqueue";
    pub const CREATE_SYSCALL: &'static str = "kqueue";
    pub const WATCH_SYSCALL: &'static str = "kevent";

    /// No facility: the waiting thread polls.
    pub fn create() -> Result<Option<Self>, i32> {
        Ok(None)
    }

    pub fn unsupported(_errno: i32) -> bool {
        true
    }

    pub fn limit_hint(_errno: i32) -> &'static str {
        ""
    }

    pub fn add(&mut self, _path: &str) -> Result<WatchId, i32> {
        match *self {}
    }

    pub fn remove(&mut self, _id: WatchId) {
        match *self {}
    }

    pub fn wait(
        &mut self,
        _wake: &WakeReceiver,
        _timeout_ms: Option<u32>,
        _fired: &mut Vec<Fired>,
    ) {
        match *self {}
    }
}
