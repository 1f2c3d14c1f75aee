//! Creating a lock file that appears complete: unnamed then linked (where
//! the platform has unnamed files), else complete under a temporary name then
//! linked, else (no hard links) exclusive create then write. See the module
//! docs of `lockfile` for the guarantees.

use std::fs::File;
use std::io;
use std::path::Path;

use super::{try_lock_exclusive, LockFile};
use crate::oserror::OsError;
use crate::sys::{self, errno};

/// Open the lock path, creating it exclusively if absent. Returns the file,
/// whether we created it, its metadata, and whether it is open for writing.
pub(super) fn open_lock_path(path: &str) -> Result<(File, bool, std::fs::Metadata, bool), OsError> {
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
                        return Err(OsError::from_io(&e, "fstat", path));
                    }
                };
                return Ok((f, true, meta, true));
            }
            Err(e) if sys::errno_of(&e) == Some(errno::EEXIST) => {
                if let Some((f, meta, writable)) = open_for_lock(path)? {
                    return Ok((f, false, meta, writable));
                }
                // The holder released (unlinked) between our create and our
                // open: create again.
            }
            Err(e) => return Err(classify_open_error(&e, path)),
        }
    }
    Err(OsError::synthetic("ENOENT", "open", path))
}

/// Open an existing lock path read-only (never following, never blocking):
/// enough to look at it. `None` when nothing is there any more.
pub(super) fn open_existing(path: &str) -> Result<Option<(File, std::fs::Metadata)>, OsError> {
    let opened = sys::open_existing(path).map(|f| (f, false));
    Ok(checked_open(opened, path)?.map(|(f, m, _)| (f, m)))
}

/// Open an existing lock path to lock it (never following, never
/// blocking): read-write where permitted, so that a dead holder's file can
/// be taken over in place (see [`super::attempt`]), else read-only; the flag
/// says which. `None` when nothing is there any more.
pub(super) fn open_for_lock(
    path: &str,
) -> Result<Option<(File, std::fs::Metadata, bool)>, OsError> {
    checked_open(sys::open_existing_for_lock(path), path)
}

fn checked_open(
    opened: io::Result<(File, bool)>,
    path: &str,
) -> Result<Option<(File, std::fs::Metadata, bool)>, OsError> {
    let (file, writable) = match opened {
        Ok(f) => f,
        Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => return Ok(None),
        Err(e) => return Err(classify_open_error(&e, path)),
    };
    let meta = file
        .metadata()
        .map_err(|e| OsError::from_io(&e, "fstat", path))?;
    if !meta.file_type().is_file() {
        return Err(non_regular_error(&meta, path));
    }
    Ok(Some((file, meta, writable)))
}

pub(super) enum Publish {
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
static CREATE_COUNTS: [std::sync::atomic::AtomicU64; 4] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];
const COUNT_TMPFILE: usize = 0;
const COUNT_TEMP_LINK: usize = 1;
const COUNT_EXCL: usize = 2;
const COUNT_FALLBACK: usize = 3;

/// How this process's lock-file creates went so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateCounts {
    /// Built unnamed, then linked.
    pub tmpfile: u64,
    /// Built under a temporary name, then linked.
    pub temp_link: u64,
    /// Plain exclusive creates (no hard links here).
    pub exclusive: u64,
    /// Fast-path attempts that fell back to the portable path.
    pub fallbacks: u64,
}

/// The counts so far (tests, diagnostics).
pub fn create_counts() -> CreateCounts {
    let get = |i: usize| CREATE_COUNTS[i].load(std::sync::atomic::Ordering::Relaxed);
    CreateCounts {
        tmpfile: get(COUNT_TMPFILE),
        temp_link: get(COUNT_TEMP_LINK),
        exclusive: get(COUNT_EXCL),
        fallbacks: get(COUNT_FALLBACK),
    }
}

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

/// Our next lock file, built while we wait (Linux): unnamed, locked by us,
/// holding a complete payload of ours. Made by the create that found the
/// name taken (instead of closing that file), kept with the waiter's
/// descriptor ([`super::WaitFile`]), and linked by the attempt after the
/// holder's release, which then only rewrites the payload (fresh
/// `createdAt` and token, same length) and names the file: two system
/// calls on the hand-off where a create from scratch makes five.
///
/// Nobody can open it by a path; the OS lock on it is ours from the start,
/// so the file is locked before it has a name, as every create's is.
/// Dropping it (a wait that times out or aborts, an acquire that took
/// another route) frees it without leaving anything in the directory.
#[derive(Debug)]
pub(crate) struct Prepared {
    file: File,
    id: sys::FileId,
    /// The length of the payload it holds (ours differs from it only in
    /// digits while our settings stay).
    len: usize,
}

impl Prepared {
    pub(super) fn into_file(self) -> File {
        self.file
    }

    #[cfg(test)]
    pub(super) fn id(&self) -> sys::FileId {
        self.id
    }
}

/// Build the lock file unnamed, lock it, write the payload, then link it into
/// place (see the module docs). Any failure to create or link other than
/// `EEXIST` sends this attempt (only this one) to the portable path, which
/// reports errors with the `open` syscall as Node would.
///
/// `prepared`: a file built by an earlier create of this wait that found
/// the name taken. It is used instead of a new one when our payload has kept
/// its length (it is rewritten in one `pwrite`; the file has no name, so no
/// reader sees the rewrite), and it is where the file goes when the name is
/// taken again (`Exists`). On other failures it is dropped with the attempt.
pub(super) fn publish(
    path: &str,
    render: &mut dyn FnMut(&mut String),
    prepared: &mut Option<Prepared>,
) -> Result<Publish, OsError> {
    if !sys::UNNAMED_FILES || portable_only() {
        return Ok(Publish::Unsupported);
    }
    let mut buf = String::with_capacity(320);
    render(&mut buf);
    let (file, id) = match prepared.take() {
        Some(p) if p.len == buf.len() => {
            sys::write_at(&p.file, buf.as_bytes(), 0)
                .map_err(|e| OsError::from_io(&e, "write", path))?;
            (p.file, p.id)
        }
        // Our payload changed length (another head's `maxHoldMs`): build
        // afresh; the old file goes with the attempt.
        _ => match build_unnamed(path, buf.as_bytes())? {
            Some(built) => built,
            None => return Ok(Publish::Unsupported),
        },
    };
    if let Err(e) = sys::link_unnamed(&file, path) {
        if sys::errno_of(&e) == Some(errno::EEXIST) {
            *prepared = Some(Prepared {
                file,
                id,
                len: buf.len(),
            });
            return Ok(Publish::Exists);
        }
        // No /proc, or linking an unnamed file refused here (ENOENT, EPERM,
        // EXDEV...): this attempt only goes the portable way.
        count(COUNT_FALLBACK);
        return Ok(Publish::Unsupported);
    }
    count(COUNT_TMPFILE);
    Ok(Publish::Done(LockFile::new(file, id, buf.into_bytes())))
}

/// An unnamed file in `path`'s directory, locked, holding `payload`, and
/// its identity. `None`: no unnamed file here (the portable path decides,
/// and reports real errors).
fn build_unnamed(path: &str, payload: &[u8]) -> Result<Option<(File, sys::FileId)>, OsError> {
    let dir = match Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(None),
    };
    let Some(file) = sys::create_unnamed(dir) else {
        // No unnamed file in this directory (EOPNOTSUPP, EISDIR, EINVAL) or
        // any other refusal.
        count(COUNT_FALLBACK);
        return Ok(None);
    };
    if !try_lock_exclusive(&file, path)? {
        // Nobody else can see an unnamed inode; be safe anyway.
        count(COUNT_FALLBACK);
        return Ok(None);
    }
    sys::write_at(&file, payload, 0).map_err(|e| OsError::from_io(&e, "write", path))?;
    // Identity first: once linked, the file is visible, and a failure after
    // that would leave a complete but unlocked file at the path.
    let meta = file
        .metadata()
        .map_err(|e| OsError::from_io(&e, "fstat", path))?;
    let id = sys::file_id(&file, &meta);
    Ok(Some((file, id)))
}

pub(super) enum Linked {
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
pub fn temp_name(path: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(path);
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
pub(super) fn create_temp(path: &str) -> Option<io::Result<(File, std::path::PathBuf)>> {
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
pub(super) fn publish_linked(
    path: &str,
    render: &mut dyn FnMut(&mut String),
) -> Result<Linked, OsError> {
    let (file, tmp) = match create_temp(path) {
        None => return Ok(Linked::NoLinks),
        Some(Ok(created)) => created,
        // A read-only or full directory: an existing lock file still
        // decides first (as `O_EXCL` reports EEXIST before EROFS).
        Some(Err(e)) => {
            return match open_existing(path)? {
                Some(_) => Ok(Linked::Exists),
                None => Err(classify_open_error(&e, path)),
            }
        }
    };
    let cleanup = |tmp: &Path| {
        let _ = std::fs::remove_file(tmp);
    };
    match try_lock_exclusive(&file, path) {
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
        return Err(OsError::from_io(&e, "write", path));
    }
    // Identity before the name is published (as in `publish`).
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            cleanup(&tmp);
            return Err(OsError::from_io(&e, "fstat", path));
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
                _ => Err(OsError::from_io(&e, "link", path)),
            }
        }
    }
    count(COUNT_TEMP_LINK);
    let id = sys::file_id(&file, &meta);
    Ok(Linked::Done(LockFile::new(file, id, buf.into_bytes())))
}

fn non_regular_error(meta: &std::fs::Metadata, path: &str) -> OsError {
    let ft = meta.file_type();
    let code = if ft.is_dir() {
        "EISDIR"
    } else if ft.is_symlink() {
        "ELOOP"
    } else {
        "EINVAL"
    };
    OsError::synthetic(code, "open", path)
}

fn classify_open_error(e: &io::Error, path: &str) -> OsError {
    match sys::errno_of(e) {
        Some(errno::ELOOP) | Some(errno::EISDIR) => OsError::from_io(e, "open", path),
        // A socket (ENXIO), or anything else odd: say what is there if we can.
        Some(errno::ENXIO) | Some(errno::EOPNOTSUPP) | Some(errno::ETXTBSY) => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.file_type().is_file() => non_regular_error(&m, path),
                _ => OsError::from_io(e, "open", path),
            }
        }
        _ => OsError::from_io(e, "open", path),
    }
}
