//! The first invoke of a new action right after a burst of another one filled the pool
//! (issue 16): 64 clients invoke one action until every MB of the default budget holds one of
//! its warm containers and the stem cells are gone, then a fresh action is invoked.
//!
//! Two samples per round. "At once": the fresh action is invoked as the burst's last response
//! arrives, before the background refill could act, so it must evict a warm container itself
//! (which is destroyed behind it) and start cold. "After the refill": the harness waits for
//! the prewarm filler's `prewarmed` events that follow the burst (it evicted idle warm
//! containers, least recently used first, to make room for both runtimes' stem cells), then
//! invokes another fresh action, which takes the stem cell. Its floor is the prewarmed start with room (instance B's row).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth::model::Runtime;

use crate::daemon::{self, Daemon};
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

/// What a round measured, before the floor (instance B's prewarmed start) is known.
#[derive(Debug, Default)]
pub struct AfterBurst {
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
        let now_name = format!("bench-after-burst-now-{rt}-{i}");
        let later_name = format!("bench-after-burst-{rt}-{i}");
        for name in [&now_name, &later_name] {
            api::put_action(&mut c, name, runtime, &api::noop_code(runtime, name), 256).await?;
        }
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
        // The other runtime's stem cell (evicted by the burst) comes back next; its create
        // would otherwise compete with the measured start for the two CPUs.
        for other in OTHER_STEM_CELLS.iter().filter(|o| **o != rt) {
            let _ = daemon
                .log
                .wait_for(ended, REFILL_TIMEOUT, "the other stem cell's refill", |l| {
                    daemon::is_prewarmed(l, other)
                })
                .await;
        }
        tokio::time::sleep(SETTLE).await;
        out.after_refill.push(api::invoke(&mut c, &later_name).await?);
    }
    Ok(out)
}

impl AfterBurst {
    /// The rows, beside `prewarmed_p50_ms`: the prewarmed start with room, same run.
    pub fn rows(&self, rt: &str, prewarmed_p50_ms: f64) -> Vec<Row> {
        let after = Row::latency(
            format!("first invoke after a burst {rt} (refilled)"),
            &self.after_refill.summary(),
        )
        .floor("prewarmed start, room", prewarmed_p50_ms);
        let ratio = after.ratio;
        let rate = Summary::of(self.burst_rate.clone()).p50_us;
        vec![
            after.target("<= 1.5x floor (issue 16)", ratio <= 1.5).note(format!(
                "{BURST_CLIENTS} clients on one action until the pool was full ({rate:.0} invokes/s), then a fresh action once the stem cell was back; rounds without a refill seen: {}",
                self.no_refill
            )),
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
