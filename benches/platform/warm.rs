//! Warm invoke end to end vs its floor: the same no-op action run on a warm container the
//! harness drives directly, plus one loopback HTTP round trip to a trivial hyper server.
//!
//! The three are interleaved sample by sample (platform, direct run, HTTP) so that machine
//! noise lands on both sides alike; floor sample i is direct run i + HTTP round trip i.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hearth::container::ActionContainer;
use hearth::model::Runtime;

use crate::direct::{self, Direct};
use crate::http::Client;
use crate::report::Row;
use crate::stats::{Samples, Summary};
use crate::workspace::Workspace;
use crate::{api, daemon, starts, throughput, Plan, Progress};

/// `--only warm`: the warm path's rows alone, each on its instance as in the full run: warm
/// invokes and throughput on the default pool, prewarmed starts on a large budget, cold
/// starts without stem cells. For A/B runs of a daemon setting (e.g. `TOKIO_WORKER_THREADS`,
/// which the spawned daemons inherit) without the whole run on a shared machine.
pub async fn only(
    ws: &Arc<Workspace>,
    direct: &Direct,
    trivial: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let data_dir = ws.path("data");
    let mut rows = Vec::new();
    let cfg_a = daemon::config_dir(ws, "config-default", &crate::invoker_toml(2048))?;
    let (a, addr_a, state_a) =
        crate::start_standalone(ws, "a", &data_dir, &cfg_a, progress).await?;
    let phase_a = async {
        let (mut rows, mut warm_p50) = (Vec::new(), Vec::new());
        for runtime in [Runtime::Python, Runtime::Nodejs] {
            progress.phase(&format!("warm invoke {}", runtime.as_str()));
            let (r, p50) = run(direct, addr_a, trivial, runtime, plan, progress).await?;
            rows.extend(r);
            warm_p50.push(p50);
        }
        let containers = state_a.join("containers");
        let python = Runtime::Python;
        rows.extend(
            throughput::run(direct, a.pid, addr_a, &containers, python, plan, progress).await?,
        );
        anyhow::Ok((rows, warm_p50))
    }
    .await;
    let stop_a = daemon::stop_row(ws, a, &state_a, plan).await?;
    let (r, warm_p50) = phase_a?;
    rows.extend(r);
    rows.push(stop_a);

    let cfg_b = daemon::config_dir(ws, "config-large", &crate::invoker_toml(32768))?;
    let (b, addr_b, state_b) =
        crate::start_standalone(ws, "b", &data_dir, &cfg_b, progress).await?;
    let phase_b = async {
        let mut rows = Vec::new();
        for (runtime, warm) in [Runtime::Python, Runtime::Nodejs].into_iter().zip(&warm_p50) {
            progress.phase(&format!("prewarmed start {}", runtime.as_str()));
            let baseline = starts::Baseline::Warm { warm_p50_ms: *warm };
            let mb = starts::STEM_CELL_MB;
            let started =
                starts::prewarmed(&b, direct, addr_b, runtime, mb, baseline, plan, progress);
            rows.extend(started.await?.0);
        }
        anyhow::Ok(rows)
    }
    .await;
    let stop_b = daemon::stop_row(ws, b, &state_b, plan).await?;
    rows.extend(phase_b?);
    rows.push(stop_b);

    let cfg_c = daemon::config_dir(ws, "config-cold", &crate::invoker_toml_cold(32768))?;
    let (c, addr_c, state_c) =
        crate::start_standalone_with(ws, "c", &data_dir, &cfg_c, &[], progress).await?;
    let phase_c = async {
        let mut rows = Vec::new();
        for runtime in [Runtime::Python, Runtime::Nodejs] {
            progress.phase(&format!("cold start {}", runtime.as_str()));
            rows.extend(starts::cold(direct, addr_c, runtime, plan, progress).await?);
        }
        anyhow::Ok(rows)
    }
    .await;
    let stop_c = daemon::stop_row(ws, c, &state_c, plan).await?;
    rows.extend(phase_c?);
    rows.push(stop_c);
    Ok(rows)
}

/// The warm rows of one runtime, and the warm p50 in ms (the prewarmed rows compare to it).
pub async fn run(
    direct: &Direct,
    platform: SocketAddr,
    trivial: SocketAddr,
    runtime: Runtime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<(Vec<Row>, f64)> {
    let rt = runtime.as_str();
    let name = format!("bench-warm-{rt}");
    let mut client = api::connect(platform).await?;
    api::put_action(&mut client, &name, runtime, &api::noop_code(runtime, &name), 256).await?;
    let mut http =
        Client::connect(trivial, None).await.context("connecting to the trivial server")?;
    let mut container = direct.start(runtime, 256, &api::noop_code(runtime, "floor")).await?;
    let spec = direct::run_spec();
    let result = async {
        for _ in 0..plan.warm_warmup {
            api::invoke(&mut client, &name).await?;
            direct::run_once(&mut container, &spec).await?;
            http.request("GET", "/", b"").await?;
        }
        let (mut platform_s, mut run_s, mut http_s, mut floor_s) = (
            Samples::with_capacity(plan.warm_n),
            Samples::with_capacity(plan.warm_n),
            Samples::with_capacity(plan.warm_n),
            Samples::with_capacity(plan.warm_n),
        );
        let what = format!("warm {rt}");
        for i in 0..plan.warm_n {
            progress.step(&what, i, plan.warm_n);
            platform_s.push(api::invoke(&mut client, &name).await?);
            let d = direct::run_once(&mut container, &spec).await?;
            let (_, _, h) = http.request("GET", "/", b"").await?;
            run_s.push(d);
            http_s.push(h);
            floor_s.push(d + h);
        }
        anyhow::Ok((platform_s.summary(), run_s.summary(), http_s.summary(), floor_s.summary()))
    }
    .await;
    container.destroy().await;
    let (p, run, http, floor) = result?;
    Ok((rows(rt, &p, &run, &http, &floor), p.p50_us / 1000.0))
}

fn rows(rt: &str, p: &Summary, run: &Summary, http: &Summary, floor: &Summary) -> Vec<Row> {
    let main = Row::latency(format!("warm invoke {rt}"), p)
        .floor("direct run + loopback HTTP", floor.p50_us / 1000.0);
    let ratio = main.ratio;
    let p50 = main.p50;
    vec![
        main.target("<= 1.5x floor", ratio <= 1.5).target("p50 < 1 ms (issue 3)", p50 < 1.0),
        Row::latency(format!("  floor: direct container run {rt}"), run),
        Row::latency(format!("  floor: loopback HTTP ({rt} run)"), http),
    ]
}
