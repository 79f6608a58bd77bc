//! Concurrent Node (issue 15): an I/O-bound action (it awaits a 50 ms timer) created with
//! `limits.concurrency` 200, under 200 keep-alive clients invoking it back to back.
//!
//! The floor is physical, not measured: 200 activations that each last 50 ms complete at most
//! 200 / 50 ms = 4000 times a second, whatever runs them. The target is 0.8x of that
//! with at most 2 containers (one container serves 200 at once; a second may start while the
//! first is still initialising under the first wave). The containers are counted from the
//! daemon's state dir, as the throughput rows do, after the warm-up and after the load.
//!
//! The namespace's concurrent-invocations limit (100 by default, docs/SECURITY.md) would refuse
//! half of the 200 clients: the row raises it for the bench's namespace with `hearthd admin
//! limits set`, as an operator would, and clears it afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::daemon;
use crate::procfs;
use crate::report::Row;
use crate::throughput::platform_load;
use crate::{api, Plan, Progress};

/// Clients, and the action's concurrency: one container can take every one of them.
const CLIENTS: usize = 200;
/// How long each activation waits on its timer.
const SLEEP: Duration = Duration::from_millis(50);
/// The namespace the harness's key belongs to.
const NAMESPACE: &str = "guest";
/// Its concurrent-invocations override for the row: above the clients, with room for the
/// activations of the previous window still being recorded.
const NAMESPACE_CONCURRENCY: u32 = 400;
const ACTION: &str = "bench-concurrent-nodejs";
/// At most this many containers may serve the load (issue 15).
const MAX_CONTAINERS: usize = 2;
/// The bound on throughput, as a fraction of `CLIENTS / SLEEP`.
const BOUND: f64 = 0.8;

fn code() -> String {
    format!(
        "// {ACTION}\nfunction main(args) {{\n  return new Promise((resolve) => setTimeout(() => resolve({{ ok: true }}), {}));\n}}\n",
        SLEEP.as_millis()
    )
}

/// Containers holding the action's code now.
fn containers_used(containers_dir: &Path, code: &str) -> usize {
    procfs::platform_containers(containers_dir)
        .iter()
        .filter(|c| c.code.as_deref() == Some(code))
        .count()
}

pub async fn run(
    data_dir: &Path,
    containers_dir: &Path,
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let limit = NAMESPACE_CONCURRENCY.to_string();
    daemon::admin(data_dir, &["limits", "set", NAMESPACE, "--concurrent-invocations", &limit])?;
    let rows = measure(containers_dir, platform, plan, progress).await;
    let cleared = daemon::admin(data_dir, &["limits", "clear", NAMESPACE]);
    let rows = rows.context("concurrent nodejs")?;
    cleared?;
    Ok(rows)
}

async fn measure(
    containers_dir: &Path,
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let code = code();
    let body = json!({
        "exec": {"kind": "nodejs:20", "code": code},
        "limits": {"memory": 256, "concurrency": CLIENTS},
    });
    let mut c = api::connect(platform).await?;
    api::put_action_json(&mut c, ACTION, &body).await?;
    api::invoke(&mut c, ACTION).await?;
    drop(c);

    progress.phase(&format!("concurrent nodejs: {CLIENTS} clients, warming up"));
    let warm = platform_load(platform, ACTION, CLIENTS, plan.tp_warmup).await?;
    let after_warmup = containers_used(containers_dir, &code);
    progress.phase(&format!("concurrent nodejs: {CLIENTS} clients"));
    let load = platform_load(platform, ACTION, CLIENTS, plan.tp_duration).await?;
    let used = after_warmup.max(containers_used(containers_dir, &code));

    let floor = CLIENTS as f64 / SLEEP.as_secs_f64();
    let mut note = format!(
        "{used} containers (limits.concurrency {CLIENTS}); overall {:.0}/s; floor {CLIENTS} / {} ms; the namespace's concurrent-invocations limit raised to {NAMESPACE_CONCURRENCY} for the row",
        load.overall,
        SLEEP.as_millis()
    );
    let errors = warm.errors + load.errors;
    if errors > 0 {
        note.push_str(&format!(
            "; {errors} errors, first: {}",
            load.first_error().or(warm.first_error()).unwrap_or("")
        ));
    }
    let tp = load
        .rate_row(format!(
            "throughput nodejs concurrency {CLIENTS}, {CLIENTS} clients, 50 ms sleep"
        ))
        .floor(format!("{CLIENTS} / 50 ms"), floor);
    let met = tp.ratio >= BOUND && used <= MAX_CONTAINERS && errors == 0;
    let tp = tp
        .target(format!(">= {BOUND}x floor, <= {MAX_CONTAINERS} containers (issue 15)"), met)
        .note(note);
    let latency =
        Row::latency(format!("  latency under load nodejs concurrency {CLIENTS}"), load.latency())
            .floor("the action's 50 ms", SLEEP.as_secs_f64() * 1e3);
    Ok(vec![tp, latency])
}
