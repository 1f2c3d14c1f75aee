//! The queue's order, hand-off and reentry rules, through the public calls.

use super::*;

fn dir(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("swl-reg-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.to_str().unwrap().to_string()
}

fn req(
    ctx: CtxId,
    key: &str,
    thread: ThreadId,
    owner: Option<&str>,
    allow: bool,
) -> AcquireRequest {
    AcquireRequest {
        key: key.into(),
        lock_path: format!("{key}.lock").into(),
        ctx,
        thread,
        owner: owner.map(str::to_string),
        allow_reentrant: allow,
        max_hold_ms: Some(300_000),
        stale_ms: 1_800_000,
    }
}

fn granted(o: AcquireOutcome) -> Grant {
    match o {
        AcquireOutcome::Granted(g) => g,
        AcquireOutcome::Pending(r) => panic!("pending {r}"),
    }
}

fn pending(o: AcquireOutcome) -> u64 {
    match o {
        AcquireOutcome::Pending(r) => r,
        AcquireOutcome::Granted(_) => panic!("granted"),
    }
}

#[test]
fn fifo_hand_off_in_place_with_new_tokens() {
    let reg = global();
    let ctx = reg.register_ctx(None);
    let key = format!("{}/s.jsonl", dir("fifo"));
    let first = granted(reg.acquire(req(ctx, &key, 1, None, false)).unwrap());
    let waits: Vec<u64> = (0..5)
        .map(|_| pending(reg.acquire(req(ctx, &key, 1, None, false)).unwrap()))
        .collect();
    let mut lease = first.lease_id;
    let mut token = first.token.clone();
    for expected in &waits {
        assert_eq!(
            (reg.release_lease(ctx, lease), reg.has_deliveries(ctx)),
            (true, true)
        );
        let d = reg.take_deliveries(ctx);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].request_id, *expected, "strict FIFO");
        let g = d[0].result.as_ref().unwrap();
        assert_ne!(g.token, token, "a new holder gets a new token");
        let on_disk = crate::payload::parse(&std::fs::read(format!("{key}.lock")).unwrap());
        assert_eq!(on_disk.fencing_token.as_deref(), Some(&*g.token));
        lease = g.lease_id;
        token = g.token.clone();
    }
    assert!(reg.release_lease(ctx, lease));
    assert!(!std::path::Path::new(&format!("{key}.lock")).exists());
    assert!(!reg.release_lease(ctx, lease), "a lease releases once");
    reg.unregister_ctx(ctx);
}

#[test]
fn reentrancy_needs_same_thread_and_owner_rules() {
    let reg = global();
    let ctx = reg.register_ctx(None);
    let key = format!("{}/s.jsonl", dir("reent"));
    let a = granted(reg.acquire(req(ctx, &key, 7, Some("o"), false)).unwrap());
    // Same owner: reenters (shares the token).
    let b = granted(reg.acquire(req(ctx, &key, 7, Some("o"), false)).unwrap());
    assert_eq!(a.token, b.token);
    // allowReentrant while the holder has an owner: waits.
    let w1 = pending(reg.acquire(req(ctx, &key, 7, None, true)).unwrap());
    // Another thread with the same owner: waits.
    let w2 = pending(reg.acquire(req(ctx, &key, 8, Some("o"), false)).unwrap());
    assert!(reg.cancel(w1) && reg.cancel(w2));
    assert!(!reg.cancel(w1), "cancel is once");
    assert!(reg.release_lease(ctx, a.lease_id));
    assert!(
        std::path::Path::new(&format!("{key}.lock")).exists(),
        "one level left"
    );
    assert!(reg.release_lease(ctx, b.lease_id));
    assert!(!std::path::Path::new(&format!("{key}.lock")).exists());
    // Holder without owner: allowReentrant reenters on the same thread only.
    let c = granted(reg.acquire(req(ctx, &key, 7, None, false)).unwrap());
    let d = granted(reg.acquire(req(ctx, &key, 7, None, true)).unwrap());
    let w3 = pending(reg.acquire(req(ctx, &key, 9, None, true)).unwrap());
    assert_eq!(
        reg.release_thread(ctx, 7).len(),
        1,
        "one lock file, every level"
    );
    let got = reg.take_deliveries(ctx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].request_id, w3);
    let e = got[0].result.as_ref().unwrap().lease_id;
    assert!(!reg.lease_held(c.lease_id) && !reg.lease_held(d.lease_id));
    assert!(reg.release_lease(ctx, e));
    reg.unregister_ctx(ctx);
}

#[test]
fn release_lease_own_takes_back_only_its_own_hand_off() {
    let reg = global();
    let ctx = reg.register_ctx(None);
    let d = dir("own");
    let (a, b) = (format!("{d}/a.jsonl"), format!("{d}/b.jsonl"));
    let a1 = granted(reg.acquire(req(ctx, &a, 1, None, false)).unwrap());
    let a2 = pending(reg.acquire(req(ctx, &a, 1, None, false)).unwrap());
    let a3 = pending(reg.acquire(req(ctx, &a, 1, None, false)).unwrap());
    // The hand-off of `a` to this context's next waiter comes back, in order,
    // and nothing is left to deliver.
    let (dropped, own) = reg.release_lease_own(ctx, a1.lease_id);
    let (rid, g2) = own.expect("own hand-off");
    assert!(dropped);
    assert_eq!(rid, a2, "strict FIFO");
    assert_eq!(&*g2.lock_path, format!("{a}.lock"));
    assert!(!reg.has_deliveries(ctx));
    // A grant of another lock already in the outbox (as a waiting thread's
    // grant would be) is never taken for this release's: it stays, and this
    // release's own hand-off stays behind it for the usual delivery.
    let b1 = granted(reg.acquire(req(ctx, &b, 1, None, false)).unwrap());
    let b2 = pending(reg.acquire(req(ctx, &b, 1, None, false)).unwrap());
    assert!(reg.release_lease(ctx, b1.lease_id));
    let (dropped, own) = reg.release_lease_own(ctx, g2.lease_id);
    assert!(dropped);
    assert!(own.is_none());
    let ds = reg.take_deliveries(ctx);
    let ids: Vec<u64> = ds.iter().map(|d| d.request_id).collect();
    assert_eq!(ids, vec![b2, a3]);
    // A lease released twice drops nothing and takes nothing.
    assert!(!reg.release_lease_own(ctx, g2.lease_id).0);
    for d in ds {
        reg.release_lease(ctx, d.result.unwrap().lease_id);
    }
    reg.unregister_ctx(ctx);
}
