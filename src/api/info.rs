//! `GET /` and `GET /api/v1`: what this server is, its limits and its runtimes, as OpenWhisk
//! answers them. No authentication, as in OpenWhisk.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::response::{json, Body};
use crate::model::{
    BLACKBOX, LOGS_MAX_MB, LOGS_MIN_MB, MAX_CODE_BYTES, MAX_PAYLOAD_BYTES, MEMORY_MAX_MB,
    MEMORY_MIN_MB, NATIVE_IMAGE, TIMEOUT_MAX_MS, TIMEOUT_MIN_MS,
};

const MB: u64 = 1024 * 1024;

/// One runtime as OpenWhisk's manifest lists it; `image` only where one is named (blackbox:
/// the skeleton whose contract hearth honours), as hearth's interpreters are the host's.
fn runtime(kind: &str, image: Option<&str>) -> Value {
    let mut r = json!({
        "kind": kind, "default": true, "deprecated": false, "attached": false,
        "requireMain": false,
    });
    if let Some(image) = image {
        r["image"] = json!(image);
    }
    r
}

/// The info document for both paths.
pub fn info() -> Response<Body> {
    let body = json!({
        "description": "hearth: a serverless function platform in the Apache OpenWhisk model",
        "api_paths": ["/api/v1"],
        "build": env!("CARGO_PKG_VERSION"),
        "buildno": env!("CARGO_PKG_VERSION"),
        "limits": {
            "min_action_duration": TIMEOUT_MIN_MS,
            "max_action_duration": TIMEOUT_MAX_MS,
            "min_action_memory": MEMORY_MIN_MB * MB,
            "max_action_memory": MEMORY_MAX_MB * MB,
            "min_action_logs": LOGS_MIN_MB * MB,
            "max_action_logs": LOGS_MAX_MB * MB,
            "max_action_payload": MAX_PAYLOAD_BYTES,
            "max_action_code": MAX_CODE_BYTES,
            "concurrent_actions": 1,
        },
        "runtimes": {
            "python": [runtime("python:3", None)],
            "nodejs": [runtime("nodejs:20", None)],
            // Native executables in OpenWhisk's skeleton contract; other images are refused.
            "blackbox": [runtime(BLACKBOX, Some(NATIVE_IMAGE))],
        },
    });
    json(StatusCode::OK, &body)
}
