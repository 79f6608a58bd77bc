//! Routing: turns a request into a call on one resource module. Authentication happens here,
//! before anything under `/api/v1/namespaces` is looked at, so an unauthenticated caller
//! learns nothing about what exists.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tracing::Instrument;

use super::body;
use super::query::{decode, Query};
use super::response::{ApiError, Body};
use super::throttle::{AuthThrottle, Subject};
use super::{actions, activations, info, invokers, namespaces, packages, rules, triggers};
use crate::controller::{Controller, ControllerError};
use crate::model::{EntityName, FullyQualifiedName, Identity, MAX_PAYLOAD_BYTES};

/// The invoke body limit: the payload limit plus slack for whitespace, so that a payload just
/// over 1 MB is refused by the controller's exact check with the limit named.
const MAX_INVOKE_BODY: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// The routes a caller may take into another namespace: reading a package (a shared one, or
/// the list of shared ones), listing and reading its actions, running them. Whether the
/// package is shared is the controller's check.
fn shared_route(method: &Method, rest: &[&str], trailing_slash: bool) -> bool {
    match (method, rest) {
        (&Method::GET, ["packages"] | ["packages", _] | ["actions", _, _]) => true,
        (&Method::GET, ["actions", _]) => trailing_slash,
        (&Method::POST, ["actions", _, _]) => true,
        _ => false,
    }
}

/// One action, in the namespace's default package or inside a package: get, create or
/// update, delete, invoke.
async fn action_route(
    req: Request<Incoming>,
    c: &Controller,
    caller: &Identity,
    fqn: FullyQualifiedName,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    match req.method().clone() {
        Method::GET => actions::get(c, caller, &fqn, q),
        Method::PUT => {
            let (parts, b) = req.into_parts();
            let bytes = body::read(&parts.headers, b, actions::MAX_PUT_BODY, "an action").await?;
            actions::put(c, caller, fqn, q, bytes).await
        }
        Method::DELETE => actions::delete(c, fqn).await,
        Method::POST => {
            let (parts, b) = req.into_parts();
            let bytes = body::read(&parts.headers, b, MAX_INVOKE_BODY, "an invoke").await?;
            actions::invoke(c, caller, &fqn, q, bytes).await
        }
        _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE, POST")),
    }
}

/// Handles one request; never fails (errors become OpenWhisk error bodies).
pub async fn handle(
    req: Request<Incoming>,
    controller: Arc<Controller>,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
) -> Response<Body> {
    let span = tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id = tracing::field::Empty);
    // The id is drawn (a getrandom syscall) only when something will show it: the span when
    // debug logging is on, or an error body. A successful invoke at the default level never
    // needs one.
    let request_id = (!span.is_disabled()).then(new_request_id);
    if let Some(id) = &request_id {
        span.record("request_id", id.as_str());
    }
    async move {
        let started = Instant::now();
        let sent_body = declares_body(&req);
        let resp = match route(req, &controller, throttle, peer).await {
            Ok(r) => r,
            Err(e) => {
                let mut resp = match &request_id {
                    Some(id) => e.into_response(id),
                    None => e.into_response(&new_request_id()),
                };
                // A refused request's body may be left unread (a 413 refuses it from its
                // length alone): the connection must not carry another request after it, or
                // a client that reuses it (OpenWhisk's JavaScript client does) writes its next
                // request into a socket the server no longer reads, and loses it.
                if sent_body {
                    resp.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                resp
            }
        };
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(status = resp.status().as_u16(), elapsed_us, "answered");
        resp
    }
    .instrument(span)
    .await
}

/// Whether the request says a body follows (a non-zero length, or chunks).
fn declares_body(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    h.contains_key(hyper::header::TRANSFER_ENCODING)
        || h.get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The id an error body carries as its `code` (OpenWhisk's transaction id).
fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The key uuid a credential names, whether or not the secret is right: failures are counted
/// against it. `Basic base64(uuid:secret)` or a bare `uuid:secret`.
fn presented_uuid(value: &str) -> Option<uuid::Uuid> {
    use base64::Engine;
    let v = value.trim();
    let cred = match v.split_once(' ') {
        Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?)
                .ok()?
        }
        Some(_) => return None,
        None => v.to_owned(),
    };
    uuid::Uuid::parse_str(cred.split_once(':')?.0).ok()
}

pub(super) fn authenticate(
    c: &Controller,
    req: &Request<Incoming>,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
) -> Result<Identity, ApiError> {
    let Some(header) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The resource requires authentication, which was not supplied with the request",
        ));
    };
    let value = header.to_str().ok();
    let mut subjects: Vec<Subject> = Vec::with_capacity(2);
    subjects.extend(peer.map(Subject::Ip));
    subjects.extend(value.and_then(presented_uuid).map(Subject::Key));
    if let Some(left) = throttle.blocked(&subjects) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed authentication attempts; try again in {} seconds.",
                left.as_secs().max(1)
            ),
        ));
    }
    let identity = match value {
        Some(v) => c.authenticate(v)?,
        None => None,
    };
    identity.ok_or_else(|| {
        throttle.failed(&subjects);
        tracing::info!(?peer, "authentication failed");
        ApiError::new(StatusCode::UNAUTHORIZED, "The supplied authentication is invalid")
    })
}

fn name(s: &str) -> Result<EntityName, ApiError> {
    EntityName::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn route(
    req: Request<Incoming>,
    c: &Controller,
    throttle: &AuthThrottle,
    peer: Option<IpAddr>,
) -> Result<Response<Body>, ApiError> {
    let raw_path = req.uri().path().to_owned();
    let segs: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            decode(s, false)
                .ok_or_else(|| ApiError::bad_request("The path is not correctly encoded."))
        })
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();

    match segs.as_slice() {
        [] | ["api", "v1"] => {
            return match method {
                Method::GET => Ok(info::info(c.store().path()).await),
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        // Aggregate counts only (no names, no ids): served without a key, as scrapers expect.
        ["metrics"] => {
            return match method {
                Method::GET => c.metrics().encode().map(super::response::metrics).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding metrics: {e}"),
                    )
                }),
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        // OpenWhisk's invoker health routes, unauthenticated as there: names and states only.
        ["invokers"] => {
            return match method {
                Method::GET => Ok(invokers::list(&c.invokers())),
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        ["invokers", "healthy", "count"] => {
            return match method {
                Method::GET => Ok(invokers::healthy_count(&c.invokers())),
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        // Web actions: no key needed (the web module throttles and authenticates itself).
        // And API routes' URLs (`/api/{namespace}{basepath}{relpath}`).
        ["api", "v1", "web", ..] => {
            return Ok(super::web::handle(req, c, throttle, peer, &raw_path).await);
        }
        ["api", ns, _, ..] if *ns != "v1" => {
            return Ok(super::web::handle(req, c, throttle, peer, &raw_path).await);
        }
        ["api", "v1", "namespaces", ..] => {}
        _ => return Err(ApiError::not_found()),
    }

    let caller = authenticate(c, &req, throttle, peer)?;
    let q = Query::parse(req.uri().query())?;
    let rest = &segs[3..];
    let Some((ns_seg, rest)) = rest.split_first() else {
        return match method {
            Method::GET => Ok(namespaces::list(c, &caller)),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    };
    let (ns, own) = c.path_namespace(&caller, ns_seg)?;
    let trailing_slash = raw_path.ends_with('/');
    // Another namespace: only what a shared package lets anyone read or run; the rest is
    // refused with the answer a missing namespace gets.
    if !own && !shared_route(&method, rest, trailing_slash) {
        return Err(ControllerError::Forbidden(ns_seg.chars().take(256).collect()).into());
    }

    match rest {
        [] => match method {
            Method::GET => namespaces::summary(c, &ns),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["limits"] => match method {
            Method::GET => namespaces::limits(c, &ns),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["actions"] => match method {
            Method::GET => actions::list(c, &ns, &q),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        // `GET .../actions/{package}/`: the package's actions (wsk action list pkg).
        ["actions", package] if trailing_slash && method == Method::GET => {
            actions::list_in_package(c, &caller, &ns, &name(package)?, &q)
        }
        ["actions", action] => {
            let fqn = FullyQualifiedName::new(ns, name(action)?);
            action_route(req, c, &caller, fqn, &q).await
        }
        // The built-in alarms feeds run in the controller (`crate::alarms`).
        ["actions", package, action]
            if method == Method::POST && crate::alarms::feed_of(&ns, package, action).is_some() =>
        {
            let (parts, b) = req.into_parts();
            let bytes = body::read(&parts.headers, b, MAX_INVOKE_BODY, "an invoke").await?;
            triggers::invoke_feed(c, &caller, &ns, package, action, &q, bytes).await
        }
        ["actions", package, action] => {
            let fqn = FullyQualifiedName::in_package(ns, name(package)?, name(action)?);
            action_route(req, c, &caller, fqn, &q).await
        }
        ["packages"] => match method {
            Method::GET => packages::list(c, &caller, &ns, &q),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["packages", package] => {
            let package = name(package)?;
            match method {
                Method::GET => packages::get(c, &caller, &ns, &package),
                Method::PUT => {
                    let (parts, b) = req.into_parts();
                    let bytes =
                        body::read(&parts.headers, b, packages::MAX_PUT_BODY, "a package").await?;
                    packages::put(c, &caller, package, &q, bytes).await
                }
                Method::DELETE => packages::delete(c, ns, package, &q).await,
                _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
            }
        }
        ["activations"] => match method {
            Method::GET => activations::list(c, &ns, &q).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["activations", id] => match method {
            Method::GET => activations::get(c, &ns, id, None).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["activations", id, part @ ("logs" | "result")] => match method {
            Method::GET => activations::get(c, &ns, id, Some(part)).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["triggers"] => match method {
            Method::GET => triggers::list(c, &ns, &q),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["triggers", trigger] => {
            let trigger = name(trigger)?;
            match method {
                Method::GET => triggers::get(c, &ns, &trigger),
                Method::PUT => {
                    let (parts, b) = req.into_parts();
                    let bytes =
                        body::read(&parts.headers, b, triggers::MAX_PUT_BODY, "a trigger").await?;
                    triggers::put(c, &caller, trigger, &q, bytes).await
                }
                Method::DELETE => triggers::delete(c, ns, trigger).await,
                Method::POST => {
                    let (parts, b) = req.into_parts();
                    let bytes = body::read(&parts.headers, b, MAX_INVOKE_BODY, "a fire").await?;
                    triggers::fire(c, &caller, &trigger, bytes).await
                }
                _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE, POST")),
            }
        }
        ["rules"] => match method {
            Method::GET => rules::list(c, &ns, &q),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["rules", rule] => {
            let rule = name(rule)?;
            match method {
                Method::GET => rules::get(c, &ns, &rule),
                Method::PUT | Method::POST => {
                    let put = method == Method::PUT;
                    let (parts, b) = req.into_parts();
                    let bytes =
                        body::read(&parts.headers, b, rules::MAX_PUT_BODY, "a rule").await?;
                    if put {
                        rules::put(c, &caller, rule, &q, bytes).await
                    } else {
                        rules::set_status(c, ns, rule, bytes).await
                    }
                }
                Method::DELETE => rules::delete(c, ns, rule).await,
                _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE, POST")),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}
