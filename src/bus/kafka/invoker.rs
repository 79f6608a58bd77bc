//! The invoker's side of the Kafka bus: [`serve_invoker`] consumes the invoker's topic, hands
//! each activation to the local invoker (any [`Dispatcher`]: the container pool in hearthd),
//! produces every record to the completion topic of the controller that sent it, and pings the
//! health topic.
//!
//! Every activation consumed ends with a record sent back: a refusal by the local pool, a lost
//! completion channel and a message that waited too long in the topic (the invoker was down;
//! its controllers have failed it already or are about to) all become "whisk internal error"
//! records. A stale message is never run: running it now could duplicate an activation its
//! controller already reported as failed.
//!
//! Everything the loop starts (completion waiters, the ping task) lives in a [`JoinSet`] owned
//! by the loop, so aborting or dropping the future stops all of it at once, like a process
//! that dies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::attach::{Assigned, Attachment};
use super::client::{consumer_settings, create, producer_settings, Fetch, TracingContext};
use super::error::{is_unknown_topic, KafkaError};
use super::topics::{completion_topic, ensure_topics, invoker_topic, HEALTH_TOPIC};
use super::wire::{decode, ActivationEnvelope};
use crate::balancer::{InvokerId, Ping};
use crate::dispatch::{ActivationMessage, Dispatcher, Timing};
use crate::model::{now_millis, Activation, ActivationStatus, KeyValue};
use crate::shutdown::Shutdown;

/// Activations waiting for their record at once. Beyond it the loop stops consuming (the
/// topic holds the rest): bounds memory when the pool queues more than it runs.
const MAX_OUTSTANDING: usize = 4096;

/// How often the invoker commits its position in its topic.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stopping invoker waits for its consumer to close (and its last commit to go
/// out) before it goes on stopping.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How one invoker talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaInvokerConfig {
    pub brokers: String,
    pub invoker_id: InvokerId,
    /// Memory for action containers, in MB, announced in every ping.
    pub capacity_mb: u64,
    /// How often to ping. Controllers declare the invoker offline after their own
    /// `offline_after` (10 s by default): ten missed pings.
    pub ping_interval: Duration,
    /// A message older than this when consumed is answered with a failure record instead of
    /// run; matches the controllers' offline time, after which they have failed it.
    pub stale_after: Duration,
    /// A system error within this window makes pings say "unhealthy".
    pub system_error_window: Duration,
    /// How long a record or ping may wait for the broker's acknowledgement. Long: a record is
    /// the result a user waits for, worth waiting out a short broker restart.
    pub delivery_timeout: Duration,
    pub replication: i32,
}

impl KafkaInvokerConfig {
    pub fn new(brokers: impl Into<String>, invoker_id: InvokerId, capacity_mb: u64) -> Self {
        Self {
            brokers: brokers.into(),
            invoker_id,
            capacity_mb,
            ping_interval: Duration::from_secs(1),
            stale_after: Duration::from_secs(10),
            system_error_window: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(30),
            replication: 1,
        }
    }
}

/// What the pings report, updated by the completion waiters.
#[derive(Debug, Default)]
struct Load {
    busy_mb: AtomicU64,
    /// Wall-clock ms of the last system error; 0: none.
    last_system_error_ms: AtomicU64,
}

struct Ctx {
    config: KafkaInvokerConfig,
    producer: FutureProducer<TracingContext>,
    admin: AdminClient<TracingContext>,
    load: Load,
}

impl Ctx {
    async fn ensure_own_topics(&self) -> Result<(), KafkaError> {
        let own = invoker_topic(self.config.invoker_id);
        ensure_topics(
            &self.admin,
            &self.config.brokers,
            &[&own, HEALTH_TOPIC],
            self.config.replication,
        )
        .await
    }

    /// Sends `record` to the controller that waits for it.
    async fn reply(&self, controller: &str, record: &Activation) {
        let topic = completion_topic(controller);
        let id = record.activation_id;
        if is_system_error(record) {
            self.load.last_system_error_ms.store(now_millis(), Ordering::Relaxed);
        }
        let payload = match serde_json::to_vec(record) {
            Ok(p) => p,
            Err(source) => {
                tracing::error!(error = %KafkaError::Encode { id, source }, "record dropped");
                return;
            }
        };
        let key = id.to_string();
        tracing::debug!(activation = %id, "sending the record");
        let rec = FutureRecord::to(&topic).key(&key).payload(&payload);
        if let Err((source, _)) = self.producer.send(rec, self.config.delivery_timeout).await {
            let e = KafkaError::Produce {
                what: format!("the record of activation {id}"),
                topic,
                brokers: self.config.brokers.clone(),
                source: Box::new(source),
            };
            // The controller's deadline records the activation as failed.
            tracing::error!(error = %e, "completion lost");
        }
    }

    fn ping(&self) -> Ping {
        let busy = self.load.busy_mb.load(Ordering::Relaxed);
        let last = self.load.last_system_error_ms.load(Ordering::Relaxed);
        make_ping(&self.config, busy, last, now_millis())
    }
}

/// The ping of an invoker with `busy_mb` running and its last system error at
/// `last_system_error_ms` (0: never), at wall-clock `now_ms`.
fn make_ping(
    config: &KafkaInvokerConfig,
    busy_mb: u64,
    last_system_error_ms: u64,
    now_ms: u64,
) -> Ping {
    let window = config.system_error_window.as_millis() as u64;
    Ping {
        invoker: config.invoker_id,
        capacity_mb: config.capacity_mb,
        free_mb: config.capacity_mb.saturating_sub(busy_mb),
        system_error: last_system_error_ms != 0
            && now_ms.saturating_sub(last_system_error_ms) <= window,
        sent_at_ms: now_ms,
    }
}

/// Serves invoker `config.invoker_id` until `shutdown`: consumes `hearth.invoker.<id>` and
/// pings `hearth.health`. Returns an error only when the clients cannot be created; a broker
/// outage is waited out (and logged).
pub async fn serve_invoker(
    config: KafkaInvokerConfig,
    dispatcher: Arc<dyn Dispatcher>,
    mut shutdown: Shutdown,
) -> Result<(), KafkaError> {
    let brokers = config.brokers.clone();
    let id = config.invoker_id;
    let delivery_ms = config.delivery_timeout.as_millis() as u64;
    let settings = producer_settings(&brokers, delivery_ms);
    let producer: FutureProducer<TracingContext> = create(&settings, &brokers, "invoker producer")?;
    let admin: AdminClient<TracingContext> = create(&settings, &brokers, "invoker admin")?;
    let topic = invoker_topic(id);
    // Committed offsets (group `hearth.<topic>`, no membership): a restarted invoker resumes
    // after what it already took.
    let group = format!("hearth.{topic}");
    let make = || {
        create::<StreamConsumer<TracingContext>>(
            &consumer_settings(&brokers, &group, false, Fetch::Activation),
            &brokers,
            "invoker consumer",
        )
    };
    // Fails now if the settings can never work, rather than retrying forever.
    drop(make()?);
    let ctx = Arc::new(Ctx { config, producer, admin, load: Load::default() });
    // Assigned (one partition, one invoker with this id) from the committed offset (earliest
    // when none), and only while the topic exists (see attach.rs). Not a subscription: a
    // consumer-group member's close waits for a rebalance round trip, which would stall a
    // dying task and slow every restart.
    let mut at = Attachment::new(&topic, Offset::Stored);
    tracing::info!(invoker = %id, %brokers, "serving activations from Kafka");

    let mut pinger = JoinSet::new();
    pinger.spawn(ping_loop(ctx.clone()).instrument(tracing::Span::current()));
    let mut tasks = JoinSet::new();
    let permits = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let mut commits = Commits::new(&topic);
    let mut commit_every = tokio::time::interval(COMMIT_INTERVAL);
    let mut consumer: Option<Assigned<TracingContext>> = None;
    'serve: loop {
        // Reap finished waiters so the set does not grow with every activation served.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let c = match consumer.take() {
            Some(c) => c,
            None => tokio::select! {
                _ = shutdown.wait() => break 'serve,
                c = at.connect(make, || ctx.ensure_own_topics()) => c,
            },
        };
        let m = loop {
            tokio::select! {
                _ = shutdown.wait() => break None,
                _ = commit_every.tick() => commits.flush(&c),
                m = c.recv() => break Some(m),
            }
        };
        let Some(m) = m else {
            // The last position goes out with the close (bounded: a broker that went away
            // does not hold the stop).
            commits.flush(&c);
            c.close(CLOSE_WAIT).await;
            break 'serve;
        };
        let gone = match m {
            Ok(m) => {
                commits.taken(m.offset());
                at.consumed(m.offset());
                if let Some(envelope) = decode::<ActivationEnvelope>(&m, "activation") {
                    let age_ms = m
                        .timestamp()
                        .to_millis()
                        .map_or(0, |t| now_millis().saturating_sub(t as u64));
                    let ctx2 = ctx.clone();
                    let dispatcher = dispatcher.clone();
                    let span = tracing::debug_span!("kafka_activation", activation = %envelope.msg.activation_id, invoker = %id);
                    tasks.spawn(
                        async move {
                            handle(&ctx2, dispatcher.as_ref(), envelope, age_ms).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                false
            }
            Err(e) => {
                tracing::warn!(invoker = %id, error = %e, "consuming activations failed");
                at.recover(&e).await
            }
        };
        if !gone {
            consumer = Some(c);
        }
    }
    // Shutdown: take no more, but let what runs finish and report (still pinging, so the
    // controllers do not fail it meanwhile); the pool's own shutdown bounds this wait.
    tracing::info!(invoker = %id, outstanding = tasks.len(), "stopped consuming activations");
    while tasks.join_next().await.is_some() {}
    pinger.abort_all();
    tracing::info!(invoker = %id, "stopped serving activations from Kafka");
    Ok(())
}

/// The invoker's position in its topic, committed to the broker every [`COMMIT_INTERVAL`] so
/// that a restarted invoker resumes after what it already took (and never runs it twice).
///
/// Committed by hand, asynchronously, rather than by librdkafka's auto-commit: auto-commit
/// also commits while the consumer closes, and that close waited forever against the test
/// broker, stalling the task that dropped the consumer. An invoker killed between two commits
/// sees at most 100 ms of activations again; their messages are then older than the time it
/// took to restart, and the stale rule answers them (with a failure record) instead of running
/// them when that exceeds `stale_after`.
#[derive(Debug)]
struct Commits {
    topic: String,
    taken: Option<i64>,
    committed: Option<i64>,
}

impl Commits {
    fn new(topic: &str) -> Self {
        Self { topic: topic.to_string(), taken: None, committed: None }
    }

    fn taken(&mut self, offset: i64) {
        self.taken = Some(offset);
    }

    fn flush(&mut self, consumer: &StreamConsumer<TracingContext>) {
        let Some(taken) = self.taken.filter(|t| Some(*t) != self.committed) else { return };
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&self.topic, 0, Offset::Offset(taken + 1)).is_err() {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => self.committed = Some(taken),
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "committing the invoker's offset failed")
            }
        }
    }
}

/// Runs one activation locally and sends its record back; a refusal or a stale message gets
/// a failure record.
async fn handle(ctx: &Ctx, dispatcher: &dyn Dispatcher, envelope: ActivationEnvelope, age_ms: u64) {
    let ActivationEnvelope { controller, msg } = envelope;
    let id = ctx.config.invoker_id;
    let stale_ms = ctx.config.stale_after.as_millis() as u64;
    if age_ms > stale_ms {
        let why = format!(
            "{id} found this activation {age_ms} ms after it was sent (it was down); not run, so it cannot run twice"
        );
        tracing::warn!("{why}");
        ctx.reply(&controller, &stamped(msg.lost_record(why, Timing::since_accepted(&msg)), id))
            .await;
        return;
    }
    let memory = msg.limits.memory;
    let fallback: ActivationMessage = msg.clone();
    let record = match dispatcher.dispatch(msg).await {
        Ok(done) => {
            ctx.load.busy_mb.fetch_add(memory, Ordering::Relaxed);
            let record = done.await.unwrap_or_else(|_| {
                fallback.lost_record(
                    format!("{id} lost the activation before it ended"),
                    Timing::since_accepted(&fallback),
                )
            });
            ctx.load.busy_mb.fetch_sub(memory, Ordering::Relaxed);
            record
        }
        Err(e) => fallback.lost_record(
            format!("{id} refused the activation: {e}"),
            Timing::since_accepted(&fallback),
        ),
    };
    ctx.reply(&controller, &stamped(record, id)).await;
}

/// Whether `record` says this invoker is failing (pings then report "unhealthy" for a while):
/// a whisk internal error, except an activation not run because its action revision was
/// superseded, which is the cluster's entities moving on, not this host breaking.
fn is_system_error(record: &Activation) -> bool {
    record.response.status == ActivationStatus::InternalError && !record.is_superseded()
}

/// The record with an `invoker` annotation naming who ran it (`invoker2`): which host ran an
/// activation is what an operator asks first in a cluster.
fn stamped(mut record: Activation, id: InvokerId) -> Activation {
    if !record.annotations.iter().any(|a| a.key == "invoker") {
        record.annotations.push(KeyValue::new("invoker", id.to_string()));
    }
    record
}

async fn ping_loop(ctx: Arc<Ctx>) {
    let mut every = tokio::time::interval(ctx.config.ping_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let ping = ctx.ping();
        let payload = match serde_json::to_vec(&ping) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a ping");
                continue;
            }
        };
        let key = ping.invoker.0.to_string();
        let rec = FutureRecord::to(HEALTH_TOPIC).key(&key).payload(&payload);
        // Not waited for longer than one interval: the next ping supersedes this one.
        match tokio::time::timeout(ctx.config.ping_interval, ctx.producer.send(rec, Duration::ZERO))
            .await
        {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err((e, _))) => {
                tracing::warn!(invoker = %ping.invoker, error = %e, "ping not delivered");
                if is_unknown_topic(&e) {
                    if let Err(e) = ctx.ensure_own_topics().await {
                        tracing::warn!(error = %e, "re-creating the invoker's topics failed");
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
    fn pings_report_free_memory_and_recent_system_errors() {
        let cfg = KafkaInvokerConfig::new("127.0.0.1:1", InvokerId(2), 2048);
        let now = 1_000_000;
        let p = make_ping(&cfg, 512, 0, now);
        assert_eq!(
            (p.invoker, p.capacity_mb, p.free_mb, p.system_error),
            (InvokerId(2), 2048, 1536, false)
        );
        assert_eq!(p.sent_at_ms, now);
        assert!(
            make_ping(&cfg, 0, now - 30_000, now).system_error,
            "30 s ago is within the window"
        );
        assert!(!make_ping(&cfg, 0, now - 30_001, now).system_error);
        assert_eq!(make_ping(&cfg, 4096, 0, now).free_mb, 0, "overbooked is zero, not negative");
    }

    #[test]
    fn a_superseded_revision_is_not_a_system_error() {
        let msg = crate::testing::message("g", "a", 1);
        let mut record = msg.lost_record("runc broke", Timing::since_accepted(&msg));
        assert!(is_system_error(&record));
        record.mark_superseded();
        assert!(!is_system_error(&record));
    }
}
