//! End-to-end tests of the `hearth` binary against `FakeWhisk`: a test double of the
//! OpenWhisk REST API at the HTTP seam, written here. It records every request the CLI sends
//! (method, path, query, headers, body) and answers as OpenWhisk would, so these tests check
//! the wire contract and the CLI's output and exit codes. The real server is exercised by
//! the end-to-end suite.

// Test helpers outside #[test] functions: a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use hearth::model::GUEST_KEY;
use serde_json::{json, Value};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    /// Decoded path.
    path: String,
    /// Decoded query pairs, in order.
    query: Vec<(String, String)>,
    /// Header names lowercased.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Recorded {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    fn basic_auth(&self) -> String {
        let h = self.headers.get("authorization").expect("authorization header");
        let token = h.strip_prefix("Basic ").expect("basic auth");
        let raw = base64::engine::general_purpose::STANDARD.decode(token).unwrap();
        String::from_utf8(raw).unwrap()
    }
}

/// The fake's answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, headers: vec![], body: body.to_string(), delay: Duration::ZERO }
}

/// A reply carrying `x-openwhisk-activation-id`, as every invoke answer does.
fn invoke_reply(status: u16, body: Value) -> Reply {
    let mut r = reply(status, body);
    r.headers.push(("x-openwhisk-activation-id", ID.into()));
    r
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// The OpenWhisk test double: one thread, one connection at a time (the CLI opens one per
/// request), `Connection: close` on every answer.
struct FakeWhisk {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Recorded { method, path: decode(path), query, headers, body })
}

impl FakeWhisk {
    fn start(handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = conn else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let Some(req) = read_request(&stream) else { continue };
                let n = {
                    let mut r = reqs.lock().unwrap();
                    r.push(req.clone());
                    r.len() - 1
                };
                let rep = handler(&req, n);
                std::thread::sleep(rep.delay);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    rep.status,
                    rep.body.len()
                );
                for (k, v) in &rep.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(rep.body.as_bytes());
            }
        });
        Self { port, requests, stop, thread: Some(thread) }
    }

    fn apihost(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn only_request(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected exactly one request, got {r:?}");
        r.into_iter().next().unwrap()
    }
}

impl Drop for FakeWhisk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A scratch directory for code files and configs, removed when dropped.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Runs the binary with a clean environment: no inherited HEARTH_* and a HOME without config
/// (an `env` entry for HOME replaces it).
fn hearth_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(args)
        .env_remove("HEARTH_APIHOST")
        .env_remove("HEARTH_AUTH")
        .env_remove("HEARTH_CONFIG")
        .env_remove("WSK_CONFIG_FILE")
        .env("HOME", home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn hearth(server: &FakeWhisk, args: &[&str]) -> Output {
    hearth_env(&[("HEARTH_APIHOST", &server.apihost())], args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn action_json(name: &str, version: &str) -> Value {
    json!({
        "namespace": "guest", "name": name, "version": version, "publish": false,
        "exec": {"kind": "python:3", "binary": false},
        "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1},
        "parameters": [], "annotations": [{"key": "exec", "value": "python:3"}],
        "updated": 1_700_000_000_000u64,
    })
}

const ID: &str = "44794bd6aab74415b4e42a308d880e5b";

fn activation_json(status: &str, code: u8, result: Value) -> Value {
    json!({
        "namespace": "guest", "name": "hello", "subject": "guest", "activationId": ID,
        "start": 1_700_000_000_000u64, "end": 1_700_000_000_034u64, "duration": 34,
        "statusCode": code,
        "response": {"status": status, "statusCode": code, "success": code == 0, "result": result},
        "logs": ["2024-01-01T00:00:00.000Z stdout: hello from the action"],
        "annotations": [
            {"key": "path", "value": "guest/hello"}, {"key": "kind", "value": "python:3"},
            {"key": "waitTime", "value": 3},
        ],
        "version": "0.0.1", "publish": false,
    })
}

// ---------------------------------------------------------------- actions

#[test]
fn action_create_sends_put_with_exec_limits_params_and_guest_auth() {
    let server = FakeWhisk::start(|_, _| reply(200, action_json("hello", "0.0.1")));
    let s = Scratch::new();
    let code_file =
        s.file("hello.py", b"def main(args):\n    return {'greeting': 'hi ' + args['name']}\n");
    let o = hearth(
        &server,
        &[
            "action",
            "create",
            "hello",
            code_file.to_str().unwrap(),
            "-p",
            "name",
            "Ada",
            "-p",
            "n",
            "5",
            "--memory",
            "128",
            "--timeout",
            "3000",
            "-a",
            "description",
            "greets",
            "--web",
            "false",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: created action hello\n");
    let r = server.only_request();
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/api/v1/namespaces/_/actions/hello");
    assert_eq!(r.q("overwrite"), Some("false"));
    assert_eq!(r.basic_auth(), GUEST_KEY);
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "exec": {"kind": "python:3", "binary": false,
                     "code": "def main(args):\n    return {'greeting': 'hi ' + args['name']}\n"},
            "limits": {"memory": 128, "timeout": 3000},
            "parameters": [{"key": "name", "value": "Ada"}, {"key": "n", "value": 5}],
            // `--web false` as wsk sends it: the three web annotations, off.
            "annotations": [{"key": "description", "value": "greets"},
                            {"key": "web-export", "value": false},
                            {"key": "raw-http", "value": false},
                            {"key": "final", "value": false}],
        })
    );
}

#[test]
fn action_update_without_file_sends_only_the_changes() {
    let server = FakeWhisk::start(|_, _| reply(200, action_json("hello", "0.0.2")));
    let s = Scratch::new();
    let p = s.file("p.json", br#"{"greeting": "hi", "name": "file"}"#);
    let o = hearth(
        &server,
        &["action", "update", "hello", "-P", p.to_str().unwrap(), "-p", "name", "Ada"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: updated action hello\n");
    let r = server.only_request();
    assert_eq!((r.method.as_str(), r.q("overwrite")), ("PUT", Some("true")));
    let body = r.json();
    assert!(body.get("exec").is_none() && body.get("limits").is_none(), "{body}");
    let mut params = body["parameters"].as_array().unwrap().clone();
    params.sort_by_key(|kv| kv["key"].as_str().unwrap().to_owned());
    assert_eq!(
        params,
        [json!({"key": "greeting", "value": "hi"}), json!({"key": "name", "value": "Ada"})]
    );
}

#[test]
fn zip_goes_base64_and_needs_a_kind() {
    let server = FakeWhisk::start(|_, _| reply(200, action_json("z", "0.0.1")));
    let s = Scratch::new();
    let zip = s.file("bundle.zip", &[0x50, 0x4b, 0x05, 0x06, 0, 0]);
    let o = hearth(&server, &["action", "create", "z", zip.to_str().unwrap()]);
    assert_eq!(code(&o), 64);
    assert!(stderr(&o).starts_with("error: ") && stderr(&o).contains("--kind"), "{}", stderr(&o));
    assert!(server.requests().is_empty(), "nothing may be sent for a usage error");
    let o = hearth(
        &server,
        &["action", "create", "z", zip.to_str().unwrap(), "--kind", "nodejs:20", "--main", "run"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        server.only_request().json()["exec"],
        json!({"kind": "nodejs:20", "code": "UEsFBgAA", "binary": true, "main": "run"})
    );
}

#[test]
fn create_conflict_and_get_not_found_are_one_line_errors() {
    let server = FakeWhisk::start(|r, _| match r.method.as_str() {
        "PUT" => reply(409, json!({"error": "resource already exists", "code": "t1"})),
        _ => reply(404, json!({"error": "The requested resource does not exist.", "code": "t2"})),
    });
    let s = Scratch::new();
    let f = s.file("hello.js", b"function main() { return {}; }");
    let o = hearth(&server, &["action", "create", "hello", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: action 'hello' already exists; use `hearth action update` to change it (409)\n"
    );
    assert_eq!(server.requests()[0].json()["exec"]["kind"], "nodejs:20");
    let o = hearth(&server, &["action", "get", "x"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), "error: action 'x' not found (404)\n");
}

#[test]
fn action_get_with_and_without_code() {
    let server = FakeWhisk::start(|_, _| reply(200, action_json("hello", "0.0.3")));
    let o = hearth(&server, &["action", "get", "hello", "--code", "false"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let (first, rest) = out.split_once('\n').unwrap();
    assert_eq!(first, "ok: got action hello");
    assert_eq!(serde_json::from_str::<Value>(rest).unwrap()["version"], "0.0.3");
    let o = hearth(&server, &["action", "get", "/guest/hello"]);
    assert_eq!(code(&o), 0);
    let reqs = server.requests();
    assert_eq!(reqs[0].q("code"), Some("false"));
    assert_eq!(
        (reqs[1].path.as_str(), reqs[1].q("code")),
        ("/api/v1/namespaces/guest/actions/hello", Some("true"))
    );
}

#[test]
fn action_list_table_json_and_paging() {
    let server = FakeWhisk::start(|_, _| {
        reply(
            200,
            json!([action_json("hello", "0.0.1"), action_json("a-much-longer-name", "0.0.12")]),
        )
    });
    let o = hearth(&server, &["action", "list", "--limit", "2", "--skip", "4"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("KIND"));
    assert!(lines[0].contains("VERSION"));
    assert!(lines[1].starts_with("/guest/hello ") && lines[1].contains("python:3"));
    assert!(lines[2].starts_with("/guest/a-much-longer-name  python:3  0.0.12"), "{out}");
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/api/v1/namespaces/_/actions"));
    assert_eq!((r.q("limit"), r.q("skip")), (Some("2"), Some("4")));
    let o = hearth(&server, &["action", "list", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(server.requests()[1].q("limit"), Some("30"));
}

#[test]
fn action_delete_and_names_are_encoded() {
    let server = FakeWhisk::start(|_, _| reply(200, action_json("my action", "0.0.1")));
    let o = hearth(&server, &["action", "delete", "my action"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: deleted action my action\n");
    let r = server.only_request();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("DELETE", "/api/v1/namespaces/_/actions/my action")
    );
    let o = hearth(&server, &["action", "delete", "pkg/x/y"]);
    assert_eq!(code(&o), 64);
    assert!(stderr(&o).contains("at most one package"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- invoke

#[test]
fn invoke_result_prints_only_the_result() {
    let server = FakeWhisk::start(|r, _| {
        let name = r.json()["name"].as_str().unwrap_or("?").to_owned();
        invoke_reply(200, json!({"greeting": format!("hi {name}")}))
    });
    let o = hearth(&server, &["action", "invoke", "hello", "-p", "name", "Ada", "--result"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\n  \"greeting\": \"hi Ada\"\n}\n");
    let r = server.only_request();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v1/namespaces/_/actions/hello")
    );
    assert_eq!((r.q("blocking"), r.q("result")), (Some("true"), Some("true")));
    assert_eq!(r.json(), json!({"name": "Ada"}));
}

#[test]
fn invoke_non_blocking_prints_the_id() {
    let server = FakeWhisk::start(|_, _| invoke_reply(202, json!({"activationId": ID})));
    let o = hearth(&server, &["action", "invoke", "hello"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("ok: invoked /_/hello with id {ID}\n"));
    let r = server.only_request();
    assert_eq!((r.q("blocking"), r.q("result")), (Some("false"), Some("false")));
    assert_eq!(r.json(), json!({}));
    let o = hearth(&server, &["action", "invoke", "hello", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap(), json!({"activationId": ID}));
}

#[test]
fn invoke_blocking_prints_the_activation() {
    let server = FakeWhisk::start(|_, _| {
        invoke_reply(200, activation_json("success", 0, json!({"ok": true})))
    });
    let o = hearth(&server, &["action", "invoke", "hello", "-b"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let (first, rest) = out.split_once('\n').unwrap();
    assert_eq!(first, format!("ok: invoked /_/hello with id {ID}"));
    let activation: Value = serde_json::from_str(rest).unwrap();
    assert_eq!(activation["response"]["result"], json!({"ok": true}));
    assert_eq!(server.only_request().q("result"), Some("false"));
}

#[test]
fn failed_action_exits_2_and_internal_error_4() {
    let server = FakeWhisk::start(|r, _| {
        let (status, code) = if r.path.ends_with("/boom") {
            ("application error", 1)
        } else {
            ("whisk internal error", 3)
        };
        invoke_reply(502, activation_json(status, code, json!({"error": "boom"})))
    });
    let o = hearth(&server, &["action", "invoke", "boom", "--blocking"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stdout(&o).contains("\"error\": \"boom\""), "{}", stdout(&o));
    assert_eq!(
        stderr(&o),
        format!("error: action '/_/boom' failed: application error (activation {ID})\n")
    );
    let o = hearth(&server, &["action", "invoke", "broken", "--blocking"]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("whisk internal error"));
}

#[test]
fn failed_action_with_result_only_still_exits_2() {
    let server = FakeWhisk::start(|_, _| invoke_reply(502, json!({"error": "boom"})));
    let o = hearth(&server, &["action", "invoke", "boom", "-r"]);
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "{\n  \"error\": \"boom\"\n}\n");
    assert!(stderr(&o).contains(ID));
}

#[test]
fn blocking_wait_ran_out_exits_5_with_the_id() {
    let server = FakeWhisk::start(|_, _| invoke_reply(202, json!({"activationId": ID})));
    let o = hearth(&server, &["action", "invoke", "slow", "--result"]);
    assert_eq!(code(&o), 5);
    assert!(stdout(&o).contains(ID));
    assert!(stderr(&o).contains(&format!("hearth activation result {ID}")), "{}", stderr(&o));
}

// ---------------------------------------------------------------- activations

#[test]
fn activation_list_get_logs_result() {
    let server = FakeWhisk::start(|r, _| {
        let p = r.path.as_str();
        if p == "/api/v1/namespaces/_/activations" {
            reply(200, json!([activation_json("success", 0, json!({}))]))
        } else if p.ends_with("/logs") {
            reply(200, json!({"logs": ["line one", "line two"]}))
        } else if p.ends_with("/result") {
            reply(200, json!({"result": {"greeting": "hi"}, "status": "success", "success": true}))
        } else {
            reply(200, activation_json("success", 0, json!({"greeting": "hi"})))
        }
    });
    let o = hearth(
        &server,
        &["activation", "list", "hello", "--limit", "5", "--since", "1000", "--upto", "2000"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("DATETIME") && lines[0].contains("ACTIVATION ID"));
    assert!(lines[1].starts_with("2023-11-14 22:13:20") && lines[1].contains(ID), "{out}");
    assert!(lines[1].contains("python:3") && lines[1].contains("warm"));
    assert!(lines[1].contains("34ms"));
    assert!(lines[1].ends_with("success  guest/hello:0.0.1"), "{out}");
    let r = &server.requests()[0];
    assert_eq!((r.q("name"), r.q("limit"), r.q("skip")), (Some("hello"), Some("5"), Some("0")));
    assert_eq!((r.q("since"), r.q("upto")), (Some("1000"), Some("2000")));

    let o = hearth(&server, &["activation", "get", ID]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with(&format!("ok: got activation {ID}\n{{")));
    assert_eq!(server.requests()[1].path, format!("/api/v1/namespaces/_/activations/{ID}"));

    let o = hearth(&server, &["activation", "logs", ID]);
    assert_eq!(stdout(&o), "line one\nline two\n");
    assert_eq!(server.requests()[2].path, format!("/api/v1/namespaces/_/activations/{ID}/logs"));

    let o = hearth(&server, &["activation", "result", ID]);
    assert_eq!(stdout(&o), "{\n  \"greeting\": \"hi\"\n}\n");
    let o = hearth(&server, &["activation", "result", ID, "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["status"], "success");

    let o = hearth(&server, &["activation", "get", "not-an-id"]);
    assert_eq!(code(&o), 64);
    assert_eq!(server.requests().len(), 5, "a malformed id is refused before sending");
}

#[test]
fn activation_not_found() {
    let server = FakeWhisk::start(|_, _| {
        reply(404, json!({"error": "The requested resource does not exist."}))
    });
    let o = hearth(&server, &["activation", "logs", ID]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), format!("error: activation '{ID}' not found (404)\n"));
}

#[test]
fn activation_poll_prints_each_new_activation_once() {
    // The first list is empty; from the second on the activation is there.
    let server = FakeWhisk::start(|r, n| {
        if r.path.ends_with("/activations") {
            if n == 0 {
                reply(200, json!([]))
            } else {
                // A list entry without logs, as OpenWhisk's lists are.
                reply(
                    200,
                    json!([{"activationId": ID, "name": "hello", "namespace": "guest",
                            "start": 1, "statusCode": 0}]),
                )
            }
        } else {
            reply(200, activation_json("success", 0, json!({})))
        }
    });
    let o = hearth(&server, &["activation", "poll", "hello", "--exit", "1", "--interval", "100"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "Activation: 'hello' ({ID}) success\n    2024-01-01T00:00:00.000Z stdout: hello from the action\n"
        )
    );
    let reqs = server.requests();
    let lists: Vec<&Recorded> = reqs.iter().filter(|r| r.path.ends_with("/activations")).collect();
    let gets = reqs.len() - lists.len();
    assert!(lists.len() >= 3, "polled {} times in 1 s at 100 ms", lists.len());
    assert_eq!(gets, 1, "the record is fetched once");
    assert_eq!(lists[0].q("name"), Some("hello"));
    assert!(lists[0].q("since").unwrap().parse::<u64>().unwrap() > 1_600_000_000_000);
}

// ---------------------------------------------------------------- namespaces, config, errors

#[test]
fn namespace_list() {
    let server = FakeWhisk::start(|_, _| reply(200, json!(["guest"])));
    let o = hearth(&server, &["namespace", "list"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "NAMESPACE\nguest\n");
    assert_eq!(server.only_request().path, "/api/v1/namespaces");
}

/// A user coming from OpenWhisk keeps their wsk properties file: read when no hearth config
/// exists (`WSK_CONFIG_FILE`, as wsk reads it), ignored once `HEARTH_CONFIG` names one.
#[test]
fn wskprops_is_read_when_no_hearth_config_is_set() {
    let by_wsk = FakeWhisk::start(|_, _| reply(200, json!(["wsk"])));
    let by_hearth = FakeWhisk::start(|_, _| reply(200, json!(["hearth"])));
    let key_wsk = "44444444-4444-4444-8444-444444444444:wsksecret";
    let s = Scratch::new();
    let props = s.file(
        "wskprops",
        format!("APIHOST={}\nAUTH={key_wsk}\nNAMESPACE=guest\n", by_wsk.apihost()).as_bytes(),
    );
    let props = props.to_str().unwrap();
    let o = hearth_env(&[("WSK_CONFIG_FILE", props)], &["namespace", "list"]);
    assert_eq!(stdout(&o), "NAMESPACE\nwsk\n", "{}", stderr(&o));
    assert_eq!(by_wsk.only_request().basic_auth(), key_wsk);
    let cfg = s.file("config", format!("APIHOST={}\n", by_hearth.apihost()).as_bytes());
    let env = [("WSK_CONFIG_FILE", props), ("HEARTH_CONFIG", cfg.to_str().unwrap())];
    let o = hearth_env(&env, &["namespace", "list", "-u", key_wsk]);
    assert_eq!(stdout(&o), "NAMESPACE\nhearth\n", "{}", stderr(&o));
}

/// Packages through the CLI: each command's request as OpenWhisk's API expects it.
#[test]
fn package_commands_send_openwhisk_requests() {
    let server = FakeWhisk::start(|r, _| {
        if r.path.ends_with("/packages") && r.method == "GET" {
            reply(
                200,
                json!([{"namespace": "whisk.system", "name": "utils", "publish": true, "binding": false, "version": "0.0.1"}]),
            )
        } else if r.path.ends_with("/actions/utils/") {
            reply(200, json!([action_json("echo", "0.0.1")]))
        } else if r.method == "POST" {
            invoke_reply(200, json!({"payload": "hi"}))
        } else {
            reply(
                200,
                json!({"namespace": "guest", "name": "p", "version": "0.0.1", "actions": [{"name": "echo"}]}),
            )
        }
    });
    let run = |args: &[&str]| {
        let o = hearth(&server, args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        run(&["package", "create", "p", "-p", "a", "1", "--shared", "yes"]),
        "ok: created package p\n"
    );
    assert_eq!(run(&["package", "update", "p", "--shared", "no"]), "ok: updated package p\n");
    assert_eq!(
        run(&["package", "bind", "/whisk.system/utils", "mine", "-p", "k", "v"]),
        "ok: created binding mine\n"
    );
    let listed = run(&["package", "list", "/whisk.system"]);
    assert!(listed.contains("/whisk.system/utils") && listed.contains("shared"), "{listed}");
    assert!(run(&["package", "get", "p", "--summary"]).contains("action /guest/p/echo"));
    assert!(run(&["action", "list", "utils"]).contains("echo"));
    assert!(run(&["action", "invoke", "/whisk.system/utils/echo", "-r", "-p", "payload", "hi"])
        .contains("hi"));
    assert_eq!(run(&["package", "delete", "p"]), "ok: deleted package p\n");
    let requests = server.requests();
    let seen: Vec<(String, String, Option<Value>)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), (!r.body.is_empty()).then(|| r.json())))
        .collect();
    let expect = |i: usize, method: &str, path: &str| {
        assert_eq!((seen[i].0.as_str(), seen[i].1.as_str()), (method, path), "{seen:?}");
    };
    expect(0, "PUT", "/api/v1/namespaces/_/packages/p");
    assert_eq!(seen[0].2, Some(json!({"parameters": [{"key": "a", "value": 1}], "publish": true})));
    expect(1, "PUT", "/api/v1/namespaces/_/packages/p");
    expect(2, "PUT", "/api/v1/namespaces/_/packages/mine");
    assert_eq!(
        seen[2].2.as_ref().unwrap()["binding"],
        json!({"namespace": "whisk.system", "name": "utils"})
    );
    expect(3, "GET", "/api/v1/namespaces/whisk.system/packages");
    expect(4, "GET", "/api/v1/namespaces/_/packages/p");
    expect(5, "GET", "/api/v1/namespaces/_/actions/utils/");
    expect(6, "POST", "/api/v1/namespaces/whisk.system/actions/utils/echo");
    expect(7, "DELETE", "/api/v1/namespaces/_/packages/p");
    let q = |i: usize, k: &str| requests[i].q(k).map(str::to_owned);
    assert_eq!((q(0, "overwrite"), q(1, "overwrite")), (Some("false".into()), Some("true".into())));
    assert_eq!(q(6, "result").as_deref(), Some("true"));
}

#[test]
fn config_precedence_flag_env_file() {
    let by_file = FakeWhisk::start(|_, _| reply(200, json!(["file"])));
    let by_env = FakeWhisk::start(|_, _| reply(200, json!(["env"])));
    let by_flag = FakeWhisk::start(|_, _| reply(200, json!(["flag"])));
    let key_file = "11111111-1111-4111-8111-111111111111:filesecret";
    let key_env = "22222222-2222-4222-8222-222222222222:envsecret";
    let key_flag = "33333333-3333-4333-8333-333333333333:flagsecret";
    let s = Scratch::new();
    let cfg = s.file(
        "config",
        format!("# test\nAPIHOST={}\nAUTH={key_file}\n", by_file.apihost()).as_bytes(),
    );
    let cfg = cfg.to_str().unwrap();

    let o = hearth_env(&[("HEARTH_CONFIG", cfg)], &["namespace", "list"]);
    assert_eq!(stdout(&o), "NAMESPACE\nfile\n", "{}", stderr(&o));
    assert_eq!(by_file.only_request().basic_auth(), key_file);

    let env_host = by_env.apihost();
    let env = [("HEARTH_CONFIG", cfg), ("HEARTH_APIHOST", &env_host), ("HEARTH_AUTH", key_env)];
    let o = hearth_env(&env, &["namespace", "list"]);
    assert_eq!(stdout(&o), "NAMESPACE\nenv\n", "{}", stderr(&o));
    assert_eq!(by_env.only_request().basic_auth(), key_env);

    let flag_host = by_flag.apihost();
    let o = hearth_env(&env, &["namespace", "list", "--apihost", &flag_host, "--auth", key_flag]);
    assert_eq!(stdout(&o), "NAMESPACE\nflag\n", "{}", stderr(&o));
    assert_eq!(by_flag.only_request().basic_auth(), key_flag);

    // property get reports the choice and its source without the secret.
    let o = hearth_env(&[("HEARTH_CONFIG", cfg), ("HEARTH_AUTH", key_env)], &["property", "get"]);
    let out = stdout(&o);
    assert!(out.contains(&by_file.apihost()) && out.contains("config file"), "{out}");
    assert!(out.contains("22222222-2222-4222-8222-222222222222:********"), "{out}");
    assert!(out.contains("HEARTH_AUTH"), "{out}");
    assert!(!out.contains("envsecret") && !out.contains("filesecret"));
}

#[test]
fn config_home_file_is_read() {
    let server = FakeWhisk::start(|_, _| reply(200, json!(["home"])));
    let home = Scratch::new();
    std::fs::create_dir(home.path().join(".hearth")).unwrap();
    std::fs::write(home.path().join(".hearth/config"), format!("APIHOST={}\n", server.apihost()))
        .unwrap();
    let o = hearth_env(&[("HOME", home.path().to_str().unwrap())], &["namespace", "list"]);
    assert_eq!(stdout(&o), "NAMESPACE\nhome\n", "{}", stderr(&o));
    // Loopback and no key configured: the standalone guest key.
    assert_eq!(server.only_request().basic_auth(), GUEST_KEY);
}

#[test]
fn remote_host_without_key_is_refused_before_sending() {
    // A reserved name that never resolves; the error comes from configuration, not DNS.
    let o = hearth_env(
        &[("HEARTH_APIHOST", "http://hearth.example.invalid:3233")],
        &["namespace", "list"],
    );
    assert_eq!(code(&o), 1);
    let e = stderr(&o);
    assert!(e.contains("no key configured") && e.contains("--auth"), "{e}");
}

#[test]
fn connection_refused_exits_3_and_says_how_to_start_a_server() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = hearth_env(&[("HEARTH_APIHOST", &format!("127.0.0.1:{port}"))], &["action", "list"]);
    assert_eq!(code(&o), 3);
    let e = stderr(&o);
    assert!(e.starts_with("error: cannot connect to the hearth server at 127.0.0.1:"), "{e}");
    assert!(e.contains(&port.to_string()) && e.contains("hearthd standalone"));
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn slow_server_times_out_with_exit_3() {
    let server = FakeWhisk::start(|_, _| {
        let mut rep = reply(200, json!([]));
        rep.delay = Duration::from_millis(2500);
        rep
    });
    let started = std::time::Instant::now();
    let o = hearth(&server, &["namespace", "list", "--request-timeout", "1"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("did not answer within 1s"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_millis(2400));
}

#[test]
fn server_errors_exit_4_and_bad_keys_exit_1() {
    let server = FakeWhisk::start(|r, _| match r.path.as_str() {
        "/api/v1/namespaces" => {
            reply(500, json!({"error": "the store is unavailable", "code": "t9"}))
        }
        _ => reply(401, json!({"error": "The supplied authentication is invalid", "code": "t8"})),
    });
    let o = hearth(&server, &["namespace", "list"]);
    assert_eq!(code(&o), 4);
    assert_eq!(stderr(&o), "error: the store is unavailable (500)\n");
    let o = hearth(&server, &["action", "list"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).starts_with("error: the server did not accept the key"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_64_and_help_works() {
    let server = FakeWhisk::start(|_, _| reply(200, json!([])));
    let o = hearth(&server, &["action", "create", "only-a-name"]);
    assert_eq!(code(&o), 64);
    let o = hearth(&server, &["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Exit codes"));
    assert!(server.requests().is_empty());
}
