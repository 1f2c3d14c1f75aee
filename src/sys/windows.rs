//! Windows: the slot for the `LockFileEx` backend. Not implemented: every
//! function below names what it must do and fails with `Unsupported` (or
//! reports "unknown"), and `sys/mod.rs` stops a Windows build with a
//! `compile_error!` until the backend replaces these bodies.
//!
//! What the backend must keep (see docs/spec.md and docs/design.md):
//! - `try_lock_exclusive` locks a byte range that leaves the JSON payload
//!   readable (for example one byte far past the end of file), since
//!   `LockFileEx` ranges block reads.
//! - `create_new` / `open_existing` never follow a reparse point at the last
//!   component and open with sharing that lets others read, and delete or
//!   rename the name (so a release can unlink while holding).
//! - `file_id` is the volume serial number and file index.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use super::{FileId, Fired, WatchId};

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not implemented on Windows yet")
}

/// Errno values by name (the CRT's, which libc exposes for Windows too).
pub mod errno {
    pub use libc::{
        EACCES, EAGAIN, EBADF, EBUSY, EEXIST, EFBIG, EINTR, EINVAL, EIO, EISDIR, ELOOP, EMFILE,
        EMLINK, ENAMETOOLONG, ENFILE, ENOENT, ENOLCK, ENOMEM, ENOSPC, ENOSYS, ENOTDIR, ENXIO,
        EOPNOTSUPP, EPERM, EROFS, ETXTBSY, EXDEV,
    };
    /// No quota errno in the CRT; never produced here.
    pub const EDQUOT: i32 = -1;
}

pub const LOCK_SYSCALL: &str = "LockFileEx";
pub const UNNAMED_FILES: bool = false;
pub const CAN_EXCHANGE: bool = false;

pub fn file_id(_m: &Metadata) -> FileId {
    FileId { dev: 0, ino: 0 }
}

pub fn mtime_ms(m: &Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn create_new(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}

pub fn open_existing(_path: &Path) -> io::Result<File> {
    Err(unsupported())
}

pub fn try_lock_exclusive(_file: &File) -> io::Result<bool> {
    Err(unsupported())
}

pub fn unlock(_file: &File) {}

pub fn write_at(_file: &File, _bytes: &[u8], _off: u64) -> io::Result<()> {
    Err(unsupported())
}

pub fn read_at(_file: &File, _buf: &mut [u8], _off: u64) -> io::Result<usize> {
    Err(unsupported())
}

pub fn set_mtime(_file: &File, _ms: i64) {}

pub fn create_unnamed(_dir: &Path) -> Option<File> {
    None
}

pub fn link_unnamed(_file: &File, _target: &Path) -> io::Result<()> {
    Err(unsupported())
}

pub fn exchange(_a: &Path, _b: &Path) -> io::Result<()> {
    Err(unsupported())
}

/// `OpenProcess` + `GetExitCodeProcess` (`STILL_ACTIVE`); access denied
/// counts as alive.
pub fn process_exists(_pid: u32) -> bool {
    true
}

pub fn proc_stat(_pid: u32) -> Option<Vec<u8>> {
    None
}

pub fn boot_id() -> Option<String> {
    None
}

pub fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

pub fn thread_id() -> u64 {
    0
}

pub fn is_main_thread() -> Option<bool> {
    None
}

pub fn parent_pid() -> u32 {
    0
}

#[derive(Debug)]
pub struct WakeSender(());

#[derive(Debug)]
pub struct WakeReceiver(());

/// An event object or a loopback channel.
pub fn wake_channel() -> io::Result<(WakeSender, WakeReceiver)> {
    Err(unsupported())
}

impl WakeSender {
    pub fn wake(&self) {}
}

impl WakeReceiver {
    pub fn wait(&self, _timeout_ms: Option<u32>) {}
}

/// `ReadDirectoryChangesW` on the lock's directory, or none (waits poll).
#[derive(Debug)]
pub enum ChangeWatcher {}

impl ChangeWatcher {
    pub const NAME: &'static str = "ReadDirectoryChangesW";
    pub const CREATE_SYSCALL: &'static str = "CreateIoCompletionPort";
    pub const WATCH_SYSCALL: &'static str = "ReadDirectoryChangesW";

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
