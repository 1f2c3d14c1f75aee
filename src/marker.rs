//! Active-session markers: `<sessionFile>.active`, held under an OS lock for
//! the life of a tracked session. When the owner dies, however it dies, the
//! kernel frees the lock and the marker becomes recoverable evidence of a
//! session that never got its `session_end`.
//!
//! Markers reuse the lock-file primitive (created exclusively, locked, with
//! their payload). A marker found in place whose lock is free is an orphan:
//! it is taken over, and its content handed back so that its session still
//! gets its `session_end` (exactly once: it is removed under its lock, as
//! recovery does). A marker whose lock is held belongs to a live process and
//! is never touched; a file there that is not a marker is never overwritten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::lockfile::{self, Attempt, Judgement, LockFile};
use crate::oserror::OsError;

/// Open markers: id -> (path, owning Node environment (thread), file).
type OpenMarkers = HashMap<u64, (String, u64, LockFile)>;
static OPEN: Mutex<Option<OpenMarkers>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn with_open<R>(f: impl FnOnce(&mut OpenMarkers) -> R) -> R {
    let mut g = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// What [`open`] did.
#[derive(Debug)]
pub struct Opened {
    /// The open marker's id, or why there is none.
    pub id: Result<u64, OsError>,
    /// The content of a dead owner's marker found at the path and removed
    /// (under its lock) before ours was written: that session's
    /// `session_end` is now the caller's to emit, exactly once, as recovery
    /// would have. Set even when `id` is an error.
    pub recovered: Option<String>,
}

/// Create and lock the marker at `path` with `json` as its content, owned by
/// the Node environment `thread`.
///
/// A file already at `path` is looked at under its OS lock: one of our
/// markers whose lock is free (its owner died) is taken over (removed, its
/// content returned in [`Opened::recovered`]); anything else (another tool's
/// file, garbage, an empty file) is never overwritten and gives `EEXIST`.
/// `EBUSY` when a live process holds a marker at that path.
pub fn open(path: &str, json: &str, thread: u64) -> Opened {
    let mut recovered = None;
    let id = open_inner(path, json, thread, &mut recovered);
    Opened { id, recovered }
}

fn open_inner(
    path: &str,
    json: &str,
    thread: u64,
    recovered: &mut Option<String>,
) -> Result<u64, OsError> {
    // An inspector (cleanStaleLockFiles, recovery, the CLI) may hold an
    // orphaned marker's lock for a moment: retry briefly before saying EBUSY.
    for round in 0..200 {
        if let Some(probe) = lockfile::Probe::open(path)? {
            if probe.try_lock(path)? {
                let bytes = probe.read();
                if bytes.len() > crate::payload::MAX_PAYLOAD_BYTES || !is_marker(&bytes) {
                    return Err(OsError::synthetic("EEXIST", "open", path));
                }
                if probe.remove_if_named(path)? && recovered.is_none() {
                    *recovered = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                continue;
            }
        } else {
            // Nothing there: create. A file that appears meanwhile is never
            // judged here (`Wait`): the next round looks at it as above.
            let a = lockfile::attempt(path, None, &mut |_, _| Judgement::Wait, &mut |buf| {
                buf.push_str(json)
            })?;
            if let Attempt::Acquired(file) = a {
                let id = NEXT.fetch_add(1, Ordering::Relaxed);
                with_open(|m| m.insert(id, (path.to_string(), thread, file)));
                return Ok(id);
            }
            if round == 0 {
                continue;
            }
        }
        if round >= 100 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
    Err(OsError::synthetic("EBUSY", "flock", path))
}

/// Rewrite an open marker's content.
pub fn update(id: u64, json: &str) -> Result<bool, OsError> {
    with_open(|m| match m.get_mut(&id) {
        Some((path, _, file)) => file
            .write_payload(json.as_bytes())
            .map(|_| true)
            .map_err(|e| OsError::from_io(&e, "write", path)),
        None => Ok(false),
    })
}

/// Remove an open marker (unlink if still ours, then unlock).
pub fn close(id: u64) -> bool {
    match with_open(|m| m.remove(&id)) {
        Some((path, _, file)) => {
            file.release(&path);
            true
        }
        None => false,
    }
}

/// A Node environment is torn down without running JS (a worker's
/// `terminate()`): unlock its markers but leave them in place, so that
/// `recoverOrphanedSessions` reports those sessions at once, exactly as if
/// the owner had died.
pub fn abandon_thread(thread: u64) -> usize {
    let gone: Vec<LockFile> = with_open(|m| {
        let ids: Vec<u64> = m
            .iter()
            .filter(|(_, v)| v.1 == thread)
            .map(|(k, _)| *k)
            .collect();
        ids.into_iter()
            .filter_map(|id| m.remove(&id).map(|v| v.2))
            .collect()
    });
    let n = gone.len();
    for file in gone {
        file.abandon();
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
        let path = format!(
            "{}{}{}",
            dir.trim_end_matches(crate::sys::SEPARATORS),
            crate::sys::SEPARATOR,
            name
        );
        if let Some(o) = take_orphan(&path, remove) {
            out.push(o);
        }
    }
    Ok(out)
}

fn take_orphan(path: &str, remove: bool) -> Option<Orphan> {
    let probe = lockfile::Probe::open(path).ok()??;
    if !probe.try_lock(path).ok()? {
        return None; // a live owner
    }
    if !lockfile::path_names(path, probe.id) {
        // Swapped out by its owner's rewrite (which frees the old file's
        // lock) while we looked: the name is a live owner's newer file.
        return None;
    }
    let bytes = probe.read();
    if bytes.len() > crate::payload::MAX_PAYLOAD_BYTES || !is_marker(&bytes) {
        // Not one of our markers (another tool's file, or garbage): leave it.
        return None;
    }
    if remove && !probe.remove_if_named(path).ok()? {
        // Replaced or taken meanwhile: not ours to report.
        return None;
    }
    Some(Orphan {
        path: path.to_string(),
        content: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A marker we wrote: a JSON object with a string `sessionId` and
/// `"lock": "os"`.
fn is_marker(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(o)) => {
            o.get("sessionId").is_some_and(|v| v.is_string())
                && o.get("lock").and_then(|v| v.as_str()) == Some("os")
        }
        _ => false,
    }
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
        let id = open(ps, "{\"a\":1}", 1).id.unwrap();
        assert_eq!(open(ps, "{}", 1).id.unwrap_err().code, "EBUSY");
        assert!(update(id, "{\"a\":2}").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}");
        // Held: not an orphan.
        assert!(collect_orphans(d.to_str().unwrap(), true)
            .unwrap()
            .is_empty());
        // Simulate a dead owner: a marker file nobody locks.
        std::fs::write(
            d.join("dead.jsonl.active"),
            "{\"sessionId\":\"x\",\"lock\":\"os\"}",
        )
        .unwrap();
        std::fs::write(d.join("other.active"), "not ours").unwrap();
        let o = collect_orphans(d.to_str().unwrap(), true).unwrap();
        assert_eq!(o.len(), 1);
        assert!(o[0].content.contains("\"x\""));
        assert!(!d.join("dead.jsonl.active").exists());
        assert!(
            d.join("other.active").exists(),
            "foreign files are left alone"
        );
        let id2 = open(d.join("w.jsonl.active").to_str().unwrap(), "{}", 7)
            .id
            .unwrap();
        assert_eq!(abandon_thread(7), 1);
        assert!(!close(id2));
        assert!(d.join("w.jsonl.active").exists(), "abandoned, not removed");
        assert!(close(id));
        assert!(!p.exists());
    }

    #[test]
    fn open_takes_over_an_orphan_and_never_overwrites_a_stranger() {
        let d = std::env::temp_dir().join(format!("swl-marker-take-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // A dead owner's marker (nobody locks it): taken over, content handed back.
        let orphan = d.join("o.jsonl.active");
        let dead = "{\"sessionId\":\"dead\",\"lock\":\"os\"}";
        std::fs::write(&orphan, dead).unwrap();
        let o = open(orphan.to_str().unwrap(), "{\"sessionId\":\"new\"}", 1);
        assert_eq!(o.recovered.as_deref(), Some(dead));
        let id = o.id.unwrap();
        assert_eq!(
            std::fs::read_to_string(&orphan).unwrap(),
            "{\"sessionId\":\"new\"}"
        );
        // Ours now, and live: a second open is busy and recovers nothing.
        let again = open(orphan.to_str().unwrap(), "{}", 1);
        assert_eq!(again.id.unwrap_err().code, "EBUSY");
        assert!(again.recovered.is_none());
        assert!(close(id));
        // Not a marker (foreign text, JSON without "lock": "os", empty): EEXIST, untouched.
        for (name, text) in [
            ("f.active", "someone else's file"),
            ("j.active", "{\"sessionId\":\"x\"}"),
            ("e.active", ""),
        ] {
            let p = d.join(name);
            std::fs::write(&p, text).unwrap();
            let r = open(p.to_str().unwrap(), "{}", 1);
            assert_eq!(r.id.unwrap_err().code, "EEXIST", "{name}");
            assert!(r.recovered.is_none());
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "{name}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
