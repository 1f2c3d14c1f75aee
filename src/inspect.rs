//! Inspecting (and optionally removing) one lock file, for
//! `cleanStaleLockFiles` and the CLI.
//!
//! An OS-locked file is never stale and never removed. A file of ours
//! (`"lock": "os"`) whose OS lock is free is stale: the old rules' reasons,
//! then `not-held`. An old-module file is judged by the old rules alone.
//! Removal happens while we hold the file's OS lock and only if the path still
//! names the inode we judged, so a file created or taken over meanwhile by a
//! new holder is never removed.

use std::fs::File;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
#[cfg(unix)]
use std::os::unix::io::AsRawFd;

use crate::legacy;
use crate::lockfile::{self, FileId};
use crate::oserror::OsError;
use crate::payload;

#[derive(Debug, Default)]
pub struct Report {
    pub pid: Option<u32>,
    pub pid_alive: bool,
    pub created_at: Option<String>,
    pub age_ms: Option<i64>,
    pub stale: bool,
    pub reasons: Vec<&'static str>,
    pub removed: bool,
    pub held: bool,
    pub os: bool,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub error: Option<OsError>,
}

fn open(path: &str) -> Result<File, OsError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| OsError::from_io(&e, "open", path))
}

pub fn inspect(lock_path: &str, now_ms: i64, stale_ms: u64, remove: bool) -> Report {
    let mut r = Report::default();
    let file = match open(lock_path) {
        Ok(f) => f,
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            r.error = Some(OsError::from_io(&e, "fstat", lock_path));
            return r;
        }
    };
    if !meta.is_file() {
        let code = if meta.is_dir() { "EISDIR" } else { "EINVAL" };
        r.error = Some(OsError::synthetic(code, "open", lock_path));
        return r;
    }
    let id = FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    let mtime = meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000;
    let p = payload::parse(&lockfile::read_bounded(&file));
    r.pid = p.pid;
    r.created_at = p.created_at.clone();
    r.os = p.os_lock;
    r.hostname = p.hostname.clone();
    r.max_hold_ms = p.max_hold_ms;
    // SAFETY: a non-blocking flock on a descriptor we own.
    let got = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    let verdict = legacy::judge(&p, mtime, now_ms, stale_ms, false);
    r.pid_alive = verdict.pid_alive;
    r.age_ms = verdict.age_ms;
    if !got {
        r.held = true;
        return r;
    }
    r.reasons = verdict.reasons;
    if p.os_lock {
        r.reasons.push("not-held");
        r.stale = true;
    } else {
        r.stale = verdict.stale;
    }
    if r.stale && remove && lockfile::path_names(Path::new(lock_path), id) {
        match std::fs::remove_file(lock_path) {
            Ok(()) => r.removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => r.error = Some(OsError::from_io(&e, "unlink", lock_path)),
        }
    }
    drop(file);
    r
}
