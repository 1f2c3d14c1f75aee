//! The JS shapes of engine values that more than one export (and the
//! context's delivery) hand to JS: OS errors and deliveries.

use napi_derive::napi;

use crate::oserror::OsError;
use crate::registry::{Delivery, Grant};

#[napi(object)]
pub struct NativeError {
    pub code: String,
    pub errno: i32,
    pub syscall: String,
    pub path: String,
    pub message: String,
}

impl From<OsError> for NativeError {
    fn from(e: OsError) -> Self {
        NativeError {
            code: e.code.to_string(),
            errno: e.errno,
            syscall: e.syscall.to_string(),
            path: e.path,
            message: e.message,
        }
    }
}

/// A grant (lease id, lock path, token, time) or the error that ended a
/// pending request.
#[napi(object)]
pub struct NativeDelivery {
    pub request_id: f64,
    pub lease_id: Option<f64>,
    pub lock_path: Option<String>,
    pub token: Option<String>,
    pub acquired_at: Option<f64>,
    pub error: Option<NativeError>,
}

impl From<Delivery> for NativeDelivery {
    fn from(d: Delivery) -> Self {
        let request_id = d.request_id as f64;
        match d.result {
            Ok(Grant {
                lease_id,
                lock_path,
                token,
                acquired_at_ms,
            }) => NativeDelivery {
                request_id,
                lease_id: Some(lease_id as f64),
                lock_path: Some(lock_path.to_string()),
                token: Some(token.to_string()),
                acquired_at: Some(acquired_at_ms as f64),
                error: None,
            },
            Err(e) => NativeDelivery {
                request_id,
                lease_id: None,
                lock_path: None,
                token: None,
                acquired_at: None,
                error: Some(e.into()),
            },
        }
    }
}

/// A JS millisecond count as a duration: None for negative, NaN or infinite.
pub(crate) fn none_or_ms(v: f64) -> Option<u64> {
    if v.is_finite() && v >= 0.0 {
        Some(v as u64)
    } else {
        None
    }
}

/// A JS millisecond count: `u64::MAX` (no bound) for negative, NaN or infinite.
pub(crate) fn ms_or_max(v: f64) -> u64 {
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        u64::MAX
    }
}
