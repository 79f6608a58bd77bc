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

use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

use super::attach::Attachment;
use super::client::{follower, producer_and_admin, Fetch, TracingContext};
use super::error::{is_unknown_topic, KafkaError};
use crate::shutdown::Shutdown;

/// The compacted topic every host follows.
pub const ENTITY_TOPIC: &str = "hearth.entities";

/// Largest entity record: action code may reach about 48 MB (OpenWhisk's limit), plus the
/// metadata around it. Brokers must allow it too (`message.max.bytes`).
pub const MAX_ENTITY_BYTES: usize = 52 * 1024 * 1024;

/// Where followed entity records go: the store, in hearthd.
pub trait EntitySink: Send + Sync + 'static {
    /// Where this sink stands, as stored with the entities; `None` on a fresh host: replay
    /// from the beginning.
    fn position(&self) -> Option<Position>;

    /// Applies one record: a value writes the key, none deletes it. Must store
    /// `offset + 1` as the resume offset, and the mark as the last mark, in the same
    /// transaction.
    fn apply(&self, record: &EntityRecord<'_>);

    /// The topic was reset: the broker lost it (memory storage restarted) and it was
    /// re-created; the follower now reads it from its new beginning. A controller
    /// re-publishes every entity it holds here, so hosts started afterwards still learn
    /// them. The default does nothing (a host that only reads).
    fn topic_reset(&self) {}
}

/// One record of the entity topic, as a follower hands it to its sink.
#[derive(Debug, Clone, Copy)]
pub struct EntityRecord<'a> {
    pub key: &'a str,
    /// `None`: a tombstone (the entity was deleted).
    pub value: Option<&'a [u8]>,
    /// A tombstone's [`REVISION_HEADER`]: the deleted action's revision.
    pub deleted_revision: Option<u64>,
    pub offset: i64,
    /// The record's [`mark`].
    pub mark: u64,
}

/// The record header a tombstone of an action carries: the revision deleted (8 bytes, big
/// endian), so that a host holding a newer re-creation of the action keeps it.
pub const REVISION_HEADER: &str = "hearth-revision";

/// Where a follower resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The offset of the next record to apply (one past the last applied).
    pub next: i64,
    /// The [`mark`] of the record at `next - 1`, when known.
    pub last_mark: Option<u64>,
}

/// How much of a record's value its mark covers: enough to tell two records apart (the value
/// starts with the writer's origin and sequence number), without hashing 48 MB of code.
const MARK_PREFIX: usize = 4096;

/// A fingerprint of one record of the entity topic: its key, its value's length and first
/// bytes, and the time its producer stamped on it. The record at a given offset of one
/// incarnation of the topic never changes; a re-created topic holds, at the same offset, a
/// record written later (another timestamp, usually another key or value).
pub fn mark(key: &str, value: Option<&[u8]>, timestamp_ms: Option<i64>) -> u64 {
    let len = value.map_or(u64::MAX, |v| v.len() as u64);
    let head = value.map_or(&[][..], |v| &v[..v.len().min(MARK_PREFIX)]);
    let ts = timestamp_ms.unwrap_or(-1);
    crate::model::fnv1a(
        key.bytes()
            .chain([0xff])
            .chain(len.to_be_bytes())
            .chain(head.iter().copied())
            .chain(ts.to_be_bytes()),
    )
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
        let (producer, admin) = producer_and_admin(
            brokers,
            delivery_timeout,
            MAX_ENTITY_BYTES,
            ("entity producer", "entity admin"),
        )?;
        Ok(Self { brokers: brokers.to_string(), producer, admin, delivery_timeout, replication })
    }

    /// Creates the compacted topic unless it exists.
    pub async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let max = MAX_ENTITY_BYTES.to_string();
        let topic = NewTopic::new(ENTITY_TOPIC, 1, TopicReplication::Fixed(self.replication))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max);
        super::topics::ensure_configured(&self.admin, &self.brokers, &topic).await
    }

    /// Where the entity topic ends now (the offset after its last record); `None` when the
    /// brokers cannot say (down, topic not created yet).
    pub async fn end_offset(&self, group: &str) -> Option<i64> {
        let [w] = super::client::watermarks(&self.brokers, group, [ENTITY_TOPIC]).await;
        w.map(|(_, high)| high)
    }

    /// Publishes `key`'s new value (`None`: deleted; `deleted_revision`, for an action, the
    /// revision deleted). Returns once the broker holds it, with its offset: the caller may
    /// answer its client then, and other hosts will see the write as soon as they reach that
    /// offset.
    pub async fn publish(
        &self,
        key: &str,
        value: Option<&[u8]>,
        deleted_revision: Option<u64>,
    ) -> Result<i64, KafkaError> {
        let mut result = self.send(key, value, deleted_revision).await;
        if matches!(&result, Err(e) if is_unknown_topic(e)) {
            self.ensure_topic().await?;
            result = self.send(key, value, deleted_revision).await;
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
        deleted_revision: Option<u64>,
    ) -> Result<i64, rdkafka::error::KafkaError> {
        let mut record = FutureRecord::<str, [u8]>::to(ENTITY_TOPIC).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        let revision = deleted_revision.map(u64::to_be_bytes);
        if let Some(r) = &revision {
            let header = Header { key: REVISION_HEADER, value: Some(r.as_slice()) };
            record = record.headers(OwnedHeaders::new().insert(header));
        }
        self.producer
            .send(record, self.delivery_timeout)
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| e)
    }
}

/// The entity feed's topic: one record at a time, each acknowledged before the next is sent,
/// because the topic's order decides between writes of one key (namespaces and keys) and a
/// retried send could otherwise overtake the next.
impl super::publisher::FeedTopic for EntityLog {
    fn publish_batch<'a>(
        &'a self,
        entries: &'a [super::OutboxEntry],
    ) -> super::publisher::PublishBatch<'a> {
        Box::pin(async move {
            let mut out = super::publisher::Published::default();
            for e in entries {
                let t = std::time::Instant::now();
                match self.publish(&e.key, e.value.as_deref(), e.deleted_revision).await {
                    Ok(offset) => {
                        tracing::debug!(key = %e.key, seq = e.seq, offset, took_us = t.elapsed().as_micros() as u64, "entity published");
                        out.done = Some(e.seq);
                    }
                    Err(err) => {
                        out.error = Some(err);
                        break;
                    }
                }
            }
            out
        })
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
    let make = || follower(brokers, group, Fetch::Background, MAX_ENTITY_BYTES, "entity follower");
    // Fails now if the settings can never work, rather than retrying forever.
    drop(make()?);
    let position = sink.position();
    let start = position.map_or(Offset::Beginning, |p| Offset::Offset(p.next));
    let mut last_mark = position.and_then(|p| p.last_mark);
    // Every (re)attachment first re-reads the record before the position (see attach.rs).
    let mut at = Attachment::new(ENTITY_TOPIC, start).checking_previous();
    let mut consumer = None;
    loop {
        let held = consumer.take();
        let Some(c) = at.held_or_connect(held, make, || log.ensure_topic(), &mut shutdown).await
        else {
            return Ok(());
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
                let key = m.key_view::<str>().and_then(Result::ok);
                let this = mark(key.unwrap_or(""), m.payload(), m.timestamp().to_millis());
                if at.is_check(m.offset()) {
                    at.consumed(m.offset());
                    // Applied already. Another record there: the topic was re-created (and
                    // has grown past this host's position while it was away).
                    if last_mark.is_some_and(|l| l != this) {
                        at.restart_from_beginning();
                        // A new consumer, assigned at the new beginning.
                        continue;
                    }
                    false
                } else {
                    at.consumed(m.offset());
                    match key {
                        Some(key) => sink.apply(&EntityRecord {
                            key,
                            value: m.payload(),
                            deleted_revision: deleted_revision(&m),
                            offset: m.offset(),
                            mark: this,
                        }),
                        None => tracing::warn!(
                            offset = m.offset(),
                            "entity record without a text key skipped"
                        ),
                    }
                    last_mark = Some(this);
                    false
                }
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

/// The revision a tombstone names ([`REVISION_HEADER`]), if any.
fn deleted_revision(m: &impl Message) -> Option<u64> {
    let headers = m.headers()?;
    let h = headers.iter().find(|h| h.key == REVISION_HEADER)?;
    Some(u64::from_be_bytes(h.value?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::mark;

    #[test]
    fn a_mark_tells_records_apart_and_only_them() {
        let v = b"{\"origin\":\"c1\",\"seq\":3}".as_slice();
        let m = mark("action/guest/a", Some(v), Some(1_000));
        assert_eq!(m, mark("action/guest/a", Some(v), Some(1_000)), "stable");
        assert_ne!(m, mark("action/guest/b", Some(v), Some(1_000)), "key");
        assert_ne!(m, mark("action/guest/a", Some(b"{}"), Some(1_000)), "value");
        assert_ne!(m, mark("action/guest/a", Some(v), Some(1_001)), "timestamp");
        assert_ne!(m, mark("action/guest/a", None, Some(1_000)), "tombstone");
        assert_ne!(mark("action/guest/a", Some(b""), None), mark("action/guest/a", None, None));
        // Past the covered prefix, the length still tells values apart.
        let long = vec![b'x'; 10_000];
        assert_ne!(mark("k", Some(&long), None), mark("k", Some(&long[..9_999]), None));
    }
}
