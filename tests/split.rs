//! The one-host, two-process shape: `hearthd controller` dispatching over the invoker's Unix
//! socket to `hearthd invoker`, both on one data directory. Needs root and runc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

#[test]
fn controller_and_invoker_as_two_processes() {
    require_root();
    let split = Split::new("prewarm = []\n");
    let d = split.path();

    // A namespace and key for the packaged shape (no guest key outside standalone).
    let key = admin_namespace(&split.data_dir(), "team");

    let (mut controller, addr) = split.start_controller();
    // Before the invoker runs, invokes are refused clearly (503), nothing recorded.
    let hearth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .env("HEARTH_APIHOST", format!("http://{addr}"))
            .env("HEARTH_AUTH", &key)
            .env("HEARTH_CONFIG", d.join("none"))
            .output()
            .unwrap()
    };
    let py = d.join("a.py");
    std::fs::write(&py, "def main(a):\n    return {'split': a.get('x', 0) + 1}\n").unwrap();
    assert!(hearth(&["action", "create", "a", py.to_str().unwrap()]).status.success());
    let refused = hearth(&["action", "invoke", "a", "-r"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("503") || err.contains("invoker"), "{err}");
    let health = || Client::anonymous(addr).get("/invokers").json();
    assert_eq!(health(), json!({"invoker0": "down"}), "no socket yet");

    let mut invoker = split.start_invoker();
    assert_eq!(health(), json!({"invoker0": "up"}));
    for x in 0..3 {
        let out = hearth(&["action", "invoke", "a", "-p", "x", &x.to_string(), "-r"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, json!({"split": x + 1}));
    }
    // An action in a package and through a binding: the invoker finds the code under the
    // packaged key (`team/tools/a`) in the shared data dir.
    for args in [
        &["package", "create", "tools", "-p", "x", "10"][..],
        &["action", "create", "tools/a", py.to_str().unwrap()],
        &["package", "bind", "tools", "mine", "-p", "x", "20"],
    ] {
        let out = hearth(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for (name, want) in [("tools/a", 11), ("mine/a", 21)] {
        let out = hearth(&["action", "invoke", name, "-r"]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, json!({"split": want}), "{name}");
    }
    // Invoker restarts: the controller reconnects by itself.
    invoker.stop();
    let mut invoker = split.start_invoker();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = hearth(&["action", "invoke", "a", "-r"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no invoke after the invoker restart");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The controller killed with -9 while activations it acknowledged (202) run: the invoker
    // keeps their records for the controller's next connection, and the restarted controller
    // (which finds the previous run's stubs) connects at once to collect them: they read as
    // what happened, not "the server stopped; it may or may not have run".
    let c = Client::new(addr, &key);
    let slow = "import time\ndef main(a):\n    time.sleep(0.5)\n    return {'i': a['i']}\n";
    c.put_action("slow", "python:3", slow, None);
    // One of them through the binding: its record, which arrives unclaimed, still carries
    // the `binding` annotation (the activation message has it, not the waiting controller).
    c.put_action("tools/slow", "python:3", slow, None);
    let ids: Vec<String> = ["slow", "slow", "slow", "mine/slow"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let r =
                c.json("POST", &format!("/api/v1/namespaces/_/actions/{name}"), json!({"i": i}));
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["activationId"].as_str().unwrap().to_owned()
        })
        .collect();
    controller.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    controller.respawn(listening(addr));
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        loop {
            let rec = c.record(id, Duration::from_secs(5));
            let status = rec.as_ref().map(|r| r["response"]["status"].clone());
            if status == Some(json!("success")) {
                break;
            }
            assert!(Instant::now() < deadline, "{id}: {rec:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let through_binding = c.record(&ids[3], Duration::from_secs(5)).unwrap();
    assert_eq!(
        annotation(&through_binding, "binding"),
        Some(&json!("team/mine")),
        "{through_binding}"
    );
    assert_eq!(annotation(&through_binding, "path"), Some(&json!("team/tools/slow")));

    invoker.stop();
    controller.stop();
    assert_no_leaks(&split.state_dir());
}
