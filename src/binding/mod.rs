//! The napi layer: converts between JS values and the lock engine. Every
//! export is `catch_unwind`: a Rust panic becomes a JS `Error`, never an abort.
//! These exports are internal; `index.js` and `lib/backend.js` wrap them into
//! the public API.
//!
//! One crate, two addons (docs/distribution.md), chosen by Cargo features:
//! `file-lock` exports the file lock (`session-write-lock.<platform>.node`):
//! locks and leases in `locks.rs`, looking at files in `files.rs`, markers in
//! `markers.rs`, identity, paths and test seams in `process.rs`. `postgres`
//! exports the PostgreSQL backend (`postgres.rs`,
//! `session-write-lock-postgres.<platform>.node`), which needs only
//! `identity` and `oserror` from the core: it registers no file-lock
//! registry of its own, and the file-lock addon carries no database client.
//! The engine calls behind them (the context's delivery included, see
//! `context`) live in the engine: these files only convert.

#![cfg_attr(test, allow(dead_code))]

#[cfg(feature = "file-lock")]
mod files;
#[cfg(feature = "file-lock")]
mod locks;
#[cfg(feature = "file-lock")]
mod markers;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "file-lock")]
mod process;
#[cfg(feature = "file-lock")]
pub(crate) mod values;

#[cfg(feature = "file-lock")]
pub use values::NativeError;

/// The addon's rarely used functions (lock-file inspection, session markers,
/// release by path, `listHeldLocks`, identity and the test
/// seams), as one object made on each call. napi-rs creates a JS function for
/// every export when the addon loads (about 11 k instructions each, in every
/// process that requires the package, docs/design.md); these are created only
/// when a copy of the package first needs one (lib/native.js, `rare()`, calls
/// this once per copy). The functions are the same `#[napi]` functions,
/// `no_export`: their types are written out here.
#[cfg(feature = "file-lock")]
#[napi_derive::napi(
    catch_unwind,
    ts_return_type = "{ createCounts(): CreateCounts; peekHolder(lockPath: string): PeekedHolder | null; inspectLockFile(lockPath: string, nowMs: number, staleMs: number, remove: boolean, nonOpenclawPid?: number | undefined | null): LockFileReport; inspectLockPayload(json: string, nowMs: number, staleMs: number): PayloadVerdict; removeStrayTemp(path: string, nowMs: number, graceMs: number): StrayTempReport; markerOpen(path: string, json: string): MarkerResult; markerUpdate(id: number, json: string): NativeError | null; markerClose(id: number): boolean; markerOrphans(dir: string, remove: boolean): OrphanScan; holderOf(key: string): NativeHolder | null; listHeld(): Array<NativeHolder>; registryCounts(): RegistryCounts; loopWaitCounts(): LoopWaitCounts; contextCounts(): ContextCounts; releaseKey(ctx: number, key: string): NativeDropped | null; threadId(): number; normalize(resolved: string): NormalizedPath; existingKey(resolved: string): string; selfIdentity(): NativeIdentity; processStartTime(pid: number): number | null; setStartTimeOverride(pid: number, value: number | undefined | null, clear: boolean): void; clearPathCache(): void; panicForTest(): void }"
)]
pub fn rare_functions(env: &napi::Env) -> napi::Result<napi::bindgen_prelude::Object<'_>> {
    use napi::bindgen_prelude::JsObjectValue;
    let mut o = napi::bindgen_prelude::Object::new(env)?;
    for fns in [files::RARE, markers::RARE, locks::RARE, process::RARE] {
        for &(name, cb) in fns {
            o.set_named_property(name, env.create_function::<(), ()>(name, cb)?)?;
        }
    }
    Ok(o)
}
