//! The first invoke of a new action right after a burst of another one filled the pool
//! (issue 16): 64 clients invoke one action until every MB of the default budget holds one of
//! its warm containers and the stem cells are gone, then a fresh action is invoked.
//!
//! Three samples per round. "Before": with the round's stem cells in place and no burst, a
//! fresh action takes the stem cell: the prewarmed start on this very instance, the floor of
//! the row, interleaved round by round with what it is compared to (instance B's prewarmed
//! row, a minute apart on another daemon, is shown beside it). "At once": the fresh action is
//! invoked as the burst's last response arrives, before the background refill could act, so
//! it must evict a warm container itself (which is destroyed behind it) and start cold.
//! "After the refill": the harness waits for the prewarm filler's `prewarmed` events that
//! follow the burst (it evicted idle warm containers, least recently used first, to make room
//! for both runtimes' stem cells), then invokes another fresh action, which takes the stem
//! cell.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth::model::Runtime;

use crate::daemon::{self, Daemon};
use crate::http::Client;
use crate::report::Row;
use crate::stats::{Samples, Summary};
use crate::throughput::platform_load;
use crate::{api, Plan, Progress};

/// Clients of the burst: more than the default budget has containers (2048 / 256 = 8).
const BURST_CLIENTS: usize = 64;
/// Longest the refill after a burst may take before the harness calls the pool stuck.
const REFILL_TIMEOUT: Duration = Duration::from_secs(30);
/// The runtimes of the harness's prewarm plan.
const OTHER_STEM_CELLS: [&str; 2] = ["python", "nodejs"];
/// Pause between the refill and the measured invoke, as between the other start samples.
const SETTLE: Duration = Duration::from_millis(150);

/// What the rounds measured; instance B's prewarmed start is shown beside it.
#[derive(Debug, Default)]
pub struct AfterBurst {
    before: Samples,
    at_once: Samples,
    refill: Samples,
    after_refill: Samples,
    /// Rounds after which no refill was seen.
    no_refill: usize,
    /// Invokes per second over each burst.
    burst_rate: Vec<f64>,
}

pub async fn run(
    daemon: &Daemon,
    platform: SocketAddr,
    runtime: Runtime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<AfterBurst> {
    let rt = runtime.as_str();
    let hot = format!("bench-burst-{rt}");
    let mut c = api::connect(platform).await?;
    api::put_action(&mut c, &hot, runtime, &api::noop_code(runtime, &hot), 256).await?;
    let mut out = AfterBurst::default();
    let what = format!("first invoke after a burst {rt}");
    for i in 0..plan.starts_n {
        progress.step(&what, i, plan.starts_n);
        let before_name = format!("bench-before-burst-{rt}-{i}");
        let now_name = format!("bench-after-burst-now-{rt}-{i}");
        let later_name = format!("bench-after-burst-{rt}-{i}");
        for name in [&before_name, &now_name, &later_name] {
            api::put_action(&mut c, name, runtime, &api::noop_code(runtime, name), 256).await?;
        }
        // The floor: a fresh action takes the stem cell of a settled pool, no burst behind it.
        settled(&mut c).await?;
        out.before.push(api::invoke(&mut c, &before_name).await?);
        settled(&mut c).await?;
        let load = platform_load(platform, &hot, BURST_CLIENTS, plan.burst).await?;
        if load.errors > 0 {
            anyhow::bail!("{} errors in the burst", load.errors);
        }
        out.burst_rate.push(load.overall);
        let ended = Instant::now();
        out.at_once.push(api::invoke(&mut c, &now_name).await?);
        // A round whose burst left the stem cell in place has no refill to wait for: it is
        // counted, not fatal.
        match daemon
            .log
            .wait_for(ended, REFILL_TIMEOUT, "prewarm refill after the burst", |l| {
                daemon::is_prewarmed(l, rt)
            })
            .await
        {
            Ok((seen, _)) => out.refill.push(seen - ended),
            Err(_) => out.no_refill += 1,
        }
        // The other runtime's stem cell (evicted by the burst) comes back next: its create
        // would otherwise compete with the measured start for the two CPUs.
        settled(&mut c).await?;
        out.after_refill.push(api::invoke(&mut c, &later_name).await?);
    }
    Ok(out)
}

/// Waits until the pool is settled (both stem cells idle, nothing being created or torn
/// down, read from /metrics), then [`SETTLE`] more, as between the other start samples: the
/// measured start then competes with no background work for the two CPUs, as the prewarmed
/// row's starts do.
async fn settled(c: &mut Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + REFILL_TIMEOUT;
    loop {
        let (status, body, _) = c.request("GET", "/metrics", b"").await?;
        let text = String::from_utf8_lossy(&body);
        let gauge = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stem_cells = gauge("hearth_containers{state=\"prewarmed\"}");
        let busy = gauge("hearth_containers{state=\"starting\"}")
            + gauge("hearth_containers{state=\"destroying\"}");
        if status == 200 && stem_cells >= OTHER_STEM_CELLS.len() as u64 && busy == 0 {
            tokio::time::sleep(SETTLE).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the pool did not settle within {REFILL_TIMEOUT:?} ({stem_cells} stem cells, \
                 {busy} starting or destroying)"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl AfterBurst {
    /// The rows, beside `prewarmed_p50_ms`: the prewarmed start with room, same run.
    pub fn rows(&self, rt: &str, prewarmed_p50_ms: f64) -> Vec<Row> {
        let before = self.before.summary();
        let after = Row::latency(
            format!("first invoke after a burst {rt} (refilled)"),
            &self.after_refill.summary(),
        )
        .floor("prewarmed start before the burst", before.p50_us / 1000.0);
        let ratio = after.ratio;
        let rate = Summary::of(self.burst_rate.clone()).p50_us;
        vec![
            after.target("<= 1.5x floor (issue 16)", ratio <= 1.5).note(format!(
                "{BURST_CLIENTS} clients on one action until the pool was full ({rate:.0} invokes/s), then a fresh action once the pool had settled (stem cells back, nothing starting or torn down); rounds without a refill seen: {}; instance B's prewarmed start {prewarmed_p50_ms:.3} ms",
                self.no_refill
            )),
            Row::latency(
                format!("  floor: prewarmed start {rt} on this instance before the burst"),
                &before,
            ),
            Row::latency(
                format!("  burst end to stem cell ready {rt} (background eviction + create)"),
                &self.refill.summary(),
            ),
            Row::latency(
                format!("  first invoke at the burst's end {rt} (evicts behind it, cold)"),
                &self.at_once.summary(),
            ),
        ]
    }
}
