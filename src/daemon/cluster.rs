//! The several-hosts wiring (`--bus kafka://...`): what a controller and an invoker add to
//! their one-host shape to join a cluster over Kafka.
//!
//! - Every host follows the compacted entity topic into its own store (the store is the
//!   [`EntitySink`](crate::bus::kafka::EntitySink)), so actions, namespaces and keys written on
//!   any controller reach every controller and every invoker.
//! - A controller also runs the Kafka bus's [`Publisher`](crate::bus::kafka::Publisher): it
//!   drains the store's entity feed (the outbox filled in the same transaction as each write)
//!   to the topic, and is the store's `PublishWaiter`, so an entity write is answered after
//!   the local commit **and** the broker's acknowledgement.
//! - A controller also publishes every activation record it commits to the records topic
//!   (the same [`Publisher`](crate::bus::kafka::Publisher), draining the store's records
//!   outbox) and materialises the topic into its store, so every controller answers for every
//!   activation of the cluster.
//! - An invoker puts the Kafka bus's [`RevisionGate`](crate::bus::kafka::RevisionGate) in
//!   front of its pool (the store answers its revision questions): an activation for a
//!   revision not materialised yet waits for it, else ends with a lost record.
//!
//! Owns: these tasks and their start order. Must never: carry code in an activation, or
//! answer a write before it is committed locally.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::bus::kafka::{
    follow_entities, follow_records, EntityLog, EntitySink, Publisher, RecordLog, RecordSink,
};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long the broker may take to acknowledge one entity record: shorter than the bound of a
/// write's wait ([`PUBLISH_WAIT`](crate::bus::kafka::PUBLISH_WAIT)), so a dead broker is
/// reported with librdkafka's reason rather than a bare timeout.
const ENTITY_DELIVERY: Duration = Duration::from_secs(4);

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

/// How long the broker may take to acknowledge a batch of records before the publisher
/// retries it (nobody waits on it: the record is committed and answered already).
const RECORD_DELIVERY: Duration = Duration::from_secs(10);

/// The records topic of `brokers`, kept for `retention` (the controller's record retention).
pub fn record_log(brokers: &str, retention: Duration) -> anyhow::Result<Arc<RecordLog>> {
    Ok(Arc::new(RecordLog::new(brokers, RECORD_DELIVERY, retention, 1)?))
}

/// Publishes the records `store` commits (from now on, and what its outbox kept from a
/// previous run) and materialises the other controllers' into it, until `shutdown`.
pub fn spawn_records(log: Arc<RecordLog>, group: String, store: Store, shutdown: Shutdown) {
    let outbox = Arc::new(crate::store::RecordOutbox(store.clone()));
    let wake = store.record_feed_wake();
    Publisher::start_with(outbox, log.clone(), "record", wake, shutdown.clone());
    let sink: Arc<dyn RecordSink> = Arc::new(store);
    tokio::spawn(
        async move {
            if let Err(e) = follow_records(&log, &group, sink, shutdown).await {
                tracing::error!(error = %e, "cannot follow the records topic: records of other controllers will not be readable here");
            }
        }
        .instrument(tracing::info_span!("record_follower")),
    );
}

/// The entity log of `brokers`, with the delivery bound of entity writes.
pub fn entity_log(brokers: &str) -> anyhow::Result<Arc<EntityLog>> {
    Ok(Arc::new(EntityLog::new(brokers, ENTITY_DELIVERY, 1)?))
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
