//! Active-session markers: `<sessionFile>.active`, held under an OS lock for
//! the life of a tracked session. When the owner dies, however it dies, the
//! kernel frees the lock and the marker becomes recoverable evidence of a
//! session that never got its `session_end`.
//!
//! Markers reuse the lock-file primitive: created exclusively, locked,
//! payload written after locking; a marker found in place whose lock is free
//! is an orphan and is replaced. A marker whose lock is held belongs to a live
//! process and is never touched.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::lockfile::{self, Attempt, Judgement, LockFile};
use crate::oserror::OsError;

static OPEN: Mutex<Option<HashMap<u64, (String, LockFile)>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn with_open<R>(f: impl FnOnce(&mut HashMap<u64, (String, LockFile)>) -> R) -> R {
    let mut g = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// Create and lock the marker at `path` with `json` as its content.
/// `EBUSY` when a live process holds a marker at that path.
pub fn open(path: &str, json: &str) -> Result<u64, OsError> {
    let attempt = lockfile::attempt(
        Path::new(path),
        path,
        None,
        &mut |_, _| Judgement::Reclaim,
        &mut |buf| buf.push_str(json),
    )?;
    match attempt {
        Attempt::Acquired(file) => {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            with_open(|m| m.insert(id, (path.to_string(), file)));
            Ok(id)
        }
        Attempt::Busy(_) => Err(OsError::synthetic("EBUSY", "flock", path)),
    }
}

/// Rewrite an open marker's content.
pub fn update(id: u64, json: &str) -> Result<bool, OsError> {
    with_open(|m| match m.get_mut(&id) {
        Some((path, file)) => file
            .write_payload(json.as_bytes())
            .map(|_| true)
            .map_err(|e| OsError::from_io(&e, "write", path)),
        None => Ok(false),
    })
}

/// Remove an open marker (unlink if still ours, then unlock).
pub fn close(id: u64) -> bool {
    match with_open(|m| m.remove(&id)) {
        Some((path, file)) => {
            file.release(Path::new(&path));
            true
        }
        None => false,
    }
}

/// Close every open marker; returns how many.
pub fn close_all() -> usize {
    let all: Vec<(String, LockFile)> = with_open(|m| m.drain().map(|(_, v)| v).collect());
    let n = all.len();
    for (path, file) in all {
        file.release(Path::new(&path));
    }
    n
}

/// A marker whose owner is gone.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub path: String,
    pub content: String,
}

/// Find markers (`*.active`) in `dir` whose lock is free, read them, and
/// (with `remove`) remove them while holding their lock.
pub fn collect_orphans(dir: &str, remove: bool) -> Result<Vec<Orphan>, OsError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OsError::from_io(&e, "scandir", dir)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".active"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = format!("{}/{}", dir.trim_end_matches('/'), name);
        if let Some(o) = take_orphan(&path, remove) {
            out.push(o);
        }
    }
    Ok(out)
}

fn take_orphan(path: &str, remove: bool) -> Option<Orphan> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    // SAFETY: non-blocking flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None; // a live owner
    }
    let id = lockfile::FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    if !lockfile::path_names(Path::new(path), id) {
        return None;
    }
    let bytes = lockfile::read_bounded(&file);
    if bytes.len() > crate::payload::MAX_PAYLOAD_BYTES {
        return None;
    }
    let content = String::from_utf8_lossy(&bytes).into_owned();
    if remove {
        let _ = std::fs::remove_file(path);
    }
    Some(Orphan {
        path: path.to_string(),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_update_close_and_orphans() {
        let d = std::env::temp_dir().join(format!("swl-marker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("s.jsonl.active");
        let ps = p.to_str().unwrap();
        let id = open(ps, "{\"a\":1}").unwrap();
        assert_eq!(open(ps, "{}").unwrap_err().code, "EBUSY");
        assert!(update(id, "{\"a\":2}").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}");
        // Held: not an orphan.
        assert!(collect_orphans(d.to_str().unwrap(), true)
            .unwrap()
            .is_empty());
        // Simulate a dead owner: a marker file nobody locks.
        std::fs::write(d.join("dead.jsonl.active"), "{\"sessionId\":\"x\"}").unwrap();
        let o = collect_orphans(d.to_str().unwrap(), true).unwrap();
        assert_eq!(o.len(), 1);
        assert!(o[0].content.contains("\"x\""));
        assert!(!d.join("dead.jsonl.active").exists());
        assert!(close(id));
        assert!(!p.exists());
    }
}
