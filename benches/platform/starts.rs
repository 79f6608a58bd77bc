//! Starts that are not warm: a prewarmed start (a fresh action takes a stem cell of its
//! runtime; only init and run remain, and a resize of its limits when the action's memory is
//! not the stem cell's) and a cold start (no stem cell of the runtime is left, so container
//! create, interpreter start, init and run are all on the request's path).
//!
//! Prewarmed: every iteration makes a fresh action and waits, before the next, until the pool
//! has refilled the slot (the prewarm filler's `prewarmed` event); the time from the request
//! to that event is the refill time. The 256 MB actions take a stem cell of their own size;
//! the 128 and 512 MB ones the same 256 MB stem cell, resized, beside the 256 MB row. Cold:
//! run on an instance without stem cells; its floor is a bare `runc run` of an equivalent
//! bundle plus the host interpreter's own start, sampled alternately with the platform.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth::container::ActionContainer;
use hearth::model::Runtime;

use crate::daemon::{self, Daemon};
use crate::direct::{self, Direct};
use crate::report::Row;
use crate::stats::Samples;
use crate::{api, Plan, Progress};

/// Memory of the cold-start actions (any size: the instance has no stem cells).
pub const COLD_MEMORY_MB: u64 = 384;
/// The stem cells' size in the harness's prewarm plan.
pub const STEM_CELL_MB: u64 = 256;

/// What a prewarmed start is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Baseline {
    /// The stem cell's own size: the warm invoke's p50 (issue 3's targets), with direct floors.
    Warm { warm_p50_ms: f64 },
    /// Another size: the 256 MB prewarmed start's p50 of the same run.
    StemCellSize { p50_ms: f64 },
}
/// Pause before each sample so the previous one's background work (log flush, record write,
/// a refill) is not measured with it.
const SETTLE: Duration = Duration::from_millis(150);
/// Longest a refill may take before the harness calls the pool stuck.
const REFILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Prewarmed starts of `memory_mb` actions; returns the rows and the p50 in ms.
#[allow(clippy::too_many_arguments)]
pub async fn prewarmed(
    daemon: &Daemon,
    direct: &Direct,
    platform: SocketAddr,
    runtime: Runtime,
    memory_mb: u64,
    baseline: Baseline,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<(Vec<Row>, f64)> {
    let rt = runtime.as_str();
    let mut c = api::connect(platform).await?;
    let (mut took, mut refill, mut floor, mut contended) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let what = format!("prewarmed {rt} {memory_mb} MB");
    let floors = matches!(baseline, Baseline::Warm { .. });
    for i in 0..plan.starts_n {
        progress.step(&what, i, plan.starts_n);
        let name = format!("bench-pre-{rt}-{memory_mb}-{i}");
        // Floors for the stem cell's own size only (other sizes compare with that row).
        if floors {
            // The same steps on a stem cell of our own: install, init, first run.
            let mut stem = direct.stem_cell(runtime, 256).await?;
            tokio::time::sleep(SETTLE).await;
            let specialised = Direct::specialise(
                &mut stem,
                runtime,
                &api::noop_code(runtime, &format!("floor-{i}")),
            )
            .await;
            stem.destroy().await;
            floor.push(specialised?);
            // The same again while another stem cell of the runtime is being created, as the
            // pool's refill does while a prewarmed activation initialises.
            let mut stem = direct.stem_cell(runtime, 256).await?;
            tokio::time::sleep(SETTLE).await;
            let code = api::noop_code(runtime, &format!("floor-c{i}"));
            let (specialised, other) = tokio::join!(
                Direct::specialise(&mut stem, runtime, &code),
                direct.stem_cell(runtime, 256)
            );
            stem.destroy().await;
            if let Ok(o) = other {
                o.destroy().await;
            }
            contended.push(specialised?);
        }
        api::put_action(&mut c, &name, runtime, &api::noop_code(runtime, &name), memory_mb).await?;
        tokio::time::sleep(SETTLE).await;
        let t = Instant::now();
        took.push(api::invoke(&mut c, &name).await?);
        // The refill event proves the request took the stem cell (a cold start would not
        // trigger one) and is the moment the next iteration may start.
        let (seen, _) = daemon
            .log
            .wait_for(t, REFILL_TIMEOUT, "prewarm refill", |l| daemon::is_prewarmed(l, rt))
            .await
            .map_err(|e| anyhow::anyhow!("{e}; {}", daemon.context()))?;
        refill.push(seen - t);
    }
    let s = took.summary();
    let warm_p50_ms = match baseline {
        Baseline::StemCellSize { p50_ms } => {
            let main = Row::latency(format!("prewarmed start {rt} {memory_mb} MB"), &s)
                .floor(format!("prewarmed {STEM_CELL_MB} MB"), p50_ms);
            let ratio = main.ratio;
            let rows = vec![
                main.target("<= 1.2x the 256 MB row (issue 16)", ratio <= 1.2)
                    .note("the 256 MB stem cell, resized to the action's limit when taken"),
                Row::latency(
                    format!("  prewarm refill {rt} after a {memory_mb} MB start"),
                    &refill.summary(),
                ),
            ];
            return Ok((rows, s.p50_us / 1000.0));
        }
        Baseline::Warm { warm_p50_ms } => warm_p50_ms,
    };
    let main = Row::latency(format!("prewarmed start {rt}"), &s).floor("warm p50", warm_p50_ms);
    let p50 = main.p50;
    let rows = vec![
        main.target("<= warm + 5 ms", p50 <= warm_p50_ms + 5.0)
            .target("p50 < 10 ms (issue 3)", p50 < 10.0),
        Row::latency(
            format!("  direct stem cell: install + init + first run {rt}"),
            &floor.summary(),
        ),
        Row::latency(
            format!("  direct stem cell, while another {rt} container starts"),
            &contended.summary(),
        ),
        Row::latency(format!("  prewarm refill {rt} (request to ready)"), &refill.summary()),
    ];
    Ok((rows, p50))
}

pub async fn cold(
    direct: &Direct,
    platform: SocketAddr,
    runtime: Runtime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let rt = runtime.as_str();
    let mut c = api::connect(platform).await?;
    let mut bare = direct.bare_bundle(runtime, COLD_MEMORY_MB)?;
    // One unmeasured round of each, so that page-cache misses are not in the floor.
    bare.run_once(&format!("{}-warmup", direct_id_base(rt))).await?;
    direct::interpreter_start(runtime).await?;
    let (mut took, mut runc, mut interp, mut floor) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let what = format!("cold {rt}");
    for i in 0..plan.starts_n {
        progress.step(&what, i, plan.starts_n);
        let name = format!("bench-cold-{rt}-{i}");
        api::put_action(&mut c, &name, runtime, &api::noop_code(runtime, &name), COLD_MEMORY_MB)
            .await?;
        tokio::time::sleep(SETTLE).await;
        took.push(api::invoke(&mut c, &name).await?);
        tokio::time::sleep(SETTLE).await;
        let r = bare.run_once(&format!("{}-{i}", direct_id_base(rt))).await?;
        tokio::time::sleep(SETTLE).await;
        let s = direct::interpreter_start(runtime).await?;
        runc.push(r);
        interp.push(s);
        floor.push(r + s);
    }
    let f = floor.summary();
    let main = Row::latency(format!("cold start {rt}"), &took.summary())
        .floor("runc run + interpreter start", f.p50_us / 1000.0);
    let ratio = main.ratio;
    Ok(vec![
        main.target("<= 1.2x floor", ratio <= 1.2),
        Row::latency(
            format!("  floor: bare runc run ({rt} bundle, /usr/bin/true)"),
            &runc.summary(),
        ),
        Row::latency(format!("  floor: host interpreter start {rt}"), &interp.summary()),
    ])
}

fn direct_id_base(rt: &str) -> String {
    format!("bare-{rt}")
}
