//! The client's one way to talk to the server: a JSON request over HTTP/1.1 with basic auth.
//!
//! Owns connection set-up (hyper 1's `client::conn::http1` over a tokio `TcpStream`, driven by
//! a current-thread runtime: one command, one thread), the URL layout under `/api/v1`,
//! percent-encoding of path segments and queries, timeouts, and the wording of error answers.
//! It must never decide what a command prints, and never log the key.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::config::{ApiHost, Config};
use super::error::CliError;

/// The server holds a blocking invoke for at most 60 s; ten more cover the transfer, so the
/// default never cuts off an answer the server is still allowed to give.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(70);
/// Connecting is separate from waiting for an answer: a dead host should fail fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a request is about, for wording errors (`action 'x' not found`).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: &'static str,
    pub name: &'a str,
}

/// A complete answer.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    /// `x-openwhisk-activation-id`, present on every invoke answer.
    pub activation_id: Option<String>,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON, or an error naming the request.
    pub fn json(&self, what: &str) -> Result<Value, CliError> {
        serde_json::from_slice(&self.body).map_err(|e| CliError::BadResponse {
            what: what.to_owned(),
            message: format!("{} (status {})", e, self.status.as_u16()),
        })
    }

    /// The body as text, for printing it raw (`--json`).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Words a non-2xx answer as one line. OpenWhisk's error bodies are
    /// `{"error": "...", "code": "<transaction id>"}`; the server's text is kept except where
    /// a fixed sentence says more (not found, conflict, bad key).
    pub fn error(&self, subject: Option<Subject<'_>>) -> CliError {
        let status = self.status.as_u16();
        let server_text = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| {
                let t = String::from_utf8_lossy(&self.body).trim().to_owned();
                (!t.is_empty() && t.len() <= 200 && !t.contains('\n')).then_some(t)
            })
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("error").to_lowercase());
        let message = match (status, subject) {
            (404, Some(s)) => format!("{} '{}' not found", s.kind, s.name),
            (409, Some(s)) if s.kind == "action" => format!(
                "{} '{}' already exists; use `hearth action update` to change it",
                s.kind, s.name
            ),
            (409, Some(s)) => format!("{} '{}' already exists", s.kind, s.name),
            (401, _) => format!(
                "the server did not accept the key: {server_text}; check --auth, HEARTH_AUTH or AUTH= in the config file"
            ),
            _ => server_text,
        };
        CliError::Server { status, message }
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so names with spaces or
/// `@` and free-form query values reach the server as typed.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path and query of an API request: `{base}/api/v1/{segments...}?{query}`.
pub fn api_path(apihost: &ApiHost, segments: &[&str], query: &[(&str, String)]) -> String {
    let mut p = format!("{}/api/v1", apihost.base_path);
    for s in segments {
        p.push('/');
        p.push_str(&encode(s));
    }
    for (i, (k, v)) in query.iter().enumerate() {
        p.push(if i == 0 { '?' } else { '&' });
        p.push_str(&encode(k));
        p.push('=');
        p.push_str(&encode(v));
    }
    p
}

/// A client for one command. A fresh connection per request keeps it simple and correct
/// with servers that close idle connections; on loopback a connect costs tens of µs.
#[derive(Debug)]
pub struct Client {
    apihost: ApiHost,
    auth: HeaderValue,
    timeout: Duration,
    tokio: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(config: &Config, timeout: Duration) -> Result<Self, CliError> {
        let token = base64::engine::general_purpose::STANDARD.encode(config.auth.to_string());
        let mut auth = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|e| CliError::Usage(format!("the key cannot go in a header: {e}")))?;
        auth.set_sensitive(true);
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
        Ok(Self { apihost: config.apihost.clone(), auth, timeout, tokio })
    }

    pub fn apihost(&self) -> &ApiHost {
        &self.apihost
    }

    /// Sends one request and reads the whole answer; non-2xx answers are returned, not
    /// turned into errors, because some (502 with an activation, 202) carry a result.
    pub fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Response, CliError> {
        let path = api_path(&self.apihost, segments, query);
        let span = tracing::debug_span!("request", %method, %path);
        let _enter = span.enter();
        let started = Instant::now();
        tracing::debug!(apihost = %self.apihost, "sending");
        let addr = self.apihost.authority();
        let body = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| {
                CliError::Usage(format!("the request body cannot be encoded: {e}"))
            })?),
            None => Bytes::new(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(&path)
            .header(HOST, &addr)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("hearth-cli/", env!("CARGO_PKG_VERSION")));
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body)).map_err(|e| CliError::Protocol {
            addr: addr.clone(),
            message: format!("cannot build the request for {path}: {e}"),
        })?;
        let exchange = send(&self.apihost, request);
        let result = self.tokio.block_on(async {
            tokio::time::timeout(self.timeout, exchange).await.unwrap_or(Err(SendError::Timeout))
        });
        let response = match result {
            Ok(r) => r,
            Err(SendError::Connect(source)) => return Err(CliError::Connect { addr, source }),
            Err(SendError::Timeout) => return Err(CliError::Timeout { addr, after: self.timeout }),
            Err(SendError::Protocol(message)) => return Err(CliError::Protocol { addr, message }),
        };
        tracing::debug!(
            status = response.status.as_u16(),
            bytes = response.body.len(),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "response"
        );
        Ok(response)
    }
}

/// Why an exchange failed, before it is given the address for the user's message.
enum SendError {
    Connect(std::io::Error),
    Timeout,
    Protocol(String),
}

async fn send(apihost: &ApiHost, request: Request<Full<Bytes>>) -> Result<Response, SendError> {
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((apihost.host.as_str(), apihost.port)),
    )
    .await
    .map_err(|_| SendError::Timeout)?
    .map_err(SendError::Connect)?;
    // Requests are small and answered at once; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Protocol(e.to_string()))?;
    // The connection future drives the socket; it ends when the answer is read and the
    // sender is dropped, or with the runtime when the command ends.
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    });
    let answer =
        sender.send_request(request).await.map_err(|e| SendError::Protocol(e.to_string()))?;
    let status = answer.status();
    let activation_id = answer
        .headers()
        .get("x-openwhisk-activation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| SendError::Protocol(format!("reading the answer: {e}")))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Response { status, activation_id, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::Source;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            activation_id: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn paths_are_encoded() {
        let h = ApiHost::parse("http://127.0.0.1:3233/proxy", &Source::Flag).unwrap();
        let p = api_path(
            &h,
            &["namespaces", "_", "actions", "my action@x"],
            &[("blocking", "true".into()), ("name", "a/b&c".into())],
        );
        assert_eq!(
            p,
            "/proxy/api/v1/namespaces/_/actions/my%20action%40x?blocking=true&name=a%2Fb%26c"
        );
        let root = ApiHost::parse("127.0.0.1:3233", &Source::Flag).unwrap();
        assert_eq!(api_path(&root, &["namespaces"], &[]), "/api/v1/namespaces");
    }

    #[test]
    fn error_wording() {
        let nf = response(404, r#"{"error":"The requested resource does not exist.","code":"x1"}"#)
            .error(Some(Subject { kind: "action", name: "x" }));
        assert_eq!(nf.to_string(), "action 'x' not found (404)");
        let conflict = response(409, r#"{"error":"resource already exists"}"#)
            .error(Some(Subject { kind: "action", name: "hello" }));
        assert!(conflict.to_string().contains("already exists; use `hearth action update`"));
        let auth =
            response(401, r#"{"error":"The supplied authentication is invalid"}"#).error(None);
        assert!(auth.to_string().starts_with("the server did not accept the key"), "{auth}");
        assert!(auth.to_string().ends_with("(401)"));
        let big = response(413, r#"{"error":"The request content was malformed: too large"}"#)
            .error(Some(Subject { kind: "action", name: "x" }));
        assert_eq!(big.to_string(), "The request content was malformed: too large (413)");
        let plain = response(500, "").error(None);
        assert_eq!(plain.to_string(), "internal server error (500)");
        let text = response(503, "invoker unavailable").error(None);
        assert_eq!(text.to_string(), "invoker unavailable (503)");
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop a listener: its port is now (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = crate::cli::config::resolve(&crate::cli::config::Inputs {
            flag_apihost: Some(format!("127.0.0.1:{port}")),
            ..Default::default()
        })
        .unwrap();
        let client = Client::new(&config, Duration::from_secs(2)).unwrap();
        let e = client.request(Method::GET, &["namespaces"], &[], None).unwrap_err();
        assert!(matches!(e, CliError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")));
    }
}
