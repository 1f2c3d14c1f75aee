//! The JS thread's own change watcher (Linux): an inotify descriptor polled
//! by the env's libuv loop (`uv_poll`, unref'd: it never keeps the loop
//! alive), so a lock file's release wakes the thread that resolves the
//! waiting promise directly, without the waiting thread and a thread-safe
//! function in between.
//!
//! libuv's functions are looked up in the running process (`dlsym`): the
//! Node binary exports them, and nothing links against them, so test
//! binaries and hosts without them still load the addon (the watcher then
//! cannot start, and waits take the waiting thread's path).
//!
//! Teardown: an async cleanup hook of the env closes the poll handle; the
//! descriptor is closed and the memory freed in its close callback, which
//! then lets Node finish the env's teardown (a worker's loop is never closed
//! with the handle open).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::OnceLock;

use napi::{sys, Env};

use super::{Fired, WatchId};
use crate::sys::linux::{drain_inotify, inotify_add, inotify_remove};

type PollCb = unsafe extern "C" fn(*mut c_void, i32, i32);
type CloseCb = unsafe extern "C" fn(*mut c_void);

type HandleSizeFn = unsafe extern "C" fn(i32) -> usize;
type PollInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> i32;
type PollStartFn = unsafe extern "C" fn(*mut c_void, i32, PollCb) -> i32;
type CloseFn = unsafe extern "C" fn(*mut c_void, Option<CloseCb>);
type UnrefFn = unsafe extern "C" fn(*mut c_void);

/// libuv's entry points, from the process (`None`: not there).
struct Uv {
    handle_size: HandleSizeFn,
    poll_init: PollInitFn,
    poll_start: PollStartFn,
    close: CloseFn,
    unref: UnrefFn,
}

const UV_POLL: i32 = 8;
const UV_READABLE: i32 = 1;
const ENOSYS: i32 = libc::ENOSYS;

fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    UV.get_or_init(|| {
        fn sym(name: &[u8]) -> Option<*mut c_void> {
            // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the
            // process's global symbols (node's exports).
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
            (!p.is_null()).then_some(p)
        }
        // SAFETY: each symbol is libuv's function of that name, whose C
        // signature the field's type spells (uv.h).
        unsafe {
            Some(Uv {
                handle_size: std::mem::transmute::<*mut c_void, HandleSizeFn>(sym(
                    b"uv_handle_size\0",
                )?),
                poll_init: std::mem::transmute::<*mut c_void, PollInitFn>(sym(b"uv_poll_init\0")?),
                poll_start: std::mem::transmute::<*mut c_void, PollStartFn>(sym(
                    b"uv_poll_start\0",
                )?),
                close: std::mem::transmute::<*mut c_void, CloseFn>(sym(b"uv_close\0")?),
                unref: std::mem::transmute::<*mut c_void, UnrefFn>(sym(b"uv_unref\0")?),
            })
        }
    })
    .as_ref()
}

/// What the poll handle's `data` points to; owned by the handle from
/// `start` until its close callback.
struct State {
    env: sys::napi_env,
    /// The async context JS called from `on_poll` runs in (its microtasks
    /// and next ticks run as the callback scope closes).
    async_ctx: sys::napi_async_context,
    fd: OwnedFd,
    handle: *mut c_void,
    layout: Layout,
    on_fire: fn(&Env, &[Fired]),
    after_fire: fn(),
    on_teardown: fn(),
    hook: sys::napi_async_cleanup_hook_handle,
}

/// A running watcher: a handle to add and remove watches, valid until the
/// env's teardown (which calls `on_teardown` first: drop it there).
#[derive(Debug)]
pub struct LoopWatch {
    fd: i32,
}

unsafe extern "C" fn on_poll(handle: *mut c_void, status: i32, _events: i32) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `data` (the handle's first field) is our State until the
        // close callback, and libuv stops calling this before that.
        let st = unsafe { &*(*(handle as *mut *mut State)) };
        if status < 0 {
            return;
        }
        let mut fired = Vec::new();
        drain_inotify(st.fd.as_raw_fd(), &mut fired);
        if fired.is_empty() {
            return;
        }
        let env = st.env;
        let mut hs = ptr::null_mut();
        let mut res = ptr::null_mut();
        let mut cs = ptr::null_mut();
        // SAFETY: on the env's thread, in a libuv callback (no scope open):
        // a handle scope, then a callback scope, as Node's own callbacks do;
        // both closed below in reverse order.
        unsafe {
            if sys::napi_open_handle_scope(env, &mut hs) != sys::Status::napi_ok {
                return;
            }
            let scoped = sys::napi_create_object(env, &mut res) == sys::Status::napi_ok
                && sys::napi_open_callback_scope(env, res, st.async_ctx, &mut cs)
                    == sys::Status::napi_ok;
            (st.on_fire)(&Env::from_raw(env), &fired);
            let mut pending = false;
            sys::napi_is_exception_pending(env, &mut pending);
            if pending {
                // The deliver function catches its own errors; never leave one.
                let mut exc = ptr::null_mut();
                sys::napi_get_and_clear_last_exception(env, &mut exc);
            }
            if scoped {
                sys::napi_close_callback_scope(env, cs);
            }
            sys::napi_close_handle_scope(env, hs);
        }
        (st.after_fire)();
    });
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
    // SAFETY: the State `start` leaked into `data`; the handle is closed, so
    // nothing uses either any more.
    let st = unsafe { Box::from_raw(*(handle as *mut *mut State)) };
    let hook = st.hook;
    // SAFETY: the handle's memory, allocated with this layout by `start`.
    unsafe { dealloc(st.handle.cast(), st.layout) };
    drop(st);
    if !hook.is_null() {
        // SAFETY: our hook's handle, removed once, on the env's thread.
        unsafe { sys::napi_remove_async_cleanup_hook(hook) };
    }
}

unsafe extern "C" fn on_cleanup(_hook: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
    let st = arg as *mut State;
    // SAFETY: `arg` is the live State; this runs once, on the env's thread.
    let (handle, teardown, env, actx) =
        unsafe { ((*st).handle, (*st).on_teardown, (*st).env, (*st).async_ctx) };
    let _ = std::panic::catch_unwind(teardown);
    if !actx.is_null() {
        // SAFETY: our async context, destroyed once, on the env's thread.
        unsafe { sys::napi_async_destroy(env, actx) };
        // SAFETY: `st` is live until the close callback.
        unsafe { (*st).async_ctx = ptr::null_mut() };
    }
    if let Some(uv) = uv() {
        // SAFETY: a live, initialized poll handle, closed once.
        unsafe { (uv.close)(handle, Some(on_closed)) };
    }
}

impl LoopWatch {
    /// Start watching on `env`'s loop: `on_fire` runs on the env's thread
    /// with the watches that fired, inside a callback scope; `after_fire`
    /// right after that scope closed (its microtasks ran); `on_teardown`
    /// when the env goes. `Err` (an errno) when it cannot start; nothing is
    /// kept then.
    pub fn start(
        env: &Env,
        on_fire: fn(&Env, &[Fired]),
        after_fire: fn(),
        on_teardown: fn(),
    ) -> Result<LoopWatch, i32> {
        let uv = uv().ok_or(ENOSYS)?;
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut lp: *mut sys::uv_loop_s = ptr::null_mut();
        // SAFETY: the live env of this call.
        let status = unsafe { sys::napi_get_uv_event_loop(env.raw(), &mut lp) };
        if status != sys::Status::napi_ok || lp.is_null() {
            return Err(ENOSYS);
        }
        let mut name = ptr::null_mut();
        let mut async_ctx: sys::napi_async_context = ptr::null_mut();
        const NAME: &str = "session-write-lock-loop-wait";
        // SAFETY: the live env of this call; a string and an async context
        // (with a resource object Node makes) of that env.
        let made = unsafe {
            sys::napi_create_string_utf8(
                env.raw(),
                NAME.as_ptr().cast(),
                NAME.len() as isize,
                &mut name,
            ) == sys::Status::napi_ok
                && sys::napi_async_init(env.raw(), ptr::null_mut(), name, &mut async_ctx)
                    == sys::Status::napi_ok
        };
        if !made {
            return Err(ENOSYS);
        }
        // SAFETY: libuv's own size query.
        let size = unsafe { (uv.handle_size)(UV_POLL) };
        let layout = Layout::from_size_align(size.max(64), 16).map_err(|_| ENOSYS)?;
        // SAFETY: a non-zero layout.
        let handle = unsafe { alloc_zeroed(layout) } as *mut c_void;
        if handle.is_null() {
            // SAFETY: our async context, destroyed once.
            unsafe { sys::napi_async_destroy(env.raw(), async_ctx) };
            return Err(libc::ENOMEM);
        }
        // SAFETY: a zeroed handle of libuv's size, the env's loop, our fd.
        let rc = unsafe { (uv.poll_init)(lp.cast(), handle, fd) };
        if rc != 0 {
            // SAFETY: allocated above with this layout; libuv kept nothing;
            // the async context is ours, destroyed once.
            unsafe {
                dealloc(handle.cast(), layout);
                sys::napi_async_destroy(env.raw(), async_ctx);
            }
            return Err(-rc);
        }
        let st = Box::into_raw(Box::new(State {
            env: env.raw(),
            async_ctx,
            fd: owned,
            handle,
            layout,
            on_fire,
            after_fire,
            on_teardown,
            hook: ptr::null_mut(),
        }));
        // SAFETY: `data` is the first field of every uv handle.
        unsafe { *(handle as *mut *mut State) = st };
        // SAFETY: an initialized handle; the callback matches uv_poll_cb.
        let rc = unsafe { (uv.poll_start)(handle, UV_READABLE, on_poll) };
        let mut hook: sys::napi_async_cleanup_hook_handle = ptr::null_mut();
        let hooked = rc == 0
            // SAFETY: the live env; `st` lives until the hook's close callback.
            && unsafe {
                sys::napi_add_async_cleanup_hook(env.raw(), Some(on_cleanup), st.cast(), &mut hook)
            } == sys::Status::napi_ok;
        if !hooked {
            // SAFETY: close the initialized handle; `on_closed` frees all
            // (the hook handle is still null: nothing to remove); the async
            // context is ours, destroyed once.
            unsafe {
                sys::napi_async_destroy(env.raw(), async_ctx);
                (uv.close)(handle, Some(on_closed));
            }
            return Err(if rc != 0 { -rc } else { ENOSYS });
        }
        // SAFETY: `st` is live; the handle never keeps the loop alive.
        unsafe {
            (*st).hook = hook;
            (uv.unref)(handle);
        }
        Ok(LoopWatch { fd })
    }

    /// Watch the inode now at `path` (same id for the same inode).
    pub fn add(&self, path: &str) -> Result<WatchId, i32> {
        inotify_add(self.fd, path)
    }

    /// Remove a watch (already gone: harmless).
    pub fn remove(&self, id: WatchId) {
        inotify_remove(self.fd, id)
    }
}
