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
