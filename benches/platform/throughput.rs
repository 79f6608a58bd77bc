//! Throughput: warm invokes per second at 1, 8 and 64 concurrent clients, each client on its
//! own keep-alive connection, vs the same load sent straight to as many directly driven
//! containers as the platform used for it.
//!
//! Completions are counted in 250 ms windows; a row's p50/p90/p99 are over the windows' rates,
//! so a stall shows as a low percentile instead of vanishing into an average. The platform is
//! first driven for a warm-up period at the same concurrency, so the containers it creates
//! under that load are warm before counting starts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::container::{ActionContainer, RuncContainer};
use hearth::model::Runtime;
use tokio::sync::Semaphore;

use crate::direct::{self, Direct};
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::{Samples, Summary};
use crate::{api, Plan, Progress};

const WINDOW: Duration = Duration::from_millis(250);

/// What one load run measured.
#[derive(Debug)]
pub struct Load {
    /// Completions per second in each full window.
    rates: Summary,
    latency: Summary,
    /// Completions per second over the whole run.
    pub overall: f64,
    pub errors: usize,
    first_error: Option<String>,
}

#[derive(Debug, Default)]
struct Tally {
    windows: Vec<u64>,
    latency: Samples,
    done: u64,
    pub errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, t0: Instant, end: Instant, r: anyhow::Result<Duration>) {
        let now = Instant::now();
        if now > end {
            return;
        }
        match r {
            Ok(d) => {
                let w = ((now - t0).as_nanos() / WINDOW.as_nanos()) as usize;
                if self.windows.len() <= w {
                    self.windows.resize(w + 1, 0);
                }
                self.windows[w] += 1;
                self.latency.push(d);
                self.done += 1;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn finish(self, dur: Duration) -> Load {
        let full = (dur.as_nanos() / WINDOW.as_nanos()) as usize;
        let per_sec = 1.0 / WINDOW.as_secs_f64();
        let mut windows = self.windows;
        windows.resize(full.max(windows.len()), 0);
        let rates = windows.iter().take(full).map(|&n| n as f64 * per_sec).collect();
        Load {
            rates: Summary::of(rates),
            latency: self.latency.summary(),
            overall: self.done as f64 / dur.as_secs_f64(),
            errors: self.errors,
            first_error: self.first_error,
        }
    }
}

impl Load {
    /// A row of the completions per second in each window.
    pub fn rate_row(&self, metric: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            unit: Unit::PerSec,
            n: self.rates.n,
            p50: self.rates.p50_us,
            p90: self.rates.p90_us,
            p99: self.rates.p99_us,
            ..Row::value("", Unit::PerSec, f64::NAN)
        }
    }

    /// Each invoke's latency under the load.
    pub fn latency(&self) -> &Summary {
        &self.latency
    }

    /// The first failed invoke's error, if one failed.
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }
}

/// `clients` keep-alive clients invoking `name` back to back for `dur`.
pub async fn platform_load(
    addr: SocketAddr,
    name: &str,
    clients: usize,
    dur: Duration,
) -> anyhow::Result<Load> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(api::connect(addr).await?);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now() + Duration::from_millis(20);
    let end = t0 + dur;
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in conns {
        let (tally, name) = (tally.clone(), name.to_owned());
        tasks.spawn(async move {
            tokio::time::sleep_until(t0.into()).await;
            while Instant::now() < end {
                let r = api::invoke(&mut c, &name).await;
                let failed = r.is_err();
                tally.lock().unwrap_or_else(|e| e.into_inner()).record(t0, end, r);
                if failed {
                    // A refused request (429) would otherwise spin; back off a little.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(tally.finish(dur))
}

/// A pool of directly driven containers shared by `clients` clients.
async fn direct_load(
    pool: &mut Vec<RuncContainer>,
    clients: usize,
    dur: Duration,
) -> anyhow::Result<Load> {
    let permits = Arc::new(Semaphore::new(pool.len()));
    let shared = Arc::new(Mutex::new(std::mem::take(pool)));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now() + Duration::from_millis(20);
    let end = t0 + dur;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (permits, shared, tally) = (permits.clone(), shared.clone(), tally.clone());
        tasks.spawn(async move {
            let spec = direct::run_spec();
            tokio::time::sleep_until(t0.into()).await;
            while Instant::now() < end {
                let Ok(_permit) = permits.acquire().await else { return };
                let Some(mut c) = shared.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    return;
                };
                let r = direct::run_once(&mut c, &spec).await;
                shared.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                tally.lock().unwrap_or_else(|e| e.into_inner()).record(t0, end, r);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    *pool = std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()));
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(tally.finish(dur))
}

pub async fn run(
    direct: &Direct,
    daemon_pid: i32,
    platform: SocketAddr,
    containers_dir: &Path,
    runtime: Runtime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let rt = runtime.as_str();
    let name = format!("bench-tp-{rt}");
    let code = api::noop_code(runtime, &name);
    let mut c = api::connect(platform).await?;
    api::put_action(&mut c, &name, runtime, &code, 256).await?;
    for _ in 0..5 {
        api::invoke(&mut c, &name).await?;
    }
    drop(c);
    let mut pool: Vec<RuncContainer> = Vec::new();
    let result = async {
        let mut rows = Vec::new();
        for &clients in &plan.tp_clients {
            progress.phase(&format!("throughput {rt}: {clients} clients, warming up"));
            platform_load(platform, &name, clients, plan.tp_warmup).await?;
            let used = procfs::platform_containers(containers_dir)
                .iter()
                .filter(|c| c.code.as_deref() == Some(code.as_str()))
                .count();
            if used == 0 {
                bail!("no platform container holds {name} after the warm-up");
            }
            progress.phase(&format!("throughput {rt}: {clients} clients on the platform"));
            let cpu_before = procfs::CpuUse::of(daemon_pid)?;
            let p = platform_load(platform, &name, clients, plan.tp_duration).await?;
            let cpu = procfs::CpuUse::of(daemon_pid)?
                .per_op_since(&cpu_before, p.overall * plan.tp_duration.as_secs_f64());
            while pool.len() < used {
                progress.phase(&format!(
                    "throughput {rt}: starting direct container {}",
                    pool.len() + 1
                ));
                pool.push(direct.start(runtime, 256, &api::noop_code(runtime, "floor")).await?);
            }
            let mut active: Vec<RuncContainer> = pool.drain(..used).collect();
            progress
                .phase(&format!("throughput {rt}: {clients} clients on {used} direct containers"));
            let d = direct_load(&mut active, clients, plan.tp_duration).await;
            pool.append(&mut active);
            let d = d?;
            rows.extend(rows_for(rt, clients, used, cpu, &p, &d));
        }
        anyhow::Ok(rows)
    }
    .await;
    for c in pool {
        c.destroy().await;
    }
    result.context("throughput")
}

/// The rows of one concurrency; `cpu` is hearthd's (user µs, system µs, context switches) per
/// invoke.
fn rows_for(
    rt: &str,
    clients: usize,
    used: usize,
    cpu: (f64, f64, f64),
    p: &Load,
    d: &Load,
) -> Vec<Row> {
    let (user, sys, switches) = cpu;
    let mut note = format!(
        "{used} platform containers; overall {:.0}/s vs direct {:.0}/s; hearthd CPU {:.0} us per invoke ({user:.0} user + {sys:.0} system, {switches:.1} context switches)",
        p.overall,
        d.overall,
        user + sys
    );
    if p.errors > 0 {
        note.push_str(&format!(
            "; {} platform errors, first: {}",
            p.errors,
            p.first_error.as_deref().unwrap_or("")
        ));
    }
    if d.errors > 0 {
        note.push_str(&format!(
            "; {} direct errors, first: {}",
            d.errors,
            d.first_error.as_deref().unwrap_or("")
        ));
    }
    let mut tp = p
        .rate_row(format!("throughput {rt} c={clients} (req/s per 250ms)"))
        .floor(format!("{used} direct containers"), d.rates.p50_us)
        .note(note);
    if clients >= 64 {
        let ratio = tp.ratio;
        tp = tp.target(">= 0.5x direct", ratio >= 0.5);
    }
    let lat = Row::latency(format!("  latency under load {rt} c={clients}"), &p.latency)
        .floor("direct", d.latency.p50_us / 1000.0);
    vec![tp, lat]
}
