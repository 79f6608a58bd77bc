//! Cost that does not grow with the work (issue 16): the warm invoke with 10,000 actions
//! stored, spread over 120 warm containers, and after 100,000 activation records, each beside
//! the same measurement on the same instance with 10 actions, one container and an empty
//! store; and hearthd's memory per stored action and per record.
//!
//! Runs on an instance of its own (own data dir, no stem cells, a budget that holds 120
//! containers), so the baseline really starts from an empty store. Stores grow in order
//! (actions, containers, records) and each row is measured right after its growth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hearth::container::{ActionContainer, RuncContainer};
use hearth::model::Runtime;

use crate::daemon::Daemon;
use crate::direct::{self, Direct};
use crate::http::Client;
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::{Samples, Summary};
use crate::throughput::platform_load;
use crate::workspace::Workspace;
use crate::{api, daemon, Plan, Progress};

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
/// Invokes on the twin's new connection before each paired sample.
const TWIN_WARMUP: usize = 20;
/// The pause before the records row's second sample: long enough for the flusher and the
/// kernel's writeback to finish with the write burst's dirty pages.
const SETTLE: Duration = Duration::from_secs(5);

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

/// hearthd's write-side I/O counters (`/proc/PID/io`, all threads): bytes handed to write
/// system calls (`wchar`: the record writer's `pwrite64` of every page a commit dirtied, plus
/// the responses and the messages to the containers) and the number of those calls.
#[derive(Debug, Clone, Copy, Default)]
struct WriteIo {
    wchar: u64,
    syscw: u64,
}

impl WriteIo {
    fn of(pid: i32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/io");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .with_context(|| format!("{name} in {path}"))
        };
        Ok(Self { wchar: field("wchar:")?, syscw: field("syscw:")? })
    }
}

/// What one warm invoke cost hearthd during a sample: the explanation the latency alone
/// cannot give on a shared machine (CPU and system calls do not depend on the neighbours).
#[derive(Debug, Clone, Copy)]
struct Cost {
    cpu_us: f64,
    switches: f64,
    write_kb: f64,
    write_calls: f64,
}

impl Cost {
    /// What `pid` spent since the readings `before`, per one of `n` invokes.
    fn since(pid: i32, before: (procfs::CpuUse, WriteIo), n: usize) -> anyhow::Result<Self> {
        let (cpu1, io1) = (procfs::CpuUse::of(pid)?, WriteIo::of(pid)?);
        let (cpu0, io0) = before;
        let (user, sys, switches) = cpu1.per_op_since(&cpu0, n as f64);
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n.max(1) as f64;
        Ok(Self {
            cpu_us: user + sys,
            switches,
            write_kb: per(io1.wchar, io0.wchar) / 1024.0,
            write_calls: per(io1.syscw, io0.syscw),
        })
    }

    fn note(&self) -> String {
        format!(
            "hearthd per invoke: CPU {:.0} us, {:.1} context switches, {:.1} write calls, {:.1} KB written",
            self.cpu_us, self.switches, self.write_calls, self.write_kb
        )
    }
}

/// As [`sample`], with hearthd's [`Cost`] per invoke over the sample.
async fn costed_sample(
    c: &mut Client,
    pid: i32,
    names: &[String],
    n: usize,
) -> anyhow::Result<(Summary, Cost)> {
    let (cpu0, io0) = (procfs::CpuUse::of(pid)?, WriteIo::of(pid)?);
    let s = sample(c, names, n).await?;
    Ok((s, Cost::since(pid, (cpu0, io0), n)?))
}

/// A second instance that never grows (10 actions, one warm container, an empty store): each
/// row's floor is sampled on it interleaved with the row, sample by sample in alternating
/// order, so the two sides share the machine's load of the same minutes. A baseline measured
/// once, minutes before the row, moved by tens of percent with the shared machine's load
/// (the records row read 0.64x-1.88x of it across runs).
pub struct Twin {
    pid: i32,
    addr: SocketAddr,
    client: Client,
}

impl Twin {
    pub async fn new(d: &Daemon, platform: SocketAddr, plan: &Plan) -> anyhow::Result<Self> {
        store(platform, 0, BASE_ACTIONS).await?;
        let mut client = api::connect(platform).await?;
        sample(&mut client, &[name(0)], plan.warm_warmup).await?;
        Ok(Self { pid: d.pid, addr: platform, client })
    }
}

/// `n` warm invokes round-robin over `names` on `c`, interleaved with `n` on the twin's one
/// action; the row's summary and [`Cost`], the twin's summary and cost.
async fn paired(
    c: &mut Client,
    pid: i32,
    names: &[String],
    twin: &mut Twin,
    n: usize,
) -> anyhow::Result<(Summary, Cost, Summary, Cost)> {
    let one = name(0);
    // A new connection: the server closes keep-alive connections left idle as long as the
    // growth phases take.
    twin.client = api::connect(twin.addr).await?;
    sample(&mut twin.client, std::slice::from_ref(&one), TWIN_WARMUP).await?;
    let (cpu0, io0) = (procfs::CpuUse::of(pid)?, WriteIo::of(pid)?);
    let (tcpu0, tio0) = (procfs::CpuUse::of(twin.pid)?, WriteIo::of(twin.pid)?);
    let (mut row, mut floor) = (Samples::with_capacity(n), Samples::with_capacity(n));
    for i in 0..n {
        if i % 2 == 0 {
            row.push(api::invoke(c, &names[i % names.len()]).await?);
            floor.push(api::invoke(&mut twin.client, &one).await?);
        } else {
            floor.push(api::invoke(&mut twin.client, &one).await?);
            row.push(api::invoke(c, &names[i % names.len()]).await?);
        }
    }
    let cost = Cost::since(pid, (cpu0, io0), n)?;
    let twin_cost = Cost::since(twin.pid, (tcpu0, tio0), n)?;
    Ok((row.summary(), cost, floor.summary(), twin_cost))
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

/// `--only scale`: these rows alone, on their instance as in the full run (an empty store of
/// its own, no stem cells).
pub async fn only(
    ws: &Arc<Workspace>,
    direct: &Direct,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let cfg = daemon::config_dir(ws, "config-cold", &crate::invoker_toml_cold(32768))?;
    let data = ws.path("data-scale");
    let twin_data = ws.path("data-scale-twin");
    let (t, twin_addr, twin_state) =
        crate::start_standalone_with(ws, "d-twin", &twin_data, &cfg, &[], progress).await?;
    let grown = async {
        let twin = Twin::new(&t, twin_addr, plan).await?;
        let (d, addr, state) =
            crate::start_standalone_with(ws, "d", &data, &cfg, &[], progress).await?;
        let rows = run(direct, &d, addr, twin, plan, progress).await;
        let stop = daemon::stop_row(ws, d, &state, plan).await?;
        let mut rows = rows?;
        rows.push(stop);
        anyhow::Ok(rows)
    }
    .await;
    let stop_twin = daemon::stop_row(ws, t, &twin_state, plan).await?;
    let mut rows = grown?;
    rows.push(stop_twin);
    Ok(rows)
}

pub async fn run(
    direct: &Direct,
    d: &Daemon,
    platform: SocketAddr,
    mut twin: Twin,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut c = api::connect(platform).await?;
    let n = plan.warm_n;
    let one = vec![name(0)];

    progress.phase("scale: baseline (10 actions, 1 container, empty store)");
    store(platform, 0, BASE_ACTIONS).await?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let (base, base_cost) = costed_sample(&mut c, d.pid, &one, n).await?;
    let base_ms = base.p50_us / 1000.0;
    // Each row against its twin's invokes interleaved with it; the note also gives the row
    // against this instance's own baseline above (minutes earlier, as in session 3's runs).
    let row = |metric: String, s: &Summary, twin: &Summary, cost: &Cost, note: &str| {
        let floor = twin.p50_us / 1000.0;
        let r = Row::latency(metric, s).floor("twin: 10 actions, 1 container, empty store", floor);
        let ratio = r.ratio;
        let own = s.p50_us / 1000.0 / base_ms;
        r.target(format!("<= {WITHIN}x floor (issue 16)"), ratio <= WITHIN)
            .note(format!("{note}{own:.2}x this instance's own baseline; {}", cost.note()))
    };
    let twin_row = |s: &Summary, cost: &Cost| {
        Row::latency("  floor: the twin instance, interleaved", s).note(cost.note())
    };
    let mut rows = vec![Row::latency("warm invoke, 10 actions, 1 container, empty store", &base)
        .note(base_cost.note())];

    progress.phase(&format!("scale: storing {ACTIONS} actions"));
    let before = procfs::rss_parts(d.pid)?;
    store(platform, BASE_ACTIONS, ACTIONS).await?;
    let after = procfs::rss_parts(d.pid)?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let (many, cost, t, t_cost) = paired(&mut c, d.pid, &one, &mut twin, n).await?;
    rows.push(row(format!("warm invoke, {ACTIONS} actions stored"), &many, &t, &cost, ""));
    rows.push(twin_row(&t, &t_cost));
    rows.push(rss_row("  hearthd RSS per stored action", &before, &after, ACTIONS - BASE_ACTIONS));

    progress.phase(&format!("scale: warming {CONTAINERS} containers"));
    let mut c = api::connect(platform).await?;
    let spread: Vec<String> = (0..CONTAINERS).map(name).collect();
    sample(&mut c, &spread, CONTAINERS).await?;
    sample(&mut c, &spread, CONTAINERS).await?;
    let (wide, cost, t, t_cost) = paired(&mut c, d.pid, &spread, &mut twin, n).await?;
    rows.push(row(
        format!("warm invoke spread over {CONTAINERS} warm containers"),
        &wide,
        &t,
        &cost,
        "round-robin: each container idle for the other 119 invokes; ",
    ));
    rows.push(twin_row(&t, &t_cost));
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
    let (full, cost, t, t_cost) = paired(&mut c, d.pid, &one, &mut twin, n).await?;
    let note = format!("written by {WRITERS} clients (asked for {records}); ");
    let metric = format!("warm invoke after {written} activation records");
    rows.push(row(metric, &full, &t, &cost, &note));
    rows.push(twin_row(&t, &t_cost));
    rows.push(rss_row("  hearthd RSS per activation record", &before, &after, written));
    // The same again once the machine had time to write the records' pages back, to tell a
    // cost of the store's size (every later sample pays it) from one of the write burst
    // before it (this sample does not).
    tokio::time::sleep(SETTLE).await;
    let mut c = api::connect(platform).await?;
    sample(&mut c, &one, plan.warm_warmup).await?;
    let (settled, cost, t, _) = paired(&mut c, d.pid, &one, &mut twin, n).await?;
    let metric = format!("  the same, {} s later", SETTLE.as_secs());
    let floor = t.p50_us / 1000.0;
    rows.push(Row::latency(metric, &settled).floor("the twin", floor).note(cost.note()));
    Ok(rows)
}
