//! The pool's behaviour end to end through `Invoker`, with scripted fake containers (see
//! `invoker_fake`): reuse, prewarm, cold starts, eviction, queueing, reaping, failures,
//! records, shutdown and concurrency. The real runc driver is tested in its own suite.

// Test harness helpers outside #[test] fns unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod invoker_fake;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::dispatch::{ActivationMessage, DispatchError, Dispatcher};
use hearth::invoker::{EvictedFor, Invoker, InvokerConfig, PoolEvent, PrewarmConfig, Start};
use hearth::model::{
    now_millis, ActionLimits, Activation, ActivationId, ActivationStatus, EntityName, ExecMeta,
    FullyQualifiedName, Kind,
};
use hearth::shutdown::{self, ShutdownTrigger};
use hearth::testing::eventually;
use invoker_fake::{installer, FakeCode, FakeFactory, World};
use serde_json::{json, Map, Value};

struct Fixture {
    invoker: Arc<Invoker<FakeFactory>>,
    world: Arc<World>,
    code: Arc<FakeCode>,
    trigger: ShutdownTrigger,
}

fn config() -> InvokerConfig {
    InvokerConfig {
        memory_budget_mb: 1024,
        prewarm: vec![],
        reap_interval: Duration::from_millis(20),
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn fixture(config: InvokerConfig) -> Fixture {
    fixture_with(config, Arc::new(World::default())).await
}

async fn fixture_with(config: InvokerConfig, world: Arc<World>) -> Fixture {
    // RUST_LOG=hearth=debug shows the pool's decisions when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let code = Arc::new(FakeCode::default());
    let (trigger, signal) = shutdown::channel();
    let invoker = Invoker::start(
        config,
        FakeFactory { world: world.clone() },
        code.clone(),
        installer(world.clone()),
        signal,
    )
    .await
    .unwrap();
    Fixture { invoker, world, code, trigger }
}

impl Fixture {
    /// A message for `guest/<name>` at `revision`, with its code stored.
    fn msg(&self, name: &str, revision: u64, params: Value) -> ActivationMessage {
        self.code.put(&format!("guest/{name}"), revision, b"def main(args): return args");
        message(name, revision, params)
    }

    async fn invoke(&self, msg: ActivationMessage) -> Activation {
        self.invoker.submit(msg).unwrap().await.unwrap()
    }
}

fn message(name: &str, revision: u64, params: Value) -> ActivationMessage {
    let Value::Object(params) = params else { panic!("params must be an object") };
    ActivationMessage {
        activation_id: ActivationId::generate(),
        action: FullyQualifiedName::new(
            EntityName::parse("guest").unwrap(),
            EntityName::parse(name).unwrap(),
        ),
        revision,
        version: format!("0.0.{revision}"),
        exec: ExecMeta {
            kind: Kind::parse("python:3").unwrap(),
            main: None,
            binary: false,
            image: None,
        },
        limits: ActionLimits::default(),
        subject: EntityName::parse("guest").unwrap(),
        params,
        received_at_ms: now_millis(),
        publish: false,
        cause: None,
        annotations: Vec::new(),
    }
}

fn container_of(a: &Activation) -> String {
    a.response.result["container"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn warm_container_is_reused_for_the_same_revision_only() {
    let fx = fixture(config()).await;
    let first = fx.invoke(fx.msg("hello", 1, json!({"n": 1}))).await;
    let second = fx.invoke(fx.msg("hello", 1, json!({"n": 2}))).await;
    assert_eq!(first.response.status, ActivationStatus::Success);
    assert_eq!(container_of(&first), container_of(&second));
    assert!(first.annotation("initTime").is_some(), "cold start has initTime");
    assert!(second.annotation("initTime").is_none(), "warm run has no initTime");
    assert_eq!(second.response.result["params"]["n"], 2);

    let updated = fx.invoke(fx.msg("hello", 2, json!({}))).await;
    assert_ne!(container_of(&updated), container_of(&first), "no reuse across revisions");
    assert!(updated.annotation("initTime").is_some());
    assert_eq!(fx.world.created_count(), 2);
    assert_eq!(fx.world.inits.lock().unwrap()[&container_of(&first)], 1, "init once");
    fx.invoker.shutdown().await;
}

/// An activation whose action was updated before its code was installed ends with a record
/// that says so and is marked superseded, so that a Kafka invoker does not report itself
/// unhealthy for the cluster's entities moving on (before: an unmarked internal error).
#[tokio::test]
async fn an_action_updated_before_install_ends_superseded() {
    let fx = fixture(config()).await;
    fx.code.put("guest/moved", 2, b"def main(args): return args");
    let rec = fx.invoke(message("moved", 1, json!({}))).await;
    assert_eq!(rec.response.status, ActivationStatus::InternalError, "{rec:?}");
    assert!(rec.is_superseded(), "not marked superseded: {rec:?}");
    let msg = rec.response.result["error"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("updated while the activation waited"), "{msg}");
    // An action that is simply missing is a real failure, not marked.
    let missing = fx.invoke(message("gone", 1, json!({}))).await;
    assert_eq!(missing.response.status, ActivationStatus::InternalError);
    assert!(!missing.is_superseded(), "{missing:?}");
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn prewarmed_container_is_taken_and_refilled() {
    let mut cfg = config();
    cfg.prewarm = vec![stem_cells("python:3", 1), stem_cells("nodejs", 1)];
    let fx = fixture(cfg).await;
    eventually("two stem cells", || fx.invoker.stats().prewarmed == 2).await;
    let stem_cells = fx.world.created_ids();

    let a = fx.invoke(fx.msg("hello", 1, json!({}))).await;
    assert_eq!(a.response.status, ActivationStatus::Success);
    assert!(stem_cells.contains(&container_of(&a)), "ran in a stem cell");
    assert!(a.annotation("initTime").is_some(), "a prewarm start has initTime");
    let spec = fx.world.created.lock().unwrap().iter().find(|s| s.id == container_of(&a)).cloned();
    assert_eq!(spec.unwrap().runtime, hearth::model::Runtime::Python);

    eventually("refilled", || fx.invoker.stats().prewarmed == 2).await;
    assert_eq!(fx.world.created_count(), 3);
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.prewarmed, s.memory_in_use_mb), (1, 2, 768));
    fx.invoker.shutdown().await;
}

/// The refill of a taken stem cell (a `runc run` and an interpreter start: much more CPU than
/// an init or a short run) waits for the taker's init and the first 50 ms of its first run,
/// so a prewarmed start does not share the two CPUs with it; a longer run does not keep the
/// pool without its stem cell. On a paused clock: the order is the code's, not the machine's.
#[tokio::test(start_paused = true)]
async fn a_stem_cells_refill_waits_for_the_takers_first_run_not_for_a_long_one() {
    let mut cfg = config();
    cfg.prewarm = python_stem_cells(1);
    let fx = fixture(cfg).await;
    eventually("a stem cell", || fx.invoker.stats().prewarmed == 1).await;
    let stem_cell = fx.world.created_ids()[0].clone();

    let run = fx.invoker.submit(fx.msg("long", 1, json!({"sleep_ms": 2000}))).unwrap();
    let started = || fx.world.runs.lock().unwrap().get(&stem_cell).copied() == Some(1);
    while !started() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(fx.world.created_count(), 1, "the refill started before the first run");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fx.world.created_count(), 2, "a long first run held the refill back");
    assert_eq!(fx.world.runs.lock().unwrap()[&stem_cell], 1);
    let record = run.await.unwrap();
    assert_eq!(record.response.status, ActivationStatus::Success, "{record:?}");
    assert_eq!(container_of(&record), stem_cell);
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn cold_start_when_no_stem_cell_matches() {
    let mut cfg = config();
    cfg.prewarm = vec![stem_cells("nodejs", 1)];
    let fx = fixture(cfg).await;
    eventually("stem cell", || fx.invoker.stats().prewarmed == 1).await;
    let a = fx.invoke(fx.msg("py", 1, json!({}))).await;
    assert!(!fx.world.created_ids()[..1].contains(&container_of(&a)), "not the node stem cell");
    assert_eq!(fx.world.created_count(), 2);
    assert!(a.annotation("initTime").is_some());
    assert_eq!(fx.invoker.stats().prewarmed, 1);
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn least_recently_used_idle_container_is_evicted_to_fit() {
    let fx = fixture(InvokerConfig { memory_budget_mb: 512, ..config() }).await;
    let a = fx.invoke(fx.msg("a", 1, json!({}))).await;
    let b = fx.invoke(fx.msg("b", 1, json!({}))).await;
    let a2 = fx.invoke(fx.msg("a", 1, json!({}))).await; // b is now least recently used
    assert_eq!(container_of(&a), container_of(&a2));
    let c = fx.invoke(fx.msg("c", 1, json!({}))).await;
    assert_eq!(c.response.status, ActivationStatus::Success);
    assert!(fx.world.was_destroyed(&container_of(&b)), "b evicted");
    assert!(fx.world.is_live(&container_of(&a)), "a kept");
    // The budget (two containers) is passed by at most what is being torn down: b, evicted
    // for c and destroyed behind it.
    assert!(fx.world.max_live.load(Ordering::SeqCst) <= 3, "budget never exceeded");
    assert_eq!(fx.invoker.stats().memory_in_use_mb, 512);
    fx.invoker.shutdown().await;
}

/// Events received so far, without waiting.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<PoolEvent>) -> Vec<PoolEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// `count` stem cells of `kind` at 256 MB.
fn stem_cells(kind: &str, count: usize) -> PrewarmConfig {
    PrewarmConfig {
        kind: Kind::parse(kind).unwrap(),
        memory_mb: 256,
        count,
        image: None,
        digest: None,
    }
}

fn python_stem_cells(count: usize) -> Vec<PrewarmConfig> {
    vec![stem_cells("python:3", count)]
}

/// Fills a 1024 MB pool with one action: its stem cell taken, then cold starts up to the
/// budget, the rest queued; when this returns, four warm containers of `hot` are idle.
async fn burst(fx: &Fixture) {
    let waiting: Vec<_> = (0..12)
        .map(|_| fx.invoker.submit(fx.msg("hot", 1, json!({"sleep_ms": 20}))).unwrap())
        .collect();
    for c in waiting {
        assert_eq!(c.await.unwrap().response.status, ActivationStatus::Success);
    }
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.memory_in_use_mb), (4, 1024), "{s:?}");
}

/// The issue-16 case: after a burst filled the pool, a new action must evict. Its container's
/// memory is taken at once and the evicted one is destroyed behind it: with every destroy
/// held back, the activation still completes, and only then is the evicted container gone.
#[tokio::test]
async fn after_a_burst_no_destruction_runs_inside_an_activation_wait() {
    let cfg = InvokerConfig {
        prewarm: python_stem_cells(1),
        // No background refill in this test: the activation itself must evict.
        evict_idle_after: Duration::from_secs(3600),
        ..config()
    };
    let fx = fixture(cfg).await;
    eventually("stem cell", || fx.invoker.stats().prewarmed == 1).await;
    burst(&fx).await;
    assert_eq!(fx.invoker.stats().prewarmed, 0, "the burst took the stem cell");

    let mut events = fx.invoker.events();
    fx.world.hold_destroys();
    let submitted = Instant::now();
    let fresh = fx.invoker.submit(fx.msg("fresh", 1, json!({}))).unwrap();
    // A hang guard, not a timing: with destruction on the activation's path this never ends.
    let fresh = tokio::time::timeout(Duration::from_secs(30), fresh)
        .await
        .expect("the activation waited for a held destroy")
        .unwrap();
    let waited = submitted.elapsed();
    assert_eq!(fresh.response.status, ActivationStatus::Success);
    let seen = drain(&mut events);
    let evicted: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            PoolEvent::Evicted { container, by: EvictedFor::Activation, .. } => {
                Some(container.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(evicted.len(), 1, "{seen:?}");
    assert!(
        !seen.iter().any(|e| matches!(e, PoolEvent::Destroyed { .. })),
        "a destroy finished before the record: {seen:?}"
    );
    assert!(!fx.world.was_destroyed(&evicted[0]), "the evicted container is still being torn down");
    let wait_ms = fresh.annotation("waitTime").and_then(Value::as_u64).unwrap();
    // Both ends of waitTime are millisecond clock readings: one boundary may fall inside.
    assert!(
        u128::from(wait_ms) <= waited.as_millis() + 1,
        "waitTime {wait_ms} ms is within the activation's own {waited:?}"
    );
    let s = fx.invoker.stats();
    assert_eq!((s.memory_in_use_mb, s.memory_releasing_mb), (1280, 256), "{s:?}");

    fx.world.release_destroys();
    eventually("evicted container destroyed", || fx.world.was_destroyed(&evicted[0])).await;
    assert_eq!(fx.invoker.stats().memory_in_use_mb, 1024);
    fx.invoker.shutdown().await;
    assert_eq!(fx.world.live_count(), 0);
}

/// After a burst the prewarm plan is refilled in the background from the least recently used
/// idle warm containers, so the first invoke of a new action takes a stem cell and evicts
/// nothing itself.
#[tokio::test]
async fn after_a_burst_the_stem_cells_come_back_from_idle_warm_containers() {
    let cfg = InvokerConfig {
        prewarm: python_stem_cells(1),
        evict_idle_after: Duration::from_millis(30),
        ..config()
    };
    let fx = fixture(cfg).await;
    eventually("stem cell", || fx.invoker.stats().prewarmed == 1).await;
    let mut events = fx.invoker.events();
    burst(&fx).await;
    eventually("refilled", || fx.invoker.stats().prewarmed == 1).await;
    let seen = drain(&mut events);
    let by_prewarm = seen
        .iter()
        .filter(|e| matches!(e, PoolEvent::Evicted { by: EvictedFor::Prewarm, .. }))
        .count();
    assert_eq!(by_prewarm, 1, "one idle warm container made room: {seen:?}");
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.prewarmed), (3, 1), "{s:?}");

    let fresh = fx.invoke(fx.msg("fresh", 1, json!({}))).await;
    assert_eq!(fresh.response.status, ActivationStatus::Success);
    let seen = drain(&mut events);
    assert!(
        seen.iter()
            .any(|e| matches!(e, PoolEvent::Placed { start: Start::Prewarmed, container, .. }
            if *container == container_of(&fresh))),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, PoolEvent::Evicted { by: EvictedFor::Activation, .. })),
        "the new action evicted nothing itself: {seen:?}"
    );
    fx.invoker.shutdown().await;
}

/// A stem cell fits any memory limit: a 512 MB and a 128 MB action each take the 256 MB stem
/// cell, resized to their limit, and the budget follows.
#[tokio::test]
async fn stem_cells_take_the_memory_limit_of_the_action() {
    let cfg = InvokerConfig { memory_budget_mb: 2048, prewarm: python_stem_cells(1), ..config() };
    let fx = fixture(cfg).await;
    eventually("stem cell", || fx.invoker.stats().prewarmed == 1).await;
    let mut events = fx.invoker.events();
    for (name, mb) in [("big", 512), ("small", 128)] {
        let stem = fx.world.created_ids().last().cloned().unwrap();
        let mut msg = fx.msg(name, 1, json!({}));
        msg.limits.memory = mb;
        let a = fx.invoke(msg).await;
        assert_eq!(a.response.status, ActivationStatus::Success);
        assert_eq!(container_of(&a), stem, "{name} ran in the stem cell");
        assert!(fx.world.resizes.lock().unwrap().contains(&(stem.clone(), mb)));
        let seen = drain(&mut events);
        assert!(
            seen.iter()
                .any(|e| *e
                    == PoolEvent::Resized { container: stem.clone(), from_mb: 256, to_mb: mb }),
            "{seen:?}"
        );
        eventually("refilled", || fx.invoker.stats().prewarmed == 1).await;
    }
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.memory_in_use_mb), (2, 512 + 128 + 256), "{s:?}");
    assert_eq!(fx.world.created_count(), 3, "no cold start");
    fx.invoker.shutdown().await;
}

/// A stem cell that refuses the new limit is destroyed behind the activation, which starts
/// cold instead, and the memory adds up afterwards.
#[tokio::test]
async fn a_stem_cell_that_cannot_be_resized_gives_way_to_a_cold_start() {
    let cfg = InvokerConfig { memory_budget_mb: 2048, prewarm: python_stem_cells(1), ..config() };
    let fx = fixture(cfg).await;
    eventually("stem cell", || fx.invoker.stats().prewarmed == 1).await;
    let stem = fx.world.created_ids()[0].clone();
    fx.world.fail_resize.store(true, Ordering::SeqCst);
    let mut events = fx.invoker.events();
    let mut msg = fx.msg("big", 1, json!({}));
    msg.limits.memory = 512;
    let a = fx.invoke(msg).await;
    assert_eq!(a.response.status, ActivationStatus::Success);
    assert_ne!(container_of(&a), stem, "ran in a cold container");
    assert!(a.annotation("initTime").is_some());
    eventually("stem cell destroyed", || fx.world.was_destroyed(&stem)).await;
    let seen = drain(&mut events);
    assert!(
        seen.iter()
            .any(|e| matches!(e, PoolEvent::ResizeFailed { container, .. } if *container == stem)),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, PoolEvent::Placed { start: Start::Cold, .. })),
        "{seen:?}"
    );
    eventually("refilled", || fx.invoker.stats().prewarmed == 1).await;
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.memory_in_use_mb, s.memory_releasing_mb), (1, 768, 0), "{s:?}");
    fx.invoker.shutdown().await;
    assert_eq!(fx.world.live_count(), 0);
}

#[tokio::test]
async fn activations_queue_when_the_budget_is_full_and_start_on_release() {
    let fx = fixture(InvokerConfig { memory_budget_mb: 256, ..config() }).await;
    let slow = fx.invoker.submit(fx.msg("slow", 1, json!({"sleep_ms": 150}))).unwrap();
    eventually("slow is running", || fx.invoker.stats().warm_busy == 1).await;
    let queued = fx.invoker.submit(fx.msg("next", 1, json!({}))).unwrap();
    let s = fx.invoker.stats();
    assert_eq!((s.queued, s.in_flight), (1, 1));
    let slow = slow.await.unwrap();
    let next = queued.await.unwrap();
    assert_eq!(slow.response.status, ActivationStatus::Success);
    assert_eq!(next.response.status, ActivationStatus::Success);
    assert!(next.annotation("waitTime").unwrap().as_u64().unwrap() >= 100, "waited for memory");
    eventually("slow's idle container evicted", || fx.world.was_destroyed(&container_of(&slow)))
        .await;
    // One container's budget, passed by at most the one being torn down behind `next`.
    assert!(fx.world.max_live.load(Ordering::SeqCst) <= 2);
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn past_the_queue_bound_submits_are_overloaded() {
    let fx = fixture(InvokerConfig { memory_budget_mb: 256, queue_limit: 2, ..config() }).await;
    let mut waiting = vec![fx.invoker.submit(fx.msg("slow", 1, json!({"sleep_ms": 100}))).unwrap()];
    eventually("slow is running", || fx.invoker.stats().warm_busy == 1).await;
    waiting.push(fx.invoker.submit(fx.msg("q1", 1, json!({}))).unwrap());
    waiting.push(fx.invoker.submit(fx.msg("q2", 1, json!({}))).unwrap());
    let err = fx.invoker.submit(fx.msg("q3", 1, json!({}))).unwrap_err();
    match &err {
        DispatchError::Overloaded(m) => assert!(m.contains("queue limit 2"), "{m}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    for c in waiting {
        assert_eq!(c.await.unwrap().response.status, ActivationStatus::Success);
    }
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn idle_containers_are_reaped_after_the_idle_timeout() {
    let cfg = InvokerConfig { idle_timeout: Duration::from_millis(100), ..config() };
    let fx = fixture(cfg).await;
    let a = fx.invoke(fx.msg("a", 1, json!({}))).await;
    assert!(fx.world.is_live(&container_of(&a)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(fx.world.is_live(&container_of(&a)), "not before the timeout");
    eventually("reaped", || fx.world.was_destroyed(&container_of(&a))).await;
    let s = fx.invoker.stats();
    assert_eq!((s.warm_idle, s.memory_in_use_mb), (0, 0));
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn timeout_and_crash_destroy_the_container_invalid_result_keeps_it() {
    let fx = fixture(config()).await;
    let mut msg = fx.msg("slow", 1, json!({"sleep_ms": 5000}));
    msg.limits.timeout = 100;
    let t = fx.invoke(msg).await;
    assert_eq!(t.response.status, ActivationStatus::DeveloperError);
    assert!(t.response.result["error"].as_str().unwrap().contains("100 milliseconds"));
    assert_eq!(t.annotation("timeout"), Some(&json!(true)));
    assert_eq!(t.logs.len(), 1, "logs collected before the timeout are kept");
    eventually("timed-out container destroyed", || fx.world.live_count() == 0).await;

    let crash = fx.invoke(fx.msg("c", 1, json!({"outcome": "crash"}))).await;
    assert_eq!(crash.response.status, ActivationStatus::DeveloperError);
    assert!(crash.response.result["error"].as_str().unwrap().contains("exit status 139"));
    eventually("crashed container destroyed", || fx.world.live_count() == 0).await;

    let oom = fx.invoke(fx.msg("m", 1, json!({"outcome": "oom"}))).await;
    assert!(oom.response.result["error"].as_str().unwrap().contains("memory"));
    eventually("OOM container destroyed", || fx.world.live_count() == 0).await;

    let bad = fx.invoke(fx.msg("i", 1, json!({"outcome": "invalid"}))).await;
    assert_eq!(bad.response.status, ActivationStatus::DeveloperError);
    let again = fx.invoke(fx.msg("i", 1, json!({}))).await;
    assert!(again.annotation("initTime").is_none(), "kept warm after an invalid result");

    let app = fx.invoke(fx.msg("i", 1, json!({"outcome": "error"}))).await;
    assert_eq!(app.response.status, ActivationStatus::ApplicationError);
    let after = fx.invoke(fx.msg("i", 1, json!({}))).await;
    assert_eq!(container_of(&after), container_of(&again), "kept after an application error");

    let internal = fx.invoke(fx.msg("x", 1, json!({"outcome": "internal"}))).await;
    assert_eq!(internal.response.status, ActivationStatus::InternalError);
    eventually("only i's container left", || fx.world.live_count() == 1).await;
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn failures_before_the_run_still_end_with_a_record() {
    let fx = fixture(config()).await;
    // No code stored.
    let missing = fx.invoke(message("ghost", 1, json!({}))).await;
    assert_eq!(missing.response.status, ActivationStatus::InternalError);
    assert!(missing.response.result["error"].as_str().unwrap().contains("does not exist"));

    // Init fails: developer error, container destroyed, initTime present.
    fx.code.put("guest/broken", 1, b"broken");
    let broken = fx.invoke(message("broken", 1, json!({}))).await;
    assert_eq!(broken.response.status, ActivationStatus::DeveloperError);
    assert!(broken.response.result["error"].as_str().unwrap().contains("SyntaxError"));
    assert_eq!(broken.logs, ["init log"]);
    assert!(broken.annotation("initTime").is_some());

    // The container cannot be created: internal error, memory back.
    fx.world.fail_create.store(true, Ordering::SeqCst);
    let no_container = fx.invoke(fx.msg("a", 1, json!({}))).await;
    assert_eq!(no_container.response.status, ActivationStatus::InternalError);
    assert!(no_container.response.result["error"].as_str().unwrap().contains("scripted failure"));
    eventually("all gone", || fx.world.live_count() == 0).await;
    eventually("memory back", || fx.invoker.stats().memory_in_use_mb == 0).await;
    eventually("three done", || fx.invoker.stats().completed == 3).await;
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn record_carries_openwhisk_fields_and_the_environment() {
    let fx = fixture(config()).await;
    let msg = fx.msg("hello", 7, json!({"name": "Ada"}));
    let id = msg.activation_id;
    let received = msg.received_at_ms;
    let a = fx.invoke(msg).await;
    assert_eq!(a.activation_id, id);
    assert_eq!(
        (a.namespace.as_str(), a.name.as_str(), a.version.as_str()),
        ("guest", "hello", "0.0.7")
    );
    assert_eq!(a.annotation("path"), Some(&json!("guest/hello")));
    assert_eq!(a.annotation("kind"), Some(&json!("python:3")));
    assert_eq!(a.annotation("timeout"), Some(&json!(false)));
    assert_eq!(a.annotation("limits").unwrap()["timeout"], 60_000);
    let wait = a.annotation("waitTime").unwrap().as_u64().unwrap();
    assert_eq!(wait, a.start - received);
    assert!(a.end >= a.start && a.duration == a.end - a.start);
    let env = &a.response.result["env"];
    assert_eq!(env["ACTIVATION_ID"], id.to_string());
    assert_eq!(env["ACTION_NAME"], "/guest/hello");
    assert_eq!(env["ACTION_VERSION"], "0.0.7");
    let deadline: u64 = env["DEADLINE"].as_str().unwrap().parse().unwrap();
    assert!(deadline >= a.start + 60_000 && deadline <= a.end + 60_000);
    assert_eq!(a.response.result["params"]["name"], "Ada");
    assert_eq!(a.logs.len(), 1);
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn submits_after_shutdown_are_unavailable() {
    let fx = fixture(config()).await;
    fx.invoker.shutdown().await;
    let err = fx.invoker.submit(fx.msg("a", 1, json!({}))).unwrap_err();
    assert!(matches!(err, DispatchError::Unavailable(_)), "{err:?}");
    // Through the Dispatcher seam too.
    let dispatcher: Arc<dyn Dispatcher> = fx.invoker.clone();
    assert!(matches!(
        dispatcher.dispatch(fx.msg("a", 1, json!({}))).await,
        Err(DispatchError::Unavailable(_))
    ));
}

#[tokio::test]
async fn action_larger_than_the_whole_budget_is_refused() {
    let fx = fixture(InvokerConfig { memory_budget_mb: 256, ..config() }).await;
    let mut msg = fx.msg("big", 1, json!({}));
    msg.limits.memory = 512;
    assert!(
        matches!(fx.invoker.submit(msg), Err(DispatchError::Unavailable(m)) if m.contains("512 MB"))
    );
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_running_work_and_destroys_every_container() {
    let mut cfg = config();
    cfg.prewarm = vec![stem_cells("nodejs", 2)];
    let fx = fixture(cfg).await;
    eventually("stem cells", || fx.invoker.stats().prewarmed == 2).await;
    fx.invoke(fx.msg("idle", 1, json!({}))).await;
    let running = fx.invoker.submit(fx.msg("busy", 1, json!({"sleep_ms": 100}))).unwrap();
    eventually("busy", || fx.invoker.stats().warm_busy == 1).await;
    assert_eq!(fx.world.live_count(), 4);
    fx.invoker.shutdown().await;
    assert_eq!(running.await.unwrap().response.status, ActivationStatus::Success, "drained");
    assert_eq!(fx.world.live_count(), 0, "no container left");
    let s = fx.invoker.stats();
    assert_eq!((s.memory_in_use_mb, s.warm_idle, s.prewarmed, s.in_flight), (0, 0, 0, 0));
    fx.invoker.shutdown().await; // idempotent
}

#[tokio::test]
async fn shutdown_kills_what_outlives_the_drain_timeout_and_fails_the_queue() {
    let cfg = InvokerConfig {
        memory_budget_mb: 256,
        drain_timeout: Duration::from_millis(100),
        ..config()
    };
    let fx = fixture(cfg).await;
    let stuck = fx.invoker.submit(fx.msg("stuck", 1, json!({"sleep_ms": 30_000}))).unwrap();
    eventually("running", || fx.invoker.stats().warm_busy == 1).await;
    let queued = fx.invoker.submit(fx.msg("later", 1, json!({}))).unwrap();
    let started = Instant::now();
    fx.invoker.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let stuck = stuck.await.unwrap();
    assert_eq!(stuck.response.status, ActivationStatus::InternalError);
    assert!(stuck.response.result["error"].as_str().unwrap().contains("shut down while"));
    let queued = queued.await.unwrap();
    assert!(queued.response.result["error"].as_str().unwrap().contains("before the activation"));
    assert_eq!(fx.world.live_count(), 0);
}

#[tokio::test]
async fn the_shutdown_signal_stops_the_invoker() {
    let fx = fixture(config()).await;
    fx.invoke(fx.msg("a", 1, json!({}))).await;
    fx.trigger.fire();
    eventually("containers gone", || fx.world.live_count() == 0).await;
    eventually("refusing", || fx.invoker.submit(fx.msg("a", 1, json!({}))).is_err()).await;
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn leftovers_are_reclaimed_at_start() {
    let world = Arc::new(World::default());
    world.leftovers.store(3, Ordering::SeqCst);
    let fx = fixture_with(config(), world).await;
    assert_eq!(fx.world.leftovers.load(Ordering::SeqCst), 0);
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn invalid_config_is_refused_at_start() {
    let (_t, signal) = shutdown::channel();
    let world = Arc::new(World::default());
    let r = Invoker::start(
        InvokerConfig { memory_budget_mb: 1, ..config() },
        FakeFactory { world: world.clone() },
        Arc::new(FakeCode::default()),
        installer(world),
        signal,
    )
    .await;
    assert!(r.unwrap_err().to_string().contains("memory_budget_mb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_submits_all_complete_with_one_container_per_run() {
    let fx = fixture(InvokerConfig { memory_budget_mb: 1024, ..config() }).await;
    fx.world.create_delay_ms.store(3, Ordering::SeqCst);
    let mut completions = Vec::new();
    for i in 0..200 {
        let name = format!("act{}", i % 10);
        let completion =
            fx.invoker.submit(fx.msg(&name, 1, json!({"sleep_ms": 2, "i": i}))).unwrap();
        completions.push((i, completion));
    }
    for (i, c) in completions {
        let a = c.await.unwrap();
        assert_eq!(a.response.status, ActivationStatus::Success, "{i}: {:?}", a.response);
        assert_eq!(a.response.result["params"]["i"], i);
    }
    assert_eq!(fx.world.max_per_container.load(Ordering::SeqCst), 1, "concurrency 1");
    assert!(fx.world.max_live.load(Ordering::SeqCst) <= 4, "at most 1024/256 containers");
    // The record goes out a moment before the task's last bookkeeping.
    eventually("all counted", || {
        let s = fx.invoker.stats();
        (s.completed, s.in_flight, s.queued) == (200, 0, 0)
    })
    .await;
    fx.invoker.shutdown().await;
    assert_eq!(fx.world.live_count(), 0);
}

/// The pool's own overhead per warm submit -> record with an instant container. Prints
/// percentiles; not a timed assertion (the machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_warm_overhead() {
    let fx = fixture(config()).await;
    fx.invoke(fx.msg("hot", 1, json!({}))).await;
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let msg = message("hot", 1, json!({}));
        let t = Instant::now();
        let a = fx.invoker.submit(msg).unwrap().await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(a.response.status, ActivationStatus::Success);
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "warm submit->record with an instant fake container (debug build): p50 {:?} p90 {:?} p99 {:?}",
        p(0.5),
        p(0.9),
        p(0.99)
    );
    assert_eq!(fx.world.created_count(), 1, "all warm");
    fx.invoker.shutdown().await;
}

#[tokio::test]
async fn params_are_not_shared_between_runs() {
    let fx = fixture(config()).await;
    let a = fx.invoke(fx.msg("p", 1, json!({"only": "first"}))).await;
    let b = fx.invoke(fx.msg("p", 1, json!({}))).await;
    assert_eq!(a.response.result["params"], json!({"only": "first"}));
    assert_eq!(b.response.result["params"], Value::Object(Map::new()));
    fx.invoker.shutdown().await;
}

/// Even a driver that panics ends its activation with a record (the task's drop guard). The
/// container's memory stays counted until restart (see the report): no shutdown here.
#[tokio::test]
async fn a_panicking_driver_still_yields_a_record() {
    let fx = fixture(config()).await;
    let a = fx.invoke(fx.msg("p", 1, json!({"outcome": "panic"}))).await;
    assert_eq!(a.response.status, ActivationStatus::InternalError);
    assert!(a.response.result["error"].as_str().unwrap().contains("invoker failed"));
    let ok = fx.invoke(fx.msg("q", 1, json!({}))).await;
    assert_eq!(ok.response.status, ActivationStatus::Success, "the invoker keeps working");
}
