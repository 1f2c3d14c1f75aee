//! The exports of looking at lock files without holding them: the holder a
//! timeout names, inspection and removal, payload verdicts, stray temporary
//! files, and how creates went.

use napi_derive::napi;

use super::values::{ms_or_max, NativeError};
use crate::lockfile;

#[napi(object)]
pub struct CreateCounts {
    pub tmpfile: f64,
    pub temp_link: f64,
    pub exclusive: f64,
    pub fallbacks: f64,
}

/// How this process's lock-file creates went (tests, diagnostics).
#[napi(no_export, catch_unwind)]
pub fn create_counts() -> CreateCounts {
    let c = lockfile::create_counts();
    CreateCounts {
        tmpfile: c.tmpfile as f64,
        temp_link: c.temp_link as f64,
        exclusive: c.exclusive as f64,
        fallbacks: c.fallbacks as f64,
    }
}

#[napi(object)]
pub struct PeekedHolder {
    pub pid: Option<u32>,
    pub created_at: Option<String>,
}

/// What the lock file at `lock_path` says about its holder (bounded read, no
/// lock taken, nothing created); `null` when there is no regular file. Read
/// through the descriptor kept for the file's waits when there is one (see
/// [`crate::wait_thread::peek_kept`]).
#[napi(no_export, catch_unwind)]
pub fn peek_holder(lock_path: String) -> Option<PeekedHolder> {
    let payload = crate::wait_thread::peek_kept(&lock_path).or_else(|| lockfile::peek(&lock_path));
    payload.map(|p| PeekedHolder {
        pid: p.pid,
        created_at: p.created_at,
    })
}

/// Who wrote a lock file.
#[napi(string_enum = "lowercase")]
#[derive(Debug, PartialEq, Eq)]
pub enum LockFileKind {
    /// This package (`"lock": "os"`): held by its OS lock.
    Os,
    /// The old TypeScript module (no OS lock): judged by its payload.
    Legacy,
}

/// What the JS side gets from [`inspect_lock_file`].
#[napi(object)]
pub struct LockFileReport {
    pub lock_path: String,
    pub pid: Option<u32>,
    pub pid_alive: bool,
    pub created_at: Option<String>,
    pub age_ms: Option<f64>,
    pub stale: bool,
    pub stale_reasons: Vec<String>,
    pub removed: bool,
    pub held: bool,
    /// Milliseconds since the epoch when the current hold began (the file's
    /// mtime), for a `"lock": "os"` file whose OS lock is held; else absent.
    pub held_since_ms: Option<f64>,
    pub kind: LockFileKind,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub owner_checkable: bool,
    pub error: Option<NativeError>,
}

/// Inspect one lock file (see [`crate::inspect::inspect_with`]); remove it when stale and
/// `remove`, under its OS lock and only if the path still names the inode
/// inspected. Never follows symlinks; a non-regular file reports an error.
#[napi(no_export, catch_unwind)]
pub fn inspect_lock_file(
    lock_path: String,
    now_ms: f64,
    stale_ms: f64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> LockFileReport {
    let r = crate::inspect::inspect_with(
        &lock_path,
        now_ms as i64,
        ms_or_max(stale_ms),
        remove,
        non_openclaw_pid,
    );
    LockFileReport {
        lock_path,
        pid: r.pid,
        pid_alive: r.pid_alive,
        created_at: r.created_at,
        age_ms: r.age_ms.map(|a| a as f64),
        stale: r.stale,
        stale_reasons: r.reasons.into_iter().map(str::to_string).collect(),
        removed: r.removed,
        held: r.held,
        held_since_ms: r.held_since_ms.map(|m| m as f64),
        kind: if r.os {
            LockFileKind::Os
        } else {
            LockFileKind::Legacy
        },
        hostname: r.hostname,
        max_hold_ms: r.max_hold_ms,
        owner_checkable: r.owner_checkable,
        error: r.error.map(Into::into),
    }
}

/// The verdict of [`inspect_lock_payload`].
#[napi(object)]
pub struct PayloadVerdict {
    pub pid: Option<u32>,
    pub pid_alive: bool,
    pub created_at: Option<String>,
    pub age_ms: Option<f64>,
    pub stale: bool,
    pub stale_reasons: Vec<String>,
}

/// The old rules (sweep variant) applied to a payload given as JSON text, with
/// no file behind it: no mtime grace (a payload-less verdict is stale at
/// once), and nothing is held.
#[napi(no_export, catch_unwind)]
pub fn inspect_lock_payload(json: String, now_ms: f64, stale_ms: f64) -> PayloadVerdict {
    let (p, v) =
        crate::inspect::judge_payload_text(json.as_bytes(), now_ms as i64, ms_or_max(stale_ms));
    PayloadVerdict {
        pid: p.pid,
        pid_alive: v.pid_alive,
        created_at: p.created_at,
        age_ms: v.age_ms.map(|a| a as f64),
        stale: v.stale,
        stale_reasons: v.reasons.into_iter().map(str::to_string).collect(),
    }
}

/// What [`remove_stray_temp`] did with one temporary file.
#[napi(object)]
pub struct StrayTempReport {
    /// The name was removed.
    pub removed: bool,
    /// Someone holds its OS lock (a create or rewrite in progress): kept.
    pub held: bool,
    /// Younger than the grace: kept.
    pub young: bool,
    pub error: Option<NativeError>,
}

/// Remove a stray temporary file of a create or rewrite if nobody holds it
/// and it is older than `grace_ms` (see [`crate::inspect::remove_stray_temp`]).
#[napi(no_export, catch_unwind)]
pub fn remove_stray_temp(path: String, now_ms: f64, grace_ms: f64) -> StrayTempReport {
    use crate::inspect::StrayTemp;
    let mut r = StrayTempReport {
        removed: false,
        held: false,
        young: false,
        error: None,
    };
    match crate::inspect::remove_stray_temp(&path, now_ms, grace_ms) {
        Ok(StrayTemp::Gone) => {}
        Ok(StrayTemp::Young) => r.young = true,
        Ok(StrayTemp::Held) => r.held = true,
        Ok(StrayTemp::Removed(removed)) => r.removed = removed,
        Err(e) => r.error = Some(e.into()),
    }
    r
}

/// This file's rarely used exports (see `super::rare_functions`).
pub(super) const RARE: &[(&str, napi::Callback)] = &[
    ("createCounts", create_counts_c_callback),
    ("peekHolder", peek_holder_c_callback),
    ("inspectLockFile", inspect_lock_file_c_callback),
    ("inspectLockPayload", inspect_lock_payload_c_callback),
    ("removeStrayTemp", remove_stray_temp_c_callback),
];
