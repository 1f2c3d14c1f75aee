//! The lock file primitive on a real file system.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt};

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("swl-lf-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn render(s: &mut String) {
    s.push_str("{\"pid\": 1, \"lock\": \"os\"}");
}

fn go(path: &Path, wait: Option<WaitFile>) -> Result<Attempt, OsError> {
    attempt(
        s(path),
        wait,
        &mut |p, _| {
            if p.os_lock {
                Judgement::Reclaim
            } else {
                Judgement::Wait
            }
        },
        &mut render,
    )
}

/// A first attempt at `path` that acquires, then a second that finds it
/// busy: the holder and the waiter's kept descriptor.
fn held_and_waiting(path: &Path) -> (LockFile, WaitFile) {
    let Attempt::Acquired(a) = go(path, None).unwrap() else {
        panic!("first must acquire")
    };
    let Attempt::Busy(w) = go(path, None).unwrap() else {
        panic!("second must be busy")
    };
    (a, w)
}

#[test]
fn excludes_second_descriptor_and_releases() {
    let d = tmpdir("excl");
    let p = d.join("a.jsonl.lock");
    let (a, w) = held_and_waiting(&p);
    assert!(!w.legacy);
    a.release(s(&p));
    assert!(!p.exists());
    // The kept descriptor names an unlinked inode: the retry re-opens.
    let Attempt::Acquired(b) = go(&p, Some(w)).unwrap() else {
        panic!("must acquire after release")
    };
    b.release(s(&p));
    assert!(!p.exists());
}

#[test]
fn a_waiter_links_the_file_it_built_while_waiting() {
    if !sys::UNNAMED_FILES {
        return;
    }
    let d = tmpdir("prepared");
    let p = d.join("a.jsonl.lock");
    let (a, w) = held_and_waiting(&p);
    // The create that found the name taken kept its file (unnamed, locked,
    // written) for the wait, and leaves nothing in the directory.
    let built = w
        .prepared
        .as_ref()
        .expect("a file built while waiting")
        .id();
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    // A retry while the holder still holds keeps it for the next one.
    let Attempt::Busy(w) = go(&p, Some(w)).unwrap() else {
        panic!("still busy")
    };
    assert_eq!(w.prepared.as_ref().map(|p| p.id()), Some(built));
    a.release(s(&p));
    let Attempt::Acquired(b) = go(&p, Some(w)).unwrap() else {
        panic!("must acquire after release")
    };
    assert_eq!(b.id, built);
    assert_eq!(sys::path_id(&p), Some(built));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"{\"pid\": 1, \"lock\": \"os\"}"
    );
    b.release(s(&p));
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
}

#[test]
fn a_wait_follows_a_replacement_of_a_file_that_keeps_another_name() {
    // The kept descriptor's file still has a name (a hard link elsewhere)
    // but the path names another file now, held by someone else: the
    // retry waits on that one, and gets it when it is released.
    let d = tmpdir("replaced");
    let p = d.join("a.jsonl.lock");
    let (a, w) = held_and_waiting(&p);
    let first = w.id;
    std::fs::hard_link(&p, d.join("other-name")).unwrap();
    let x = d.join("x");
    std::fs::write(&x, b"{\"pid\": 2, \"lock\": \"os\"}").unwrap();
    let xf = File::open(&x).unwrap();
    assert!(sys::try_lock_exclusive(&xf).unwrap());
    std::fs::rename(&x, &p).unwrap();
    let Attempt::Busy(w) = go(&p, Some(w)).unwrap() else {
        panic!("the replacement is held")
    };
    assert_ne!(w.id, first);
    assert_eq!(sys::path_id(&p), Some(w.id));
    // The first holder lets go (its file is no longer at the path, so it
    // leaves the path alone); the replacement's holder lets go too.
    a.release(s(&p));
    assert!(p.exists());
    drop(xf);
    let Attempt::Acquired(b) = go(&p, Some(w)).unwrap() else {
        panic!("must acquire once the replacement is free")
    };
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"{\"pid\": 1, \"lock\": \"os\"}"
    );
    b.release(s(&p));
}

#[test]
fn abandoned_os_file_is_reclaimed() {
    let d = tmpdir("abandon");
    let p = d.join("a.jsonl.lock");
    let Attempt::Acquired(a) = go(&p, None).unwrap() else {
        panic!()
    };
    a.abandon();
    std::fs::write(&p, "{\"pid\": 1, \"lock\": \"os\", \"x\": 1}").unwrap();
    let Attempt::Acquired(b) = go(&p, None).unwrap() else {
        panic!()
    };
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"{\"pid\": 1, \"lock\": \"os\"}"
    );
    b.release(s(&p));
}

#[test]
fn refuses_non_regular_files() {
    let d = tmpdir("hostile");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let l = d.join("s.jsonl.lock");
    symlink(&victim, &l).unwrap();
    assert_eq!(go(&l, None).unwrap_err().code, "ELOOP");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(&l).unwrap();
    std::fs::create_dir(&l).unwrap();
    assert_eq!(go(&l, None).unwrap_err().code, "EISDIR");
    std::fs::remove_dir(&l).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&l)
        .status()
        .unwrap();
    assert!(made.success());
    let e = go(&l, None).unwrap_err();
    assert_eq!((e.code, e.syscall), ("EINVAL", "open"));
    assert!(std::fs::symlink_metadata(&l).unwrap().file_type().is_fifo());
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn legacy_file_is_waited_and_never_written() {
    let d = tmpdir("legacy");
    let p = d.join("a.jsonl.lock");
    std::fs::write(&p, "{\"pid\": 1, \"createdAt\": \"x\"}").unwrap();
    let Attempt::Busy(w) = go(&p, None).unwrap() else {
        panic!()
    };
    assert!(w.legacy);
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "{\"pid\": 1, \"createdAt\": \"x\"}"
    );
}

#[test]
fn mix_safe_only_when_hex_digits_change() {
    // Word-wise comparison: a differing byte in any position of any word
    // (and in a short tail) is still judged.
    let base: Vec<u8> = b"{\"fencingToken\": \"0123456789abcdef01234567\", \"x\": 7}".to_vec();
    for i in 0..base.len() {
        let mut other = base.clone();
        other[i] = if base[i] == b'7' { b'8' } else { b'Z' };
        let want = base[i].is_ascii_hexdigit()
            && !base[i].is_ascii_uppercase()
            && other[i].is_ascii_hexdigit()
            && !other[i].is_ascii_uppercase();
        assert_eq!(mix_safe(&base, &other), want, "byte {i}");
    }
    assert!(mix_safe(
        b"{\"t\": \"00ab\", \"m\": 300}",
        b"{\"t\": \"ff01\", \"m\": 900}"
    ));
    assert!(!mix_safe(b"{\"m\": 300}", b"{\"m\": 3000}"));
    assert!(!mix_safe(
        b"{\"t\": \"2026-01-01T09:00\"}",
        b"{\"t\": \"2026-01-01T10:0x\"}"
    ));
    assert!(!mix_safe(b"{\"x\": 1}", b"{\"y\": 1}"));
}

#[test]
fn rewrite_swaps_in_a_new_locked_file_or_reports_loss() {
    let d = tmpdir("swap");
    let p = d.join("a.jsonl.lock");
    let Attempt::Acquired(mut a) = go(&p, None).unwrap() else {
        panic!()
    };
    let before = a.id;
    // Not mix-safe: a new file is swapped in, still locked by us.
    assert_eq!(
        a.rewrite(
            s(&p),
            b"{\"pid\": 1, \"lock\": \"os\", \"x\": 1}",
            Some(1000),
            false
        )
        .unwrap(),
        Rewrite::Done
    );
    assert_ne!(a.id, before);
    assert!(a.still_named_by(s(&p)));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"{\"pid\": 1, \"lock\": \"os\", \"x\": 1}"
    );
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!(m.mtime(), 1);
    let Attempt::Busy(_) = go(&p, None).unwrap() else {
        panic!("the swapped-in file is locked")
    };
    let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary name left");
    // Mix-safe: in place, same inode.
    let id = a.id;
    a.rewrite(
        s(&p),
        b"{\"pid\": 2, \"lock\": \"os\", \"x\": 9}",
        None,
        true,
    )
    .unwrap();
    assert_eq!(a.id, id);
    // Deleted and replaced by someone else: lost, their file untouched.
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, "theirs").unwrap();
    assert_eq!(
        a.rewrite(s(&p), b"{\"pid\": 3}", None, false).unwrap(),
        Rewrite::Lost
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    std::fs::remove_file(&p).unwrap();
    assert_eq!(
        a.rewrite(s(&p), b"{\"pid\": 3}", None, false).unwrap(),
        Rewrite::Lost
    );
    assert!(!p.exists());
}

#[test]
fn payload_rewrite_trims() {
    let d = tmpdir("rewrite");
    let p = d.join("a.jsonl.lock");
    let Attempt::Acquired(mut a) = go(&p, None).unwrap() else {
        panic!()
    };
    a.write_payload(b"0123456789").unwrap();
    a.write_payload(b"abc").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    a.write_payload(b"0123456789").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
    a.release(s(&p));
}

#[test]
fn bounded_read_returns_the_file_up_to_the_cap() {
    let dir = tmpdir("bounded-read");
    let cap = crate::payload::MAX_PAYLOAD_BYTES + 1;
    for len in [
        0usize,
        1,
        240,
        1023,
        1024,
        1025,
        4096,
        cap - 1,
        cap,
        cap + 1,
        3 * cap,
    ] {
        let path = dir.join(format!("f{len}"));
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let got = read_bounded(&std::fs::File::open(&path).unwrap());
        assert_eq!(got.len(), len.min(cap), "length {len}");
        assert_eq!(got[..], bytes[..len.min(cap)], "content {len}");
    }
}
