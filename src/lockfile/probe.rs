//! Looking at a lock file (or marker) without holding it: bounded reads,
//! and a probe that may take the OS lock for a moment to judge or remove it.

use std::fs::File;
use std::io;

use super::create::open_existing;
use super::{path_names, try_lock_exclusive, FileId};
use crate::oserror::OsError;
use crate::payload::{self, ParsedPayload, MAX_PAYLOAD_BYTES};
use crate::sys::{self, errno};

/// Read at most `MAX_PAYLOAD_BYTES + 1` bytes from the start of `file`.
///
/// The buffer starts small and doubles only while the file fills it: a
/// payload is a few hundred bytes, and a waiter reads the holder's payload
/// on every busy attempt, so zeroing the whole 64 KiB cap each time (a
/// calloc and a memset per attempt) cost more than the read itself.
pub fn read_bounded(file: &File) -> Vec<u8> {
    const FIRST: usize = 1024;
    let cap = MAX_PAYLOAD_BYTES + 1;
    let mut buf = vec![0u8; FIRST.min(cap)];
    let mut n = 0;
    loop {
        if n == buf.len() {
            if buf.len() == cap {
                break;
            }
            buf.resize((buf.len() * 2).min(cap), 0);
        }
        let want = buf.len() - n;
        match sys::read_at(file, &mut buf[n..], n as u64) {
            Ok(0) => break,
            // A regular file reads short only at its end: no second read to
            // learn what this one said (a busy attempt reads the holder's
            // payload each time).
            Ok(k) if k < want => {
                n += k;
                break;
            }
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
    pub fn open(path: &str) -> Result<Option<Probe>, OsError> {
        Ok(open_existing(path)?.map(|(file, meta)| Probe {
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
    pub fn try_lock(&self, path: &str) -> Result<bool, OsError> {
        try_lock_exclusive(&self.file, path)
    }

    /// Remove the name, if it still names this file. Call only while holding
    /// the probe's lock, so a new holder's file is never removed.
    pub fn remove_if_named(&self, path: &str) -> Result<bool, OsError> {
        if !path_names(path, self.id) {
            return Ok(false);
        }
        match sys::remove_name(&self.file, path) {
            Ok(()) => Ok(true),
            Err(e) if sys::errno_of(&e) == Some(errno::ENOENT) => Ok(false),
            Err(e) => Err(OsError::from_io(&e, "unlink", path)),
        }
    }
}

/// Read and parse the payload at `path` without locking or creating anything
/// (the owner named in a timeout error).
pub fn peek(path: &str) -> Option<ParsedPayload> {
    let probe = Probe::open(path).ok()??;
    Some(payload::parse(&probe.read()))
}
