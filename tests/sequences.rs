//! Sequences against a real `hearthd standalone` (runc, Python actions), one server shared by
//! every phase: OpenWhisk's create rules and messages, the run (each result the next input,
//! a component's error ends it), the records (the sequence's `kind`, `topmost`, `logs`,
//! summed `duration`, `limits`; each component's `cause` and `causedBy`), nested sequences,
//! blocking / result-only / non-blocking invokes and a blocking wait that runs out (202, the
//! record later), authorisation at create and at invoke for the invoking namespace (shared
//! packages), one admission charge per sequence invoke, the CLI's `--sequence`, OpenWhisk's
//! JavaScript client, and a server killed while a sequence runs (its placeholder record).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

/// The longest a blocking invoke waits in this server (controller.toml), so that a sequence
/// of two 1.5 s components outlasts it.
const BLOCKING_WAIT_MS: u64 = 2000;

const INC: &str = "def main(a):\n    return {'n': a.get('n', 0) + a.get('step', 1)}\n";
const DBL: &str = "def main(a):\n    return {'n': a.get('n', 0) * 2}\n";
const BOOM: &str = "def main(a):\n    return {'error': 'boom at %d' % a.get('n', 0)}\n";
const SLOW: &str = "import time\ndef main(a):\n    time.sleep(1.5)\n    return a\n";

fn put_sequence(c: &Client, name: &str, components: &[&str]) -> Resp {
    let body = json!({"exec": {"kind": "sequence", "components": components}});
    c.json("PUT", &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"), body)
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

fn record(c: &Client, id: &Value) -> Value {
    let id = id.as_str().unwrap();
    c.record(id, Duration::from_secs(10)).unwrap_or_else(|| panic!("no record of {id}"))
}

#[test]
fn sequences_over_http_the_cli_and_the_openwhisk_client() {
    require_root();
    let mut s = Standalone::start("");
    // A short blocking wait, so that a long sequence is answered 202.
    s.stop();
    let conf = s.data_dir().parent().unwrap().join("conf/controller.toml");
    std::fs::write(&conf, format!("max_blocking_wait = {BLOCKING_WAIT_MS}\n")).unwrap();
    s.launch();
    let guest = s.client();
    let other_key = admin_namespace(&s.data_dir(), "other");
    let other = Client::new(s.addr, &other_key);
    for (name, code) in [("inc", INC), ("dbl", DBL), ("boom", BOOM), ("slow", SLOW)] {
        guest.put_action(name, "python:3", code, None);
    }

    create_rules(&guest);
    runs_and_records(&guest);
    blocking_modes(&guest);
    authorisation(&guest, &other);
    one_admission_per_sequence(&s, &other);
    cli(&s);
    // OpenWhisk's JavaScript client library, unchanged, on the actions made above.
    let out = harness::openwhisk_client("sequences.js", &s.url(), GUEST);
    assert!(out.contains("sequences ok"), "{out}");
    killed_mid_sequence(&mut s);
    s.stop();
}

/// An acknowledged sequence ends with a record even when the server is killed while it runs:
/// its pending stub becomes the placeholder at the next start.
fn killed_mid_sequence(s: &mut Standalone) {
    let guest = s.client();
    let r = guest.json("POST", "/api/v1/namespaces/_/actions/long", json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["activationId"].clone();
    std::thread::sleep(Duration::from_millis(500));
    s.daemon().kill9();
    s.launch();
    let placeholder = record(&s.client(), &id);
    assert_eq!(placeholder["response"]["status"], "whisk internal error", "{placeholder}");
    let error = placeholder["response"]["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("server stopped"), "{placeholder}");
    assert_eq!(annotation(&placeholder, "kind"), Some(&json!("sequence")));
    assert_eq!(annotation(&placeholder, "topmost"), Some(&json!(true)));
}

/// OpenWhisk's checks and messages on create and update; GET shows the sequence as
/// OpenWhisk does.
fn create_rules(guest: &Client) {
    let r = put_sequence(guest, "s1", &["/_/inc", "/guest/dbl", "inc"]);
    assert_eq!(r.status, 400, "a component without a namespace: {}", r.text());
    assert!(error_of(&r).contains("must contain at least the namespace"), "{}", r.text());
    let r = put_sequence(guest, "s1", &["/_/inc", "/guest/dbl", "/_/inc"]);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = guest.get("/api/v1/namespaces/_/actions/s1").json();
    assert_eq!(
        got["exec"],
        json!({"kind": "sequence", "components": ["/guest/inc", "/guest/dbl", "/guest/inc"]})
    );
    assert_eq!(annotation(&got, "exec"), Some(&json!("sequence")));
    assert_eq!(
        got["parameters"],
        json!([{"key": "_actions", "value": ["/guest/inc", "/guest/dbl", "/guest/inc"]}])
    );

    for (components, message) in [
        (vec![], "No component specified for the sequence."),
        (vec!["/_/nope"], "Sequence component does not exist."),
        (vec!["/_/inc"; 51], "Too many actions in the sequence."),
        // 17 times s1 (3 each) inlines to 51 atomic actions.
        (vec!["/_/s1"; 17], "Too many actions in the sequence."),
    ] {
        let r = put_sequence(guest, "bad", &components);
        assert_eq!(r.status, 400, "{components:?}: {}", r.text());
        assert_eq!(error_of(&r), message);
    }
    assert_eq!(guest.get("/api/v1/namespaces/_/actions/bad").status, 404, "nothing stored");
    assert_eq!(put_sequence(guest, "fifty", &vec!["/_/inc"; 50]).status, 200);
    // No recursion, directly or through a sequence it contains.
    assert_eq!(put_sequence(guest, "outer", &["/_/s1", "/_/dbl"]).status, 200);
    for components in [vec!["/_/s1"], vec!["/_/inc", "/_/outer"]] {
        let r = put_sequence(guest, "s1", &components);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(error_of(&r), "Sequence may not refer to itself.");
    }
}

/// Each result is the next input; the records are OpenWhisk's.
fn runs_and_records(guest: &Client) {
    let r = guest.invoke("s1", json!({"n": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let seq = r.json();
    assert_eq!(seq["response"]["result"], json!({"n": 5}), "((1 + 1) * 2) + 1");
    assert_eq!(annotation(&seq, "kind"), Some(&json!("sequence")));
    assert_eq!(annotation(&seq, "topmost"), Some(&json!(true)));
    assert_eq!(annotation(&seq, "path"), Some(&json!("guest/s1")));
    assert!(annotation(&seq, "waitTime").is_some_and(Value::is_u64));
    assert_eq!(annotation(&seq, "limits").unwrap()["memory"], 256, "the components' largest");
    assert_eq!(seq.get("cause"), None, "a topmost sequence has no cause");
    let logs = seq["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 3, "{seq}");
    let mut durations = 0;
    for (id, (name, n)) in logs.iter().zip([("inc", 2), ("dbl", 4), ("inc", 5)]) {
        let c = record(guest, id);
        assert_eq!(c["name"], name);
        assert_eq!(c["response"]["result"], json!({"n": n}));
        assert_eq!(c["cause"], seq["activationId"], "{c}");
        assert_eq!(annotation(&c, "causedBy"), Some(&json!("sequence")));
        assert_eq!(annotation(&c, "kind"), Some(&json!("python:3")));
        durations += c["duration"].as_u64().unwrap();
    }
    assert_eq!(seq["duration"].as_u64().unwrap(), durations, "the components' durations summed");

    // A component's error ends the sequence with it: dbl after boom never runs.
    assert_eq!(put_sequence(guest, "s2", &["/_/inc", "/_/boom", "/_/dbl"]).status, 200);
    let r = guest.invoke("s2", json!({"n": 1}));
    assert_eq!(r.status, 502, "{}", r.text());
    let failed = r.json();
    assert_eq!(failed["response"]["status"], "application error");
    assert_eq!(failed["response"]["result"], json!({"error": "boom at 2"}));
    assert_eq!(failed["logs"].as_array().unwrap().len(), 2);

    // A sequence of sequences: the inner one has its own record, caused by the outer.
    let r = guest.invoke("outer", json!({"n": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let outer = r.json();
    assert_eq!(outer["response"]["result"], json!({"n": 10}));
    let outer_logs = outer["logs"].as_array().unwrap();
    assert_eq!(outer_logs.len(), 2);
    let inner = record(guest, &outer_logs[0]);
    assert_eq!(inner["name"], "s1");
    assert_eq!(inner["cause"], outer["activationId"]);
    assert_eq!(annotation(&inner, "topmost"), Some(&json!(false)));
    assert_eq!(annotation(&inner, "causedBy"), Some(&json!("sequence")));
    assert_eq!(inner["logs"].as_array().unwrap().len(), 3);
    let first = record(guest, &inner["logs"][0]);
    assert_eq!(first["cause"], inner["activationId"], "a component's cause is its own sequence");

    // A sequence's own parameters never reach a component (OpenWhisk keeps `_actions`), while
    // each component's defaults do.
    let r = guest.json(
        "PUT",
        "/api/v1/namespaces/_/actions/inc10?overwrite=true",
        json!({"exec": {"kind": "python:3", "code": INC}, "parameters": [{"key": "step", "value": 10}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(put_sequence(guest, "s10", &["/_/inc10"]).status, 200);
    let r = guest.json(
        "PUT",
        "/api/v1/namespaces/_/actions/s10?overwrite=true",
        json!({"parameters": [{"key": "n", "value": 100}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = guest.json(
        "POST",
        "/api/v1/namespaces/_/actions/s10?blocking=true&result=true",
        json!({"n": 1}),
    );
    assert_eq!(r.json(), json!({"n": 11}));
}

/// Result-only, non-blocking, and a blocking wait that runs out.
fn blocking_modes(guest: &Client) {
    let r = guest.json(
        "POST",
        "/api/v1/namespaces/_/actions/s1?blocking=true&result=true",
        json!({"n": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"n": 7}));
    let id = r.header("x-openwhisk-activation-id").unwrap().to_owned();
    assert_eq!(record(guest, &json!(id))["response"]["result"], json!({"n": 7}));

    let r = guest.json("POST", "/api/v1/namespaces/_/actions/s1", json!({"n": 3}));
    assert_eq!(r.status, 202, "{}", r.text());
    let later = record(guest, &r.json()["activationId"]);
    assert_eq!(later["response"]["result"], json!({"n": 9}));
    assert_eq!(later["logs"].as_array().unwrap().len(), 3);

    assert_eq!(put_sequence(guest, "long", &["/_/slow", "/_/slow"]).status, 200);
    let started = std::time::Instant::now();
    let r = guest.invoke("long", json!({"x": 1}));
    assert_eq!(
        r.status,
        202,
        "3 s of components outlast a {BLOCKING_WAIT_MS} ms wait: {}",
        r.text()
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(BLOCKING_WAIT_MS), "{waited:?}");
    let id = r.json()["activationId"].clone();
    assert_eq!(r.header("x-openwhisk-activation-id"), id.as_str());
    let done = record(guest, &id);
    assert_eq!(done["response"]["status"], "success", "{done}");
    assert_eq!(done["response"]["result"], json!({"x": 1}));
    assert_eq!(done["logs"].as_array().unwrap().len(), 2);
}

/// Components are checked for the creator at create time and for the invoking namespace at
/// invoke time, at every level.
fn authorisation(guest: &Client, other: &Client) {
    for (path, body) in [
        ("/packages/shared", json!({"publish": true})),
        ("/actions/shared/pinc", json!({"exec": {"kind": "python:3", "code": INC}})),
        ("/actions/private", json!({"exec": {"kind": "python:3", "code": DBL}})),
        (
            "/actions/shared/leaky",
            json!({"exec": {"kind": "sequence", "components": ["/other/private"]}}),
        ),
    ] {
        let r = other.json("PUT", &format!("/api/v1/namespaces/_{path}?overwrite=true"), body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // Another namespace's action outside a shared package: refused as hidden.
    let r = put_sequence(guest, "theirs", &["/other/private"]);
    assert_eq!(r.status, 403, "{}", r.text());
    // A shared package's action: created, and run as guest.
    assert_eq!(put_sequence(guest, "via", &["/other/shared/pinc", "/_/dbl"]).status, 200);
    let r = guest.invoke("via", json!({"n": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["response"]["result"], json!({"n": 4}));
    assert_eq!(r.json()["namespace"], "guest", "the record belongs to the invoker");
    // other's shared sequence names other's private action: guest may not run it.
    let r = guest.json(
        "POST",
        "/api/v1/namespaces/other/actions/shared/leaky?blocking=true",
        json!({}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // Unpublished later: guest's sequence is refused at invoke time, before anything runs.
    let r = other.json(
        "PUT",
        "/api/v1/namespaces/_/packages/shared?overwrite=true",
        json!({"publish": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = guest.invoke("via", json!({"n": 1}));
    assert_eq!(r.status, 403, "{}", r.text());
}

/// A sequence invoke is one charge against the namespace's invocations per minute, whatever
/// the number of its components.
fn one_admission_per_sequence(s: &Standalone, other: &Client) {
    let out = std::process::Command::new(hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["limits", "set", "other", "--invocations-per-minute", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    other.put_action("one", "python:3", INC, None);
    let r = put_sequence(other, "three", &["/_/one", "/_/one", "/_/one"]);
    assert_eq!(r.status, 200, "{}", r.text());
    for n in 0..2 {
        let r = other.invoke("three", json!({"n": n}));
        assert_eq!(r.status, 200, "invoke {n} of 2: {}", r.text());
        assert_eq!(r.json()["response"]["result"], json!({"n": n + 3}));
    }
    let r = other.invoke("three", json!({}));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(error_of(&r).contains("allowed: 2"), "{}", r.text());
}

fn cli(s: &Standalone) {
    let url = s.url();
    let hearth = |args: &[&str]| {
        let (code, out, err) = hearth_cli(&url, args);
        (code, format!("{out}{err}"))
    };
    let (code, out) = hearth(&["action", "create", "clis", "--sequence", "inc,dbl"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = hearth(&["action", "get", "clis"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"sequence\"") && out.contains("/guest/inc") && out.contains("/guest/dbl"),
        "{out}"
    );
    let (code, out) = hearth(&["action", "invoke", "clis", "-p", "n", "4", "--result"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"n": 10}));
    let (code, out) = hearth(&["action", "update", "clis", "--sequence", "dbl"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = hearth(&["action", "invoke", "clis", "-p", "n", "4", "--result"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"n": 8}));
}
