//! Request bodies, bounded before buffering: a declared Content-Length over the limit is
//! refused without reading a byte, and a chunked body stops being read at the limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, StatusCode};

use super::response::ApiError;

fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("The request content for {what} exceeds the maximum of {limit} bytes."),
    )
}

/// Reads the whole body if it is at most `limit` bytes.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(what, limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(what, limit)),
        Err(e) => Err(ApiError::bad_request(format!("The request body could not be read: {e}"))),
    }
}
