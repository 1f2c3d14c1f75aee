//! Coded errors of the PostgreSQL backend.
//!
//! Guarantees: every failure carries a stable `code` (an errno name such as
//! `ECONNREFUSED` for network failures, or a `SESSION_WRITE_LOCK_BACKEND_*`
//! code) and a message that names the server as `user@host:port/db`, never
//! the connection string or its password. Not guaranteed: the wording of the
//! server's own message, which is passed through.

use std::fmt;

/// Authentication failed (wrong password, unknown user, no password given).
pub const AUTH: &str = "SESSION_WRITE_LOCK_BACKEND_AUTH";
/// The configuration is invalid (bad connection string, keyspace, pool size).
pub const CONFIG: &str = "SESSION_WRITE_LOCK_BACKEND_CONFIG";
/// A connection the lock depended on was lost (holding or waiting).
pub const LOST: &str = "SESSION_WRITE_LOCK_BACKEND_LOST";
/// The server refuses work for now (shutting down, starting, too many connections).
pub const UNAVAILABLE: &str = "SESSION_WRITE_LOCK_BACKEND_UNAVAILABLE";
/// The role may not create or use the package's schema.
pub const PERMISSION: &str = "SESSION_WRITE_LOCK_BACKEND_PERMISSION";
/// Any other server or client error.
pub const OTHER: &str = "SESSION_WRITE_LOCK_BACKEND_ERROR";

/// A backend failure with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub code: &'static str,
    pub message: String,
    /// The server's SQLSTATE, when the server reported the error.
    pub sqlstate: Option<String>,
}

impl PgError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            code,
            message: message.into(),
            sqlstate: None,
        }
    }

    /// Map a client error; `server` is the redacted `user@host:port/db`,
    /// `step` what was being done ("connect", "acquire", ...).
    pub fn from_client(err: &tokio_postgres::Error, server: &str, step: &str) -> Self {
        if let Some(db) = err.as_db_error() {
            let state = db.code().code();
            let code = match state {
                "28P01" | "28000" => AUTH,
                "3D000" | "3F000" => CONFIG,
                "42501" => PERMISSION,
                "57P01" | "57P02" | "57P03" | "53300" | "08006" => UNAVAILABLE,
                _ => OTHER,
            };
            let code = if code == UNAVAILABLE && step != "connect" {
                LOST
            } else {
                code
            };
            return PgError {
                code,
                message: format!(
                    "PostgreSQL backend: {step} on {server} failed: {} ({state})",
                    db.message()
                ),
                sqlstate: Some(state.to_string()),
            };
        }
        let text = err.to_string();
        let mut code = if step == "connect" { OTHER } else { LOST };
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                code = io_code(io, code);
                break;
            }
            source = s.source();
        }
        if code == OTHER || code == LOST {
            if text.contains("password missing") {
                code = AUTH;
            } else if text.contains("timeout") || text.contains("timed out") {
                code = "ETIMEDOUT";
            }
        }
        PgError::new(
            code,
            format!(
                "PostgreSQL backend: {step} on {server} failed: {}",
                scrub(&text)
            ),
        )
    }
}

/// The errno name of an I/O error, or `fallback`.
pub fn io_code(io: &std::io::Error, fallback: &'static str) -> &'static str {
    use std::io::ErrorKind as K;
    if let Some(raw) = io.raw_os_error() {
        let code = crate::oserror::code_of(raw);
        if code != "EUNKNOWN" {
            return code;
        }
    }
    match io.kind() {
        K::ConnectionRefused => "ECONNREFUSED",
        K::TimedOut => "ETIMEDOUT",
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof => "ECONNRESET",
        K::NotFound => "ENOTFOUND",
        _ => {
            let t = io.to_string();
            if t.contains("lookup") || t.contains("resolve") {
                "ENOTFOUND"
            } else {
                fallback
            }
        }
    }
}

/// Remove anything that looks like a password from a client message (the
/// client never echoes it; this is a second line of defence).
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        let lower = word.to_ascii_lowercase();
        if lower.contains("password=") {
            out.push_str("password=***");
            if word.ends_with(char::is_whitespace) {
                out.push(' ');
            }
        } else if let Some(i) = word.find("://") {
            // scheme://user:secret@host -> scheme://user@host
            let rest = &word[i + 3..];
            match (rest.find('@'), rest.find(':')) {
                (Some(at), Some(colon)) if colon < at => {
                    out.push_str(&word[..i + 3]);
                    out.push_str(&rest[..colon]);
                    out.push_str(&rest[at..]);
                }
                _ => out.push_str(word),
            }
        } else {
            out.push_str(word);
        }
    }
    out
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_url_and_keyword_passwords() {
        assert_eq!(
            scrub("bad postgres://u:hunter2@h:5/db here"),
            "bad postgres://u@h:5/db here"
        );
        assert_eq!(
            scrub("host=h password=hunter2 user=u"),
            "host=h password=*** user=u"
        );
        assert!(!scrub("x password=hunter2").contains("hunter2"));
    }
}
