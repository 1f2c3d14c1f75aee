//! Session path normalization: `<realpath(dir)>/<basename>`, with the
//! directory created first (`mkdir -p`), exactly as the old module keyed its
//! locks. Two paths through a symlinked directory give one key.
//!
//! The directory's realpath is cached, and every use re-validates the entry:
//! the cached real path, looked up without following a final symlink, must
//! still be a directory with the inode it had when cached, and where the
//! given directory differs from its real path (a symlink on the way), the
//! given directory must still resolve to that same inode. One `lstat` in the
//! common case (a sessions directory without symlinks), two otherwise, instead
//! of a `mkdir` and a full `realpath`. A directory removed, replaced by
//! another directory or by a symlink, or a re-pointed symlink, is never served
//! from the cache (see `__test__/paths.test.mjs`).
//!
//! Not detected: an *ancestor* of a real directory moved away and replaced by
//! a symlink to its new place. The lock then still lands in the same directory
//! inode (exclusion holds, across processes too); only the path string is the
//! old spelling. A directory removed between this check and the open of the
//! lock file makes the open fail with `ENOENT`; the caller then calls
//! [`forget`] and normalizes again, which recreates it (see
//! `session::acquire`).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

use crate::oserror::OsError;
use crate::sys::{self, FileId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPaths {
    /// `<realdir>/<basename>`: the registry key.
    pub key: std::sync::Arc<str>,
    /// `<key>.lock`.
    pub lock_path: std::sync::Arc<str>,
}

struct CacheEntry {
    real: String,
    id: FileId,
}

type Cache = HashMap<String, CacheEntry, BuildHasherDefault<crate::registry::FastHash>>;

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
const CACHE_LIMIT: usize = 4096;

fn stat_id(p: &str) -> Option<FileId> {
    sys::dir_id(p, true)
}

/// Like `stat_id`, without following a final symlink.
fn lstat_id(p: &str) -> Option<FileId> {
    sys::dir_id(p, false)
}

/// Split an absolute, already `path.resolve`d path into (dir, base). A
/// root keeps its separator (`/`, and on Windows `C:\`).
fn split(resolved: &str) -> (&str, &str) {
    // Separators are ASCII: a byte scan (`rfind` with a set of chars walks
    // the string char by char).
    let sep = resolved
        .bytes()
        .rposition(|b| b.is_ascii() && sys::SEPARATORS.contains(&(b as char)));
    match sep {
        Some(0) => (&resolved[..1], &resolved[1..]),
        Some(2) if sys::DRIVE_ROOTS && resolved.as_bytes()[1] == b':' => {
            (&resolved[..3], &resolved[3..])
        }
        Some(i) => (&resolved[..i], &resolved[i + 1..]),
        None => (".", resolved),
    }
}

fn join(dir: &str, base: &str) -> String {
    let mut s = String::with_capacity(dir.len() + base.len() + 1);
    s.push_str(dir);
    if !dir.ends_with(sys::SEPARATORS) {
        s.push(sys::SEPARATOR);
    }
    s.push_str(base);
    s
}

/// The cached real path of `dir`, if there is one and it still holds: the
/// real path still names the same directory, and so does `dir` itself.
fn cached_real_dir(dir: &str) -> Option<String> {
    let (real, id) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|c| c.get(dir))
        .map(|e| (e.real.clone(), e.id))?;
    (lstat_id(&real) == Some(id) && (real == dir || stat_id(dir) == Some(id))).then_some(real)
}

/// Resolve the directory of a session file to its real path, creating it.
pub fn real_dir(dir: &str) -> Result<String, OsError> {
    if let Some(real) = cached_real_dir(dir) {
        return Ok(real);
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        let err = OsError::from_io(&e, "mkdir", dir);
        // Windows reports a file on the way (`a/file/sub`) as "already
        // exists"; Node and POSIX say what it is: not a directory.
        if err.code == "EEXIST" {
            OsError::synthetic("ENOTDIR", "mkdir", dir)
        } else {
            err
        }
    })?;
    let real = match std::fs::canonicalize(dir) {
        Ok(p) => sys::display_path(p),
        Err(_) => dir.to_string(),
    };
    if let Some(id) = lstat_id(&real) {
        let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = guard.get_or_insert_with(Cache::default);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(
            dir.to_string(),
            CacheEntry {
                real: real.clone(),
                id,
            },
        );
    }
    Ok(real)
}

/// `path.resolve` of an absolute POSIX path (one starting with `/`) without
/// leaving native code: empty and `.` segments dropped, `..` taking back the
/// segment before it (never above the root), no trailing separator. Any
/// other path is returned as it is (the caller resolved it already, as it
/// always does on Windows and for relative paths). Borrowed when the path is
/// normal already, which is the common case.
pub fn resolve_absolute(p: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if sys::DRIVE_ROOTS || !p.starts_with('/') {
        return Cow::Borrowed(p);
    }
    if is_normal_absolute(p.as_bytes()) {
        return Cow::Borrowed(p);
    }
    let mut segs: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    if segs.is_empty() {
        return Cow::Owned("/".to_string());
    }
    let mut out = String::with_capacity(p.len());
    for s in segs {
        out.push('/');
        out.push_str(s);
    }
    Cow::Owned(out)
}

/// Whether absolute `p` (starting with `/`) has no empty, `.` or `..`
/// segment and no trailing separator: a byte scan (splitting on a `char`
/// pattern cost about a thousand instructions per acquire).
fn is_normal_absolute(p: &[u8]) -> bool {
    let mut start = 1;
    for i in 1..=p.len() {
        if i == p.len() || p[i] == b'/' {
            match &p[start..i] {
                b"" | b"." | b".." => return false,
                _ => start = i + 1,
            }
        }
    }
    true
}

/// What an error reports for a session whose directory could not be
/// resolved: the resolved path itself as key, and `<resolved>.lock`.
pub fn unresolved(resolved: &str) -> SessionPaths {
    SessionPaths {
        key: resolved.into(),
        lock_path: format!("{resolved}.lock").into(),
    }
}

/// Normalize an absolute session path (the JS side has applied
/// `path.resolve`).
pub fn normalize(resolved: &str) -> Result<SessionPaths, OsError> {
    let (dir, base) = split(resolved);
    let real = real_dir(dir)?;
    // Shared strings: the registry keeps these very ones (no copies).
    let mut lock_path = join(&real, base);
    let key_len = lock_path.len();
    lock_path.push_str(".lock");
    Ok(SessionPaths {
        key: lock_path[..key_len].into(),
        lock_path: lock_path.into(),
    })
}

/// The key `resolved` would normalize to, without creating or changing
/// anything on disk (for `release(path)`, which must not touch the disk when
/// nothing is held). A cached directory is used when it still validates;
/// otherwise the directory is realpath'd if it exists, and a directory that
/// does not exist (never created, or removed while a lock was held in it)
/// gives the resolved path itself, which is the key any lock taken there had
/// when the directory had no symlink on the way.
pub fn existing_key(resolved: &str) -> String {
    let (dir, base) = split(resolved);
    if let Some(real) = cached_real_dir(dir) {
        return join(&real, base);
    }
    match std::fs::canonicalize(dir) {
        Ok(p) => join(&sys::display_path(p), base),
        Err(_) => resolved.to_string(),
    }
}

/// Forget the cached entry for the directory of `resolved` (after an open
/// there failed with `ENOENT`).
pub fn forget(resolved: &str) {
    let (dir, _) = split(resolved);
    if let Some(c) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        c.remove(dir);
    }
}

/// Forget every cached directory (tests, and `reset...ForTest`).
pub fn clear_cache() {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// `true` when `p` is a directory path known to the cache.
#[cfg(test)]
fn is_cached(p: &std::path::Path) -> bool {
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|c| c.contains_key(p.to_string_lossy().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_absolute_matches_path_resolve() {
        // Expected values: node -p 'path.posix.resolve(p)' for each.
        for (p, want) in [
            ("/a/b/s.jsonl", "/a/b/s.jsonl"),
            ("/", "/"),
            ("//", "/"),
            ("/a//b/./s.jsonl", "/a/b/s.jsonl"),
            ("/a/b/../s.jsonl", "/a/s.jsonl"),
            ("/../../s", "/s"),
            ("/a/b/", "/a/b"),
            ("/a/b/.", "/a/b"),
            ("/a/b/..", "/a"),
            ("/a/..", "/"),
            ("/a/...b/s", "/a/...b/s"),
            ("/a/.b/..c", "/a/.b/..c"),
            ("//a/b", "/a/b"),
        ] {
            assert_eq!(resolve_absolute(p), want, "{p}");
        }
        assert!(matches!(
            resolve_absolute("/a/b/s.jsonl"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn symlinked_dirs_share_a_key_and_cache_revalidates() {
        let root = std::env::temp_dir().join(format!("swl-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = root.join("a");
        let b = root.join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let link = root.join("link");
        symlink(&a, &link).unwrap();
        let via_link = normalize(link.join("s.jsonl").to_str().unwrap()).unwrap();
        let direct = normalize(a.join("s.jsonl").to_str().unwrap()).unwrap();
        assert_eq!(via_link.key, direct.key);
        assert!(is_cached(&link));
        // Re-point the symlink: the cache must not answer with `a`.
        std::fs::remove_file(&link).unwrap();
        symlink(&b, &link).unwrap();
        let again = normalize(link.join("s.jsonl").to_str().unwrap()).unwrap();
        assert_eq!(
            &*again.key,
            std::fs::canonicalize(&b)
                .unwrap()
                .join("s.jsonl")
                .to_str()
                .unwrap()
        );
        // Creates missing directories.
        let deep = root.join("x/y/z/s.jsonl");
        let n = normalize(deep.to_str().unwrap()).unwrap();
        assert!(n.lock_path.ends_with("/x/y/z/s.jsonl.lock"));
        assert!(root.join("x/y/z").is_dir());
        // existing_key never creates anything.
        let missing = root.join("m/n/s.jsonl");
        assert_eq!(
            existing_key(missing.to_str().unwrap()),
            missing.to_str().unwrap()
        );
        assert!(!root.join("m").exists());
        assert_eq!(
            existing_key(link.join("s.jsonl").to_str().unwrap()),
            &*again.key
        );
    }
}
