//! The backend's configuration: parsed once, validated, and kept with a
//! redacted form of the server for messages.
//!
//! Guarantees: [`BackendConfig::server`] (`user@host:port/db`) is the only form
//! of the connection string that leaves this module, so no error or log line
//! carries the password; an invalid value is a `SESSION_WRITE_LOCK_BACKEND_CONFIG`
//! error that names the option, never its value when the value is the
//! connection string. The TCP keepalive (client and server side, about 10 s in
//! all) and a connect timeout are set here unless the string sets them.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use super::error::{PgError, CONFIG};
use super::key;

/// Default keyspace: the first component of every key.
pub const DEFAULT_KEYSPACE: &str = "openclaw";
/// Default schema holding the table, sequence and functions.
pub const DEFAULT_SCHEMA: &str = "session_write_lock";
/// Default number of waiting connections.
pub const DEFAULT_POOL_SIZE: usize = 2;
/// Upper bound on `poolSize` (a misconfiguration guard, not a tuning knob).
pub const MAX_POOL_SIZE: usize = 64;

/// Keepalive: first probe after 4 s idle, then every 2 s, 3 probes: about 10 s.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(4);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged data is given up on after this long (Linux TCP_USER_TIMEOUT).
pub const USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout when the string sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A validated backend configuration.
#[derive(Clone)]
pub struct BackendConfig {
    pub pg: tokio_postgres::Config,
    pub keyspace: String,
    /// Absolute, normalized (its existing prefix realpath'd).
    pub sessions_root: PathBuf,
    pub pool_size: usize,
    pub schema: String,
    /// `user@host:port/db`, without the password.
    pub server: String,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("server", &self.server)
            .field("keyspace", &self.keyspace)
            .field("sessions_root", &self.sessions_root)
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Raw options as the caller gave them.
#[derive(Debug, Default, Clone)]
pub struct RawOptions<'a> {
    pub connection_string: &'a str,
    pub keyspace: Option<&'a str>,
    pub sessions_root: Option<&'a str>,
    pub pool_size: Option<f64>,
    pub schema: Option<&'a str>,
}

fn config_error(msg: impl Into<String>) -> PgError {
    PgError::new(CONFIG, msg)
}

impl BackendConfig {
    /// Parse and validate. `home` and `state_dir` give the default sessions
    /// root (`state_dir`, else `<home>/.openclaw`).
    pub fn parse(
        raw: &RawOptions<'_>,
        state_dir: Option<&str>,
        home: Option<&str>,
    ) -> Result<Self, PgError> {
        let s = raw.connection_string.trim();
        if s.is_empty() {
            return Err(config_error(
                "PostgreSQL backend: connectionString must be a non-empty string",
            ));
        }
        let mut pg = tokio_postgres::Config::from_str(s).map_err(|e| {
            config_error(format!(
                "PostgreSQL backend: invalid connection string ({})",
                super::error::scrub(&e.to_string())
            ))
        })?;
        if pg.get_hosts().is_empty() {
            return Err(config_error(
                "PostgreSQL backend: the connection string names no host",
            ));
        }
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(config_error(
                "PostgreSQL backend: sslmode=require is not supported by this version (no TLS client built in); use a local network, a tunnel, or sslmode=disable",
            ));
        }
        if pg.get_user().is_none() {
            return Err(config_error(
                "PostgreSQL backend: the connection string names no user",
            ));
        }
        let keyspace = raw.keyspace.unwrap_or(DEFAULT_KEYSPACE);
        if keyspace.is_empty() || keyspace.contains('\0') || keyspace.len() > 200 {
            return Err(config_error(
                "PostgreSQL backend: keyspace must be a non-empty string of at most 200 bytes without NUL",
            ));
        }
        let schema = raw.schema.unwrap_or(DEFAULT_SCHEMA);
        if !valid_identifier(schema) {
            return Err(config_error(format!(
                "PostgreSQL backend: schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 40 bytes), got {schema:?}"
            )));
        }
        let pool_size = match raw.pool_size {
            None => DEFAULT_POOL_SIZE,
            Some(n) if n.fract() == 0.0 && n >= 1.0 && n <= MAX_POOL_SIZE as f64 => n as usize,
            Some(n) => {
                return Err(config_error(format!(
                    "PostgreSQL backend: poolSize must be an integer from 1 to {MAX_POOL_SIZE}, got {n}"
                )))
            }
        };
        let root = match raw.sessions_root {
            Some(r) if !r.is_empty() => PathBuf::from(r),
            Some(_) => {
                return Err(config_error(
                    "PostgreSQL backend: sessionsRoot must be a non-empty path",
                ))
            }
            None => match (state_dir.filter(|d| !d.is_empty()), home) {
                (Some(d), _) => PathBuf::from(d),
                (None, Some(h)) if !h.is_empty() => Path::new(h).join(".openclaw"),
                _ => {
                    return Err(config_error(
                        "PostgreSQL backend: no sessionsRoot given and neither OPENCLAW_STATE_DIR nor HOME is set",
                    ))
                }
            },
        };
        if root.as_os_str().to_string_lossy().contains('\0') {
            return Err(config_error(
                "PostgreSQL backend: sessionsRoot contains NUL",
            ));
        }
        let sessions_root = key::normalize_root(&root);

        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(USER_TIMEOUT);
        if pg.get_application_name().is_none() {
            pg.application_name("session-write-lock");
        }
        // The server's side of the same keepalive, so a host that vanished
        // loses its locks after about 10 s (settable per session).
        let server_side = format!(
            "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} -c tcp_user_timeout={}",
            KEEPALIVE_IDLE.as_secs(),
            KEEPALIVE_INTERVAL.as_secs(),
            KEEPALIVE_RETRIES,
            USER_TIMEOUT.as_millis()
        );
        let options = match pg.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {server_side}"),
            _ => server_side,
        };
        pg.options(options);
        let server = redacted(&pg);
        Ok(BackendConfig {
            pg,
            keyspace: keyspace.to_string(),
            sessions_root,
            pool_size,
            schema: schema.to_string(),
            server,
        })
    }

    /// The NOTIFY channel of this schema.
    pub fn channel(&self) -> String {
        format!("{}_released", self.schema)
    }
}

fn valid_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `user@host:port/db` (first host only, `+n` when there are more).
pub fn redacted(pg: &tokio_postgres::Config) -> String {
    let user = pg.get_user().unwrap_or("?");
    let hosts = pg.get_hosts();
    let host = match hosts.first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let more = if hosts.len() > 1 {
        format!("+{}", hosts.len() - 1)
    } else {
        String::new()
    };
    let db = pg.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}{more}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> RawOptions<'_> {
        RawOptions {
            connection_string: s,
            sessions_root: Some("/srv/sessions"),
            ..Default::default()
        }
    }

    #[test]
    fn parses_url_with_defaults_and_redacts_the_password() {
        let c = BackendConfig::parse(
            &raw("postgres://alice:s3cret@db.example:6543/locks"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.server, "alice@db.example:6543/locks");
        assert_eq!(c.keyspace, "openclaw");
        assert_eq!(c.schema, "session_write_lock");
        assert_eq!(c.pool_size, 2);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.pg.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert!(c
            .pg
            .get_options()
            .unwrap()
            .contains("tcp_keepalives_idle=4"));
    }

    #[test]
    fn default_root_is_state_dir_then_home() {
        let mut r = raw("postgres://u@h/db");
        r.sessions_root = None;
        let c = BackendConfig::parse(&r, Some("/var/state"), Some("/home/u")).unwrap();
        assert_eq!(c.sessions_root, PathBuf::from("/var/state"));
        let c = BackendConfig::parse(&r, None, Some("/home/u")).unwrap();
        assert_eq!(c.sessions_root, PathBuf::from("/home/u/.openclaw"));
    }

    #[test]
    fn bad_values_are_config_errors_without_the_password() {
        for (s, pool, schema) in [
            ("", None, None),
            ("postgres://u:pw-XYZZY@h:notaport/db", None, None),
            ("postgres://u:pw-XYZZY@h/db", Some(0.0), None),
            ("postgres://u:pw-XYZZY@h/db", Some(1.5), None),
            ("postgres://u:pw-XYZZY@h/db", None, Some("Bad-Name")),
            ("postgres://u:pw-XYZZY@h/db?sslmode=require", None, None),
        ] {
            let mut r = raw(s);
            r.pool_size = pool;
            r.schema = schema;
            let e = BackendConfig::parse(&r, None, None).unwrap_err();
            assert_eq!(e.code, CONFIG, "{s} {pool:?} {schema:?}: {e}");
            assert!(!e.message.contains("XYZZY"), "{}", e.message);
        }
    }
}
