//! The controller engine: entities, invoke orchestration and activation records, with typed
//! methods the API layer calls.
//!
//! Owns: the rules (who may touch which namespace, how a payload is validated, how long a
//! blocking invoke waits, how much work a namespace may have), the record writer, and the
//! in-flight counts.
//! Must never: know about HTTP (no hyper types here), hold an LMDB write transaction on an
//! async worker thread (writes go to blocking threads), or lose an accepted activation's record.

mod admission;
mod error;
mod invoke;
mod packages;
mod records;
mod retention;
mod rules;
mod sequence;
mod triggers;
mod web;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use error::ControllerError;
pub use invoke::{InvokeOptions, InvokeOutcome};
pub use packages::{PackageView, ResolvedAction};
pub use records::{CommitError, RecordWriter, WriterStopped};
pub use retention::run_retention;
pub use triggers::FireOutcome;
pub use web::{WebAction, WebAuth};

use crate::dispatch::Dispatcher;
use crate::model::{
    ActionMeta, Activation, ActivationId, EntityName, FullyQualifiedName, Identity, NamespaceLimits,
};
use crate::store::{ActionUpdate, ActivationQuery, Store, StoreError};

/// How long [`Controller::close`] waits for running activations to report: long enough for
/// a short action to finish, short enough for systemd's stop timeout (90 s by default).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Tuning of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Longest a blocking invoke waits before answering 202 (OpenWhisk: 60 s).
    pub max_blocking_wait: Duration,
    /// Added to the action's timeout for the blocking wait: the invoker needs a moment after
    /// the deadline to kill the run and send the record.
    pub wait_margin: Duration,
    /// Activation records older than this are pruned.
    pub retention: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Every namespace's limits unless an operator overrode them for it
    /// (`hearthd admin limits`).
    pub namespace_limits: NamespaceLimits,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            max_blocking_wait: Duration::from_secs(60),
            wait_margin: Duration::from_secs(2),
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            namespace_limits: NamespaceLimits::SINGLE_OWNER,
        }
    }
}

/// Shared state behind the API.
pub struct Controller {
    store: Store,
    dispatcher: Arc<dyn Dispatcher>,
    config: ControllerConfig,
    records: Arc<RecordWriter>,
    in_flight: Arc<AtomicUsize>,
    admission: admission::Admission,
    /// Trigger fires per minute, counted apart from invocations (`triggers.rs`).
    fires: admission::Admission,
    metrics: Arc<crate::metrics::Metrics>,
    /// This controller, for a sequence's run, which outlives the request that started it.
    me: std::sync::Weak<Controller>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Runs a store write on a blocking thread: commits fsync and may wait for another process's
/// writer lock, which must not stall the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ControllerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControllerError::Internal(format!("store task failed: {e}")))?
        .map_err(ControllerError::from)
}

impl Controller {
    /// Ends the pending activations of a previous run (nothing of this one is in flight
    /// yet), starts the record writer; the controller is ready to serve.
    pub fn new(
        store: Store,
        dispatcher: Arc<dyn Dispatcher>,
        config: ControllerConfig,
    ) -> Result<Arc<Self>, ControllerError> {
        let stale = store.replace_pending_with_placeholders()?;
        if stale > 0 {
            tracing::warn!(
                count = stale,
                "recorded activations of a previous run as internal errors"
            );
        }
        let records = RecordWriter::start(store.clone())
            .map_err(|e| ControllerError::Internal(format!("starting the record writer: {e}")))?;
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            dispatcher,
            config,
            records: Arc::new(records),
            in_flight: Arc::default(),
            admission: admission::Admission::default(),
            fires: admission::Admission::default(),
            metrics: Arc::default(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What `GET /metrics` exposes; standalone adds the pool's gauges to it.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The invokers this controller dispatches to and their health (`GET /invokers`).
    pub fn invokers(&self) -> Vec<crate::dispatch::InvokerView> {
        self.dispatcher.invokers()
    }

    /// Activations accepted and not yet recorded.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Resolves an `Authorization` header value to an identity; `None` when it is not a valid
    /// key.
    pub fn authenticate(&self, header: &str) -> Result<Option<Identity>, ControllerError> {
        Ok(self.store.authenticate(header)?)
    }

    /// The limits that hold for namespace `ns` now: the operator's override for it over the
    /// host's defaults (`GET /namespaces/{ns}/limits`, and every invoke).
    pub fn namespace_limits(&self, ns: &EntityName) -> Result<NamespaceLimits, ControllerError> {
        Ok(self.store.namespace_limits(ns)?.over(self.config.namespace_limits))
    }

    /// The namespaces a caller sees: its own.
    pub fn namespaces(&self, caller: &Identity) -> Vec<EntityName> {
        vec![caller.namespace.clone()]
    }

    pub async fn put_action(
        &self,
        fqn: FullyQualifiedName,
        update: ActionUpdate,
        overwrite: bool,
    ) -> Result<ActionMeta, ControllerError> {
        let store = self.store.clone();
        blocking(move || store.put_action(&fqn, update, overwrite)).await
    }

    pub fn get_action(&self, fqn: &FullyQualifiedName) -> Result<ActionMeta, ControllerError> {
        self.store.get_action(fqn)?.ok_or_else(|| not_found_action(fqn))
    }

    /// The action and its code (copied: the response outlives the read transaction).
    pub fn get_action_with_code(
        &self,
        fqn: &FullyQualifiedName,
    ) -> Result<(ActionMeta, Vec<u8>), ControllerError> {
        self.store.get_action_with_code(fqn)?.ok_or_else(|| not_found_action(fqn))
    }

    pub fn list_actions(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ActionMeta>, ControllerError> {
        Ok(self.store.list_actions(ns, skip, limit)?)
    }

    pub fn count_actions(&self, ns: &EntityName) -> Result<usize, ControllerError> {
        Ok(self.store.count_actions(ns)?)
    }

    pub async fn delete_action(
        &self,
        fqn: FullyQualifiedName,
    ) -> Result<ActionMeta, ControllerError> {
        let store = self.store.clone();
        let f = fqn.clone();
        blocking(move || store.delete_action(&f)).await?.ok_or_else(|| not_found_action(&fqn))
    }

    /// One record of `ns`, after every record submitted so far is committed.
    pub async fn get_activation(
        &self,
        ns: &EntityName,
        id: &ActivationId,
    ) -> Result<Activation, ControllerError> {
        self.flush_records().await?;
        self.store
            .get_activation(ns, id)?
            .ok_or_else(|| ControllerError::NotFound(format!("activation {id} does not exist")))
    }

    /// Records of `ns`, newest first, after every record submitted so far is committed.
    pub async fn list_activations(
        &self,
        ns: &EntityName,
        q: &ActivationQuery,
    ) -> Result<Vec<Activation>, ControllerError> {
        self.flush_records().await?;
        Ok(self.store.list_activations(ns, q)?)
    }

    pub async fn count_activations(
        &self,
        ns: &EntityName,
        q: &ActivationQuery,
    ) -> Result<usize, ControllerError> {
        self.flush_records().await?;
        Ok(self.store.count_activations(ns, q)?)
    }

    async fn flush_records(&self) -> Result<(), ControllerError> {
        self.records.flush().await.map_err(|e| ControllerError::Internal(e.to_string()))
    }

    /// Waits (up to [`CLOSE_GRACE`]) for accepted activations to be recorded, commits queued
    /// records and stops the writer. Call after the API stopped serving; later records are
    /// refused (and logged).
    pub async fn close(&self) {
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.in_flight() > 0 {
            tracing::warn!(
                in_flight = self.in_flight(),
                "closing with activations still running; their records are lost"
            );
        }
        self.records.stop().await;
        if let Err(e) = self.store.sync() {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
    }
}

fn not_found_action(fqn: &FullyQualifiedName) -> ControllerError {
    ControllerError::NotFound(format!("action {fqn} does not exist"))
}
