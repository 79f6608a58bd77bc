//! The entity log: a compacted topic (`hearth.entities`) through which every controller
//! publishes each entity it writes (actions with their code, namespaces, keys) and from which
//! every host materialises the entities into its own LMDB. See docs/KAFKA.md for why this
//! rather than fetching code from a controller on a cache miss.
//!
//! This module owns the Kafka half only: publishing a key's new value (or its deletion, a
//! tombstone) and following the topic from a given offset into an [`EntitySink`]. It never
//! interprets values and never touches the store: the store implements [`EntitySink`] and
//! keeps the offset it applied in the same LMDB transaction as the entity, so a restart
//! resumes exactly after the last applied record (no duplicate, no gap).
//!
//! Keys are the store's entity keys (for example `action/guest/hello`); compaction keeps the
//! last value of every key, so a new host replays one record per live entity, not history.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use super::attach::Attachment;
use super::client::{consumer_settings, create, producer_settings, Fetch, TracingContext};
use super::error::{is_unknown_topic, KafkaError};
use crate::shutdown::Shutdown;

/// The compacted topic every host follows.
pub const ENTITY_TOPIC: &str = "hearth.entities";

/// Largest entity record: action code may reach about 48 MB (OpenWhisk's limit), plus the
/// metadata around it. Brokers must allow it too (`message.max.bytes`).
pub const MAX_ENTITY_BYTES: usize = 52 * 1024 * 1024;

/// Where followed entity records go: the store, in hearthd.
pub trait EntitySink: Send + Sync + 'static {
    /// The offset of the next record to apply (one past the last applied), as stored with the
    /// entities; `None` on a fresh host: replay from the beginning.
    fn resume_offset(&self) -> Option<i64>;

    /// Applies one record: `Some(value)` writes the key, `None` deletes it. Must store
    /// `offset + 1` as the resume offset in the same transaction.
    fn apply(&self, key: &str, value: Option<&[u8]>, offset: i64);

    /// The topic was reset: the broker lost it (memory storage restarted) and it was
    /// re-created, shorter than the position this sink had reached; the follower now reads
    /// it from its new beginning. A controller re-publishes every entity it holds here, so
    /// hosts started afterwards still learn them. The default does nothing (a host that only
    /// reads).
    fn topic_reset(&self) {}
}

/// The publishing half, held by each controller.
pub struct EntityLog {
    brokers: String,
    producer: FutureProducer<TracingContext>,
    admin: AdminClient<TracingContext>,
    delivery_timeout: Duration,
    replication: i32,
}

impl std::fmt::Debug for EntityLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityLog").field("brokers", &self.brokers).finish_non_exhaustive()
    }
}

impl EntityLog {
    pub fn new(
        brokers: &str,
        delivery_timeout: Duration,
        replication: i32,
    ) -> Result<Self, KafkaError> {
        let ms = delivery_timeout.as_millis() as u64;
        let mut settings = producer_settings(brokers, ms);
        settings.set("message.max.bytes", MAX_ENTITY_BYTES.to_string());
        let producer = create(&settings, brokers, "entity producer")?;
        let admin = create(&settings, brokers, "entity admin")?;
        Ok(Self { brokers: brokers.to_string(), producer, admin, delivery_timeout, replication })
    }

    /// Creates the compacted topic unless it exists.
    pub async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let max = MAX_ENTITY_BYTES.to_string();
        let topic = NewTopic::new(ENTITY_TOPIC, 1, TopicReplication::Fixed(self.replication))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max);
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let err = |reason: String| KafkaError::CreateTopic {
            topic: ENTITY_TOPIC.to_string(),
            brokers: self.brokers.clone(),
            reason,
        };
        let results =
            self.admin.create_topics([&topic], &opts).await.map_err(|e| err(e.to_string()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(err(code.to_string())),
            }
        }
        Ok(())
    }

    /// Publishes `key`'s new value (`None`: deleted). Returns once the broker holds it, with
    /// its offset: the caller may answer its client then, and other hosts will see the write
    /// as soon as they reach that offset.
    pub async fn publish(&self, key: &str, value: Option<&[u8]>) -> Result<i64, KafkaError> {
        let mut result = self.send(key, value).await;
        if matches!(&result, Err(e) if is_unknown_topic(e)) {
            self.ensure_topic().await?;
            result = self.send(key, value).await;
        }
        result.map_err(|source| KafkaError::Produce {
            what: format!("entity {key}"),
            topic: ENTITY_TOPIC.to_string(),
            brokers: self.brokers.clone(),
            source: Box::new(source),
        })
    }

    async fn send(
        &self,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<i64, rdkafka::error::KafkaError> {
        let mut record = FutureRecord::<str, [u8]>::to(ENTITY_TOPIC).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer
            .send(record, self.delivery_timeout)
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| e)
    }
}

/// Follows the entity topic into `sink` from its resume offset until `shutdown`, creating the
/// topic through `log` when missing. A broker outage is waited out. Errors only when the
/// consumer cannot be created.
pub async fn follow_entities(
    log: &EntityLog,
    group: &str,
    sink: Arc<dyn EntitySink>,
    mut shutdown: Shutdown,
) -> Result<(), KafkaError> {
    let brokers = log.brokers.as_str();
    let make = || {
        let mut settings = consumer_settings(brokers, group, false, Fetch::Background);
        settings.set("fetch.message.max.bytes", MAX_ENTITY_BYTES.to_string());
        settings.set("receive.message.max.bytes", (MAX_ENTITY_BYTES + 1024 * 1024).to_string());
        settings
            .create_with_context::<_, StreamConsumer<TracingContext>>(TracingContext {
                role: "entity follower",
            })
            .map_err(|source| KafkaError::Client {
                role: "entity follower",
                brokers: brokers.to_string(),
                source: Box::new(source),
            })
    };
    // Fails now if the settings can never work, rather than retrying forever.
    drop(make()?);
    let start = sink.resume_offset().map_or(Offset::Beginning, Offset::Offset);
    let mut at = Attachment::new(ENTITY_TOPIC, start);
    let mut consumer = None;
    loop {
        let c = match consumer.take() {
            Some(c) => c,
            None => tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                c = at.connect(make, || log.ensure_topic()) => c,
            },
        };
        if at.take_reset() {
            sink.topic_reset();
        }
        let m = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            m = c.recv() => m,
        };
        let gone = match m {
            Ok(m) => {
                at.consumed(m.offset());
                match m.key_view::<str>() {
                    Some(Ok(key)) => sink.apply(key, m.payload(), m.offset()),
                    _ => tracing::warn!(
                        offset = m.offset(),
                        "entity record without a text key skipped"
                    ),
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "following the entity topic failed");
                at.recover(&e).await
            }
        };
        if !gone {
            consumer = Some(c);
        }
    }
}
