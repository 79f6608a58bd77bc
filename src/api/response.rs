//! Response shapes: JSON bodies, OpenWhisk's error body, and the mapping from controller
//! errors to status codes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::controller::ControllerError;

pub type Body = Full<Bytes>;

/// An error answered to the client as `{"error": message, "code": request id}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For 405: the methods the resource answers.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), allow: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "The requested resource does not exist.")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "The requested method is not allowed for this resource.".into(),
            allow: Some(allow),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = serde_json::json!({ "error": self.message, "code": request_id });
        let mut resp = json(self.status, &body);
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hearth\""),
            );
        }
        resp
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        let status = match &e {
            ControllerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControllerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ControllerError::NotFound(_) => StatusCode::NOT_FOUND,
            ControllerError::Conflict(_) => StatusCode::CONFLICT,
            ControllerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ControllerError::Overloaded(_) | ControllerError::Throttled(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ControllerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControllerError::Store(_) | ControllerError::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

/// A JSON response with `Content-Type: application/json`.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "serializing a response failed");
            return raw_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"The response could not be serialized."}"#.to_vec(),
            );
        }
    };
    raw_json(status, bytes)
}

fn raw_json(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The metrics exposition, in the OpenMetrics text format Prometheus scrapes.
pub fn metrics(text: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
