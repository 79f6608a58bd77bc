//! The records topic (`hearth.records`): every controller publishes each activation record it
//! commits, and every controller materialises the topic into its own LMDB, so any controller
//! answers `GET .../activations/{id}`, its logs and result, and lists for any activation of the
//! cluster. See docs/KAFKA.md ("Activation records on every controller") for why this rather
//! than routing reads to the controller that holds a record.
//!
//! This module owns the Kafka half only: the topic (time retention equal to the controllers'
//! record retention, so a controller started from an empty data dir replays exactly what a
//! running one still holds), publishing a batch of records through the producer (all sent at
//! once, then their acknowledgements awaited: records are independent, so unlike the entity
//! topic their order does not matter), and following the topic into a [`RecordSink`] in
//! batches. It never decodes a record and never touches the store: the store is the sink and
//! keeps the offset it applied in the same transaction as the records.
//!
//! Keys are activation ids; values are the record as the store encodes it (JSON).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

use super::attach::Attachment;
use super::client::{follower, producer_and_admin, Fetch, TracingContext};
use super::error::{is_unknown_topic, KafkaError};
use super::publisher::{FeedTopic, PublishBatch, Published};
use super::OutboxEntry;
use crate::shutdown::Shutdown;

/// The topic every controller publishes its records to and follows.
pub const RECORD_TOPIC: &str = "hearth.records";

/// Largest record: logs up to 10 MB and a result up to 1 MB (OpenWhisk's limits), plus the
/// rest of the record. Brokers must allow it too (`message.max.bytes`).
pub const MAX_RECORD_BYTES: usize = 12 * 1024 * 1024;

/// Records published at once: one batch of the record writer's size, sent back to back so
/// the producer packs them into few requests.
const PUBLISH_BATCH: usize = 256;

/// Records applied per LMDB transaction at most: the messages already fetched when the first
/// of them arrives, so a replay commits in large batches and the live tail one by one.
const APPLY_BATCH: usize = 512;

/// Where followed records go: the store, in hearthd.
pub trait RecordSink: Send + Sync + 'static {
    /// The offset of the next record to apply, as stored with the records; `None` on a fresh
    /// host: replay from the beginning of retention.
    fn next_offset(&self) -> Option<i64>;

    /// Materialises `records` (topic order) and stores `next` as the resume offset in the same
    /// transaction. Idempotent: a record the host holds already is not written again.
    fn apply(&self, records: &[RecordMessage<'_>], next: i64);
}

/// One message of the records topic.
#[derive(Debug, Clone, Copy)]
pub struct RecordMessage<'a> {
    /// The activation id, as text.
    pub key: &'a str,
    /// The record as the store encodes it.
    pub value: &'a [u8],
    pub offset: i64,
}

/// The publishing half, held by each controller; also what [`follow_records`] creates the
/// topic with.
pub struct RecordLog {
    brokers: String,
    producer: FutureProducer<TracingContext>,
    admin: AdminClient<TracingContext>,
    retention: Duration,
    replication: i32,
}

impl std::fmt::Debug for RecordLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLog")
            .field("brokers", &self.brokers)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RecordLog {
    /// `retention`: how long the topic keeps a record (the controllers' record retention).
    pub fn new(
        brokers: &str,
        delivery_timeout: Duration,
        retention: Duration,
        replication: i32,
    ) -> Result<Self, KafkaError> {
        let (producer, admin) = producer_and_admin(
            brokers,
            delivery_timeout,
            MAX_RECORD_BYTES,
            ("record producer", "record admin"),
        )?;
        Ok(Self { brokers: brokers.to_string(), producer, admin, retention, replication })
    }

    /// Creates the topic unless it exists: deleted by time after `retention` (no compaction:
    /// every key is written once, or a few times with the same final record).
    pub async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let retention = self.retention.as_millis().to_string();
        let max = MAX_RECORD_BYTES.to_string();
        let topic = NewTopic::new(RECORD_TOPIC, 1, TopicReplication::Fixed(self.replication))
            .set("cleanup.policy", "delete")
            .set("retention.ms", &retention)
            .set("max.message.bytes", &max);
        super::topics::ensure_configured(&self.admin, &self.brokers, &topic).await
    }

    /// Where the records topic ends now; `None` when the brokers cannot say.
    pub async fn end_offset(&self, group: &str) -> Option<i64> {
        let [w] = super::client::watermarks(&self.brokers, group, [RECORD_TOPIC]).await;
        w.map(|(_, high)| high)
    }

    fn produce_error(&self, what: String, source: rdkafka::error::KafkaError) -> KafkaError {
        KafkaError::Produce {
            what,
            topic: RECORD_TOPIC.to_string(),
            brokers: self.brokers.clone(),
            source: Box::new(source),
        }
    }
}

impl FeedTopic for RecordLog {
    /// Every record of the batch is handed to the producer at once (librdkafka packs them
    /// into few produce requests), then the acknowledgements are awaited in order; the
    /// acknowledged prefix is done. An entry without a value (its record was pruned or its
    /// namespace deleted before it went out) has nothing to publish and is done.
    fn publish_batch<'a>(&'a self, entries: &'a [OutboxEntry]) -> PublishBatch<'a> {
        Box::pin(async move {
            let mut sent = Vec::with_capacity(entries.len());
            let mut out = Published::default();
            for e in entries {
                let Some(value) = e.value.as_deref() else {
                    sent.push((e, None));
                    continue;
                };
                let record = FutureRecord::<str, [u8]>::to(RECORD_TOPIC).key(&e.key).payload(value);
                match self.producer.send_result(record) {
                    Ok(delivery) => sent.push((e, Some(delivery))),
                    Err((err, _)) => {
                        out.error = Some(self.produce_error(format!("record {}", e.key), err));
                        break;
                    }
                }
            }
            for (e, delivery) in sent {
                let Some(delivery) = delivery else {
                    out.done = Some(e.seq);
                    continue;
                };
                let err = match delivery.await {
                    Ok(Ok(_)) => {
                        out.done = Some(e.seq);
                        continue;
                    }
                    Ok(Err((err, _))) => err,
                    Err(_) => rdkafka::error::KafkaError::Canceled,
                };
                if is_unknown_topic(&err) {
                    // A broker that restarted empty: create the topic; the retry sends again.
                    if let Err(e) = self.ensure_topic().await {
                        tracing::warn!(error = %e, "re-creating the records topic failed");
                    }
                }
                out.error = Some(self.produce_error(format!("record {}", e.key), err));
                break;
            }
            out
        })
    }

    fn batch(&self) -> usize {
        PUBLISH_BATCH
    }
}

/// Follows the records topic into `sink` from its resume offset (the beginning of retention
/// on a fresh host) until `shutdown`, creating the topic through `log` when missing. A broker
/// outage is waited out. Errors only when the consumer cannot be created.
///
/// The consumer uses the activation path's fetch wait ([`Fetch::Activation`]): a record read
/// through another controller right after its invoke returned waits on this hop, as an invoke
/// waits on its record's.
pub async fn follow_records(
    log: &RecordLog,
    group: &str,
    sink: Arc<dyn RecordSink>,
    mut shutdown: Shutdown,
) -> Result<(), KafkaError> {
    let brokers = log.brokers.as_str();
    let make = || follower(brokers, group, Fetch::Activation, MAX_RECORD_BYTES, "record follower");
    // Fails now if the settings can never work, rather than retrying forever.
    drop(make()?);
    let start = sink.next_offset().map_or(Offset::Beginning, Offset::Offset);
    let mut at = Attachment::new(RECORD_TOPIC, start);
    let mut consumer = None;
    loop {
        let held = consumer.take();
        let Some(c) = at.held_or_connect(held, make, || log.ensure_topic(), &mut shutdown).await
        else {
            return Ok(());
        };
        // A reset (the broker lost the topic) needs nothing here: a record the new topic does
        // not hold stays on the hosts that materialised it (docs/KAFKA.md).
        let _ = at.take_reset();
        let first = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            m = c.recv() => m,
        };
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut error = None;
        match first {
            Ok(m) => batch.push(m),
            Err(e) => error = Some(e),
        }
        // Whatever else is fetched already joins the batch (a zero timeout polls once).
        while error.is_none() && !batch.is_empty() && batch.len() < APPLY_BATCH {
            match tokio::time::timeout(Duration::ZERO, c.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                Ok(Err(e)) => error = Some(e),
                Err(_) => break,
            }
        }
        if let Some(last) = batch.last() {
            let next = last.offset() + 1;
            let records: Vec<RecordMessage<'_>> = batch
                .iter()
                .filter_map(|m| {
                    let key = m.key_view::<str>().and_then(Result::ok);
                    match (key, m.payload()) {
                        (Some(key), Some(value)) => {
                            Some(RecordMessage { key, value, offset: m.offset() })
                        }
                        _ => {
                            tracing::warn!(
                                offset = m.offset(),
                                "a message without an id or a record on the records topic: skipped"
                            );
                            None
                        }
                    }
                })
                .collect();
            sink.apply(&records, next);
            at.consumed(next - 1);
        }
        drop(batch);
        let gone = match error {
            Some(e) => {
                tracing::warn!(error = %e, "following the records topic failed");
                at.recover(&e).await
            }
            None => false,
        };
        if !gone {
            consumer = Some(c);
        }
    }
}
