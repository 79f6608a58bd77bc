//! A tiny socket-activated line-echo server exercising hearth::systemd end to end: the
//! listener from systemd (or `--listen`-style fallback from argv[1]), READY/STATUS/WATCHDOG,
//! STOPPING on SIGTERM, journal fields, the fd store across restarts, and idle exit.
//!
//! The system test (tests/system.rs) runs it under tests/system/units/hearth-echo.{socket,service}
//! inside a booted systemd. Environment: `ECHO_IDLE_EXIT_SECS` (exit after that long without a
//! connection; the socket unit starts it again).
//!
//! The fd store holds a "generation" counter: a socket pair's read end carrying the number,
//! so after `systemctl restart` STATUS shows generation 2 — proof the stored fd came back.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hearth::systemd::{fdstore, journal, listen, notify, InheritedFds};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::Instrument;

fn main() -> anyhow::Result<()> {
    let inherited = InheritedFds::take_from_env();
    let notifier = notify::Notifier::take_from_env();
    let sink = journal::init_tracing("info")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(inherited, notifier, sink))
}

/// Reads the previous generation from the stored fd (its writer is gone, so it reads to EOF).
fn previous_generation(entries: Vec<fdstore::StoredEntry>) -> u64 {
    for e in entries {
        if e.name != "generation" {
            tracing::warn!(entry = %e.name, "unexpected fd-store entry dropped");
            continue;
        }
        let Some(fd) = e.into_complete().and_then(|mut v| v.pop()) else {
            continue;
        };
        let mut s = String::new();
        if std::fs::File::from(fd).read_to_string(&mut s).is_ok() {
            return s.trim().parse().unwrap_or(0);
        }
    }
    0
}

async fn run(
    mut inherited: InheritedFds,
    notifier: notify::Notifier,
    sink: journal::LogSink,
) -> anyhow::Result<()> {
    let fallback: listen::ListenAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7070".into()).parse()?;
    let (listener, origin) = listen::take_or_bind(&mut inherited, "echo", &fallback)?;
    let generation = previous_generation(fdstore::take_stored(&mut inherited)?) + 1;
    inherited.close_untaken();

    // Store the new generation: write it into one end of a pair, keep the other in systemd.
    let (mut w, r) = std::os::unix::net::UnixStream::pair().context("socketpair")?;
    w.write_all(generation.to_string().as_bytes())?;
    drop(w);
    fdstore::remove_fds(&notifier, "generation", 1)?;
    // Unpolled: the writer is gone by design, and a polled fd would be dropped on its hang-up.
    fdstore::store_fds_unpolled(&notifier, "generation", &[r.as_fd()])?;
    drop(r);

    let idle = std::env::var("ECHO_IDLE_EXIT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    let (trigger, mut shutdown) = hearth::shutdown::channel();
    let connections = Arc::new(AtomicU64::new(0));
    let origin_s = format!("{origin:?}").to_lowercase();
    notifier
        .ready_with_status(&format!("echo generation {generation}, {origin_s}, connections 0"))?;
    tracing::info!(?sink, generation, origin = %origin_s, "echo ready");
    let _wd = notify::spawn_watchdog(notifier.clone(), shutdown.clone());
    let c = connections.clone();
    let _st = notify::StatusReporter::spawn(
        notifier.clone(),
        Duration::from_millis(200),
        shutdown.clone(),
        move || {
            format!(
                "echo generation {generation}, {origin_s}, {}",
                notify::format_figures(&[("connections", c.load(Ordering::Relaxed))])
            )
        },
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let idle_sleep = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => {
                notifier.stopping("SIGTERM, stopping")?;
                break;
            }
            _ = shutdown.wait() => break,
            _ = idle_sleep => {
                tracing::info!("idle, exiting; the socket unit starts us again");
                notifier.stopping("idle exit")?;
                break;
            }
            conn = listener.accept() => {
                let conn = conn?;
                let n = connections.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::spawn(serve(conn, n));
            }
        }
    }
    trigger.fire();
    Ok(())
}

async fn serve(conn: listen::Connection, n: u64) {
    let activation_id = format!("echo{n:04}");
    let span = tracing::info_span!("echo", activation_id = %activation_id, namespace = "guest", action = "guest/echo", container = "echo-c1");
    async {
        let (r, mut w) = tokio::io::split(conn);
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(bytes = line.len(), "echoing a line");
            journal::forward_action_log(
                &activation_id,
                "guest",
                "guest/echo",
                "echo-c1",
                journal::Stream::Stdout,
                &line,
            );
            if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                break;
            }
        }
    }
    .instrument(span)
    .await;
}
