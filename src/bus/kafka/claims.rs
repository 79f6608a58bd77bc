//! The alarm claims log: one single-partition topic (`hearth.alarm-claims`, time-retained,
//! never compacted) through which the controllers of a cluster agree on who fires each alarm
//! tick. A controller that wants to fire tick T of trigger X produces the record `X@T ->
//! its id` and reads the topic; the first record of key `X@T` in the partition wins. Every
//! controller reads the same partition in the same order, so all agree on the winner, and
//! at most one fires (docs/KAFKA.md, "Alarm claims").
//!
//! Retention, not compaction: compaction keeps a key's *last* record, which would let a late
//! claim replace the first one. A tick is claimed only within seconds of its time, so an hour
//! of retention is far more than any claim needs.
//!
//! Owns: the topic, the producer of claims, a reader that remembers each recent key's first
//! claimant. Must never: answer a claim before reading the key's first record back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use tokio::sync::Notify;

use super::attach::Attachment;
use super::client::{consumer_settings, create, producer_settings, Fetch, TracingContext};
use super::error::KafkaError;
use crate::shutdown::Shutdown;

/// The claims topic.
pub const CLAIMS_TOPIC: &str = "hearth.alarm-claims";

/// How long the topic keeps claims.
const RETENTION_MS: u64 = 3_600_000;

/// How long a claim may take to be acknowledged and read back before the tick is given up
/// by this controller (another may still have won it).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys remembered at most; the oldest half is forgotten past it (a claim is only ever
/// asked about within seconds of its tick).
const REMEMBERED: usize = 100_000;

/// One controller's side of the claims log.
pub struct ClaimLog {
    id: String,
    brokers: String,
    producer: FutureProducer<TracingContext>,
    /// Each key's first claimant, in arrival order (for forgetting the oldest).
    winners: Mutex<(HashMap<String, String>, Vec<String>)>,
    read: Notify,
}

impl std::fmt::Debug for ClaimLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimLog").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ClaimLog {
    /// Creates the topic if needed, and starts reading it from its beginning.
    pub async fn start(
        brokers: &str,
        id: &str,
        shutdown: Shutdown,
    ) -> Result<Arc<ClaimLog>, KafkaError> {
        let producer = create(&producer_settings(brokers, 5_000), brokers, "claims producer")?;
        let log = Arc::new(ClaimLog {
            id: id.to_owned(),
            brokers: brokers.to_owned(),
            producer,
            winners: Mutex::new((HashMap::new(), Vec::new())),
            read: Notify::new(),
        });
        if let Err(e) = log.ensure_topic().await {
            tracing::warn!(error = %e, "the claims topic is not created yet; retrying in the background");
        }
        let reader = log.clone();
        tokio::spawn(async move { reader.follow(shutdown).await });
        Ok(log)
    }

    async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let admin: AdminClient<TracingContext> =
            create(&producer_settings(&self.brokers, 5_000), &self.brokers, "claims admin")?;
        let retention = RETENTION_MS.to_string();
        let topic = NewTopic::new(CLAIMS_TOPIC, 1, TopicReplication::Fixed(1))
            .set("cleanup.policy", "delete")
            .set("retention.ms", &retention);
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let err = |reason: String| KafkaError::CreateTopic {
            topic: CLAIMS_TOPIC.to_string(),
            brokers: self.brokers.clone(),
            reason,
        };
        for r in admin.create_topics([&topic], &opts).await.map_err(|e| err(e.to_string()))? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(err(code.to_string())),
            }
        }
        Ok(())
    }

    fn winner(&self, key: &str) -> Option<String> {
        let w = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        w.0.get(key).cloned()
    }

    /// Claims `key`: `Ok(true)` when this controller's claim (or an earlier one of its own)
    /// is the key's first record in the log.
    pub async fn claim(&self, key: &str) -> Result<bool, String> {
        if let Some(w) = self.winner(key) {
            return Ok(w == self.id);
        }
        let record = FutureRecord::<str, str>::to(CLAIMS_TOPIC).key(key).payload(&self.id);
        self.producer.send(record, CLAIM_TIMEOUT).await.map_err(|(e, _)| {
            KafkaError::Produce {
                what: format!("the claim {key}"),
                topic: CLAIMS_TOPIC.to_string(),
                brokers: self.brokers.clone(),
                source: Box::new(e),
            }
            .to_string()
        })?;
        let deadline = tokio::time::Instant::now() + CLAIM_TIMEOUT;
        loop {
            let read = self.read.notified();
            if let Some(w) = self.winner(key) {
                return Ok(w == self.id);
            }
            if tokio::time::timeout_at(deadline, read).await.is_err() {
                return Err(format!(
                    "the claim {key} was not read back from {CLAIMS_TOPIC} within {CLAIM_TIMEOUT:?}"
                ));
            }
        }
    }

    /// Reads the topic from its beginning until `shutdown`, remembering each key's first
    /// claimant.
    async fn follow(&self, mut shutdown: Shutdown) {
        let brokers = self.brokers.clone();
        let group = format!("hearth.claims.{}", self.id);
        let make = || -> Result<StreamConsumer<TracingContext>, KafkaError> {
            create(
                &consumer_settings(&brokers, &group, false, Fetch::Activation),
                &brokers,
                "claims reader",
            )
        };
        let mut at = Attachment::new(CLAIMS_TOPIC, Offset::Beginning);
        let mut consumer = None;
        loop {
            let c = match consumer.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = shutdown.wait() => return,
                    c = at.connect(make, || self.ensure_topic()) => c,
                },
            };
            let m = tokio::select! {
                _ = shutdown.wait() => return,
                m = c.recv() => m,
            };
            let gone = match m {
                Ok(m) => {
                    at.consumed(m.offset());
                    let key = m.key_view::<str>().and_then(Result::ok);
                    let who = m.payload_view::<str>().and_then(Result::ok);
                    if let (Some(key), Some(who)) = (key, who) {
                        self.remember(key, who);
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the claims topic failed");
                    at.recover(&e).await
                }
            };
            if !gone {
                consumer = Some(c);
            }
        }
    }

    fn remember(&self, key: &str, who: &str) {
        let mut w = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *w;
        if map.contains_key(key) {
            return;
        }
        map.insert(key.to_owned(), who.to_owned());
        order.push(key.to_owned());
        if order.len() > REMEMBERED {
            for old in order.drain(..REMEMBERED / 2) {
                map.remove(&old);
            }
        }
        drop(w);
        self.read.notify_waiters();
    }
}
