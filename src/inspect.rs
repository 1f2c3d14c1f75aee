//! Inspecting (and optionally removing) one lock file, for
//! `cleanStaleLockFiles` and the CLI.
//!
//! An OS-locked file is never stale and never removed. A file of ours
//! (`"lock": "os"`) whose OS lock is free is stale: the old rules' reasons,
//! then `not-held`. An old-module file is judged by the old rules alone.
//! Removal happens while we hold the file's OS lock and only if the path still
//! names the inode we judged, so a file created or taken over meanwhile by a
//! new holder is never removed.

use std::path::Path;

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
    pub os: bool,
    pub hostname: Option<String>,
    pub max_hold_ms: Option<f64>,
    pub error: Option<OsError>,
}

pub fn inspect(lock_path: &str, now_ms: i64, stale_ms: u64, remove: bool) -> Report {
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
    let verdict = legacy::judge(&p, probe.mtime_ms, now_ms, stale_ms, false);
    r.pid_alive = verdict.pid_alive;
    r.age_ms = verdict.age_ms;
    match probe.try_lock(lock_path) {
        Ok(true) => {}
        Ok(false) => {
            r.held = true;
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
    } else {
        r.stale = verdict.stale;
    }
    if r.stale && remove {
        match probe.remove_if_named(path, lock_path) {
            Ok(removed) => r.removed = removed,
            Err(e) => r.error = Some(e),
        }
    }
    r
}
