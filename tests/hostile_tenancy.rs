//! Authentication and tenancy against a real `hearthd standalone`: every route refuses other
//! namespaces (existing or not, with the same answer), records and actions of one namespace
//! are invisible to another; packages: a private package and a binding answer as missing
//! ones on every route, a shared package is read and run but never written, and the
//! whisk.system catalog is run by everyone and changed by no caller; secrets never reach the
//! data dir or the logs in clear, and brute-force attempts are throttled (429) per client
//! address and per key uuid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::Path;

use harness::*;
use serde_json::json;

/// Every file under `dir` (recursively), read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_type().unwrap().is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tenancy_secrets_and_brute_force() {
    require_root();
    // Debug logging: the most a log ever says.
    let mut s = Standalone::start_logging("prewarm = []\n", "hearth=debug");
    let guest = s.client();
    let other_key = admin_namespace(&s.data_dir(), "other");
    let other = Client::new(s.addr, &other_key);

    guest.put_action("mine", "python:3", "def main(a):\n    return {'secret': 42}\n", None);
    // A private package with an action, a binding to it, and a shared package.
    for (path, body) in [
        ("/packages/priv", json!({"parameters": [{"key": "secret", "value": 42}]})),
        ("/packages/bnd", json!({"binding": {"namespace": "guest", "name": "priv"}})),
        ("/packages/pub", json!({"publish": true})),
    ] {
        let r = guest.json("PUT", &format!("/api/v1/namespaces/_{path}"), body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    for pkg in ["priv", "pub"] {
        let code = json!({"exec": {"kind": "python:3", "code": "def main(a):\n    return a\n"}});
        let r = guest.json("PUT", &format!("/api/v1/namespaces/_/actions/{pkg}/a"), code);
        assert_eq!(r.status, 200, "{pkg}: {}", r.text());
    }
    let r = guest.invoke("mine", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let guest_id = r.json()["activationId"].as_str().unwrap().to_owned();

    // Table: every route under a namespace, every method it answers, for a foreign namespace
    // that exists and one that does not: the same 403.
    let routes: Vec<(&str, String)> = vec![
        ("GET", "".into()),
        ("GET", "/actions".into()),
        ("GET", "/actions/mine".into()),
        ("PUT", "/actions/mine?overwrite=true".into()),
        ("DELETE", "/actions/mine".into()),
        ("POST", "/actions/mine?blocking=true".into()),
        ("GET", "/activations".into()),
        ("GET", format!("/activations/{guest_id}")),
        ("GET", format!("/activations/{guest_id}/logs")),
        ("GET", format!("/activations/{guest_id}/result")),
        ("PUT", "/triggers/t".into()),
        ("GET", "/rules".into()),
        ("PATCH", "/actions/mine".into()),
        // Packages: the private one and the binding answer as missing ones on every route;
        // the shared one is never written.
        ("PUT", "/packages/newpkg".into()),
        ("PATCH", "/packages/pub".into()),
        ("PUT", "/packages/pub?overwrite=true".into()),
        ("DELETE", "/packages/pub".into()),
        ("PUT", "/actions/pub/a?overwrite=true".into()),
        ("DELETE", "/actions/pub/a".into()),
        ("PUT", "/actions/pub/new".into()),
        ("GET", "/actions/pub".into()),
        ("POST", "/actions/pub/".into()),
    ];
    let mut private_routes = routes.clone();
    for pkg in ["priv", "bnd"] {
        for (m, rest) in [
            ("GET", format!("/packages/{pkg}")),
            ("PUT", format!("/packages/{pkg}?overwrite=true")),
            ("DELETE", format!("/packages/{pkg}")),
            ("GET", format!("/actions/{pkg}/")),
            ("GET", format!("/actions/{pkg}/a")),
            ("PUT", format!("/actions/{pkg}/a?overwrite=true")),
            ("DELETE", format!("/actions/{pkg}/a")),
            ("POST", format!("/actions/{pkg}/a?blocking=true")),
        ] {
            private_routes.push((m, rest));
        }
    }
    let routes = private_routes;
    let body =
        json!({"exec": {"kind": "python:3", "code": "def main(a):\n    return {'pwned': 1}\n"}})
            .to_string();
    let mut refused = 0;
    for (method, rest) in &routes {
        let mut messages = Vec::new();
        for ns in ["guest", "nosuchns"] {
            let r = other.req(method, &format!("/api/v1/namespaces/{ns}{rest}"), body.as_bytes());
            assert_eq!(r.status, 403, "other -> {method} {ns}{rest}: {}", r.text());
            messages.push(r.json()["error"].as_str().unwrap().replace(ns, "NS"));
            refused += 1;
        }
        assert_eq!(
            messages[0], messages[1],
            "{method} {rest}: the answer tells whether a namespace exists"
        );
    }
    // The shared package: read and run by the other namespace; listed alone.
    let r = other.req("GET", "/api/v1/namespaces/guest/packages", b"");
    assert_eq!((r.status, r.json()[0]["name"].clone()), (200, json!("pub")), "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 1, "only the shared package is listed");
    let r = other.req("GET", "/api/v1/namespaces/nosuchns/packages", b"");
    assert_eq!((r.status, r.json()), (200, json!([])));
    for (method, path) in [
        ("GET", "/api/v1/namespaces/guest/packages/pub"),
        ("GET", "/api/v1/namespaces/guest/actions/pub/"),
        ("GET", "/api/v1/namespaces/guest/actions/pub/a"),
        ("POST", "/api/v1/namespaces/guest/actions/pub/a?blocking=true"),
    ] {
        let r = other.req(method, path, b"{}");
        assert_eq!(r.status, 200, "other -> {method} {path}: {}", r.text());
    }
    // The whisk.system catalog: every caller runs it, nobody (but an administrator on the
    // data dir) changes it.
    let r = other.json(
        "POST",
        "/api/v1/namespaces/whisk.system/actions/utils/echo?blocking=true&result=true",
        json!({"payload": "x"}),
    );
    assert_eq!((r.status, r.json()), (200, json!({"payload": "x"})), "{}", r.text());
    for (method, path) in [
        ("PUT", "/api/v1/namespaces/whisk.system/actions/utils/echo?overwrite=true"),
        ("DELETE", "/api/v1/namespaces/whisk.system/actions/utils/echo"),
        ("PUT", "/api/v1/namespaces/whisk.system/packages/utils?overwrite=true"),
        ("DELETE", "/api/v1/namespaces/whisk.system/packages/utils"),
        ("PUT", "/api/v1/namespaces/whisk.system/packages/mine"),
    ] {
        for who in [&guest, &other] {
            let r = who.req(method, path, body.as_bytes());
            assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        }
    }
    let r = other.req("GET", "/api/v1/namespaces/whisk.system/actions/utils/echo", b"");
    assert!(r.json()["exec"]["code"].as_str().unwrap().contains("function main"), "unchanged");

    // Ids and names of another namespace read as absent through the caller's own namespace.
    for path in [
        format!("/api/v1/namespaces/_/activations/{guest_id}"),
        format!("/api/v1/namespaces/_/activations/{guest_id}/result"),
        "/api/v1/namespaces/_/actions/mine".to_owned(),
        "/api/v1/namespaces/_/packages/priv".to_owned(),
        "/api/v1/namespaces/_/actions/priv/a".to_owned(),
    ] {
        let r = other.req("GET", &path, b"");
        assert_eq!(r.status, 404, "other -> {path}: {}", r.text());
        refused += 1;
    }
    let r = other.req("GET", "/api/v1/namespaces/_/activations", b"");
    assert_eq!(r.status, 200);
    // Only its own runs (of guest's shared action, of the catalog): a record belongs to the
    // caller, never to the package's owner, and none of guest's records shows.
    let listed = r.json();
    let listed = listed.as_array().unwrap();
    let paths: Vec<_> = listed.iter().map(|a| annotation(a, "path").cloned()).collect();
    assert_eq!(listed.len(), 2, "another namespace's records listed: {listed:?}");
    assert!(listed
        .iter()
        .all(|a| a["namespace"] == "other" && a["activationId"] != json!(guest_id)));
    assert!(paths.contains(&Some(json!("guest/pub/a"))), "{paths:?}");
    let theirs =
        listed.iter().find(|a| annotation(a, "path") == Some(&json!("guest/pub/a"))).unwrap();
    let theirs = theirs["activationId"].clone();
    let r = guest.req("GET", "/api/v1/namespaces/_/activations", b"");
    let owner_sees = r.json().as_array().unwrap().iter().any(|a| a["activationId"] == theirs);
    assert!(!owner_sees, "the package's owner sees another namespace's run of its action");
    let r = other.req("GET", "/api/v1/namespaces", b"");
    assert_eq!(r.json(), json!(["other"]));
    // Nothing was changed by the refused writes.
    let r = guest.req("GET", "/api/v1/namespaces/_/actions/mine", b"");
    assert!(r.json()["exec"]["code"].as_str().unwrap().contains("'secret'"), "{}", r.text());
    let r = guest.req("GET", "/api/v1/namespaces/_/packages/pub", b"");
    assert_eq!(
        (r.json()["version"].clone(), r.json()["actions"][0]["name"].clone()),
        (json!("0.0.1"), json!("a"))
    );
    let r = guest.req("GET", "/api/v1/namespaces/_/packages", b"");
    assert_eq!(r.json().as_array().unwrap().len(), 3, "no package created by the other");
    println!("tenancy: {refused} cross-namespace requests refused over {} routes", routes.len());

    // Secrets are stored as salted hashes only and never logged: neither the raw secret nor
    // the header form appears in any file of the data dir or in the debug log.
    s.stop();
    use base64::Engine;
    let (uuid, secret) = other_key.split_once(':').unwrap();
    let (_, guest_secret) = GUEST.split_once(':').unwrap();
    let needles: Vec<Vec<u8>> = vec![
        secret.as_bytes().to_vec(),
        guest_secret.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD.encode(&other_key).into_bytes(),
        base64::engine::general_purpose::STANDARD.encode(GUEST).into_bytes(),
    ];
    let mut scanned = files(&s.data_dir());
    scanned.push((s.log(), std::fs::read(s.log()).unwrap()));
    for (path, bytes) in &scanned {
        for n in &needles {
            assert!(!contains(bytes, n), "a secret appears in clear in {}", path.display());
        }
    }
    println!(
        "secrets: {} files scanned ({} bytes), no secret in clear",
        scanned.len(),
        scanned.iter().map(|f| f.1.len()).sum::<usize>()
    );
    s.launch();
    let other = Client::new(s.addr, &other_key);
    let guest = s.client();

    // Brute force on the other namespace's uuid: wrong secrets until throttled.
    let wrong = |i: usize| Client::new(s.addr, &format!("{uuid}:{i:064}"));
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(wrong(i).req("GET", "/api/v1/namespaces/_/actions", b"").status);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    let r = other.req("GET", "/api/v1/namespaces/_/actions", b"");
    assert_eq!(r.status, 429, "the right secret of a throttled uuid waits for the cool-down too");
    assert!(
        r.json()["error"].as_str().unwrap().contains("Too many failed authentication"),
        "{}",
        r.text()
    );
    // The address is throttled as well: even the guest key is refused from it.
    let r = guest.req("GET", "/api/v1/namespaces/_/actions", b"");
    assert_eq!(r.status, 429, "{}", r.text());
    // Requests without credentials are not failures and still get 401.
    let r = Client::anonymous(s.addr).req("GET", "/api/v1/namespaces", b"");
    assert_eq!(r.status, 401);
    println!("brute force: throttled after 10 failures (per address and per key uuid)");
    s.stop();
}
