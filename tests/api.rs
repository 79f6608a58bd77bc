//! End-to-end tests of the REST API: the real server (hyper, LMDB in a temp dir) on
//! 127.0.0.1:0, with `FakeInvoker` standing in for the invoker at the bus seam (the real
//! invoker has its own tests). Requests go through hyper's client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use hearth::controller::{Controller, ControllerConfig};
use hearth::model::{AuthKey, EntityName, GUEST_KEY};
use hearth::shutdown::{self, ShutdownTrigger};
use hearth::store::{Store, StoreOptions};
use hearth::testing::{FakeInvoker, FakeMode};

struct Server {
    addr: std::net::SocketAddr,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
    controller: Arc<Controller>,
    invoker: Arc<FakeInvoker>,
}

async fn start(dir: &Path, config: ControllerConfig) -> Server {
    let store =
        Store::open(dir, StoreOptions { map_size: 256 << 20, ..Default::default() }).unwrap();
    store
        .ensure_namespace_with_key(
            &EntityName::parse("guest").unwrap(),
            &AuthKey::parse(GUEST_KEY).unwrap(),
        )
        .unwrap();
    let invoker = Arc::new(FakeInvoker::new());
    let controller = Controller::new(store, invoker.clone(), config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, sd) = shutdown::channel();
    let c = controller.clone();
    let task = tokio::spawn(async move { hearth::api::serve(listener, c, sd).await.unwrap() });
    Server { addr, trigger, task, controller, invoker }
}

impl Server {
    /// Stops serving, commits the records and releases the store so the dir can be reopened.
    async fn stop(self) {
        self.trigger.fire();
        self.task.await.unwrap();
        self.controller.close().await;
        drop(self.controller);
    }
}

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(key))
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn call(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(path).header("host", "localhost");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{status} {path}"
    );
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}: {bytes:?}"));
    Resp { status, headers, body }
}

fn guest() -> String {
    basic(GUEST_KEY)
}

async fn get(s: &Server, path: &str) -> Resp {
    call(s.addr, Method::GET, path, Some(&guest()), None).await
}

async fn put(s: &Server, path: &str, body: Value) -> Resp {
    call(s.addr, Method::PUT, path, Some(&guest()), Some(body.to_string().into_bytes())).await
}

async fn post(s: &Server, path: &str, body: Value) -> Resp {
    call(s.addr, Method::POST, path, Some(&guest()), Some(body.to_string().into_bytes())).await
}

fn assert_error(r: &Resp, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", r.body);
    assert_eq!(r.body["code"].as_str().map(str::len), Some(32), "{}", r.body);
}

async fn create_echo(s: &Server, name: &str) {
    let r = put(
        s,
        &format!("/api/v1/namespaces/_/actions/{name}"),
        json!({"exec": {"kind": "python:3", "code": "def main(a): return a"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn fast_config() -> ControllerConfig {
    ControllerConfig { max_blocking_wait: Duration::from_millis(200), ..Default::default() }
}

#[tokio::test]
async fn info_needs_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    for path in ["/", "/api/v1"] {
        let r = call(s.addr, Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["api_paths"], json!(["/api/v1"]));
        assert_eq!(r.body["runtimes"]["python"][0]["kind"], "python:3");
        assert_eq!(r.body["runtimes"]["nodejs"][0]["kind"], "nodejs:20");
        assert_eq!(r.body["limits"]["max_action_duration"], 300_000);
    }
    let r = call(s.addr, Method::POST, "/api/v1", None, None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

/// OpenWhisk's `GET /invokers` and `GET /invokers/healthy/count`, without a key, following the
/// dispatcher's view.
#[tokio::test]
async fn invoker_health_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let r = call(s.addr, Method::GET, "/invokers", None, None).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({"invoker0": "up"})));
    let r = call(s.addr, Method::GET, "/invokers/healthy/count", None, None).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!(1)));
    s.invoker.set(FakeMode::Unavailable);
    let r = call(s.addr, Method::GET, "/invokers", None, None).await;
    assert_eq!(r.body, json!({"invoker0": "down"}));
    let r = call(s.addr, Method::GET, "/invokers/healthy/count", None, None).await;
    assert_eq!(r.body, json!(0));
    let r = call(s.addr, Method::PUT, "/invokers", None, None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED);
    let r = call(s.addr, Method::GET, "/invokers/healthy", None, None).await;
    assert_error(&r, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn auth_and_namespace_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let r = call(s.addr, Method::GET, "/api/v1/namespaces", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED);
    let wrong = format!("{}:{}", GUEST_KEY.split(':').next().unwrap(), "x".repeat(64));
    let r = call(s.addr, Method::GET, "/api/v1/namespaces", Some(&basic(&wrong)), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED);
    let r = call(s.addr, Method::GET, "/api/v1/namespaces", Some("Basic %%%"), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED);
    // Unauthenticated callers learn nothing, not even 404.
    let r = call(s.addr, Method::GET, "/api/v1/namespaces/_/actions/nope", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED);

    let r = get(&s, "/api/v1/namespaces").await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!(["guest"])));

    // A second namespace with its own key: each sees only its own.
    let other_key =
        s.controller.store().create_namespace(&EntityName::parse("other").unwrap()).unwrap();
    let other = basic(&other_key.to_string());
    create_echo(&s, "mine").await;
    for path in [
        "/api/v1/namespaces/other/actions",
        "/api/v1/namespaces/other/actions/x",
        "/api/v1/namespaces/nosuch/actions",
        "/api/v1/namespaces/other/activations",
    ] {
        assert_error(&get(&s, path).await, StatusCode::FORBIDDEN);
    }
    let r = call(s.addr, Method::GET, "/api/v1/namespaces/guest/actions/mine", Some(&other), None)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN);
    let r =
        call(s.addr, Method::GET, "/api/v1/namespaces/_/actions/mine", Some(&other), None).await;
    assert_error(&r, StatusCode::NOT_FOUND);
    let r = call(s.addr, Method::GET, "/api/v1/namespaces", Some(&other), None).await;
    assert_eq!(r.body, json!(["other"]));

    // Revoking the key from the store (as `hearthd admin` does) works on the next request,
    // although the key is in the auth cache.
    s.controller.store().revoke_key(&other_key.uuid).unwrap();
    let r = call(s.addr, Method::GET, "/api/v1/namespaces", Some(&other), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED);

    // Unknown paths, wrong methods, unsupported entities.
    assert_error(&get(&s, "/api/v2/x").await, StatusCode::NOT_FOUND);
    assert_error(&get(&s, "/api/v1/namespaces/_/bogus").await, StatusCode::NOT_FOUND);
    let r =
        call(s.addr, Method::DELETE, "/api/v1/namespaces/_/actions", Some(&guest()), None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers.get("allow").unwrap(), "GET");
    // Triggers and rules (tests/triggers.rs has their routes): none yet, listed empty, each
    // one absent; a rule needs a trigger and an action.
    for kind in ["triggers", "rules"] {
        let r = get(&s, &format!("/api/v1/namespaces/_/{kind}")).await;
        assert_eq!((r.status, r.body), (StatusCode::OK, json!([])), "{kind}");
        assert_error(
            &get(&s, &format!("/api/v1/namespaces/_/{kind}/x")).await,
            StatusCode::NOT_FOUND,
        );
    }
    let r = put(&s, "/api/v1/namespaces/_/rules/x", json!({})).await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "rule requires a valid trigger and a valid action");
    let summary = get(&s, "/api/v1/namespaces/_").await;
    assert_eq!(summary.body["actions"][0]["name"], "mine");
    s.stop().await;
}

async fn call_as(s: &Server, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    let body = body.map(|b| b.to_string().into_bytes());
    call(s.addr, method, path, Some(&basic(key)), body).await
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

/// Packages over HTTP: create, update (version bump, overwrite rule), get with its actions,
/// list (limit, skip, count), delete (refused while it holds actions), actions inside it for
/// every action route, and the records' `path`.
#[tokio::test]
async fn packages_crud_and_actions_inside() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let base = "/api/v1/namespaces/_/packages";
    let r =
        put(&s, &format!("{base}/utils"), json!({"parameters": [{"key": "p", "value": 1}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["version"].clone(), r.body["binding"].clone(), r.body["namespace"].clone()),
        (json!("0.0.1"), json!({}), json!("guest"))
    );
    assert_error(&put(&s, &format!("{base}/utils"), json!({})).await, StatusCode::CONFLICT);
    let r = put(&s, &format!("{base}/utils?overwrite=true"), json!({"publish": true})).await;
    assert_eq!(
        (r.body["version"].clone(), r.body["publish"].clone()),
        (json!("0.0.2"), json!(true))
    );
    assert_eq!(r.body["parameters"], json!([{"key": "p", "value": 1}]), "kept on update");
    let r = put(&s, &format!("{base}/default"), json!({})).await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "Package name 'default' is reserved.");

    // Actions inside: create, get, list in the package, invoke, delete.
    let code = json!({"exec": {"kind": "python:3", "code": "def main(a): return a"}});
    let r = put(&s, "/api/v1/namespaces/_/actions/utils/echo", code.clone()).await;
    assert_eq!((r.status, r.body["namespace"].clone()), (StatusCode::OK, json!("guest/utils")));
    assert_error(
        &put(&s, "/api/v1/namespaces/_/actions/nopkg/echo", code.clone()).await,
        StatusCode::NOT_FOUND,
    );
    create_echo(&s, "top").await;
    let r = get(&s, "/api/v1/namespaces/_/actions/utils/echo").await;
    assert_eq!(r.body["exec"]["code"], "def main(a): return a");
    assert_eq!(r.body["parameters"], json!([{"key": "p", "value": 1}]), "the package's merged");
    let r = get(&s, "/api/v1/namespaces/_/actions/utils/").await;
    assert_eq!(names(&r.body), ["echo"], "{}", r.body);
    let r = get(&s, "/api/v1/namespaces/_/actions/utils/?count=true").await;
    assert_eq!(r.body, json!({"actions": 1}));
    let r = get(&s, "/api/v1/namespaces/_/actions").await;
    assert_eq!(names(&r.body), ["top", "echo"], "the namespace lists packaged actions too");
    let r = get(&s, &format!("{base}/utils")).await;
    assert_eq!(r.body["actions"], json!([{"name": "echo", "version": "0.0.1", "annotations": []}]));
    assert_eq!(r.body["feeds"], json!([]));
    let r =
        post(&s, "/api/v1/namespaces/_/actions/utils/echo?blocking=true", json!({"q": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["response"]["result"], json!({"p": 1, "q": 2}));
    let path = r.body["annotations"].as_array().unwrap().iter().find(|a| a["key"] == "path");
    assert_eq!(path.unwrap()["value"], "guest/utils/echo");
    assert_eq!(r.body["name"], "echo");
    let seen = s.invoker.seen().last().unwrap().action.key();
    assert_eq!(seen, "guest/utils/echo");

    // A package that holds actions is not deleted: OpenWhisk's 409 and message.
    let r = call(s.addr, Method::DELETE, &format!("{base}/utils"), Some(&guest()), None).await;
    assert_error(&r, StatusCode::CONFLICT);
    assert_eq!(
        r.body["error"],
        "Package not empty (contains 1 entity). Set force param or delete package contents."
    );
    // An action and a package never share a name.
    assert_error(&put(&s, &format!("{base}/top"), json!({})).await, StatusCode::CONFLICT);
    let r = call(
        s.addr,
        Method::DELETE,
        "/api/v1/namespaces/_/actions/utils/echo",
        Some(&guest()),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(s.addr, Method::DELETE, &format!("{base}/utils"), Some(&guest()), None).await;
    assert_eq!((r.status, r.body["name"].clone()), (StatusCode::OK, json!("utils")));
    assert_error(&get(&s, &format!("{base}/utils")).await, StatusCode::NOT_FOUND);

    // Listing: limit, skip, count.
    for i in 0..5 {
        assert_eq!(put(&s, &format!("{base}/p{i}"), json!({})).await.status, StatusCode::OK);
    }
    let r = get(&s, &format!("{base}?limit=2&skip=1")).await;
    assert_eq!(names(&r.body), ["p1", "p2"]);
    assert_eq!(r.body[0]["binding"], json!(false), "OpenWhisk's list shape");
    assert_eq!(get(&s, &format!("{base}?count=true")).await.body, json!({"packages": 5}));
    let summary = get(&s, "/api/v1/namespaces/_").await;
    assert_eq!(summary.body["packages"].as_array().unwrap().len(), 5);
    s.stop().await;
}

/// What OpenWhisk clients rely on in a PUT answer: the whole stored entity with its code;
/// `binary` inferred when left out (a zip sent as base64); `:default` kinds stored as the
/// concrete kind.
#[tokio::test]
async fn put_answers_the_stored_entity_as_openwhisk_does() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let code = "function main(p) { return p; }";
    let r = put(
        &s,
        "/api/v1/namespaces/_/actions/js",
        json!({"exec": {"kind": "nodejs:default", "code": code}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["exec"], json!({"kind": "nodejs:20", "binary": false, "code": code}));
    let r = put(
        &s,
        "/api/v1/namespaces/_/actions/py",
        json!({"exec": {"kind": "python:default", "code": "def main(a): return a"}}),
    )
    .await;
    assert_eq!(r.body["exec"]["kind"], "python:3");
    // A zip as base64, `binary` left out: taken as a zip and answered as it was sent.
    let zip = base64::engine::general_purpose::STANDARD.encode(b"PK\x03\x04 not really a zip!");
    let r = put(
        &s,
        "/api/v1/namespaces/_/actions/zipped",
        json!({"exec": {"kind": "nodejs:20", "code": zip}}),
    )
    .await;
    assert_eq!(
        (r.body["exec"]["binary"].clone(), r.body["exec"]["code"].clone()),
        (json!(true), json!(zip))
    );
    // An update without code answers with the code it kept.
    let r =
        put(&s, "/api/v1/namespaces/_/actions/js?overwrite=true", json!({"parameters": []})).await;
    assert_eq!(
        (r.body["exec"]["code"].clone(), r.body["version"].clone()),
        (json!(code), json!("0.0.2"))
    );
    s.stop().await;
}

/// Bindings: parameters merge package < binding < action < request (each layer tested),
/// actions are read and run through a binding and never written; the record carries the
/// resolved `path` and the `binding` annotation. Sharing: another namespace reads and runs a
/// published package, never writes it, and gets the same 403 for an unpublished package as
/// for a missing one.
#[tokio::test]
async fn bindings_merge_parameters_and_sharing_hides_private_packages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let other =
        s.controller.store().create_namespace(&EntityName::parse("other").unwrap()).unwrap();
    let other = other.to_string();
    let kv = |pairs: &[(&str, &str)]| -> Value {
        pairs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()
    };
    let pkg = kv(&[("a", "package"), ("b", "package"), ("c", "package"), ("d", "package")]);
    let r = put(&s, "/api/v1/namespaces/_/packages/lib", json!({"parameters": pkg})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let action = json!({
        "exec": {"kind": "python:3", "code": "def main(a): return a"},
        "parameters": kv(&[("c", "action"), ("d", "action")]),
    });
    assert_eq!(
        put(&s, "/api/v1/namespaces/_/actions/lib/show", action).await.status,
        StatusCode::OK
    );
    let binding = json!({
        "binding": {"namespace": "_", "name": "lib"},
        "parameters": kv(&[("b", "binding"), ("c", "binding"), ("d", "binding")]),
    });
    let r = put(&s, "/api/v1/namespaces/_/packages/mine", binding).await;
    assert_eq!(r.body["binding"], json!({"namespace": "guest", "name": "lib"}), "{}", r.body);
    let ann = r.body["annotations"].as_array().unwrap();
    assert!(ann.iter().any(|a| a["key"] == "binding"), "{}", r.body);

    let r =
        post(&s, "/api/v1/namespaces/_/actions/mine/show?blocking=true", json!({"d": "request"}))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["response"]["result"],
        json!({"a": "package", "b": "binding", "c": "action", "d": "request"})
    );
    let find = |key: &str| {
        r.body["annotations"].as_array().unwrap().iter().find(|a| a["key"] == key).cloned()
    };
    assert_eq!(find("path").unwrap()["value"], "guest/lib/show");
    assert_eq!(find("binding").unwrap()["value"], "guest/mine");
    // Directly: no binding layer, no binding annotation.
    let r = post(&s, "/api/v1/namespaces/_/actions/lib/show?blocking=true", json!({})).await;
    assert_eq!(
        r.body["response"]["result"],
        json!({"a": "package", "b": "package", "c": "action", "d": "action"})
    );
    assert!(r.body["annotations"].as_array().unwrap().iter().all(|a| a["key"] != "binding"));
    // GET through the binding: merged; the binding shows the bound package's actions and
    // its parameters under its own.
    let r = get(&s, "/api/v1/namespaces/_/actions/mine/show").await;
    assert_eq!(r.body["namespace"], "guest/lib");
    let got: Vec<_> = r.body["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["key"].clone(), p["value"].clone()))
        .collect();
    assert!(
        got.contains(&(json!("b"), json!("binding")))
            && got.contains(&(json!("c"), json!("action"))),
        "{got:?}"
    );
    let r = get(&s, "/api/v1/namespaces/_/packages/mine").await;
    assert_eq!(names(&r.body["actions"]), ["show"]);
    assert!(r.body["parameters"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "a", "value": "package"})));
    assert_eq!(names(&get(&s, "/api/v1/namespaces/_/actions/mine/").await.body), ["show"]);
    // Never written through a binding; a package never becomes one; no binding of a binding.
    let code = json!({"exec": {"kind": "python:3", "code": "x"}});
    let r = put(&s, "/api/v1/namespaces/_/actions/mine/new", code.clone()).await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "Operation not permitted on package binding.");
    let r = call(
        s.addr,
        Method::DELETE,
        "/api/v1/namespaces/_/actions/mine/show",
        Some(&guest()),
        None,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    let r = put(
        &s,
        "/api/v1/namespaces/_/packages/lib?overwrite=true",
        json!({"binding": {"namespace": "guest", "name": "mine"}}),
    )
    .await;
    assert_error(&r, StatusCode::CONFLICT);
    assert_eq!(r.body["error"], "Resource is a package and cannot be converted into a binding.");
    let r = put(&s, "/api/v1/namespaces/_/packages/b2", json!({"binding": {"name": "mine"}})).await;
    assert_eq!(r.body["error"], "Cannot bind to another package binding.");
    let r =
        put(&s, "/api/v1/namespaces/_/packages/b3", json!({"binding": {"name": "nothing"}})).await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "Binding references a package that does not exist.");

    // Sharing. Unpublished: `other` gets the answer of a missing package, on every route.
    let hidden = |r: &Resp| {
        assert_error(r, StatusCode::FORBIDDEN);
        r.body["error"].as_str().unwrap().to_owned()
    };
    let mut answers = Vec::new();
    for pkg in ["lib", "nosuch"] {
        for (m, path) in [
            (Method::GET, format!("/api/v1/namespaces/guest/packages/{pkg}")),
            (Method::GET, format!("/api/v1/namespaces/guest/actions/{pkg}/show")),
            (Method::GET, format!("/api/v1/namespaces/guest/actions/{pkg}/")),
            (Method::POST, format!("/api/v1/namespaces/guest/actions/{pkg}/show")),
        ] {
            answers.push(hidden(&call_as(&s, &other, m, &path, None).await));
        }
    }
    assert_eq!(answers[..4], answers[4..], "an unpublished package reads as a missing one");
    let r = call_as(&s, &other, Method::GET, "/api/v1/namespaces/guest/packages", None).await;
    assert_eq!(r.body, json!([]));
    let r = call_as(
        &s,
        &other,
        Method::PUT,
        "/api/v1/namespaces/_/packages/b",
        Some(json!({"binding": {"namespace": "guest", "name": "lib"}})),
    )
    .await;
    assert_eq!(hidden(&r), answers[0], "no binding to a private package either");

    // Published: readable and runnable by `other`, never writable.
    assert_eq!(
        put(&s, "/api/v1/namespaces/_/packages/lib?overwrite=true", json!({"publish": true}))
            .await
            .status,
        StatusCode::OK
    );
    let r = call_as(&s, &other, Method::GET, "/api/v1/namespaces/guest/packages/lib", None).await;
    assert_eq!((r.status, names(&r.body["actions"])), (StatusCode::OK, vec!["show".to_owned()]));
    let r = call_as(&s, &other, Method::GET, "/api/v1/namespaces/guest/packages", None).await;
    assert_eq!(names(&r.body), ["lib"], "the shared packages only, not the binding");
    let r =
        call_as(&s, &other, Method::GET, "/api/v1/namespaces/_/packages?public=true", None).await;
    assert_eq!(names(&r.body), ["lib"]);
    let r = call_as(
        &s,
        &other,
        Method::POST,
        "/api/v1/namespaces/guest/actions/lib/show?blocking=true",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["namespace"], "other", "the record belongs to the caller");
    for (m, path, body) in [
        (
            Method::PUT,
            "/api/v1/namespaces/guest/actions/lib/show?overwrite=true",
            Some(code.clone()),
        ),
        (Method::DELETE, "/api/v1/namespaces/guest/actions/lib/show", None),
        (Method::PUT, "/api/v1/namespaces/guest/packages/lib?overwrite=true", Some(json!({}))),
        (Method::DELETE, "/api/v1/namespaces/guest/packages/lib", None),
        (Method::GET, "/api/v1/namespaces/guest/actions/mine/show", None),
        (Method::GET, "/api/v1/namespaces/guest/packages/mine", None),
    ] {
        let r = call_as(&s, &other, m.clone(), path, body).await;
        assert_eq!(hidden(&r), answers[0], "{m} {path}");
    }
    // `other` binds the shared package and runs through its own binding.
    let r = call_as(&s, &other, Method::PUT, "/api/v1/namespaces/_/packages/theirs", Some(json!({"binding": {"namespace": "guest", "name": "lib"}, "parameters": kv(&[("a", "other")])}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call_as(
        &s,
        &other,
        Method::POST,
        "/api/v1/namespaces/_/actions/theirs/show?blocking=true&result=true",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.body, json!({"a": "other", "b": "package", "c": "action", "d": "action"}));
    // Unpublished again: the binding no longer reaches it.
    put(&s, "/api/v1/namespaces/_/packages/lib?overwrite=true", json!({"publish": false})).await;
    let r = call_as(
        &s,
        &other,
        Method::POST,
        "/api/v1/namespaces/_/actions/theirs/show?blocking=true",
        Some(json!({})),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn action_crud_merge_and_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let path = "/api/v1/namespaces/_/actions/hello";
    let body = json!({
        "namespace": "guest", "name": "hello",
        "exec": {"kind": "python:3", "code": "def main(a):\n    return a\n"},
        "parameters": [{"key": "greeting", "value": "hi"}],
        "limits": {"timeout": 1000},
    });
    let r = put(&s, path, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], "0.0.1");
    assert_eq!(r.body["limits"]["timeout"], 1000);
    assert_eq!(r.body["limits"]["memory"], 256);

    assert_error(&put(&s, path, body.clone()).await, StatusCode::CONFLICT);
    assert_error(&put(&s, &format!("{path}?overwrite=false"), body).await, StatusCode::CONFLICT);

    // Update only the memory limit: code, parameters and timeout are kept.
    let r = put(&s, &format!("{path}?overwrite=true"), json!({"limits": {"memory": 128}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], "0.0.2");
    let r = get(&s, path).await;
    assert_eq!(r.body["exec"]["code"], "def main(a):\n    return a\n");
    assert_eq!(r.body["exec"]["kind"], "python:3");
    assert_eq!(r.body["parameters"], json!([{"key": "greeting", "value": "hi"}]));
    assert_eq!(
        (r.body["limits"]["timeout"].clone(), r.body["limits"]["memory"].clone()),
        (json!(1000), json!(128))
    );
    let r = get(&s, &format!("{path}?code=false")).await;
    assert!(r.body["exec"].get("code").is_none());

    // Binary code round-trips as base64.
    let zip = base64::engine::general_purpose::STANDARD.encode(b"PK\x03\x04 not really a zip");
    let r = put(
        &s,
        "/api/v1/namespaces/_/actions/bin",
        json!({"exec": {"kind": "nodejs:20", "code": zip, "binary": true, "main": "run"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(&s, "/api/v1/namespaces/_/actions/bin").await;
    assert_eq!(
        (r.body["exec"]["code"].as_str(), r.body["exec"]["main"].as_str()),
        (Some(zip.as_str()), Some("run"))
    );

    // Invalid input: 400 and nothing stored.
    for (p, b) in [
        ("/api/v1/namespaces/_/actions/bad", json!({"exec": {"kind": "java:8", "code": "x"}})),
        (
            "/api/v1/namespaces/_/actions/bad",
            json!({"exec": {"kind": "python:3", "code": "x"}, "limits": {"memory": 4096}}),
        ),
        (
            "/api/v1/namespaces/_/actions/bad",
            json!({"exec": {"kind": "python:3", "code": "x"}, "limits": {"timeout": 50}}),
        ),
        ("/api/v1/namespaces/_/actions/bad", json!({"parameters": []})),
        ("/api/v1/namespaces/_/actions/-bad", json!({"exec": {"kind": "python:3", "code": "x"}})),
        (
            "/api/v1/namespaces/_/actions/a%2Fb%2Fc",
            json!({"exec": {"kind": "python:3", "code": "x"}}),
        ),
    ] {
        let r = put(&s, p, b).await;
        assert_error(&r, StatusCode::BAD_REQUEST);
    }
    let r = call(
        s.addr,
        Method::PUT,
        "/api/v1/namespaces/_/actions/bad",
        Some(&guest()),
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_error(&get(&s, "/api/v1/namespaces/_/actions/bad").await, StatusCode::NOT_FOUND);
    // A name with a space is valid, percent-encoded in the path.
    create_echo(&s, "with%20space").await;
    assert_eq!(
        get(&s, "/api/v1/namespaces/_/actions/with%20space").await.body["name"],
        "with space"
    );

    // Pagination.
    for i in 0..5 {
        create_echo(&s, &format!("p{i}")).await;
    }
    let names = |r: &Resp| {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all = get(&s, "/api/v1/namespaces/_/actions").await;
    assert_eq!(names(&all), ["bin", "hello", "p0", "p1", "p2", "p3", "p4", "with space"]);
    assert!(all.body[0]["exec"].get("code").is_none());
    let page = get(&s, "/api/v1/namespaces/_/actions?limit=2&skip=3").await;
    assert_eq!(names(&page), ["p1", "p2"]);
    assert_eq!(
        get(&s, "/api/v1/namespaces/_/actions?count=true").await.body,
        json!({"actions": 8})
    );
    assert_error(&get(&s, "/api/v1/namespaces/_/actions?limit=201").await, StatusCode::BAD_REQUEST);
    assert_error(&get(&s, "/api/v1/namespaces/_/actions?skip=x").await, StatusCode::BAD_REQUEST);

    let r = call(s.addr, Method::DELETE, path, Some(&guest()), None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("hello")));
    assert_error(&get(&s, path).await, StatusCode::NOT_FOUND);
    let r = call(s.addr, Method::DELETE, path, Some(&guest()), None).await;
    assert_error(&r, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Sends a request head declaring a body larger than any limit and no body: the server must
/// answer 413 without waiting for the body, and close the connection (the body it left unread
/// must not be taken for the next request; a client reusing the socket would lose that one).
async fn declared_too_large(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 900000000\r\n\r\n",
        guest()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection after refusing an unread body")
        .unwrap();
    head
}

#[tokio::test]
async fn oversized_and_malformed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    create_echo(&s, "echo").await;
    let big = json!({"blob": "x".repeat(hearth::model::MAX_PAYLOAD_BYTES)});
    let r = post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", big.clone()).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body["error"].as_str().unwrap().contains("1048576"), "{}", r.body);
    let r = put(&s, "/api/v1/namespaces/_/actions/big", json!({"exec": {"kind": "python:3", "code": "x"}, "parameters": [{"key": "k", "value": big}]})).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE);
    for (m, p) in [
        ("PUT", "/api/v1/namespaces/_/actions/huge"),
        ("POST", "/api/v1/namespaces/_/actions/echo"),
    ] {
        let head = declared_too_large(s.addr, m, p).await;
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
        assert!(head.contains("maximum of"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    }
    let r = call(
        s.addr,
        Method::POST,
        "/api/v1/namespaces/_/actions/echo?blocking=true",
        Some(&guest()),
        Some(b"[1,2]".to_vec()),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    let r = call(
        s.addr,
        Method::POST,
        "/api/v1/namespaces/_/actions/echo?blocking=true",
        Some(&guest()),
        Some(b"{\"a\":".to_vec()),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_error(
        &post(&s, "/api/v1/namespaces/_/actions/echo?blocking=maybe", json!({})).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&s, "/api/v1/namespaces/_/activations/not-an-id").await,
        StatusCode::BAD_REQUEST,
    );
    assert!(s.invoker.seen().is_empty(), "nothing invalid was dispatched");
    s.stop().await;
}

/// OpenWhisk's per-namespace limits: concurrency and rate refused with its 429 messages, one
/// namespace's limit never touching another's, an operator's override applying to the very
/// next request, and `GET /namespaces/_/limits` saying what holds.
#[tokio::test]
async fn namespace_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.max_blocking_wait = Duration::from_secs(5);
    config.namespace_limits.concurrent_invocations = Some(2);
    let s = start(dir.path(), config).await;
    create_echo(&s, "echo").await;
    let other_key =
        s.controller.store().create_namespace(&EntityName::parse("other").unwrap()).unwrap();
    let other = basic(&other_key.to_string());
    let r = call(
        s.addr,
        Method::PUT,
        "/api/v1/namespaces/_/actions/echo",
        Some(&other),
        Some(
            json!({"exec": {"kind": "python:3", "code": "def main(a): return a"}})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = get(&s, "/api/v1/namespaces/_/limits").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["concurrentInvocations"], 2);
    assert_eq!(r.body["maxActionMemory"], 512);

    // Two in flight (each takes 1.5 s), the third refused naming the limit; the other
    // namespace is admitted meanwhile.
    s.invoker.set(FakeMode::Delay(Duration::from_millis(1500)));
    let path = "/api/v1/namespaces/_/actions/echo?blocking=true";
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.addr;
            tokio::spawn(async move {
                call(addr, Method::POST, path, Some(&guest()), Some(b"{}".to_vec())).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(&s, path, json!({})).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["error"], "Too many concurrent requests in flight (count: 2, allowed: 2).");
    let r = call(s.addr, Method::POST, path, Some(&other), Some(b"{}".to_vec())).await;
    assert_eq!(r.status, StatusCode::OK, "another namespace is not throttled: {}", r.body);
    for t in slow {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    s.invoker.set(FakeMode::Complete);
    let r = post(&s, path, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "finished activations free their slots: {}", r.body);

    // An override (what `hearthd admin limits set` writes) holds from the next request on;
    // zero shuts the namespace (the counting itself is unit-tested in controller::admission).
    let guest_ns = EntityName::parse("guest").unwrap();
    let patch =
        hearth::model::NamespaceLimits { invocations_per_minute: Some(0), ..Default::default() };
    s.controller.store().set_namespace_limits(&guest_ns, patch).unwrap();
    let r = get(&s, "/api/v1/namespaces/_/limits").await;
    assert_eq!(r.body["invocationsPerMinute"], 0);
    assert_eq!(r.body["concurrentInvocations"], 2, "the other limits keep the host's value");
    let r = post(&s, path, json!({})).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    let msg = r.body["error"].as_str().unwrap();
    assert!(msg.starts_with("Too many requests in the last minute (count: "), "{msg}");
    assert!(msg.ends_with(", allowed: 0)."), "{msg}");
    let r = call(s.addr, Method::POST, path, Some(&other), Some(b"{}".to_vec())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.controller.store().clear_namespace_limits(&guest_ns).unwrap();
    let r = post(&s, path, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "cleared: the defaults hold again: {}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn invoke_modes_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    let r = put(&s, "/api/v1/namespaces/_/actions/echo", json!({"exec": {"kind": "python:3", "code": "x"}, "parameters": [{"key": "a", "value": 1}, {"key": "b", "value": 1}]})).await;
    assert_eq!(r.status, StatusCode::OK);

    // Blocking: the whole record, request params overlaid on the action's.
    let r = post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", json!({"b": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(r.headers.get("x-openwhisk-activation-id").unwrap(), id.as_str());
    assert_eq!(r.body["response"]["result"], json!({"a": 1, "b": 2}));
    assert_eq!(r.body["namespace"], "guest");
    {
        let seen = s.invoker.seen();
        let m = seen.last().unwrap();
        assert_eq!(
            (m.revision, m.subject.as_str(), m.action.to_string()),
            (1, "guest", "guest/echo".to_owned())
        );
    }
    // Readable at once, with the invoker's annotations kept.
    let rec = get(&s, &format!("/api/v1/namespaces/_/activations/{id}")).await;
    assert_eq!(rec.status, StatusCode::OK);
    assert_eq!(rec.body["response"]["status"], "success");
    for k in ["path", "kind", "limits", "waitTime", "initTime"] {
        assert!(rec.body["annotations"].as_array().unwrap().iter().any(|kv| kv["key"] == k), "{k}");
    }
    let logs = get(&s, &format!("/api/v1/namespaces/guest/activations/{id}/logs")).await;
    assert_eq!(logs.body["logs"].as_array().unwrap().len(), 1);
    let res = get(&s, &format!("/api/v1/namespaces/_/activations/{id}/result")).await;
    assert_eq!(
        (res.body["success"].clone(), res.body["status"].clone()),
        (json!(true), json!("success"))
    );

    // Result only.
    let r =
        post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", json!({"c": 3}))
            .await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({"a": 1, "b": 1, "c": 3})));
    assert!(r.headers.contains_key("x-openwhisk-activation-id"));

    // Failures: 502 with the record or result; internal errors 500.
    let r =
        post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", json!({"fail": true})).await;
    assert_eq!(
        (r.status, r.body["response"]["status"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("application error"))
    );
    let r = post(
        &s,
        "/api/v1/namespaces/_/actions/echo?blocking=true&result=true",
        json!({"crash": true}),
    )
    .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::BAD_GATEWAY, json!({"error": "the action crashed"}))
    );
    s.invoker.set(FakeMode::Vanish);
    let r = post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", json!({})).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert_eq!(r.body["response"]["status"], "whisk internal error");
    let vanished = r.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&s, &format!("/api/v1/namespaces/_/activations/{vanished}")).await.body["statusCode"],
        3
    );

    // Non-blocking: 202 at once; the record follows.
    s.invoker.set(FakeMode::Complete);
    let r = post(&s, "/api/v1/namespaces/_/actions/echo", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let nb = r.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(r.headers.get("x-openwhisk-activation-id").unwrap(), nb.as_str());

    // The blocking wait runs out (200 ms here): 202, and the record is written later.
    s.invoker.set(FakeMode::Delay(Duration::from_millis(600)));
    let t = std::time::Instant::now();
    let r = post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(t.elapsed() < Duration::from_millis(550), "{:?}", t.elapsed());
    let late = r.body["activationId"].as_str().unwrap().to_owned();
    assert_error(
        &get(&s, &format!("/api/v1/namespaces/_/activations/{late}")).await,
        StatusCode::NOT_FOUND,
    );
    hearth::testing::eventually_within(
        "the late activation's record",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = get(&s, &format!("/api/v1/namespaces/_/activations/{late}")).await;
            if r.status == StatusCode::OK {
                Ok(())
            } else {
                Err(format!("{}: {}", r.status, r.body))
            }
        },
    )
    .await;

    // Dispatch refusals: 429 / 503 and nothing recorded.
    let before = get(&s, "/api/v1/namespaces/_/activations?count=true").await.body["activations"]
        .as_u64()
        .unwrap();
    s.invoker.set(FakeMode::Overloaded);
    assert_error(
        &post(&s, "/api/v1/namespaces/_/actions/echo?blocking=true", json!({})).await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    s.invoker.set(FakeMode::Unavailable);
    assert_error(
        &post(&s, "/api/v1/namespaces/_/actions/echo", json!({})).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let after = get(&s, "/api/v1/namespaces/_/activations?count=true").await.body["activations"]
        .as_u64()
        .unwrap();
    assert_eq!((before, after), (7, 7));
    assert_error(
        &post(&s, "/api/v1/namespaces/_/actions/missing?blocking=true", json!({})).await,
        StatusCode::NOT_FOUND,
    );
    s.stop().await;
}

#[tokio::test]
async fn activation_listing_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    create_echo(&s, "one").await;
    create_echo(&s, "two").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let name = if i % 2 == 0 { "one" } else { "two" };
        let r = post(
            &s,
            &format!("/api/v1/namespaces/_/actions/{name}?blocking=true"),
            json!({"i": i}),
        )
        .await;
        ids.push(r.body["activationId"].as_str().unwrap().to_owned());
        // Distinct start times so newest-first order is observable.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let list = get(&s, "/api/v1/namespaces/_/activations").await;
    let got: Vec<&str> =
        list.body.as_array().unwrap().iter().map(|a| a["activationId"].as_str().unwrap()).collect();
    let mut newest_first: Vec<&str> = ids.iter().map(String::as_str).collect();
    newest_first.reverse();
    assert_eq!(got, newest_first);
    assert!(
        list.body[0].get("logs").is_none() && list.body[0].get("response").is_none(),
        "summaries"
    );
    let docs = get(&s, "/api/v1/namespaces/_/activations?docs=true&limit=1").await;
    assert_eq!(docs.body.as_array().unwrap().len(), 1);
    assert_eq!(docs.body[0]["response"]["result"]["i"], 5);
    let page = get(&s, "/api/v1/namespaces/_/activations?limit=2&skip=1").await;
    let got: Vec<&str> =
        page.body.as_array().unwrap().iter().map(|a| a["activationId"].as_str().unwrap()).collect();
    assert_eq!(got, &newest_first[1..3]);
    let one = get(&s, "/api/v1/namespaces/_/activations?name=one&docs=true").await;
    let is: Vec<i64> = one
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response"]["result"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(is, [4, 2, 0]);
    let all = get(&s, "/api/v1/namespaces/_/activations?docs=true").await;
    let start_of = |i: usize| all.body[5 - i]["start"].as_u64().unwrap();
    let window = get(
        &s,
        &format!(
            "/api/v1/namespaces/_/activations?since={}&upto={}&docs=true",
            start_of(1),
            start_of(3)
        ),
    )
    .await;
    let is: Vec<i64> = window
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["response"]["result"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(is, [3, 2, 1]);
    assert_eq!(
        get(&s, "/api/v1/namespaces/_/activations?count=true&name=two").await.body,
        json!({"activations": 3})
    );
    assert_error(
        &get(&s, "/api/v1/namespaces/_/activations?limit=500").await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &get(&s, &format!("/api/v1/namespaces/_/activations/{}", "0".repeat(32))).await,
        StatusCode::NOT_FOUND,
    );
    s.stop().await;
}

#[tokio::test]
async fn persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), fast_config()).await;
    create_echo(&s, "keep").await;
    let r = post(&s, "/api/v1/namespaces/_/actions/keep?blocking=true", json!({"x": 1})).await;
    let id = r.body["activationId"].as_str().unwrap().to_owned();
    // A non-blocking record still queued at shutdown is committed by close().
    let r = post(&s, "/api/v1/namespaces/_/actions/keep", json!({"x": 2})).await;
    let nb = r.body["activationId"].as_str().unwrap().to_owned();
    let key = s.controller.store().create_namespace(&EntityName::parse("team").unwrap()).unwrap();
    s.stop().await;

    let s = start(dir.path(), fast_config()).await;
    let a = get(&s, "/api/v1/namespaces/_/actions/keep").await;
    assert_eq!(
        (a.status, a.body["exec"]["code"].as_str()),
        (StatusCode::OK, Some("def main(a): return a"))
    );
    assert_eq!(
        get(&s, &format!("/api/v1/namespaces/_/activations/{id}")).await.body["response"]["result"],
        json!({"x": 1})
    );
    assert_eq!(
        get(&s, &format!("/api/v1/namespaces/_/activations/{nb}")).await.status,
        StatusCode::OK
    );
    let r =
        call(s.addr, Method::GET, "/api/v1/namespaces", Some(&basic(&key.to_string())), None).await;
    assert_eq!(r.body, json!(["team"]));
    // Updating after the restart continues the revision count.
    let r =
        put(&s, "/api/v1/namespaces/_/actions/keep?overwrite=true", json!({"publish": true})).await;
    assert_eq!(r.body["version"], "0.0.2");
    s.stop().await;
}
