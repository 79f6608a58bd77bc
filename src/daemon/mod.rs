//! The daemons' wiring: what `hearthd` runs. Each submodule assembles the library's parts for
//! one process shape — [`standalone`] (controller and invoker in one process), [`controller`]
//! and [`invoker`] (one host, two processes joined by the invoker's Unix socket).
//!
//! Owns: start-up order, the systemd handshake (sockets, READY/STATUS/STOPPING, watchdog), the
//! one shutdown path (SIGTERM, SIGINT or idle exit fire the same [`crate::shutdown`] signal).
//! Must never: hold request-path logic; everything here runs once per process, not per request.

pub mod activity;
pub mod args;
#[cfg(feature = "kafka")]
pub mod cluster;
pub mod config;
pub mod controller;
pub mod invoker;
pub mod standalone;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

pub use args::command;
use args::{Cli, Command};

use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::systemd::{journal, notify::Notifier, InheritedFds};

/// Opens the LMDB store under `dir`, creating the directory: the one store of every daemon
/// shape (the controller's entities and records, the invoker's code source).
fn open_store(dir: &std::path::Path) -> anyhow::Result<crate::store::Store> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    crate::store::Store::open(dir, crate::store::StoreOptions::default())
        .with_context(|| format!("opening the store in {}", dir.display()))
}

/// A short tag for what belongs to `dir` on this host: the standalone runc state under /run
/// and the invoker's cgroup parent are named with it. FNV-1a over the path's bytes, not std's
/// `DefaultHasher`, whose output may change between Rust releases: a rebuilt hearthd must find
/// (and reclaim) what the previous one left under the same names.
fn dir_tag(dir: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let hash = crate::model::fnv1a(dir.as_os_str().as_bytes().iter().copied());
    format!("{:08x}", hash & 0xffff_ffff)
}

/// What systemd handed the process at start; taken before the runtime's threads exist.
#[derive(Debug)]
pub struct SystemdContext {
    pub inherited: InheritedFds,
    pub notifier: Notifier,
}

/// `hearthd`'s main: parse, set up logging, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hearthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(filter) = &cli.log {
        // init_tracing reads HEARTH_LOG; the flag is its spelled-out form. Set before any
        // thread exists.
        std::env::set_var("HEARTH_LOG", filter);
    }
    match cli.command {
        Command::Admin { data_dir, command } => {
            let dir = data_dir.unwrap_or_else(|| config::default_data_dir(false));
            crate::admin::run(command, &dir)
        }
        Command::GenerateAssets { man, completions } => generate_assets(man, completions),
        daemon => {
            // Both take from and clear the environment: only sound while single-threaded.
            let ctx = SystemdContext {
                inherited: InheritedFds::take_from_env(),
                notifier: Notifier::take_from_env(),
            };
            journal::init_tracing("hearth=info").context("setting up logging")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("hearthd")
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                let (trigger, shutdown) = crate::shutdown::channel();
                let trigger = std::sync::Arc::new(trigger);
                spawn_signal_handler(trigger.clone(), ctx.notifier.clone())?;
                match daemon {
                    Command::Standalone(a) => {
                        let s = standalone::StandaloneSettings::resolve(&a)?;
                        standalone::run(s, ctx, shutdown).await
                    }
                    Command::Controller(a) => {
                        let s = controller::ControllerSettings::resolve(&a)?;
                        controller::run(s, ctx, trigger, shutdown).await
                    }
                    Command::Invoker(a) => {
                        let s = invoker::InvokerSettings::resolve(&a)?;
                        invoker::run(s, ctx, shutdown).await
                    }
                    Command::Admin { .. } | Command::GenerateAssets { .. } => Ok(()),
                }
            })?;
            // Blocking threads (LMDB writes) get a moment to finish their transaction.
            rt.shutdown_timeout(Duration::from_secs(5));
            Ok(())
        }
    }
}

fn generate_assets(
    man: Option<std::path::PathBuf>,
    completions: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let commands = [crate::cli::command(), command()];
    if man.is_none() && completions.is_none() {
        anyhow::bail!("generate-assets needs --man DIR and/or --completions DIR");
    }
    if let Some(dir) = man {
        crate::docgen::write_man_pages(&dir, &commands).context("writing man pages")?;
    }
    if let Some(dir) = completions {
        crate::docgen::write_completions(&dir, &commands).context("writing completions")?;
    }
    Ok(())
}

/// The broker list of a `--bus` URL (only `kafka://` exists).
fn cluster_brokers(url: &str) -> anyhow::Result<String> {
    #[cfg(feature = "kafka")]
    {
        Ok(cluster::brokers_of(url)?)
    }
    #[cfg(not(feature = "kafka"))]
    {
        anyhow::bail!(
            "bus {url:?}: this hearthd was built without Kafka support (cargo feature `kafka`)"
        )
    }
}

/// SIGTERM and SIGINT: tell systemd we are stopping, then fire the one shutdown signal.
fn spawn_signal_handler(
    trigger: std::sync::Arc<ShutdownTrigger>,
    notifier: Notifier,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = notifier.stopping("draining");
        trigger.fire();
    });
    Ok(())
}

/// Tells systemd we are ready and keeps STATUS= and the watchdog going until `shutdown`.
fn announce_ready<F>(notifier: &Notifier, shutdown: &Shutdown, figures: F)
where
    F: Fn() -> String + Send + 'static,
{
    let first = figures();
    if let Err(e) = notifier.ready_with_status(&first) {
        tracing::warn!(error = %e, "READY=1 not delivered");
    }
    let _ = crate::systemd::notify::spawn_watchdog(notifier.clone(), shutdown.clone());
    let _ = crate::systemd::notify::StatusReporter::spawn(
        notifier.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
        figures,
    );
}
