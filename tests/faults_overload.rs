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
