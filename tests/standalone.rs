//! End to end through a real `hearthd standalone` process: HTTP in, runc containers, records
//! out. Needs root and runc (CI runs as root); fails loudly otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

const HELLO_PY: &str = r#"
import os, sys
def main(args):
    print("out line")
    print("err line", file=sys.stderr)
    return {"greeting": "Hello " + args.get("name", "stranger"),
            "activation": os.environ.get("__OW_ACTIVATION_ID"),
            "action": os.environ.get("__OW_ACTION_NAME"),
            "namespace": os.environ.get("__OW_NAMESPACE"),
            "deadline": os.environ.get("__OW_DEADLINE")}
"#;

const HELLO_JS: &str = r#"
function main(params) {
  console.log("out line");
  console.error("err line");
  return new Promise((resolve) => setTimeout(() => resolve({
    greeting: "Hello " + (params.name || "stranger"),
    activation: process.env.__OW_ACTIVATION_ID,
    action: process.env.__OW_ACTION_NAME,
  }), 1));
}
"#;

/// Python and Node: cold, prewarmed and warm starts, params, env, logs, annotations.
#[test]
fn python_and_node_cold_prewarm_warm() {
    require_root();
    // Prewarm only python 256 MB: node 256 MB starts cold, python 256 MB from a stem cell.
    let mut s =
        Standalone::start("prewarm = [{kind = \"python:3\", memory_mb = 256, count = 1}]\n");
    s.wait_stem_cells(1, Duration::from_secs(60));
    let c = s.client();
    c.put_action("hello-py", "python:3", HELLO_PY, None);
    c.put_action("hello-js", "nodejs:20", HELLO_JS, None);

    for (name, from) in [("hello-py", "prewarm"), ("hello-js", "cold")] {
        let r = c.invoke(name, json!({"name": "Ada"}));
        let act = r.json();
        assert_eq!(r.status, 200, "{name}: {act}");
        let id = act["activationId"].as_str().unwrap().to_owned();
        let r = &act["response"]["result"];
        assert_eq!(r["greeting"], "Hello Ada", "{act}");
        assert_eq!(r["activation"], id.as_str());
        assert_eq!(r["action"], format!("/guest/{name}"));
        assert_eq!(act["response"]["status"], "success");
        assert!(annotation(&act, "initTime").is_some(), "{from} start has initTime: {act}");
        assert_eq!(
            annotation(&act, "kind").unwrap(),
            if name == "hello-py" { "python:3" } else { "nodejs:20" }
        );
        assert_eq!(annotation(&act, "path").unwrap(), format!("guest/{name}").as_str());
        assert_eq!(annotation(&act, "limits").unwrap()["memory"], 256);
        assert!(annotation(&act, "waitTime").unwrap().is_u64());
        let logs: Vec<&str> =
            act["logs"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert!(logs.iter().any(|l| l.ends_with("stdout: out line")), "{logs:?}");
        assert!(logs.iter().any(|l| l.ends_with("stderr: err line")), "{logs:?}");

        // Warm: the same container, no initTime.
        let r = c.invoke(name, json!({}));
        assert_eq!(r.status, 200);
        let warm = r.json();
        assert_eq!(warm["response"]["result"]["greeting"], "Hello stranger");
        assert!(annotation(&warm, "initTime").is_none(), "warm start has no initTime: {warm}");

        // The record is readable right after the response.
        let rec = c.get(&format!("/api/v1/namespaces/_/activations/{id}"));
        assert_eq!(rec.status, 200);
        assert_eq!(rec.json()["activationId"], id.as_str());
        let logs = c.get(&format!("/api/v1/namespaces/_/activations/{id}/logs"));
        assert_eq!(logs.status, 200);
        assert!(logs.json()["logs"].as_array().unwrap().len() >= 2);
    }

    // Result-only and non-blocking forms.
    let r = c.req(
        "POST",
        "/api/v1/namespaces/_/actions/hello-py?blocking=true&result=true",
        br#"{"name":"R"}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.header("x-openwhisk-activation-id").is_some());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["greeting"],
        "Hello R"
    );
    let r = c.json("POST", "/api/v1/namespaces/_/actions/hello-js", json!({}));
    assert_eq!(r.status, 202);
    let id = r.json()["activationId"].as_str().unwrap().to_owned();
    let rec = c
        .record(&id, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("record {id} never appeared"));
    assert_eq!(rec["response"]["result"]["greeting"], "Hello stranger");

    // An update bumps the revision: the next invoke must not reuse the old code's container.
    c.put_action("hello-py", "python:3", "def main(a):\n    return {'v': 2}\n", None);
    let v2 = c.invoke("hello-py", json!({})).json();
    assert_eq!(v2["response"]["result"]["v"], 2, "{v2}");

    // OpenWhisk's invoker health routes: the one in-process invoker.
    assert_eq!(c.get("/invokers").json(), json!({"invoker0": "up"}));
    assert_eq!(c.get("/invokers/healthy/count").json(), json!(1));

    // Prometheus metrics: activations by kind and status, latencies, the pool's containers.
    let r = c.get("/metrics");
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v.contains("openmetrics")));
    assert!(
        text.contains("hearth_activations_total{kind=\"python:3\",status=\"success\"}"),
        "{text}"
    );
    assert!(
        text.contains("hearth_activations_total{kind=\"nodejs:20\",status=\"success\"}"),
        "{text}"
    );
    assert!(text.contains("hearth_activation_duration_seconds_bucket"), "{text}");
    assert!(text.contains("hearth_activation_init_seconds_count"), "{text}");
    assert!(text.contains("hearth_containers{state=\"warm_idle\"}"), "{text}");

    s.stop();
}

/// Every limit and failure ends in a record with a clear status, never a hang.
#[test]
fn limits_and_failures_are_recorded() {
    require_root();
    let mut s = Standalone::start("prewarm = []\n");
    let c = s.client();
    let cases: &[(&str, &str, &str, serde_json::Value, &str, &str)] = &[
        (
            "raise",
            "python:3",
            "def main(a):\n    raise ValueError('bad input')\n",
            json!(null),
            "application error",
            "bad input",
        ),
        (
            "apperr",
            "python:3",
            "def main(a):\n    return {'error': 'told you'}\n",
            json!(null),
            "application error",
            "told you",
        ),
        (
            "throws",
            "nodejs:20",
            "function main(){ throw new Error('node boom'); }",
            json!(null),
            "application error",
            "node boom",
        ),
        (
            "notdict",
            "python:3",
            "def main(a):\n    return [1, 2]\n",
            json!(null),
            "action developer error",
            "dictionary",
        ),
        (
            "crash",
            "python:3",
            "import os\ndef main(a):\n    os._exit(3)\n",
            json!(null),
            "action developer error",
            "exited",
        ),
        (
            "slow",
            "python:3",
            "import time\ndef main(a):\n    time.sleep(10)\n    return {}\n",
            json!({"timeout": 500}),
            "action developer error",
            "500 milliseconds",
        ),
        (
            "hog",
            "python:3",
            "def main(a):\n    x = bytearray(400 * 1024 * 1024)\n    return {'n': len(x)}\n",
            json!({"memory": 128}),
            "action developer error",
            "memory",
        ),
        (
            "big",
            "python:3",
            "def main(a):\n    return {'x': 'y' * (2 * 1024 * 1024)}\n",
            json!(null),
            "action developer error",
            "bytes",
        ),
        (
            "syntax",
            "python:3",
            "def main(a) oops\n",
            json!(null),
            "action developer error",
            "initialize",
        ),
    ];
    for (name, kind, code, limits, _, _) in cases {
        let limits = if limits.is_null() { None } else { Some(limits.clone()) };
        c.put_action(name, kind, code, limits);
    }
    for (name, _, _, _, status, needle) in cases {
        let t = Instant::now();
        let r = c.invoke(name, json!({}));
        let act = r.json();
        assert_eq!(r.status, 502, "{name}: {act}");
        assert_eq!(act["response"]["status"], *status, "{name}: {act}");
        let err = act["response"]["result"]["error"].as_str().unwrap_or_default();
        assert!(err.contains(needle), "{name}: error {err:?} should mention {needle:?}");
        assert!(t.elapsed() < Duration::from_secs(20), "{name} took {:?}", t.elapsed());
        if *name == "slow" {
            assert_eq!(annotation(&act, "timeout").unwrap(), true);
        }
    }
    // The container survives a non-dict result and an application error: next run works.
    let r = c.invoke("apperr", json!({}));
    assert_eq!(r.status, 502);
    let act = r.json();
    assert!(annotation(&act, "initTime").is_none(), "kept warm after an application error");

    // Log flood: truncated with a note, the run itself succeeds.
    c.put_action(
        "flood",
        "python:3",
        "def main(a):\n    for i in range(40000):\n        print('x' * 100)\n    return {'done': True}\n",
        Some(json!({"logs": 1})),
    );
    let r = c.invoke("flood", json!({}));
    let act = r.json();
    assert_eq!(r.status, 200, "{act}");
    let logs = act["logs"].as_array().unwrap();
    assert!(logs.last().unwrap().as_str().unwrap().contains("truncated"), "{:?}", logs.last());
    let total: usize = logs.iter().map(|l| l.as_str().unwrap().len()).sum();
    assert!(total < 2 * 1024 * 1024, "logs kept {total} bytes over a 1 MB limit");
    s.stop();
}

/// Many parallel invokes: every one answered with a record, within the memory budget.
#[test]
fn parallel_invokes_within_budget() {
    require_root();
    // 4 containers of 256 MB at most; a bounded queue for the rest.
    let mut s = Standalone::start("memory_budget_mb = 1024\nprewarm = []\nqueue_limit = 1000\n");
    let c = s.client();
    c.put_action(
        "sleepy",
        "python:3",
        "import time\ndef main(a):\n    time.sleep(0.05)\n    return {'i': a['i']}\n",
        None,
    );
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || c.invoke("sleepy", json!({"i": i})))
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        let act = r.json();
        assert_eq!(r.status, 200, "{act}");
        assert_eq!(act["response"]["result"]["i"], i);
        ids.insert(act["activationId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 64);
    let list = c.get("/api/v1/namespaces/_/activations?name=sleepy&limit=200").json();
    assert_eq!(list.as_array().unwrap().len(), 64, "one record per activation");
    let containers = count_containers(&s);
    assert!(containers <= 4, "{containers} containers exceed the 1024 MB budget");
    s.stop();
}

fn count_containers(s: &Standalone) -> usize {
    runc_containers(&s.state_dir()).len()
}

/// Idle containers are reaped after the idle timeout; budget pressure evicts idle ones.
#[test]
fn idle_reaping_and_eviction() {
    require_root();
    let mut s = Standalone::start(
        "memory_budget_mb = 512\nprewarm = []\nidle_timeout = \"1s\"\nreap_interval = \"200ms\"\n",
    );
    let c = s.client();
    c.put_action("a", "python:3", "def main(x):\n    return {'a': 1}\n", None);
    c.put_action("b", "python:3", "def main(x):\n    return {'b': 1}\n", None);
    c.put_action("c", "python:3", "def main(x):\n    return {'c': 1}\n", None);
    for n in ["a", "b"] {
        assert_eq!(c.invoke(n, json!({})).status, 200);
    }
    assert_eq!(count_containers(&s), 2);
    // The budget holds two: c evicts the least recently used idle container.
    let r = c.invoke("c", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    // The evicted one is torn down behind c's activation, not before it: two once that ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_containers(&s) > 2 {
        assert!(Instant::now() < deadline, "the evicted container was not destroyed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_containers(&s) > 0 {
        assert!(Instant::now() < deadline, "idle containers were not reaped");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.stop();
}

/// Entities and records survive a restart; leftovers of a killed server are reclaimed.
#[test]
fn restart_keeps_data_and_reclaims_leftovers() {
    require_root();
    let mut s = Standalone::start("prewarm = []\n");
    let c = s.client();
    c.put_action("keep", "python:3", "def main(a):\n    return {'kept': True}\n", None);
    let act = c.invoke("keep", json!({})).json();
    let id = act["activationId"].as_str().unwrap().to_owned();
    // Reading the record waits for its commit (records are written after the response).
    assert_eq!(c.get(&format!("/api/v1/namespaces/_/activations/{id}")).status, 200);
    // kill -9: the warm container is left behind for the next start to reclaim.
    s.daemon().kill9();
    assert!(count_containers(&s) >= 1, "the warm container outlives a killed server");
    s.launch();
    assert_eq!(count_containers(&s), 0, "leftovers reclaimed at start");
    let c = s.client();
    let r = c.get(&format!("/api/v1/namespaces/_/activations/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.invoke("keep", json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["response"]["result"]["kept"], true);
    s.stop();
}

/// The `hearth` CLI and OpenWhisk's own JavaScript client against the real server.
#[test]
fn cli_and_openwhisk_client() {
    require_root();
    let mut s = Standalone::start("");
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("hello.py");
    std::fs::write(&py, "def main(a):\n    print('cli log')\n    return {'hi': a.get('name')}\n")
        .unwrap();
    let url = s.url();
    let hearth = |args: &[&str]| hearth_cli(&url, args);
    let (code, out, err) = hearth(&["action", "create", "hello", py.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = hearth(&["action", "invoke", "hello", "-p", "name", "Ada", "--result"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["hi"], "Ada");
    let (code, out, _) = hearth(&["activation", "list", "--json"]);
    assert_eq!(code, Some(0));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = list[0]["activationId"].as_str().unwrap().to_owned();
    let (code, out, _) = hearth(&["activation", "logs", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("stdout: cli log"), "{out}");
    let (code, _, err) = hearth(&["action", "get", "missing"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not found"), "{err}");
    // Packages through the CLI against the real server: the catalog, a package, a binding.
    let (code, out, err) = hearth(&["package", "list", "/whisk.system"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("/whisk.system/utils") && out.contains("shared"), "{out}");
    let (code, out, err) = hearth(&[
        "action",
        "invoke",
        "/whisk.system/utils/split",
        "-p",
        "payload",
        "a,b",
        "-p",
        "separator",
        ",",
        "--result",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["lines"],
        serde_json::json!(["a", "b"])
    );
    for args in [
        &["package", "create", "tools", "-p", "hi", "package"][..],
        &["action", "create", "tools/hello", py.to_str().unwrap()],
        &["package", "bind", "tools", "mytools", "-p", "name", "Binding"],
    ] {
        let (code, out, err) = hearth(args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    }
    let (code, out, _) = hearth(&["action", "list", "tools"]);
    assert!(code == Some(0) && out.contains("/guest/tools/hello"), "{out}");
    let (code, out, err) = hearth(&["action", "invoke", "mytools/hello", "--result"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["hi"], "Binding");
    for args in [
        &["package", "delete", "mytools"][..],
        &["action", "delete", "tools/hello"],
        &["package", "delete", "tools"],
    ] {
        let (code, out, err) = hearth(args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    }

    // OpenWhisk's JavaScript client library, unchanged.
    harness::openwhisk_client("openwhisk-client.js", &s.url(), GUEST);
    s.stop();
}

/// A standalone server on its default state dir (`/run/hearth-standalone-*`, as `make run`
/// has it) that ran a container leaves no directory under /run after SIGTERM (52 of them
/// piled up on one machine in a day of runs before it removed its own).
#[test]
fn sigterm_leaves_no_state_dir_under_run() {
    require_root();
    let ours = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/run")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().starts_with("/run/hearth-standalone-"))
            .collect()
    };
    let before = ours();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (listen, data) = (addr.to_string(), dir.path().join("data"));
    let mut d = Daemon::spawn(
        ["standalone", "--listen", &listen, "--data-dir", data.to_str().unwrap()],
        &dir.path().join("hearthd.log"),
        listening(addr),
    );
    let made: Vec<_> = ours().into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(made.len(), 1, "one state dir of its own under /run: {made:?}");
    let c = Client::new(addr, GUEST);
    c.put_action("hi", "python:3", "def main(a):\n    return {'ok': True}", None);
    let r = c.invoke("hi", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    d.stop();
    assert!(!made[0].exists(), "{} is left behind", made[0].display());
}

/// A stem cell fits any memory limit (issue 16): a 512 MB action takes the 256 MB stem cell,
/// whose memory cgroup then holds 512 MB; a 128 MB action takes the refilled one and is
/// OOM-killed at 128 MB by 200 MB that fit the stem cell's own size.
#[test]
fn stem_cells_take_the_memory_limit_of_the_action() {
    require_root();
    let mut s = Standalone::start_logging(
        "prewarm = [{kind = \"python:3\", memory_mb = 256, count = 1}]\n",
        "hearth=info,hearth::invoker=debug",
    );
    let state = s.state_dir();
    let one_new = |known: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fresh: Vec<String> =
                runc_containers(&state).into_iter().filter(|id| !known.contains(id)).collect();
            if fresh.len() == 1 {
                // Started, not only created: idle in the pool.
                s.wait_stem_cells(1, Duration::from_secs(60));
                return fresh[0].clone();
            }
            assert!(Instant::now() < deadline, "no new stem cell: {fresh:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let memory_limit = |id: &str| {
        let dir = container_cgroups(&state)
            .into_iter()
            .find(|p| p.starts_with("/sys/fs/cgroup/memory") && p.ends_with(id))
            .unwrap_or_else(|| panic!("no memory cgroup for {id}"));
        std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap().trim().to_owned()
    };
    let stem = one_new(&[]);
    assert_eq!(memory_limit(&stem), (256u64 << 20).to_string());
    let c = s.client();
    c.put_action(
        "big",
        "python:3",
        "def main(a):\n    return {'big': 1}\n",
        Some(json!({"memory": 512})),
    );
    let r = c.invoke("big", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let code = state.join("containers/code").join(&stem).join("__main__.py");
    let held = std::fs::read_to_string(&code).unwrap_or_default();
    assert!(held.contains("'big'"), "big ran in the stem cell {stem}: {held:?}");
    assert_eq!(memory_limit(&stem), (512u64 << 20).to_string());

    let stem2 = one_new(std::slice::from_ref(&stem));
    let hog = "def main(a):\n    x = bytearray(200 * 1024 * 1024)\n    return {'n': len(x)}\n";
    c.put_action("small", "python:3", hog, Some(json!({"memory": 128})));
    let act = c.invoke("small", json!({})).json();
    assert_eq!(act["response"]["status"], "action developer error", "{act}");
    let error = act["response"]["result"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("memory limit of 128 MB"), "{act}");
    let log = s.log_text();
    assert!(
        log.lines().any(|l| l.contains("stem cell resized") && l.contains(&stem2)),
        "the 128 MB action took the stem cell {stem2}"
    );
    s.stop();
}
