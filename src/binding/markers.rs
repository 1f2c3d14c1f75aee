//! The exports of active-session markers.

use napi_derive::napi;

use super::NativeError;
use crate::context::thread;

#[napi(object)]
pub struct MarkerResult {
    pub id: f64,
    pub error: Option<NativeError>,
    /// A dead owner's marker content taken over at that path (its
    /// session_end is the caller's to emit).
    pub recovered: Option<String>,
}

/// Create and OS-lock an active-session marker with `json` as content,
/// taking over a dead owner's marker and never overwriting anything else.
#[napi(no_export, catch_unwind)]
pub fn marker_open(path: String, json: String) -> MarkerResult {
    let o = crate::marker::open(&path, &json, thread());
    match o.id {
        Ok(id) => MarkerResult {
            id: id as f64,
            error: None,
            recovered: o.recovered,
        },
        Err(e) => MarkerResult {
            id: 0.0,
            error: Some(e.into()),
            recovered: o.recovered,
        },
    }
}

/// Rewrite an open marker; `null` on success, else the error.
#[napi(no_export, catch_unwind)]
pub fn marker_update(id: f64, json: String) -> Option<NativeError> {
    crate::marker::update(id as u64, &json)
        .err()
        .map(Into::into)
}

/// Remove an open marker; `true` if it was open.
#[napi(no_export, catch_unwind)]
pub fn marker_close(id: f64) -> bool {
    crate::marker::close(id as u64)
}

#[napi(object)]
pub struct NativeOrphan {
    pub path: String,
    pub content: String,
}

#[napi(object)]
pub struct OrphanScan {
    pub orphans: Vec<NativeOrphan>,
    pub error: Option<NativeError>,
}

/// Markers in `dir` whose lock is free (owner dead); removed when `remove`.
#[napi(no_export, catch_unwind)]
pub fn marker_orphans(dir: String, remove: bool) -> OrphanScan {
    match crate::marker::collect_orphans(&dir, remove) {
        Ok(v) => OrphanScan {
            orphans: v
                .into_iter()
                .map(|o| NativeOrphan {
                    path: o.path,
                    content: o.content,
                })
                .collect(),
            error: None,
        },
        Err(e) => OrphanScan {
            orphans: Vec::new(),
            error: Some(e.into()),
        },
    }
}

/// This file's rarely used exports (see `super::rare_functions`).
pub(super) const RARE: &[(&str, napi::Callback)] = &[
    ("markerOpen", marker_open_c_callback),
    ("markerUpdate", marker_update_c_callback),
    ("markerClose", marker_close_c_callback),
    ("markerOrphans", marker_orphans_c_callback),
];
