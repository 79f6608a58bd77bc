//! `GET /` and `GET /api/v1`: what this server is, its limits and its runtimes, as OpenWhisk
//! answers them, plus the runtime images imported on this host. No authentication, as in
//! OpenWhisk.

use std::path::{Path, PathBuf};

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::response::{json, Body};
use crate::model::{
    BLACKBOX, CONCURRENCY_MAX, CONCURRENCY_MIN, LOGS_MAX_MB, LOGS_MIN_MB, MAX_CODE_BYTES,
    MAX_PAYLOAD_BYTES, MEMORY_MAX_MB, MEMORY_MIN_MB, NATIVE_IMAGE, TIMEOUT_MAX_MS, TIMEOUT_MIN_MS,
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

/// The images of the store in `images_dir` (`<data-dir>/images`), as `[{names, digest,
/// size}]`; empty when there is no store. Read on a blocking thread: a few small files, off
/// the async workers. A store that cannot be read is logged and shown empty, as this
/// document is informational.
async fn images(images_dir: PathBuf) -> Value {
    let list = tokio::task::spawn_blocking(move || {
        let store = crate::image::ImageStore::open_existing(&images_dir)?;
        store.map(|s| s.list()).transpose()
    })
    .await;
    match list {
        Ok(Ok(list)) => list
            .unwrap_or_default()
            .iter()
            .map(|i| json!({"names": i.names, "digest": i.digest, "size": i.size_bytes}))
            .collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot list the image store");
            json!([])
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing the image store panicked");
            json!([])
        }
    }
}

/// The info document for both paths; `data_dir` is the daemon's (its image store is in
/// `images/` below it).
pub async fn info(data_dir: &Path) -> Response<Body> {
    let images = images(crate::image::host_dir(data_dir)).await;
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
            "min_action_concurrency": CONCURRENCY_MIN,
            "max_action_concurrency": CONCURRENCY_MAX,
        },
        "runtimes": {
            "python": [runtime("python:3", None)],
            "nodejs": [runtime("nodejs:20", None)],
            // Native executables in OpenWhisk's skeleton contract; other images are refused.
            "blackbox": [runtime(BLACKBOX, Some(NATIVE_IMAGE))],
        },
        "images": images,
    });
    json(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::image::testkit::{layer_tar, write_layout, Member};
    use crate::image::ImageStore;

    async fn body(data_dir: &Path) -> Value {
        let r = info(data_dir).await;
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn lists_the_imported_images() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(body(tmp.path()).await["images"], json!([]), "no store yet");
        let layout = tmp.path().join("layout");
        write_layout(&layout, &[layer_tar(&[Member::File("proxy", b"p")])], false, None);
        let store = ImageStore::open(&tmp.path().join("images")).unwrap();
        let imported = store.import_layout(&layout, Some("org/app:1")).unwrap();
        let images = body(tmp.path()).await["images"].clone();
        assert_eq!(
            images,
            json!([{"names": ["docker.io/org/app:1"], "digest": imported.digest, "size": 1}])
        );
    }
}
