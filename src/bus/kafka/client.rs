//! Kafka client settings, tuned for the latency of one activation, and the librdkafka log
//! bridge into tracing (so broker outages reach the journal).
//!
//! Producer: `linger.ms=0` (send each activation at once; batching would add its linger to
//! every invoke), `acks=1` (admission is the partition leader's write: `acks=0` could not tell
//! a dead broker from a live one, so an activation could vanish silently; `acks=all` waits for
//! replication too, one more broker round trip on every invoke, for a loss window that only
//! opens when a leader dies in the few milliseconds before its followers copy the record, and
//! even then the controller's completion deadline records the activation as failed),
//! compression none (messages are a few hundred bytes; compressing costs CPU on both ends for
//! nothing), Nagle off (one small request per invoke must not wait for an ACK).
//!
//! Consumer: `fetch.wait.max.ms` by role ([`Fetch`]): short on the activation path (an
//! invoker's activations, a controller's completions), where every millisecond is a user's;
//! long for health pings and entity records, which nobody waits on per request (librdkafka's
//! default is 500). A broker that holds every fetch for the full wait, data or not (tansu does),
//! makes the wait a floor of each hop; one that answers when data arrives (Apache Kafka) makes
//! it only the bound on an idle poll.
//! `fetch.min.bytes=1` (answer as soon as anything is there), `enable.partition.eof=false`
//! (no end-of-partition events to skip), short reconnect back-offs and a one-second metadata
//! refresh, so a restarted broker (and re-created topics) are found again within a second or
//! two.

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdError;

/// Settings shared by every hearth client.
fn common(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("broker.address.family", "v4");
    c
}

/// The producer settings; `delivery_timeout_ms` bounds how long a message may wait for the
/// broker's acknowledgement (the admission time limit).
pub fn producer_settings(brokers: &str, delivery_timeout_ms: u64) -> ClientConfig {
    let mut c = common(brokers);
    c.set("linger.ms", "0")
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("message.timeout.ms", delivery_timeout_ms.to_string())
        .set("retry.backoff.ms", "50");
    c
}

/// What a consumer waits on, which sets how long the broker may hold its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Activations and their records: a user waits on every message.
    Activation,
    /// Health pings and entity records: read continuously, waited on by nobody per request.
    Background,
}

impl Fetch {
    /// `fetch.wait.max.ms`. Activation: 2 ms, chosen against 5 ms in one benchmark run
    /// (BENCHMARKS.md, "Design measurements"): on a broker that holds each fetch for the full
    /// wait, each hop costs the
    /// wait plus up to one more, and the idle cost is one small fetch per wait per consumer —
    /// two such consumers per host. Background: 50 ms keeps an idle host's polling at twenty
    /// fetches a second per consumer, while an entity written on one host still reaches the
    /// others well within the invoker's wait for a revision.
    pub fn wait_ms(self) -> u32 {
        match self {
            Fetch::Activation => 2,
            Fetch::Background => 50,
        }
    }
}

/// The consumer settings for group `group`; `commit` says whether consumed offsets are
/// committed (the invoker resumes where it stopped; a controller does not need to); `fetch`
/// what the consumer waits on.
pub fn consumer_settings(brokers: &str, group: &str, commit: bool, fetch: Fetch) -> ClientConfig {
    let mut c = common(brokers);
    c.set("group.id", group)
        .set("enable.auto.commit", if commit { "true" } else { "false" })
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch.wait_ms().to_string())
        .set("fetch.min.bytes", "1")
        .set("fetch.error.backoff.ms", "50")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    c
}

/// The consumer settings of [`consumer_settings`] for a topic whose records reach
/// `max_bytes` (entities with their code, activation records with their logs): a fetch may
/// carry two of the largest, and librdkafka wants its receive buffer above a whole fetch.
pub fn large_consumer_settings(
    brokers: &str,
    group: &str,
    fetch: Fetch,
    max_bytes: usize,
) -> ClientConfig {
    let mut c = consumer_settings(brokers, group, false, fetch);
    let fetch_max = 2 * max_bytes;
    c.set("fetch.message.max.bytes", max_bytes.to_string())
        .set("fetch.max.bytes", fetch_max.to_string())
        .set("receive.message.max.bytes", (fetch_max + 1024 * 1024).to_string());
    c
}

/// A follower's consumer of a topic whose records reach `max_bytes`
/// ([`large_consumer_settings`]), tagged `role` in the logs.
pub(crate) fn follower(
    brokers: &str,
    group: &str,
    fetch: Fetch,
    max_bytes: usize,
    role: &'static str,
) -> Result<rdkafka::consumer::StreamConsumer<TracingContext>, super::KafkaError> {
    create(&large_consumer_settings(brokers, group, fetch, max_bytes), brokers, role)
}

/// A producer for records up to `max_bytes`, acknowledged within `delivery_timeout`, and an
/// admin client to create their topic, tagged `roles` in the logs.
pub(crate) fn producer_and_admin(
    brokers: &str,
    delivery_timeout: std::time::Duration,
    max_bytes: usize,
    roles: (&'static str, &'static str),
) -> Result<
    (
        rdkafka::producer::FutureProducer<TracingContext>,
        rdkafka::admin::AdminClient<TracingContext>,
    ),
    super::KafkaError,
> {
    let mut settings = producer_settings(brokers, delivery_timeout.as_millis() as u64);
    settings.set("message.max.bytes", max_bytes.to_string());
    Ok((create(&settings, brokers, roles.0)?, create(&settings, brokers, roles.1)?))
}

/// Creates a client from `settings` whose librdkafka logs are tagged with `role`; a failure is a
/// [`KafkaError::Client`](super::KafkaError::Client) naming the role and the brokers.
pub(crate) fn create<C: FromClientConfigAndContext<TracingContext>>(
    settings: &ClientConfig,
    brokers: &str,
    role: &'static str,
) -> Result<C, super::KafkaError> {
    settings.create_with_context(TracingContext { role }).map_err(|source| {
        super::KafkaError::Client { role, brokers: brokers.to_owned(), source: Box::new(source) }
    })
}

/// Forwards librdkafka's logs and errors to tracing, tagged with the client's role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TracingContext {
    pub role: &'static str,
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let role = self.role;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(role, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(role, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(role, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(role, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(role = self.role, %error, "kafka client error: {reason}");
    }
}

impl ConsumerContext for TracingContext {}

/// How long start-up waits to learn where a topic ends.
const WATERMARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The low and high watermarks of partition 0 of each of `topics`; `None` for one the broker
/// cannot say now (down at start-up, topic not created yet).
pub async fn watermarks<const N: usize>(
    brokers: &str,
    group: &str,
    topics: [&str; N],
) -> [Option<(i64, i64)>; N] {
    let settings = consumer_settings(brokers, group, false, Fetch::Background);
    let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    // librdkafka's watermark query blocks its thread.
    let queried = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer<TracingContext> =
            settings.create_with_context(TracingContext { role: "offsets" })?;
        let found = names
            .iter()
            .map(|t| (t.clone(), c.fetch_watermarks(t, 0, WATERMARK_TIMEOUT)))
            .collect::<Vec<_>>();
        // Its close must not hold this answer (attach.rs, `Assigned`).
        super::attach::detach(move || drop(c));
        Ok::<_, rdkafka::error::KafkaError>(found)
    })
    .await;
    let mut out = [None; N];
    match queried {
        Ok(Ok(found)) => {
            for (slot, (topic, w)) in out.iter_mut().zip(found) {
                match w {
                    Ok(w) => *slot = Some(w),
                    Err(e) => tracing::warn!(topic, error = %e, "where the topic ends is unknown"),
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot query where the topics end"),
        Err(e) => tracing::warn!(error = %e, "the topic end query failed"),
    }
    out
}

/// The offset `group` committed on partition 0 of `topic`: where a consumer of that group
/// resumes; `None` when it committed none (or the broker cannot say now).
pub async fn committed_offset(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let settings = consumer_settings(brokers, group, false, Fetch::Background);
    let topic = topic.to_string();
    let queried = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer<TracingContext> =
            settings.create_with_context(TracingContext { role: "offsets" })?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let found = c.committed_offsets(tpl, WATERMARK_TIMEOUT);
        super::attach::detach(move || drop(c));
        found
    })
    .await;
    match queried {
        Ok(Ok(tpl)) => tpl.elements().first().and_then(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the committed offset is unknown");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the committed offset query failed");
            None
        }
    }
}
