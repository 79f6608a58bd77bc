//! One invoker as a controller sees it: its last ping, its health and what this controller has
//! in flight there.
//!
//! Health follows OpenWhisk's three useful states. An invoker is *up* when its last ping is
//! recent and reports no system error, *unhealthy* when its last ping is recent but reports
//! recent system errors (containers fail to start, runc broken: scheduling there would turn
//! user requests into internal errors), and *offline* when no ping arrived for the configured
//! time. Only *up* invokers get work. Only *offline* means "gone": the bus then fails the
//! activations it had in flight there. This file never reads the clock; callers pass `now`.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// An invoker's number, unique among the invokers of one cluster (`hearthd invoker --id N`).
/// Dense small numbers: the sharding balancer indexes by them, so hashing stays stable while
/// invokers come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvokerId(pub u32);

impl fmt::Display for InvokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invoker{}", self.0)
    }
}

/// What an invoker says about itself every ping interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub invoker: InvokerId,
    /// Memory the invoker gives to action containers, in MB.
    pub capacity_mb: u64,
    /// Memory not taken by running activations when the ping was sent, in MB (informative:
    /// the balancer accounts with its own in-flight count, which is exact for this controller
    /// and never stale).
    pub free_mb: u64,
    /// The invoker saw system errors (whisk internal errors) recently.
    pub system_error: bool,
    /// Wall-clock milliseconds since the epoch when the ping was sent: a controller ignores
    /// pings older than its offline time (a replayed topic must not revive a dead invoker).
    pub sent_at_ms: u64,
}

/// What a controller says every ping interval on the health topic: that it is alive. The
/// controllers count each other from these to divide every invoker's memory between them
/// (see `sharding.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerPing {
    pub controller: String,
    /// As [`Ping::sent_at_ms`]: an old ping (a replayed topic) does not count.
    pub sent_at_ms: u64,
}

/// A message on the health topic: an invoker's or a controller's ping (told apart by their
/// fields, so invokers' pings keep their shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HealthMessage {
    Invoker(Ping),
    Controller(ControllerPing),
}

impl HealthMessage {
    pub fn sent_at_ms(&self) -> u64 {
        match self {
            HealthMessage::Invoker(p) => p.sent_at_ms,
            HealthMessage::Controller(p) => p.sent_at_ms,
        }
    }
}

/// The health of one invoker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    Up,
    Unhealthy,
    Offline,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Unhealthy => "unhealthy",
            Health::Offline => "offline",
        })
    }
}

/// A change of one invoker's health, for the bus to act on (fail in-flight work when an
/// invoker goes offline) and to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub invoker: InvokerId,
    pub from: Health,
    pub to: Health,
}

/// One invoker's state in one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokerState {
    pub id: InvokerId,
    pub health: Health,
    /// When the last ping arrived (monotonic clock of this controller); `None`: never pinged
    /// (a gap in the numbering), which counts as offline.
    pub last_ping: Option<Instant>,
    pub capacity_mb: u64,
    pub reported_free_mb: u64,
    /// MB of activations this controller sent there and has not seen complete.
    pub in_flight_mb: u64,
}

impl InvokerState {
    /// A slot for an invoker that has not pinged yet.
    pub fn unknown(id: InvokerId) -> Self {
        Self {
            id,
            health: Health::Offline,
            last_ping: None,
            capacity_mb: 0,
            reported_free_mb: 0,
            in_flight_mb: 0,
        }
    }

    /// Takes a ping received at `now`; returns the transition if the health changed.
    pub fn observe(&mut self, ping: &Ping, now: Instant) -> Option<Transition> {
        self.last_ping = Some(now);
        self.capacity_mb = ping.capacity_mb;
        self.reported_free_mb = ping.free_mb;
        let to = if ping.system_error { Health::Unhealthy } else { Health::Up };
        self.set(to)
    }

    /// Marks the invoker offline when its last ping is older than `offline_after` at `now`.
    pub fn tick(&mut self, now: Instant, offline_after: Duration) -> Option<Transition> {
        let silent = match self.last_ping {
            Some(at) => now.saturating_duration_since(at) > offline_after,
            None => true,
        };
        if silent {
            self.set(Health::Offline)
        } else {
            None
        }
    }

    /// MB this controller may still send there before the invoker is full.
    pub fn free_mb(&self) -> u64 {
        self.capacity_mb.saturating_sub(self.in_flight_mb)
    }

    fn set(&mut self, to: Health) -> Option<Transition> {
        let from = self.health;
        self.health = to;
        (from != to).then_some(Transition { invoker: self.id, from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(system_error: bool) -> Ping {
        Ping {
            invoker: InvokerId(0),
            capacity_mb: 1024,
            free_mb: 1024,
            system_error,
            sent_at_ms: 0,
        }
    }

    #[test]
    fn ping_brings_an_unknown_invoker_up_once() {
        let t0 = Instant::now();
        let mut s = InvokerState::unknown(InvokerId(0));
        assert_eq!(s.health, Health::Offline);
        let t = s.observe(&ping(false), t0).unwrap();
        assert_eq!((t.from, t.to), (Health::Offline, Health::Up));
        assert_eq!(s.observe(&ping(false), t0 + Duration::from_millis(500)), None);
        assert_eq!(s.capacity_mb, 1024);
    }

    #[test]
    fn system_errors_make_it_unhealthy_and_recover() {
        let t0 = Instant::now();
        let mut s = InvokerState::unknown(InvokerId(0));
        s.observe(&ping(false), t0);
        let t = s.observe(&ping(true), t0).unwrap();
        assert_eq!((t.from, t.to), (Health::Up, Health::Unhealthy));
        let t = s.observe(&ping(false), t0).unwrap();
        assert_eq!(t.to, Health::Up);
    }

    #[test]
    fn silence_longer_than_the_offline_time_is_offline() {
        let t0 = Instant::now();
        let after = Duration::from_secs(10);
        let mut s = InvokerState::unknown(InvokerId(3));
        s.observe(&ping(false), t0);
        assert_eq!(s.tick(t0 + Duration::from_secs(10), after), None, "exactly 10 s is still up");
        let t = s.tick(t0 + Duration::from_millis(10_001), after).unwrap();
        assert_eq!((t.invoker, t.from, t.to), (InvokerId(3), Health::Up, Health::Offline));
        assert_eq!(s.tick(t0 + Duration::from_secs(60), after), None, "reported once");
        let t = s.observe(&ping(false), t0 + Duration::from_secs(61)).unwrap();
        assert_eq!((t.from, t.to), (Health::Offline, Health::Up));
    }

    #[test]
    fn never_pinged_stays_offline_without_transition() {
        let mut s = InvokerState::unknown(InvokerId(1));
        assert_eq!(s.tick(Instant::now(), Duration::from_secs(1)), None);
        assert_eq!(s.health, Health::Offline);
    }

    #[test]
    fn both_kinds_of_ping_share_the_topic() {
        let inv = serde_json::to_string(&ping(false)).unwrap();
        let ctl = serde_json::to_string(&ControllerPing { controller: "c1".into(), sent_at_ms: 5 })
            .unwrap();
        assert!(
            matches!(serde_json::from_str(&inv).unwrap(), HealthMessage::Invoker(p) if p == ping(false))
        );
        let m: HealthMessage = serde_json::from_str(&ctl).unwrap();
        assert_eq!(m.sent_at_ms(), 5);
        assert!(matches!(m, HealthMessage::Controller(c) if c.controller == "c1"));
    }

    #[test]
    fn free_memory_is_capacity_minus_in_flight() {
        let mut s = InvokerState::unknown(InvokerId(0));
        s.observe(&ping(false), Instant::now());
        s.in_flight_mb = 1000;
        assert_eq!(s.free_mb(), 24);
        s.in_flight_mb = 2000;
        assert_eq!(s.free_mb(), 0);
    }
}
