//! The Kafka bus against a real Kafka-protocol broker (tansu, memory storage), started by each
//! test on a free loopback port and stopped by pid at the end.
//!
//! The invokers here are `serve_invoker` loops in this process around the test kit's
//! [`FakeInvoker`], standing in for the container pool (the real pool is tested elsewhere): it
//! answers at once with a success record naming the invoker, or holds activations whose params
//! say `"hold": true` (a long run) for as long as it lives.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod broker;
use broker::{p50, Broker};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth::balancer::{BalancerConfig, Health, InvokerId};
use hearth::bus::kafka::{
    follow_entities, serve_invoker, EntityLog, EntityRecord, EntitySink, KafkaBus, KafkaConfig,
    KafkaInvokerConfig, Position,
};
use hearth::dispatch::{ActivationMessage, DispatchError, Dispatcher};
use hearth::model::{
    ActionLimits, ActivationId, ActivationStatus, EntityName, ExecMeta, FullyQualifiedName, Kind,
};
use hearth::shutdown::{self, ShutdownTrigger};
use hearth::testing::{eventually_within, FakeInvoker};
use tokio::task::JoinHandle;

fn message(name: &str, n: u64) -> ActivationMessage {
    let ns = EntityName::parse("guest").unwrap();
    ActivationMessage {
        activation_id: ActivationId::generate(),
        action: FullyQualifiedName::new(ns.clone(), EntityName::parse(name).unwrap()),
        revision: 1,
        version: "0.0.1".into(),
        exec: ExecMeta {
            kind: Kind::parse("python:3").unwrap(),
            main: None,
            binary: false,
            image: None,
        },
        limits: ActionLimits::default(),
        subject: ns,
        params: serde_json::json!({ "n": n }).as_object().unwrap().clone(),
        received_at_ms: hearth::model::now_millis(),
        publish: false,
        cause: None,
        annotations: Vec::new(),
    }
}

struct RunningInvoker {
    pool: Arc<FakeInvoker>,
    task: JoinHandle<()>,
    trigger: ShutdownTrigger,
}

fn start_invoker(brokers: &str, id: u32, ping: Duration) -> RunningInvoker {
    let pool = Arc::new(FakeInvoker::naming(id));
    let mut cfg = KafkaInvokerConfig::new(brokers, InvokerId(id), 4096);
    cfg.ping_interval = ping;
    let (trigger, sd) = shutdown::channel();
    let dispatcher: Arc<dyn Dispatcher> = pool.clone();
    let task = tokio::spawn(async move {
        serve_invoker(cfg, dispatcher, sd).await.unwrap();
    });
    RunningInvoker { pool, task, trigger }
}

async fn connect(brokers: &str, id: &str, offline_after: Duration) -> KafkaBus {
    let mut cfg = KafkaConfig::new(brokers, id);
    cfg.balancer = BalancerConfig { offline_after };
    cfg.delivery_timeout = Duration::from_secs(2);
    cfg.ping_interval = Duration::from_millis(200);
    KafkaBus::connect(cfg).await.unwrap()
}

/// How often the waits below look again: a broker round trip is a few ms, a ping 200 ms.
const POLL: Duration = Duration::from_millis(20);

/// `Ok` when `holds`, else what was `seen` (for the failure message of a wait).
fn check(holds: bool, seen: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(seen())
    }
}

async fn wait_up(bus: &KafkaBus, n: usize) {
    let what = format!("{n} invokers up");
    eventually_within(&what, Duration::from_secs(30), POLL, || async move {
        let up = bus.invokers().iter().filter(|s| s.health == Health::Up).count();
        check(up >= n, || format!("only {up} up: {:?}", bus.invokers()))
    })
    .await
}

async fn wait_controllers(bus: &KafkaBus, n: usize) {
    let what = format!("{n} controllers seen");
    eventually_within(&what, Duration::from_secs(30), POLL, || async move {
        check(bus.controllers() == n, || format!("sees {}", bus.controllers()))
    })
    .await
}

async fn wait_held(pool: &FakeInvoker, n: usize) {
    let what = format!("invoker{} holds {n}", pool.id());
    eventually_within(&what, Duration::from_secs(10), POLL, || async move {
        check(pool.held() >= n, || format!("holds {}", pool.held()))
    })
    .await
}

async fn invoke(bus: &KafkaBus, msg: ActivationMessage) -> hearth::model::Activation {
    let id = msg.activation_id;
    let done = bus.dispatch(msg).await.unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .expect("no completion within 20 s")
        .expect("completion sender dropped");
    assert_eq!(rec.activation_id, id);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_round_trip_spread_by_home_invoker_and_measured() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let invokers: Vec<_> =
        (0..3).map(|i| start_invoker(&brokers, i, Duration::from_millis(200))).collect();
    let bus = connect(&brokers, "ctl0", Duration::from_secs(10)).await;
    wait_up(&bus, 3).await;

    // One round trip.
    let rec = invoke(&bus, message("hello", 7)).await;
    assert!(rec.response.success, "{rec:?}");
    assert_eq!(rec.response.result["params"]["n"], 7);

    // Many in parallel.
    let bus = Arc::new(bus);
    let mut joins = Vec::new();
    for i in 0..200u64 {
        let bus = bus.clone();
        joins.push(tokio::spawn(async move {
            let rec = invoke(&bus, message(&format!("par{}", i % 17), i)).await;
            assert_eq!(rec.response.result["params"]["n"], i);
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(bus.in_flight(), 0);

    // Spread: each action always runs on its home invoker; the actions cover every invoker.
    let mut used = [0u32; 3];
    for a in 0..30 {
        let name = format!("spread{a}");
        let home = bus.home_invoker(&message(&name, 0).action).unwrap();
        for k in 0..4 {
            let rec = invoke(&bus, message(&name, k)).await;
            let ran_on = rec.response.result["invoker"].as_u64().unwrap() as u32;
            assert_eq!(ran_on, home.0, "{name} ran on invoker{ran_on}, home is {home}");
            used[ran_on as usize] += 1;
        }
    }
    assert!(used.iter().all(|&c| c > 0), "some invoker got nothing: {used:?}");
    println!("spread of 30 actions x 4 over 3 invokers: {used:?}");

    // Latency, measured in the same run (reported, not asserted).
    let broker_rtt = broker::round_trips(&brokers, 200).await;
    let mut bus_rtt = Vec::new();
    for i in 0..220u64 {
        let t0 = Instant::now();
        invoke(&bus, message("latency", i)).await;
        if i >= 20 {
            bus_rtt.push(t0.elapsed());
        }
    }
    let (b50, d50) = (p50(broker_rtt), p50(bus_rtt));
    println!(
        "MEASURED broker produce->consume p50 = {:.2} ms; bus dispatch->completion p50 = {:.2} ms \
         (two Kafka hops, instant dispatcher)",
        b50.as_secs_f64() * 1e3,
        d50.as_secs_f64() * 1e3
    );
    for inv in invokers {
        inv.task.abort();
    }
}

/// Two controllers each schedule half of an invoker's memory (OpenWhisk's capacity / cluster
/// size), learnt from each other's pings; when one dies, the other gets the whole back after
/// the offline time.
/// A controller started into a running cluster reads the health topic's recent pings: its
/// first dispatch goes out at once (not a 503 for invokers it has not heard from yet), and an
/// invoker that stopped before it started goes offline by the age of its last ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_starting_into_a_running_cluster_knows_its_invokers_at_once() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let offline_after = Duration::from_secs(2);
    let live = start_invoker(&brokers, 0, Duration::from_secs(1));
    let stopping = start_invoker(&brokers, 1, Duration::from_millis(200));
    let first = connect(&brokers, "ctl-first", offline_after).await;
    wait_up(&first, 2).await;
    stopping.task.abort();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A ping a second at most: without the history, invoker0 is unknown for up to a second.
    let t = Instant::now();
    let late = connect(&brokers, "ctl-late", offline_after).await;
    // An action at home on invoker0, the live one (invoker1 still counts as up: its last ping
    // is younger than the offline time).
    let m = (0..)
        .map(|i| message(&format!("at-once{i}"), 1))
        .find(|m| first.home_invoker(&m.action) == Some(InvokerId(0)))
        .unwrap();
    let rec = invoke(&late, m).await;
    assert!(rec.response.success, "{rec:?}");
    assert_eq!(rec.response.result["invoker"], 0);
    println!("first invoke through a new controller {:?} after it was created", t.elapsed());

    // invoker1's last ping was sent about a second before `late` started: offline about a
    // second later, not `offline_after` after `late` read it (that would be 3.2 s or more
    // after the stop; the bound leaves room for a loaded machine's scheduling).
    let within = (t + Duration::from_secs(5)).saturating_duration_since(Instant::now());
    let late = &late;
    eventually_within("invoker1 offline", within, POLL, || async move {
        let health = late.health(InvokerId(1));
        check(health == Health::Offline, || format!("still {health:?}"))
    })
    .await;
    let offline_at = stopped.elapsed();
    println!("a stopped invoker offline {offline_at:?} after it stopped (offline after {offline_after:?})");
    assert!(
        offline_at < offline_after + Duration::from_millis(900),
        "offline {offline_at:?} after it stopped: its last ping was not dated by its age"
    );
    live.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_share_each_invokers_memory_and_a_dead_one_gives_its_share_back() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let invokers: Vec<_> =
        (0..2).map(|i| start_invoker(&brokers, i, Duration::from_millis(200))).collect();
    let offline_after = Duration::from_millis(1500);
    let a = connect(&brokers, "ctl-a", offline_after).await;
    let b = connect(&brokers, "ctl-b", offline_after).await;
    wait_up(&a, 2).await;
    wait_controllers(&a, 2).await;
    wait_controllers(&b, 2).await;
    assert_eq!(a.share_mb(InvokerId(0)), 2048, "4096 MB shared by two controllers");

    let name = "shared";
    let home = a.home_invoker(&message(name, 0).action).unwrap();
    let other = &invokers[1 - home.0 as usize].pool;
    let send = |i: u64| {
        let mut m = message(name, i);
        m.limits.memory = 256;
        m.params.insert("hold".into(), true.into());
        m
    };
    // Eight 256 MB activations fill controller a's half of the home invoker...
    let mut waits = Vec::new();
    for i in 0..8 {
        waits.push(a.dispatch(send(i)).await.unwrap());
    }
    wait_held(&invokers[home.0 as usize].pool, 8).await;
    // ... so the ninth goes to the other invoker (with the whole capacity, it would stay home).
    waits.push(a.dispatch(send(8)).await.unwrap());
    wait_held(other, 1).await;
    assert_eq!(invokers[home.0 as usize].pool.held(), 8);

    // Controller b dies: after the offline time, a has the whole invoker again.
    let t = Instant::now();
    drop(b);
    wait_controllers(&a, 1).await;
    println!("controller count back to 1 {:?} after the other controller stopped", t.elapsed());
    assert!(t.elapsed() >= offline_after - Duration::from_millis(200), "{:?}", t.elapsed());
    assert_eq!(a.share_mb(home), 4096);
    waits.push(a.dispatch(send(9)).await.unwrap());
    wait_held(&invokers[home.0 as usize].pool, 9).await;
    assert_eq!(other.held(), 1);
    for inv in invokers {
        inv.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_invoker_fails_its_in_flight_activations_and_work_moves_on() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let invokers: Vec<_> =
        (0..3).map(|i| start_invoker(&brokers, i, Duration::from_millis(200))).collect();
    let offline_after = Duration::from_millis(1500);
    let bus = connect(&brokers, "ctl-failover", offline_after).await;
    wait_up(&bus, 3).await;

    let victim = InvokerId(1);
    let names: Vec<String> = (0..200)
        .map(|i| format!("hold{i}"))
        .filter(|n| bus.home_invoker(&message(n, 0).action) == Some(victim))
        .take(5)
        .collect();
    assert_eq!(names.len(), 5);
    let mut waits = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut m = message(n, i as u64);
        m.params.insert("hold".into(), true.into());
        waits.push((m.activation_id, bus.dispatch(m).await.unwrap()));
    }
    wait_held(&invokers[1].pool, 5).await;
    assert_eq!(bus.in_flight(), 5);

    // The invoker dies with five activations running.
    let killed_at = Instant::now();
    invokers[1].task.abort();
    for (id, w) in waits {
        let rec = tokio::time::timeout(Duration::from_secs(10), w).await.unwrap().unwrap();
        assert_eq!(rec.activation_id, id);
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        let msg = rec.response.result["error"].as_str().unwrap().to_string();
        assert!(msg.contains("invoker1") && msg.contains("offline"), "{msg}");
    }
    let failed_after = killed_at.elapsed();
    // Offline counts from the last ping, up to one ping interval before the kill.
    let earliest = offline_after - Duration::from_millis(200);
    assert!(failed_after >= earliest, "failed too early: {failed_after:?}");
    println!("in-flight activations failed {failed_after:?} after the invoker died");
    assert_eq!(bus.health(victim), Health::Offline);
    assert_eq!(bus.in_flight(), 0);

    // New work for the same actions goes to the other invokers.
    for (i, n) in names.iter().enumerate() {
        let rec = invoke(&bus, message(n, i as u64)).await;
        assert!(rec.response.success);
        assert_ne!(
            rec.response.result["invoker"].as_u64(),
            Some(1),
            "{n} went to the dead invoker"
        );
    }
    for (i, inv) in invokers.iter().enumerate() {
        if i != 1 {
            inv.task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_reported_and_service_resumes_by_itself() {
    let mut broker = Broker::start();
    let brokers = broker.addr();
    let inv = start_invoker(&brokers, 0, Duration::from_millis(200));
    let bus = connect(&brokers, "ctl-outage", Duration::from_secs(3)).await;
    wait_up(&bus, 1).await;
    assert!(invoke(&bus, message("before", 1)).await.response.success);

    broker.stop();
    let t0 = Instant::now();
    let err = bus.dispatch(message("during", 2)).await.unwrap_err();
    let refused_after = t0.elapsed();
    let DispatchError::Unavailable(text) = &err else { panic!("not Unavailable: {err:?}") };
    assert!(text.contains(&brokers), "the message does not name the brokers: {text}");
    println!("broker down: dispatch refused after {refused_after:?}: {text}");

    broker.restart();
    let t1 = Instant::now();
    let bus = &bus;
    let every = Duration::from_millis(250);
    let rec = eventually_within("service resumed", Duration::from_secs(60), every, || async move {
        match bus.dispatch(message("after", 3)).await {
            Ok(done) => match tokio::time::timeout(Duration::from_secs(10), done).await {
                Ok(Ok(rec)) if rec.response.success => Ok(rec),
                other => Err(format!("{other:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert_eq!(rec.response.result["params"]["n"], 3);
    println!("service resumed {:?} after the broker restarted", t1.elapsed());
    inv.task.abort();
}

/// Stands in for the store: entities and the resume offset in one map, as LMDB would keep them
/// in one transaction.
type Entities = std::collections::BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct MapSink {
    state: Mutex<(Entities, Option<Position>)>,
    resets: std::sync::atomic::AtomicUsize,
    /// Every tombstone applied, with the revision it named.
    tombstones: Mutex<Vec<(String, Option<u64>)>>,
}

impl MapSink {
    fn next(&self) -> Option<i64> {
        self.position().map(|p| p.next)
    }

    fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().0.keys().cloned().collect()
    }
}

impl EntitySink for MapSink {
    fn position(&self) -> Option<Position> {
        self.state.lock().unwrap().1
    }

    fn apply(&self, r: &EntityRecord<'_>) {
        let mut st = self.state.lock().unwrap();
        match r.value {
            Some(v) => st.0.insert(r.key.to_string(), v.to_vec()),
            None => {
                self.tombstones.lock().unwrap().push((r.key.to_string(), r.deleted_revision));
                st.0.remove(r.key)
            }
        };
        st.1 = Some(Position { next: r.offset + 1, last_mark: Some(r.mark) });
    }

    fn topic_reset(&self) {
        self.resets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn wait_for(sink: &MapSink, offset: i64) {
    let what = format!("the follower at offset {offset}");
    eventually_within(&what, Duration::from_secs(20), POLL, || async move {
        check(sink.next().unwrap_or(0) >= offset, || format!("stuck at {:?}", sink.next()))
    })
    .await
}

/// Follows the entity topic into `sink` as host `group` until the trigger fires.
fn follow(brokers: &str, group: &str, sink: Arc<MapSink>) -> (ShutdownTrigger, JoinHandle<()>) {
    let (trigger, sd) = shutdown::channel();
    let (b, g) = (brokers.to_owned(), group.to_owned());
    let task = tokio::spawn(async move {
        let log = EntityLog::new(&b, Duration::from_secs(5), 1).unwrap();
        follow_entities(&log, &g, sink, sd).await.unwrap()
    });
    (trigger, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_published_on_one_controller_reach_every_host() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let log = EntityLog::new(&brokers, Duration::from_secs(5), 1).unwrap();
    log.ensure_topic().await.unwrap();
    let code = vec![b'x'; 3 * 1024 * 1024]; // larger than Kafka's 1 MB default
    log.publish("action/guest/a", Some(b"{\"rev\":1}"), None).await.unwrap();
    log.publish("action/guest/big", Some(&code), None).await.unwrap();
    log.publish("action/guest/a", Some(b"{\"rev\":2}"), None).await.unwrap();
    let last = log.publish("action/guest/gone", Some(b"{}"), None).await.unwrap();
    let last = last.max(log.publish("action/guest/gone", None, Some(7)).await.unwrap());

    let host = Arc::new(MapSink::default());
    let (trigger, follower) = follow(&brokers, "hearth.host-b", host.clone());
    wait_for(&host, last + 1).await;
    {
        let st = host.state.lock().unwrap();
        assert_eq!(st.0.get("action/guest/a").map(Vec::as_slice), Some(&b"{\"rev\":2}"[..]));
        assert_eq!(st.0.get("action/guest/big").map(Vec::len), Some(code.len()));
        assert!(!st.0.contains_key("action/guest/gone"), "the tombstone deleted it");
    }
    let tombstones = host.tombstones.lock().unwrap().clone();
    assert_eq!(tombstones, [("action/guest/gone".to_owned(), Some(7))], "with its revision");
    trigger.fire();
    follower.await.unwrap();

    // A restarted follower resumes after what it applied: only the new write arrives.
    let applied_before = host.next().unwrap();
    let newer = log.publish("action/guest/c", Some(b"{}"), None).await.unwrap();
    assert_eq!(newer, applied_before, "offsets are dense on a fresh topic");
    let (trigger, follower) = follow(&brokers, "hearth.host-b", host.clone());
    wait_for(&host, newer + 1).await;
    assert_eq!(host.state.lock().unwrap().0.len(), 3);
    assert_eq!(host.resets.load(std::sync::atomic::Ordering::SeqCst), 0, "no reset seen");
    trigger.fire();
    follower.await.unwrap();
}

/// A host that was away while the broker lost the entity topic, and comes back after the new
/// topic has grown past its old position: the end offset cannot tell the two topics apart,
/// the record before its position can. It reads the new topic from its beginning (and reports
/// the reset, so a controller re-publishes what it holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_away_while_the_topic_was_recreated_and_outgrown_reads_it_again() {
    let mut broker = Broker::start();
    let brokers = broker.addr();
    let log = EntityLog::new(&brokers, Duration::from_secs(5), 1).unwrap();
    log.ensure_topic().await.unwrap();
    for k in ["a", "b", "c"] {
        log.publish(&format!("action/guest/{k}"), Some(b"{\"rev\":1}"), None).await.unwrap();
    }
    let host = Arc::new(MapSink::default());
    let (trigger, follower) = follow(&brokers, "hearth.host-away", host.clone());
    wait_for(&host, 3).await;
    trigger.fire();
    follower.await.unwrap();

    // The broker loses everything; the new topic gets five records, past the host's 3.
    broker.stop();
    broker.restart();
    let log = EntityLog::new(&brokers, Duration::from_secs(5), 1).unwrap();
    let every = Duration::from_millis(200);
    let log = &log;
    eventually_within("the broker back", Duration::from_secs(30), every, || async move {
        log.ensure_topic().await.map_err(|e| e.to_string())
    })
    .await;
    let mut last = 0;
    for k in ["a", "b", "d", "e", "f"] {
        last = log.publish(&format!("action/guest/{k}"), Some(b"{\"rev\":2}"), None).await.unwrap();
    }
    assert_eq!(last, 4);

    let (trigger, follower) = follow(&brokers, "hearth.host-away", host.clone());
    wait_for(&host, 5).await;
    let host_ref = &host;
    let what = "the records before the old position read again";
    eventually_within(what, Duration::from_secs(10), POLL, || async move {
        let a = host_ref.state.lock().unwrap().0.get("action/guest/a").cloned();
        check(a.as_deref() == Some(&b"{\"rev\":2}"[..]), || format!("{:?}", host_ref.keys()))
    })
    .await;
    let keys = host.keys();
    for k in ["a", "b", "c", "d", "e", "f"] {
        assert!(keys.contains(&format!("action/guest/{k}")), "{k} missing: {keys:?}");
    }
    assert_eq!(host.resets.load(std::sync::atomic::Ordering::SeqCst), 1, "the reset was reported");
    trigger.fire();
    follower.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_invoker_resumes_after_what_it_took() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let first = start_invoker(&brokers, 0, Duration::from_millis(200));
    let bus = connect(&brokers, "ctl-restart", Duration::from_secs(10)).await;
    wait_up(&bus, 1).await;
    for i in 0..5 {
        assert!(invoke(&bus, message("r", i)).await.response.success);
    }
    // A graceful stop (commits its position), then the same invoker id again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.trigger.fire();
    tokio::time::timeout(Duration::from_secs(10), first.task).await.unwrap().unwrap();
    let second = start_invoker(&brokers, 0, Duration::from_millis(200));
    let mut ids = Vec::new();
    for i in 5..10 {
        let rec = invoke(&bus, message("r", i)).await;
        assert!(rec.response.success);
        ids.push(rec.activation_id);
    }
    let ran_again: Vec<_> = second.pool.seen().iter().map(|m| m.activation_id).collect();
    assert_eq!(ran_again, ids, "the restarted invoker ran exactly the new activations");
    assert_eq!(first.pool.seen().len(), 5);
    second.task.abort();
}
