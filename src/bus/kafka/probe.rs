//! The brokers' own produce-to-consume round trip, with the bus's client settings: the floor
//! every latency over the Kafka bus is measured against (the platform benchmark's Kafka rows,
//! tests/cluster.rs). A warm invoke over the bus crosses the brokers twice (activation to the
//! invoker's topic, record back to the controller's), so it cannot beat twice this.
//!
//! One producer and one consumer on a one-partition topic, each message sent after the
//! previous one arrived: the time from `send` to `recv` of that message, with `linger.ms=0`
//! and `fetch.wait.max.ms` as the bus sets them for the activation path ([`producer_settings`],
//! [`consumer_settings`] with [`Fetch::Activation`](super::client::Fetch::Activation)).

use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{consumer_settings, create, producer_settings, Fetch, TracingContext};
use super::error::KafkaError;
use super::topics::ensure_topics;

/// How long one message may take before the probe gives up on the brokers.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A producer and a consumer on one probe topic, ready to time round trips.
pub struct Probe {
    brokers: String,
    topic: String,
    producer: FutureProducer<TracingContext>,
    consumer: StreamConsumer<TracingContext>,
    nonce: String,
    sent: u64,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// Creates `topic` (one partition) unless it exists and connects to it.
    pub async fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        let ms = MESSAGE_TIMEOUT.as_millis() as u64;
        let admin: AdminClient<TracingContext> =
            create(&producer_settings(brokers, ms), brokers, "probe admin")?;
        ensure_topics(&admin, brokers, &[topic], 1).await?;
        let producer = create(&producer_settings(brokers, ms), brokers, "probe producer")?;
        let consumer: StreamConsumer<TracingContext> = create(
            &consumer_settings(brokers, topic, false, Fetch::Activation),
            brokers,
            "probe consumer",
        )?;
        // From the beginning, not the end: resolving "end" races with the first send. Messages
        // of earlier probes are skipped by their payload, which is unique to this probe.
        let mut tpl = TopicPartitionList::new();
        let assigned = tpl
            .add_partition_offset(topic, 0, Offset::Beginning)
            .and_then(|()| consumer.assign(&tpl));
        let mut probe = Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            producer,
            consumer,
            nonce: format!("{}-{:?}", std::process::id(), Instant::now()),
            sent: 0,
        };
        assigned.map_err(|e| probe.consume_err(e))?;
        // Skips what earlier probes left on the topic and pays for the first connections.
        probe.once().await?;
        Ok(probe)
    }

    /// One round trip: a message sent, then received back by the consumer.
    pub async fn once(&mut self) -> Result<Duration, KafkaError> {
        self.sent += 1;
        let payload = format!("{}-{}", self.nonce, self.sent);
        let t0 = Instant::now();
        self.producer
            .send(FutureRecord::<(), _>::to(&self.topic).payload(&payload), Duration::ZERO)
            .await
            .map_err(|(source, _)| KafkaError::Produce {
                what: "a probe message".to_owned(),
                topic: self.topic.clone(),
                brokers: self.brokers.clone(),
                source: Box::new(source),
            })?;
        loop {
            let m = match tokio::time::timeout(MESSAGE_TIMEOUT, self.consumer.recv()).await {
                Ok(m) => m,
                Err(_) => Err(rdkafka::error::KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                )),
            };
            match m {
                Ok(m) if m.payload() == Some(payload.as_bytes()) => return Ok(t0.elapsed()),
                Ok(_) => {}
                Err(e) => return Err(self.consume_err(e)),
            }
        }
    }

    fn consume_err(&self, source: rdkafka::error::KafkaError) -> KafkaError {
        KafkaError::Consume {
            topic: self.topic.clone(),
            brokers: self.brokers.clone(),
            source: Box::new(source),
        }
    }
}

/// `warmup + n` round trips through `topic` one after the other; returns the last `n` (the
/// first ones pay for metadata and connections).
pub async fn round_trips(
    brokers: &str,
    topic: &str,
    n: usize,
    warmup: usize,
) -> Result<Vec<Duration>, KafkaError> {
    let mut probe = Probe::new(brokers, topic).await?;
    for _ in 0..warmup {
        probe.once().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(probe.once().await?);
    }
    Ok(samples)
}
