//! The cost of durability on the critical path: the p50 of warm blocking invokes through a real
//! `hearthd standalone`, printed so that the figure in docs/SECURITY.md can be re-measured
//! (`HEARTH_TEST_HEARTHD=/path/to/other/hearthd` runs the same measurement on another build).
//! A blocking invoke's record is committed (one small LMDB write transaction, batched with
//! concurrent ones) before the response; this test bounds what that costs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

/// Warm invokes measured; enough for a stable median on a busy 2-core machine.
const SAMPLES: usize = 200;

#[test]
fn warm_blocking_invoke_p50() {
    require_root();
    let mut s = Standalone::start("prewarm = []\n");
    let c = s.client();
    c.put_action("echo", "python:3", "def main(a):\n    return a\n", None);
    // Cold start plus a few warm-ups.
    for _ in 0..5 {
        let r = c.invoke("echo", json!({"x": 1}));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut lat = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        let r = c.invoke("echo", json!({"i": i}));
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["response"]["result"]["i"], i);
    }
    lat.sort();
    let p50 = lat[SAMPLES / 2];
    let p90 = lat[SAMPLES * 9 / 10];
    let p99 = lat[SAMPLES * 99 / 100];
    println!("warm blocking invoke over {SAMPLES}: p50 {p50:?} p90 {p90:?} p99 {p99:?}");
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
    s.stop();
}
