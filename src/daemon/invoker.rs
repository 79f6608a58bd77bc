//! `hearthd invoker`: the container pool on its own, serving the controller over the
//! invoker's Unix socket (socket-activated under systemd).
//!
//! Under systemd it also wires the pool to the host: with a system bus each container is its
//! own scope in hearth.slice (runc's systemd cgroup driver) and a registered machine, and
//! `machinectl terminate` is heard; warm containers' pipes go to the fd store and come back
//! after a restart (live restore); the actions' output goes to the journal.
//!
//! With `--bus kafka://...` it serves its activation topic instead of the socket, from its own
//! data directory filled by the entity topic (`cluster.rs`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::args::InvokerArgs;
use super::config::{self, InvokerFile};
use super::SystemdContext;
use crate::container::{ContainerSpec, RuncConfig, RuncContainer, RuncFactory};
use crate::dispatch::Dispatcher;
use crate::invoker::logsink::{self, ActionLogBatch, LogForwarder};
use crate::invoker::restore::{FdKeeper, LiveRestore};
use crate::invoker::{CodeInstaller, Invoker, InvokerConfig, Restored, StartOptions, StopPolicy};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::systemd::listen::{self, ListenAddr, Listener};
use crate::systemd::machined::{self, MachineRemovedStream, Machined, ScopeStopStream};
use crate::systemd::{fdstore, journal, notify, unit_job};

/// Everything the invoker process needs, resolved from flags, file and defaults.
#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// The store the code is read from (the controller's, on one host).
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub runc: PathBuf,
    pub pool: InvokerConfig,
    /// Several hosts: the Kafka brokers and this invoker's number.
    pub cluster: Option<(String, u32)>,
}

impl InvokerSettings {
    pub fn resolve(args: &InvokerArgs) -> anyhow::Result<Self> {
        let dir =
            args.common.config_dir.clone().unwrap_or_else(|| config::SYSTEM_CONFIG_DIR.into());
        let file: InvokerFile = config::load(Some(&dir), "invoker.toml")?;
        let cluster = match args.bus.clone().or(file.bus.clone()) {
            Some(url) => Some((super::cluster_brokers(&url)?, args.id.or(file.id).unwrap_or(0))),
            None => None,
        };
        Ok(Self {
            cluster,
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
        format!("hearth/{}", super::dir_tag(state_dir))
    };
    RuncConfig {
        runc,
        root: state_dir.join("runc"),
        state_dir: state_dir.join("containers"),
        cgroup_parent,
        ..RuncConfig::default()
    }
}

/// The production code installer: the launchers' file layout from [`crate::launcher::code`].
pub(super) fn code_installer() -> CodeInstaller {
    Arc::new(|dir, runtime, code, binary| {
        crate::launcher::code::install(dir, runtime, code, binary)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    })
}

/// Refuses to go on without root: runc, cgroups and the state under /run need it.
pub(super) fn require_root() -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!(
            "the invoker runs action containers with runc and needs root (run it with sudo)"
        );
    }
    Ok(())
}

/// Starts the pool over `store` (the code source) with the runc driver `factory`: the one
/// start of every shape that runs containers (standalone plain, `hearthd invoker` with what
/// systemd adds in `options`). Call [`require_root`] before making the factory.
pub(super) async fn start_pool(
    store: &Store,
    config: InvokerConfig,
    factory: RuncFactory,
    options: StartOptions<RuncContainer>,
    shutdown: Shutdown,
) -> anyhow::Result<Arc<Invoker<RuncFactory>>> {
    Invoker::start_with(
        config,
        factory,
        Arc::new(store.clone()),
        code_installer(),
        shutdown,
        options,
    )
    .await
    .context("starting the container pool")
}

/// The one stop of the pool, after serving ended: tells systemd, stops the containers (or
/// hands them to the fd store) and removes the state dir's cgroup parent when it is empty,
/// and the state the pool made under the state dir (then the dir itself, when that leaves it
/// empty) unless containers were handed on.
pub(super) async fn stop_pool(
    notifier: &notify::Notifier,
    invoker: &Invoker<RuncFactory>,
    state_dir: &Path,
) {
    let _ = notifier.stopping("stopping the container pool");
    invoker.shutdown().await;
    release_cgroup_parent(state_dir);
    if runc_config(state_dir, PathBuf::new()).release_dirs() {
        // Only when empty: /run/hearth also holds the invoker's socket under systemd.
        let _ = std::fs::remove_dir(state_dir);
    }
}

/// After a final stop: removes this state dir's cgroup parent if nothing is left in it (with
/// live restore, detached containers keep it busy and the removal is a no-op), so a stopped
/// invoker leaves no empty cgroup behind.
fn release_cgroup_parent(state_dir: &std::path::Path) {
    crate::container::cgroup::remove_empty_parents(&cgroup_parent_for(state_dir));
}

/// The cgroup parent (cgroupfs driver) of the containers of the invoker using `state_dir`.
pub fn cgroup_parent_for(state_dir: &std::path::Path) -> String {
    runc_config(state_dir, PathBuf::new()).cgroup_parent
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The fd store as live restore's keeper: one entry per container, named after it.
struct FdStoreKeeper(notify::Notifier);

impl FdKeeper for FdStoreKeeper {
    fn keep(&self, container: &str, fds: &[OwnedFd]) -> Result<(), String> {
        fdstore::store_fds(&self.0, container, fds).map_err(|e| e.to_string())
    }

    fn forget(&self, container: &str, count: usize) {
        if let Err(e) = fdstore::remove_fds(&self.0, container, count) {
            tracing::warn!(container, error = %e, "cannot remove pipes from the fd store");
        }
    }
}

/// Whether systemd is the service manager of this system (sd_booted(3)'s test): only then
/// does the systemd cgroup driver have someone to talk to.
fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Writes one activation's output lines to the journal with the activation's fields.
fn journal_writer(batch: &ActionLogBatch) {
    for line in &batch.lines {
        let (stream, text) = match logsink::split_line(line) {
            Some((true, text)) => (journal::Stream::Stderr, text),
            Some((false, text)) => (journal::Stream::Stdout, text),
            None => (journal::Stream::Stdout, line.as_str()),
        };
        journal::forward_action_log(
            &batch.activation_id,
            &batch.namespace,
            &batch.action,
            &batch.container,
            stream,
            text,
        );
    }
}

/// Takes back the containers an earlier invoker left in the fd store. Each must still run
/// under runc with its bundle; the rest are forgotten and reclaimed as leftovers.
async fn restore_containers(
    factory: &RuncFactory,
    live: &LiveRestore,
    stored: Vec<fdstore::StoredEntry>,
    network: bool,
) -> Vec<Restored<RuncContainer>> {
    let entries = stored.into_iter().map(|e| (e.name.clone(), e.into_complete())).collect();
    let mut restored = Vec::new();
    for (record, fds) in live.pair(entries) {
        let Some(key) = record.key() else { continue };
        let spec = ContainerSpec {
            id: record.container.clone(),
            runtime: record.runtime,
            memory_mb: record.memory_mb,
            network,
        };
        match factory.adopt(&spec, fds).await {
            Ok(container) => restored.push(Restored {
                container,
                runtime: record.runtime,
                memory_mb: record.memory_mb,
                key,
            }),
            Err(e) => {
                tracing::warn!(container = %record.container, error = %e, "stored container cannot be restored");
                live.forget(&record.container);
            }
        }
    }
    restored
}

/// The runc driver for this host: with systemd and a system bus, scopes in hearth.slice and
/// machined registration, plus the MachineRemoved stream (subscribed before the first
/// container is registered, so no removal is missed); otherwise cgroupfs, unregistered.
async fn container_driver(
    settings: &InvokerSettings,
) -> anyhow::Result<(RuncFactory, Option<(MachineRemovedStream, ScopeStopStream)>)> {
    let machined = if systemd_booted() { Machined::connect().await } else { None };
    let removed = match &machined {
        Some(m) => match (m.removed().await, m.scope_stops().await) {
            (Ok(removed), Ok(stops)) => Some((removed, stops)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot subscribe to machine and scope signals; terminations go unnoticed until a run fails");
                None
            }
        },
        None => None,
    };
    let mut runc = runc_config(&settings.state_dir, settings.runc.clone());
    if machined.is_some() {
        runc.systemd_cgroup = true;
        runc.cgroup_parent = machined::ACTION_SLICE.to_owned();
    }
    tracing::info!(
        systemd_cgroup = runc.systemd_cgroup,
        machined = machined.is_some(),
        "container driver"
    );
    let factory = RuncFactory::with_machined(runc, machined).context("setting up runc")?;
    attach_image_store(&factory, &settings.data_dir)?;
    Ok((factory, removed))
}

/// Points the container driver at this host's image store (`<data-dir>/images`), where image
/// actions and image stem cells find their roots. Before the pool starts: its prewarm plan
/// resolves image names at start.
pub(super) fn attach_image_store(
    factory: &RuncFactory,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let dir = crate::image::host_dir(data_dir);
    let store = crate::image::ImageStore::open(&dir)
        .with_context(|| format!("opening the image store {}", dir.display()))?;
    factory.set_image_source(Arc::new(store));
    Ok(())
}

/// What running under systemd adds to the pool: live restore through the fd store (with
/// the containers an earlier invoker left), the restart-or-stop policy, and the journal as
/// the actions' log sink. Each only when its systemd counterpart is there.
async fn systemd_options(
    ctx: &mut SystemdContext,
    factory: &RuncFactory,
    settings: &InvokerSettings,
) -> anyhow::Result<StartOptions<RuncContainer>> {
    let stored = fdstore::take_stored(&mut ctx.inherited).context("taking the fd store")?;
    let mut options = StartOptions::default();
    if ctx.notifier.is_enabled() {
        let keeper: Arc<dyn FdKeeper> = Arc::new(FdStoreKeeper(ctx.notifier.clone()));
        let live = Arc::new(
            LiveRestore::new(&settings.state_dir.join("restore"), keeper)
                .context("setting up live restore")?,
        );
        options.restored = restore_containers(factory, &live, stored, settings.pool.network).await;
        options.live_restore = Some(live);
        let policy: StopPolicy = Arc::new(|| Box::pin(unit_job::restart_pending()));
        options.stop_policy = Some(policy);
    } else if !stored.is_empty() {
        tracing::warn!(entries = stored.len(), "fd store entries without a notify socket; ignored");
    }
    if journal::stderr_is_journal() {
        options.log_forwarder =
            Some(LogForwarder::spawn(Arc::new(journal_writer), logsink::FORWARD_QUEUE));
    }
    Ok(options)
}

/// Carries the stopping of the containers' scopes to the driver (a busy run learns that it was
/// terminated from outside rather than crashed) and machined's removals to the pool (an idle
/// container that is gone, for whatever reason, is dropped).
fn watch_removals(
    (mut removed, mut stops): (MachineRemovedStream, ScopeStopStream),
    invoker: Arc<Invoker<RuncFactory>>,
    factory: RuncFactory,
) {
    tokio::spawn(async move {
        while let Some(id) = stops.next().await {
            let live = factory.note_scope_stopping(&id);
            tracing::debug!(container = %id, live, "the container's scope is stopping");
        }
        tracing::warn!("the scope state stream ended; terminations are reported as crashes");
    });
    tokio::spawn(async move {
        while let Some(name) = removed.next().await {
            let dropped = invoker.container_removed(&name).await;
            tracing::debug!(machine = %name, dropped, "MachineRemoved");
        }
        tracing::warn!(
            "the MachineRemoved stream ended; idle containers that die stay counted until reaped"
        );
    });
}

/// Serves activation topic `id` until `shutdown`, code from `store` kept current by the
/// entity topic.
#[cfg(feature = "kafka")]
async fn serve_cluster(
    store: Store,
    brokers: &str,
    id: u32,
    pool_config: &InvokerConfig,
    pool: Arc<dyn Dispatcher>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    use crate::balancer::InvokerId;
    use crate::bus::kafka::{serve_invoker, KafkaInvokerConfig, RevisionGate, REVISION_WAIT};
    let log = super::cluster::entity_log(brokers)?;
    super::cluster::spawn_follower(
        log,
        format!("hearth.entities.invoker.{id}"),
        store.clone(),
        shutdown.clone(),
    );
    let name = InvokerId(id).to_string();
    let gate: Arc<dyn Dispatcher> =
        Arc::new(RevisionGate::new(Arc::new(store), pool, name, REVISION_WAIT));
    let config = KafkaInvokerConfig::new(brokers, InvokerId(id), pool_config.memory_budget_mb);
    tracing::info!(
        brokers,
        invoker = id,
        capacity_mb = config.capacity_mb,
        "invoker ready (cluster over Kafka)"
    );
    serve_invoker(config, gate, shutdown).await.context("serving activations from Kafka")
}

#[cfg(not(feature = "kafka"))]
async fn serve_cluster(
    _store: Store,
    _brokers: &str,
    _id: u32,
    _pool_config: &InvokerConfig,
    _pool: Arc<dyn Dispatcher>,
    _shutdown: Shutdown,
) -> anyhow::Result<()> {
    anyhow::bail!("this hearthd was built without Kafka support (cargo feature `kafka`)")
}

/// Runs the invoker until `shutdown`.
pub async fn run(
    settings: InvokerSettings,
    mut ctx: SystemdContext,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = super::open_store(&settings.data_dir)?;
    require_root()?;
    let (factory, removed) = container_driver(&settings).await?;
    let options = systemd_options(&mut ctx, &factory, &settings).await?;
    let invoker =
        start_pool(&store, settings.pool.clone(), factory.clone(), options, shutdown.clone())
            .await?;
    if let Some(removed) = removed {
        watch_removals(removed, invoker.clone(), factory);
    }
    let figures = {
        let inv = invoker.clone();
        move || inv.stats().to_string()
    };
    let pool: Arc<dyn Dispatcher> = invoker.clone();
    let served = match &settings.cluster {
        Some((brokers, id)) => {
            ctx.inherited.close_untaken();
            super::announce_ready(&ctx.notifier, &shutdown, figures);
            serve_cluster(store, brokers, *id, &settings.pool, pool, shutdown).await
        }
        None => {
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
            super::announce_ready(&ctx.notifier, &shutdown, figures);
            crate::bus::unix::serve(listener, pool, shutdown).await;
            Ok(())
        }
    };
    stop_pool(&ctx.notifier, &invoker, &settings.state_dir).await;
    served
}
