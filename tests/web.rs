//! Web actions and API routes end to end (issue 14), through one real `hearthd standalone`
//! shared by every case: each rule of OpenWhisk's docs/webactions.md over HTTP without a key
//! (extensions, the `__ow_*` context, raw-http, final parameters, require-whisk-auth, CORS and
//! custom OPTIONS, HEAD, `{statusCode, headers, body}` with base64 bodies, the error codes and
//! messages), the owner's records, the payload limit and the anonymous throttle; API routes
//! through OpenWhisk's JavaScript client and the gateway URLs hearth serves; and a real
//! headless Chromium loading a web page that fetches a web action.
//!
//! The cases run in order inside one test (one server, one warm pool); a failing case is
//! reported by name and the others still run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use harness::*;
use serde_json::{json, Value};

/// One request with the given headers; `connection: close`.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    Client::anonymous(addr).raw(&raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, "GET", path, &[], b"")
}

fn post_json(addr: SocketAddr, path: &str, body: Value) -> Resp {
    send(addr, "POST", path, &[("content-type", "application/json")], body.to_string().as_bytes())
}

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// Creates `name` (Python) with annotations and parameters.
fn action(c: &Client, name: &str, code: &str, annotations: Value, parameters: Value) {
    let body = json!({
        "exec": {"kind": "python:3", "code": code},
        "annotations": annotations,
        "parameters": parameters,
    });
    let r = c.json("PUT", &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"), body);
    assert_eq!(r.status, 200, "create {name}: {}", r.text());
}

fn web(extra: Value) -> Value {
    let mut list = vec![json!({"key": "web-export", "value": true})];
    if let Value::Array(more) = extra {
        list.extend(more);
    }
    Value::Array(list)
}

const ECHO: &str = "def main(a):\n    return a\n";
/// Answers whatever the request's `r` parameter holds (the result under test).
const MIRROR: &str = "def main(a):\n    return a.get('r', {})\n";

fn assert_error(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], message, "{}", r.text());
    assert_eq!(r.json()["code"].as_str().map(str::len), Some(32), "{}", r.text());
}

struct Env {
    s: Standalone,
    c: Client,
}

fn setup(env: &Env) {
    let c = &env.c;
    action(c, "echo", ECHO, web(json!([])), json!([]));
    action(c, "mirror", MIRROR, web(json!([])), json!([]));
    action(c, "hidden", ECHO, json!([]), json!([]));
    action(c, "off", ECHO, json!([{"key": "web-export", "value": false}]), json!([]));
    action(c, "raw", ECHO, web(json!([{"key": "raw-http", "value": true}])), json!([]));
    action(
        c,
        "final",
        ECHO,
        web(json!([{"key": "final", "value": true}])),
        json!([{"key": "name", "value": "Jane"}, {"key": "open", "value": null}]),
    );
    action(
        c,
        "secured",
        ECHO,
        web(json!([{"key": "require-whisk-auth", "value": true}])),
        json!([]),
    );
    action(
        c,
        "secret",
        ECHO,
        web(json!([{"key": "require-whisk-auth", "value": "s3cret"}])),
        json!([]),
    );
    let options = "def main(a):\n    if a['__ow_method'] == 'options':\n        return {'headers': {'Access-Control-Allow-Methods': 'OPTIONS, GET', 'Access-Control-Allow-Origin': 'example.com'}, 'statusCode': 200}\n    return {'body': 'not options'}\n";
    action(
        c,
        "options",
        options,
        web(json!([{"key": "web-custom-options", "value": true}])),
        json!([]),
    );
    action(c, "crash", "import os\ndef main(a):\n    os._exit(3)\n", web(json!([])), json!([]));
    let r = c.json("PUT", "/api/v1/namespaces/_/packages/demo?overwrite=true", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    action(
        c,
        "demo/hello",
        "def main(a):\n    return {'body': '<h3>hello ' + a.get('name', 'you') + '</h3>'}\n",
        web(json!([])),
        json!([]),
    );
}

fn extensions_and_context(env: &Env) {
    let a = env.s.addr;
    let r = get(a, "/api/v1/web/guest/default/echo.json?name=Jane");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let p = r.json();
    assert_eq!(p["name"], "Jane");
    assert_eq!(p["__ow_method"], "get");
    assert_eq!(p["__ow_path"], "");
    assert_eq!(p["__ow_headers"]["host"], a.to_string(), "{p}");
    assert!(
        p.get("__ow_user").is_none()
            && p.get("__ow_query").is_none()
            && p.get("__ow_body").is_none(),
        "{p}"
    );
    assert!(r.header("x-openwhisk-activation-id").is_some());

    // The path after the action, JSON body over query, form data, a text body.
    let r = send(
        a,
        "POST",
        "/api/v1/web/guest/default/echo.json/a/b?x=1&y=1",
        &[("content-type", "application/json")],
        br#"{"y":2}"#,
    );
    let p = r.json();
    assert_eq!(
        (p["__ow_path"].as_str(), p["x"].as_str(), &p["y"]),
        (Some("/a/b"), Some("1"), &json!(2)),
        "{p}"
    );
    assert_eq!(p["__ow_method"], "post");
    let r = send(
        a,
        "PUT",
        "/api/v1/web/guest/default/echo.json",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"name=Jane+D",
    );
    assert_eq!(r.json()["name"], "Jane D", "{}", r.text());
    assert_eq!(r.json()["__ow_method"], "put");
    let r = send(
        a,
        "PATCH",
        "/api/v1/web/guest/default/echo.json",
        &[("content-type", "text/plain")],
        b"Jane",
    );
    assert_eq!(r.json()["__ow_body"], "Jane", "{}", r.text());
    let r = send(
        a,
        "DELETE",
        "/api/v1/web/guest/default/echo.json",
        &[("content-type", "application/octet-stream")],
        &[0, 1, 2],
    );
    assert_eq!(r.json()["__ow_body"], "AAEC", "{}", r.text());
    // A JSON body that is not an object stays whole.
    let r = send(
        a,
        "POST",
        "/api/v1/web/guest/default/echo.json",
        &[("content-type", "application/json")],
        b"[1,2]",
    );
    assert_eq!(r.json()["__ow_body"], json!([1, 2]), "{}", r.text());

    // .html / .svg / .text project a property; no extension is .http.
    let r =
        post_json(a, "/api/v1/web/guest/default/mirror.html", json!({"r": {"html": "<p>hi</p>"}}));
    assert_eq!(
        (r.status, r.header("content-type"), r.text().as_str()),
        (200, Some("text/html; charset=UTF-8"), "<p>hi</p>")
    );
    let r = post_json(a, "/api/v1/web/guest/default/mirror.svg", json!({"r": {"body": "<svg/>"}}));
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/svg+xml")));
    let r = post_json(a, "/api/v1/web/guest/default/mirror.text", json!({"r": {"text": "plain"}}));
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = post_json(a, "/api/v1/web/guest/default/mirror.text", json!({"r": {"nothing": 1}}));
    assert_error(&r, 404, "Response does not include requested property.");
    let r = post_json(a, "/api/v1/web/guest/default/mirror.html", json!({"r": {"html": 1}}));
    assert_error(&r, 400, "Response is not valid 'text/html'.");
    let r = post_json(a, "/api/v1/web/guest/default/mirror", json!({"r": {"body": "<b>x</b>"}}));
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/html; charset=UTF-8")));
    let r = get(a, "/api/v1/web/guest/demo/hello.http?name=Jane");
    assert_eq!(r.text(), "<h3>hello Jane</h3>");
}

fn http_results(env: &Env) {
    let a = env.s.addr;
    let http = |r: Value| post_json(a, "/api/v1/web/guest/default/mirror.http", json!({ "r": r }));
    let r = http(json!({"statusCode": 302, "headers": {"location": "http://openwhisk.org"}}));
    assert_eq!((r.status, r.header("location")), (302, Some("http://openwhisk.org")));
    let r = http(
        json!({"headers": {"Set-Cookie": ["a=1", "b=2"], "Content-Type": "text/html"}, "statusCode": 200, "body": "<h3>hello</h3>"}),
    );
    assert_eq!(r.headers.iter().filter(|(k, _)| k == "set-cookie").count(), 2, "{:?}", r.headers);
    let png = base64::engine::general_purpose::STANDARD.encode([0x89u8, b'P', b'N', b'G', 0, 255]);
    let r = http(json!({"headers": {"Content-Type": "image/png"}, "body": png}));
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/png")));
    assert_eq!(r.body, vec![0x89, b'P', b'N', b'G', 0, 255]);
    let r = http(json!({"statusCode": 200, "body": {"a": [1]}}));
    assert_eq!((r.header("content-type"), r.json()), (Some("application/json"), json!({"a": [1]})));
    let r = http(json!({}));
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = http(json!({"statusCode": "not a code"}));
    assert_error(&r, 400, "Response is not valid 'message/http'.");
    let r = http(json!({"headers": {"Content-Type": "image/png"}, "body": "%%%"}));
    assert_error(&r, 400, "Response type in header did not match generated content type.");
}

fn errors(env: &Env) {
    let a = env.s.addr;
    let missing = get(a, "/api/v1/web/guest/default/nope.json");
    assert_error(&missing, 404, "The requested resource does not exist.");
    for path in [
        "/api/v1/web/guest/default/hidden.json",
        "/api/v1/web/guest/default/off.json",
        "/api/v1/web/nobody/default/echo.json",
        "/api/v1/web/_/default/echo.json",
        "/api/v1/web/guest/nopkg/echo.json",
        "/api/v1/web/guest/default",
    ] {
        let r = get(a, path);
        assert_error(&r, 404, "The requested resource does not exist.");
        assert_eq!(r.headers.len(), missing.headers.len(), "{path}: {:?}", r.headers);
    }
    // An application error projects its `error` property.
    let r = post_json(
        a,
        "/api/v1/web/guest/default/mirror.http",
        json!({"r": {"error": {"statusCode": 418, "body": "teapot"}}}),
    );
    assert_eq!((r.status, r.text().as_str()), (418, "teapot"));
    let r = post_json(a, "/api/v1/web/guest/default/mirror.json", json!({"r": {"error": "plain"}}));
    assert_error(&r, 400, "Response is not valid 'application/json'.");
    // A developer error.
    let r = get(a, "/api/v1/web/guest/default/crash.json");
    assert_error(&r, 400, "There was an error processing your request.");
    // Reserved names and a method outside the list.
    let r = get(a, "/api/v1/web/guest/default/echo.json?__ow_user=root");
    assert_error(
        &r,
        400,
        "Request defines parameters that are not allowed (e.g., reserved properties).",
    );
    let r = send(a, "TRACE", "/api/v1/web/guest/default/echo.json", &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
}

fn raw_and_final(env: &Env) {
    let a = env.s.addr;
    let r = send(
        a,
        "POST",
        "/api/v1/web/guest/default/raw.json?name=Jane",
        &[("content-type", "application/json")],
        br#"{"name":"Jane"}"#,
    );
    let p = r.json();
    assert_eq!(
        (p["__ow_query"].as_str(), p["__ow_body"].as_str()),
        (Some("name=Jane"), Some("eyJuYW1lIjoiSmFuZSJ9")),
        "{p}"
    );
    assert!(p.get("name").is_none(), "{p}");
    let p = get(a, "/api/v1/web/guest/default/raw.json").json();
    assert_eq!(p["__ow_body"], "", "{p}");

    let r = get(a, "/api/v1/web/guest/default/final.json?name=Eve");
    assert_error(
        &r,
        400,
        "Request defines parameters that are not allowed (e.g., reserved properties).",
    );
    let r = post_json(a, "/api/v1/web/guest/default/final.json", json!({"name": "Eve"}));
    assert_eq!(r.status, 400, "{}", r.text());
    let p = get(a, "/api/v1/web/guest/default/final.json?open=1").json();
    assert_eq!((p["name"].as_str(), p["open"].as_str()), (Some("Jane"), Some("1")), "{p}");
}

fn require_whisk_auth(env: &Env) {
    let a = env.s.addr;
    let r = get(a, "/api/v1/web/guest/default/secured.json");
    assert_error(&r, 401, "The supplied authentication is invalid");
    let bad = basic("23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrong");
    let r =
        send(a, "GET", "/api/v1/web/guest/default/secured.json", &[("authorization", &bad)], b"");
    assert_eq!(r.status, 401);
    let good = basic(GUEST);
    let r =
        send(a, "GET", "/api/v1/web/guest/default/secured.json", &[("authorization", &good)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    assert_eq!(p["__ow_user"], "guest", "{p}");
    assert!(
        p["__ow_headers"].get("authorization").is_none(),
        "the caller's key is not handed on: {p}"
    );

    let r = get(a, "/api/v1/web/guest/default/secret.json");
    assert_eq!(r.status, 401);
    let r = send(
        a,
        "GET",
        "/api/v1/web/guest/default/secret.json",
        &[("x-require-whisk-auth", "nope")],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = send(
        a,
        "GET",
        "/api/v1/web/guest/default/secret.json",
        &[("x-require-whisk-auth", "s3cret")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("__ow_user").is_none());
}

fn options_and_head(env: &Env) {
    let a = env.s.addr;
    let r = send(a, "OPTIONS", "/api/v1/web/guest/default/echo.http", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent")
    );
    let r = send(
        a,
        "OPTIONS",
        "/api/v1/web/guest/default/secured.http",
        &[("access-control-request-headers", "x-mine")],
        b"",
    );
    assert_eq!(
        (r.status, r.header("access-control-allow-headers")),
        (200, Some("x-mine")),
        "preflight needs no credentials"
    );
    let r = get(a, "/api/v1/web/guest/default/echo.json");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "CORS on every answer");

    let r = send(a, "OPTIONS", "/api/v1/web/guest/default/options.http", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("example.com"));
    assert_eq!(r.header("access-control-allow-methods"), Some("OPTIONS, GET"));
    let r = get(a, "/api/v1/web/guest/default/options.http");
    assert_eq!((r.text().as_str(), r.header("access-control-allow-origin")), ("not options", None));

    let r = send(a, "HEAD", "/api/v1/web/guest/demo/hello.http", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0), "{:?}", r.headers);
}

fn records_belong_to_the_owner(env: &Env) {
    let r = get(env.s.addr, "/api/v1/web/guest/default/echo.json?who=web");
    let id = r.header("x-openwhisk-activation-id").unwrap().to_owned();
    let rec = env.c.record(&id, Duration::from_secs(10)).expect("the owner reads the record");
    assert_eq!(rec["namespace"], "guest");
    assert_eq!(rec["name"], "echo");
    assert_eq!(rec["response"]["result"]["who"], "web", "{rec}");
}

fn payload_limit(env: &Env) {
    let big = vec![b'a'; 1024 * 1024 + 10];
    let r = send(
        env.s.addr,
        "POST",
        "/api/v1/web/guest/default/echo.json",
        &[("content-type", "text/plain")],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
}

/// API routes through OpenWhisk's JavaScript client (tests/clients/openwhisk-routes.js: create,
/// get, list, delete, a refused non-web action, a gateway URL fetched), then what is left served
/// over HTTP: a path parameter reaches an `http` action as `__ow_path`, deleted operations are
/// gone, a method without an operation is 404.
fn routes_through_the_openwhisk_client(env: &Env) {
    let c = &env.c;
    let books = "def main(a):\n    return {'statusCode': 200, 'headers': {'content-type': 'application/json'}, 'body': {'path': a['__ow_path'], 'method': a['__ow_method'], 'q': a.get('q')}}\n";
    action(c, "books", books, web(json!([])), json!([]));
    action(
        c,
        "greet",
        "def main(a):\n    return {'greeting': 'Hello ' + a.get('name', 'you')}\n",
        web(json!([])),
        json!([]),
    );
    action(c, "not-web", ECHO, json!([]), json!([]));
    let out = openwhisk_client("openwhisk-routes.js", &env.s.url(), GUEST);
    let urls: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let club = urls["club"].as_str().unwrap().to_owned();
    assert_eq!(club, format!("{}/api/guest/club", env.s.url()));
    let path = club.trim_start_matches(&env.s.url()).to_owned();
    let r = get(env.s.addr, &format!("{path}/books/978-0596517748?q=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    assert_eq!(p, json!({"path": "/club/books/978-0596517748", "method": "get", "q": "1"}));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = send(env.s.addr, "OPTIONS", &format!("{path}/books/1"), &[], b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, Some("*")));
    assert_eq!(send(env.s.addr, "POST", &format!("{path}/books"), &[], b"").status, 404, "deleted");
    assert_eq!(send(env.s.addr, "PUT", &format!("{path}/books/1"), &[], b"").status, 404);
    assert_eq!(get(env.s.addr, "/api/guest/hello/world").status, 404, "deleted API");
    assert_eq!(get(env.s.addr, "/api/guest/club/books").status, 404, "no such operation");
    // A route to a secured action sends its secret on the caller's behalf (OpenWhisk's
    // secureKey); without it the action's own rule holds. API management needs a key.
    let create = |relpath: &str, secure: Option<&str>| {
        let mut action = json!({"name": "secret", "namespace": "_"});
        if let Some(k) = secure {
            action["secureKey"] = json!(k);
        }
        let doc = json!({"apidoc": {"namespace": "_", "gatewayBasePath": "/sec", "gatewayPath": relpath, "gatewayMethod": "get", "action": action}});
        let basic = basic(GUEST);
        let headers = [("authorization", basic.as_str()), ("content-type", "application/json")];
        send(
            env.s.addr,
            "POST",
            "/api/v1/web/whisk.system/apimgmt/createApi.http?responsetype=json",
            &headers,
            doc.to_string().as_bytes(),
        )
    };
    assert_eq!(create("/with", Some("s3cret")).status, 200);
    assert_eq!(create("/without", None).status, 200);
    assert_eq!(get(env.s.addr, "/api/guest/sec/with").status, 200);
    assert_eq!(get(env.s.addr, "/api/guest/sec/without").status, 401);
    let r = send(
        env.s.addr,
        "POST",
        "/api/v1/web/whisk.system/apimgmt/createApi.http",
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 401, "apimgmt without a key");

    // The key-less URL is the owner's: its records are theirs.
    let r = get(env.s.addr, &format!("{path}/books/1"));
    let id = r.header("x-openwhisk-activation-id").unwrap().to_owned();
    assert!(c.record(&id, Duration::from_secs(10)).is_some());
}

/// The CLI: `action create --web true`, `action get --url`, `--web raw` and `--web false` on
/// update (other annotations kept), and `api create|get|list|delete`.
fn cli(env: &Env) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hi.py");
    std::fs::write(&file, "def main(a):\n    return {'hi': a.get('name', 'you')}\n").unwrap();
    let hearth = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["--apihost", &env.s.url(), "--auth", GUEST])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hearth {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let f = file.to_str().unwrap();
    hearth(&["action", "create", "cli-hi", f, "--web", "true", "-a", "keep", "me"]);
    let url = hearth(&["action", "get", "cli-hi", "--url"]).trim().to_owned();
    assert_eq!(url, format!("{}/api/v1/web/guest/default/cli-hi", env.s.url()));
    let path = url.trim_start_matches(&env.s.url()).to_owned();
    assert_eq!(get(env.s.addr, &format!("{path}.json?name=Ada")).json(), json!({"hi": "Ada"}));
    hearth(&["action", "update", "cli-hi", "--web", "raw"]);
    let act = env.c.get("/api/v1/namespaces/_/actions/cli-hi?code=false").json();
    assert_eq!(
        (annotation(&act, "raw-http"), annotation(&act, "final")),
        (Some(&json!(true)), Some(&json!(true))),
        "{act}"
    );
    assert_eq!(annotation(&act, "keep"), Some(&json!("me")), "{act}");
    hearth(&["action", "update", "cli-hi", "--web", "true"]);

    let created = hearth(&["api", "create", "/tour", "/hi", "get", "cli-hi", "--apiname", "Tour"]);
    let api_url = created.lines().last().unwrap().trim().to_owned();
    assert_eq!(api_url, format!("{}/api/guest/tour/hi", env.s.url()), "{created}");
    assert_eq!(get(env.s.addr, "/api/guest/tour/hi?name=Bo").json(), json!({"hi": "Bo"}));
    let doc: Value = serde_json::from_str(&hearth(&["api", "get", "/tour"])).unwrap();
    assert_eq!(doc["info"]["title"], "Tour");
    let list = hearth(&["api", "list", "Tour"]);
    assert!(list.contains("/guest/cli-hi") && list.contains(&api_url), "{list}");
    hearth(&["api", "delete", "/tour"]);
    assert_eq!(get(env.s.addr, "/api/guest/tour/hi").status, 404);
    hearth(&["action", "update", "cli-hi", "--web", "false"]);
    assert_eq!(get(env.s.addr, &format!("{path}.json")).status, 404, "no longer exported");
}

/// A real browser: headless Chromium opens an `.html` web action whose script fetches a
/// `.json` web action and writes its result into the page; the rendered DOM shows it.
fn browser(env: &Env) {
    let c = &env.c;
    action(
        c,
        "greet",
        "def main(a):\n    return {'greeting': 'Hello ' + a.get('name', 'you')}\n",
        web(json!([])),
        json!([]),
    );
    let page = r#"<html><body><p id="out">waiting</p><script>
fetch('/api/v1/web/guest/default/greet.json?name=Chromium')
  .then((r) => r.json())
  .then((j) => { document.getElementById('out').textContent = 'fetched: ' + j.greeting; })
  .catch((e) => { document.getElementById('out').textContent = 'failed: ' + e; });
</script></body></html>"#;
    let code = format!("def main(a):\n    return {{'html': {page:?}}}\n");
    action(c, "page", &code, web(json!([])), json!([]));
    let url = format!("{}/api/v1/web/guest/default/page.html", env.s.url());
    let profile = tempfile::tempdir().unwrap();
    let mut dom = String::new();
    // The virtual-time budget lets the page's fetch finish before the DOM is dumped; a busy
    // machine may need a second look.
    for _ in 0..3 {
        let out = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=10000", "--dump-dom", &url])
            .output()
            .expect("chromium is needed for the browser test (scripts/install-deps.sh, HEARTH_DEPS=test)");
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("fetched: Hello Chromium") {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the page did not show the fetched result: {dom}");
}

/// One address over its allowance is answered 429 with Retry-After; another address and the
/// keyed API go on.
fn anonymous_throttle(env: &Env) {
    let addr = env.s.addr;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (statuses, retry) = rt.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.9:0".parse().unwrap()).unwrap();
        let stream = sock.connect(addr).await.unwrap();
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let mut retry = None;
        for _ in 0..4_500 {
            let req = hyper::Request::get("/api/v1/web/guest/default/missing.json")
                .header("host", "x")
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = tx.send_request(req).await.unwrap();
            let st = resp.status().as_u16();
            if st == 429 {
                retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            }
            let _ = resp.into_body().collect().await.unwrap();
            *statuses.entry(st).or_default() += 1;
        }
        (statuses, retry)
    });
    assert!(statuses.get(&404).copied().unwrap_or(0) >= 2_900, "{statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 1, "{statuses:?}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert_eq!(get(addr, "/api/v1/web/guest/default/echo.json").status, 200, "another address");
}

/// A named case run against the shared server.
type Case = (&'static str, fn(&Env));

fn main_cases() -> Vec<Case> {
    vec![
        ("extensions_and_context", extensions_and_context),
        ("http_results", http_results),
        ("errors", errors),
        ("raw_and_final", raw_and_final),
        ("require_whisk_auth", require_whisk_auth),
        ("options_and_head", options_and_head),
        ("records_belong_to_the_owner", records_belong_to_the_owner),
        ("payload_limit", payload_limit),
        ("routes_through_the_openwhisk_client", routes_through_the_openwhisk_client),
        ("cli", cli),
        ("browser", browser),
        ("anonymous_throttle", anonymous_throttle),
    ]
}

#[test]
fn web_actions_and_routes() {
    require_root();
    let s = Standalone::start("memory_budget_mb = 2048\n");
    let env = Env { c: s.client(), s };
    setup(&env);
    let only = std::env::var("WEB_CASE").ok();
    let mut failed = Vec::new();
    for (name, case) in main_cases() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("case {name}");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&env))).is_err() {
            failed.push(name);
        }
    }
    let mut s = env.s;
    s.stop();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

/// A web action that outlasts the blocking wait answers OpenWhisk's 202 "Response not yet
/// ready." with the activation id (an in-process server with a 200 ms wait and the fake
/// invoker, which holds an activation whose parameters say `"hold": true`).
#[test]
fn a_run_past_the_wait_is_202() {
    use hearth::controller::{Controller, ControllerConfig};
    use hearth::model::{AuthKey, EntityName, FullyQualifiedName, KeyValue, Kind};
    use hearth::store::{ActionUpdate, ExecUpdate, Store, StoreOptions};
    use hearth::testing::FakeInvoker;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (addr, trigger) = rt.block_on(async {
        let store =
            Store::open(dir.path(), StoreOptions { map_size: 64 << 20, ..Default::default() })
                .unwrap();
        let guest = EntityName::parse("guest").unwrap();
        store.ensure_namespace_with_key(&guest, &AuthKey::parse(GUEST).unwrap()).unwrap();
        let update = ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse("python:3").unwrap(),
                main: None,
                binary: false,
                image: None,
                code: ECHO.as_bytes().to_vec(),
            }),
            annotations: Some(vec![KeyValue::new("web-export", true)]),
            ..Default::default()
        };
        let fqn = FullyQualifiedName::new(guest, EntityName::parse("slow").unwrap());
        store.put_action(&fqn, update, true).unwrap();
        let config = ControllerConfig {
            max_blocking_wait: Duration::from_millis(200),
            ..Default::default()
        };
        let controller = Controller::new(store, Arc::new(FakeInvoker::new()), config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, sd) = hearth::shutdown::channel();
        tokio::spawn(async move { hearth::api::serve(listener, controller, sd).await });
        (addr, trigger)
    });
    let r = post_json(addr, "/api/v1/web/guest/default/slow.json", json!({"hold": true}));
    assert_error(&r, 202, "Response not yet ready.");
    assert!(r.header("x-openwhisk-activation-id").is_some_and(|id| id.len() == 32));
    let r = post_json(addr, "/api/v1/web/guest/default/slow.json", json!({"fast": 1}));
    assert_eq!((r.status, r.json()["fast"].clone()), (200, json!(1)), "{}", r.text());
    trigger.fire();
}
