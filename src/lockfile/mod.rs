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
//!   truncated or removed. We *write* into a file we created ourselves, and
//!   into one other kind: the file of a dead holder of this package, with no
//!   other name, whose payload ours differs from only in hex digits (same
//!   widths: see `take_over_in_place`), taken over in place with one `pwrite`
//!   once we hold its lock. Any other file found in place (the old module's,
//!   a hostile hard link, ours with other widths) is only read (at most
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
//! The calls of one uncontended acquire + release on Linux (the bench's floor
//! (1) replays them), and why each stays:
//! 1. `statx` of the session directory: validates the cached realpath (see
//!    `paths`). Without it a directory replaced by a symlink would keep its
//!    old key and lock path (`__test__/paths.test.mjs`). It could go only by
//!    opening the directory with `O_TMPFILE | O_NOFOLLOW` and renormalizing
//!    on `ELOOP`/`ENOTDIR`/`ENOENT`, for directories without symlinks and
//!    only on the path that opens at once (a queued acquire opens nothing).
//! 2. `openat(O_TMPFILE)`, 3. `flock(LOCK_EX|LOCK_NB)` (before the name
//!    exists: `/proc/<pid>/fd` lets another process open the unnamed file),
//!    4. `pwrite` of the payload (before the name exists: no empty file).
//! 5. `statx` of the descriptor: the inode the release, the hand-off and
//!    `assertOwned` compare the path with. Taken before `linkat` because a
//!    failure after it would leave a complete, unlocked file at the path.
//! 6. `linkat`: the name, never replacing anything. No inode check follows:
//!    the file was locked before it had a name, so the path names a file
//!    we hold (the check after `flock` is for files opened by name).
//! 7. `statx` of the path at release: a holder whose file was deleted or
//!    replaced never unlinks the next holder's file (docs/spec.md, "Paths
//!    and exclusion").
//! 8. `unlink` while still holding the lock, 9. `close` (drops the lock).
//!
//! A waiter's hand-off on Linux makes three: `fstat` of the descriptor it
//! kept (a link count of 0: the holder released, no need to ask the path),
//! `pwrite` of a fresh payload into the unnamed file its first attempt built
//! and kept while waiting (`create::Prepared`), and `linkat`.
//!
//! What it does not guarantee: exclusion against code that ignores `flock`
//! (the old module is handled by the payload rules of `legacy`), nor on network
//! file systems whose `flock` is emulated or local-only (NFS, SMB).

use std::fs::File;
use std::path::Path;

use crate::oserror::OsError;
use crate::payload::{self, ParsedPayload};
use crate::sys::{self, errno};

mod create;
mod probe;
mod rewrite;
#[cfg(test)]
mod tests;

pub use crate::sys::FileId;
pub use create::{create_counts, CreateCounts};
use create::{open_for_lock, open_lock_path, publish, publish_linked, Linked, Prepared, Publish};
pub use probe::{peek, read_bounded, Probe};

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
    if old.len() != new.len() {
        return false;
    }
    // Word by word: a hand-off changes a few words of a 240-byte payload,
    // and only those are looked at byte by byte.
    let (mut a, mut b) = (old.chunks(8), new.chunks(8));
    a.all(|wa| {
        let wb = b.next().expect("same length");
        wa == wb
            || wa
                .iter()
                .zip(wb)
                .all(|(&x, &y)| x == y || (hex(x) && hex(y)))
    })
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
    /// Open for writing (a dead holder's file can be taken over in place).
    writable: bool,
    /// Our own next file, built by the attempt that found this one (Linux):
    /// the attempt after the release links it (see [`Prepared`]).
    prepared: Option<Prepared>,
}

impl WaitFile {
    /// The payload of the file `path` names, read through this descriptor
    /// (`None` when `path` names another file now, or nothing). Opening the
    /// file afresh to read it would close a descriptor afterwards: an
    /// inotify event that every waiter watching the file takes for a change.
    pub fn payload_if_named(&self, path: &str) -> Option<ParsedPayload> {
        path_names(path, self.id).then(|| payload::parse(&read_bounded(&self.file)))
    }
}

/// The outcome of one non-blocking attempt.
#[derive(Debug)]
pub enum Attempt {
    Acquired(LockFile),
    Busy(WaitFile),
}

fn try_lock_exclusive(file: &File, path: &str) -> Result<bool, OsError> {
    sys::try_lock_exclusive(file).map_err(|e| OsError::from_io(&e, sys::LOCK_SYSCALL, path))
}

/// Does `path` (not following a final symlink) name the inode `id`?
pub fn path_names(path: impl AsRef<Path>, id: FileId) -> bool {
    sys::path_id(path) == Some(id)
}

thread_local! {
    /// Descriptors attempts on this thread let go of while it defers closing
    /// them (see [`defer_closes`]); `None` when it does not.
    static RETIRED: std::cell::RefCell<Option<Vec<File>>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` and return, with its result, the descriptors the attempts it made
/// let go of (a waiter's kept descriptor of a file its holder unlinked), still
/// open: the caller closes them when its latency-sensitive work is done.
///
/// Why: closing the last descriptor of an unlinked file that an inotify
/// watch (ours) is on frees the inode, and the kernel hands the watch's
/// teardown to a kernel worker, woken there and then; on a busy CPU that
/// worker can preempt the closing thread. A JS thread that has just obtained
/// a lock closes them after the grant has resolved its promise instead.
/// Guarantees: every descriptor is returned or, if `f` panics, closed; the
/// deferral covers only this thread and only the duration of `f`.
pub fn defer_closes<T>(f: impl FnOnce() -> T) -> (T, Vec<File>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            RETIRED.with(|r| r.borrow_mut().take());
        }
    }
    RETIRED.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let reset = Reset;
    let out = f();
    let retired = RETIRED.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (out, retired)
}

/// Close now the descriptors this thread's attempts let go of and kept for
/// [`defer_closes`]'s caller; true if there were any.
fn close_retired_now() -> bool {
    RETIRED.with(|r| match r.borrow_mut().as_mut() {
        Some(kept) if !kept.is_empty() => {
            kept.clear();
            true
        }
        _ => false,
    })
}

/// The process or the system is out of descriptors.
fn at_descriptor_limit(e: &OsError) -> bool {
    matches!(e.code, "EMFILE" | "ENFILE")
}

/// Let go of `file`: kept for [`defer_closes`]'s caller, or closed now.
fn retire(file: File) {
    let not_kept = RETIRED.with(|r| match r.borrow_mut().as_mut() {
        Some(kept) => {
            kept.push(file);
            None
        }
        None => Some(file),
    });
    drop(not_kept);
}

/// Make one non-blocking attempt to take the lock at `path`.
///
/// `wait` is the descriptor kept from an earlier busy attempt (reused so that
/// waiting creates no open/close churn). `judge` decides about a file found in
/// place whose OS lock we obtained. `render` writes our payload.
pub fn attempt(
    path: &str,
    mut wait: Option<WaitFile>,
    judge: &mut dyn FnMut(&ParsedPayload, i64) -> Judgement,
    render: &mut dyn FnMut(&mut String),
) -> Result<Attempt, OsError> {
    // The file built while waiting, if any: linked when the name is free,
    // handed on to the next wait when it is not, and let go of (closed,
    // leaving nothing behind; after the grant's continuation where closes
    // are deferred) when this attempt ends another way.
    let mut prepared = wait.as_mut().and_then(|w| w.prepared.take());
    let mut result = attempt_rounds(path, wait, judge, render, &mut prepared);
    if matches!(&result, Err(e) if at_descriptor_limit(e)) && close_retired_now() {
        // What is missing is a descriptor this attempt let go of and kept
        // open for its caller (see [`defer_closes`]): closed now, the
        // attempt goes again, from the path.
        result = attempt_rounds(path, None, judge, render, &mut prepared);
    }
    if let Some(p) = prepared {
        retire(p.into_file());
    }
    result
}

fn attempt_rounds(
    path: &str,
    mut wait: Option<WaitFile>,
    judge: &mut dyn FnMut(&ParsedPayload, i64) -> Judgement,
    render: &mut dyn FnMut(&mut String),
    prepared: &mut Option<Prepared>,
) -> Result<Attempt, OsError> {
    // Each round either succeeds, reports busy, or observed a change made by
    // another party (unlink, replace, reclaim); bound the rounds anyway.
    for _round in 0..64 {
        // The descriptor kept from a busy attempt, not asked about yet.
        let mut reused = false;
        let (file, created, meta, writable) = match wait.take() {
            Some(w) => {
                let meta = w
                    .file
                    .metadata()
                    .map_err(|e| OsError::from_io(&e, "fstat", path))?;
                // Reuse only while the path still names the same inode. A
                // file with no name left (the release case) cannot be named
                // by it; otherwise the path is asked after the lock attempt
                // (below), which asks it anyway when the lock is obtained: one
                // call fewer from a killed holder's close to the grant.
                if sys::unlinked(&meta) {
                    retire(w.file);
                    continue;
                }
                reused = true;
                (w.file, false, meta, w.writable)
            }
            None => match publish(path, render, prepared)? {
                Publish::Done(lf) => return Ok(Attempt::Acquired(lf)),
                Publish::Exists => match open_beside(path, prepared)? {
                    Some(opened) => opened_existing(opened),
                    // Released between our link and our open: go again.
                    None => continue,
                },
                // A file is there already (the waiting case): open it rather
                // than build a temporary file just to find the name taken.
                // Besides saving work, this keeps a waiter's retries from
                // changing the directory, which is what wakes the waiters
                // of platforms that watch directories (Windows).
                Publish::Unsupported if sys::path_id(path).is_some() => {
                    match open_for_lock(path)? {
                        Some(opened) => opened_existing(opened),
                        None => continue,
                    }
                }
                Publish::Unsupported => match publish_linked(path, render)? {
                    Linked::Done(lf) => return Ok(Attempt::Acquired(lf)),
                    Linked::Exists => match open_for_lock(path)? {
                        Some(opened) => opened_existing(opened),
                        None => continue,
                    },
                    Linked::NoLinks => open_lock_path(path)?,
                },
            },
        };
        let id = sys::file_id(&file, &meta);
        let mut locked = try_lock_exclusive(&file, path)?;
        if !locked && created {
            // Another process may be inspecting the file we just created; it
            // lets go within microseconds.
            for _ in 0..200 {
                std::thread::yield_now();
                locked = try_lock_exclusive(&file, path)?;
                if locked {
                    break;
                }
            }
        }
        if !locked {
            if reused && !path_names(path, id) {
                // Replaced while we waited (its holder still holds it under
                // another name): wait on what the path names now.
                retire(file);
                continue;
            }
            return Ok(Attempt::Busy(WaitFile {
                file,
                id,
                legacy: false,
                writable,
                prepared: prepared.take(),
            }));
        }
        if !path_names(path, id) {
            // Unlinked or replaced between our open and our lock (or while
            // we waited on it): let go of it, and of its lock.
            retire(file);
            continue;
        }
        if created {
            let mut buf = String::with_capacity(320);
            render(&mut buf);
            let mut lf = LockFile::new(file, id, Vec::new());
            if let Err(e) = lf.write_payload(buf.as_bytes()) {
                let err = OsError::from_io(&e, "write", path);
                lf.release(path);
                return Err(err);
            }
            return Ok(Attempt::Acquired(lf));
        }
        let found = read_bounded(&file);
        let parsed = payload::parse(&found);
        match judge(&parsed, sys::mtime_ms(&meta)) {
            Judgement::Reclaim => {
                // A dead holder of ours left a payload that ours differs from
                // only in hex digits: write ours over it (see
                // [`take_over_in_place`]), the cheapest step on the way from a
                // SIGKILLed holder to its waiter.
                let mut buf = String::with_capacity(320);
                render(&mut buf);
                let file = if writable && sys::single_link(&meta) {
                    match take_over_in_place(file, id, &found, buf.as_bytes(), path) {
                        InPlace::Done(lf) => return Ok(Attempt::Acquired(lf)),
                        InPlace::Lost => continue,
                        InPlace::No(file) => file,
                    }
                } else {
                    file
                };
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
                    let mut lf = LockFile::new(file, id, Vec::new());
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
                        Err(e) => return Err(OsError::from_io(&e, "rename", path)),
                    }
                    lf.file
                };
                // Remove the name, then race for a fresh exclusive create.
                match sys::remove_name(&file, path) {
                    Ok(()) => {}
                    Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => {}
                    Err(e) => return Err(OsError::from_io(&e, "unlink", path)),
                }
                drop(file);
            }
            Judgement::Wait => {
                sys::unlock(&file);
                return Ok(Attempt::Busy(WaitFile {
                    file,
                    id,
                    legacy: true,
                    writable,
                    prepared: prepared.take(),
                }));
            }
        }
    }
    // Pathological churn: report busy on nothing in particular; the caller
    // waits and tries again.
    let (file, _, meta, writable) = open_lock_path(path)?;
    Ok(Attempt::Busy(WaitFile {
        id: sys::file_id(&file, &meta),
        file,
        legacy: true,
        writable,
        prepared: prepared.take(),
    }))
}

/// [`open_for_lock`] while we keep a file built for the wait: at the
/// descriptor limit (`EMFILE`, `ENFILE`) that file is closed and the open
/// tried again, so that building ahead never makes an acquire fail where a
/// create from scratch (which closed its file first) would not.
fn open_beside(
    path: &str,
    prepared: &mut Option<Prepared>,
) -> Result<Option<(File, std::fs::Metadata, bool)>, OsError> {
    match open_for_lock(path) {
        Err(e) if prepared.is_some() && at_descriptor_limit(&e) => {
            // Closed now, not retired: the descriptor is what is missing.
            drop(prepared.take());
            open_for_lock(path)
        }
        r => r,
    }
}

/// A file found in place, opened (not created) by us.
fn opened_existing(
    (file, meta, writable): (File, std::fs::Metadata, bool),
) -> (File, bool, std::fs::Metadata, bool) {
    (file, false, meta, writable)
}

/// What [`take_over_in_place`] did.
enum InPlace {
    /// Ours now: our payload is in the file the path names.
    Done(LockFile),
    /// The path stopped naming the file (the old module removed it): look
    /// again. Our payload went only into a file nobody can open any more.
    Lost,
    /// Not safe in place: the file is handed back untouched.
    No(File),
}

/// Take over a reclaimable file whose OS lock we hold, that the path names
/// and that has no other name (`file`, `id`), by writing our payload `new`
/// over `found` in one `pwrite`, instead of building a new file and
/// swapping it in (9 system calls, and an inode to free on the way).
///
/// Only when every torn mix of `found` and `new` a reader racing the write
/// could see is itself a complete payload ([`mix_safe`]: same length, only
/// hex digits differ). That is the file of a dead holder of this package on
/// this host whose pid, start time and `maxHoldMs` have our widths: the
/// pid, `createdAt`, start time and token change, nothing else. An
/// old-module file never qualifies (its keys differ from ours), nor does a
/// hard link to another file (`single_link` is checked by the caller), so
/// the only inode ever written is a lock file of ours at this path.
///
/// The path is checked again after the write: the old module may remove a
/// dead holder's file by name at any moment (it ignores the OS lock), as it
/// may remove the file the exchange puts in place; then nothing of ours is
/// at the path and the attempt goes round again.
fn take_over_in_place(file: File, id: FileId, found: &[u8], new: &[u8], path: &str) -> InPlace {
    if !mix_safe(found, new) {
        return InPlace::No(file);
    }
    let mut lf = LockFile::new(file, id, found.to_vec());
    if lf.write_payload(new).is_err() {
        // Whatever part was written leaves a mix of the two, which parses:
        // the exchange replaces the file as if nothing happened.
        return InPlace::No(lf.file);
    }
    if !path_names(path, id) {
        return InPlace::Lost;
    }
    InPlace::Done(lf)
}

impl LockFile {
    /// A file we created and locked, whose payload is `written` (empty when
    /// nothing is written yet). The registry sets `created_ms`.
    fn new(file: File, id: FileId, written: Vec<u8>) -> Self {
        LockFile {
            file,
            id,
            written,
            created_ms: 0,
        }
    }

    /// Re-read our own file: is the path still ours, and what does it say?
    pub fn still_named_by(&self, path: &str) -> bool {
        path_names(path, self.id)
    }

    pub fn read_payload(&self) -> ParsedPayload {
        payload::parse(&read_bounded(&self.file))
    }

    /// Release: unlink the name while still holding the lock, if the name is
    /// still ours, then close (which drops the OS lock).
    pub fn release(self, path: &str) {
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
