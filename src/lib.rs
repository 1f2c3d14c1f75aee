//! session-write-lock: session write locks for an AI-agent gateway, on OS
//! advisory locks.
//!
//! The lock engine (`lockfile`, `acquire`, `identity`, `payload`,
//! `staleness`, `paths`, `registry`, `wait_thread`, `inspect`, `marker`) is
//! plain Rust that `cargo test` exercises without Node; every OS call is in
//! `sys`; `binding` is the thin napi layer the JS package (`index.js`)
//! calls. The module map and the order of dependencies: docs/design.md.
//!
//! Features choose the addon (docs/distribution.md): `file-lock` exports the
//! file lock, `postgres` compiles the PostgreSQL backend (`pg`, its client
//! and runtime) and exports it, as a second addon loaded only when a backend
//! is configured.

pub mod acquire;
mod decimal;
pub mod fasthash;
pub mod identity;
pub mod inspect;
pub mod lockfile;
#[cfg(feature = "file-lock")]
mod loop_wait;
pub mod marker;
pub mod oserror;
pub mod paths;
pub mod payload;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod registry;
pub mod session;
pub mod staleness;
pub mod sys;
pub mod wait_thread;

mod binding;
#[cfg(feature = "file-lock")]
mod context;
