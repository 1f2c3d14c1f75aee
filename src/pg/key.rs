//! The session's identity in the database, the same on every host.
//!
//! Key: `<keyspace>/<path relative to sessionsRoot>` with `/` separators, so two
//! hosts that mount the shared sessions at different places agree; a session
//! file outside the root is `<keyspace>/` followed by its absolute normalized
//! path (which starts with `/`, so it never equals a relative key).
//! Lock id: FNV-1a 64 of the key, a fixed function (never std's randomized
//! hasher), identical on every host and version. Two keys that collide share
//! one advisory lock: they serialize, they never admit two holders.

use std::path::{Component, Path, PathBuf};

/// `path` made absolute and lexically normalized (`.`/`..` removed), then its
/// longest existing prefix realpath'd (so a symlinked root matches the
/// session paths the file lock normalizes the same way).
pub fn normalize_root(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let lexical = lexical_normalize(&abs);
    // Realpath the longest existing prefix, keep the rest.
    let mut prefix = lexical.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            let mut out = real;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (
            prefix.file_name().map(|n| n.to_os_string()),
            prefix.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                prefix = parent.to_path_buf();
            }
            _ => return lexical,
        }
    }
}

fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The key of a session file given as an absolute normalized path (the
/// file lock's key: realpath'd directory + base name).
pub fn session_key(keyspace: &str, root: &Path, session: &Path) -> String {
    match session.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            format!("{keyspace}/{}", parts.join("/"))
        }
        _ => format!("{keyspace}/{}", session.to_string_lossy()),
    }
}

/// The 64-bit advisory lock id of a key (FNV-1a 64, as a signed bigint).
pub fn lock_id(key: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_relative_path_same_key_whatever_the_mount_point() {
        let a = session_key(
            "openclaw",
            Path::new("/mnt/a/sessions"),
            Path::new("/mnt/a/sessions/agent1/s.jsonl"),
        );
        let b = session_key(
            "openclaw",
            Path::new("/srv/b"),
            Path::new("/srv/b/agent1/s.jsonl"),
        );
        assert_eq!(a, "openclaw/agent1/s.jsonl");
        assert_eq!(a, b);
        assert_eq!(lock_id(&a), lock_id(&b));
    }

    #[test]
    fn outside_the_root_uses_the_absolute_path() {
        let k = session_key("ks", Path::new("/srv/b"), Path::new("/tmp/x.jsonl"));
        assert_eq!(k, "ks//tmp/x.jsonl");
        // A sibling whose name starts like the root is outside it.
        let k = session_key("ks", Path::new("/srv/b"), Path::new("/srv/bb/x.jsonl"));
        assert_eq!(k, "ks//srv/bb/x.jsonl");
    }

    #[test]
    fn lock_id_is_fixed_fnv1a() {
        // Published FNV-1a 64 test vectors: "" and "a".
        assert_eq!(lock_id("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(lock_id("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(lock_id("openclaw/a"), lock_id("openclaw/b"));
    }

    #[test]
    fn root_is_normalized_lexically_past_what_exists() {
        let p = normalize_root(Path::new("/nonexistent-swl/x/../y/./z"));
        assert_eq!(p, PathBuf::from("/nonexistent-swl/y/z"));
    }
}
