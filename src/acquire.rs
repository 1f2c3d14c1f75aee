//! The acquisition recipe: one OS-level attempt at a session's lock file for
//! a new holder, as both the registry (first attempt, in-process advance)
//! and the waiting thread (every retry) make it.
//!
//! An attempt draws a fresh fencing token, renders our payload
//! (`docs/spec.md`, "The lock file") with it, and judges a file found in
//! place whose OS lock it obtained: ours (`"lock": "os"`) is reclaimed at
//! once, since its writer held it only by that lock; an old-module file is
//! reclaimed only when [`staleness`] says so, and otherwise waited for.
//!
//! Guarantees: every token is unique in this process and has the same
//! length (in-place rewrites never shrink). Not guaranteed: that the
//! attempt acquires; a busy lock comes back as [`Attempt::Busy`] with the
//! descriptor to keep while waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::identity;
use crate::lockfile::{self, Attempt, Judgement, WaitFile};
use crate::oserror::OsError;
use crate::payload::{OwnParts, ParsedPayload};
use crate::staleness;

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Fencing tokens: 64 random bits fixed per process, then a counter, as 24
/// hex digits (fixed length, so in-place payload rewrites never shrink).
pub fn new_token() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_i64(now_ms());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Hex digits by hand (`format!` cost a third of rendering a payload).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 24];
    for (i, b) in buf[..16].iter_mut().enumerate() {
        *b = HEX[((seed >> (60 - 4 * i)) & 0xf) as usize];
    }
    let n = n as u32;
    for (i, b) in buf[16..].iter_mut().enumerate() {
        *b = HEX[((n >> (28 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(&buf).expect("hex digits").into()
}

/// Render our payload for a new OS-level holder.
/// The process's pid, host name and boot id are rendered once
/// ([`OwnParts`]); the start time is read each time (a test seam overrides it).
pub fn render_payload(out: &mut String, created_at_ms: i64, max_hold_ms: Option<u64>, token: &str) {
    static PARTS: OnceLock<OwnParts> = OnceLock::new();
    let parts = PARTS.get_or_init(|| {
        let me = identity::self_identity();
        OwnParts::new(me.pid, &me.hostname, me.boot_id.as_deref())
    });
    parts.render(
        out,
        created_at_ms,
        identity::own_start_time(),
        max_hold_ms,
        token,
    );
}

/// What to do with a file found in place whose OS lock we obtained.
pub fn judge_found(p: &ParsedPayload, mtime_ms: i64, stale_ms: u64) -> Judgement {
    if p.os_lock {
        // Its writer held it by the OS lock, which is now ours: gone.
        return Judgement::Reclaim;
    }
    if staleness::judge(p, mtime_ms, now_ms(), stale_ms, false).stale {
        Judgement::Reclaim
    } else {
        Judgement::Wait
    }
}

/// What an acquired file's payload carries: its token, its `createdAt`, and
/// the `maxHoldMs` it was rendered with.
#[derive(Debug, Clone)]
pub struct Written {
    pub token: Arc<str>,
    pub at_ms: i64,
    pub max_hold_ms: Option<u64>,
}

/// Attempt the OS lock at `lock_path` once for a new holder with these
/// settings. `wait` is the descriptor kept from an earlier busy attempt.
/// Returns the attempt and what an acquired file's payload carries.
pub fn os_attempt(
    lock_path: &str,
    wait: Option<WaitFile>,
    stale_ms: u64,
    max_hold_ms: Option<u64>,
) -> Result<(Attempt, Written), OsError> {
    let token = new_token();
    let at = now_ms();
    let attempt = lockfile::attempt(
        lock_path,
        wait,
        &mut |p, mtime| judge_found(p, mtime, stale_ms),
        &mut |buf| render_payload(buf, at, max_hold_ms, &token),
    )?;
    let written = Written {
        token,
        at_ms: at,
        max_hold_ms,
    };
    Ok((attempt, written))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_24_hex_digits_and_unique() {
        let a = super::new_token();
        let b = super::new_token();
        assert_eq!(a.len(), 24);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        // Same seed, consecutive counters: as `format!("{seed:016x}{n:08x}")`.
        assert_eq!(a[..16], b[..16]);
        let na = u32::from_str_radix(&a[16..], 16).unwrap();
        let nb = u32::from_str_radix(&b[16..], 16).unwrap();
        assert!(nb > na);
        assert_eq!(format!("{na:08x}"), a[16..]);
    }
}
