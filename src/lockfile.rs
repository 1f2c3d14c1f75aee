//! The lock file: one OS advisory lock (`flock`) held on an open descriptor of
//! `<session>.lock` for the whole hold.
//!
//! What this module guarantees:
//! - **Exclusion** between every descriptor that locks through it, in any
//!   process: `flock` locks belong to the open file description, so two opens
//!   conflict even inside one process, and the kernel drops the lock the moment
//!   the holder's last descriptor closes, however the holder dies. POSIX
//!   `fcntl` record locks are never used (they are per process and vanish when
//!   any descriptor of the file closes).
//! - **No following, no blocking, no damage**: the lock path is opened with
//!   `O_NOFOLLOW | O_NONBLOCK`; a symlink, directory, FIFO, socket or device
//!   there is refused with `ELOOP` / `EISDIR` / `EINVAL` and never followed,
//!   truncated or removed. We only ever *write* into a file we created
//!   ourselves with `O_CREAT | O_EXCL`; a file found in place (a dead holder's,
//!   the old module's, a hostile hard link) is only read (at most
//!   [`MAX_PAYLOAD_BYTES`]) and, if it is judged stale, replaced while we hold
//!   its lock: on Linux a complete new file of ours is exchanged into its name
//!   (`renameat2(RENAME_EXCHANGE)`; undone if the name no longer named the
//!   stale file, so a lock the old module created meanwhile is never removed),
//!   elsewhere its name is unlinked and a fresh file is created exclusively,
//!   the step the old TypeScript module linearizes on too.
//! - **No incomplete file, ever**: a new lock file is built where nobody can
//!   see it, locked and filled with its payload, and only then given its name
//!   by a call that fails with `EEXIST` rather than replace anything. On Linux
//!   the file is unnamed (`O_TMPFILE`) and named with `linkat`; elsewhere, or
//!   when that fails for this attempt, it is built under a temporary name in
//!   the same directory ([`temp_name`]: `.<lock file name>.<pid>-<n>.tmp`,
//!   which never ends in `.lock`, so nothing takes it for a lock) and named
//!   with `link`, after which the temporary name is removed. A process killed
//!   at any instant leaves no lock file or a complete one (plus, at worst, a
//!   stray `*.tmp` name). Only a file system without hard links falls back to
//!   `O_CREAT | O_EXCL`, then lock, then write.
//! - **Every rewrite parses**: an in-process hand-off or a `createdAt`
//!   refresh rewrites in place (one `pwrite`) only when any torn mix of old and
//!   new bytes still parses (only hex digits change); otherwise a complete new
//!   file is exchanged into the name (see [`LockFile::rewrite`]). Only where no
//!   exchange exists is a shorter payload padded with spaces to the old length
//!   and then trimmed.
//! - **Per attempt**: a failed fast path (`O_TMPFILE` refused, `linkat`
//!   failing) only sends *that* create down the portable path; nothing is
//!   cached, so the next create tries the fast path again.
//! - **Unlink races**: after locking, the descriptor's inode must still be the
//!   one the path names; otherwise we retry. Release unlinks only while still
//!   holding the lock and only if the path still names our inode, then closes.
//!
//! What it does not guarantee: exclusion against code that ignores `flock`
//! (the old module is handled by the payload rules of `legacy`), nor on network
//! file systems whose `flock` is emulated or local-only (NFS, SMB).

use std::fs::File;
use std::io;
use std::path::Path;

use crate::oserror::OsError;
use crate::payload::{self, ParsedPayload, MAX_PAYLOAD_BYTES};
use crate::sys::{self, errno};

pub use crate::sys::FileId;

/// How a payload-bearing file found in place (not created by us) should be
/// treated once we hold its OS lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Nobody valid holds it: unlink the name and create a fresh file.
    Reclaim,
    /// The old module (which holds no OS lock) holds it: wait and look again.
    Wait,
}

/// A lock file we hold. Dropping it without [`LockFile::release`] closes the
/// descriptor (which frees the OS lock) but leaves the file.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    id: FileId,
    /// The payload as last written (compared with the next one to decide
    /// whether it may be rewritten in place).
    written: Vec<u8>,
    /// The `createdAt` the payload carries, epoch ms (set by the registry).
    pub created_ms: i64,
}

/// The outcome of [`LockFile::rewrite`].
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    Done,
    /// The lock path no longer names our file (deleted or replaced): nothing
    /// was written where anyone can see it.
    Lost,
}

/// Can `old` be overwritten by `new` in one `pwrite` such that any mix of
/// their bytes a concurrent reader might see (Linux does not serialize reads
/// against writes of a page) is still valid JSON with the same keys? True
/// when both have the same length and every byte that differs is a lower-case
/// hex digit on both sides: the fencing token (24 hex digits in a string) and
/// a same-width `maxHoldMs` number change, nothing else. Both are payloads
/// rendered by us in this process (same keys, pid, host): the check is on
/// bytes, not on JSON structure.
fn mix_safe(old: &[u8], new: &[u8]) -> bool {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(&a, &b)| a == b || (hex(a) && hex(b)))
}

/// An open descriptor on a lock file someone else holds, kept while waiting
/// so that our own retries neither create nor close descriptors (which would
/// wake every watcher of the file).
#[derive(Debug)]
pub struct WaitFile {
    file: File,
    id: FileId,
    /// True when the holder is the old module (no OS lock to wait on).
    pub legacy: bool,
}

/// The outcome of one non-blocking attempt.
#[derive(Debug)]
pub enum Attempt {
    Acquired(LockFile),
    Busy(WaitFile),
}

/// Open the lock path, creating it exclusively if absent. Returns the file,
/// whether we created it, and its metadata.
fn open_lock_path(path: &Path, path_str: &str) -> Result<(File, bool, std::fs::Metadata), OsError> {
    // Bounded: a name that keeps flapping between our create and our open is
    // reported as it is.
    for _ in 0..1000 {
        match sys::create_new(path) {
            Ok(f) => {
                count(COUNT_EXCL);
                // O_EXCL only ever makes a regular file. If we cannot even
                // stat it, take back the (empty) name we just created.
                let meta = match f.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = std::fs::remove_file(path);
                        return Err(OsError::from_io(&e, "fstat", path_str));
                    }
                };
                return Ok((f, true, meta));
            }
            Err(e) if sys::errno_of(&e) == Some(errno::EEXIST) => {
                if let Some((f, meta)) = open_existing(path, path_str)? {
                    return Ok((f, false, meta));
                }
                // The holder released (unlinked) between our create and our
                // open: create again.
            }
            Err(e) => return Err(classify_open_error(&e, path, path_str)),
        }
    }
    Err(OsError::synthetic("ENOENT", "open", path_str))
}

/// Open an existing lock path read-only (never following, never blocking):
/// enough to lock and to read, and we never write into a file we did not
/// create. `None` when nothing is there any more.
fn open_existing(
    path: &Path,
    path_str: &str,
) -> Result<Option<(File, std::fs::Metadata)>, OsError> {
    let file = match sys::open_existing(path) {
        Ok(f) => f,
        Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => return Ok(None),
        Err(e) => return Err(classify_open_error(&e, path, path_str)),
    };
    let meta = file
        .metadata()
        .map_err(|e| OsError::from_io(&e, "fstat", path_str))?;
    if !meta.file_type().is_file() {
        return Err(non_regular_error(&meta, path_str));
    }
    Ok(Some((file, meta)))
}

enum Publish {
    /// Our file now has the name, locked and with its payload.
    Done(LockFile),
    /// Something already has the name.
    Exists,
    /// No `O_TMPFILE` here (or no `/proc`): use create-then-write.
    Unsupported,
}

/// How creates went, for tests and diagnostics (`__testing`): linked from
/// `O_TMPFILE`, linked from a temporary name, plain exclusive creates, and
/// fast-path attempts that fell back.
pub static CREATE_COUNTS: [std::sync::atomic::AtomicU64; 4] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];
const COUNT_TMPFILE: usize = 0;
const COUNT_TEMP_LINK: usize = 1;
const COUNT_EXCL: usize = 2;
const COUNT_FALLBACK: usize = 3;

fn count(i: usize) {
    CREATE_COUNTS[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// `SESSION_WRITE_LOCK_PORTABLE_CREATE=1` forces the create-then-write path
/// that systems without unnamed files use, so that tests cover it here too.
fn portable_only() -> bool {
    static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| {
        std::env::var_os("SESSION_WRITE_LOCK_PORTABLE_CREATE").is_some_and(|v| v == "1")
    })
}

/// Build the lock file unnamed, lock it, write the payload, then link it into
/// place (see the module docs). Any failure to create or link other than
/// `EEXIST` sends this attempt (only this one) to the portable path, which
/// reports errors with the `open` syscall as Node would.
fn publish(
    path: &Path,
    path_str: &str,
    render: &mut dyn FnMut(&mut String),
) -> Result<Publish, OsError> {
    if !sys::UNNAMED_FILES || portable_only() {
        return Ok(Publish::Unsupported);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(Publish::Unsupported),
    };
    let Some(file) = sys::create_unnamed(dir) else {
        // No unnamed file in this directory (EOPNOTSUPP, EISDIR, EINVAL) or
        // any other refusal: the portable path decides, and reports real
        // errors.
        count(COUNT_FALLBACK);
        return Ok(Publish::Unsupported);
    };
    if !try_lock_exclusive(&file, path_str)? {
        // Nobody else can see an unnamed inode; be safe anyway.
        count(COUNT_FALLBACK);
        return Ok(Publish::Unsupported);
    }
    let mut buf = String::with_capacity(320);
    render(&mut buf);
    sys::write_at(&file, buf.as_bytes(), 0).map_err(|e| OsError::from_io(&e, "write", path_str))?;
    // Identity first: once linked, the file is visible, and a failure after
    // that would leave a complete but unlocked file at the path.
    let meta = file
        .metadata()
        .map_err(|e| OsError::from_io(&e, "fstat", path_str))?;
    if let Err(e) = sys::link_unnamed(&file, path) {
        if sys::errno_of(&e) == Some(errno::EEXIST) {
            return Ok(Publish::Exists);
        }
        // No /proc, or linking an unnamed file refused here (ENOENT, EPERM,
        // EXDEV...): this attempt only goes the portable way.
        count(COUNT_FALLBACK);
        return Ok(Publish::Unsupported);
    }
    count(COUNT_TMPFILE);
    Ok(Publish::Done(LockFile {
        id: sys::file_id(&file, &meta),
        file,
        written: buf.into_bytes(),
        created_ms: 0,
    }))
}

enum Linked {
    Done(LockFile),
    Exists,
    /// The file system has no hard links: only a plain exclusive create is
    /// left.
    NoLinks,
}

/// The temporary name a portable create builds its file under:
/// `.<lock file name>.<pid>-<n>.tmp` in the lock's directory. It never ends
/// in `.lock`, so neither cleanup nor an acquire ever takes it for a lock; a
/// process killed between the `link` and the `unlink` below leaves it behind
/// as a second name of a file nobody holds (harmless; removable by hand).
pub fn temp_name(path: &Path) -> Option<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name()?;
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    Some(path.with_file_name(t))
}

/// Create a new temporary file for `path` ([`temp_name`], exclusively, mode
/// 0644, never following). `None`: the path has no file name. A name taken
/// already (a stray left by a killed process of a recycled pid) is retried
/// with the next counter value a few times.
fn create_temp(path: &Path) -> Option<io::Result<(File, std::path::PathBuf)>> {
    let mut tmp = temp_name(path)?;
    let mut tries = 0;
    loop {
        match sys::create_new(&tmp) {
            Ok(f) => return Some(Ok((f, tmp))),
            Err(e) if sys::errno_of(&e) == Some(errno::EEXIST) && tries < 8 => {
                tries += 1;
                tmp = temp_name(path)?;
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// The portable create: build the complete, locked file under a temporary
/// name, then `link` it to the lock path (which fails with `EEXIST` instead
/// of replacing anything), then drop the temporary name.
fn publish_linked(
    path: &Path,
    path_str: &str,
    render: &mut dyn FnMut(&mut String),
) -> Result<Linked, OsError> {
    let (file, tmp) = match create_temp(path) {
        None => return Ok(Linked::NoLinks),
        Some(Ok(created)) => created,
        // A read-only or full directory: an existing lock file still
        // decides first (as `O_EXCL` reports EEXIST before EROFS).
        Some(Err(e)) => {
            return match open_existing(path, path_str)? {
                Some(_) => Ok(Linked::Exists),
                None => Err(classify_open_error(&e, path, path_str)),
            }
        }
    };
    let cleanup = |tmp: &Path| {
        let _ = std::fs::remove_file(tmp);
    };
    match try_lock_exclusive(&file, path_str) {
        Ok(true) => {}
        Ok(false) => {
            // Someone opened our private name and locked it: give up this
            // name and let the caller try the plain way.
            cleanup(&tmp);
            return Ok(Linked::NoLinks);
        }
        Err(e) => {
            cleanup(&tmp);
            return Err(e);
        }
    }
    let mut buf = String::with_capacity(320);
    render(&mut buf);
    if let Err(e) = sys::write_at(&file, buf.as_bytes(), 0) {
        cleanup(&tmp);
        return Err(OsError::from_io(&e, "write", path_str));
    }
    // Identity before the name is published (as in `publish`).
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            cleanup(&tmp);
            return Err(OsError::from_io(&e, "fstat", path_str));
        }
    };
    // Unix: link, then drop the temporary name; Windows: a rename that
    // never replaces.
    match sys::publish_temp(&file, &tmp, path) {
        Ok(()) => {}
        Err(e) => {
            return match sys::errno_of(&e) {
                Some(errno::EEXIST) => Ok(Linked::Exists),
                Some(errno::EPERM)
                | Some(errno::EOPNOTSUPP)
                | Some(errno::ENOSYS)
                | Some(errno::EMLINK) => Ok(Linked::NoLinks),
                _ => Err(OsError::from_io(&e, "link", path_str)),
            }
        }
    }
    count(COUNT_TEMP_LINK);
    Ok(Linked::Done(LockFile {
        id: sys::file_id(&file, &meta),
        file,
        written: buf.into_bytes(),
        created_ms: 0,
    }))
}

fn non_regular_error(meta: &std::fs::Metadata, path_str: &str) -> OsError {
    let ft = meta.file_type();
    let code = if ft.is_dir() {
        "EISDIR"
    } else if ft.is_symlink() {
        "ELOOP"
    } else {
        "EINVAL"
    };
    OsError::synthetic(code, "open", path_str)
}

fn classify_open_error(e: &io::Error, path: &Path, path_str: &str) -> OsError {
    match sys::errno_of(e) {
        Some(errno::ELOOP) | Some(errno::EISDIR) => OsError::from_io(e, "open", path_str),
        // A socket (ENXIO), or anything else odd: say what is there if we can.
        Some(errno::ENXIO) | Some(errno::EOPNOTSUPP) | Some(errno::ETXTBSY) => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.file_type().is_file() => non_regular_error(&m, path_str),
                _ => OsError::from_io(e, "open", path_str),
            }
        }
        _ => OsError::from_io(e, "open", path_str),
    }
}

fn try_lock_exclusive(file: &File, path_str: &str) -> Result<bool, OsError> {
    sys::try_lock_exclusive(file).map_err(|e| OsError::from_io(&e, sys::LOCK_SYSCALL, path_str))
}

/// Does `path` (not following a final symlink) name the inode `id`?
pub fn path_names(path: &Path, id: FileId) -> bool {
    sys::path_id(path) == Some(id)
}

/// Read at most `MAX_PAYLOAD_BYTES + 1` bytes from the start of `file`.
pub fn read_bounded(file: &File) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    let mut n = 0;
    while n < buf.len() {
        match sys::read_at(file, &mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    buf.truncate(n);
    buf
}

/// A lock file (or marker) opened to look at, not to hold: read-only, never
/// following a symlink, never blocking, regular files only. Shared by the
/// timeout diagnostics, `cleanStaleLockFiles` and marker recovery.
#[derive(Debug)]
pub struct Probe {
    file: File,
    pub id: FileId,
    pub mtime_ms: i64,
}

impl Probe {
    /// Open `path`; `None` when nothing is there. A non-regular file is an
    /// error (`ELOOP`, `EISDIR`, `EINVAL`), as for an acquire.
    pub fn open(path: &Path, path_str: &str) -> Result<Option<Probe>, OsError> {
        Ok(open_existing(path, path_str)?.map(|(file, meta)| Probe {
            id: sys::file_id(&file, &meta),
            file,
            mtime_ms: sys::mtime_ms(&meta),
        }))
    }

    /// At most `MAX_PAYLOAD_BYTES + 1` bytes from the start.
    pub fn read(&self) -> Vec<u8> {
        read_bounded(&self.file)
    }

    /// Try to take the OS lock (kept until the probe is dropped). `false`:
    /// someone holds it.
    pub fn try_lock(&self, path_str: &str) -> Result<bool, OsError> {
        try_lock_exclusive(&self.file, path_str)
    }

    /// Remove the name, if it still names this file. Call only while holding
    /// the probe's lock, so a new holder's file is never removed.
    pub fn remove_if_named(&self, path: &Path, path_str: &str) -> Result<bool, OsError> {
        if !path_names(path, self.id) {
            return Ok(false);
        }
        match sys::remove_name(&self.file, path) {
            Ok(()) => Ok(true),
            Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => Ok(false),
            Err(e) => Err(OsError::from_io(&e, "unlink", path_str)),
        }
    }
}

/// Read and parse the payload at `path` without locking or creating anything
/// (the owner named in a timeout error).
pub fn peek(path: &Path) -> Option<ParsedPayload> {
    let probe = Probe::open(path, &path.to_string_lossy()).ok()??;
    Some(payload::parse(&probe.read()))
}

/// Make one non-blocking attempt to take the lock at `path`.
///
/// `wait` is the descriptor kept from an earlier busy attempt (reused so that
/// waiting creates no open/close churn). `judge` decides about a file found in
/// place whose OS lock we obtained. `render` writes our payload.
pub fn attempt(
    path: &Path,
    path_str: &str,
    mut wait: Option<WaitFile>,
    judge: &mut dyn FnMut(&ParsedPayload, i64) -> Judgement,
    render: &mut dyn FnMut(&mut String),
) -> Result<Attempt, OsError> {
    // Each round either succeeds, reports busy, or observed a change made by
    // another party (unlink, replace, reclaim); bound the rounds anyway.
    for _round in 0..64 {
        let (file, created, meta) = match wait.take() {
            Some(w) => {
                // Reuse only while the path still names the same inode.
                if !path_names(path, w.id) {
                    continue;
                }
                let meta = w
                    .file
                    .metadata()
                    .map_err(|e| OsError::from_io(&e, "fstat", path_str))?;
                (w.file, false, meta)
            }
            None => match publish(path, path_str, render)? {
                Publish::Done(lf) => return Ok(Attempt::Acquired(lf)),
                Publish::Exists => match open_existing(path, path_str)? {
                    Some((file, meta)) => (file, false, meta),
                    // Released between our link and our open: go again.
                    None => continue,
                },
                // A file is there already (the waiting case): open it rather
                // than build a temporary file just to find the name taken.
                // Besides saving work, this keeps a waiter's retries from
                // changing the directory, which is what wakes the waiters
                // of platforms that watch directories (Windows).
                Publish::Unsupported if sys::path_id(path).is_some() => {
                    match open_existing(path, path_str)? {
                        Some((file, meta)) => (file, false, meta),
                        None => continue,
                    }
                }
                Publish::Unsupported => match publish_linked(path, path_str, render)? {
                    Linked::Done(lf) => return Ok(Attempt::Acquired(lf)),
                    Linked::Exists => match open_existing(path, path_str)? {
                        Some((file, meta)) => (file, false, meta),
                        None => continue,
                    },
                    Linked::NoLinks => open_lock_path(path, path_str)?,
                },
            },
        };
        let id = sys::file_id(&file, &meta);
        let mut locked = try_lock_exclusive(&file, path_str)?;
        if !locked && created {
            // Another process may be inspecting the file we just created; it
            // lets go within microseconds.
            for _ in 0..200 {
                std::thread::yield_now();
                locked = try_lock_exclusive(&file, path_str)?;
                if locked {
                    break;
                }
            }
        }
        if !locked {
            return Ok(Attempt::Busy(WaitFile {
                file,
                id,
                legacy: false,
            }));
        }
        if !path_names(path, id) {
            // Unlinked or replaced between our open and our lock.
            continue;
        }
        if created {
            let mut buf = String::with_capacity(320);
            render(&mut buf);
            let mut lf = LockFile {
                file,
                id,
                written: Vec::new(),
                created_ms: 0,
            };
            if let Err(e) = lf.write_payload(buf.as_bytes()) {
                let err = OsError::from_io(&e, "write", path_str);
                lf.release(path);
                return Err(err);
            }
            return Ok(Attempt::Acquired(lf));
        }
        let parsed = payload::parse(&read_bounded(&file));
        match judge(&parsed, sys::mtime_ms(&meta)) {
            Judgement::Reclaim => {
                // We hold its lock and the path names it. Where the kernel can
                // exchange two names, put a complete new file of ours in its
                // place in one step: the path is never empty, and if another
                // party (an old-module process) replaced the stale file since
                // our check, the exchange is undone and that file is waited
                // for. Unlinking the name first would remove such a
                // replacement, a live old-module lock, along with it.
                let file = if !sys::CAN_EXCHANGE {
                    file
                } else {
                    let mut lf = LockFile {
                        file,
                        id,
                        written: Vec::new(),
                        created_ms: 0,
                    };
                    let mut buf = String::with_capacity(320);
                    render(&mut buf);
                    match lf.exchange(path, buf.as_bytes(), None) {
                        Ok(Some(Rewrite::Done)) => return Ok(Attempt::Acquired(lf)),
                        // Replaced since our check: look again.
                        Ok(Some(Rewrite::Lost)) => continue,
                        // No exchange here, or not permitted on this name (a
                        // sticky directory, another user's file): unlink the
                        // name, as below, which reports what it runs into.
                        Ok(None) => {}
                        Err(e)
                            if matches!(
                                sys::errno_of(&e),
                                Some(errno::EPERM) | Some(errno::EACCES)
                            ) => {}
                        Err(e) => return Err(OsError::from_io(&e, "rename", path_str)),
                    }
                    lf.file
                };
                // Remove the name, then race for a fresh exclusive create.
                match sys::remove_name(&file, path) {
                    Ok(()) => {}
                    Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => {}
                    Err(e) => return Err(OsError::from_io(&e, "unlink", path_str)),
                }
                drop(file);
            }
            Judgement::Wait => {
                sys::unlock(&file);
                return Ok(Attempt::Busy(WaitFile {
                    file,
                    id,
                    legacy: true,
                }));
            }
        }
    }
    // Pathological churn: report busy on nothing in particular; the caller
    // waits and tries again.
    let (file, _, meta) = open_lock_path(path, path_str)?;
    Ok(Attempt::Busy(WaitFile {
        id: sys::file_id(&file, &meta),
        file,
        legacy: true,
    }))
}

impl LockFile {
    /// Write the payload of a file nobody has seen yet, or, as a last resort,
    /// rewrite in place: one `pwrite` at offset 0; a shorter payload is first
    /// padded with spaces to the old length (still valid JSON) and only then
    /// trimmed. Between two whole writes no state is half-written, but a read
    /// that races the `pwrite` itself may see a mix of old and new bytes:
    /// [`LockFile::rewrite`] uses this only where nothing better exists.
    pub fn write_payload(&mut self, bytes: &[u8]) -> io::Result<()> {
        let old_len = self.written.len();
        if bytes.len() < old_len {
            let mut padded = Vec::with_capacity(old_len);
            padded.extend_from_slice(bytes);
            padded.resize(old_len, b' ');
            sys::write_at(&self.file, &padded, 0)?;
            self.file.set_len(bytes.len() as u64)?;
        } else {
            sys::write_at(&self.file, bytes, 0)?;
        }
        self.written.clear();
        self.written.extend_from_slice(bytes);
        Ok(())
    }

    /// Replace the payload of the file we hold so that every state another
    /// process can observe is a complete payload (in-process hand-off,
    /// `createdAt` refresh):
    /// - in place, one `pwrite`, when `in_place` is allowed and the change is
    ///   mix-safe (only hex digits change: a new token, a same-width
    ///   `maxHoldMs`), so even a read racing the write parses;
    /// - otherwise (Linux) a new file, complete and locked under a temporary
    ///   name, swapped with the lock path by `renameat2(RENAME_EXCHANGE)`: a
    ///   reader opens the old file or the new one. The old file, now under the
    ///   temporary name, is checked to be ours (else the swap is undone and
    ///   the lease is [`Rewrite::Lost`]), unlinked and closed;
    /// - where the exchange is unsupported, padded in place (see
    ///   [`LockFile::write_payload`]).
    ///
    /// `mtime_ms`: the modification time to give the file (a refresh keeps
    /// the hold's real start there); `None` leaves it at the write time.
    pub fn rewrite(
        &mut self,
        path: &Path,
        bytes: &[u8],
        mtime_ms: Option<i64>,
        in_place: bool,
    ) -> io::Result<Rewrite> {
        if in_place && mix_safe(&self.written, bytes) {
            sys::write_at(&self.file, bytes, 0)?;
            self.written.clear();
            self.written.extend_from_slice(bytes);
            if let Some(ms) = mtime_ms {
                sys::set_mtime(&self.file, ms);
            }
            return Ok(Rewrite::Done);
        }
        if let Some(r) = self.exchange(path, bytes, mtime_ms)? {
            return Ok(r);
        }
        if !path_names(path, self.id) {
            return Ok(Rewrite::Lost);
        }
        self.write_payload(bytes)?;
        if let Some(ms) = mtime_ms {
            sys::set_mtime(&self.file, ms);
        }
        Ok(Rewrite::Done)
    }

    /// The exchange of [`LockFile::rewrite`]. `None`: unsupported here.
    fn exchange(
        &mut self,
        path: &Path,
        bytes: &[u8],
        mtime_ms: Option<i64>,
    ) -> io::Result<Option<Rewrite>> {
        if !sys::CAN_EXCHANGE {
            return Ok(None);
        }
        // No temporary name, or a directory made read-only or full since we
        // took the lock: rewriting our own file in place still works.
        let Some(Ok((file, tmp))) = create_temp(path) else {
            return Ok(None);
        };
        let drop_tmp = |tmp: &Path| {
            let _ = std::fs::remove_file(tmp);
        };
        let ready = (|| -> io::Result<bool> {
            if !sys::try_lock_exclusive(&file)? {
                return Ok(false);
            }
            sys::write_at(&file, bytes, 0)?;
            if let Some(ms) = mtime_ms {
                sys::set_mtime(&file, ms);
            }
            Ok(true)
        })();
        match ready {
            Ok(true) => {}
            Ok(false) => {
                drop_tmp(&tmp);
                return Ok(None);
            }
            Err(e) => {
                drop_tmp(&tmp);
                return Err(e);
            }
        }
        // Identity before the swap publishes the new file (a failure after it
        // would leave our complete file at the path with no holder).
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                drop_tmp(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = sys::exchange(&tmp, path) {
            drop_tmp(&tmp);
            return match sys::errno_of(&e) {
                Some(errno::EINVAL) | Some(errno::ENOSYS) | Some(errno::EOPNOTSUPP) => Ok(None),
                // Nothing at the lock path any more: our file was deleted.
                Some(errno::ENOENT) => Ok(Some(Rewrite::Lost)),
                _ => Err(e),
            };
        }
        // The temporary name now names what the lock path named.
        if !path_names(&tmp, self.id) {
            // Someone else's file was there: put it back, and never remove a
            // name we cannot account for.
            if sys::exchange(&tmp, path).is_ok() {
                drop_tmp(&tmp);
            }
            return Ok(Some(Rewrite::Lost));
        }
        drop_tmp(&tmp);
        // The old file (unlinked now) closes here, freeing its OS lock.
        self.id = sys::file_id(&file, &meta);
        self.file = file;
        self.written.clear();
        self.written.extend_from_slice(bytes);
        Ok(Some(Rewrite::Done))
    }

    /// Re-read our own file: is the path still ours, and what does it say?
    pub fn still_named_by(&self, path: &Path) -> bool {
        path_names(path, self.id)
    }

    pub fn read_payload(&self) -> ParsedPayload {
        payload::parse(&read_bounded(&self.file))
    }

    /// Release: unlink the name while still holding the lock, if the name is
    /// still ours, then close (which drops the OS lock).
    pub fn release(self, path: &Path) {
        if path_names(path, self.id) {
            let _ = sys::remove_name(&self.file, path);
        }
        drop(self.file);
    }

    /// Close without unlinking (the file stays, its OS lock is freed).
    pub fn abandon(self) {
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("swl-lf-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn render(s: &mut String) {
        s.push_str("{\"pid\": 1, \"lock\": \"os\"}");
    }

    fn go(path: &Path, wait: Option<WaitFile>) -> Result<Attempt, OsError> {
        attempt(
            path,
            path.to_str().unwrap(),
            wait,
            &mut |p, _| {
                if p.os_lock {
                    Judgement::Reclaim
                } else {
                    Judgement::Wait
                }
            },
            &mut render,
        )
    }

    #[test]
    fn excludes_second_descriptor_and_releases() {
        let d = tmpdir("excl");
        let p = d.join("a.jsonl.lock");
        let Attempt::Acquired(a) = go(&p, None).unwrap() else {
            panic!("first must acquire")
        };
        let Attempt::Busy(w) = go(&p, None).unwrap() else {
            panic!("second must be busy")
        };
        assert!(!w.legacy);
        a.release(&p);
        assert!(!p.exists());
        // The kept descriptor names an unlinked inode: the retry re-opens.
        let Attempt::Acquired(b) = go(&p, Some(w)).unwrap() else {
            panic!("must acquire after release")
        };
        b.release(&p);
        assert!(!p.exists());
    }

    #[test]
    fn abandoned_os_file_is_reclaimed() {
        let d = tmpdir("abandon");
        let p = d.join("a.jsonl.lock");
        let Attempt::Acquired(a) = go(&p, None).unwrap() else {
            panic!()
        };
        a.abandon();
        std::fs::write(&p, "{\"pid\": 1, \"lock\": \"os\", \"x\": 1}").unwrap();
        let Attempt::Acquired(b) = go(&p, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"pid\": 1, \"lock\": \"os\"}"
        );
        b.release(&p);
    }

    #[test]
    fn refuses_non_regular_files() {
        let d = tmpdir("hostile");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let l = d.join("s.jsonl.lock");
        symlink(&victim, &l).unwrap();
        assert_eq!(go(&l, None).unwrap_err().code, "ELOOP");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_file(&l).unwrap();
        std::fs::create_dir(&l).unwrap();
        assert_eq!(go(&l, None).unwrap_err().code, "EISDIR");
        std::fs::remove_dir(&l).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&l)
            .status()
            .unwrap();
        assert!(made.success());
        let e = go(&l, None).unwrap_err();
        assert_eq!((e.code, e.syscall), ("EINVAL", "open"));
        assert!(std::fs::symlink_metadata(&l).unwrap().file_type().is_fifo());
    }

    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn legacy_file_is_waited_and_never_written() {
        let d = tmpdir("legacy");
        let p = d.join("a.jsonl.lock");
        std::fs::write(&p, "{\"pid\": 1, \"createdAt\": \"x\"}").unwrap();
        let Attempt::Busy(w) = go(&p, None).unwrap() else {
            panic!()
        };
        assert!(w.legacy);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"pid\": 1, \"createdAt\": \"x\"}"
        );
    }

    #[test]
    fn mix_safe_only_when_hex_digits_change() {
        assert!(mix_safe(
            b"{\"t\": \"00ab\", \"m\": 300}",
            b"{\"t\": \"ff01\", \"m\": 900}"
        ));
        assert!(!mix_safe(b"{\"m\": 300}", b"{\"m\": 3000}"));
        assert!(!mix_safe(
            b"{\"t\": \"2026-01-01T09:00\"}",
            b"{\"t\": \"2026-01-01T10:0x\"}"
        ));
        assert!(!mix_safe(b"{\"x\": 1}", b"{\"y\": 1}"));
    }

    #[test]
    fn rewrite_swaps_in_a_new_locked_file_or_reports_loss() {
        let d = tmpdir("swap");
        let p = d.join("a.jsonl.lock");
        let Attempt::Acquired(mut a) = go(&p, None).unwrap() else {
            panic!()
        };
        let before = a.id;
        // Not mix-safe: a new file is swapped in, still locked by us.
        assert_eq!(
            a.rewrite(
                &p,
                b"{\"pid\": 1, \"lock\": \"os\", \"x\": 1}",
                Some(1000),
                false
            )
            .unwrap(),
            Rewrite::Done
        );
        assert_ne!(a.id, before);
        assert!(a.still_named_by(&p));
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"pid\": 1, \"lock\": \"os\", \"x\": 1}"
        );
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mtime(), 1);
        let Attempt::Busy(_) = go(&p, None).unwrap() else {
            panic!("the swapped-in file is locked")
        };
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary name left");
        // Mix-safe: in place, same inode.
        let id = a.id;
        a.rewrite(&p, b"{\"pid\": 2, \"lock\": \"os\", \"x\": 9}", None, true)
            .unwrap();
        assert_eq!(a.id, id);
        // Deleted and replaced by someone else: lost, their file untouched.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "theirs").unwrap();
        assert_eq!(
            a.rewrite(&p, b"{\"pid\": 3}", None, false).unwrap(),
            Rewrite::Lost
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            a.rewrite(&p, b"{\"pid\": 3}", None, false).unwrap(),
            Rewrite::Lost
        );
        assert!(!p.exists());
    }

    #[test]
    fn payload_rewrite_trims() {
        let d = tmpdir("rewrite");
        let p = d.join("a.jsonl.lock");
        let Attempt::Acquired(mut a) = go(&p, None).unwrap() else {
            panic!()
        };
        a.write_payload(b"0123456789").unwrap();
        a.write_payload(b"abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        a.write_payload(b"0123456789").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        a.release(&p);
    }
}
