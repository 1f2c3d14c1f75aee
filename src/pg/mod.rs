//! The PostgreSQL backend: session locks held in a database every host trusts,
//! for fleets whose gateways on several hosts serve the same sessions
//! (docs/postgres.md).
//!
//! A lock is a session-level advisory lock (`pg_try_advisory_lock`) on one
//! "holding" connection per process: like `flock`, the server frees it the
//! moment that connection ends, however the process dies. Fencing tokens come
//! from a sequence (strictly increasing across every host); the holder row
//! (key, pid, hostname, boot id, acquiredAt, maxHoldMs, token) is written under
//! the lock for inspection.
//!
//! Layout: [`config`] parses and redacts the configuration, [`key`] derives
//! the host-independent key and its 64-bit lock id, [`error`] maps client and
//! server failures to coded errors, [`sql`] holds the schema and statements,
//! [`engine`] runs the connections (a holding connection plus at most
//! `poolSize` waiting connections) on a runtime thread of its own.
//!
//! No napi types here: `binding_pg` converts.

pub mod config;
pub mod engine;
pub mod error;
pub mod key;
pub mod sql;

pub use config::BackendConfig;
pub use engine::{Engine, Grant, HolderInfo, InspectRow};
pub use error::PgError;
