//! The staleness rules for lock files that carry no OS lock: those written by
//! the old TypeScript module (no `"lock": "os"`), and, for reporting, ours
//! whose OS lock is free (see `cleanStaleLockFiles`).
//!
//! Reasons, in order: one of `missing-pid` / `dead-pid` / `recycled-pid`, then
//! one of `invalid-createdAt` / `too-old` / `hold-exceeded`, then
//! `orphan-self-pid`. A `createdAt` more than [`MAX_FUTURE_SKEW_MS`] ahead of
//! the clock counts as invalid: it would otherwise never age. A file whose
//! only reasons are `missing-pid` and/or `invalid-createdAt` (empty, `{}`,
//! garbage, a create interrupted before its payload) is stale only once its
//! mtime is older than `min(staleMs, 5 s)`: the old module creates the file
//! first and writes the payload a moment later.
//!
//! `hold-exceeded` (old-format files only): the file records `maxHoldMs`, its
//! pid is alive on this host and is not this process, and the file is older
//! than that. (The later TypeScript generation records `maxHoldMs`; its own
//! watchdog would have released the lock by then.)
//!
//! `orphan-self-pid`: the pid is ours but we do not hold the lock. Acquire
//! reclaims such a file when its recorded start time is ours or absent; the
//! sweep ([`Rules::Sweep`]) only when a recorded start time equals ours, so a
//! fresh file of our pid without a start time survives a start-up sweep, as it
//! did under every old generation's sweep.
//!
//! Liveness: zombies are dead, `EPERM` is alive, a pid recorded on another
//! host is never judged locally (only `too-old` applies), and a pid recorded
//! under another boot id of this host is dead.
//!
//! Not decided here: `non-openclaw-owner` needs the owner's command line,
//! which the caller reads (see [`Verdict::owner_checkable`]).

use crate::identity::{self, Liveness};
use crate::payload::ParsedPayload;

/// The longest grace a payload-less file gets.
pub const PAYLOADLESS_GRACE_MS: i64 = 5_000;

/// How far in the future a `createdAt` may lie (clock skew between hosts)
/// before it counts as `invalid-createdAt`.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60_000;

/// Which caller's rules: they differ only in `orphan-self-pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Acquire: our pid, not held by us, start time ours or absent.
    Acquire,
    /// `cleanStaleLockFiles` / inspection: our pid, not held by us, and a
    /// recorded start time equal to ours.
    Sweep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub reasons: Vec<&'static str>,
    pub pid_alive: bool,
    pub age_ms: Option<i64>,
    /// Would be removed / reclaimed now.
    pub stale: bool,
    /// No reason at all, an old-format file, and a pid alive on this host:
    /// the one case where the owner's command line may still decide
    /// (`non-openclaw-owner`).
    pub owner_checkable: bool,
}

/// Judge a payload by the old module's rules.
///
/// `we_hold_it`: this process holds the lock in its registry (then
/// `orphan-self-pid` never applies).
pub fn judge(
    p: &ParsedPayload,
    mtime_ms: i64,
    now_ms: i64,
    stale_ms: u64,
    we_hold_it: bool,
) -> Verdict {
    judge_with(p, mtime_ms, now_ms, stale_ms, we_hold_it, Rules::Acquire)
}

/// [`judge`] with the caller's [`Rules`].
pub fn judge_with(
    p: &ParsedPayload,
    mtime_ms: i64,
    now_ms: i64,
    stale_ms: u64,
    we_hold_it: bool,
    rules: Rules,
) -> Verdict {
    let me = identity::self_identity();
    let mut reasons: Vec<&'static str> = Vec::with_capacity(3);
    let other_host = matches!(&p.hostname, Some(h) if *h != me.hostname);
    let other_boot = !other_host
        && matches!((&p.boot_id, &me.boot_id), (Some(theirs), Some(ours)) if theirs != ours);
    let mut pid_alive = false;
    match p.pid {
        None => reasons.push("missing-pid"),
        Some(_) if other_host => pid_alive = true,
        Some(_) if other_boot => reasons.push("dead-pid"),
        Some(pid) => {
            if identity::liveness(pid) == Liveness::Dead {
                reasons.push("dead-pid");
            } else {
                pid_alive = true;
                if let (Some(recorded), Some(current)) =
                    (p.start_time, identity::proc_start_time(pid))
                {
                    if recorded != current {
                        reasons.push("recycled-pid");
                    }
                }
            }
        }
    }
    let age_ms = p
        .created_at_ms
        .map(|c| now_ms.saturating_sub(c))
        .filter(|age| *age >= -MAX_FUTURE_SKEW_MS);
    let ours = !other_host && p.pid == Some(me.pid);
    match age_ms {
        None => reasons.push("invalid-createdAt"),
        Some(age) if age > stale_ms.min(i64::MAX as u64) as i64 => reasons.push("too-old"),
        Some(age) => {
            // The recorded holder itself is alive (not a recycled pid) and is not us.
            let live_other = pid_alive && reasons.is_empty() && !other_host && !ours;
            if let (false, true, Some(max)) = (p.os_lock, live_other, p.max_hold_ms) {
                if max.is_finite() && max > 0.0 && age as f64 > max {
                    reasons.push("hold-exceeded");
                }
            }
        }
    }
    if ours && !we_hold_it {
        let own = identity::own_start_time();
        let orphan = match rules {
            Rules::Acquire => p.start_time.is_none() || p.start_time == own,
            Rules::Sweep => p.start_time.is_some() && p.start_time == own,
        };
        if orphan {
            reasons.push("orphan-self-pid");
        }
    }
    let payloadless = !reasons.is_empty()
        && reasons
            .iter()
            .all(|r| *r == "missing-pid" || *r == "invalid-createdAt");
    let stale = if payloadless {
        let grace = (stale_ms.min(i64::MAX as u64) as i64).min(PAYLOADLESS_GRACE_MS);
        now_ms.saturating_sub(mtime_ms) > grace
    } else {
        !reasons.is_empty()
    };
    let owner_checkable =
        reasons.is_empty() && !p.os_lock && pid_alive && !other_host && p.pid.is_some();
    Verdict {
        reasons,
        pid_alive,
        age_ms,
        stale,
        owner_checkable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse;

    const NOW: i64 = 1_800_000_000_000;

    fn old(pid: u32, created: i64, start: Option<u64>) -> ParsedPayload {
        let mut s = format!(
            "{{\"pid\": {pid}, \"createdAt\": \"{}\"",
            crate::payload::iso8601(created)
        );
        if let Some(st) = start {
            s.push_str(&format!(", \"starttime\": {st}"));
        }
        s.push('}');
        parse(s.as_bytes())
    }

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn live_parent_is_not_stale() {
        let ppid = crate::sys::parent_pid();
        let v = judge(&old(ppid, NOW - 1000, None), NOW, NOW, 1_800_000, false);
        assert_eq!(v.reasons, Vec::<&str>::new());
        assert!(v.pid_alive && !v.stale);
    }

    #[test]
    fn dead_and_too_old() {
        let v = judge(&old(dead_pid(), NOW - 10_000, None), NOW, NOW, 5_000, false);
        assert_eq!(v.reasons, vec!["dead-pid", "too-old"]);
        assert!(v.stale && !v.pid_alive);
    }

    #[test]
    fn recycled_pid() {
        let ppid = crate::sys::parent_pid();
        let real = identity::proc_start_time(ppid).unwrap();
        let v = judge(&old(ppid, NOW, Some(real + 1)), NOW, NOW, 1_800_000, false);
        assert_eq!(v.reasons, vec!["recycled-pid"]);
        assert!(v.stale);
    }

    #[test]
    fn orphan_self() {
        let me = identity::self_identity();
        let v = judge(&old(me.pid, NOW, None), NOW, NOW, 1_800_000, false);
        assert_eq!(v.reasons, vec!["orphan-self-pid"]);
        let held = judge(&old(me.pid, NOW, None), NOW, NOW, 1_800_000, true);
        assert!(held.reasons.is_empty());
    }

    #[test]
    fn orphan_self_in_the_sweep_needs_our_start_time() {
        let me = identity::self_identity();
        let own = identity::own_start_time();
        let v = judge_with(
            &old(me.pid, NOW, None),
            NOW,
            NOW,
            1_800_000,
            false,
            Rules::Sweep,
        );
        assert!(v.reasons.is_empty() && !v.stale);
        if let Some(st) = own {
            let v = judge_with(
                &old(me.pid, NOW, Some(st)),
                NOW,
                NOW,
                1_800_000,
                false,
                Rules::Sweep,
            );
            assert_eq!(v.reasons, vec!["orphan-self-pid"]);
        }
    }

    #[test]
    fn future_created_at_is_invalid() {
        let ppid = crate::sys::parent_pid();
        let far = judge(
            &old(ppid, NOW + 3_600_000, None),
            NOW,
            NOW,
            1_800_000,
            false,
        );
        assert_eq!(far.reasons, vec!["invalid-createdAt"]);
        assert_eq!(far.age_ms, None);
        assert!(!far.stale, "payload-less grace: mtime is fresh");
        let aged = judge(
            &old(ppid, NOW + 3_600_000, None),
            NOW - 6_000,
            NOW,
            1_800_000,
            false,
        );
        assert!(aged.stale);
        let skew = judge(
            &old(ppid, NOW + 4 * 60_000, None),
            NOW - 6_000,
            NOW,
            1_800_000,
            false,
        );
        assert!(skew.reasons.is_empty() && !skew.stale);
        assert_eq!(skew.age_ms, Some(-4 * 60_000));
    }

    #[test]
    fn hold_exceeded_for_a_live_other_holder_only() {
        let ppid = crate::sys::parent_pid();
        let mut p = old(ppid, NOW - 30_000, None);
        p.max_hold_ms = Some(10_000.0);
        let v = judge(&p, NOW, NOW, 1_800_000, false);
        assert_eq!(v.reasons, vec!["hold-exceeded"]);
        assert!(v.stale);
        p.max_hold_ms = Some(60_000.0);
        assert!(judge(&p, NOW, NOW, 1_800_000, false).reasons.is_empty());
        // Our own pid: never hold-exceeded.
        let mut mine = old(identity::self_identity().pid, NOW - 30_000, None);
        mine.max_hold_ms = Some(10_000.0);
        let v = judge_with(&mine, NOW, NOW, 1_800_000, false, Rules::Sweep);
        assert!(v.reasons.is_empty());
        // Our OS-locked format: never.
        let mut os = old(ppid, NOW - 30_000, None);
        os.max_hold_ms = Some(10_000.0);
        os.os_lock = true;
        assert!(judge(&os, NOW, NOW, 1_800_000, false).reasons.is_empty());
    }

    #[test]
    fn payloadless_grace() {
        let empty = parse(b"");
        let fresh = judge(&empty, NOW - 1_000, NOW, 1_800_000, false);
        assert_eq!(fresh.reasons, vec!["missing-pid", "invalid-createdAt"]);
        assert!(!fresh.stale);
        let aged = judge(&empty, NOW - 6_000, NOW, 1_800_000, false);
        assert!(aged.stale);
        let short = judge(&empty, NOW - 1_500, NOW, 1_000, false);
        assert!(short.stale, "grace is min(staleMs, 5s)");
    }

    #[test]
    fn other_host_only_too_old() {
        let mut p = old(dead_pid(), NOW - 1000, None);
        p.hostname = Some("elsewhere.example".into());
        let v = judge(&p, NOW, NOW, 1_800_000, false);
        assert!(v.reasons.is_empty() && !v.stale);
        let v = judge(&p, NOW, NOW, 10, false);
        assert_eq!(v.reasons, vec!["too-old"]);
    }
}
