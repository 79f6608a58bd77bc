//! Concurrent Node actions (issue 15): `limits.concurrency` N > 1 lets one container serve N
//! activations of the action at once, end to end through a real `hearthd standalone` and
//! runc. Each activation keeps its own record, logs (only its own lines), result and
//! `__OW_ACTIVATION_ID` (read after an await); only Node kinds take more than 1. Needs root and
//! runc (CI runs as root); fails loudly otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// Sleeps 300 ms in two awaits, logs three lines of its own input on both streams, and reads
/// its activation id from the environment after the awaits (when other runs have started
/// in the same process). Loading it logs one line: the init's, for the activation that
/// initialised the container.
const SLOW_JS: &str = r#"
console.log('loaded');
async function main(params) {
  console.log('start ' + params.n);
  await new Promise((resolve) => setTimeout(resolve, 100));
  process.stdout.write('middle ');
  process.stdout.write(params.n + '\n');
  await new Promise((resolve) => setTimeout(resolve, 200));
  console.error('end ' + params.n);
  return { n: params.n, id: process.env.__OW_ACTIVATION_ID };
}
"#;

/// Sleeps `ms` milliseconds, for the timeout scenario.
const SLEEP_JS: &str = r#"
async function main(params) {
  console.log('sleeping ' + params.ms);
  await new Promise((resolve) => setTimeout(resolve, params.ms));
  return { slept: params.ms };
}
"#;

const PARALLEL: usize = 50;
const SLEEP_MS: u64 = 300;

fn body_of(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, rest)| rest)
}

#[test]
fn one_node_container_serves_concurrent_activations_with_their_own_logs() {
    require_root();
    let s = Standalone::start("memory_budget_mb = 2048\nprewarm = []\n");
    let c = s.client();

    // The limits as the info and namespace routes report them.
    let info = Client::anonymous(s.addr).get("/api/v1").json();
    assert_eq!(info["limits"]["max_action_concurrency"], 500, "{info}");
    let limits = c.get("/api/v1/namespaces/_/limits").json();
    assert_eq!(limits["maxActionConcurrency"], 500, "{limits}");

    // Only Node kinds take more than one; past 500 is out of range for every kind.
    let put = |name: &str, kind: &str, code: &str, concurrency: u64| {
        c.json(
            "PUT",
            &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"),
            json!({"exec": {"kind": kind, "code": code}, "limits": {"concurrency": concurrency}}),
        )
    };
    let r = put("py", "python:3", "def main(a):\n    return a\n", 2);
    assert_eq!(r.status, 400, "{}", r.text());
    let text = r.text();
    assert!(text.contains("python:3") && text.contains("one activation per container"), "{text}");
    let r = put("js-over", "nodejs:20", SLOW_JS, 501);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("concurrency 501"), "{}", r.text());
    let r = put("slow", "nodejs:20", SLOW_JS, PARALLEL as u64);
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = c.get("/api/v1/namespaces/_/actions/slow").json();
    assert_eq!(stored["limits"]["concurrency"], PARALLEL as u64, "{stored}");

    let started = Instant::now();
    let records: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PARALLEL)
            .map(|n| {
                let c = &c;
                scope.spawn(move || {
                    let r = c.invoke("slow", json!({ "n": n }));
                    assert_eq!(r.status, 200, "activation {n}: {}", r.text());
                    r.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    // One at a time would take PARALLEL x SLEEP_MS (15 s); concurrently about one run plus a
    // cold start. A wide bound: a third of the sequential time.
    let sequential = Duration::from_millis(SLEEP_MS * PARALLEL as u64);
    assert!(elapsed < sequential / 3, "{PARALLEL} invokes took {elapsed:?}");

    let containers = runc_containers(&s.state_dir());
    eprintln!("{PARALLEL} concurrent invokes: {elapsed:?}, containers {containers:?}");
    assert!(!containers.is_empty() && containers.len() <= 2, "containers used: {containers:?}");
    let mut inits = 0;
    for act in &records {
        let result = &act["response"]["result"];
        let n = result["n"].as_u64().unwrap_or_else(|| panic!("{act}"));
        assert_eq!(act["response"]["status"], "success", "{act}");
        assert_eq!(result["id"], act["activationId"], "__OW_ACTIVATION_ID after an await: {act}");
        let logs: Vec<&str> =
            act["logs"].as_array().unwrap().iter().map(|l| body_of(l.as_str().unwrap())).collect();
        let mut expected = vec![
            format!("stdout: start {n}"),
            format!("stdout: middle {n}"),
            format!("stderr: end {n}"),
        ];
        if annotation(act, "initTime").is_some() {
            expected.insert(0, "stdout: loaded".to_owned());
        }
        assert_eq!(logs, expected, "activation {n} holds exactly its own lines: {act}");
        let duration = act["duration"].as_u64().unwrap();
        assert!(duration >= SLEEP_MS, "{act}");
        assert!(annotation(act, "waitTime").is_some(), "{act}");
        if annotation(act, "initTime").is_some() {
            inits += 1;
        }
    }
    assert!(
        (1..=containers.len()).contains(&inits),
        "initTime only on the activations that initialised a container: {inits}"
    );
    let mut ns: Vec<u64> =
        records.iter().map(|a| a["response"]["result"]["n"].as_u64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..PARALLEL as u64).collect::<Vec<_>>());

    // Warm again: the shared container is reused without an init.
    let act = c.invoke("slow", json!({"n": 7})).json();
    assert_eq!(act["response"]["result"]["n"], 7, "{act}");
    assert!(annotation(&act, "initTime").is_none(), "{act}");
    assert_eq!(act["logs"].as_array().unwrap().len(), 3, "{act}");

    // One activation passes its time limit: the container is killed, as OpenWhisk does. The
    // other one in flight ends with a developer error saying why; the next starts afresh.
    let r = c.json(
        "PUT",
        "/api/v1/namespaces/_/actions/sleeper?overwrite=true",
        json!({"exec": {"kind": "nodejs:20", "code": SLEEP_JS},
               "limits": {"concurrency": 5, "timeout": 2000}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.invoke("sleeper", json!({"ms": 1})).status, 200, "warm it up");
    let (slow, victim) = std::thread::scope(|scope| {
        let slow = scope.spawn(|| c.invoke("sleeper", json!({"ms": 5000})).json());
        // The victim must reach the container within the slow one's 2 s; it would end
        // after them.
        std::thread::sleep(Duration::from_millis(400));
        let victim = scope.spawn(|| c.invoke("sleeper", json!({"ms": 2500})).json());
        (slow.join().unwrap(), victim.join().unwrap())
    });
    assert_eq!(slow["response"]["status"], "action developer error", "{slow}");
    let error = slow["response"]["result"]["error"].as_str().unwrap();
    assert!(error.contains("exceeded its time limit of 2000 milliseconds"), "{slow}");
    assert_eq!(body_of(slow["logs"][0].as_str().unwrap()), "stdout: sleeping 5000", "{slow}");
    assert_eq!(victim["response"]["status"], "action developer error", "{victim}");
    let error = victim["response"]["result"]["error"].as_str().unwrap();
    assert!(error.contains("another activation of the action"), "{victim}");
    assert_eq!(body_of(victim["logs"][0].as_str().unwrap()), "stdout: sleeping 2500", "{victim}");
    let again = c.invoke("sleeper", json!({"ms": 1})).json();
    assert_eq!(again["response"]["status"], "success", "{again}");
    assert!(annotation(&again, "initTime").is_some(), "a fresh container: {again}");
}
