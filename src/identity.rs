//! Process identity: who we are (pid, start time, boot id, host) and whether a
//! recorded process is still the one that wrote a lock file.
//!
//! On Linux everything comes from `/proc` directly: one `read` of
//! `/proc/<pid>/stat` costs a few microseconds, where `sysinfo` would scan far
//! more than we need. Elsewhere the start time and boot id are unknown (`None`),
//! and liveness falls back to `kill(pid, 0)`.
//!
//! Guarantees: [`liveness`] never reports a zombie as alive, and reports a
//! process we may not signal (`EPERM`) as alive. It does not guarantee that a
//! pid alive now is the process that wrote a file: compare start times for that
//! ([`proc_start_time`]), which is what the `recycled-pid` rule does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// This process, read once.
#[derive(Debug, Clone)]
pub struct SelfIdentity {
    pub pid: u32,
    /// `/proc/self/stat` field 22 (clock ticks since boot); `None` off Linux.
    pub start_time: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id`; `None` off Linux.
    pub boot_id: Option<String>,
    pub hostname: String,
}

static SELF: OnceLock<SelfIdentity> = OnceLock::new();

/// The identity of this process, computed on first use and then cached
/// (Node never forks a running process, so the cache cannot go stale).
pub fn self_identity() -> &'static SelfIdentity {
    SELF.get_or_init(|| {
        let pid = std::process::id();
        SelfIdentity {
            pid,
            start_time: real_start_time(pid),
            boot_id: read_boot_id(),
            hostname: hostname(),
        }
    })
}

fn read_boot_id() -> Option<String> {
    crate::sys::boot_id()
}

/// The host name as `os.hostname()` reports it (`gethostname`).
pub fn hostname() -> String {
    crate::sys::hostname()
}

/// Test seam: start times to report instead of the real ones, keyed by pid
/// (`Some(None)` = "unknown"). Empty unless a test sets it through
/// `__testing.setStartTimeOverride`; never consulted for anything but the
/// legacy staleness rules and the payload we write.
static START_TIME_OVERRIDES: Mutex<Option<HashMap<u32, Option<u64>>>> = Mutex::new(None);
/// Fast check that no override is set (the common case never takes the mutex).
static OVERRIDES_SET: AtomicBool = AtomicBool::new(false);

/// Set (or with `clear`, remove) the start time reported for `pid`; `clear`
/// with `pid` 0 removes every override.
pub fn set_start_time_override(pid: u32, value: Option<u64>, clear: bool) {
    if clear && pid == 0 {
        clear_start_time_overrides();
        return;
    }
    let mut guard = START_TIME_OVERRIDES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if clear {
        map.remove(&pid);
    } else {
        map.insert(pid, value);
    }
    OVERRIDES_SET.store(!map.is_empty(), Ordering::SeqCst);
}

/// Drop every override.
pub fn clear_start_time_overrides() {
    *START_TIME_OVERRIDES
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = None;
    OVERRIDES_SET.store(false, Ordering::SeqCst);
}

fn overridden(pid: u32) -> Option<Option<u64>> {
    if !OVERRIDES_SET.load(Ordering::Acquire) {
        return None;
    }
    let guard = START_TIME_OVERRIDES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    guard.as_ref().and_then(|m| m.get(&pid)).copied()
}

/// The start time of `pid` (`/proc/<pid>/stat` field 22), honouring the seam.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    if let Some(v) = overridden(pid) {
        return v;
    }
    let me = self_identity();
    if pid == me.pid {
        // Our own start time never changes: no /proc read on the hot path.
        return me.start_time;
    }
    real_start_time(pid)
}

/// The start time recorded in payloads we write for ourselves.
pub fn own_start_time() -> Option<u64> {
    proc_start_time(self_identity().pid)
}

fn real_start_time(pid: u32) -> Option<u64> {
    if let Some(t) = crate::sys::start_time(pid) {
        return Some(t);
    }
    parse_stat(&read_stat(pid)?).map(|s| s.start_time)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: u8,
    pub start_time: u64,
}

fn read_stat(pid: u32) -> Option<Vec<u8>> {
    crate::sys::proc_stat(pid)
}

/// Parse the state (field 3) and start time (field 22) of a `/proc/<pid>/stat`
/// line. The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`.
pub fn parse_stat(line: &[u8]) -> Option<ProcStat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // fields after the state are 4..; field 22 is the 19th after the state.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
}

/// Whether `pid` names a live process. Zombies (`Z`) and dead tasks (`X`) are
/// dead; `EPERM` from `kill(pid, 0)` means a live process of another user.
pub fn liveness(pid: u32) -> Liveness {
    if pid == 0 || pid > i32::MAX as u32 {
        return Liveness::Dead;
    }
    if !crate::sys::process_exists(pid) {
        return Liveness::Dead;
    }
    if let Some(stat) = read_stat(pid).as_deref().and_then(parse_stat) {
        if stat.state == b'Z' || stat.state == b'X' || stat.state == b'x' {
            return Liveness::Dead;
        }
    }
    Liveness::Alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 100";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.start_time, 424242);
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (x) S 1 2").is_none());
    }

    #[test]
    fn self_is_alive_and_has_identity() {
        let me = self_identity();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(liveness(me.pid), Liveness::Alive);
        assert_eq!(liveness(0), Liveness::Dead);
        if cfg!(target_os = "linux") {
            assert!(me.start_time.is_some());
            assert!(me.boot_id.is_some());
        }
    }

    #[test]
    fn reaped_child_is_dead_and_zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it exits.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(liveness(pid), Liveness::Dead, "zombie must count as dead");
        child.wait().unwrap();
    }

    #[test]
    fn override_seam() {
        let pid = 999_999;
        set_start_time_override(pid, Some(7), false);
        assert_eq!(proc_start_time(pid), Some(7));
        set_start_time_override(pid, None, true);
        assert_eq!(proc_start_time(pid), None);
    }
}
