//! Keeping held payloads fresh for old-module peers: `createdAt` rewritten
//! in place or swapped in whole, the file's mtime kept at the hold's start.

use super::{Refreshed, Registry, ThreadId};
use crate::acquire::render_payload;
use crate::lockfile;
use crate::oserror::OsError;

impl Registry {
    /// Keep the payloads of `thread`'s holds fresh for old-module peers:
    /// every hold whose `createdAt` was written `older_than_ms` or more before
    /// `now` gets it rewritten to `now` (same token, same everything else,
    /// swapped in whole by [`LockFile::rewrite`]), with the file's
    /// mtime kept at the hold's real start. A hold whose path no longer names
    /// its file is not written; its lease ids are returned as lost.
    pub fn refresh(&self, thread: ThreadId, now: i64, older_than_ms: i64) -> Refreshed {
        let mut inner = self.lock();
        let mut out = Refreshed::default();
        let mut buf = String::new();
        for ks in inner.keys.values_mut() {
            let lock_path = ks.lock_path.clone();
            let Some(h) = ks.holder.as_mut().filter(|h| h.thread == thread) else {
                continue;
            };
            out.holds += 1;
            if now - h.file.created_ms < older_than_ms {
                continue;
            }
            if !h.file.still_named_by(&lock_path) {
                // Never swap another holder's file out, even for a moment.
                out.lost
                    .extend(h.leases.iter().map(|&l| (l, lock_path.clone())));
                continue;
            }
            render_payload(&mut buf, now, h.max_hold_ms, &h.token);
            match h
                .file
                .rewrite(&lock_path, buf.as_bytes(), Some(h.acquired_at_ms), false)
            {
                Ok(lockfile::Rewrite::Done) => {
                    h.file.created_ms = now;
                    out.refreshed += 1;
                }
                Ok(lockfile::Rewrite::Lost) => {
                    out.lost
                        .extend(h.leases.iter().map(|&l| (l, lock_path.clone())));
                }
                Err(e) => out.errors.push(OsError::from_io(&e, "write", &lock_path)),
            }
        }
        out
    }
}
