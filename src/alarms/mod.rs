//! Built-in alarms: the `/whisk.system/alarms` feeds (`feed.rs`, run natively in the
//! controller rather than in a container: their work is the scheduler's, which lives here),
//! durable schedules (LMDB, replicated to every controller as an entity), and the scheduler
//! that fires each tick once through the controller's fire path.
//!
//! Exactly once per tick, on any number of controllers:
//! - this host's progress (`Store::advance_alarm`: the last tick handled) is committed before
//!   the fire, so a restart never fires a tick again; a tick missed while down is skipped,
//!   not caught up (nor anything older than [`GRACE`]);
//! - before firing, the tick is claimed ([`Claims`]): alone (standalone, split) the claim is
//!   always granted; in a Kafka cluster every live controller produces a claim for (trigger,
//!   tick) to one single-partition topic and fires only when its own claim is the first of
//!   that tick in the log, which every reader sees in the same order, so two controllers
//!   never both fire a tick (`bus::kafka::claims`).
//! - Failure cases: a controller killed between winning the claim and firing loses that tick
//!   (at most once, never twice); with the broker unreachable no tick is claimed, so none
//!   fires until it is back (ticks older than [`GRACE`] are skipped).
//!
//! Must never: fire a tick it did not win, or hold a store transaction across a fire.

mod feed;
pub mod schedule;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::controller::{Controller, ControllerError};
use crate::model::{
    now_millis, Activation, ActivationId, ActivationResponse, ActivationStatus, AlarmFeed,
    AlarmSpec, EntityName, Identity, KeyValue,
};
use crate::shutdown::Shutdown;

/// The package of the feeds, in `whisk.system`.
pub const PACKAGE: &str = "alarms";

/// How often the scheduler looks for due ticks: a tick fires at most this late (plus the
/// claim's round trip).
const SCAN_EVERY: Duration = Duration::from_millis(100);

/// A tick later than this is skipped rather than fired late (the scheduler was stopped or
/// starved): missed ticks are never caught up in a burst.
pub const GRACE: Duration = Duration::from_secs(10);

/// The feed a `POST /namespaces/whisk.system/actions/alarms/{name}` invokes, if it is one.
pub fn feed_of(ns: &EntityName, package: &str, action: &str) -> Option<AlarmFeed> {
    (ns.as_str() == crate::catalog::SYSTEM_NAMESPACE && package == PACKAGE)
        .then(|| AlarmFeed::parse(action))
        .flatten()
}

/// Runs a feed action invoked by `caller` with `params`: the lifecycle event, and its
/// activation record (committed), as OpenWhisk's feed action would leave it.
pub async fn invoke_feed(
    c: &Controller,
    caller: &Identity,
    feed: AlarmFeed,
    params: &Map<String, Value>,
) -> Result<Activation, ControllerError> {
    let start = now_millis();
    let outcome = feed::lifecycle(c, caller, feed, params).await;
    let response = match outcome {
        Ok(result) => ActivationResponse::success(result),
        Err(error) => {
            tracing::info!(feed = feed.as_str(), error, "alarm feed refused");
            ActivationResponse::error(ActivationStatus::ApplicationError, error)
        }
    };
    let end = now_millis();
    let record = Activation {
        namespace: caller.namespace.to_string(),
        name: feed.as_str().to_owned(),
        subject: caller.namespace.to_string(),
        activation_id: ActivationId::generate(),
        start,
        end,
        duration: end - start,
        status_code: response.status.code(),
        response,
        logs: Vec::new(),
        annotations: vec![
            KeyValue::new("path", format!("whisk.system/{PACKAGE}/{}", feed.as_str())),
            KeyValue::new("kind", "builtin"),
        ],
        version: "0.0.1".into(),
        publish: false,
        cause: None,
    };
    c.record_activation(record.clone()).await?;
    Ok(record)
}

/// Who fires a tick when several controllers could: `Ok(true)` for exactly one of them.
pub trait Claims: Send + Sync + 'static {
    /// Claims tick `tick` (ms) of schedule `key`.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        tick: u64,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
}

/// One controller alone: every claim is granted (the store's progress keeps a tick once).
#[derive(Debug, Default)]
pub struct LocalClaims;

impl Claims for LocalClaims {
    fn claim<'a>(
        &'a self,
        _key: &'a str,
        _tick: u64,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async { Ok(true) })
    }
}

/// The scheduler: until `shutdown`, fires every due tick of every active schedule it wins.
pub async fn run(controller: Arc<Controller>, claims: Arc<dyn Claims>, mut shutdown: Shutdown) {
    tracing::info!("alarm scheduler started");
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(SCAN_EVERY) => {}
        }
        if let Err(e) = scan(&controller, claims.as_ref()).await {
            tracing::warn!(error = %e, "alarm scan failed; retrying");
        }
    }
    tracing::info!("alarm scheduler stopped");
}

async fn store_task<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

/// One pass over the schedules.
async fn scan(c: &Arc<Controller>, claims: &dyn Claims) -> Result<(), String> {
    let store = c.store().clone();
    let specs = store_task(move || store.list_alarms()).await?;
    let now = now_millis();
    let floor = now.saturating_sub(GRACE.as_millis() as u64);
    for spec in specs.into_iter().filter(|s| s.active) {
        let key = spec.key();
        let progress = c.store().alarm_progress(&key).map_err(|e| e.to_string())?;
        if spec.max_triggers >= 0 && progress.fired >= spec.max_triggers as u64 {
            deactivate(c, spec, "reached max triggers").await;
            continue;
        }
        // Ticks after the last one handled here, after the schedule was (re)started, and
        // not older than the grace.
        let after = progress.last_tick.max(floor).max(spec.date_changed);
        let Some(tick) = schedule::due_tick(&spec, after, now) else {
            if spec.feed == AlarmFeed::Once && schedule::next_tick(&spec, after).is_none() {
                deactivate(c, spec, "fired once").await;
            }
            continue;
        };
        let won = match claims.claim(&key, tick).await {
            Ok(won) => won,
            Err(e) => {
                tracing::warn!(alarm = %key, tick, error = %e, "claiming a tick failed; retrying");
                continue;
            }
        };
        let store = c.store().clone();
        let k = key.clone();
        if !store_task(move || store.advance_alarm(&k, tick, true)).await? {
            continue;
        }
        if won {
            let c = c.clone();
            tokio::spawn(async move { fire(&c, spec, tick).await });
        } else {
            tracing::debug!(alarm = %key, tick, "tick claimed by another controller");
        }
    }
    Ok(())
}

/// Fires one won tick, and ends a `once` schedule as its `deleteAfterFire` says.
#[tracing::instrument(level = "info", skip_all, fields(alarm = %spec.key(), tick = tick))]
async fn fire(c: &Arc<Controller>, spec: AlarmSpec, tick: u64) {
    let owner = Identity { namespace: spec.namespace.clone(), uuid: uuid::Uuid::nil() };
    let payload = match &spec.payload {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    match c.fire_trigger(&owner, &spec.trigger, Some(payload)).await {
        Ok(outcome) => tracing::info!(?outcome, "alarm fired"),
        Err(e) => tracing::warn!(error = %e, "alarm fire failed"),
    }
    if spec.feed != AlarmFeed::Once {
        return;
    }
    let (ns, trigger) = (spec.namespace.clone(), spec.trigger.clone());
    match spec.delete_after_fire.as_deref() {
        Some("rules") => {
            if let Ok(t) = c.get_trigger(&ns, &trigger) {
                for rule in t.rules.keys() {
                    let name = rule.rsplit('/').next().and_then(|n| EntityName::parse(n).ok());
                    if let Some(name) = name {
                        let _ = c.delete_rule(ns.clone(), name).await;
                    }
                }
            }
            let _ = c.delete_trigger(ns, trigger).await;
        }
        Some("true") => {
            let _ = c.delete_trigger(ns, trigger).await;
        }
        _ => {}
    }
    deactivate(c, spec, "fired once").await;
}

/// Marks a schedule inactive (the provider's automatic disable), keeping it readable.
async fn deactivate(c: &Controller, mut spec: AlarmSpec, why: &'static str) {
    let key = spec.key();
    spec.active = false;
    spec.date_changed = now_millis();
    let store = c.store().clone();
    match store_task(move || store.put_alarm(&spec, false)).await {
        Ok(_) => tracing::info!(alarm = %key, why, "alarm disabled"),
        Err(e) => tracing::warn!(alarm = %key, error = %e, "disabling an alarm failed"),
    }
}
