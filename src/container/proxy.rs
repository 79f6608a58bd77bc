//! Talking to OpenWhisk's action proxy inside an image container: `POST /init` once and
//! `POST /run` per activation on port 8080, over one keep-alive HTTP/1.1 connection.
//!
//! Reaching the port must not give the container a network: the connection is made from the
//! container's own network namespace. A dedicated thread enters it (`setns` on the namespace
//! fd, opened once when the container started), connects to 127.0.0.1:8080 (retrying while
//! the proxy is not listening yet), hands the socket back and exits; the socket stays in the
//! container's namespace, so the host's namespaces never see the port and the container gets
//! nothing but its loopback. When the connection drops it is made again the same way.
//!
//! The bodies are OpenWhisk's: /init takes `{"value": {"name", "main", "code", "binary",
//! "env"}}` with the `__OW_*` environment, /run `{"value": params, "activation_id",
//! "action_name", "namespace", "deadline", ...}`. Responses map as OpenWhisk's
//! `ActivationResponse.processInitResponseContent` and `processRunResponseContent` do, in
//! its words. This module never kills or removes a container; the instance does.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use serde_json::{json, Map, Value};

use crate::launcher::{InitSpec, RunSpec};

/// The port OpenWhisk's action proxies listen on.
pub const PROXY_PORT: u16 = 8080;
/// Pause between connection attempts while the proxy is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(5);

/// OpenWhisk's `Messages.abnormalInitialization`.
pub const ABNORMAL_INIT: &str = "The action did not initialize and exited unexpectedly.";
/// OpenWhisk's `Messages.abnormalRun`.
pub const ABNORMAL_RUN: &str =
    "The action did not produce a valid response and exited unexpectedly.";

/// Why the proxy could not be reached or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot reach the action proxy of container {id} on port {PROXY_PORT}: {source}")]
    Connect { id: String, source: io::Error },
    #[error("the action proxy of container {id} did not start listening within {waited_ms} ms")]
    NotListening { id: String, waited_ms: u64 },
    #[error("the action proxy of container {id} exited before it listened")]
    Exited { id: String },
    #[error("HTTP exchange with the action proxy of container {id} failed: {message}")]
    Http { id: String, message: String },
}

/// A response of the proxy: its status and body (at most the limit it was read with).
#[derive(Debug)]
pub enum Response {
    Complete {
        status: u16,
        body: Bytes,
    },
    /// The body was longer than the limit (its declared length, when it declared one).
    TooLarge {
        size: Option<usize>,
    },
}

/// The connection to one container's proxy.
#[derive(Debug)]
pub struct Proxy {
    id: String,
    /// The leader's pid, to tell a proxy that is not listening yet from one that died.
    pid: u32,
    /// `/proc/<pid>/ns/net`, opened when the container started.
    netns: OwnedFd,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Proxy {
    /// Opens the container's network namespace and connects to its proxy, waiting up to
    /// `within` for it to listen.
    pub async fn connect(id: &str, pid: u32, within: Duration) -> Result<Self, ProxyError> {
        let path = format!("/proc/{pid}/ns/net");
        let netns = std::fs::File::open(&path)
            .map_err(|source| ProxyError::Connect { id: id.to_owned(), source })?;
        let mut proxy = Self { id: id.to_owned(), pid, netns: OwnedFd::from(netns), sender: None };
        proxy.reconnect(within).await?;
        Ok(proxy)
    }

    async fn reconnect(&mut self, within: Duration) -> Result<(), ProxyError> {
        self.sender = None;
        let stream = connect_in_netns(&self.id, &self.netns, self.pid, within).await?;
        let http = |message: String| ProxyError::Http { id: self.id.clone(), message };
        stream.set_nonblocking(true).map_err(|e| http(format!("set_nonblocking: {e}")))?;
        let stream = tokio::net::TcpStream::from_std(stream)
            .map_err(|e| http(format!("registering the socket: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| http(format!("handshake: {e}")))?;
        let id = self.id.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(container = %id, error = %e, "proxy connection ended");
            }
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// POSTs `body` to `path` and reads the response, keeping at most `limit` bytes of it.
    /// A dropped keep-alive connection is made again first (bounded by `reconnect_within`).
    pub async fn post(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
        limit: usize,
        reconnect_within: Duration,
    ) -> Result<Response, ProxyError> {
        let closed = self.sender.as_ref().map_or(true, |s| s.is_closed());
        if closed {
            self.reconnect(reconnect_within).await?;
        }
        let id = self.id.clone();
        let http = |message: String| ProxyError::Http { id: id.clone(), message };
        let sender = self.sender.as_mut().ok_or_else(|| http("no connection".to_owned()))?;
        sender.ready().await.map_err(|e| http(format!("connection not ready: {e}")))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(format!("building the request: {e}")))?;
        let response = sender.send_request(request).await.map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            // The rest of the body would be left on the connection: start a new one next time.
            self.sender = None;
            return Ok(Response::TooLarge { size: declared });
        }
        match Limited::new(response.into_body(), limit).collect().await {
            Ok(collected) => Ok(Response::Complete { status, body: collected.to_bytes() }),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                self.sender = None;
                Ok(Response::TooLarge { size: declared })
            }
            Err(e) => Err(http(format!("reading the response: {e}"))),
        }
    }
}

/// Connects to the proxy from inside the container's network namespace (see the module doc).
async fn connect_in_netns(
    id: &str,
    netns: &OwnedFd,
    pid: u32,
    within: Duration,
) -> Result<TcpStream, ProxyError> {
    let connect_err = |source| ProxyError::Connect { id: id.to_owned(), source };
    let fd = netns.try_clone().map_err(connect_err)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let owner = id.to_owned();
    std::thread::Builder::new()
        .name("hearth-netns".to_owned())
        .spawn(move || {
            let _ = tx.send(connect_blocking(&owner, &fd, pid, within));
        })
        .map_err(connect_err)?;
    rx.await.map_err(|_| connect_err(io::Error::other("the connecting thread ended early")))?
}

/// On a thread of its own, which it leaves in the container's network namespace and which
/// then ends: enters the namespace and connects to the proxy's port on loopback.
fn connect_blocking(
    id: &str,
    netns: &OwnedFd,
    pid: u32,
    within: Duration,
) -> Result<TcpStream, ProxyError> {
    let connect_err = |source| ProxyError::Connect { id: id.to_owned(), source };
    // SAFETY: setns with a namespace fd we own and a constant flag; it changes only the
    // calling thread's network namespace, and this thread exits right after connecting.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(connect_err(io::Error::last_os_error()));
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PROXY_PORT));
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        if left.is_zero() {
            let waited_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
            return Err(ProxyError::NotListening { id: id.to_owned(), waited_ms });
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if !alive(pid) {
                    return Err(ProxyError::Exited { id: id.to_owned() });
                }
                std::thread::sleep(CONNECT_RETRY);
            }
            Err(e) => return Err(connect_err(e)),
        }
    }
}

/// Whether process `pid` still runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The `/init` body, as OpenWhisk's `Container.initialize` sends it, with the action's `code`
/// as stored (a zip base64-encoded). Its `env` holds what is known before the first run:
/// `__OW_ACTION_NAME` and `__OW_NAMESPACE` of the action (the per-activation values come
/// with each /run).
pub fn init_body(init: &InitSpec, code: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let code = if init.binary {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(code)
    } else {
        String::from_utf8_lossy(code).into_owned()
    };
    let namespace = init.action.split('/').next().unwrap_or_default();
    let env = json!({
        "__OW_ACTION_NAME": format!("/{}", init.action),
        "__OW_NAMESPACE": namespace,
    });
    serde_json::to_vec(&json!({
        "value": {
            "name": init.action,
            "main": init.entry_point,
            "code": code,
            "binary": init.binary,
            "env": env,
        }
    }))
}

/// The `/run` body: the parameters as `value`, and each `__OW_*` value under its name in
/// lower case (`activation_id`, `action_name`, `namespace`, `deadline`, ...), as OpenWhisk's
/// `Container.run` sends them.
pub fn run_body(run: &RunSpec) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Map::with_capacity(run.env.len() + 1);
    body.insert("value".to_owned(), Value::Object(run.params.clone()));
    for (k, v) in &run.env {
        body.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
    }
    serde_json::to_vec(&body)
}

/// OpenWhisk's `Messages.invalidInitResponse`.
fn invalid_init_response(body: &str) -> String {
    if body.is_empty() {
        "The action failed during initialization".to_owned()
    } else {
        format!("The action failed during initialization: {body}")
    }
}

/// OpenWhisk's `Messages.invalidRunResponse`.
fn invalid_run_response(body: &str) -> String {
    if body.is_empty() {
        "The action did not produce a valid JSON or JSON Array response".to_owned()
    } else {
        format!("The action did not produce a valid JSON or JSON Array response: {body}")
    }
}

/// An error value as a developer error's message: a string as it is, anything else as JSON.
fn error_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The developer error of an init the proxy refused (`processInitResponseContent`), or None
/// when it succeeded (status 200).
pub fn init_outcome(status: u16, body: &[u8]) -> Option<String> {
    if status == 200 {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    Some(match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => match fields.get("error") {
            Some(e) => error_text(e),
            None => invalid_init_response(&text),
        },
        _ => invalid_init_response(&text),
    })
}

/// How a run's response maps (`processRunResponseContent`).
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// A result: an object (with an `error` field it is an application error) or an array.
    Result(Value),
    /// A developer error in OpenWhisk's words.
    Developer(String),
}

pub fn run_outcome(status: u16, body: &[u8]) -> RunOutcome {
    let text = || String::from_utf8_lossy(body).into_owned();
    match serde_json::from_slice::<Value>(body) {
        Ok(result @ Value::Object(_)) if status == 200 => RunOutcome::Result(result),
        Ok(Value::Object(fields)) => match fields.get("error") {
            Some(e) => RunOutcome::Developer(error_text(e)),
            None => RunOutcome::Developer(invalid_run_response(&text())),
        },
        Ok(result @ Value::Array(_)) if status == 200 => RunOutcome::Result(result),
        _ => RunOutcome::Developer(invalid_run_response(&text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_responses_map_as_openwhisk() {
        assert_eq!(init_outcome(200, br#"{"ok":true}"#), None);
        assert_eq!(init_outcome(502, br#"{"error":"bad code"}"#).as_deref(), Some("bad code"));
        assert_eq!(
            init_outcome(500, b"boom").as_deref(),
            Some("The action failed during initialization: boom")
        );
        assert_eq!(
            init_outcome(500, br#"{"x":1}"#).as_deref(),
            Some(r#"The action failed during initialization: {"x":1}"#)
        );
    }

    #[test]
    fn run_responses_map_as_openwhisk() {
        assert_eq!(run_outcome(200, br#"{"a":1}"#), RunOutcome::Result(json!({"a":1})));
        assert_eq!(
            run_outcome(200, br#"{"error":"app"}"#),
            RunOutcome::Result(json!({"error":"app"}))
        );
        assert_eq!(run_outcome(200, b"[1,2]"), RunOutcome::Result(json!([1, 2])));
        assert_eq!(
            run_outcome(502, br#"{"error":"An error has occurred: x"}"#),
            RunOutcome::Developer("An error has occurred: x".into())
        );
        assert_eq!(
            run_outcome(200, b"42"),
            RunOutcome::Developer(
                "The action did not produce a valid JSON or JSON Array response: 42".into()
            )
        );
        assert_eq!(
            run_outcome(500, b""),
            RunOutcome::Developer(
                "The action did not produce a valid JSON or JSON Array response".into()
            )
        );
    }

    #[test]
    fn bodies_carry_openwhisks_fields() {
        let init =
            InitSpec { action: "guest/hello".into(), entry_point: "main".into(), binary: true };
        let v: Value = serde_json::from_slice(&init_body(&init, b"PK").unwrap()).unwrap();
        assert_eq!(v["value"]["code"], "UEs=");
        assert_eq!(v["value"]["env"]["__OW_ACTION_NAME"], "/guest/hello");
        assert_eq!(v["value"]["binary"], true);
        assert_eq!(v["value"]["env"]["__OW_NAMESPACE"], "guest");
        let mut params = Map::new();
        params.insert("name".into(), json!("Ada"));
        let run = RunSpec {
            params,
            env: vec![("ACTIVATION_ID".into(), "abc".into())],
            timeout: Duration::from_secs(1),
            log_limit: 10,
            result_limit: 10,
        };
        let v: Value = serde_json::from_slice(&run_body(&run).unwrap()).unwrap();
        assert_eq!(v, json!({"value": {"name": "Ada"}, "activation_id": "abc"}));
    }
}
