//! The controller's view of the cluster's health: reading the health topic (the invokers'
//! and the other controllers' pings, into the balancer), reading back its recent history at
//! start-up, and pinging it for this controller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

use super::super::client::Fetch;
use super::super::error::is_unknown_topic;
use super::super::topics::HEALTH_TOPIC;
use super::super::wire::decode;
use super::{consume_topic, ensure_controller_topics, Shared};
use crate::balancer::{ControllerPing, HealthMessage};
use crate::model::now_millis;

/// How many of the health topic's last messages a starting controller reads back: every ping
/// of the last `offline_after` (10 s by default) in a cluster of up to a thousand hosts pinging
/// once a second. Older ones are skipped by their age; a controller that starts into a running
/// cluster knows its invokers as soon as it has read them, not a ping interval later.
const HEALTH_HISTORY: i64 = 10_000;

/// How long a dispatch that finds no usable invoker waits for the health history to be read
/// before it answers 503 (only while the controller is starting).
const HISTORY_WAIT: Duration = Duration::from_secs(3);

impl Shared {
    /// Waits (at most [`HISTORY_WAIT`]) until the health history is read: a controller started
    /// into a running cluster neither answers 503 for invokers it has not read about yet nor
    /// sends an action's first activations to another home than the other controllers do.
    pub(super) async fn history(&self) {
        let mut read = self.history_read.subscribe();
        if tokio::time::timeout(HISTORY_WAIT, read.wait_for(|r| *r)).await.is_err() {
            // Not waited for again: the pings that arrive meanwhile are as good.
            self.history_read.send_replace(true);
            tracing::warn!("the health topic's history was not read within {HISTORY_WAIT:?}");
        }
    }
}

/// The part of the health topic a starting controller reads back (see [`HEALTH_HISTORY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HealthHistory {
    pub(super) start: Offset,
    /// The offset after the last message that was there at start-up; 0: nothing to read.
    end: i64,
}

impl HealthHistory {
    /// From the topic's watermarks at start-up; with none known, read from where it ends
    /// whenever the topic is there (nothing to wait for).
    pub(super) fn new(watermarks: Option<(i64, i64)>) -> Self {
        match watermarks {
            Some((low, high)) if high > low => {
                Self { start: Offset::Offset(low.max(high - HEALTH_HISTORY)), end: high }
            }
            Some((_, high)) => Self { start: Offset::Offset(high), end: 0 },
            None => Self { start: Offset::End, end: 0 },
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Whether the message at `offset` is the last of the history (or past it).
    fn read_by(&self, offset: i64) -> bool {
        offset + 1 >= self.end
    }
}

pub(super) async fn consume_health(shared: Arc<Shared>, history: HealthHistory) {
    let max_age_ms = shared.config.balancer.offline_after.as_millis() as u64;
    let own = shared.config.controller_id.clone();
    let own_tag = crate::model::revision::tag(&own);
    let (start, fetch) = (history.start, Fetch::Background);
    consume_topic(&shared, HEALTH_TOPIC, start, "controller health", fetch, false, |m| {
        if !*shared.history_read.borrow() && history.read_by(m.offset()) {
            shared.history_read.send_replace(true);
            tracing::debug!(offset = m.offset(), "health history read");
        }
        let Some(msg) = decode::<HealthMessage>(m, "ping") else { return };
        let age_ms = now_millis().saturating_sub(msg.sent_at_ms());
        if age_ms > max_age_ms {
            return;
        }
        // A ping read back from the history counts from when it was sent, not from now.
        let now = Instant::now();
        let at = now.checked_sub(Duration::from_millis(age_ms)).unwrap_or(now);
        match msg {
            HealthMessage::Invoker(ping) => {
                let t = shared.state().balancer.observe(&ping, at);
                if let Some(t) = t {
                    shared.on_transition(t);
                }
            }
            HealthMessage::Controller(p) if p.controller == own => {}
            HealthMessage::Controller(p) => {
                let changed = shared.state().balancer.observe_controller(&p.controller, at);
                if let Some(n) = changed {
                    if crate::model::revision::tag(&p.controller) == own_tag {
                        // Revisions would no longer be unique between the two (model::revision).
                        tracing::error!(
                            peer = %p.controller,
                            "controller ids {own:?} and {:?} have the same revision tag: give one of them another id",
                            p.controller
                        );
                    }
                    shared.on_controllers(n);
                }
            }
        }
    })
    .await
}

/// Pings the health topic every `ping_interval`, so the other controllers count this one.
pub(super) async fn ping_loop(shared: Arc<Shared>) {
    let every_d = shared.config.ping_interval;
    let mut every = tokio::time::interval(every_d);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let key = format!("controller/{}", shared.config.controller_id);
    loop {
        every.tick().await;
        let ping = ControllerPing {
            controller: shared.config.controller_id.clone(),
            sent_at_ms: now_millis(),
        };
        let payload = match serde_json::to_vec(&ping) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a controller ping");
                continue;
            }
        };
        let rec = FutureRecord::to(HEALTH_TOPIC).key(&key).payload(&payload);
        // Not waited for longer than one interval: the next ping supersedes this one.
        match tokio::time::timeout(every_d, shared.producer.send(rec, Duration::ZERO)).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err((e, _))) => {
                tracing::debug!(error = %e, "controller ping not delivered");
                if is_unknown_topic(&e) {
                    if let Err(e) = ensure_controller_topics(&shared).await {
                        tracing::warn!(error = %e, "re-creating the controller's topics failed");
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
    fn the_history_is_the_recent_part_of_the_topic() {
        // Broker unknown at start-up: follow the end, nothing to wait for.
        let h = HealthHistory::new(None);
        assert_eq!((h.start, h.is_empty()), (Offset::End, true));
        // An empty topic: nothing to wait for.
        let h = HealthHistory::new(Some((7, 7)));
        assert_eq!((h.start, h.is_empty()), (Offset::Offset(7), true));
        // A short topic: all of it; read once its last message (offset 41) is.
        let h = HealthHistory::new(Some((0, 42)));
        assert_eq!(h.start, Offset::Offset(0));
        assert!(!h.is_empty() && !h.read_by(40) && h.read_by(41) && h.read_by(50));
        // A long one: its last HEALTH_HISTORY messages.
        let h = HealthHistory::new(Some((5, 50_000)));
        assert_eq!(h.start, Offset::Offset(50_000 - HEALTH_HISTORY));
    }
}
