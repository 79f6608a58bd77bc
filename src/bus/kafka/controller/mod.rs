//! The controller's side of the Kafka bus: [`KafkaBus`], a [`Dispatcher`] over many invokers.
//!
//! One dispatch: the balancer picks an up invoker with room (and reserves the action's memory
//! there), the activation is registered as in flight, then produced to the invoker's topic;
//! the broker's acknowledgement is the admission. Completions arrive on this controller's own
//! topic and are routed by activation id to the waiting oneshot.
//!
//! Four background tasks, stopped when the bus is dropped:
//! - the completion consumer (`hearth.completed.<id>`),
//! - the health consumer (`hearth.health`, [`health`]), feeding invokers' and other
//!   controllers' pings to the balancer (the controller count divides every invoker's memory
//!   between controllers), starting with the topic's recent history,
//! - the pinger ([`health`]): this controller's own ping on the health topic, so the others
//!   count it,
//! - the sweeper: marks silent invokers offline and fails what was in flight on them, and fails
//!   any activation whose completion is overdue (its timeout plus a grace period), so an
//!   activation whose message or record the cluster lost still ends with a record.
//!
//! Failed in-flight activations are not retried on another invoker: the controller cannot tell
//! "not yet started" from "running" on an invoker it lost, and running a non-idempotent action
//! twice is worse than a recorded internal error (docs/KAFKA.md).

mod health;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use self::health::{consume_health, ping_loop, HealthHistory};
use super::attach::Attachment;
use super::client::{
    committed_offset, consumer_settings, create, producer_settings, watermarks, Fetch,
    TracingContext,
};
use super::error::{is_unknown_topic, KafkaError};
use super::topics::{
    completion_topic, ensure_topics, invoker_topic, valid_client_id, HEALTH_TOPIC,
};
use super::wire::{decode, ActivationEnvelope};
use crate::balancer::{
    BalancerConfig, Health, InvokerId, InvokerState, ShardingBalancer, Transition,
};
use crate::bus::{Unclaimed, UnclaimedSink};
use crate::dispatch::{
    ActivationMessage, Completion, DispatchError, DispatchFuture, Dispatcher, InvokerView, Timing,
};
use crate::model::{Activation, ActivationId};

/// How often the completion consumer commits its position, and how far behind.
const COMMIT_LAG: Duration = Duration::from_secs(1);

/// How often the sweeper looks for silent invokers and overdue activations: a tenth of a
/// second adds at most that to the offline time, for a scan of the in-flight map.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How the controller talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// This controller's id, unique in the cluster: names its completion topic.
    pub controller_id: String,
    pub balancer: BalancerConfig,
    /// How long the broker may take to acknowledge an activation before the dispatch fails
    /// with Unavailable (503). Short: a healthy broker answers in milliseconds, and a user
    /// waiting on a dead broker should hear so quickly.
    pub delivery_timeout: Duration,
    /// An activation with no completion after its action timeout plus this is recorded as a
    /// whisk internal error (the invoker, the broker or the record was lost). As OpenWhisk's
    /// forced completion: the invoker may first queue the activation behind others.
    pub completion_grace: Duration,
    /// Replication factor of the topics this controller creates.
    pub replication: i32,
    /// How often this controller pings the health topic so that the other controllers count
    /// it (each schedules capacity / controllers). As the invokers' 1 s: the same offline
    /// time judges both.
    pub ping_interval: Duration,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, controller_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            controller_id: controller_id.into(),
            balancer: BalancerConfig::default(),
            delivery_timeout: Duration::from_secs(3),
            completion_grace: Duration::from_secs(60),
            replication: 1,
            ping_interval: Duration::from_secs(1),
        }
    }
}

/// An activation sent to an invoker whose record has not arrived.
#[derive(Debug)]
struct InFlight {
    invoker: InvokerId,
    memory_mb: u64,
    deadline: Instant,
    msg: ActivationMessage,
    completion: oneshot::Sender<Activation>,
}

#[derive(Debug)]
struct State {
    balancer: ShardingBalancer,
    in_flight: HashMap<ActivationId, InFlight>,
}

struct Shared {
    config: KafkaConfig,
    producer: FutureProducer<TracingContext>,
    admin: AdminClient<TracingContext>,
    state: Mutex<State>,
    /// Whether the health consumer has read the pings that were on the topic when this
    /// controller started: until then "no invoker" may only mean "not read yet".
    history_read: tokio::sync::watch::Sender<bool>,
    /// Where a record goes that nobody waits for: one that arrived while this controller was
    /// down (read from where it last committed), for an activation it acknowledged before.
    unclaimed: UnclaimedSink,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a record to whoever waits for it and frees its memory in the balancer.
    fn complete(&self, record: Activation) {
        let entry = {
            let mut st = self.state();
            let entry = st.in_flight.remove(&record.activation_id);
            if let Some(e) = &entry {
                st.balancer.release(e.invoker, e.memory_mb);
            }
            entry
        };
        match entry {
            Some(e) => {
                tracing::debug!(activation = %record.activation_id, "completion received");
                let _ = e.completion.send(record);
            }
            // An activation of a previous run of this controller (read back from its last
            // commit), or one already failed (offline, overdue: the first record stands).
            None => self.unclaimed.hand(record),
        }
    }

    /// Fails every in-flight activation `pick` selects, with `why(entry)` as the message.
    fn fail_where(
        &self,
        pick: impl Fn(&InFlight) -> bool,
        why: impl Fn(&InFlight) -> String,
    ) -> usize {
        let lost: Vec<InFlight> = {
            let mut st = self.state();
            let ids: Vec<ActivationId> =
                st.in_flight.iter().filter(|(_, e)| pick(e)).map(|(id, _)| *id).collect();
            let lost: Vec<InFlight> = ids.iter().filter_map(|id| st.in_flight.remove(id)).collect();
            for e in &lost {
                st.balancer.release(e.invoker, e.memory_mb);
            }
            lost
        };
        let n = lost.len();
        for e in lost {
            let message = why(&e);
            tracing::warn!(activation = %e.msg.activation_id, invoker = %e.invoker, "{message}");
            let _ = e.completion.send(e.msg.lost_record(message, Timing::since_accepted(&e.msg)));
        }
        n
    }

    /// Logs a change of the live controller count (the share of every invoker's memory).
    fn on_controllers(&self, n: usize) {
        tracing::info!(
            controllers = n,
            "controllers in the cluster changed: this one now schedules 1/{n} of every invoker's memory"
        );
    }

    fn on_transition(&self, t: Transition) {
        match t.to {
            Health::Up => tracing::info!(invoker = %t.invoker, from = %t.from, "invoker is up"),
            Health::Unhealthy => {
                tracing::warn!(invoker = %t.invoker, "invoker reports system errors: no new work")
            }
            Health::Offline => {
                let secs = self.config.balancer.offline_after.as_secs_f64();
                let failed = self.fail_where(
                    |e| e.invoker == t.invoker,
                    |e| {
                        format!(
                            "{} went offline (no health ping for {secs} s) with this activation in flight",
                            e.invoker
                        )
                    },
                );
                tracing::error!(invoker = %t.invoker, failed, "invoker is offline");
            }
        }
    }
}

/// The controller's [`Dispatcher`] over Kafka. Dropping it stops its background tasks.
#[derive(Debug)]
pub struct KafkaBus {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KafkaBus {
    /// Creates the clients, the controller's topics (best effort: a broker that is down now is
    /// retried by the consumers) and starts consuming completions and pings. Fails only on
    /// settings that can never work.
    pub async fn connect(config: KafkaConfig) -> Result<Self, KafkaError> {
        if !valid_client_id(&config.controller_id) {
            return Err(KafkaError::BadControllerId(config.controller_id));
        }
        let brokers = config.brokers.clone();
        let delivery_ms = config.delivery_timeout.as_millis() as u64;
        let settings = producer_settings(&brokers, delivery_ms);
        let producer: FutureProducer<TracingContext> =
            create(&settings, &brokers, "controller producer")?;
        let admin: AdminClient<TracingContext> = create(&settings, &brokers, "controller admin")?;
        let completions_topic = completion_topic(&config.controller_id);
        if let Err(e) =
            ensure_topics(&admin, &brokers, &[&completions_topic, HEALTH_TOPIC], config.replication)
                .await
        {
            tracing::warn!(error = %e, "topics not created yet; retrying in the background");
        }
        let group = format!("hearth.controller.{}", config.controller_id);
        // Fails now, not later in a loop, if the consumer settings can never work.
        drop(controller_consumer(&brokers, &group, "controller completions", Fetch::Activation)?);
        let [completions, health] =
            watermarks(&brokers, &group, [completions_topic.as_str(), HEALTH_TOPIC]).await;
        // Where this controller left its completion topic (committed as it goes): records
        // that arrived while it was down go to the unclaimed sink. With no commit (a new
        // controller), from the end: what is there belongs to nobody here.
        let start = match committed_offset(&brokers, &group, &completions_topic).await {
            Some(at) => Offset::Offset(at),
            None => completions.map_or(Offset::Beginning, |(_, high)| Offset::Offset(high)),
        };
        let history = HealthHistory::new(health);

        let state =
            State { balancer: ShardingBalancer::new(config.balancer), in_flight: HashMap::new() };
        let span = tracing::info_span!("kafka_bus", controller = %config.controller_id);
        let (history_read, _) = tokio::sync::watch::channel(history.is_empty());
        let shared = Arc::new(Shared {
            config,
            producer,
            admin,
            state: Mutex::new(state),
            history_read,
            unclaimed: UnclaimedSink::default(),
        });
        let tasks = vec![
            tokio::spawn(consume_completions(shared.clone(), start).instrument(span.clone())),
            tokio::spawn(consume_health(shared.clone(), history).instrument(span.clone())),
            tokio::spawn(ping_loop(shared.clone()).instrument(span.clone())),
            tokio::spawn(sweep(shared.clone()).instrument(span)),
        ];
        Ok(Self { shared, tasks })
    }

    /// Returns once the health topic's recent pings are read (at most a few seconds): a
    /// controller that announces itself ready then knows the live invokers.
    pub async fn health_read(&self) {
        if !*self.shared.history_read.borrow() {
            self.shared.history().await;
        }
    }

    /// Installs where records go that no request waits for: those of activations this
    /// controller acknowledged before it restarted, which arrived meanwhile (the daemon
    /// writes them over the stub or the placeholder its restart left). Once; later calls are
    /// ignored.
    pub fn on_unclaimed(&self, sink: Unclaimed) {
        self.shared.unclaimed.install(sink);
    }

    /// A snapshot of every invoker slot this controller knows (for status output and tests).
    pub fn invokers(&self) -> Vec<InvokerState> {
        self.shared.state().balancer.invokers().to_vec()
    }

    /// The health of one invoker as this controller sees it.
    pub fn health(&self, id: InvokerId) -> Health {
        self.shared.state().balancer.health(id)
    }

    /// How many controllers share the invokers as this one sees it (itself included).
    pub fn controllers(&self) -> usize {
        self.shared.state().balancer.controllers()
    }

    /// The memory of invoker `id` this controller may schedule: its capacity divided by the
    /// live controllers.
    pub fn share_mb(&self, id: InvokerId) -> u64 {
        self.shared.state().balancer.share_mb(id)
    }

    /// How many activations wait for their record.
    pub fn in_flight(&self) -> usize {
        self.shared.state().in_flight.len()
    }

    /// Where the activations of `action` go first (its home invoker), once invokers are known.
    pub fn home_invoker(&self, action: &crate::model::FullyQualifiedName) -> Option<InvokerId> {
        let st = self.shared.state();
        st.balancer.home_and_step(action).map(|(home, _)| InvokerId(home as u32))
    }

    async fn dispatch_inner(&self, msg: ActivationMessage) -> Result<Completion, DispatchError> {
        let shared = &self.shared;
        let id = msg.activation_id;
        let memory_mb = msg.limits.memory;
        let envelope = ActivationEnvelope { controller: shared.config.controller_id.clone(), msg };
        let payload = serde_json::to_vec(&envelope).map_err(|source| {
            DispatchError::Unavailable(KafkaError::Encode { id, source }.to_string())
        })?;
        let msg = envelope.msg;
        let deadline = Instant::now() + msg.limits.timeout() + shared.config.completion_grace;
        let (done_tx, done_rx) = oneshot::channel();
        self.health_read().await;
        let choice = {
            let mut st = shared.state();
            let choice = st.balancer.choose(&msg.action, memory_mb).map_err(|e| {
                DispatchError::Unavailable(format!("{e} (brokers {})", shared.config.brokers))
            })?;
            // Registered before producing: the record may come back before the ack does.
            st.in_flight.insert(
                id,
                InFlight { invoker: choice.invoker, memory_mb, deadline, msg, completion: done_tx },
            );
            choice
        };
        if choice.overloaded {
            tracing::debug!(invoker = %choice.invoker, "every invoker is full: queueing at the home invoker");
        }
        let topic = invoker_topic(choice.invoker);
        let key = id.to_string();
        let mut result = self.produce(&topic, &key, &payload).await;
        if matches!(&result, Err(e) if is_unknown_topic(e)) {
            // The broker lost the topic (restarted with memory storage): re-create, try once more.
            let _ = ensure_topics(
                &shared.admin,
                &shared.config.brokers,
                &[&topic],
                shared.config.replication,
            )
            .await;
            result = self.produce(&topic, &key, &payload).await;
        }
        match result {
            Ok(()) => Ok(done_rx),
            Err(source) => {
                let mut st = shared.state();
                if let Some(e) = st.in_flight.remove(&id) {
                    st.balancer.release(e.invoker, e.memory_mb);
                }
                let err = KafkaError::Produce {
                    what: format!("activation {id}"),
                    topic,
                    brokers: shared.config.brokers.clone(),
                    source: Box::new(source),
                };
                tracing::error!(error = %err, "dispatch failed: Kafka is unavailable");
                Err(DispatchError::Unavailable(format!("the message bus is unavailable: {err}")))
            }
        }
    }

    async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(), rdkafka::error::KafkaError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        self.shared
            .producer
            .send(record, self.shared.config.delivery_timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

impl Dispatcher for KafkaBus {
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        let span = tracing::debug_span!("kafka_dispatch", activation = %msg.activation_id, action = %msg.action);
        Box::pin(self.dispatch_inner(msg).instrument(span))
    }

    fn invokers(&self) -> Vec<InvokerView> {
        self.shared
            .state()
            .balancer
            .invokers()
            .iter()
            .map(|s| InvokerView { id: s.id, health: s.health })
            .collect()
    }

    fn controllers(&self) -> usize {
        KafkaBus::controllers(self)
    }
}

/// Creates the controller's topics unless they exist.
async fn ensure_controller_topics(shared: &Shared) -> Result<(), KafkaError> {
    let topic = completion_topic(&shared.config.controller_id);
    ensure_topics(
        &shared.admin,
        &shared.config.brokers,
        &[&topic, HEALTH_TOPIC],
        shared.config.replication,
    )
    .await
}

/// A consumer for one of this controller's topics (no group membership; see docs/KAFKA.md).
fn controller_consumer(
    brokers: &str,
    group: &str,
    role: &'static str,
    fetch: Fetch,
) -> Result<StreamConsumer<TracingContext>, KafkaError> {
    consumer_settings(brokers, group, false, fetch)
        .create_with_context(TracingContext { role })
        .map_err(|source| KafkaError::Client {
            role,
            brokers: brokers.to_string(),
            source: Box::new(source),
        })
}

/// Consumes partition 0 of `topic` forever, handing each message to `handle`; survives broker
/// outages and re-created topics (see attach.rs). With `commit`, the position is committed
/// every [`COMMIT_LAG`], one period behind (what was handled a period ago has had that long to
/// be recorded), so a restart resumes about there.
async fn consume_topic(
    shared: &Shared,
    topic: &str,
    start: Offset,
    role: &'static str,
    fetch: Fetch,
    commit: bool,
    mut handle: impl FnMut(&BorrowedMessage<'_>),
) {
    let group = format!("hearth.controller.{}", shared.config.controller_id);
    let brokers = shared.config.brokers.as_str();
    let mut at = Attachment::new(topic, start);
    let mut consumer = None;
    let mut every = tokio::time::interval(COMMIT_LAG);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last offset handled, and the one handled a period ago (the next to commit).
    let (mut handled, mut due): (Option<i64>, Option<i64>) = (None, None);
    loop {
        let c = match consumer.take() {
            Some(c) => c,
            None => {
                at.connect(
                    || controller_consumer(brokers, &group, role, fetch),
                    || ensure_controller_topics(shared),
                )
                .await
            }
        };
        let m = tokio::select! {
            m = c.recv() => m,
            _ = every.tick(), if commit => {
                if let Some(o) = due.take() {
                    let mut tpl = rdkafka::TopicPartitionList::new();
                    let added = tpl.add_partition_offset(topic, 0, Offset::Offset(o + 1));
                    if let Err(e) = added.and_then(|()| c.commit(&tpl, CommitMode::Async)) {
                        tracing::debug!(topic, error = %e, "committing the position failed");
                    }
                }
                due = handled;
                consumer = Some(c);
                continue;
            }
        };
        let gone = match m {
            Ok(m) => {
                at.consumed(m.offset());
                handle(&m);
                handled = Some(m.offset());
                false
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "consuming failed");
                at.recover(&e).await
            }
        };
        if !gone {
            consumer = Some(c);
        }
    }
}

async fn consume_completions(shared: Arc<Shared>, start: Offset) {
    let topic = completion_topic(&shared.config.controller_id);
    consume_topic(&shared, &topic, start, "controller completions", Fetch::Activation, true, |m| {
        if let Some(record) = decode::<Activation>(m, "completion") {
            shared.complete(record);
        }
    })
    .await
}

async fn sweep(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = Instant::now();
        let (transitions, controllers) = {
            let mut st = shared.state();
            (st.balancer.tick(now), st.balancer.tick_controllers(now))
        };
        for t in transitions {
            shared.on_transition(t);
        }
        if let Some(n) = controllers {
            shared.on_controllers(n);
        }
        let grace = shared.config.completion_grace.as_secs();
        shared.fail_where(
            |e| e.deadline <= now,
            |e| {
                format!(
                    "no completion from {} within the action's timeout plus {grace} s: the activation or its record was lost",
                    e.invoker
                )
            },
        );
    }
}
