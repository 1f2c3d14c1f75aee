//! session-write-lock: session write locks for an AI-agent gateway, on OS
//! advisory locks.
//!
//! The lock engine (`lockfile`, `identity`, `payload`, `legacy`, `paths`,
//! `registry`, `waiter`) is plain Rust that `cargo test` exercises without
//! Node; `binding` is the thin napi layer the JS package (`index.js`) calls.

pub mod identity;
pub mod inspect;
pub mod legacy;
pub mod lockfile;
pub mod marker;
pub mod oserror;
pub mod paths;
pub mod payload;
pub mod registry;
pub mod sys;
pub mod waiter;

mod binding;
