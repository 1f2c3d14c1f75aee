//! The platform layer: every call into the operating system (and the one
//! Node-API object napi-rs has no fitting safe form for), behind safe
//! functions. The rest of the crate carries no `#[cfg(unix)]` /
//! `#[cfg(target_os)]` and no `unsafe`; each `unsafe` block here has its
//! SAFETY line.
//!
//! One file per platform: `unix.rs` (what every Unix shares: POSIX opens,
//! `flock`, `kill(pid, 0)`, the wake pipe), with `linux.rs` or `macos.rs` on
//! top, and `windows.rs`. Each platform exports the same surface:
//!
//! | item | what it must do |
//! | --- | --- |
//! | `errno::{EACCES, ...}` | the errno values the error table names (see `oserror`) |
//! | `LOCK_SYSCALL` | the name a failed lock call reports as `syscall` |
//! | `file_id(&File, &Metadata) -> FileId`, `mtime_ms(&Metadata) -> i64` | identity of an open file (Unix: from the metadata; Windows: from the handle), modification time |
//! | `path_id(path)`, `dir_id(path, follow)` | identity of what a path names without following (`None`: nothing there, or on Windows a delete-pending file), of a directory |
//! | `errno_of(&io::Error)` | the errno an error from std or this layer stands for (Windows maps its error codes) |
//! | `SEPARATORS`, `SEPARATOR`, `DRIVE_ROOTS`, `display_path(PathBuf)` | path spelling: separators, `X:\` roots, a canonical path as Node shows it |
//! | `publish_temp(&File, tmp, target)` | name a complete file built under `tmp` as `target`, failing with `EEXIST` instead of replacing (Unix: `link` then unlink `tmp`; Windows: a rename that never replaces) |
//! | `start_time(pid)` | a native start time (Windows: creation time, ms since the epoch); `None` where `proc_stat` is the source |
//! | `create_new(path)`, `open_existing(path)` | exclusive create (read-write, mode 0644) / read-only open; never follow a final symlink, never block on a FIFO or device |
//! | `open_existing_for_lock(path) -> (File, writable)`, `single_link(&Metadata)`, `unlinked(&Metadata)` | open to lock and wait on: read-write where permitted (Unix), else read-only; the file has no other name (Windows: never writable, never single: no in-place takeover); the file has no name left (Windows: never reported) |
//! | `try_lock_exclusive(&File) -> io::Result<bool>`, `unlock(&File)` | the OS lock of an open file description, without blocking; `false` = held elsewhere |
//! | `write_at`, `read_at`, `set_mtime` | positional I/O; set the modification time (best effort) |
//! | `UNNAMED_FILES`, `create_unnamed(dir)`, `link_unnamed(&File, target)` | build a file no one can see, then name it, failing with `EEXIST` instead of replacing |
//! | `CAN_EXCHANGE`, `exchange(a, b)` | swap two names in one step |
//! | `process_exists(pid)` | the pid names a process (one we may not signal counts) |
//! | `proc_stat(pid)`, `boot_id()`, `hostname()` | the `/proc/<pid>/stat` line, the boot id, the host name (`None`/empty where unknown) |
//! | `thread_id()`, `is_main_thread()`, `parent_pid()` (tests) | the calling thread's id; main thread or not (`None`: cannot tell cheaply); the parent's pid |
//! | `wake_channel() -> (WakeSender, WakeReceiver)` | wakes the waiting thread from any thread; `WakeReceiver::wait(timeout)` blocks until woken |
//! | `block_signals_on_this_thread()` | keep process-directed signals off the waiting thread (Unix: block them all; Windows: nothing) |
//! | `LoopWatch` (Linux: `loop_watch.rs`; elsewhere it never starts) | a change watcher polled by a Node env's own event loop: `start(env, on_fire, after_fire, on_teardown)`, `add(path)`, `remove(id)` |
//! | `WakeFn` (all platforms, `node.rs`) | a Node-API thread-safe function waking a context's JS (named, unref'd) |
//! | `ChangeWatcher` | change notification on lock files for the waiting thread: `create() -> Result<Option<Self>, errno>` (`None`: no facility, waits poll), `unsupported(errno)`, `limit_hint(errno)` (text for a failed `add`), `add(path) -> Result<WatchId, errno>`, `remove(id)`, `wait(&wake, timeout, &mut Vec<Fired>)`; consts `NAME`, `CREATE_SYSCALL`, `WATCH_SYSCALL` |
//!
//! macOS watches with kqueue (`EVFILT_VNODE` on the lock file, with
//! `NOTE_FUNLOCK` for a released or dead holder, and on its directory), the
//! same interface as Linux's inotify watcher (see `macos.rs`). Windows
//! (`windows.rs`, see docs/windows.md) locks with `LockFileEx` and waits on
//! directory change notifications and holder process handles.

/// Identity of an inode (device and inode number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// One watch of a `ChangeWatcher`.
pub type WatchId = i32;

/// A watch that fired: `dropped` when the platform removed the watch itself
/// (its file is gone; the id may be reused).
#[derive(Debug, Clone, Copy)]
pub struct Fired {
    pub id: WatchId,
    pub dropped: bool,
}

mod node;
pub use node::{f64_slice_mut, with_js_str, OutSlots, WakeFn};

/// The JS thread's own change watcher where there is none (every platform
/// but Linux): it never starts, and waits take the waiting thread's path.
#[derive(Debug)]
pub enum NoLoopWatch {}

impl NoLoopWatch {
    /// Never starts here (`ENOSYS`).
    pub fn start(
        _env: &napi::Env,
        _on_fire: fn(&napi::Env, &[Fired]),
        _after_fire: fn(),
        _on_teardown: fn(),
    ) -> Result<Self, i32> {
        Err(38)
    }

    pub fn add(&self, _path: &str) -> Result<WatchId, i32> {
        match *self {}
    }

    pub fn remove(&self, _id: WatchId) {
        match *self {}
    }
}

/// The change watcher of a platform that has none (yet): it has no
/// values, so [`NoChangeWatcher::create`] reports "no facility" and the
/// waiting thread polls; none of its other methods can run.
#[derive(Debug)]
pub enum NoChangeWatcher {}

impl NoChangeWatcher {
    pub const NAME: &'static str = "change notification";
    pub const CREATE_SYSCALL: &'static str = "none";
    pub const WATCH_SYSCALL: &'static str = "none";

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

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
#[cfg(target_os = "linux")]
mod loop_watch;
#[cfg(target_os = "linux")]
pub use loop_watch::LoopWatch;
#[cfg(not(target_os = "linux"))]
pub use NoLoopWatch as LoopWatch;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!("session-write-lock: no platform layer for this target (see src/sys/mod.rs)");
