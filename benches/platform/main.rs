//! `cargo bench --bench platform [-- --quick] [--json PATH]`: hearth against its physical
//! floor, every number beside a floor measured in the same run (issue 7).
//!
//! Starts everything it measures: `hearthd standalone` (three times: with the default pool for
//! warm invokes, throughput and the first invoke after a burst; with a large memory budget for
//! prewarmed starts (256 MB, and 128/512 MB on the resized stem cell) and per-container
//! memory, so that no eviction lands inside a sample; without stem cells for cold starts; on
//! an empty store of its own for the costs that must not grow with stored actions, warm
//! containers and records; then instances of their own for image actions, native actions
//! and tenant fairness),
//! then `hearthd invoker` with a socket-activated `hearthd controller`. Floors come from containers the harness drives
//! itself through the library's runc driver, a bare `runc run`, the host's interpreters and a
//! trivial hyper server. Needs root and runc, like the invoker.
//!
//! Everything it creates is private (temp dir, /run dir, port, runc roots, cgroup parent) and
//! is removed by pid and path at the end, also after an error or Ctrl-C (see [`workspace`]).

mod activation;
mod api;
mod binding;
#[cfg(feature = "kafka")]
#[path = "../../tests/broker/mod.rs"]
mod broker;
mod burst;
mod concurrency;
mod daemon;
mod direct;
mod fairness;
mod http;
mod image;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;
mod native;
mod procfs;
mod progress;
#[cfg(feature = "kafka")]
mod records;
mod report;
mod scale;
mod selftest;
mod sequence;
mod starts;
mod stats;
mod throughput;
mod warm;
mod web;
mod workspace;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::model::Runtime;

use daemon::{Daemon, HEARTHD};
use progress::Progress;
use report::{Machine, Report, Row};
use workspace::Workspace;

/// How many samples each part takes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub warm_warmup: usize,
    pub warm_n: usize,
    pub tp_clients: Vec<usize>,
    pub tp_warmup: Duration,
    pub tp_duration: Duration,
    pub starts_n: usize,
    /// How long each burst before a first invoke of a new action lasts.
    pub burst: Duration,
    /// Activation records written before the "after many records" row.
    pub records_n: usize,
    pub activation_n: usize,
    pub running_n: usize,
    /// Warm invokes over Kafka (each paired with a broker round trip).
    pub kafka_n: usize,
    /// How long a daemon gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                warm_warmup: 20,
                warm_n: 200,
                tp_clients: vec![1, 8, 64],
                tp_warmup: Duration::from_millis(500),
                tp_duration: Duration::from_secs(1),
                starts_n: 3,
                burst: Duration::from_millis(500),
                records_n: 20_000,
                activation_n: 3,
                running_n: 10,
                kafka_n: 50,
                stop_grace: Duration::from_secs(5),
            }
        } else {
            Self {
                quick,
                warm_warmup: 100,
                warm_n: 2000,
                tp_clients: vec![1, 8, 64],
                tp_warmup: Duration::from_secs(2),
                tp_duration: Duration::from_secs(5),
                starts_n: 15,
                burst: Duration::from_secs(1),
                records_n: 100_000,
                activation_n: 10,
                running_n: 50,
                kafka_n: 300,
                stop_grace: Duration::from_secs(15),
            }
        }
    }
}

/// The pool every standalone instance gets, with its memory budget: the default prewarm plan
/// (one 256 MB stem cell per runtime) written out, so the run does not depend on defaults
/// changing under it.
fn invoker_toml(budget_mb: u64) -> String {
    format!(
        "memory_budget_mb = {budget_mb}\nqueue_limit = 1024\n\n\
         [[prewarm]]\nkind = \"python:3\"\nmemory_mb = 256\ncount = 1\n\n\
         [[prewarm]]\nkind = \"nodejs:20\"\nmemory_mb = 256\ncount = 1\n"
    )
}

/// A pool without stem cells, for true cold starts (a stem cell now fits any memory limit).
fn invoker_toml_cold(budget_mb: u64) -> String {
    format!("memory_budget_mb = {budget_mb}\nqueue_limit = 1024\nprewarm = []\n")
}

/// The groups `--only` runs alone: the sequence row on instance A, or the cluster's records
/// row with its own broker and daemons (issue 19).
const ONLY_SEQUENCE: &str = "sequence";
const ONLY_RECORDS: &str = "records";
/// Image actions (issue 20): their cold, prewarmed and warm rows beside their floors.
const ONLY_IMAGE: &str = "image";
/// Native actions (issue 15): cold, prewarmed and warm beside their floors.
const ONLY_NATIVE: &str = "native";
/// Tenant fairness (issue 17): B's warm invoke while A floods, beside B alone.
const ONLY_FAIRNESS: &str = "fairness";
/// Concurrent Node (issue 15): 200 clients on one action of concurrency 200, on instance A.
const ONLY_CONCURRENCY: &str = "concurrency";
/// The warm path (warm, throughput, prewarmed and cold starts) and the costs that must not
/// grow (issue 16), each on its instances as in the full run.
const ONLY_WARM: &str = "warm";
const ONLY_SCALE: &str = "scale";
/// Every group `--only` takes; a new group adds its name here and its branch in [`run`].
const ONLY_GROUPS: &[&str] = &[
    ONLY_SEQUENCE,
    ONLY_RECORDS,
    ONLY_IMAGE,
    ONLY_NATIVE,
    ONLY_FAIRNESS,
    ONLY_CONCURRENCY,
    ONLY_WARM,
    ONLY_SCALE,
];

#[derive(Debug)]
struct Args {
    quick: bool,
    /// `--only GROUP`: one group of rows alone (one of [`ONLY_GROUPS`]), for a look at one
    /// row without the whole run on a shared machine.
    only: Option<String>,
    /// Set by `cargo bench`; without it the binary runs as a test (see [`selftest`]).
    bench: bool,
    json: PathBuf,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut quick = false;
    let mut only = None;
    let mut bench = false;
    let mut json = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/latest.json"));
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = it.next().ok_or("--json needs a path")?.into(),
            "--only" => match it.next() {
                Some(g) if ONLY_GROUPS.contains(&g.as_str()) => only = Some(g),
                other => return Err(format!("--only takes one of {ONLY_GROUPS:?}, not {other:?}")),
            },
            "--bench" => bench = true,
            "-h" | "--help" => {
                return Err(format!(
                    "usage: cargo bench --bench platform -- [--quick] [--only {}] [--json PATH]",
                    ONLY_GROUPS.join("|")
                ))
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args { quick, only, bench, json })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !args.bench {
        return match selftest::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("platform bench self-test failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hearth bench: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; cleaning up")),
        }
    });
    // Dropping the runtime drops every task and with them the last handle on the workspace,
    // whose Drop kills what is left and removes what was made.
    drop(rt);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nhearth bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark runs runc containers and needs root");
    }
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let plan = Plan::new(args.quick);
    let machine = Machine::probe();
    let progress = Progress::new();
    progress.phase(&format!(
        "hearth bench ({}) with {HEARTHD}; load {}",
        if plan.quick { "quick" } else { "full" },
        machine.load_before
    ));
    let ws = Arc::new(Workspace::new()?);
    #[cfg(feature = "kafka")]
    if args.only.as_deref() == Some(ONLY_RECORDS) {
        let rows = records::run(&ws, &plan, &progress).await?;
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    if args.only.as_deref() == Some(ONLY_IMAGE) {
        let rows = image::run(&ws, &ws.path("data-image"), &plan, &progress).await?;
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    if args.only.as_deref() == Some(ONLY_FAIRNESS) {
        let rows = fairness::run(&ws, &ws.path("data-fairness"), &plan, &progress).await?;
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    let direct = direct::Direct::new(&ws)?;
    let trivial = http::trivial_server().await?;
    if args.only.as_deref() == Some(ONLY_NATIVE) {
        let rows =
            native::run(&ws, &ws.path("data-native"), &direct, trivial, &plan, &progress).await?;
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    let data_dir = ws.path("data");
    let mut rows: Vec<Row> = Vec::new();
    match args.only.as_deref() {
        Some(ONLY_WARM) => rows = warm::only(&ws, &direct, trivial, &plan, &progress).await?,
        Some(ONLY_SCALE) => rows = scale::only(&ws, &direct, &plan, &progress).await?,
        _ => {}
    }
    if matches!(args.only.as_deref(), Some(ONLY_WARM | ONLY_SCALE)) {
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }

    // Instance A: the default pool (2 GB budget) for warm invokes and throughput.
    let cfg_a = daemon::config_dir(&ws, "config-default", &invoker_toml(2048))?;
    let (a, addr_a, state_a) = start_standalone(&ws, "a", &data_dir, &cfg_a, &progress).await?;
    if args.only.as_deref() == Some(ONLY_SEQUENCE) {
        progress.phase("warm invoke of a 3-action sequence");
        let only = sequence::run(addr_a, &plan, &progress).await;
        let stop_a = daemon::stop_row(&ws, a, &state_a, &plan).await?;
        rows.extend(only?);
        rows.push(stop_a);
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    if args.only.as_deref() == Some(ONLY_CONCURRENCY) {
        let only =
            concurrency::run(&data_dir, &state_a.join("containers"), addr_a, &plan, &progress)
                .await;
        let stop_a = daemon::stop_row(&ws, a, &state_a, &plan).await?;
        rows.extend(only?);
        rows.push(stop_a);
        return print_report(args, &plan, machine, (started, started_unix), rows, &progress);
    }
    let phase_a = async {
        let idle_rss = procfs::rss_mb(a.pid)?;
        let mut rows = Vec::new();
        let mut warm_p50 = Vec::new();
        for runtime in [Runtime::Python, Runtime::Nodejs] {
            progress.phase(&format!("warm invoke {}", runtime.as_str()));
            let (r, p50) = warm::run(&direct, addr_a, trivial, runtime, &plan, &progress).await?;
            rows.extend(r);
            warm_p50.push(p50);
        }
        progress.phase("warm invoke through a binding");
        rows.extend(binding::run(addr_a, &plan, &progress).await?);
        progress.phase("warm invoke of a 3-action sequence");
        rows.extend(sequence::run(addr_a, &plan, &progress).await?);
        progress.phase("warm web action invoke");
        rows.extend(web::run(addr_a, &plan, &progress).await?);
        rows.extend(
            throughput::run(
                &direct,
                a.pid,
                addr_a,
                &state_a.join("containers"),
                Runtime::Python,
                &plan,
                &progress,
            )
            .await?,
        );
        rows.extend(
            concurrency::run(&data_dir, &state_a.join("containers"), addr_a, &plan, &progress)
                .await?,
        );
        progress.phase("first invoke after a burst");
        let after_burst = burst::run(&a, addr_a, Runtime::Python, &plan, &progress).await?;
        anyhow::Ok((rows, warm_p50, idle_rss, after_burst))
    }
    .await;
    let stop_a = daemon::stop_row(&ws, a, &state_a, &plan).await?;
    let (r, warm_p50, idle_rss_a, after_burst) = phase_a?;
    rows.extend(r);
    rows.push(stop_a);

    // Instance B: a budget no sample can exhaust, for prewarmed and cold starts; the warm
    // containers they leave behind are then measured.
    let cfg_b = daemon::config_dir(&ws, "config-large", &invoker_toml(32768))?;
    let (b, addr_b, state_b) = start_standalone(&ws, "b", &data_dir, &cfg_b, &progress).await?;
    let phase_b = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = procfs::rss_parts(b.pid)?;
        let mut rows = Vec::new();
        let mut prewarmed_p50 = Vec::new();
        for (runtime, warm) in [Runtime::Python, Runtime::Nodejs].into_iter().zip(&warm_p50) {
            progress.phase(&format!("prewarmed start {}", runtime.as_str()));
            let baseline = starts::Baseline::Warm { warm_p50_ms: *warm };
            let (r, p50) = starts::prewarmed(
                &b,
                &direct,
                addr_b,
                runtime,
                starts::STEM_CELL_MB,
                baseline,
                &plan,
                &progress,
            )
            .await?;
            rows.extend(r);
            prewarmed_p50.push(p50);
        }
        // Other sizes take the same 256 MB stem cell, resized (issue 16).
        let python_p50 = prewarmed_p50.first().copied().unwrap_or(f64::NAN);
        rows.extend(after_burst.rows(Runtime::Python.as_str(), python_p50));
        for memory_mb in [128, 512] {
            progress.phase(&format!("prewarmed start python {memory_mb} MB"));
            let baseline = starts::Baseline::StemCellSize { p50_ms: python_p50 };
            let (r, _) = starts::prewarmed(
                &b,
                &direct,
                addr_b,
                Runtime::Python,
                memory_mb,
                baseline,
                &plan,
                &progress,
            )
            .await?;
            rows.extend(r);
        }
        progress.phase("memory of warm containers");
        tokio::time::sleep(Duration::from_secs(1)).await;
        rows.extend(memory::rows(&b, &state_b, idle_rss, idle_rss_a)?);
        anyhow::Ok(rows)
    }
    .await;
    let stop_b = daemon::stop_row(&ws, b, &state_b, &plan).await?;
    rows.extend(phase_b?);
    rows.push(stop_b);

    // Instance C: no stem cells, for true cold starts.
    let cfg_c = daemon::config_dir(&ws, "config-cold", &invoker_toml_cold(32768))?;
    let (cold, addr_c, state_c) =
        start_standalone_with(&ws, "c", &data_dir, &cfg_c, &[], &progress).await?;
    let phase_c = async {
        let mut rows = Vec::new();
        for runtime in [Runtime::Python, Runtime::Nodejs] {
            progress.phase(&format!("cold start {}", runtime.as_str()));
            rows.extend(starts::cold(&direct, addr_c, runtime, &plan, &progress).await?);
        }
        anyhow::Ok(rows)
    }
    .await;
    let stop_c = daemon::stop_row(&ws, cold, &state_c, &plan).await?;
    rows.extend(phase_c?);
    rows.push(stop_c);

    // Instance D: its own empty store, for the costs that must not grow with the work.
    rows.extend(scale::only(&ws, &direct, &plan, &progress).await?);

    // Image actions (issue 20), on a data dir of their own with the test image imported.
    rows.extend(image::run(&ws, &ws.path("data-image"), &plan, &progress).await?);

    // Native actions (issue 15), on a data dir of their own.
    rows.extend(
        native::run(&ws, &ws.path("data-native"), &direct, trivial, &plan, &progress).await?,
    );

    // Tenant fairness (issue 17): a second namespace made with `hearthd admin`, on a data dir
    // of its own.
    rows.extend(fairness::run(&ws, &ws.path("data-fairness"), &plan, &progress).await?);

    // The two-process shape: socket activation and the daemons' own memory.
    rows.extend(activation::run(&ws, &data_dir, &cfg_a, &plan, &progress).await?);

    // Several hosts: the same action over the Kafka bus (issue 6).
    #[cfg(feature = "kafka")]
    {
        // Without the broker (it takes minutes to build) the other rows are still reported.
        let tansu = broker::tansu_bin();
        if tansu.exists() {
            rows.extend(kafka::run(&ws, &data_dir, &cfg_a, &plan, &progress).await?);
        } else {
            progress.phase(&format!(
                "no Kafka rows: the broker is missing at {} (scripts/build-broker.sh)",
                tansu.display()
            ));
        }
    }
    #[cfg(not(feature = "kafka"))]
    progress.phase("no Kafka rows: the harness was built without `--features kafka`");

    print_report(args, &plan, machine, (started, started_unix), rows, &progress)
}

/// Prints the table and writes the JSON of `rows`.
fn print_report(
    args: &Args,
    plan: &Plan,
    mut machine: Machine,
    (started, started_unix): (Instant, u64),
    rows: Vec<Row>,
    progress: &Progress,
) -> anyhow::Result<()> {
    progress.done();
    machine.load_after = report::loadavg();
    let report = Report {
        mode: if plan.quick { "quick" } else { "full" },
        started_unix,
        elapsed_s: started.elapsed().as_secs_f64(),
        machine,
        rows,
    };
    let m = &report.machine;
    println!(
        "hearth bench ({} mode, {:.0} s): {} x {}, {} MB, kernel {}, {}; load {} -> {}\n",
        report.mode,
        report.elapsed_s,
        m.nproc,
        m.cpu,
        m.memory_mb,
        m.kernel,
        m.runc,
        m.load_before,
        m.load_after
    );
    print!("{}", report.table());
    report.write_json(&args.json)?;
    println!("\nJSON: {}", args.json.display());
    Ok(())
}

/// Starts `hearthd standalone` on a free port with a private state dir; returns once it is
/// ready and both stem cells are started.
async fn start_standalone(
    ws: &Arc<Workspace>,
    name: &str,
    data_dir: &Path,
    config_dir: &Path,
    progress: &Progress,
) -> anyhow::Result<(Daemon, SocketAddr, PathBuf)> {
    start_standalone_with(ws, name, data_dir, config_dir, &["python", "nodejs"], progress).await
}

/// As [`start_standalone`], waiting for the stem cells of `stem_cells` (runtime names).
async fn start_standalone_with(
    ws: &Arc<Workspace>,
    name: &str,
    data_dir: &Path,
    config_dir: &Path,
    stem_cells: &[&str],
    progress: &Progress,
) -> anyhow::Result<(Daemon, SocketAddr, PathBuf)> {
    progress.phase(&format!("starting hearthd standalone ({name})"));
    let state = ws.run_path(&format!("state-{name}"));
    ws.track_runc_root(&state.join("runc"), "hearth", false);
    let addr = SocketAddr::from(([127, 0, 0, 1], daemon::free_port()?));
    let listen = addr.to_string();
    let args: Vec<&OsStr> = vec![
        "standalone".as_ref(),
        "--listen".as_ref(),
        listen.as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--config-dir".as_ref(),
        config_dir.as_os_str(),
    ];
    let notify = ws.path(&format!("notify-{name}.sock"));
    let mut d = daemon::spawn(
        ws,
        &format!("hearthd standalone ({name})"),
        Path::new(HEARTHD),
        &args,
        Some(&notify),
    )?;
    d.wait_ready(Duration::from_secs(60)).await?;
    for rt in stem_cells {
        d.log
            .wait_for(d.started, Duration::from_secs(60), "initial prewarm", |l| {
                daemon::is_prewarmed(l, rt)
            })
            .await
            .with_context(|| d.context())?;
    }
    Ok((d, addr, state))
}
