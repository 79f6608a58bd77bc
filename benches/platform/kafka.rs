//! Warm invoke over the Kafka bus (issue 6) against the brokers' own produce-to-consume round
//! trip, measured in the same run: a tansu broker (memory storage, as in the tests), one
//! `hearthd controller --bus kafka://…` and one `hearthd invoker --bus kafka://… --id 0`.
//!
//! The request crosses the broker twice (the activation to `hearth.invoker.0`, its record back
//! to `hearth.completed.<controller>`), so the target is twice the round trip plus 1 ms for
//! hearth's own work. Samples are interleaved (invoke i, then round trip i) so that machine
//! noise lands on both sides alike.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth::bus::kafka::probe::Probe;

use crate::broker::Broker;
use crate::daemon::{self, HEARTHD};
use crate::report::Row;
use crate::stats::Samples;
use crate::workspace::Workspace;
use crate::{activation::PROBE_ACTION, api, Plan, Progress};

/// The longest pause before a sample: two of the consumers' fetch waits (5 ms each).
const MAX_THINK: Duration = Duration::from_millis(10);

/// The probe's own topic (the bus never reads it).
const PROBE_TOPIC: &str = "hearth.bench.rtt";

/// Starts the broker and both daemons on `data_dir` (which holds [`PROBE_ACTION`]; the
/// controller publishes it when it joins, the invoker materialises it), measures, stops.
pub async fn run(
    ws: &Arc<Workspace>,
    data_dir: &Path,
    config_dir: &Path,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    progress.phase("kafka: starting the broker");
    // Blocks for the few hundred ms the broker takes to listen; nothing else runs yet.
    let broker = Broker::start();
    let bus = format!("kafka://{}", broker.addr());
    let port = daemon::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listen = addr.to_string();
    let ctl_args: Vec<&OsStr> = vec![
        "controller".as_ref(),
        "--listen".as_ref(),
        listen.as_ref(),
        "--bus".as_ref(),
        bus.as_ref(),
        "--id".as_ref(),
        "bench".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--config-dir".as_ref(),
        config_dir.as_os_str(),
    ];
    let state = ws.run_path("state-kafka");
    ws.track_runc_root(&state.join("runc"), "hearth", false);
    let invoker_data = ws.path("data-kafka-invoker");
    let inv_args: Vec<&OsStr> = vec![
        "invoker".as_ref(),
        "--bus".as_ref(),
        bus.as_ref(),
        "--id".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        invoker_data.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--config-dir".as_ref(),
        config_dir.as_os_str(),
    ];
    progress.phase("kafka: starting hearthd controller and invoker");
    let notify = ws.path("notify-kafka-controller.sock");
    let mut ctl = daemon::spawn(
        ws,
        "hearthd controller (kafka)",
        Path::new(HEARTHD),
        &ctl_args,
        Some(&notify),
    )?;
    let notify = ws.path("notify-kafka-invoker.sock");
    let inv =
        daemon::spawn(ws, "hearthd invoker (kafka)", Path::new(HEARTHD), &inv_args, Some(&notify));
    let result = match inv {
        Ok(mut inv) => {
            let r = async {
                ctl.wait_ready(Duration::from_secs(60)).await?;
                inv.wait_ready(Duration::from_secs(60)).await?;
                measure(addr, &broker.addr(), plan, progress)
                    .await
                    .with_context(|| format!("{}\n{}", ctl.context(), inv.context()))
            }
            .await;
            let stop = daemon::stop_row(ws, inv, &state, plan).await;
            r.and_then(|rows| Ok((rows, stop?)))
        }
        Err(e) => Err(e),
    };
    let stop_ctl = ctl.stop(plan.stop_grace).await;
    drop(broker);
    let (mut rows, stop_inv) = result?;
    stop_ctl?;
    rows.push(stop_inv);
    Ok(rows)
}

async fn measure(
    addr: SocketAddr,
    brokers: &str,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut client = api::connect(addr).await?;
    // The first invokes wait for the invoker's first ping, the action's replication and a
    // cold start.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        match api::invoke(&mut client, PROBE_ACTION).await {
            Ok(d) => break d,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("no successful invoke over Kafka within 60 s"))
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                client = api::connect(addr).await?;
            }
        }
    };
    let mut probe =
        Probe::new(brokers, PROBE_TOPIC).await.context("the broker round-trip probe")?;
    let n = plan.kafka_n;
    for _ in 0..n / 10 {
        api::invoke(&mut client, PROBE_ACTION).await?;
        probe.once().await?;
    }
    let (mut invoke, mut rtt) = (Samples::with_capacity(n), Samples::with_capacity(n));
    for i in 0..n {
        progress.step("warm invoke over kafka", i, n);
        tokio::time::sleep(think_time(2 * i)).await;
        invoke.push(api::invoke(&mut client, PROBE_ACTION).await?);
        tokio::time::sleep(think_time(2 * i + 1)).await;
        rtt.push(probe.once().await?);
    }
    let (p, r) = (invoke.summary(), rtt.summary());
    let row =
        Row::latency("warm invoke python over Kafka (controller -> invoker -> controller)", &p)
            .floor("broker produce -> consume", r.p50_us / 1000.0);
    let bound = 2.0 * row.floor_p50 + 1.0;
    let met = row.p50 <= bound;
    Ok(vec![
        row.target("p50 <= 2x floor + 1 ms (issue 6)", met).note(format!(
            "bound {bound:.2} ms; first invoke (cold, after the invoker joined) {:.1} ms",
            first.as_secs_f64() * 1e3
        )),
        Row::latency("  floor: broker produce -> consume round trip", &r),
    ])
}

/// The pause before sample `i`, spread evenly over `0..MAX_THINK` (a Weyl sequence: no two
/// nearby samples get similar pauses, and the run is the same every time).
///
/// Why pause at all: a consumer long-polls, and how long a message waits depends on when it
/// arrives within the consumer's outstanding fetch. Sent back to back, each message leaves
/// right after the previous fetch returned, always at the same phase — and the two sides of
/// the comparison do not lock to the same phase (the probe has one hop, an invoke two).
/// Pausing a spread amount before every sample of both sides samples every phase alike, as
/// requests arriving from users do.
fn think_time(i: usize) -> Duration {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    MAX_THINK.mul_f64((i as f64 * GOLDEN).fract())
}
