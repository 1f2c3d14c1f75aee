//! The file-lock addon's process-level exports: the calling environment's
//! id, path normalization, this process's identity, start times and the test
//! seams, and the interface version `loader.js` checks.

use napi_derive::napi;

use crate::context::thread;
use crate::identity;
use crate::paths;

use super::NativeError;

/// The Node environment id of the calling thread.
#[napi(no_export, catch_unwind)]
pub fn thread_id() -> f64 {
    thread() as f64
}

#[napi(object)]
pub struct NormalizedPath {
    pub key: String,
    pub lock_path: String,
    pub error: Option<NativeError>,
}

/// Normalize a resolved session path (creating its directory).
#[napi(no_export, catch_unwind)]
pub fn normalize(resolved: String) -> NormalizedPath {
    match paths::normalize(&resolved) {
        Ok(p) => NormalizedPath {
            key: p.key.to_string(),
            lock_path: p.lock_path.to_string(),
            error: None,
        },
        Err(e) => {
            let p = paths::unresolved(&resolved);
            NormalizedPath {
                key: p.key.to_string(),
                lock_path: p.lock_path.to_string(),
                error: Some(e.into()),
            }
        }
    }
}

/// The key a resolved session path normalizes to, creating nothing.
#[napi(no_export, catch_unwind)]
pub fn existing_key(resolved: String) -> String {
    paths::existing_key(&resolved)
}

#[napi(object)]
pub struct NativeIdentity {
    pub pid: u32,
    pub starttime: Option<f64>,
    pub boot_id: Option<String>,
    pub hostname: String,
}

#[napi(no_export, catch_unwind)]
pub fn self_identity() -> NativeIdentity {
    let me = identity::self_identity();
    NativeIdentity {
        pid: me.pid,
        starttime: identity::own_start_time().map(|s| s as f64),
        boot_id: me.boot_id.clone(),
        hostname: me.hostname.clone(),
    }
}

/// The start time of `pid` as payloads record it (`/proc/<pid>/stat` field
/// 22 on Linux, the creation time in ms since the epoch on Windows), honouring
/// the override seam; null when unknown. For tests that write old-module
/// files naming a live process on a platform without `/proc`.
#[napi(no_export, catch_unwind)]
pub fn process_start_time(pid: u32) -> Option<f64> {
    identity::proc_start_time(pid).map(|s| s as f64)
}

/// Test seam (PID reuse): report `value` as the start time of `pid`;
/// `value` null means "unknown"; `clear` removes the override (all of them
/// when `pid` is 0).
#[napi(no_export, catch_unwind)]
pub fn set_start_time_override(pid: u32, value: Option<f64>, clear: bool) {
    identity::set_start_time_override(pid, value.map(|v| v as u64), clear);
}

/// Forget cached directory realpaths (test resets).
#[napi(no_export, catch_unwind)]
pub fn clear_path_cache() {
    paths::clear_cache();
}

/// Deliberately panic (tests: a panic must surface as a JS error).
#[napi(no_export, catch_unwind)]
pub fn panic_for_test() {
    panic!("deliberate panic for test");
}

/// Version of the internal JS <-> native interface. A second copy of the
/// package in one process reuses the first copy's addon (and so its registry)
/// only when this matches its own. 2: the calls added for the rewrite swap,
/// the createdAt refresh, lazy wake-ups, marker take-over, `release(path)`
/// without mkdir, the later generation's inspection and stray temp files.
/// 3: named result kinds (`AcquireStatus`, `LockFileKind`), `releaseLease`
/// returns a boolean, and grants a call makes for its own context are
/// delivered inside that call. 4: the rarely used functions are no longer
/// exports of their own but the properties of `rareFunctions()`'s object.
#[napi(catch_unwind)]
pub fn abi_version() -> u32 {
    4
}

/// Whether the calling thread is the process's main thread (Node's main
/// thread: `worker_threads.isMainThread`), or null where this cannot be told
/// cheaply (the caller then asks `node:worker_threads`, which costs a couple of
/// milliseconds to load).
#[napi(catch_unwind)]
pub fn is_main_thread() -> Option<bool> {
    crate::sys::is_main_thread()
}

/// This file's rarely used exports (see `super::rare_functions`).
pub(super) const RARE: &[(&str, napi::Callback)] = &[
    ("threadId", thread_id_c_callback),
    ("normalize", normalize_c_callback),
    ("existingKey", existing_key_c_callback),
    ("selfIdentity", self_identity_c_callback),
    ("processStartTime", process_start_time_c_callback),
    ("setStartTimeOverride", set_start_time_override_c_callback),
    ("clearPathCache", clear_path_cache_c_callback),
    ("panicForTest", panic_for_test_c_callback),
];
