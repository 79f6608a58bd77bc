//! `hearthd invoker`: the container pool on its own, serving the controller over the
//! invoker's Unix socket (socket-activated under systemd).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::args::InvokerArgs;
use super::config::{self, InvokerFile};
use super::SystemdContext;
use crate::bus::Dispatcher;
use crate::container::{RuncConfig, RuncFactory};
use crate::invoker::{CodeInstaller, Invoker, InvokerConfig};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::systemd::listen::{self, ListenAddr, Listener};
use crate::systemd::notify;

/// Everything the invoker process needs, resolved from flags, file and defaults.
#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// The store the code is read from (the controller's, on one host).
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub runc: PathBuf,
    pub pool: InvokerConfig,
}

impl InvokerSettings {
    pub fn resolve(args: &InvokerArgs) -> anyhow::Result<Self> {
        let dir =
            args.common.config_dir.clone().unwrap_or_else(|| config::SYSTEM_CONFIG_DIR.into());
        let file: InvokerFile = config::load(Some(&dir), "invoker.toml")?;
        Ok(Self {
            data_dir: args
                .common
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(config::SYSTEM_DATA_DIR)),
            socket: args
                .socket
                .clone()
                .or(file.socket)
                .unwrap_or_else(|| config::INVOKER_SOCKET.into()),
            state_dir: args
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| config::INVOKER_STATE_DIR.into()),
            runc: file.runc.unwrap_or_else(|| PathBuf::from("/usr/sbin/runc")),
            pool: file.pool,
        })
    }
}

/// The runc driver's settings under a state directory: runc's root and the bundles side by
/// side, so one directory holds everything a crash could leave behind. The cgroup parent is
/// per state directory too: reclaiming leftovers kills what is in that parent, so two
/// invokers (a packaged one and a standalone one, or parallel tests) must never share one, nor
/// nest one inside another.
pub(super) fn runc_config(state_dir: &std::path::Path, runc: PathBuf) -> RuncConfig {
    let cgroup_parent = if state_dir == std::path::Path::new(config::INVOKER_STATE_DIR) {
        "hearth/invoker".to_owned()
    } else {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        state_dir.hash(&mut h);
        format!("hearth/{:08x}", h.finish() & 0xffff_ffff)
    };
    RuncConfig {
        runc,
        root: state_dir.join("runc"),
        state_dir: state_dir.join("containers"),
        cgroup_parent,
        ..RuncConfig::default()
    }
}

/// The production code installer: the launchers' file layout from [`crate::runtime::code`].
pub(super) fn code_installer() -> CodeInstaller {
    Arc::new(|dir, runtime, code, binary| {
        crate::runtime::code::install(dir, runtime, code, binary)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    })
}

/// Starts the pool over `store` (the code source) with the runc driver.
pub(super) async fn start_pool(
    store: Store,
    state_dir: &std::path::Path,
    runc: PathBuf,
    pool: InvokerConfig,
    shutdown: Shutdown,
) -> anyhow::Result<Arc<Invoker<RuncFactory>>> {
    if !nix_is_root() {
        anyhow::bail!(
            "the invoker runs action containers with runc and needs root (run it with sudo)"
        );
    }
    let factory = RuncFactory::new(runc_config(state_dir, runc)).context("setting up runc")?;
    Invoker::start(pool, factory, Arc::new(store), code_installer(), shutdown)
        .await
        .context("starting the container pool")
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the invoker until `shutdown`.
pub async fn run(
    settings: InvokerSettings,
    mut ctx: SystemdContext,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = super::controller::open_store(&settings.data_dir)?;
    let invoker = start_pool(
        store,
        &settings.state_dir,
        settings.runc.clone(),
        settings.pool.clone(),
        shutdown.clone(),
    )
    .await?;
    let (listener, origin) = listen::take_or_bind(
        &mut ctx.inherited,
        "invoker",
        &ListenAddr::Unix(settings.socket.clone()),
    )
    .context("taking or binding the invoker socket")?;
    ctx.inherited.close_untaken();
    let Listener::Unix(listener) = listener else {
        anyhow::bail!("the invoker's socket must be a Unix socket, not TCP");
    };
    tracing::info!(socket = %settings.socket.display(), ?origin, "invoker ready");
    let figures = {
        let inv = invoker.clone();
        move || inv.stats().to_string()
    };
    super::announce_ready(&ctx.notifier, &shutdown, figures);
    let dispatcher: Arc<dyn Dispatcher> = invoker.clone();
    crate::bus::unix::serve(listener, dispatcher, shutdown).await;
    let _ = notify::Notifier::stopping(&ctx.notifier, "destroying containers");
    invoker.shutdown().await;
    Ok(())
}
