//! `hearthd standalone`: controller and invoker in one process, joined by a direct call — the
//! newcomer's one-command server and the fastest single-host shape.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::args::StandaloneArgs;
use super::config::{self, ControllerFile, InvokerFile};
use super::SystemdContext;
use crate::container::RuncFactory;
use crate::controller::{Controller, ControllerConfig};
use crate::dispatch::Dispatcher;
use crate::invoker::{InvokerConfig, StartOptions};
use crate::model::{AuthKey, EntityName, GUEST_KEY};
use crate::shutdown::Shutdown;
use crate::systemd::listen::{self, ListenAddr};
use crate::systemd::notify;

/// Everything standalone needs, resolved from flags, files (only with --config-dir) and
/// defaults.
#[derive(Debug, Clone)]
pub struct StandaloneSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub runc: PathBuf,
    pub controller: ControllerConfig,
    pub pool: InvokerConfig,
}

impl StandaloneSettings {
    pub fn resolve(args: &StandaloneArgs) -> anyhow::Result<Self> {
        let dir = args.common.config_dir.as_deref();
        let cfile: ControllerFile = config::load(dir, "controller.toml")?;
        let ifile: InvokerFile = config::load(dir, "invoker.toml")?;
        let mut controller = ControllerConfig::default();
        super::controller::apply_file(&mut controller, &cfile);
        let data_dir = args
            .common
            .data_dir
            .clone()
            .or(cfile.data_dir)
            .unwrap_or_else(|| config::default_data_dir(true));
        Ok(Self {
            listen: args.listen.or(cfile.listen).unwrap_or_else(super::controller::default_listen),
            state_dir: args
                .state_dir
                .clone()
                .or(ifile.state_dir)
                .unwrap_or_else(|| default_state_dir(&data_dir)),
            data_dir,
            runc: ifile.runc.unwrap_or_else(|| PathBuf::from("/usr/sbin/runc")),
            controller,
            pool: ifile.pool,
        })
    }
}

/// Runtime state (bundles, runc's root) belongs on a tmpfs, so a reboot clears it: under /run
/// for root, keyed by the data dir so two standalone servers never share a runc root.
fn default_state_dir(data_dir: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("/run/hearth-standalone-{}", super::dir_tag(data_dir)))
}

/// Runs controller and invoker until `shutdown`.
pub async fn run(
    settings: StandaloneSettings,
    mut ctx: SystemdContext,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = super::open_store(&settings.data_dir)?;
    install_guest_key(&store, settings.listen)?;
    crate::catalog::install(&store)?;
    super::invoker::require_root()?;
    let runc = super::invoker::runc_config(&settings.state_dir, settings.runc.clone());
    let factory = RuncFactory::new(runc).context("setting up runc")?;
    super::invoker::attach_image_store(&factory, &settings.data_dir)?;
    let invoker = super::invoker::start_pool(
        &store,
        settings.pool.clone(),
        factory,
        StartOptions::default(),
        shutdown.clone(),
    )
    .await?;
    let dispatcher: Arc<dyn Dispatcher> = invoker.clone();
    let controller = Controller::new(store.clone(), dispatcher, settings.controller.clone())
        .context("starting the controller")?;
    tokio::spawn(crate::alarms::run(
        controller.clone(),
        Arc::new(crate::alarms::LocalClaims),
        shutdown.clone(),
    ));
    tokio::spawn(crate::controller::run_retention(
        store,
        settings.controller.retention,
        settings.controller.retention_interval,
        shutdown.clone(),
    ));
    let (listener, origin) =
        listen::take_or_bind(&mut ctx.inherited, "http", &ListenAddr::Tcp(settings.listen))
            .context("taking or binding the API socket")?;
    ctx.inherited.close_untaken();
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, ?origin, data_dir = %settings.data_dir.display(), "standalone server ready");
    {
        let inv = invoker.clone();
        controller.metrics().set_pool_provider(move || inv.stats());
    }
    let figures = {
        let inv = invoker.clone();
        let c = controller.clone();
        move || {
            format!(
                "{}, {}",
                inv.stats(),
                notify::format_figures(&[("in flight", c.in_flight() as u64)])
            )
        }
    };
    super::announce_ready(&ctx.notifier, &shutdown, figures);
    let accept = || async { listener.accept().await };
    let served = crate::api::serve_with(accept, controller.clone(), shutdown).await;
    controller.close().await;
    super::invoker::stop_pool(&ctx.notifier, &invoker, &settings.state_dir).await;
    served.context("serving the API")?;
    Ok(())
}

/// OpenWhisk's public guest key is fine on loopback only: anyone can read it in the docs.
fn install_guest_key(store: &crate::store::Store, listen: SocketAddr) -> anyhow::Result<()> {
    let guest = EntityName::parse("guest").context("the guest namespace name")?;
    if listen.ip().is_loopback() {
        let key = AuthKey::parse(GUEST_KEY).context("the guest key")?;
        store.ensure_namespace_with_key(&guest, &key).context("installing the guest key")?;
    } else {
        tracing::warn!(
            %listen,
            "not on loopback: the public guest key is not installed; create a namespace and key with `hearthd admin namespace create NAME`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::daemon::invoker::runc_config;

    /// The names a previous hearthd gave its runc state and cgroups must be the names this one
    /// computes, or a rebuilt daemon would stop finding (and reclaiming) what is left there.
    /// Literal values: if this test fails, the names changed for every existing install.
    #[test]
    fn state_and_cgroup_names_are_stable_across_builds() {
        assert_eq!(
            default_state_dir(Path::new("/var/lib/hearth/standalone")),
            Path::new("/run/hearth-standalone-d7f75fb6")
        );
        assert_eq!(
            default_state_dir(Path::new("/home/ada/.local/share/hearth")),
            Path::new("/run/hearth-standalone-0c98d6db")
        );
        let runc = PathBuf::from("/usr/sbin/runc");
        assert_eq!(
            runc_config(Path::new("/tmp/hearth-state"), runc.clone()).cgroup_parent,
            "hearth/aaab7140"
        );
        assert_eq!(
            runc_config(Path::new(config::INVOKER_STATE_DIR), runc).cgroup_parent,
            "hearth/invoker"
        );
    }
}
