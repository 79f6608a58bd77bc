//! `hearthd controller`: the REST API on its own, dispatching to the invoker's Unix socket, or
//! (with `--bus kafka://...`) to the invokers of a cluster over Kafka (`cluster.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use std::time::Duration;

use super::activity::Activity;
use super::args::ControllerArgs;
use super::config::{self, ControllerFile};
use super::SystemdContext;
use crate::bus::unix::UnixBus;
use crate::controller::{Controller, ControllerConfig, RecordWriter};
use crate::dispatch::Dispatcher;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::{Store, UnclaimedRule};
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
    /// Several hosts: the Kafka brokers and this controller's id.
    pub cluster: Option<ClusterSettings>,
}

/// A controller's place in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub brokers: String,
    pub id: String,
    pub offline_after: Option<Duration>,
}

impl ControllerSettings {
    pub fn resolve(args: &ControllerArgs) -> anyhow::Result<Self> {
        let dir =
            args.common.config_dir.clone().unwrap_or_else(|| config::SYSTEM_CONFIG_DIR.into());
        let file: ControllerFile = config::load(Some(&dir), "controller.toml")?;
        let mut config = ControllerConfig::default();
        apply_file(&mut config, &file);
        let cluster = match args.bus.clone().or(file.bus.clone()) {
            Some(url) => Some(ClusterSettings {
                brokers: super::cluster_brokers(&url)?,
                id: args.id.clone().or(file.id.clone()).ok_or_else(|| {
                    anyhow::anyhow!("--bus needs --id (or id = \"...\" in controller.toml): this controller's id in the cluster")
                })?,
                offline_after: file.invoker_offline_after,
            }),
            None => None,
        };
        Ok(Self {
            cluster,
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
    config.namespace_limits = file.limits.over(config.namespace_limits);
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
    let store = super::open_store(&settings.data_dir)?;
    let Bus { dispatcher: bus, on_unclaimed } = match &settings.cluster {
        None => {
            let bus = Arc::new(UnixBus::new(&settings.invoker_socket));
            // The previous run left activations running: the invoker holds what they ended
            // with for this controller's next connection; connect at once to collect it (this
            // starts a socket-activated invoker, which had work anyway). Asked before the
            // controller ends those stubs as placeholders.
            let collect = store.count_pending().unwrap_or(0) > 0;
            let b = bus.clone();
            let on_unclaimed: OnUnclaimed = Box::new(move |writer| {
                b.on_unclaimed(unclaimed_records(writer, UnclaimedRule::Acknowledged));
                if collect {
                    tokio::spawn(async move { b.collect_unclaimed().await });
                }
            });
            Bus { dispatcher: bus, on_unclaimed }
        }
        Some(c) => join_cluster(&store, c, settings.config.retention, &shutdown).await?,
    };
    let catalog = store.clone();
    tokio::task::spawn_blocking(move || crate::catalog::install(&catalog))
        .await
        .context("installing the whisk.system catalog")??;
    let controller = Controller::new(store.clone(), bus, settings.config.clone())
        .context("starting the controller")?;
    on_unclaimed(controller.record_writer());
    let claims = alarm_claims(settings.cluster.as_ref(), &shutdown).await?;
    tokio::spawn(crate::alarms::run(controller.clone(), claims, shutdown.clone()));
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
    match &settings.cluster {
        None => {
            tracing::info!(addr = ?listener.local_addr().ok(), ?origin, invoker = %settings.invoker_socket.display(), "controller ready")
        }
        Some(c) => {
            tracing::info!(addr = ?listener.local_addr().ok(), ?origin, brokers = %c.brokers, id = %c.id, "controller ready (cluster over Kafka)")
        }
    }
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

/// The dispatcher a controller runs with, and how the records nobody waits for reach it.
struct Bus {
    dispatcher: Arc<dyn Dispatcher>,
    on_unclaimed: OnUnclaimed,
}

/// Points a bus's unclaimed records at the controller's record writer, once it exists (the
/// bus holds what arrives before: `bus::UnclaimedSink`).
type OnUnclaimed = Box<dyn FnOnce(Arc<RecordWriter>) + Send>;

/// Who may fire an alarm tick: this controller alone, or the first claimant in the cluster's
/// claims topic (`crate::alarms`).
async fn alarm_claims(
    cluster: Option<&ClusterSettings>,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<dyn crate::alarms::Claims>> {
    match cluster {
        None => Ok(Arc::new(crate::alarms::LocalClaims)),
        Some(c) => cluster_claims(c, shutdown).await,
    }
}

#[cfg(feature = "kafka")]
async fn cluster_claims(
    c: &ClusterSettings,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<dyn crate::alarms::Claims>> {
    let log = crate::bus::kafka::ClaimLog::start(&c.brokers, &c.id, shutdown.clone())
        .await
        .context("starting the alarm claims")?;
    Ok(Arc::new(ClusterClaims(log)))
}

#[cfg(not(feature = "kafka"))]
async fn cluster_claims(
    _c: &ClusterSettings,
    _shutdown: &Shutdown,
) -> anyhow::Result<Arc<dyn crate::alarms::Claims>> {
    anyhow::bail!("this hearthd was built without Kafka support (cargo feature `kafka`)")
}

/// The Kafka claims log as the scheduler's [`crate::alarms::Claims`].
#[cfg(feature = "kafka")]
struct ClusterClaims(Arc<crate::bus::kafka::ClaimLog>);

#[cfg(feature = "kafka")]
impl crate::alarms::Claims for ClusterClaims {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        tick: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send + 'a>>
    {
        Box::pin(async move { self.0.claim(&format!("{key}@{tick}")).await })
    }
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

/// How long a starting controller in a cluster waits to have read the entity topic (and,
/// after it, the records topic).
#[cfg(feature = "kafka")]
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// Joins the cluster: entity feed on (this controller's writes are published, answered after
/// the broker's acknowledgement), other hosts' entities followed into the store, activation
/// records published and materialised both ways (the records topic kept for `retention`),
/// and the Kafka bus as the dispatcher.
#[cfg(feature = "kafka")]
async fn join_cluster(
    store: &Store,
    c: &ClusterSettings,
    retention: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<Bus> {
    use crate::bus::kafka::{KafkaBus, KafkaConfig};
    let log = super::cluster::entity_log(&c.brokers)?;
    if let Err(e) = log.ensure_topic().await {
        tracing::warn!(error = %e, "the entity topic is not created yet; retrying in the background");
    }
    store.enable_entity_feed(&c.id).context("enabling the entity feed")?;
    let group = format!("hearth.entities.controller.{}", c.id);
    let end = log.end_offset(&group).await;
    super::cluster::spawn_follower(log.clone(), group, store.clone(), shutdown.clone());
    let publisher =
        crate::bus::kafka::Publisher::start(Arc::new(store.clone()), log, shutdown.clone());
    store.set_publish_waiter(publisher);
    // Records: fed from before the first record this run writes (the placeholders of its
    // restart included), materialised from the beginning of retention on a fresh data dir.
    let records = super::cluster::record_log(&c.brokers, retention)?;
    if let Err(e) = records.ensure_topic().await {
        tracing::warn!(error = %e, "the records topic is not created yet; retrying in the background");
    }
    store.enable_record_feed().context("enabling the records feed")?;
    let records_group = format!("hearth.records.controller.{}", c.id);
    let records_end = records.end_offset(&records_group).await;
    super::cluster::spawn_records(records, records_group, store.clone(), shutdown.clone());
    let mut config = KafkaConfig::new(c.brokers.clone(), c.id.clone());
    if let Some(d) = c.offline_after {
        config.balancer.offline_after = d;
    }
    let bus = Arc::new(KafkaBus::connect(config).await.context("connecting to the Kafka bus")?);
    // Ready only once caught up: the entities written elsewhere before this start (keys
    // authenticate, actions resolve) and the invokers' recent pings. Bounded: a controller
    // behind a slow broker still starts, and catches up while it serves.
    let t = std::time::Instant::now();
    if let Some(end) = end.filter(|&e| e > 0) {
        match store.wait_for_entity_offset(end, CATCH_UP).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(end, "the entity topic was not read to its end within {CATCH_UP:?}: serving while catching up"),
            Err(e) => tracing::error!(error = %e, "reading the entity offset failed"),
        }
    }
    if let Some(end) = records_end.filter(|&e| e > 0) {
        let left = CATCH_UP.saturating_sub(t.elapsed());
        match store.wait_for_record_offset(end, left).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(end, "the records topic was not read to its end in time: serving while catching up (records of other controllers may read 404 meanwhile)"),
            Err(e) => tracing::error!(error = %e, "reading the records offset failed"),
        }
    }
    bus.health_read().await;
    tracing::info!(took_ms = t.elapsed().as_millis() as u64, "caught up with the cluster");
    // Also written when nothing is held under the id: this controller may have replaced a
    // lost one with an empty data dir, and reads the completion topic of the id it took
    // over; the records there are its own.
    let b = bus.clone();
    let on_unclaimed: OnUnclaimed =
        Box::new(move |writer| b.on_unclaimed(unclaimed_records(writer, UnclaimedRule::Adopted)));
    Ok(Bus { dispatcher: bus, on_unclaimed })
}

#[cfg(not(feature = "kafka"))]
async fn join_cluster(
    _store: &Store,
    _c: &ClusterSettings,
    _retention: Duration,
    _shutdown: &Shutdown,
) -> anyhow::Result<Bus> {
    anyhow::bail!("this hearthd was built without Kafka support (cargo feature `kafka`): --bus cannot be used")
}

/// Where unclaimed records go (activations acknowledged before a restart of this controller,
/// ended afterwards): the record writer, as every record this controller writes, under
/// `rule` (`controller/records.rs`). The bus calls this on its own task; the hand-off waits
/// only when the writer's queue is full.
fn unclaimed_records(writer: Arc<RecordWriter>, rule: UnclaimedRule) -> crate::bus::Unclaimed {
    Arc::new(move |record: crate::model::Activation| {
        let writer = writer.clone();
        tokio::spawn(async move {
            let id = record.activation_id;
            if let Err(e) = writer.submit_unclaimed(record, rule).await {
                tracing::error!(activation = %id, error = %e, "recording an unclaimed record failed");
            }
        });
    })
}
