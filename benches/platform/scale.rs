//! Cost that does not grow with the work (issue 16): the warm invoke with 10,000 actions
//! stored, spread over 120 warm containers, and after 100,000 activation records, each beside
//! the same measurement on the same instance with 10 actions, one container and an empty
//! store; and hearthd's memory per stored action and per record.
//!
//! Runs on an instance of its own (own data dir, no stem cells, a budget that holds 120
//! containers), so the baseline really starts from an empty store. Stores grow in order
//! (actions, containers, records) and each row is measured right after its growth.

use std::net::SocketAddr;
use std::time::Duration;

use hearth::container::{ActionContainer, RuncContainer};
use hearth::model::Runtime;

use crate::daemon::Daemon;
use crate::direct::{self, Direct};
use crate::http::Client;
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::{Samples, Summary};
use crate::throughput::platform_load;
use crate::{api, Plan, Progress};

/// Actions stored for the "many actions" row.
const ACTIONS: usize = 10_000;
/// Actions (and so warm containers) the spread row round-robins over.
const CONTAINERS: usize = 120;
/// Actions of the baseline.
const BASE_ACTIONS: usize = 10;
/// Connections that store the actions and write the records.
const WRITERS: usize = 8;
/// Target: each row within this factor of the baseline.
const WITHIN: f64 = 1.1;

fn name(i: usize) -> String {
    format!("bench-scale-{i}")
}

/// hearthd's RSS growth from `before` to `after` per one of `count` things stored, in KB.
fn rss_row(metric: &str, before: &procfs::RssParts, after: &procfs::RssParts, count: usize) -> Row {
    let per_kb = |a: f64, b: f64| (a - b) * 1024.0 / count.max(1) as f64;
    let total = per_kb(after.anon_mb + after.file_mb, before.anon_mb + before.file_mb);
    Row::value(metric, Unit::Kb, total).note(format!(
        "anonymous {:.4} KB, file-backed (LMDB map) {:.4} KB, over {count}",
        per_kb(after.anon_mb, before.anon_mb),
        per_kb(after.file_mb, before.file_mb)
    ))
}

/// `n` warm invokes, round-robin over `names`.
async fn sample(c: &mut Client, names: &[String], n: usize) -> anyhow::Result<Summary> {
    let mut s = Samples::with_capacity(n);
    for i in 0..n {
        s.push(api::invoke(c, &names[i % names.len()]).await?);
    }
    Ok(s.summary())
}

/// Stores actions `from..to` over [`WRITERS`] connections.
async fn store(platform: SocketAddr, from: usize, to: usize) -> anyhow::Result<()> {
    let rt = Runtime::Python;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        tasks.spawn(async move {
            let mut c = api::connect(platform).await?;
            for i in (from + w..to).step_by(WRITERS) {
                let n = name(i);
                api::put_action(&mut c, &n, rt, &api::noop_code(rt, &n), 128).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// The floor of the spread row: direct runs round-robin over [`CONTAINERS`] containers the
/// harness drives itself, and on one of them alone; shows how much of the spread's cost is
/// the containers' own (a different sleeping process woken each time).
async fn direct_spread(direct: &Direct, n: usize) -> anyhow::Result<(Summary, Summary)> {
    let rt = Runtime::Python;
    let mut pool: Vec<RuncContainer> = Vec::with_capacity(CONTAINERS);
    let result = async {
        for i in 0..CONTAINERS {
            pool.push(direct.start(rt, 128, &api::noop_code(rt, &format!("spread-{i}"))).await?);
        }
        let spec = direct::run_spec();
        for c in pool.iter_mut() {
            direct::run_once(c, &spec).await?;
        }
        let (mut wide, mut alone) = (Samples::with_capacity(n), Samples::with_capacity(n));
        for i in 0..n {
            wide.push(direct::run_once(&mut pool[i % CONTAINERS], &spec).await?);
            alone.push(direct::run_once(&mut pool[0], &spec).await?);
        }
        anyhow::Ok((wide.summary(), alone.summary()))
    }
    .await;
    for c in pool {
        c.destroy().await;
    }
    result
}

pub async fn run(
    direct: &Direct,
    d: &Daemon,
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut c = api::connect(platform).await?;
    let n = plan.warm_n;
    let one = vec![name(0)];

    progress.phase("scale: baseline (10 actions, 1 container, empty store)");
    store(platform, 0, BASE_ACTIONS).await?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let base = sample(&mut c, &one, n).await?;
    let base_ms = base.p50_us / 1000.0;
    let row = |metric: String, s: &Summary, note: String| {
        let r = Row::latency(metric, s).floor("10 actions, 1 container, empty store", base_ms);
        let ratio = r.ratio;
        r.target(format!("<= {WITHIN}x floor (issue 16)"), ratio <= WITHIN).note(note)
    };
    let mut rows = Vec::new();

    progress.phase(&format!("scale: storing {ACTIONS} actions"));
    let before = procfs::rss_parts(d.pid)?;
    store(platform, BASE_ACTIONS, ACTIONS).await?;
    let after = procfs::rss_parts(d.pid)?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let many = sample(&mut c, &one, n).await?;
    rows.push(row(format!("warm invoke, {ACTIONS} actions stored"), &many, String::new()));
    rows.push(rss_row("  hearthd RSS per stored action", &before, &after, ACTIONS - BASE_ACTIONS));

    progress.phase(&format!("scale: warming {CONTAINERS} containers"));
    let mut c = api::connect(platform).await?;
    let spread: Vec<String> = (0..CONTAINERS).map(name).collect();
    sample(&mut c, &spread, CONTAINERS).await?;
    sample(&mut c, &spread, CONTAINERS).await?;
    let wide = sample(&mut c, &spread, n).await?;
    rows.push(row(
        format!("warm invoke spread over {CONTAINERS} warm containers"),
        &wide,
        "round-robin: each container idle for the other 119 invokes".into(),
    ));
    progress.phase(&format!("scale: {CONTAINERS} direct containers"));
    let (direct_wide, direct_alone) = direct_spread(direct, n).await?;
    let wide_row = Row::latency(
        format!("  direct run round-robin over {CONTAINERS} containers"),
        &direct_wide,
    )
    .floor("direct run, one container", direct_alone.p50_us / 1000.0);
    rows.push(wide_row);
    rows.push(Row::latency("  direct run, one container (interleaved)", &direct_alone));

    let records = plan.records_n;
    progress.phase(&format!("scale: writing {records} activation records"));
    let before = procfs::rss_parts(d.pid)?;
    let mut written = 0usize;
    let round = Duration::from_millis(500);
    while written < records {
        let load = platform_load(platform, &name(0), WRITERS, round).await?;
        written += (load.overall * round.as_secs_f64()) as usize;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = procfs::rss_parts(d.pid)?;
    // A new connection: the server closes keep-alive connections left idle this long.
    let mut c = api::connect(platform).await?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let full = sample(&mut c, &one, n).await?;
    rows.push(row(
        format!("warm invoke after {written} activation records"),
        &full,
        format!("written by {WRITERS} clients (asked for {records})"),
    ));
    rows.push(rss_row("  hearthd RSS per activation record", &before, &after, written));
    Ok(rows)
}
