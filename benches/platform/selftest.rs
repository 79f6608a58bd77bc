//! What `cargo test` runs. Bench targets get no test harness, and `cargo test --all-targets`
//! executes them without the `--bench` flag that `cargo bench` passes; so without that flag the
//! binary checks its own pieces (percentiles, the report, log parsing, the HTTP client against
//! the trivial server) instead of starting daemons, and exits non-zero when a check fails.

// Test code: a failed expectation is the test failing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use crate::report::{Report, Row, Unit};
use crate::stats::Summary;
use crate::{daemon, http, parse_args, procfs, report, stats};

pub fn run() -> anyhow::Result<()> {
    stats::selftest();
    report_renders_targets_and_missing_values();
    prewarm_events_are_recognised();
    args_are_parsed();
    cpu_use_is_read_and_divided();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(client_round_trip())?;
    println!("platform bench self-test: ok (run the benchmark with `make bench-quick`)");
    Ok(())
}

fn report_renders_targets_and_missing_values() {
    let s = Summary::of(vec![1000.0, 2000.0, 3000.0]);
    let warm = Row::latency("warm invoke python", &s)
        .floor("floor", 1.0)
        .target("<= 1.5x floor", false)
        .target("p50 < 1 ms", false);
    assert_eq!(warm.ratio, 2.0);
    assert_eq!(warm.met, Some(false));
    assert_eq!(warm.target, "<= 1.5x floor; p50 < 1 ms");
    let rss = Row::value("controller RSS idle", Unit::Mb, 12.5).target("< 40 MB", true);
    let report = Report {
        mode: "quick",
        started_unix: 0,
        elapsed_s: 1.0,
        machine: report::Machine::probe(),
        rows: vec![warm, rss],
    };
    let t = report.table();
    assert!(t.contains("2.000 ms") && t.contains("MISSED") && t.contains("12.5 MB"), "{t}");
    assert!(t.lines().any(|l| l.starts_with("controller RSS idle") && l.ends_with("met")), "{t}");
    let json = serde_json::to_value(&report).expect("the report serialises");
    assert!(json["rows"][1]["p90"].is_null(), "NaN must become null: {json}");
}

fn cpu_use_is_read_and_divided() {
    let before = procfs::CpuUse::of(std::process::id() as i32).expect("our own /proc entry");
    // Some work and a sleep: both counters can only grow.
    let spin = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
    std::hint::black_box(spin);
    std::thread::sleep(Duration::from_millis(20));
    let after = procfs::CpuUse::of(std::process::id() as i32).expect("our own /proc entry");
    assert!(after.switches > before.switches, "a sleep switches: {before:?} -> {after:?}");
    assert!(after.user + after.system >= before.user + before.system);
    let (u, s, c) = after.per_op_since(&before, 0.0);
    assert!(u >= 0.0 && s >= 0.0 && c >= 1.0, "n = 0 counts as one operation: {u} {s} {c}");
}

fn prewarm_events_are_recognised() {
    let line = "2026-01-01T00:00:00.000001Z DEBUG hearth::invoker::prewarm: prewarmed \
                container=hearth-1a2b3c4d-3 runtime=\"nodejs\" memory_mb=256";
    assert!(daemon::is_prewarmed(line, "nodejs"));
    assert!(!daemon::is_prewarmed(line, "python"));
    assert!(!daemon::is_prewarmed("WARN creating a prewarm container failed", "nodejs"));
}

fn args_are_parsed() {
    let a = parse_args(["--quick", "--bench", "--json", "/tmp/x.json"].map(String::from))
        .expect("valid arguments");
    assert!(a.quick && a.bench);
    assert_eq!(a.json, std::path::PathBuf::from("/tmp/x.json"));
    assert!(parse_args(["--bogus".to_owned()]).is_err());
    assert!(!parse_args(Vec::<String>::new()).expect("no arguments").bench);
    for group in ["records", "sequence", "image", "native", "fairness"] {
        let only = parse_args(["--only", group].map(String::from)).expect("a known group");
        assert_eq!(only.only.as_deref(), Some(group));
    }
    assert!(parse_args(["--only", "everything"].map(String::from)).is_err());
    assert!(parse_args(["--only".to_owned()]).is_err());
}

async fn client_round_trip() -> anyhow::Result<()> {
    let addr = http::trivial_server().await?;
    let mut c = http::Client::connect(addr, Some("user:secret")).await?;
    for _ in 0..3 {
        let (status, body, took) = c.request("GET", "/", b"").await?;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"{\"ok\":true}");
        assert!(took < Duration::from_secs(5));
    }
    Ok(())
}
