//! Warm invoke end to end vs its floor: the same no-op action run on a warm container the
//! harness drives directly, plus one loopback HTTP round trip to a trivial hyper server.
//!
//! The three are interleaved sample by sample (platform, direct run, HTTP) so that machine
//! noise lands on both sides alike; floor sample i is direct run i + HTTP round trip i.

use std::net::SocketAddr;

use anyhow::Context;
use hearth::container::ActionContainer;
use hearth::model::Runtime;

use crate::direct::{self, Direct};
use crate::http::Client;
use crate::report::Row;
use crate::stats::{Samples, Summary};
use crate::{api, Plan, Progress};

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
