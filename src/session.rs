//! Acquiring a session's lock by its resolved path: normalize it (see
//! `paths`), then acquire in the registry. When the open of the lock file
//! fails with `ENOENT`, the cached real directory may have been removed or
//! renamed away since it was cached: it is forgotten and the path normalized
//! once more (which recreates the directory), and the acquire is tried again.

use crate::oserror::OsError;
use crate::paths::{self, SessionPaths};
use crate::registry::{self, AcquireOutcome, AcquireRequest, CtxId, ThreadId};

/// What an acquire asks for besides the path.
#[derive(Debug, Clone)]
pub struct Settings {
    pub owner: Option<String>,
    pub allow_reentrant: bool,
    /// `None`: never force-released.
    pub max_hold_ms: Option<u64>,
    pub stale_ms: u64,
}

/// Acquire (or queue for) the session at `resolved` for context `ctx` on
/// Node environment `thread`. The paths are the normalized ones, or
/// [`paths::unresolved`] when normalizing failed.
pub fn acquire(
    ctx: CtxId,
    thread: ThreadId,
    resolved: &str,
    settings: Settings,
) -> (SessionPaths, Result<AcquireOutcome, OsError>) {
    let mut retried = false;
    loop {
        let p = match paths::normalize(resolved) {
            Ok(p) => p,
            Err(e) => return (paths::unresolved(resolved), Err(e)),
        };
        let req = AcquireRequest {
            key: p.key.clone(),
            lock_path: p.lock_path.clone(),
            ctx,
            thread,
            owner: settings.owner.clone(),
            allow_reentrant: settings.allow_reentrant,
            max_hold_ms: settings.max_hold_ms,
            stale_ms: settings.stale_ms,
        };
        match registry::global().acquire(req) {
            Err(e) if e.code == "ENOENT" && !retried => {
                retried = true;
                paths::forget(resolved);
            }
            outcome => return (p, outcome),
        }
    }
}
