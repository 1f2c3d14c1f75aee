//! Inspecting (and optionally removing) one lock file, for
//! `cleanStaleLockFiles`, `inspectLockFile` and the CLI.
//!
//! An OS-locked file is never stale and never removed. A file of ours
//! (`"lock": "os"`) whose OS lock is free is stale: the old rules' reasons,
//! then `not-held`. An old-module file is judged by the old rules alone, with
//! the sweep's `orphan-self-pid` rule (see [`legacy::Rules::Sweep`]), plus
//! `non-openclaw-owner` when the caller has read the owner's command line and
//! found it is not OpenClaw's (the caller passes that pid; it applies only if
//! the file, read again here under this call, still names that pid, is not
//! OS-locked and is not stale by any other rule).
//! Removal happens while we hold the file's OS lock and only if the path still
//! names the inode we judged, so a file created or taken over meanwhile by a
//! new holder is never removed.

use std::path::Path;

use napi_derive::napi;

use crate::legacy;
use crate::lockfile::Probe;
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
    /// The hold's real start: the mtime of a `"lock": "os"` file whose OS
    /// lock is held (a refresh of `createdAt` sets it back to the start).
    pub held_since_ms: Option<i64>,
    pub os: bool,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub error: Option<OsError>,
    /// Not OS-locked, no reason, old format, pid alive here: the owner's
    /// command line may still make it `non-openclaw-owner`.
    pub owner_checkable: bool,
}

pub fn inspect(lock_path: &str, now_ms: i64, stale_ms: u64, remove: bool) -> Report {
    inspect_with(lock_path, now_ms, stale_ms, remove, None)
}

/// [`inspect`], where `non_openclaw_pid` is a pid whose command line the
/// caller found not to be an OpenClaw gateway or agent.
pub fn inspect_with(
    lock_path: &str,
    now_ms: i64,
    stale_ms: u64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> Report {
    let mut r = Report::default();
    let path = Path::new(lock_path);
    let probe = match Probe::open(path, lock_path) {
        Ok(Some(p)) => p,
        Ok(None) => {
            r.error = Some(OsError::synthetic("ENOENT", "open", lock_path));
            return r;
        }
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    let p = payload::parse(&probe.read());
    r.pid = p.pid;
    r.created_at = p.created_at.clone();
    r.os = p.os_lock;
    r.hostname = p.hostname.clone();
    r.max_hold_ms = p.max_hold_ms;
    let verdict = legacy::judge_with(
        &p,
        probe.mtime_ms,
        now_ms,
        stale_ms,
        false,
        legacy::Rules::Sweep,
    );
    r.pid_alive = verdict.pid_alive;
    r.age_ms = verdict.age_ms;
    match probe.try_lock(lock_path) {
        Ok(true) => {}
        Ok(false) => {
            r.held = true;
            if p.os_lock {
                r.held_since_ms = Some(probe.mtime_ms);
            }
            return r;
        }
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    }
    r.reasons = verdict.reasons;
    if p.os_lock {
        r.reasons.push("not-held");
        r.stale = true;
    } else if verdict.owner_checkable && non_openclaw_pid.is_some() && p.pid == non_openclaw_pid {
        r.reasons.push("non-openclaw-owner");
        r.stale = true;
    } else {
        r.stale = verdict.stale;
        r.owner_checkable = verdict.owner_checkable;
    }
    if r.stale && remove {
        match probe.remove_if_named(path, lock_path) {
            Ok(removed) => r.removed = removed,
            Err(e) => r.error = Some(e),
        }
    }
    r
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
    /// "os" or "legacy".
    pub kind: String,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub owner_checkable: bool,
    pub error: Option<crate::binding::NativeError>,
}

fn ms_or_max(v: f64) -> u64 {
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        u64::MAX
    }
}

/// Inspect one lock file (see [`inspect_with`]); remove it when stale and
/// `remove`, under its OS lock and only if the path still names the inode
/// inspected. Never follows symlinks; a non-regular file reports an error.
#[napi(catch_unwind)]
pub fn inspect_lock_file(
    lock_path: String,
    now_ms: f64,
    stale_ms: f64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> LockFileReport {
    let r = inspect_with(
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
        kind: if r.os { "os" } else { "legacy" }.to_string(),
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
#[napi(catch_unwind)]
pub fn inspect_lock_payload(json: String, now_ms: f64, stale_ms: f64) -> PayloadVerdict {
    let p = payload::parse(json.as_bytes());
    let v = legacy::judge_with(
        &p,
        i64::MIN,
        now_ms as i64,
        ms_or_max(stale_ms),
        false,
        legacy::Rules::Sweep,
    );
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
    pub error: Option<crate::binding::NativeError>,
}

/// Remove a stray temporary file of a create or rewrite
/// (`.<lock file name>.<pid>-<n>.tmp`, left when its process was killed
/// between the `link` and the `unlink`, or inside a swap), if nobody holds
/// its OS lock and its mtime is more than `grace_ms` before `now_ms`.
/// Removal happens under its OS lock, and only if the name still names the
/// inode judged. A file being built is always either younger than the grace
/// (before its OS lock is taken) or OS-locked, so it is never removed.
/// Never follows symlinks; a non-regular file reports an error and is kept.
#[napi(catch_unwind)]
pub fn remove_stray_temp(path: String, now_ms: f64, grace_ms: f64) -> StrayTempReport {
    let mut r = StrayTempReport {
        removed: false,
        held: false,
        young: false,
        error: None,
    };
    let p = Path::new(&path);
    let probe = match Probe::open(p, &path) {
        Ok(Some(probe)) => probe,
        Ok(None) => return r,
        Err(e) => {
            r.error = Some(e.into());
            return r;
        }
    };
    let age = now_ms - probe.mtime_ms as f64;
    if age.is_nan() || age <= grace_ms {
        r.young = true;
        return r;
    }
    match probe.try_lock(&path) {
        Ok(true) => match probe.remove_if_named(p, &path) {
            Ok(removed) => r.removed = removed,
            Err(e) => r.error = Some(e.into()),
        },
        Ok(false) => r.held = true,
        Err(e) => r.error = Some(e.into()),
    }
    r
}
