//! The one Node-API object napi-rs has no fitting safe form for: the
//! wake-up of a context, a thread-safe function that calls a JS function
//! with no arguments on its own thread, unref'd (it never keeps the event
//! loop alive), named `session-write-lock-wake`.
//!
//! Why not napi's typed `ThreadsafeFunction` (weak): it names every async
//! resource `napi_rs_threadsafe_function`, while tools (jest's
//! `--detectOpenHandles`, `async_hooks`) and `__test__/idle.test.mjs` see
//! ours by its name; and it boxes a value for every call, where ours passes
//! none. Its env-cleanup release would fit; the name does not.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::{Function, JsValuesTupleIntoVec, Result};
use napi::{sys, Env, Error, JsValue};

/// The async resource name of every wake-up.
const NAME: &str = "session-write-lock-wake";

/// An unref'd thread-safe function calling a JS function with no
/// arguments. Any thread may [`WakeFn::call`] it; [`WakeFn::abort`] (on the
/// env's thread, in its cleanup) ends it, and consuming it there makes a
/// call after the abort impossible.
#[derive(Debug)]
pub struct WakeFn(sys::napi_threadsafe_function);

// SAFETY: napi thread-safe functions are made to be called from any thread;
// the handle is released only by `abort`, which consumes it.
unsafe impl Send for WakeFn {}
// SAFETY: as above; `call` takes `&self` and napi serializes the queue.
unsafe impl Sync for WakeFn {}

unsafe extern "C" fn call_js(
    env: sys::napi_env,
    js_cb: sys::napi_value,
    _ctx: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() || js_cb.is_null() {
        return;
    }
    let mut undefined = ptr::null_mut();
    // SAFETY: called by Node on the env's thread with a live env and callback.
    unsafe {
        sys::napi_get_undefined(env, &mut undefined);
        let mut result = ptr::null_mut();
        let status = sys::napi_call_function(env, undefined, js_cb, 0, ptr::null(), &mut result);
        if status == sys::Status::napi_pending_exception {
            // The JS side catches its own errors; never leave one pending.
            let mut exc = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut exc);
        }
    }
}

fn check(status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::from_reason(format!("napi call failed ({status})")))
    }
}

impl WakeFn {
    /// Create the wake-up calling `f` (with no arguments) on the thread of
    /// `env`.
    pub fn create<A: JsValuesTupleIntoVec, R>(env: &Env, f: &Function<'_, A, R>) -> Result<WakeFn> {
        let raw_env = env.raw();
        let mut tsfn: sys::napi_threadsafe_function = ptr::null_mut();
        let mut name = ptr::null_mut();
        // SAFETY: standard napi calls on the live env of this call; `f` is a
        // live function value of that env.
        unsafe {
            check(sys::napi_create_string_utf8(
                raw_env,
                NAME.as_ptr().cast(),
                NAME.len() as isize,
                &mut name,
            ))?;
            check(sys::napi_create_threadsafe_function(
                raw_env,
                f.value().value,
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                Some(call_js),
                &mut tsfn,
            ))?;
            if let Err(e) = check(sys::napi_unref_threadsafe_function(raw_env, tsfn)) {
                sys::napi_release_threadsafe_function(
                    tsfn,
                    sys::ThreadsafeFunctionReleaseMode::abort,
                );
                return Err(e);
            }
        }
        Ok(WakeFn(tsfn))
    }

    /// Queue one call (never blocks).
    pub fn call(&self) {
        // SAFETY: the handle is live until `abort` consumes `self`.
        unsafe {
            sys::napi_call_threadsafe_function(
                self.0,
                ptr::null_mut(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            );
        }
    }

    /// Release it for good, dropping queued calls (env teardown).
    pub fn abort(self) {
        // SAFETY: our reference, released once (this consumes the handle).
        unsafe {
            sys::napi_release_threadsafe_function(
                self.0,
                sys::ThreadsafeFunctionReleaseMode::abort,
            );
        }
    }
}

/// The elements of a `Float64Array` the caller passed, writable during the
/// call: how the hot path (`acquireInto`) hands numbers back without
/// building a result object. The slice borrows the argument, which lives for
/// the whole native call; JS runs no code meanwhile, so nothing else touches
/// the buffer while it is written.
pub fn f64_slice_mut<'a>(a: &'a mut napi::bindgen_prelude::Float64ArraySlice<'_>) -> &'a mut [f64] {
    // SAFETY: the slice points into the argument's backing store, which the
    // call keeps alive; JS code cannot run (and alias it) during the call.
    unsafe { a.as_mut() }
}

/// The elements of a `Float64Array` a context registered once (`setContextOut`),
/// written by that context's later calls (`acquireOut`, `releaseLeaseOut`):
/// those calls then take no typed-array argument, whose conversion (type
/// check, backing-store lookup and napi-rs's borrow bookkeeping) cost about
/// a thousand instructions per call.
///
/// Valid because of how `lib/context.js` makes and keeps the array: a
/// `Float64Array` over its own fresh `ArrayBuffer` (an `ArrayBuffer`'s backing
/// store is allocated outside V8's heap and never moves), never transferred
/// or detached, held by the module for as long as it can make calls with its
/// context id; and only that module's calls, on its own thread, write through
/// it (the registry of these lives in a thread-local, keyed by context id,
/// and ids are never reused).
#[derive(Debug, Clone, Copy)]
pub struct OutSlots {
    ptr: *mut f64,
    len: usize,
}

impl OutSlots {
    /// The elements of `value` if it is a `Float64Array` with a backing store.
    pub fn of(env: &Env, value: &napi::bindgen_prelude::Unknown<'_>) -> Option<OutSlots> {
        let value = value.raw();
        let mut kind = sys::TypedarrayType::int8_array;
        let mut len = 0usize;
        let mut data: *mut c_void = ptr::null_mut();
        // SAFETY: `value` is an argument of the current call on `env`'s
        // thread; every out-pointer is a valid local. A non-typed-array
        // value makes the call fail (checked).
        let status = unsafe {
            sys::napi_get_typedarray_info(
                env.raw(),
                value,
                &mut kind,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        (status == sys::Status::napi_ok
            && kind == sys::TypedarrayType::float64_array
            && !data.is_null())
        .then_some(OutSlots {
            ptr: data.cast(),
            len,
        })
    }

    /// Store `v` at index `i` (ignored past the end).
    pub fn put(&self, i: usize, v: f64) {
        if i < self.len {
            // SAFETY: in bounds of a live, non-moving backing store (see the
            // type's comment); f64 slots of a Float64Array are aligned.
            unsafe { self.ptr.add(i).write(v) }
        }
    }
}

thread_local! {
    /// The out arrays the contexts of this thread registered, by context id.
    static OUTS: std::cell::RefCell<Vec<(u64, OutSlots)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Contexts with a registered out array that were not torn down yet, in
/// all threads (test seam).
static REGISTERED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl OutSlots {
    /// Make `self` the out array of context `ctx` (of the calling thread),
    /// replacing the one it had.
    pub fn register(self, ctx: u64) {
        OUTS.with(|o| {
            let mut o = o.borrow_mut();
            match o.iter_mut().find(|(c, _)| *c == ctx) {
                Some(entry) => entry.1 = self,
                None => {
                    o.push((ctx, self));
                    REGISTERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }

    /// Context `ctx` of this thread goes away (its env's cleanup): forget
    /// its out array, whose memory goes with the env.
    pub fn forget(ctx: u64) {
        OUTS.with(|o| {
            let mut o = o.borrow_mut();
            let before = o.len();
            o.retain(|(c, _)| *c != ctx);
            let gone = (before - o.len()) as u32;
            REGISTERED.fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
        });
    }

    /// The out array context `ctx` registered on this thread.
    pub fn of_context(ctx: u64) -> Option<OutSlots> {
        OUTS.with(|o| o.borrow().iter().find(|(c, _)| *c == ctx).map(|(_, s)| *s))
    }

    /// Contexts with a registered out array, not torn down yet, in the
    /// process.
    pub fn registered() -> u32 {
        REGISTERED.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Call `f` with the JS string `value` as UTF-8, read with one Node-API call
/// into a stack buffer when it fits (napi-rs's `String` argument asks for the
/// length, allocates, then reads: two calls and an allocation per argument).
/// Longer strings take that path. `Err`: `value` is not a string.
pub fn with_js_str<R>(
    env: &Env,
    value: &napi::bindgen_prelude::Unknown<'_>,
    f: impl FnOnce(&str) -> R,
) -> Result<R> {
    const CAP: usize = 1024;
    let not_a_string = || Error::new(napi::Status::StringExpected, "expected a string");
    let raw = value.raw();
    let mut buf = [0u8; CAP];
    let mut len = 0usize;
    // SAFETY: `raw` is an argument of the current call on `env`'s thread;
    // `buf` has CAP bytes (Node writes at most CAP - 1 and a NUL).
    let status = unsafe {
        sys::napi_get_value_string_utf8(env.raw(), raw, buf.as_mut_ptr().cast(), CAP, &mut len)
    };
    if status != sys::Status::napi_ok {
        return Err(not_a_string());
    }
    // A string cut short ends within 3 bytes of CAP - 1 (Node cuts at a
    // character boundary): anything shorter is complete.
    if len + 4 < CAP {
        let s = std::str::from_utf8(&buf[..len])
            .map_err(|_| Error::new(napi::Status::StringExpected, "not UTF-8"))?;
        return Ok(f(s));
    }
    let mut full = 0usize;
    // SAFETY: as above; a null buffer asks for the length only.
    let status =
        unsafe { sys::napi_get_value_string_utf8(env.raw(), raw, ptr::null_mut(), 0, &mut full) };
    if status != sys::Status::napi_ok {
        return Err(not_a_string());
    }
    let mut big = vec![0u8; full + 1];
    // SAFETY: as above; `big` has `full + 1` bytes.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env.raw(), raw, big.as_mut_ptr().cast(), full + 1, &mut len)
    };
    if status != sys::Status::napi_ok {
        return Err(not_a_string());
    }
    big.truncate(len);
    let s = String::from_utf8(big)
        .map_err(|_| Error::new(napi::Status::StringExpected, "not UTF-8"))?;
    Ok(f(&s))
}
