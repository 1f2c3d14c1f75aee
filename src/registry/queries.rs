//! Queries: whether a lease is held (in memory, by name on disk, or with its
//! token on disk), the holder of a key, every holder, and counts.

use super::{Holder, HolderInfo, Inner, KeyState, Registry};

/// The holder of `lease_id` when its lock path still names its file (one
/// `lstat`); else `gone` when not held, or why the name is not ours.
fn named_holder<'a>(
    inner: &'a Inner,
    lease_id: u64,
    gone: &'static str,
) -> Result<&'a Holder, &'static str> {
    let key = inner.leases.get(&lease_id).ok_or(gone)?;
    let ks = inner.keys.get(key).ok_or(gone)?;
    let h = ks.holder.as_ref().ok_or(gone)?;
    if !h.file.still_named_by(&ks.lock_path) {
        return Err("lock file deleted or replaced");
    }
    Ok(h)
}

impl Registry {
    /// Is the lease still held (in this process's view)?
    pub fn lease_held(&self, lease_id: u64) -> bool {
        self.lock().leases.contains_key(&lease_id)
    }

    /// Is the lease still held, and does the lock path still name its file
    /// (one `lstat`)? `Err` with the reason otherwise.
    pub fn lease_owned(&self, lease_id: u64) -> Result<(), &'static str> {
        let inner = self.lock();
        named_holder(&inner, lease_id, "no longer held").map(|_| ())
    }

    /// Check a lease against the disk: `Ok` if held and the path still names
    /// our file with our token; otherwise the reason.
    pub fn lease_current(&self, lease_id: u64) -> Result<(), &'static str> {
        let inner = self.lock();
        let h = named_holder(&inner, lease_id, "released")?;
        let p = h.file.read_payload();
        if p.fencing_token.as_deref() != Some(&*h.token) {
            return Err("fencing token changed");
        }
        Ok(())
    }

    /// The in-process holder of `key`, if any.
    pub fn holder_of(&self, key: &str) -> Option<HolderInfo> {
        let inner = self.lock();
        let ks = inner.keys.get(key)?;
        ks.holder.as_ref().map(|h| info(ks, h))
    }

    /// Every lock held in this process.
    pub fn list(&self) -> Vec<HolderInfo> {
        let inner = self.lock();
        let mut v: Vec<HolderInfo> = inner
            .keys
            .values()
            .filter_map(|ks| ks.holder.as_ref().map(|h| info(ks, h)))
            .collect();
        v.sort_by(|a, b| a.lock_path.cmp(&b.lock_path));
        v
    }

    /// Counts for diagnostics and tests: (keys, holders, waiters).
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let holders = inner.keys.values().filter(|k| k.holder.is_some()).count();
        let waiters = inner.keys.values().map(|k| k.queue.len()).sum();
        (inner.keys.len(), holders, waiters)
    }

    /// The contexts registered and not yet torn down (tests).
    pub fn contexts(&self) -> usize {
        self.lock().ctxs.len()
    }
}

fn info(ks: &KeyState, h: &Holder) -> HolderInfo {
    HolderInfo {
        lock_path: ks.lock_path.to_string(),
        acquired_at_ms: h.acquired_at_ms,
        max_hold_ms: h.max_hold_ms,
        reentrant_count: h.leases.len() as u32,
        owner: h.owner.clone(),
        thread: h.thread,
        token: h.token.to_string(),
    }
}

impl Registry {
    /// When request `request_id` is the head of a key contended at the OS
    /// level: the key (a JS thread may then watch it on its own loop).
    pub fn contending_head(&self, request_id: u64) -> Option<std::sync::Arc<str>> {
        let inner = self.lock();
        let key = inner.requests.get(&request_id)?;
        let ks = inner.keys.get(key)?;
        (ks.contending && ks.queue.front().is_some_and(|w| w.request_id == request_id))
            .then(|| key.clone())
    }
}
