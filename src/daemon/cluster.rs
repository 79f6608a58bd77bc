//! The several-hosts wiring (`--bus kafka://...`): what a controller and an invoker add to
//! their one-host shape to join a cluster over Kafka.
//!
//! - Every host follows the compacted entity topic into its own store (the store is the
//!   [`EntitySink`](crate::bus::kafka::EntitySink)), so actions, namespaces and keys written on
//!   any controller reach every controller and every invoker.
//! - A controller also runs the [`Publisher`]: it drains the store's entity feed (the outbox
//!   filled in the same transaction as each write) to the topic, and is the store's
//!   [`PublishWaiter`], so an entity write is answered after the local commit **and** the
//!   broker's acknowledgement (bounded by [`PUBLISH_WAIT`]).
//! - An invoker puts a [`RevisionGate`] in front of its pool: an activation for a revision not
//!   materialised yet waits for it (bounded by [`REVISION_WAIT`]), else ends with a clear
//!   failure record.
//!
//! Owns: these tasks and their start order. Must never: carry code in an activation, or
//! answer a write before it is committed locally.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use tracing::Instrument;

use crate::bus::kafka::{follow_entities, EntityLog, EntitySink};
use crate::dispatch::{
    ActivationMessage, Completion, DispatchError, DispatchFuture, Dispatcher, InvokerView, Timing,
};
use crate::shutdown::Shutdown;
use crate::store::{PublishWaiter, Store};

/// How long an entity write waits for the broker to take its publication. The producer's own
/// delivery timeout ([`ENTITY_DELIVERY`]) is shorter, so a dead broker is reported with
/// librdkafka's reason rather than a bare timeout.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How long the broker may take to acknowledge one entity record.
const ENTITY_DELIVERY: Duration = Duration::from_secs(4);

/// How long an invoker waits for an action revision its follower has not applied yet. The
/// follow lag is milliseconds; seconds cover a follower catching up after a restart.
pub const REVISION_WAIT: Duration = Duration::from_secs(5);

/// How often the publisher looks at the feed without being woken: catches writes made by
/// another process on the same data directory (`hearthd admin`).
const FEED_POLL: Duration = Duration::from_millis(250);

/// Pause after a failed publication before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Entries taken from the feed at once.
const FEED_BATCH: usize = 32;

/// Why a cluster setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BusUrlError {
    #[error("bus {0:?}: expected kafka://HOST:PORT[,HOST:PORT...]")]
    Scheme(String),
    #[error("bus {url:?}: broker {broker:?} is not HOST:PORT")]
    Broker { url: String, broker: String },
}

/// The broker list of a `kafka://HOST:PORT[,HOST:PORT]` URL.
pub fn brokers_of(url: &str) -> Result<String, BusUrlError> {
    let rest = url.strip_prefix("kafka://").ok_or_else(|| BusUrlError::Scheme(url.into()))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(BusUrlError::Scheme(url.into()));
    }
    for b in rest.split(',') {
        let ok = b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            return Err(BusUrlError::Broker { url: url.into(), broker: b.into() });
        }
    }
    Ok(rest.to_string())
}

/// Follows the entity topic into `store` until `shutdown`; logged, never fatal.
pub fn spawn_follower(log: Arc<EntityLog>, group: String, store: Store, shutdown: Shutdown) {
    let sink: Arc<dyn EntitySink> = Arc::new(store);
    tokio::spawn(
        async move {
            if let Err(e) = follow_entities(&log, &group, sink, shutdown).await {
                tracing::error!(error = %e, "cannot follow the entity topic: entities written elsewhere will not arrive");
            }
        }
        .instrument(tracing::info_span!("entity_follower")),
    );
}

/// The entity log of `brokers`, with the delivery bound of entity writes.
pub fn entity_log(brokers: &str) -> anyhow::Result<Arc<EntityLog>> {
    Ok(Arc::new(EntityLog::new(brokers, ENTITY_DELIVERY, 1)?))
}

/// Drains the store's entity feed to the entity topic, and tells waiting writes when theirs
/// is published.
pub struct Publisher {
    store: Store,
    log: Arc<EntityLog>,
    /// Highest feed seq the broker acknowledged (this process's run).
    published: Mutex<u64>,
    cond: Condvar,
    wake: Notify,
    /// Why the last publication failed, for the writers' error.
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("log", &self.log).finish_non_exhaustive()
    }
}

impl PublishWaiter for Publisher {
    fn wait_published(&self, seq: u64) -> Result<(), String> {
        self.wake.notify_one();
        let deadline = Instant::now() + PUBLISH_WAIT;
        let mut done = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        while *done < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_else(|| "no acknowledgement yet".into());
                return Err(format!(
                    "the message bus did not acknowledge it within {} s: {why}",
                    PUBLISH_WAIT.as_secs()
                ));
            }
            done = self.cond.wait_timeout(done, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        Ok(())
    }
}

impl Publisher {
    /// Creates the publisher, installs it as `store`'s waiter and starts draining.
    pub fn start(store: Store, log: Arc<EntityLog>, shutdown: Shutdown) -> Arc<Self> {
        let p = Arc::new(Self {
            store: store.clone(),
            log,
            published: Mutex::new(0),
            cond: Condvar::new(),
            wake: Notify::new(),
            last_error: Mutex::new(None),
        });
        store.set_publish_waiter(p.clone());
        tokio::spawn(p.clone().run(shutdown).instrument(tracing::info_span!("entity_publisher")));
        p
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut failing = false;
        loop {
            let entries = match self.store.feed_pending(FEED_BATCH) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the entity feed failed");
                    Vec::new()
                }
            };
            if entries.is_empty() {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(FEED_POLL) => {}
                }
                continue;
            }
            for e in entries {
                let t = Instant::now();
                match self.log.publish(&e.key, e.value.as_deref(), e.deleted_revision).await {
                    Ok(offset) => {
                        if failing {
                            tracing::info!("the message bus takes entity records again");
                            failing = false;
                        }
                        tracing::debug!(key = %e.key, seq = e.seq, offset, took_us = t.elapsed().as_micros() as u64, "entity published");
                        if let Err(err) = self.store.feed_done(e.seq) {
                            tracing::error!(error = %err, "removing a published feed entry failed (it will be published again)");
                        }
                        let mut done =
                            self.published.lock().unwrap_or_else(PoisonError::into_inner);
                        *done = (*done).max(e.seq);
                        self.cond.notify_all();
                    }
                    Err(err) => {
                        if !failing {
                            tracing::error!(error = %err, key = %e.key, "publishing an entity failed: the message bus is unavailable; retrying");
                            failing = true;
                        }
                        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(err.to_string());
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// The invoker's pool behind a check that the action's revision is materialised here.
pub struct RevisionGate {
    store: Store,
    pool: Arc<dyn Dispatcher>,
    invoker: String,
    bound: Duration,
}

impl std::fmt::Debug for RevisionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionGate").field("invoker", &self.invoker).finish_non_exhaustive()
    }
}

impl RevisionGate {
    pub fn new(store: Store, pool: Arc<dyn Dispatcher>, invoker: String, bound: Duration) -> Self {
        Self { store, pool, invoker, bound }
    }

    async fn gate(&self, msg: ActivationMessage) -> Result<Completion, DispatchError> {
        let why = match self.store.wait_for_revision(&msg.action, msg.revision, self.bound).await {
            Ok(Ok(held)) if held == msg.revision => return self.pool.dispatch(msg).await,
            Ok(Ok(held)) => {
                // The action was updated (or lost a concurrent update) after the controller
                // sent this: its code is gone here. Not run, as the standalone pool does for
                // an action updated while the activation waited; and not a fault of this host,
                // so the record says so and the invoker stays healthy (kafka/invoker.rs).
                let why = format!(
                    "{} has action {} at version {}, not {}: it was updated while the activation waited, so it was not run",
                    self.invoker,
                    msg.action,
                    crate::model::ActionMeta::version_for(held),
                    msg.version
                );
                tracing::warn!(activation = %msg.activation_id, "{why}");
                let mut record = msg.lost_record(why, Timing::since_accepted(&msg));
                record.mark_superseded();
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(record);
                return Ok(rx);
            }
            Ok(Err(None)) => format!(
                "{} does not have action {} (revision {}): its entity record did not arrive within {} s",
                self.invoker, msg.action, msg.revision, self.bound.as_secs()
            ),
            Ok(Err(Some(found))) => format!(
                "{} has action {} at revision {found}, not {}: the newer record did not arrive within {} s",
                self.invoker, msg.action, msg.revision, self.bound.as_secs()
            ),
            Err(e) => format!("{} cannot read action {}: {e}", self.invoker, msg.action),
        };
        tracing::error!(activation = %msg.activation_id, "{why}");
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(msg.lost_record(why, Timing::since_accepted(&msg)));
        Ok(rx)
    }
}

impl Dispatcher for RevisionGate {
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        Box::pin(self.gate(msg))
    }

    fn invokers(&self) -> Vec<InvokerView> {
        self.pool.invokers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_urls() {
        assert_eq!(brokers_of("kafka://127.0.0.1:9092").unwrap(), "127.0.0.1:9092");
        assert_eq!(brokers_of("kafka://a:1,b:2/").unwrap(), "a:1,b:2");
        assert!(matches!(brokers_of("127.0.0.1:9092"), Err(BusUrlError::Scheme(_))));
        assert!(matches!(brokers_of("kafka://"), Err(BusUrlError::Scheme(_))));
        let e = brokers_of("kafka://a:1,b").unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        assert!(brokers_of("kafka://a:0").is_err());
    }

    fn message(fqn: &crate::model::FullyQualifiedName, revision: u64) -> ActivationMessage {
        let msg = crate::testing::message(fqn.namespace.as_str(), fqn.name.as_str(), revision);
        ActivationMessage { version: "0.0.1".into(), ..msg }
    }

    #[tokio::test]
    async fn the_gate_runs_materialised_revisions_and_records_missing_ones() {
        use crate::model::{ActivationStatus, EntityName, FullyQualifiedName, Kind};
        use crate::store::{ActionUpdate, ExecUpdate, StoreOptions};
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), StoreOptions { map_size: 64 << 20, ..Default::default() })
                .unwrap();
        let ns = EntityName::parse("team").unwrap();
        store.create_namespace(&ns).unwrap();
        let fqn = FullyQualifiedName::new(ns, EntityName::parse("a").unwrap());
        let up = ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse("python:3").unwrap(),
                main: None,
                binary: false,
                code: b"x".to_vec(),
            }),
            ..Default::default()
        };
        store.put_action(&fqn, up, false).unwrap();
        let gate = RevisionGate::new(
            store,
            Arc::new(crate::testing::FakeInvoker::new()),
            "invoker4".into(),
            Duration::from_millis(50),
        );
        let rec = gate.dispatch(message(&fqn, 1)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::Success);
        let rec = gate.dispatch(message(&fqn, 2)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        let text = rec.response.result.to_string();
        assert!(text.contains("invoker4") && text.contains("revision 1, not 2"), "{text}");
        assert!(!rec.is_superseded());
        // An older revision than the one held: superseded, not run, not a system error.
        let rec = gate.dispatch(message(&fqn, 0)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        let text = rec.response.result.to_string();
        assert!(text.contains("updated while the activation waited"), "{text}");
        assert!(rec.is_superseded(), "{rec:?}");
        let other = FullyQualifiedName::new(fqn.namespace.clone(), EntityName::parse("b").unwrap());
        let rec = gate.dispatch(message(&other, 1)).await.unwrap().await.unwrap();
        assert!(rec.response.result.to_string().contains("does not have action team/b"), "{rec:?}");
    }
}
