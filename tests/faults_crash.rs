//! Crash safety: kill -9 under a steady invoke and write load, then restart on the same
//! directories. Every action write acknowledged before the kill is present, every activation
//! id acknowledged (returned in a body or the `x-openwhisk-activation-id` header) has a
//! record (success or a clear internal error), LMDB opens, and the containers, mounts and
//! cgroups of the killed run are reclaimed at the next start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

const ECHO: &str = "def main(a):\n    return a\n";
const SLOW: &str = "import time\ndef main(a):\n    time.sleep(0.3)\n    return {'slept': True}\n";

/// What the load acknowledged before the kill.
#[derive(Default)]
struct Acked {
    ids: Mutex<BTreeSet<String>>,
    actions: Mutex<BTreeSet<String>>,
}

/// Load threads until `stop`: blocking and non-blocking invokes of a fast and a slow action,
/// and action creations. Errors (the server died) end a thread quietly.
fn load(
    client: Client,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
    threads: usize,
) -> Vec<std::thread::JoinHandle<usize>> {
    (0..threads)
        .map(|t| {
            let (c, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = match (t + n) % 4 {
                        0 => c.try_req(
                            "POST",
                            "/api/v1/namespaces/_/actions/echo?blocking=true",
                            br#"{"x":1}"#,
                        ),
                        1 => c.try_req("POST", "/api/v1/namespaces/_/actions/slow", b"{}"),
                        2 => {
                            let name = format!("w-{t}-{n}-{}", rand_u64() % 100_000);
                            let body =
                                json!({"exec": {"kind": "python:3", "code": ECHO}}).to_string();
                            let r = c.try_req(
                                "PUT",
                                &format!("/api/v1/namespaces/_/actions/{name}"),
                                body.as_bytes(),
                            );
                            if let Ok(r) = &r {
                                if r.status == 200 {
                                    acked.actions.lock().unwrap().insert(name);
                                }
                            }
                            r
                        }
                        _ => c.try_req(
                            "POST",
                            "/api/v1/namespaces/_/actions/slow?blocking=true",
                            b"{}",
                        ),
                    };
                    let Ok(r) = r else { break };
                    if let Some(id) = r.header("x-openwhisk-activation-id") {
                        acked.ids.lock().unwrap().insert(id.to_owned());
                    } else if let Some(id) = r.json()["activationId"].as_str() {
                        acked.ids.lock().unwrap().insert(id.to_owned());
                    }
                }
                n
            })
        })
        .collect()
}

/// Every acknowledged id has a record and every acknowledged action exists; returns the
/// number of internal-error records (activations the kill interrupted).
fn verify(c: &Client, acked: &Acked) -> usize {
    let mut interrupted = 0;
    for id in acked.ids.lock().unwrap().iter() {
        // Records of activations finished by the new run may take the slow action's time.
        let rec = c
            .record(id, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("acknowledged activation {id} has no record after restart"));
        let status = rec["response"]["status"].as_str().unwrap().to_owned();
        assert!(
            status == "success" || status == "whisk internal error",
            "{id}: unexpected status {status}: {rec}"
        );
        if status != "success" {
            let msg = rec["response"]["result"]["error"].as_str().unwrap_or_default();
            assert!(msg.contains("stopped"), "{id}: internal error without a clear message: {rec}");
            interrupted += 1;
        }
    }
    for name in acked.actions.lock().unwrap().iter() {
        let r = c.req("GET", &format!("/api/v1/namespaces/_/actions/{name}?code=false"), b"");
        assert_eq!(r.status, 200, "acknowledged action {name} missing after restart: {}", r.text());
    }
    interrupted
}

/// Leftovers of the killed run (containers, cgroups) are gone once the next run started.
fn assert_reclaimed(state_dir: &Path, before: &[String], cgroups_before: &[PathBuf]) {
    let now: BTreeSet<String> = runc_containers(state_dir).into_iter().collect();
    for id in before {
        assert!(!now.contains(id), "container {id} of the killed run still listed by runc");
    }
    for cg in cgroups_before {
        assert!(!cg.exists(), "cgroup {} of the killed run still exists", cg.display());
    }
}

fn kill_at_random(d: &mut Daemon, min_ms: u64, span_ms: u64) -> Duration {
    let wait = Duration::from_millis(min_ms + rand_u64() % span_ms);
    std::thread::sleep(wait);
    d.kill9();
    wait
}

#[test]
fn standalone_kill9_under_load_loses_nothing() {
    require_root();
    let mut s = Standalone::start("prewarm = []\nmemory_budget_mb = 1024\nqueue_limit = 64\n");
    let c = s.client();
    c.put_action("echo", "python:3", ECHO, None);
    c.put_action("slow", "python:3", SLOW, None);
    let (mut total_ids, mut total_actions, mut total_interrupted) = (0, 0, 0);
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        let acked = Arc::new(Acked::default());
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(s.client(), acked.clone(), stop.clone(), 6);
        let at = kill_at_random(s.daemon(), 700, 1500);
        stop.store(true, Ordering::Relaxed);
        let requests: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        let left = runc_containers(&s.state_dir());
        let left_cgroups = container_cgroups(&s.state_dir());
        s.launch();
        let interrupted = verify(&s.client(), &acked);
        assert_reclaimed(&s.state_dir(), &left, &left_cgroups);
        let (n_ids, n_actions) =
            (acked.ids.lock().unwrap().len(), acked.actions.lock().unwrap().len());
        println!(
            "standalone round {round}: kill -9 after {at:?}; {requests} requests, {n_ids} ids and {n_actions} action writes acknowledged, all present; {interrupted} interrupted activations recorded as internal errors; {} containers and {} cgroups of the killed run reclaimed",
            left.len(),
            left_cgroups.len()
        );
        assert!(n_ids > 0, "the load acknowledged nothing before the kill: {}", s.log_text());
        total_ids += n_ids;
        total_actions += n_actions;
        total_interrupted += interrupted;
    }
    println!("standalone: {ROUNDS} kills, {total_ids} ids, {total_actions} writes, {total_interrupted} interrupted, 0 lost");
    s.stop();
}

/// The two-process shape: kill -9 the controller (the invoker keeps running), then the
/// invoker (the controller keeps running), each under load.
#[test]
fn controller_and_invoker_kill9_under_load_lose_nothing() {
    require_root();
    let split = Split::new("prewarm = []\nmemory_budget_mb = 1024\nqueue_limit = 64\n");
    let state = split.state_dir();
    let key = admin_namespace(&split.data_dir(), "crash");

    let mut invoker = split.start_invoker();
    let (mut controller, mut addr) = split.start_controller();
    let c = Client::new(addr, &key);
    c.put_action("echo", "python:3", ECHO, None);
    c.put_action("slow", "python:3", SLOW, None);

    let mut report = Vec::new();
    for victim in ["controller", "invoker", "controller", "invoker"] {
        let acked = Arc::new(Acked::default());
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(Client::new(addr, &key), acked.clone(), stop.clone(), 6);
        let (left, left_cgroups);
        if victim == "controller" {
            kill_at_random(&mut controller, 700, 1500);
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                w.join().unwrap();
            }
            left = Vec::new();
            left_cgroups = Vec::new();
            (controller, addr) = split.start_controller();
        } else {
            kill_at_random(&mut invoker, 700, 1500);
            // The controller lives on: let the load see the invoker gone, then stop it.
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                w.join().unwrap();
            }
            left = runc_containers(&state);
            left_cgroups = container_cgroups(&state);
            invoker = split.start_invoker();
        }
        let c = Client::new(addr, &key);
        let interrupted = verify(&c, &acked);
        assert_reclaimed(&state, &left, &left_cgroups);
        let n = acked.ids.lock().unwrap().len();
        assert!(n > 0, "nothing acknowledged before killing the {victim}");
        report.push(format!(
            "{victim}: {n} ids, {} writes, {interrupted} interrupted",
            acked.actions.lock().unwrap().len()
        ));
        // The platform still works after the restart.
        let r = c.invoke("echo", json!({"after": victim}));
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            r.status,
            200,
            "invoke after restarting the {victim}: {} (t {:?})",
            r.text(),
            deadline
        );
    }
    println!("two-process kill -9 rounds, 0 lost: {report:?}");
    controller.stop();
    invoker.stop();
    assert_no_leaks(&state);
}
