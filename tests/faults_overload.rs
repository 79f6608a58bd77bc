//! Overload: far more concurrent invokes than the memory budget and queue allow. Admission is
//! immediate and bounded: the excess gets 429 (queue full) with a clear message, never a 500
//! or a hang; the server's memory stays bounded; when the load drops, invokes succeed again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

const SLOW: &str = "import time\ndef main(a):\n    time.sleep(0.4)\n    return {'ok': True}\n";

/// Concurrent clients per wave: 16x what the budget (2 containers) plus queue (4) admit.
const CLIENTS: usize = 96;

#[test]
fn overload_is_refused_cleanly_and_recovers() {
    require_root();
    let mut s = Standalone::start("prewarm = []\nmemory_budget_mb = 256\nqueue_limit = 4\n");
    let c = s.client();
    c.put_action("slow", "python:3", SLOW, Some(json!({"memory": 128, "timeout": 5000})));
    assert_eq!(c.invoke("slow", json!({})).status, 200);
    let rss_before = s.daemon().rss_kb();
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut worst = Duration::ZERO;
    for wave in 0..3 {
        let started = Instant::now();
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (c, statuses, messages, accepted) =
                    (c.clone(), statuses.clone(), messages.clone(), accepted.clone());
                std::thread::spawn(move || {
                    let blocking = if i % 3 == 0 { "false" } else { "true" };
                    let r = c.req(
                        "POST",
                        &format!("/api/v1/namespaces/_/actions/slow?blocking={blocking}"),
                        b"{}",
                    );
                    *statuses.lock().unwrap().entry(r.status).or_default() += 1;
                    if r.status == 202 {
                        accepted
                            .lock()
                            .unwrap()
                            .push(r.json()["activationId"].as_str().unwrap().to_owned());
                    }
                    if r.status == 429 || r.status == 503 {
                        messages
                            .lock()
                            .unwrap()
                            .push(r.json()["error"].as_str().unwrap_or_default().to_owned());
                    }
                    r.status
                })
            })
            .collect();
        for h in handles {
            let st = h.join().unwrap();
            assert!(matches!(st, 200 | 202 | 429 | 503), "wave {wave}: status {st}");
        }
        worst = worst.max(started.elapsed());
    }
    let rss_peak = s.daemon().rss_kb();
    let statuses = statuses.lock().unwrap().clone();
    let refused =
        statuses.get(&429).copied().unwrap_or(0) + statuses.get(&503).copied().unwrap_or(0);
    assert!(refused > CLIENTS, "overload was not refused: {statuses:?}");
    for m in messages.lock().unwrap().iter() {
        assert!(!m.is_empty() && m.len() < 500, "unclear refusal: {m:?}");
    }
    assert!(worst < Duration::from_secs(20), "a wave took {worst:?}: refusals must be immediate");
    // Recovery: once the accepted work drained, invokes succeed at once.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..5 {
        let r = c.invoke("slow", json!({}));
        assert_eq!(r.status, 200, "after the load: {}", r.text());
    }
    // Every admitted non-blocking activation finished with a record.
    for id in accepted.lock().unwrap().iter() {
        let rec = c
            .record(id, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("202 {id} has no record"));
        assert_eq!(rec["response"]["status"], "success", "{rec}");
    }
    let rss_after = s.daemon().rss_kb();
    let sample = messages.lock().unwrap().first().cloned().unwrap_or_default();
    println!(
        "overload: 3 waves of {CLIENTS} concurrent invokes: {statuses:?}; refusal e.g. {sample:?}; longest wave {worst:?}; hearthd RSS {rss_before} kB -> {rss_peak} kB (peak) -> {rss_after} kB; recovered"
    );
    assert!(rss_peak < rss_before + 100 * 1024, "RSS grew from {rss_before} to {rss_peak} kB");
    s.stop();
}

/// A noisy neighbour (issue 17): namespace A floods with 40 concurrent invokes of a 1 s action
/// while its concurrency limit, set with `hearthd admin` on the running server, is 24, and the
/// pool holds four containers. Once A's four run and its other 20 wait, namespace B runs an
/// action it has never run, twice. A's excess is refused naming the limit; B is never refused,
/// and each of its activations starts after at most a few of A's (the one whose turn came
/// first, and those the other containers take while B's cold start runs), never behind A's
/// whole queue.
#[test]
fn a_flooding_namespace_cannot_starve_another() {
    require_root();
    const FLOOD: usize = 40;
    const LIMIT: usize = 24;
    const SLOTS: usize = 4;
    let mut s = Standalone::start("prewarm = []\nmemory_budget_mb = 512\n");
    let a = s.client();
    let key_b = admin_namespace(&s.data_dir(), "tenant-b");
    let b = Client::new(s.addr, &key_b);
    let out = std::process::Command::new(hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["limits", "set", "guest", "--concurrent-invocations", &LIMIT.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sleepy = "import time\ndef main(a):\n    time.sleep(1)\n    return {'a': True}\n";
    a.put_action("sleepy", "python:3", sleepy, Some(json!({"memory": 128})));
    b.put_action(
        "mine",
        "python:3",
        "def main(a):\n    return {'b': True}\n",
        Some(json!({"memory": 128})),
    );

    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || a.invoke("sleepy", json!({})))
        })
        .collect();
    // B arrives once A's flood is admitted and queued behind the four busy containers: on a
    // loaded machine their cold starts can take longer than any fixed pause, and an A
    // activation that starts after B arrived counts against B.
    s.wait_gauges("flood running and queued", Duration::from_secs(60), |s| {
        s.gauge("hearth_containers{state=\"warm_busy\"}") >= SLOTS as u64
            && s.gauge("hearth_queue_depth") >= (LIMIT - SLOTS) as u64
    });
    // Busy counts from the container's creation; its run's start follows with the init.
    std::thread::sleep(Duration::from_millis(200));
    let mine: Vec<serde_json::Value> = (0..2)
        .map(|_| {
            let r = b.invoke("mine", json!({}));
            assert_eq!(r.status, 200, "B is never refused: {}", r.text());
            r.json()
        })
        .collect();

    let (mut refused, mut a_starts) = (Vec::new(), Vec::new());
    for h in flood {
        let r = h.join().unwrap();
        match r.status {
            200 => a_starts.push(r.json()["start"].as_u64().unwrap()),
            429 => refused.push(r.json()["error"].as_str().unwrap().to_owned()),
            other => panic!("A's invoke answered {other}: {}", r.text()),
        }
    }
    assert!(a_starts.len() <= LIMIT, "{} of A's admitted over its limit", a_starts.len());
    assert!(!refused.is_empty(), "the flood over the limit was refused");
    for m in &refused {
        assert!(
            m.starts_with("Too many concurrent requests in flight (count: ")
                && m.ends_with(&format!(", allowed: {LIMIT}).")),
            "{m}"
        );
    }
    for act in &mine {
        let start = act["start"].as_u64().unwrap();
        let waited = annotation(act, "waitTime").and_then(|w| w.as_u64()).unwrap();
        let arrived = start - waited;
        let a_before = a_starts.iter().filter(|&&t| t > arrived && t < start).count();
        assert!(
            a_before <= SLOTS,
            "{a_before} of A's activations started while B's waited (A had {} queued): {act}",
            a_starts.len().saturating_sub(SLOTS)
        );
    }
    s.stop();
}
