//! `hearthd controller`: the REST API on its own, dispatching to the invoker's Unix socket.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use std::time::Duration;

use super::activity::Activity;
use super::args::ControllerArgs;
use super::config::{self, ControllerFile};
use super::SystemdContext;
use crate::bus::unix::UnixBus;
use crate::controller::{Controller, ControllerConfig};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::{Store, StoreOptions};
use crate::systemd::listen::{self, ListenAddr};
use crate::systemd::notify::{self, Notifier};

/// Everything the controller process needs, resolved from flags, file and defaults.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub listen: std::net::SocketAddr,
    pub data_dir: PathBuf,
    pub invoker_socket: PathBuf,
    pub config: ControllerConfig,
    pub idle_exit: Option<std::time::Duration>,
}

impl ControllerSettings {
    pub fn resolve(args: &ControllerArgs) -> anyhow::Result<Self> {
        let dir =
            args.common.config_dir.clone().unwrap_or_else(|| config::SYSTEM_CONFIG_DIR.into());
        let file: ControllerFile = config::load(Some(&dir), "controller.toml")?;
        let mut config = ControllerConfig::default();
        apply_file(&mut config, &file);
        Ok(Self {
            listen: args.listen.or(file.listen).unwrap_or(default_listen()),
            data_dir: args
                .common
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| config::default_data_dir(false)),
            invoker_socket: args
                .invoker_socket
                .clone()
                .or(file.invoker_socket)
                .unwrap_or_else(|| config::INVOKER_SOCKET.into()),
            config,
            idle_exit: args.idle_exit.or(file.idle_exit).filter(|d| !d.is_zero()),
        })
    }
}

/// Applies the file's controller tuning on top of the defaults.
pub(super) fn apply_file(config: &mut ControllerConfig, file: &ControllerFile) {
    if let Some(w) = file.max_blocking_wait {
        config.max_blocking_wait = w;
    }
    if let Some(m) = file.wait_margin {
        config.wait_margin = m;
    }
    if let Some(r) = file.retention {
        config.retention = r;
    }
    if let Some(i) = file.retention_interval {
        config.retention_interval = i;
    }
}

pub(super) fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 3233))
}

/// Runs the controller until `shutdown` (or its idle exit).
pub async fn run(
    settings: ControllerSettings,
    mut ctx: SystemdContext,
    trigger: Arc<ShutdownTrigger>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = open_store(&settings.data_dir)?;
    let bus = Arc::new(UnixBus::new(&settings.invoker_socket));
    let controller = Controller::new(store.clone(), bus, settings.config.clone())
        .context("starting the controller")?;
    tokio::spawn(crate::controller::run_retention(
        store,
        settings.config.retention,
        settings.config.retention_interval,
        shutdown.clone(),
    ));
    let (listener, origin) =
        listen::take_or_bind(&mut ctx.inherited, "http", &ListenAddr::Tcp(settings.listen))
            .context("taking or binding the API socket")?;
    ctx.inherited.close_untaken();
    tracing::info!(addr = ?listener.local_addr().ok(), ?origin, invoker = %settings.invoker_socket.display(), "controller ready");
    let activity = Activity::new();
    if let Some(idle) = settings.idle_exit {
        tokio::spawn(exit_when_idle(
            idle,
            activity.clone(),
            controller.clone(),
            ctx.notifier.clone(),
            trigger,
            shutdown.clone(),
        ));
    }
    let figures = {
        let c = controller.clone();
        let a = activity.clone();
        move || {
            notify::format_figures(&[
                ("connections", a.open() as u64),
                ("activations in flight", c.in_flight() as u64),
            ])
        }
    };
    super::announce_ready(&ctx.notifier, &shutdown, figures);
    let accept = || async { listener.accept().await.map(|c| activity.track(c)) };
    crate::api::serve_with(accept, controller.clone(), shutdown)
        .await
        .context("serving the API")?;
    controller.close().await;
    Ok(())
}

/// Fires shutdown once no connection has been open and no activation has been in flight for
/// `idle`. Under socket activation systemd keeps the listening socket, queues the next
/// connection and starts the controller again, so the next request is served, not refused.
async fn exit_when_idle(
    idle: Duration,
    activity: Activity,
    controller: Arc<Controller>,
    notifier: Notifier,
    trigger: Arc<ShutdownTrigger>,
    mut shutdown: Shutdown,
) {
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if controller.in_flight() == 0 && activity.idle_for() >= idle {
            tracing::info!(
                idle_secs = idle.as_secs_f64(),
                "idle: exiting until the socket starts us again"
            );
            let _ = notifier.stopping("idle exit");
            trigger.fire();
            return;
        }
    }
}

pub(super) fn open_store(dir: &std::path::Path) -> anyhow::Result<Store> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    Store::open(dir, StoreOptions::default())
        .with_context(|| format!("opening the store in {}", dir.display()))
}
