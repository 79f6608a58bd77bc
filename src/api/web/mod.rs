//! Web actions (`/api/v1/web/{namespace}/{package|default}/{action}[.{ext}][/{path}]`) and
//! API routes (`/api/{namespace}/{basepath}/{relpath}`): functions on the web without a key.
//!
//! Owns: the translation of a web request into an invoke (context, body rules, CORS, the
//! `require-whisk-auth` check) and of its result into a response; the anonymous throttle's
//! place on the path (before anything is looked up); API management for OpenWhisk's clients
//! (`whisk.system/apimgmt`, [`routes`]).
//! Must never: run an action that is not exported, run one as anyone but its owner, read a
//! body past the payload limit, or tell an unexported action from a missing one.

mod context;
mod response;
mod routes;

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};

use super::body;
use super::query::decode;
use super::response::{ApiError, Body};
use super::throttle::AuthThrottle;
use crate::controller::{Controller, InvokeOutcome, WebAction, WebAuth};
use crate::model::{ActivationStatus, Identity, MAX_PAYLOAD_BYTES};

pub use response::Extension;

/// The header a `require-whisk-auth` secret travels in.
pub(super) const REQUIRE_WHISK_AUTH_HEADER: &str = "x-require-whisk-auth";

/// OpenWhisk's messages.
const ERROR_PROCESSING: &str = "There was an error processing your request.";
const RESPONSE_NOT_READY: &str = "Response not yet ready.";
pub(super) const UNAUTHORIZED: &str = "The supplied authentication is invalid";

/// The methods a web action answers (OpenWhisk's list).
const ALLOWED: &str = "GET, DELETE, POST, PUT, HEAD, OPTIONS, PATCH";

/// OpenWhisk's default CORS answer (`CorsSettings.WebActions`).
const ALLOW_METHODS: &str = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH";
const ALLOW_HEADERS: &str =
    "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent";

/// Who is asking: the authenticated caller when valid credentials came with the request.
#[derive(Debug)]
pub struct Caller {
    pub identity: Option<Identity>,
    pub peer: Option<IpAddr>,
}

fn error_response(e: ApiError) -> Response<Body> {
    e.into_response(&uuid::Uuid::new_v4().simple().to_string())
}

/// Resolves the credentials a web request may carry (a web action asking for
/// `require-whisk-auth: true`, API management) as the keyed API does, failures counted by the
/// same throttle; a request with invalid ones goes on as anonymous, one from a blocked
/// address or key is refused.
pub(super) fn optional_identity(
    c: &Controller,
    req: &Request<Incoming>,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
) -> Result<Option<Identity>, ApiError> {
    if !req.headers().contains_key(hyper::header::AUTHORIZATION) {
        return Ok(None);
    }
    match super::router::authenticate(c, req, throttle, peer) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes one request from the client address's anonymous allowance (authenticated callers
/// have their namespace's limits instead).
pub(super) fn admit_anonymous(throttle: &AuthThrottle, caller: &Caller) -> Result<(), ApiError> {
    if caller.identity.is_some() {
        return Ok(());
    }
    throttle.anonymous(caller.peer).map_err(|wait| {
        let secs = wait.as_secs().max(1);
        tracing::info!(peer = ?caller.peer, "anonymous requests throttled");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many requests without a key from this address; try again in {secs} seconds."
            ),
        )
    })
}

/// Who the request comes from, admitted: refused while its address or key is blocked for
/// failed authentications, or (anonymous) over the address's allowance.
fn admit(
    c: &Controller,
    req: &Request<Incoming>,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
) -> Result<Caller, Box<Response<Body>>> {
    let identity =
        optional_identity(c, req, throttle, peer).map_err(|e| Box::new(error_response(e)))?;
    let caller = Caller { identity, peer };
    admit_anonymous(throttle, &caller).map_err(|e| Box::new(throttled(e)))?;
    Ok(caller)
}

/// Serves a key-less request: `/api/v1/web/...` (a web action, or API management) or
/// `/api/{namespace}{path}` (an API route's URL). `path` is the raw (still encoded) path.
pub async fn handle(
    req: Request<Incoming>,
    c: &Controller,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
    path: &str,
) -> Response<Body> {
    let caller = match admit(c, &req, throttle, peer) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    match path.strip_prefix("/api/v1/web") {
        Some(rest) => web_action(req, c, &caller, rest).await,
        None => {
            let rest = path.strip_prefix("/api").unwrap_or(path).trim_start_matches('/');
            let (ns, route) = rest.split_once('/').unwrap_or((rest, ""));
            routes::gateway(req, c, &caller, ns, &format!("/{route}")).await
        }
    }
}

/// `/api/v1/web/{namespace}/{package}/{action}[.ext][/path]` (`rest`: after `/api/v1/web`).
async fn web_action(
    req: Request<Incoming>,
    c: &Controller,
    caller: &Caller,
    rest: &str,
) -> Response<Body> {
    let mut parts = rest.trim_start_matches('/').splitn(4, '/');
    let segs: Option<Vec<String>> = (0..3)
        .map(|_| parts.next().filter(|s| !s.is_empty()).and_then(|s| decode(s, false)))
        .collect();
    let Some([ns, pkg, action]) = segs.and_then(|v| <[String; 3]>::try_from(v).ok()) else {
        return error_response(ApiError::not_found());
    };
    let tail = parts.next().map(|t| format!("/{t}")).unwrap_or_default();
    if ns == routes::SYSTEM_NAMESPACE && pkg == routes::APIMGMT_PACKAGE {
        return routes::apimgmt(req, c, caller, &action).await;
    }
    let (name, ext) = Extension::split(&action);
    let package = (pkg != "default").then_some(pkg.as_str());
    let web = match c.web_action(&ns, package, name) {
        Ok(w) => w,
        Err(e) => return error_response(e.into()),
    };
    run(req, c, caller, &web, ext, tail).await
}

/// A 429 with `Retry-After`.
fn throttled(e: ApiError) -> Response<Body> {
    let secs: String = e.message.chars().filter(char::is_ascii_digit).collect();
    let mut resp = error_response(e);
    if let Ok(v) = HeaderValue::from_str(if secs.is_empty() { "1" } else { &secs }) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

fn allowed(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::DELETE | Method::POST | Method::PUT | Method::HEAD | Method::OPTIONS
    ) || m.as_str() == "PATCH"
}

/// Runs `web` for the request and answers with its result under `ext`. `ow_path` is the
/// path after the action (`__ow_path`). Every answer carries the default CORS headers unless
/// the action answers OPTIONS itself.
#[tracing::instrument(skip_all, fields(action = %web.fqn, ext = ?ext, anonymous = caller.identity.is_none()))]
pub(super) async fn run(
    req: Request<Incoming>,
    c: &Controller,
    caller: &Caller,
    web: &WebAction,
    ext: Extension,
    ow_path: String,
) -> Response<Body> {
    let cors = (!web.custom_options).then(|| cors_headers(req.headers()));
    // `return` in the block ends the answer, which then gets its CORS headers.
    let mut resp = async move {
        let method = req.method().clone();
        if !allowed(&method) {
            return error_response(ApiError::method_not_allowed(ALLOWED));
        }
        if method == Method::OPTIONS && !web.custom_options {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::OK;
            return r;
        }
        // OPTIONS reaches an action that answers it itself even without the credentials it asks
        // for: a browser's preflight never carries them.
        if method != Method::OPTIONS && !authorized(web, req.headers(), caller) {
            return error_response(ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED));
        }
        let (parts, incoming) = req.into_parts();
        let bytes =
            match body::read(&parts.headers, incoming, MAX_PAYLOAD_BYTES, "a web action").await {
                Ok(b) => b,
                Err(e) => {
                    // Refused unread: the connection cannot carry another request.
                    let mut resp = error_response(e);
                    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                    return resp;
                }
            };
        let headers: Map<String, Value> = parts
            .headers
            .iter()
            .filter(|(n, _)| *n != hyper::header::AUTHORIZATION)
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let user = match (&web.auth, &caller.identity) {
            (WebAuth::Whisk, Some(id)) => Some(id.namespace.to_string()),
            _ => None,
        };
        let request = context::Request {
            method: method.as_str().to_ascii_lowercase(),
            headers,
            path: ow_path,
            query: parts.uri.query().unwrap_or(""),
            content_type: parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            body: &bytes,
            user,
        };
        let params =
            match context::parameters(&request, web.raw_http, |k| web.immutable.contains(k)) {
                Ok(p) => p,
                Err(e) => return error_response(e),
            };
        match c.invoke_web(web, params).await {
            Ok(outcome) => complete(outcome, ext),
            Err(e) => error_response(e.into()),
        }
    }
    .await;
    if let Some(cors) = cors {
        resp.headers_mut().extend(cors);
    }
    resp
}

fn cors_headers(req: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-methods", HeaderValue::from_static(ALLOW_METHODS));
    let allow = req
        .get("access-control-request-headers")
        .cloned()
        .unwrap_or(HeaderValue::from_static(ALLOW_HEADERS));
    h.insert("access-control-allow-headers", allow);
    h
}

fn authorized(web: &WebAction, headers: &HeaderMap, caller: &Caller) -> bool {
    match &web.auth {
        WebAuth::Public => true,
        WebAuth::Whisk => caller.identity.is_some(),
        WebAuth::Secret(s) => {
            headers.get(REQUIRE_WHISK_AUTH_HEADER).is_some_and(|v| v.as_bytes() == s.as_bytes())
        }
        WebAuth::Refused => false,
    }
}

/// The response for an activation's outcome: the result (or an application error's `error`
/// property) under the extension; a failed run is OpenWhisk's 400; a run that outlasts the
/// wait is 202.
fn complete(outcome: InvokeOutcome, ext: Extension) -> Response<Body> {
    let (mut resp, id) = match outcome {
        InvokeOutcome::Accepted(id) => {
            (error_response(ApiError::new(StatusCode::ACCEPTED, RESPONSE_NOT_READY)), id)
        }
        InvokeOutcome::Completed(rec) => {
            let result = &rec.response.result;
            let projected = match rec.response.status {
                ActivationStatus::Success => Some(result),
                ActivationStatus::ApplicationError => result.get("error"),
                _ => None,
            };
            let resp = match (rec.response.status, projected) {
                (ActivationStatus::Success | ActivationStatus::ApplicationError, Some(v)) => {
                    response::transcode(v, ext).unwrap_or_else(error_response)
                }
                (ActivationStatus::Success | ActivationStatus::ApplicationError, None) => {
                    error_response(ApiError::new(
                        StatusCode::NOT_FOUND,
                        response::PROPERTY_NOT_FOUND,
                    ))
                }
                _ => error_response(ApiError::bad_request(ERROR_PROCESSING)),
            };
            (resp, rec.activation_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert("x-openwhisk-activation-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationId, ActivationResponse};
    use serde_json::json;

    fn finished(status: ActivationStatus, result: Value) -> InvokeOutcome {
        let mut rec = crate::testing::activation("guest", "a", 1);
        rec.response = ActivationResponse::new(status, result);
        InvokeOutcome::Completed(Box::new(rec))
    }

    #[test]
    fn outcomes_as_openwhisk_answers_them() {
        let id = ActivationId::generate();
        let r = complete(InvokeOutcome::Accepted(id), Extension::Json);
        assert_eq!(r.status(), StatusCode::ACCEPTED, "a run that outlasts the wait");
        assert_eq!(r.headers()["x-openwhisk-activation-id"], id.to_string());
        let r = complete(
            finished(ActivationStatus::DeveloperError, json!({"error": "x"})),
            Extension::Http,
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = complete(finished(ActivationStatus::InternalError, json!({})), Extension::Json);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = complete(
            finished(ActivationStatus::ApplicationError, json!({"error": {"statusCode": 409}})),
            Extension::Http,
        );
        assert_eq!(r.status(), StatusCode::CONFLICT, "the error property, as .http");
        let r = complete(
            finished(ActivationStatus::ApplicationError, json!({"nope": 1})),
            Extension::Json,
        );
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().contains_key("x-openwhisk-activation-id"));
    }

    #[test]
    fn default_cors_echoes_requested_headers() {
        let mut req = HeaderMap::new();
        assert_eq!(cors_headers(&req)["access-control-allow-headers"], ALLOW_HEADERS);
        req.insert("access-control-request-headers", HeaderValue::from_static("x-a"));
        let h = cors_headers(&req);
        assert_eq!(
            (
                h["access-control-allow-headers"].to_str().unwrap(),
                h["access-control-allow-origin"].to_str().unwrap()
            ),
            ("x-a", "*")
        );
        assert_eq!(h["access-control-allow-methods"], ALLOW_METHODS);
    }
}
