//! The brokers' own produce-to-consume round trip, with the bus's client settings: the floor
//! every latency over the Kafka bus is measured against (the platform benchmark's Kafka rows,
//! tests/cluster.rs). A warm invoke over the bus crosses the brokers twice (activation to the
//! invoker's topic, record back to the controller's), so it cannot beat twice this.
//!
//! [`Probe::new`] times one hop: a message sent, then received by a consumer of the same
//! topic. [`Probe::echo`] times the two hops of an invoke: sent, relayed on at once by a second
//! consumer and producer, received. Both use `linger.ms=0` and the activation path's
//! `fetch.wait.max.ms` ([`producer_settings`], [`consumer_settings`] with
//! [`Fetch::Activation`](super::client::Fetch::Activation)).

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
const MESSAGE_TIMEOUT_MS: u64 = 10_000;

/// A producer and a consumer on probe topics, ready to time round trips: one hop (send to a
/// topic, receive from it) or two (send, a relay receives and sends on at once, receive).
pub struct Probe {
    brokers: String,
    /// Where [`Probe::once`] sends, and where it receives.
    send_topic: String,
    recv_topic: String,
    producer: FutureProducer<TracingContext>,
    consumer: StreamConsumer<TracingContext>,
    /// The relay of a two-hop probe, stopped with the probe.
    relay: Option<tokio::task::JoinHandle<()>>,
    nonce: String,
    sent: u64,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("brokers", &self.brokers)
            .field("send_topic", &self.send_topic)
            .field("recv_topic", &self.recv_topic)
            .finish_non_exhaustive()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}

impl Probe {
    /// One hop: creates `topic` (one partition) unless it exists and connects to it.
    pub async fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        Self::build(brokers, topic, topic).await
    }

    /// Two hops, as an activation and its record make them: messages go to `out`, where a
    /// relay takes each one and at once sends it to `back`, where the probe receives it. The
    /// second hop starts when the first one is consumed, as an invoker's reply does, which a
    /// broker that answers fetches on a clock (tansu) serves later than a message sent at a
    /// random moment; the two-hop time is therefore the broker's whole share of a warm invoke.
    pub async fn echo(brokers: &str, out: &str, back: &str) -> Result<Self, KafkaError> {
        let mut probe = Self::build(brokers, out, back).await?;
        let relay_consumer = consumer(brokers, out, "probe relay consumer")?;
        let relay_producer: FutureProducer<TracingContext> =
            create(&producer_settings(brokers, MESSAGE_TIMEOUT_MS), brokers, "probe relay")?;
        let back = back.to_owned();
        probe.relay = Some(tokio::spawn(async move {
            loop {
                match relay_consumer.recv().await {
                    Ok(m) => {
                        let payload = m.payload().unwrap_or_default().to_vec();
                        let rec = FutureRecord::<(), _>::to(&back).payload(&payload);
                        if let Err((e, _)) = relay_producer.send(rec, Duration::ZERO).await {
                            tracing::warn!(error = %e, "the probe's relay could not send on");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the probe's relay could not receive");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
        // Connections, metadata and offsets of both hops.
        probe.once().await?;
        Ok(probe)
    }

    async fn build(brokers: &str, send_topic: &str, recv_topic: &str) -> Result<Self, KafkaError> {
        let admin: AdminClient<TracingContext> =
            create(&producer_settings(brokers, MESSAGE_TIMEOUT_MS), brokers, "probe admin")?;
        let mut topics = vec![send_topic];
        if recv_topic != send_topic {
            topics.push(recv_topic);
        }
        ensure_topics(&admin, brokers, &topics, 1).await?;
        let producer =
            create(&producer_settings(brokers, MESSAGE_TIMEOUT_MS), brokers, "probe producer")?;
        let consumer = consumer(brokers, recv_topic, "probe consumer")?;
        let mut probe = Self {
            brokers: brokers.to_owned(),
            send_topic: send_topic.to_owned(),
            recv_topic: recv_topic.to_owned(),
            producer,
            consumer,
            relay: None,
            nonce: format!("{}-{:?}", std::process::id(), Instant::now()),
            sent: 0,
        };
        if send_topic == recv_topic {
            // Skips what earlier probes left on the topic and pays for the first connections.
            probe.once().await?;
        }
        Ok(probe)
    }

    /// One round trip: a message sent, then received back by the consumer.
    pub async fn once(&mut self) -> Result<Duration, KafkaError> {
        self.sent += 1;
        let payload = format!("{}-{}", self.nonce, self.sent);
        let t0 = Instant::now();
        self.producer
            .send(FutureRecord::<(), _>::to(&self.send_topic).payload(&payload), Duration::ZERO)
            .await
            .map_err(|(source, _)| KafkaError::Produce {
                what: "a probe message".to_owned(),
                topic: self.send_topic.clone(),
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
                Err(source) => {
                    return Err(KafkaError::Consume {
                        topic: self.recv_topic.clone(),
                        brokers: self.brokers.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
    }
}

/// A consumer of partition 0 of `topic` with the activation path's settings, from the
/// beginning: resolving "end" would race with the first send; messages of earlier probes are
/// skipped by their payload, which is unique to each probe.
fn consumer(
    brokers: &str,
    topic: &str,
    role: &'static str,
) -> Result<StreamConsumer<TracingContext>, KafkaError> {
    let c: StreamConsumer<TracingContext> =
        create(&consumer_settings(brokers, topic, false, Fetch::Activation), brokers, role)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).and_then(|()| c.assign(&tpl)).map_err(
        |source| KafkaError::Consume {
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
            source: Box::new(source),
        },
    )?;
    Ok(c)
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
