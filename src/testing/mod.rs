//! One kit for the tests that run hearth's parts in process: a message, a record, a fake
//! invoker at the dispatch seam, a scripted container factory ([`container`]) and a poll for
//! asynchronous effects. Built for the crate's own
//! unit tests and, with the feature `testing`, for the integration tests under tests/ (the
//! tests that start hearthd processes use tests/harness instead). Never in a shipped binary.

pub mod container;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::dispatch::{
    ActivationMessage, DispatchError, DispatchFuture, Dispatcher, InvokerView, Timing,
};
use crate::model::{
    now_millis, ActionLimits, Activation, ActivationId, ActivationResponse, ActivationStatus,
    EntityName, ExecMeta, FullyQualifiedName, Kind,
};

/// How long [`eventually`] waits: background work in process (the pool's reaper, a refill)
/// takes milliseconds; seconds leave room for a loaded machine.
const EVENTUALLY: Duration = Duration::from_secs(3);

/// Polls `f` until it holds, failing the test with `what` after a few seconds: for effects
/// that happen on another task (the pool's background work is asynchronous).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// As [`eventually`], for effects of another process (a broker, a daemon) that take their
/// own time: polls `f` every `every` until it gives `Ok`, for up to `within`, then fails the
/// test with `what` and the last `Err` (what was seen instead). `f` may await (a dispatch, a
/// broker round trip); its value is returned.
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(seen) => {
                assert!(Instant::now() < deadline, "{what}: not within {within:?}: {seen}")
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn name(s: &str) -> EntityName {
    EntityName::parse(s).unwrap_or_else(|e| panic!("test name {s:?}: {e}"))
}

/// A message for `namespace/name` at `revision` with defaults everywhere else (python:3,
/// default limits, the caller is the action's namespace, no parameters, accepted now).
pub fn message(namespace: &str, action: &str, revision: u64) -> ActivationMessage {
    let ns = name(namespace);
    ActivationMessage {
        activation_id: ActivationId::generate(),
        action: FullyQualifiedName::new(ns.clone(), name(action)),
        revision,
        version: format!("0.0.{revision}"),
        exec: ExecMeta {
            kind: Kind::parse("python:3").unwrap_or_else(|e| panic!("python:3: {e}")),
            main: None,
            binary: false,
            image: None,
        },
        limits: ActionLimits::default(),
        subject: ns,
        params: Map::new(),
        received_at_ms: now_millis(),
        publish: false,
        cause: None,
        annotations: Vec::new(),
    }
}

/// A finished, successful record of `namespace/name` that started at `start` (ms) and took
/// 1 ms, with the annotations every record has. Change what a test needs with struct update
/// syntax (`Activation { logs, ..activation("guest", "a", 7) }`).
pub fn activation(namespace: &str, action: &str, start: u64) -> Activation {
    let msg = ActivationMessage { received_at_ms: start, ..message(namespace, action, 1) };
    let timing = Timing { start_ms: start, end_ms: start + 1, init_ms: None };
    msg.record(ActivationResponse::success(json!({})), Vec::new(), timing, false)
}

/// What a [`FakeInvoker`] does with the next activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMode {
    /// Completes at once (or holds the activations whose params say `"hold": true`).
    Complete,
    /// Completes after a delay.
    Delay(Duration),
    /// Refuses: queue full (429).
    Overloaded,
    /// Refuses: no invoker (503); its health says offline.
    Unavailable,
    /// Accepts, then drops the completion sender without a record (the invoker died).
    Vanish,
}

/// The invoker at the dispatch seam, without containers: it "runs" an action by echoing its
/// parameters (a parameter `fail` makes an application error, `crash` a developer error),
/// holds the activations whose params say `"hold": true` (a long run) for as long as it lives,
/// and remembers every message it was given.
#[derive(Debug)]
pub struct FakeInvoker {
    id: u32,
    /// Whether the result names this invoker (`{"invoker": id, "params": ...}`) rather than
    /// being the parameters themselves: for tests of which invoker ran what.
    names_itself: bool,
    mode: Mutex<FakeMode>,
    seen: Mutex<Vec<ActivationMessage>>,
    held: Mutex<Vec<(ActivationId, oneshot::Sender<Activation>)>>,
}

impl FakeInvoker {
    /// Invoker 0, whose results are the activations' parameters.
    pub fn new() -> Self {
        Self::build(0, false)
    }

    /// Invoker `id`, whose results name it: `{"invoker": id, "params": {...}}`.
    pub fn naming(id: u32) -> Self {
        Self::build(id, true)
    }

    fn build(id: u32, names_itself: bool) -> Self {
        Self {
            id,
            names_itself,
            mode: Mutex::new(FakeMode::Complete),
            seen: Mutex::default(),
            held: Mutex::default(),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// What to do with the next activations.
    pub fn set(&self, mode: FakeMode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Every message dispatched to it, refused ones included, in order.
    pub fn seen(&self) -> Vec<ActivationMessage> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many activations it holds.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The record it answers `msg` with.
    pub fn record_for(&self, msg: &ActivationMessage) -> Activation {
        fake_record(msg, self.names_itself.then_some(self.id))
    }
}

/// A [`FakeInvoker`]'s record of `msg`, naming invoker `naming` in the result when given.
fn fake_record(msg: &ActivationMessage, naming: Option<u32>) -> Activation {
    let response = if msg.params.contains_key("fail") {
        ActivationResponse::error(ActivationStatus::ApplicationError, "asked to fail")
    } else if msg.params.contains_key("crash") {
        ActivationResponse::error(ActivationStatus::DeveloperError, "the action crashed")
    } else if let Some(id) = naming {
        ActivationResponse::success(json!({"invoker": id, "params": msg.params}))
    } else {
        ActivationResponse::success(Value::Object(msg.params.clone()))
    };
    let start = now_millis();
    let timing = Timing { start_ms: start, end_ms: start + 1, init_ms: Some(3) };
    let logs = vec!["2024-01-01T00:00:00Z stdout: hello from the fake invoker".into()];
    msg.record(response, logs, timing, false)
}

impl Default for FakeInvoker {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher for FakeInvoker {
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        Box::pin(async move {
            let mode = *self.mode.lock().unwrap_or_else(PoisonError::into_inner);
            self.seen.lock().unwrap_or_else(PoisonError::into_inner).push(msg.clone());
            let (tx, rx) = oneshot::channel();
            match mode {
                FakeMode::Overloaded => {
                    return Err(DispatchError::Overloaded("Too many requests in the queue.".into()))
                }
                FakeMode::Unavailable => {
                    return Err(DispatchError::Unavailable("No invoker is available.".into()))
                }
                FakeMode::Complete if msg.params.get("hold") == Some(&Value::Bool(true)) => {
                    let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
                    held.push((msg.activation_id, tx));
                }
                FakeMode::Complete => {
                    let _ = tx.send(self.record_for(&msg));
                }
                FakeMode::Delay(d) => {
                    let naming = self.names_itself.then_some(self.id);
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = tx.send(fake_record(&msg, naming));
                    });
                }
                FakeMode::Vanish => drop(tx),
            }
            Ok(rx)
        })
    }

    fn invokers(&self) -> Vec<InvokerView> {
        let mut view = InvokerView::up(self.id);
        if *self.mode.lock().unwrap_or_else(PoisonError::into_inner) == FakeMode::Unavailable {
            view.health = crate::balancer::Health::Offline;
        }
        vec![view]
    }
}
