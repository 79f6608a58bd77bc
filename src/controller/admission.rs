//! Per-namespace admission: OpenWhisk's invocations-per-minute and concurrent-invocations
//! limits, checked before an activation is dispatched, so that one namespace's flood is
//! refused at the door (429, OpenWhisk's messages) instead of filling the invoker's queue.
//!
//! As OpenWhisk's `RateThrottler`, the rate is counted per calendar minute and every check
//! charges one (a refused request counts too: a client hammering a closed door stays
//! refused). As its `ActivationThrottler`, the concurrency is the namespace's accepted
//! activations that have not finished. Each controller counts on its own; with several live
//! controllers each enforces its share, the limit raised by OpenWhisk's 20% over-commit and
//! divided between them (never below one), so a cluster admits at most 1.2 times a limit
//! while the balancer spreads requests evenly, and never more than the limit per controller.
//!
//! Must never: take a lock for longer than a map lookup, or grow without bound (idle
//! namespaces are pruned).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::ControllerError;
use crate::model::{now_millis, EntityName, NamespaceLimits};

/// Namespaces tracked before idle ones are pruned.
const PRUNE_AT: usize = 4096;

/// The counters of one namespace.
#[derive(Debug, Default)]
struct Counters {
    /// The minute (since the epoch) `in_minute` counts.
    minute: AtomicU64,
    in_minute: AtomicU32,
    /// Accepted activations not finished yet.
    in_flight: AtomicU32,
}

impl Counters {
    /// Counts one request in the current minute; returns the count including it.
    fn charge(&self, minute: u64) -> u32 {
        if self.minute.swap(minute, Ordering::AcqRel) != minute {
            // The first request of a new minute restarts the count (a race with another first
            // request of the minute loses at most that request's charge, as OpenWhisk's does).
            self.in_minute.store(0, Ordering::Release);
        }
        self.in_minute.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn idle(&self, minute: u64) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.minute.load(Ordering::Acquire) != minute
    }
}

/// Held by an admitted activation until it finishes; its drop frees the concurrency slot.
#[derive(Debug)]
pub struct Ticket(Arc<Counters>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The admission counters of every namespace this controller served recently.
#[derive(Debug, Default)]
pub struct Admission {
    table: Mutex<HashMap<EntityName, Arc<Counters>>>,
}

/// This controller's share of `limit` when `controllers` live controllers share the work
/// (OpenWhisk's `calculateIndividualLimit`). Zero stays zero: a namespace an operator shut.
pub fn share(limit: u32, controllers: usize) -> u32 {
    if controllers <= 1 || limit == 0 {
        return limit;
    }
    let dilated = (f64::from(limit) * 1.2).ceil();
    ((dilated / controllers as f64) as u32).max(1)
}

impl Admission {
    fn counters(&self, ns: &EntityName, minute: u64) -> Arc<Counters> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = table.get(ns) {
            return c.clone();
        }
        if table.len() >= PRUNE_AT {
            table.retain(|_, c| !c.idle(minute));
        }
        table.entry(ns.clone()).or_default().clone()
    }

    /// Admits one activation of namespace `ns` under its effective `limits`, or refuses it
    /// with OpenWhisk's 429 message naming the limit.
    pub fn admit(
        &self,
        ns: &EntityName,
        limits: &NamespaceLimits,
        controllers: usize,
    ) -> Result<Ticket, ControllerError> {
        self.admit_at(ns, limits, controllers, now_millis() / 60_000)
    }

    fn admit_at(
        &self,
        ns: &EntityName,
        limits: &NamespaceLimits,
        controllers: usize,
        minute: u64,
    ) -> Result<Ticket, ControllerError> {
        let c = self.counters(ns, minute);
        let count = c.charge(minute);
        if let Some(per_minute) = limits.invocations_per_minute {
            let allowed = share(per_minute, controllers);
            if count > allowed {
                tracing::info!(namespace = %ns, count, allowed, "invocations per minute exceeded");
                return Err(ControllerError::Throttled(format!(
                    "Too many requests in the last minute (count: {count}, allowed: {allowed})."
                )));
            }
        }
        let Some(allowed) = limits.concurrent_invocations.map(|l| share(l, controllers)) else {
            c.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok(Ticket(c));
        };
        match c
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < allowed).then_some(n + 1))
        {
            Ok(_) => Ok(Ticket(c)),
            Err(count) => {
                tracing::info!(namespace = %ns, count, allowed, "concurrent invocations exceeded");
                Err(ControllerError::Throttled(format!(
                    "Too many concurrent requests in flight (count: {count}, allowed: {allowed})."
                )))
            }
        }
    }

    /// Charges one trigger fire of `ns` against its fires per minute (OpenWhisk's trigger
    /// throttle, with the same message as the invocation rate's); call on an `Admission`
    /// that counts fires only.
    pub fn admit_fire(
        &self,
        ns: &EntityName,
        limits: &NamespaceLimits,
        controllers: usize,
    ) -> Result<(), ControllerError> {
        let minute = now_millis() / 60_000;
        let count = self.counters(ns, minute).charge(minute);
        match limits.fires_per_minute.map(|l| share(l, controllers)) {
            Some(allowed) if count > allowed => {
                tracing::info!(namespace = %ns, count, allowed, "trigger fires per minute exceeded");
                Err(ControllerError::Throttled(format!(
                    "Too many requests in the last minute (count: {count}, allowed: {allowed})."
                )))
            }
            _ => Ok(()),
        }
    }

    /// Accepted activations of `ns` in flight at this controller.
    #[cfg(test)]
    fn in_flight(&self, ns: &EntityName) -> u32 {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.get(ns).map(|c| c.in_flight.load(Ordering::Acquire)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(n: &str) -> EntityName {
        EntityName::parse(n).unwrap()
    }

    #[test]
    fn concurrency_is_per_namespace_and_freed_by_the_ticket() {
        let a = Admission::default();
        let limits = NamespaceLimits { concurrent_invocations: Some(2), ..Default::default() };
        let t1 = a.admit(&ns("a"), &limits, 1).unwrap();
        let _t2 = a.admit(&ns("a"), &limits, 1).unwrap();
        let e = a.admit(&ns("a"), &limits, 1).unwrap_err();
        assert!(matches!(e, ControllerError::Throttled(_)));
        assert_eq!(e.to_string(), "Too many concurrent requests in flight (count: 2, allowed: 2).");
        let _b = a.admit(&ns("b"), &limits, 1).expect("another namespace is not affected");
        drop(t1);
        assert_eq!(a.in_flight(&ns("a")), 1);
        let _t3 = a.admit(&ns("a"), &limits, 1).expect("a finished activation frees its slot");
    }

    #[test]
    fn the_rate_counts_refusals_too() {
        let a = Admission::default();
        let limits = NamespaceLimits { invocations_per_minute: Some(3), ..Default::default() };
        for _ in 0..3 {
            drop(a.admit(&ns("a"), &limits, 1).unwrap());
        }
        let e = a.admit(&ns("a"), &limits, 1).unwrap_err();
        assert_eq!(e.to_string(), "Too many requests in the last minute (count: 4, allowed: 3).");
        let e = a.admit(&ns("a"), &limits, 1).unwrap_err();
        assert!(e.to_string().contains("count: 5"), "{e}");
    }

    #[test]
    fn zero_shuts_a_namespace_and_the_share_divides_between_controllers() {
        let a = Admission::default();
        let shut = NamespaceLimits { concurrent_invocations: Some(0), ..Default::default() };
        assert!(a.admit(&ns("a"), &shut, 1).is_err());
        assert_eq!(share(100, 1), 100);
        assert_eq!(share(100, 2), 60);
        assert_eq!(share(100, 3), 40);
        assert_eq!(share(1, 4), 1, "never below one");
        assert_eq!(share(0, 4), 0);
    }

    #[test]
    fn idle_namespaces_are_pruned_and_a_new_minute_counts_afresh() {
        let a = Admission::default();
        let limits = NamespaceLimits { invocations_per_minute: Some(1), ..Default::default() };
        let held = a.admit_at(&ns("busy"), &limits, 1, 1).unwrap();
        for i in 0..PRUNE_AT {
            drop(a.admit_at(&ns(&format!("n{i}")), &limits, 1, 1));
        }
        assert!(a.admit_at(&ns("busy"), &limits, 1, 1).is_err(), "one a minute");
        assert!(a.admit_at(&ns("late"), &limits, 1, 2).is_ok());
        let table = a.table.lock().unwrap();
        assert_eq!(table.len(), 2, "idle namespaces pruned, the busy one and the new one kept");
        drop(table);
        drop(held);
        assert!(a.admit_at(&ns("busy"), &limits, 1, 2).is_ok(), "a new minute");
    }
}
