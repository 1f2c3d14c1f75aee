//! Inspecting (and optionally removing) one lock file, for
//! `cleanStaleLockFiles`, `inspectLockFile` and the CLI.
//!
//! An OS-locked file is never stale and never removed. A file of ours
//! (`"lock": "os"`) whose OS lock is free is stale: the old rules' reasons,
//! then `not-held`. An old-module file is judged by the old rules alone, with
//! the sweep's `orphan-self-pid` rule (see [`staleness::Rules::Sweep`]), plus
//! `non-openclaw-owner` when the caller has read the owner's command line and
//! found it is not OpenClaw's (the caller passes that pid; it applies only if
//! the file, read again here under this call, still names that pid, is not
//! OS-locked and is not stale by any other rule).
//! Removal happens while we hold the file's OS lock and only if the path still
//! names the inode we judged, so a file created or taken over meanwhile by a
//! new holder is never removed.

use crate::lockfile::{path_names, Probe};
use crate::oserror::OsError;
use crate::payload;
use crate::staleness;

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

/// Inspect one lock file (and remove it if stale and `remove`), where `non_openclaw_pid` is a pid whose command line the
/// caller found not to be an OpenClaw gateway or agent.
pub fn inspect_with(
    lock_path: &str,
    now_ms: i64,
    stale_ms: u64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> Report {
    // A holder that rewrites its payload by swapping a new, locked file into
    // place frees the OS lock of the file it swapped out. A probe that opened
    // that old file just before the swap finds its lock free although the
    // lock is held: when the path no longer names the file whose lock we
    // obtained, look again. A name that is replaced on every look is being
    // rewritten by a live holder (only a holder swaps), so the last look
    // reports it held.
    for _ in 1..INSPECT_ROUNDS {
        if let Some(r) = inspect_once(lock_path, now_ms, stale_ms, remove, non_openclaw_pid) {
            return r;
        }
    }
    inspect_once(lock_path, now_ms, stale_ms, remove, non_openclaw_pid).unwrap_or_else(|| Report {
        held: true,
        ..Report::default()
    })
}

/// Looks an inspection takes before it calls a constantly replaced name held.
const INSPECT_ROUNDS: usize = 16;

/// One look: `None` when the file whose OS lock we obtained is no longer the
/// one the path names (swapped out by its holder while we looked).
fn inspect_once(
    lock_path: &str,
    now_ms: i64,
    stale_ms: u64,
    remove: bool,
    non_openclaw_pid: Option<u32>,
) -> Option<Report> {
    let mut r = Report::default();
    let probe = match Probe::open(lock_path) {
        Ok(Some(p)) => p,
        Ok(None) => {
            r.error = Some(OsError::synthetic("ENOENT", "open", lock_path));
            return Some(r);
        }
        Err(e) => {
            r.error = Some(e);
            return Some(r);
        }
    };
    let p = payload::parse(&probe.read());
    r.pid = p.pid;
    r.created_at = p.created_at.clone();
    r.os = p.os_lock;
    r.hostname = p.hostname.clone();
    r.max_hold_ms = p.max_hold_ms;
    let verdict = staleness::judge_with(
        &p,
        probe.mtime_ms,
        now_ms,
        stale_ms,
        false,
        staleness::Rules::Sweep,
    );
    r.pid_alive = verdict.pid_alive;
    r.age_ms = verdict.age_ms;
    match probe.try_lock(lock_path) {
        Ok(true) if !path_names(lock_path, probe.id) => return None,
        Ok(true) => {}
        Ok(false) => {
            r.held = true;
            if p.os_lock {
                r.held_since_ms = Some(probe.mtime_ms);
            }
            return Some(r);
        }
        Err(e) => {
            r.error = Some(e);
            return Some(r);
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
        match probe.remove_if_named(lock_path) {
            Ok(removed) => r.removed = removed,
            Err(e) => r.error = Some(e),
        }
    }
    Some(r)
}

/// The old rules (sweep variant) applied to a payload given as JSON text,
/// with no file behind it: no mtime grace (a payload-less verdict is stale at
/// once), and nothing is held.
pub fn judge_payload_text(
    json: &[u8],
    now_ms: i64,
    stale_ms: u64,
) -> (payload::ParsedPayload, staleness::Verdict) {
    let p = payload::parse(json);
    let v = staleness::judge_with(
        &p,
        i64::MIN,
        now_ms,
        stale_ms,
        false,
        staleness::Rules::Sweep,
    );
    (p, v)
}

/// What [`remove_stray_temp`] did with one temporary file.
#[derive(Debug, PartialEq, Eq)]
pub enum StrayTemp {
    /// Nothing there any more.
    Gone,
    /// Younger than the grace: kept.
    Young,
    /// Someone holds its OS lock (a create or rewrite in progress): kept.
    Held,
    /// Its OS lock was free: the name was removed (`false`: the name no
    /// longer named the file judged, so nothing was removed).
    Removed(bool),
}

/// Remove a stray temporary file of a create or rewrite
/// (`.<lock file name>.<pid>-<n>.tmp`, left when its process was killed
/// between the `link` and the `unlink`, or inside a swap), if nobody holds
/// its OS lock and its mtime is more than `grace_ms` before `now_ms`.
/// Removal happens under its OS lock, and only if the name still names the
/// inode judged. A file being built is always either younger than the grace
/// (before its OS lock is taken) or OS-locked, so it is never removed.
/// Never follows symlinks; a non-regular file reports an error and is kept.
pub fn remove_stray_temp(path: &str, now_ms: f64, grace_ms: f64) -> Result<StrayTemp, OsError> {
    let Some(probe) = Probe::open(path)? else {
        return Ok(StrayTemp::Gone);
    };
    let age = now_ms - probe.mtime_ms as f64;
    if age.is_nan() || age <= grace_ms {
        return Ok(StrayTemp::Young);
    }
    if !probe.try_lock(path)? {
        return Ok(StrayTemp::Held);
    }
    Ok(StrayTemp::Removed(probe.remove_if_named(path)?))
}
