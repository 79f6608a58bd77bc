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
//! - An invoker puts the Kafka bus's [`RevisionGate`](crate::bus::kafka::RevisionGate) in
//!   front of its pool (the store answers its revision questions): an activation for a
//!   revision not materialised yet waits for it, else ends with a lost record.
//!
//! Owns: these tasks and their start order. Must never: carry code in an activation, or
//! answer a write before it is committed locally.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Instrument;

use crate::bus::kafka::{follow_entities, EntityLog, EntitySink};
use crate::shutdown::Shutdown;
use crate::store::{PublishWaiter, Store};

/// How long an entity write waits for the broker to take its publication. The producer's own
/// delivery timeout ([`ENTITY_DELIVERY`]) is shorter, so a dead broker is reported with
/// librdkafka's reason rather than a bare timeout.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How long the broker may take to acknowledge one entity record.
const ENTITY_DELIVERY: Duration = Duration::from_secs(4);

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
}
