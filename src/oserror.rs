//! OS errors shaped like Node's fs errors: `code`, `errno`, `syscall`, `path`
//! and the message `"<CODE>: <description>, <syscall> '<path>'"`.

use std::fmt;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsError {
    /// `EACCES`, `ENOSPC`, ... (`EUNKNOWN` when the errno has no name here).
    pub code: &'static str,
    /// Negative errno, as Node reports it.
    pub errno: i32,
    pub syscall: &'static str,
    pub path: String,
    pub message: String,
}

impl OsError {
    pub fn new(code: &'static str, errno: i32, syscall: &'static str, path: &str) -> Self {
        let desc = describe(code);
        OsError {
            code,
            errno,
            syscall,
            path: path.to_string(),
            message: format!("{code}: {desc}, {syscall} '{path}'"),
        }
    }

    pub fn from_io(err: &io::Error, syscall: &'static str, path: &str) -> Self {
        let raw = crate::sys::errno_of(err).unwrap_or(0);
        OsError::new(code_of(raw), -raw.abs(), syscall, path)
    }

    /// An error with a named code but no errno from the OS (e.g. a FIFO at the
    /// lock path, which `open` accepts but we refuse).
    pub fn synthetic(code: &'static str, syscall: &'static str, path: &str) -> Self {
        OsError::new(code, -errno_of(code), syscall, path)
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OsError {}

macro_rules! errnos {
    ($( $name:ident => $desc:expr ),* $(,)?) => {
        /// The code name of a raw errno.
        pub fn code_of(raw: i32) -> &'static str {
            $( if raw == crate::sys::errno::$name { return stringify!($name); } )*
            "EUNKNOWN"
        }
        fn errno_of(code: &str) -> i32 {
            $( if code == stringify!($name) { return crate::sys::errno::$name; } )*
            0
        }
        fn describe(code: &str) -> &'static str {
            $( if code == stringify!($name) { return $desc; } )*
            "unknown error"
        }
    };
}

errnos! {
    EACCES => "permission denied",
    EPERM => "operation not permitted",
    ENOENT => "no such file or directory",
    ENOTDIR => "not a directory",
    EISDIR => "illegal operation on a directory",
    ELOOP => "too many symbolic links encountered",
    EINVAL => "invalid argument",
    EROFS => "read-only file system",
    ENOSPC => "no space left on device",
    EDQUOT => "disk quota exceeded",
    EMFILE => "too many open files",
    ENFILE => "file table overflow",
    ENAMETOOLONG => "name too long",
    EEXIST => "file already exists",
    EIO => "i/o error",
    ENXIO => "no such device or address",
    EBUSY => "resource busy or locked",
    ETXTBSY => "text file is busy",
    EAGAIN => "resource temporarily unavailable",
    EINTR => "interrupted system call",
    EBADF => "bad file descriptor",
    ENOLCK => "no locks available",
    EFBIG => "file too large",
    ENOMEM => "not enough memory",
    EXDEV => "cross-device link not permitted",
    ENOSYS => "function not implemented",
    EMLINK => "too many links",
    EOPNOTSUPP => "operation not supported on socket",
    // Network errors of the PostgreSQL backend's connections (crate::pg::error).
    ECONNREFUSED => "connection refused",
    ECONNRESET => "connection reset by peer",
    ETIMEDOUT => "connection timed out",
    ENETUNREACH => "network is unreachable",
    EHOSTUNREACH => "host is unreachable",
    EADDRNOTAVAIL => "address not available",
    EPIPE => "broken pipe",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_like_node() {
        let e = OsError::from_io(
            &io::Error::from_raw_os_error(crate::sys::errno::EACCES),
            "open",
            "/x/y.lock",
        );
        assert_eq!(e.code, "EACCES");
        assert_eq!(e.errno, -crate::sys::errno::EACCES);
        assert_eq!(e.message, "EACCES: permission denied, open '/x/y.lock'");
        let f = OsError::synthetic("EINVAL", "open", "/p");
        assert_eq!(f.errno, -crate::sys::errno::EINVAL);
        assert_eq!(code_of(-12345), "EUNKNOWN");
    }
}
