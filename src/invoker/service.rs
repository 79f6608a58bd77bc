//! The invoker as a service: [`Invoker::start`], [`Invoker::submit`], [`Invoker::stats`],
//! [`Invoker::shutdown`], and the shared core ([`Inner`]) that the activation tasks, the
//! prewarm filler and the idle reaper hold.
//!
//! Owns the lifecycle of the pool as a whole: reclaiming leftovers at start (after taking in
//! containers restored from an earlier invoker), the one lock around [`PoolState`], container
//! ids, and the drain-then-destroy shutdown (or drain-then-detach on a restart, when the stop
//! policy says so and the containers' pipes are stored). It never holds
//! the lock across an await (the guard is confined to [`Inner::with_pool`]'s closure), and it
//! never builds records or talks to a container itself.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::config::{InvokerConfig, PoolConfigError, PrewarmConfig};
use super::events::{Events, EvictedFor, PoolEvent};
use super::logsink::LogForwarder;
use super::pool::{Need, PoolState};
use super::restore::LiveRestore;
use super::state::{Slot, WarmKey};
use super::stats::PoolStats;
use super::{activation, prewarm, reaper, CodeInstaller, CodeSource};
use crate::balancer::{Health, InvokerId};
use crate::container::{ContainerError, ContainerFactory, ContainerSpec};
use crate::dispatch::Timing;
use crate::dispatch::{
    ActivationMessage, Completion, DispatchError, DispatchFuture, Dispatcher, InvokerView,
};
use crate::model::{
    now_millis, Activation, ActivationResponse, ActivationStatus, ImageDigest, Runtime,
};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// Every container id starts with this, so that the runc driver's leftover reclaim can tell
/// hearth's containers from anyone else's.
pub const CONTAINER_ID_PREFIX: &str = "hearth-";

/// After the drain timeout, running activations are killed; this bounds how long their
/// teardown (runc kill + delete) may take before shutdown gives up waiting and reports.
const ABORT_GRACE: Duration = Duration::from_secs(10);

/// Asked once when the invoker shuts down: whether its stored warm containers are to be left
/// running for the next invoker (a restart) rather than destroyed (a final stop).
pub type StopPolicy = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// A warm container taken over from an earlier invoker.
#[derive(Debug)]
pub struct Restored<C> {
    pub container: C,
    pub runtime: Runtime,
    pub memory_mb: u64,
    pub key: WarmKey,
}

/// What [`Invoker::start_with`] adds to a plain start: everything here is optional and off
/// the critical path.
pub struct StartOptions<C> {
    /// Warm containers restored from an earlier invoker (adopted by the factory already).
    pub restored: Vec<Restored<C>>,
    /// Where warm containers are recorded for the next invoker.
    pub live_restore: Option<Arc<LiveRestore>>,
    /// Decides at shutdown whether stored containers stay (restart) or go (stop).
    pub stop_policy: Option<StopPolicy>,
    /// Where each activation's output lines are forwarded (the journal under systemd).
    pub log_forwarder: Option<LogForwarder>,
}

impl<C> Default for StartOptions<C> {
    fn default() -> Self {
        Self { restored: Vec::new(), live_restore: None, stop_policy: None, log_forwarder: None }
    }
}

impl<C> std::fmt::Debug for StartOptions<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("restored", &self.restored.len())
            .field("live_restore", &self.live_restore)
            .field("stop_policy", &self.stop_policy.is_some())
            .field("log_forwarder", &self.log_forwarder)
            .finish()
    }
}

/// Why the invoker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid invoker configuration: {0}")]
    Config(#[from] PoolConfigError),
    #[error("reclaiming containers left by an earlier run: {0}")]
    Reclaim(#[source] ContainerError),
}

/// The state shared by the invoker handle and its tasks.
pub(crate) struct Inner<F: ContainerFactory> {
    pub(crate) config: InvokerConfig,
    pub(crate) factory: F,
    pub(crate) code: Arc<dyn CodeSource>,
    pub(crate) installer: CodeInstaller,
    pool: Mutex<PoolState<F::Container>>,
    /// Wakes the prewarm filler: a stem cell was taken or memory was freed.
    pub(crate) prewarm_wake: Notify,
    /// The pool's decisions, for whoever listens ([`Invoker::events`]).
    pub(crate) events: Events,
    /// Signalled after every pool change, for shutdown's drain.
    changed: Notify,
    closed_trigger: ShutdownTrigger,
    /// Fired when shutdown begins: the filler and reaper stop.
    pub(crate) closed: Shutdown,
    abort_trigger: ShutdownTrigger,
    /// Fired when the drain timeout ran out: running activations are killed.
    pub(crate) abort: Shutdown,
    id_prefix: String,
    next_id: AtomicU64,
    pub(crate) live_restore: Option<Arc<LiveRestore>>,
    pub(crate) log_forwarder: Option<LogForwarder>,
    stop_policy: Option<StopPolicy>,
    /// The prewarm plan with its images resolved (entries whose image is missing left out).
    pub(crate) prewarm_plan: Vec<PrewarmConfig>,
    /// Image names resolved on this host. Warm and prewarmed activations use it without
    /// touching the image store; every cold start resolves its image again and updates it,
    /// so an import or a removal is seen by the next cold start.
    images: Mutex<HashMap<String, ImageDigest>>,
}

impl<F: ContainerFactory> std::fmt::Debug for Inner<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("id_prefix", &self.id_prefix).finish_non_exhaustive()
    }
}

impl<F: ContainerFactory> Inner<F> {
    /// Runs `f` under the pool lock. The closure form keeps the guard out of any await: a
    /// std Mutex is right here because every critical section is a few map operations.
    /// A poisoned lock is recovered: the pool's methods keep its counts consistent at every
    /// return, and refusing all further work would be worse than continuing.
    pub(crate) fn with_pool<R>(&self, f: impl FnOnce(&mut PoolState<F::Container>) -> R) -> R {
        let r = self.read_pool(f);
        self.changed.notify_waiters();
        r
    }

    /// As [`Inner::with_pool`] without waking the drain: for reads. (A drain that woke itself
    /// with its own check would spin without yielding.)
    fn read_pool<R>(&self, f: impl FnOnce(&mut PoolState<F::Container>) -> R) -> R {
        let mut guard = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A unique spec for a new container.
    pub(crate) fn spec(&self, runtime: Runtime, memory_mb: u64) -> ContainerSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ContainerSpec {
            id: format!("{}-{n}", self.id_prefix),
            runtime,
            memory_mb,
            network: self.config.network,
        }
    }

    /// Destroys a container that the pool handed out for destruction (already retired: its
    /// memory was free for others from that moment), then reports it gone.
    pub(crate) async fn destroy(&self, slot: Slot<F::Container>) {
        let mb = slot.memory_mb();
        let id = slot.id().to_owned();
        let stored = slot.is_stored();
        slot.destroy().await;
        if let (true, Some(live)) = (stored, &self.live_restore) {
            let live = live.clone();
            let id = id.clone();
            // A file removal and a few datagrams: not worth holding an async thread for.
            let _ = tokio::task::spawn_blocking(move || live.forget(&id)).await;
        }
        self.with_pool(|p| p.destroyed(mb));
        self.events.send(PoolEvent::Destroyed { container: id, memory_mb: mb });
        // The destroyed container may have been a stem cell an activation evicted.
        self.prewarm_wake.notify_one();
    }

    /// Destroys retired containers in the background: whoever took their memory goes on at
    /// once. `evicted_for` says who evicted them (None: retired for another reason).
    pub(crate) fn destroy_behind(
        self: &Arc<Self>,
        slots: Vec<Slot<F::Container>>,
        evicted_for: Option<EvictedFor>,
    ) {
        for slot in slots {
            if let Some(by) = evicted_for {
                tracing::debug!(evicted = slot.id(), ?by, "evicting idle container");
                self.events.send(PoolEvent::Evicted {
                    container: slot.id().to_owned(),
                    memory_mb: slot.memory_mb(),
                    by,
                });
            }
            let inner = Arc::clone(self);
            // Boxed: the teardown's futures (runc, file removal) are large.
            tokio::spawn(Box::pin(async move { inner.destroy(slot).await }));
        }
    }

    /// Leaves a stored idle container running for the next invoker; its memory is released
    /// here like a destroy's.
    async fn detach(&self, slot: Slot<F::Container>) {
        let mb = slot.memory_mb();
        slot.detach().await;
        self.with_pool(|p| p.destroyed(mb));
    }

    /// The digest an image name resolved to last, without asking the store.
    fn cached_image(&self, name: &str) -> Option<ImageDigest> {
        self.images.lock().unwrap_or_else(PoisonError::into_inner).get(name).copied()
    }

    /// Resolves an image name in the host's image store now and remembers the answer
    /// (forgets the name when the image is gone). Ok(None): not on this host.
    pub(crate) fn resolve_image(&self, name: &str) -> Result<Option<ImageDigest>, String> {
        let found = self.factory.resolve_image(name)?.map(|root| root.digest);
        let mut cache = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        match found {
            Some(d) => {
                cache.insert(name.to_owned(), d);
            }
            None => {
                cache.remove(name);
            }
        }
        Ok(found)
    }

    /// The runtime an activation runs in: its kind's, or for an image action the image's
    /// digest on this host. `Err` is the record that ends it at once (the image is not here,
    /// or the store cannot say).
    fn runtime_of(&self, msg: &ActivationMessage) -> Result<Runtime, Box<Activation>> {
        let Some(name) = msg.exec.run_image() else { return Ok(msg.exec.kind.runtime()) };
        if let Some(d) = self.cached_image(name) {
            return Ok(Runtime::Image(d));
        }
        match self.resolve_image(name) {
            Ok(Some(d)) => Ok(Runtime::Image(d)),
            Ok(None) => Err(Box::new(missing_image_record(msg, name))),
            Err(e) => {
                tracing::error!(image = name, error = %e, "the image store failed");
                let m = format!("The image store failed to resolve '{name}': {e}");
                Err(Box::new(msg.lost_record(m, Timing::instant(now_millis()))))
            }
        }
    }

    async fn wait_quiet(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read_pool(|p| p.is_quiet()) {
                return;
            }
            notified.await;
        }
    }
}

/// The record of an activation whose image is not on this host: a developer error in
/// OpenWhisk's words, with how an administrator adds the image.
pub(crate) fn missing_image_record(msg: &ActivationMessage, name: &str) -> Activation {
    let response = ActivationResponse::error(
        ActivationStatus::DeveloperError,
        crate::container::image::missing_image_message(name),
    );
    msg.record(response, Vec::new(), Timing::instant(now_millis()), false)
}

/// Resolves the images of the prewarm plan; an entry whose image is not on this host is
/// logged and left out (see [`PrewarmConfig`]).
fn resolve_plan<F: ContainerFactory>(factory: &F, plan: &[PrewarmConfig]) -> Vec<PrewarmConfig> {
    let mut out = Vec::with_capacity(plan.len());
    for p in plan {
        let Some(name) = &p.image else {
            out.push(p.clone());
            continue;
        };
        match factory.resolve_image(name) {
            Ok(Some(root)) => out.push(PrewarmConfig { digest: Some(root.digest), ..p.clone() }),
            Ok(None) => tracing::error!(
                image = %name,
                "prewarm image is not in this host's image store; not prewarmed (add it with \
                 `hearthd admin image pull|import`, then restart the invoker)"
            ),
            Err(e) => {
                tracing::error!(image = %name, error = %e, "prewarm image cannot be resolved; not prewarmed")
            }
        }
    }
    out
}

/// The container pool that runs activations. Cheap to share behind the `Arc` that
/// [`Invoker::start`] returns.
pub struct Invoker<F: ContainerFactory> {
    inner: Arc<Inner<F>>,
    /// The tokio runtime the pool was started on: activations are spawned there even when
    /// `submit` is called from another thread (a test's, a blocking one).
    tasks: tokio::runtime::Handle,
    /// Held for the whole of the first shutdown, so a second caller waits for it to finish.
    shut: tokio::sync::Mutex<bool>,
}

impl<F: ContainerFactory> std::fmt::Debug for Invoker<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl<F: ContainerFactory> Invoker<F> {
    /// Validates the config, removes containers an earlier run left behind, and starts the
    /// prewarm filler and the idle reaper. When `shutdown` fires, the invoker shuts itself
    /// down (as [`Invoker::shutdown`]); the daemon awaits `shutdown()` to know when it is done.
    pub async fn start(
        config: InvokerConfig,
        factory: F,
        code: Arc<dyn CodeSource>,
        installer: CodeInstaller,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, StartError> {
        Self::start_with(config, factory, code, installer, shutdown, StartOptions::default()).await
    }

    /// As [`Invoker::start`], with restored warm containers, live restore, a stop policy and
    /// log forwarding (the systemd-managed invoker).
    pub async fn start_with(
        config: InvokerConfig,
        factory: F,
        code: Arc<dyn CodeSource>,
        installer: CodeInstaller,
        shutdown: Shutdown,
        options: StartOptions<F::Container>,
    ) -> Result<Arc<Self>, StartError> {
        config.validate()?;
        let reclaimed = factory.reclaim_leftovers().await.map_err(StartError::Reclaim)?;
        if reclaimed > 0 {
            tracing::warn!(reclaimed, "removed containers left by an earlier run");
        }
        let (closed_trigger, closed) = shutdown::channel();
        let (abort_trigger, abort) = shutdown::channel();
        // Ids stay unique across restarts too (the low bits of the start time), so a leftover
        // that could not be reclaimed never collides with a new container.
        let id_prefix = format!("{CONTAINER_ID_PREFIX}{:08x}", now_millis() & 0xffff_ffff);
        let prewarm_plan = resolve_plan(&factory, &config.prewarm);
        let inner = Arc::new(Inner {
            prewarm_plan,
            images: Mutex::new(HashMap::new()),
            pool: Mutex::new({
                let mut pool = PoolState::new(config.memory_budget_mb, config.queue_limit);
                pool.set_neighbour_guard(config.evict_idle_after);
                pool
            }),
            config,
            factory,
            code,
            installer,
            prewarm_wake: Notify::new(),
            events: Events::new(),
            changed: Notify::new(),
            closed_trigger,
            closed,
            abort_trigger,
            abort,
            id_prefix,
            next_id: AtomicU64::new(1),
            live_restore: options.live_restore,
            log_forwarder: options.log_forwarder,
            stop_policy: options.stop_policy,
        });
        let mut restored = 0usize;
        for r in options.restored {
            let slot = Slot::restored(r.container, r.runtime, r.memory_mb, r.key);
            if let Some(slot) = inner.with_pool(|p| p.adopt(slot)) {
                tracing::warn!(
                    container = slot.id(),
                    "no memory left for a restored container; destroying it"
                );
                let id = slot.id().to_owned();
                slot.destroy().await;
                if let Some(live) = &inner.live_restore {
                    live.forget(&id);
                }
            } else {
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!(restored, "warm containers restored from the previous invoker");
        }
        let tasks = tokio::runtime::Handle::current();
        tasks.spawn(
            prewarm::fill(inner.clone(), shutdown.clone())
                .instrument(tracing::info_span!("prewarm")),
        );
        tasks.spawn(
            reaper::reap(inner.clone(), shutdown.clone()).instrument(tracing::info_span!("reaper")),
        );
        let invoker = Arc::new(Self { inner, tasks, shut: tokio::sync::Mutex::new(false) });
        let weak: Weak<Self> = Arc::downgrade(&invoker);
        let mut signal = shutdown;
        invoker.tasks.spawn(async move {
            signal.wait().await;
            if let Some(invoker) = weak.upgrade() {
                invoker.shutdown().await;
            }
        });
        tracing::info!(stats = %invoker.stats(), "invoker started");
        Ok(invoker)
    }

    /// Admits an activation or refuses it at once: `Overloaded` when the queue of activations
    /// waiting for memory is full, `Unavailable` when shutting down or when the action could
    /// never fit the memory budget. An admitted activation always ends with exactly one record
    /// on the returned [`Completion`], whatever fails.
    pub fn submit(&self, msg: ActivationMessage) -> Result<Completion, DispatchError> {
        let runtime = match self.inner.runtime_of(&msg) {
            Ok(r) => r,
            Err(record) => {
                tracing::info!(activation_id = %msg.activation_id, status = record.response.status.as_str(), "activation refused: no image");
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(*record);
                return Ok(rx);
            }
        };
        let need = Need {
            key: WarmKey { action: msg.action.clone(), revision: msg.revision },
            runtime,
            memory_mb: msg.limits.memory,
            tenant: msg.subject.clone(),
            concurrency: super::activation::concurrency_of(&msg),
        };
        let admission = self.inner.with_pool(|p| p.admit(need))?;
        let (tx, rx) = oneshot::channel();
        let span = tracing::info_span!(
            "activation",
            activation_id = %msg.activation_id,
            namespace = %msg.subject,
            action = %msg.action,
            container = tracing::field::Empty,
        );
        self.tasks.spawn(activation::run(self.inner.clone(), msg, admission, tx).instrument(span));
        Ok(rx)
    }

    /// machined reported the machine `id` removed (e.g. `machinectl terminate`). An idle
    /// container of that name leaves the pool and is destroyed (its memory goes back); a
    /// busy one is left to its activation, whose run ends on the closed pipes. Returns
    /// whether an idle container was dropped.
    pub async fn container_removed(&self, id: &str) -> bool {
        if !id.starts_with(CONTAINER_ID_PREFIX) {
            return false;
        }
        let Some(slots) = self.inner.with_pool(|p| p.take_idle(id)) else { return false };
        tracing::warn!(
            container = id,
            "idle container terminated from outside; dropped from the pool"
        );
        for slot in slots {
            self.inner.destroy(slot).await;
        }
        true
    }

    /// The pool's decisions from now on (creates, evictions, resizes, destroys, and where
    /// activations that missed the warm pool went), for tests and diagnostics.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    /// Counts at this instant.
    pub fn stats(&self) -> PoolStats {
        self.inner.read_pool(|p| p.stats())
    }

    /// Stops admitting (new submits get `Unavailable`), drops queued activations (each ends
    /// with an internal-error record), destroys idle containers, waits up to the configured
    /// drain timeout for running activations, then kills what still runs and waits for every
    /// container to be gone. Safe to call more than once and concurrently.
    pub async fn shutdown(&self) {
        let mut done = self.shut.lock().await;
        if *done {
            return;
        }
        let inner = &self.inner;
        inner.closed_trigger.fire();
        // Asked before anything is destroyed: on a restart the stored containers stay.
        let keep_stored = match (&inner.stop_policy, &inner.live_restore) {
            (Some(policy), Some(_)) => policy().await,
            _ => false,
        };
        let idle = inner.with_pool(|p| p.close());
        tracing::info!(idle = idle.len(), keep_stored, stats = %self.stats(), "invoker shutting down");
        let mut destroys = JoinSet::new();
        for slot in idle {
            let inner = inner.clone();
            if keep_stored && slot.is_stored() {
                destroys.spawn_on(async move { inner.detach(slot).await }, &self.tasks);
            } else {
                destroys.spawn_on(async move { inner.destroy(slot).await }, &self.tasks);
            }
        }
        let drain = inner.config.drain_timeout;
        if tokio::time::timeout(drain, inner.wait_quiet()).await.is_err() {
            tracing::warn!(?drain, stats = %self.stats(), "drain timed out; killing running activations");
            inner.abort_trigger.fire();
            if tokio::time::timeout(ABORT_GRACE, inner.wait_quiet()).await.is_err() {
                tracing::error!(stats = %self.stats(), "containers still not gone after the abort");
            }
        }
        while destroys.join_next().await.is_some() {}
        tracing::info!(stats = %self.stats(), "invoker stopped");
        *done = true;
    }
}

impl<F: ContainerFactory> Dispatcher for Invoker<F> {
    /// Admission is synchronous, so the future is already resolved.
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        Box::pin(std::future::ready(self.submit(msg)))
    }

    /// The one invoker of a standalone server: up until it drains for shutdown.
    fn invokers(&self) -> Vec<InvokerView> {
        let health =
            if self.inner.with_pool(|p| p.is_closing()) { Health::Offline } else { Health::Up };
        vec![InvokerView { id: InvokerId(0), health }]
    }
}
