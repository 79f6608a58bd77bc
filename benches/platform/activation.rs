//! The two-process shape: `hearthd invoker` on its Unix socket, and `hearthd controller`
//! started by `systemd-socket-activate` on the first connection, exiting again after its
//! `--idle-exit`. Measures the first response after activation against the same request to
//! the running controller (each on a fresh connection, so both pay the TCP connect), and the
//! two daemons' resident memory when idle.
//!
//! systemd-socket-activate binds the socket, waits for a connection and then execs the
//! controller in its own process, as systemd does for a socket unit: the time measured runs
//! from the client's connect to the response, and includes exec, start-up and the request.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::daemon::{self, Daemon, HEARTHD};
use crate::procfs;
use crate::report::{Row, Unit};
use crate::stats::Samples;
use crate::workspace::Workspace;
use crate::{api, Plan, Progress};

const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
/// The controller's idle exit here: short, so that iterations are quick.
const IDLE_EXIT: &str = "1s";
/// What the request reads: auth (cold cache after a start) and one action from LMDB.
pub const PROBE_ACTION: &str = "bench-warm-python";

pub async fn run(
    ws: &Arc<Workspace>,
    data_dir: &Path,
    config_dir: &Path,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let state = ws.run_path("state-split");
    ws.track_runc_root(&state.join("runc"), "hearth", false);
    let socket = ws.path("invoker.sock");
    let args: Vec<&OsStr> = vec![
        "invoker".as_ref(),
        "--socket".as_ref(),
        socket.as_os_str(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--config-dir".as_ref(),
        config_dir.as_os_str(),
    ];
    progress.phase("two-process: starting hearthd invoker");
    let notify = ws.path("notify-invoker.sock");
    let mut invoker =
        daemon::spawn(ws, "hearthd invoker", Path::new(HEARTHD), &args, Some(&notify))?;
    let result = async {
        invoker.wait_ready(Duration::from_secs(60)).await?;
        for rt in ["python", "nodejs"] {
            invoker
                .log
                .wait_for(invoker.started, Duration::from_secs(60), "initial prewarm", |l| {
                    daemon::is_prewarmed(l, rt)
                })
                .await
                .with_context(|| invoker.context())?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let invoker_rss = procfs::rss_mb(invoker.pid)?;
        let split = activations(ws, &socket, data_dir, config_dir, plan, progress).await?;
        let mut rows = split;
        rows.push(Row::value(
            "invoker RSS idle (hearthd invoker, 2 stem cells)",
            Unit::Mb,
            invoker_rss,
        ));
        anyhow::Ok(rows)
    }
    .await;
    let stop = daemon::stop_row(ws, invoker, &state, plan).await?;
    let mut rows = result?;
    rows.push(stop);
    Ok(rows)
}

async fn activations(
    ws: &Arc<Workspace>,
    socket: &Path,
    data_dir: &Path,
    config_dir: &Path,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let port = daemon::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listen = format!("127.0.0.1:{port}");
    let (mut first, mut running, mut invoke) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut rss = Vec::new();
    let mut exits = Samples::default();
    for i in 0..plan.activation_n {
        progress.step("controller socket activation", i, plan.activation_n);
        let args: Vec<&OsStr> = vec![
            "-l".as_ref(),
            listen.as_ref(),
            HEARTHD.as_ref(),
            "controller".as_ref(),
            "--invoker-socket".as_ref(),
            socket.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--config-dir".as_ref(),
            config_dir.as_os_str(),
            "--idle-exit".as_ref(),
            IDLE_EXIT.as_ref(),
        ];
        let mut ctl = daemon::spawn(
            ws,
            "socket-activated controller",
            Path::new(SOCKET_ACTIVATE),
            &args,
            None,
        )?;
        let r = one_activation(&mut ctl, addr, plan, &mut first, &mut running, &mut invoke).await;
        let r = match r {
            Ok(mb) => {
                rss.push(mb);
                let quiet = Instant::now();
                match ctl.wait_exit(Duration::from_secs(15)).await {
                    Some(_) => {
                        exits.push(quiet.elapsed());
                        Ok(())
                    }
                    None => Err(anyhow::anyhow!(
                        "the controller did not exit after --idle-exit {IDLE_EXIT}; {}",
                        ctl.context()
                    )),
                }
            }
            Err(e) => Err(e.context(ctl.context())),
        };
        ctl.stop(Duration::from_secs(10)).await?;
        r?;
    }
    rss.sort_by(|a, b| (a.anon_mb + a.file_mb).total_cmp(&(b.anon_mb + b.file_mb)));
    let mid = rss.get(rss.len() / 2).copied();
    let rss_p50 = mid.map(|r| r.anon_mb + r.file_mb).unwrap_or(f64::NAN);
    let (anon, file) = mid.map(|r| (r.anon_mb, r.file_mb)).unwrap_or((f64::NAN, f64::NAN));
    let fs = first.summary();
    let rs = running.summary();
    let act = Row::latency("controller first response after socket activation", &fs)
        .floor("running controller", rs.p50_us / 1000.0);
    let p50 = act.p50;
    let ex = exits.summary();
    Ok(vec![
        act.target("p50 < 50 ms", p50 < 50.0).note(format!(
            "GET of an action on a new connection; the controller exited {:.2} s (p50) after its last request with --idle-exit {IDLE_EXIT}",
            ex.p50_us / 1e6
        )),
        Row::latency("  running controller (new connection each)", &rs),
        Row::latency("warm invoke python, two-process (controller -> invoker socket)", &invoke.summary()),
        Row::value("controller RSS idle (hearthd controller)", Unit::Mb, rss_p50)
            .target("< 40 MB", rss_p50 < 40.0)
            .note(format!(
                "anonymous {anon:.1} MB + file-backed {file:.1} MB (binary, libraries, touched pages of the LMDB map)"
            )),
    ])
}

/// One activation: first response, then requests to the running controller, then its RSS.
async fn one_activation(
    ctl: &mut Daemon,
    addr: SocketAddr,
    plan: &Plan,
    first: &mut Samples,
    running: &mut Samples,
    invoke: &mut Samples,
) -> anyhow::Result<procfs::RssParts> {
    ctl.log
        .wait_for(ctl.started, Duration::from_secs(10), "the listening socket", |l| {
            l.contains("Listening on")
        })
        .await?;
    let t = Instant::now();
    let mut c = api::connect(addr).await?;
    api::get_action(&mut c, PROBE_ACTION).await?;
    first.push(t.elapsed());
    drop(c);
    for _ in 0..plan.running_n {
        let t = Instant::now();
        let mut c = api::connect(addr).await?;
        api::get_action(&mut c, PROBE_ACTION).await?;
        running.push(t.elapsed());
    }
    let mut c = api::connect(addr).await?;
    for _ in 0..3 {
        api::invoke(&mut c, PROBE_ACTION).await?;
    }
    for _ in 0..plan.running_n {
        invoke.push(api::invoke(&mut c, PROBE_ACTION).await?);
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    procfs::rss_parts(ctl.pid)
}
