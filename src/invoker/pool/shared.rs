//! Shared containers: actions with `limits.concurrency` N > 1 (Node).
//!
//! The first activation gets a container as any other (warm, stem cell, cold) and, while it
//! starts and inits, the key is *forming*: up to N - 1 more activations of the same key wait
//! for it (`joiners`) instead of starting containers of their own. Once it is initialized in
//! concurrent mode the activation registers it with [`PoolState::serve`]: its slot stays in
//! the pool, in `serving`, with its [`SharedHandle`] and an in-flight count, and every
//! activation of the key that finds room gets [`Placement::Join`], which reserves no memory
//! (the container's memory is counted once, however many runs it holds). Each run ends with
//! [`PoolState::leave`]; at zero in flight the slot goes back to warm idle (LRU, idle timeout,
//! eviction as any other), keeping its handle for the next join. A container that died takes
//! no more joins and is destroyed when its last run leaves. Waiters of the key (in `joiners`
//! or the fair queue) are served by room as soon as it appears.

use super::{Need, Placement, PoolState};
use crate::container::{ActionContainer, SharedHandle};
use crate::invoker::state::{Slot, WarmKey};

/// A seat in a shared container: run through `handle`, then [`PoolState::leave`] with `key`
/// and `container`.
#[derive(Debug, Clone)]
pub struct Joined {
    pub key: WarmKey,
    pub container: String,
    pub handle: SharedHandle,
}

/// A container serving the activations of one key at once.
#[derive(Debug)]
pub(super) struct Serving<C> {
    slot: Slot<C>,
    handle: SharedHandle,
    pub(super) in_flight: u64,
    max: u64,
    /// Died or failed a run for all: takes no more joins, destroyed after its last run.
    dead: bool,
}

/// Containers of a shared key being started or initialized, and the joiners promised a seat.
#[derive(Debug, Default)]
pub(super) struct Forming {
    containers: u64,
    pub(super) seats: u64,
    max: u64,
}

impl Forming {
    pub(super) fn room(&self) -> u64 {
        self.containers.saturating_mul(self.max.saturating_sub(1)).saturating_sub(self.seats)
    }
}

impl<C: ActionContainer> PoolState<C> {
    /// A seat in a serving container of the key with room, else an idle container of the key
    /// that was shared before (it becomes serving with this one run).
    pub(super) fn try_join(&mut self, need: &Need) -> Option<Placement<C>> {
        if let Some(list) = self.serving.get_mut(&need.key) {
            if let Some(s) =
                list.iter_mut().find(|s| !s.dead && s.in_flight < s.max && s.handle.is_usable())
            {
                s.in_flight += 1;
                return Some(Placement::Join(Joined {
                    key: need.key.clone(),
                    container: s.slot.id().to_owned(),
                    handle: s.handle.clone(),
                }));
            }
        }
        let stack = self.idle.get_mut(&need.key)?;
        let i = stack.iter().rposition(|s| s.shared().is_some_and(|h| h.is_usable()))?;
        let mut slot = stack.remove(i);
        if stack.is_empty() {
            self.idle.remove(&need.key);
        }
        if let Err(e) = slot.claim(&need.key) {
            tracing::error!(error = %e, "a shared idle container cannot be claimed");
            self.reinsert(vec![slot]);
            return None;
        }
        let handle = slot.shared()?.clone();
        let joined = Joined {
            key: need.key.clone(),
            container: slot.id().to_owned(),
            handle: handle.clone(),
        };
        let serving = Serving { slot, handle, in_flight: 1, max: need.concurrency, dead: false };
        self.serving.entry(need.key.clone()).or_default().push(serving);
        Some(Placement::Join(joined))
    }

    /// Notes that a placement for a shared action starts a container that will serve it: the
    /// key is forming until [`PoolState::serve`] or [`PoolState::formation_failed`].
    pub(super) fn forms(&mut self, need: &Need, p: Placement<C>) -> Placement<C> {
        if need.concurrency > 1 && !matches!(p, Placement::Join(_)) {
            let f = self.forming.entry(need.key.clone()).or_default();
            f.containers += 1;
            f.max = need.concurrency;
        }
        p
    }

    /// The first activation of a shared action initialized its container in concurrent mode:
    /// the busy slot moves into `serving` with this activation in flight, and the key's
    /// waiters are seated. Returns what the caller must destroy.
    #[must_use = "retired containers must be destroyed"]
    pub fn serve(&mut self, mut slot: Slot<C>, handle: SharedHandle, max: u64) -> Vec<Slot<C>> {
        self.busy -= 1;
        let key = match slot.warm_key() {
            Some(k) => k.clone(),
            None => {
                tracing::error!(container = slot.id(), "a shared container has no action");
                self.busy += 1;
                return self.retire_busy_slot(slot);
            }
        };
        slot.set_shared(handle.clone());
        let serving = Serving { slot, handle, in_flight: 1, max, dead: false };
        self.serving.entry(key.clone()).or_default().push(serving);
        self.formation_ended(&key)
    }

    /// A busy slot of this pool's count leaves it to be destroyed, with what the pump frees.
    fn retire_busy_slot(&mut self, slot: Slot<C>) -> Vec<Slot<C>> {
        let mut out = self.retire_busy(slot.memory_mb());
        out.push(slot);
        out
    }

    /// The first activation of a shared action did not get a shared container (the create
    /// or init failed, or the driver runs one activation at a time): its waiters are placed
    /// anew. Returns what the caller must destroy.
    #[must_use = "retired containers must be destroyed"]
    pub fn formation_failed(&mut self, key: &WarmKey) -> Vec<Slot<C>> {
        self.formation_ended(key)
    }

    /// One forming container of `key` is done (serving or failed): joiners are seated where
    /// there is room, kept while other containers are forming, else placed like any
    /// activation (which may start the next shared container).
    pub(super) fn formation_ended(&mut self, key: &WarmKey) -> Vec<Slot<C>> {
        if let Some(f) = self.forming.get_mut(key) {
            f.containers = f.containers.saturating_sub(1);
            f.seats = 0;
        }
        let mut out = Vec::new();
        let waiting = self.joiners.remove(key).unwrap_or_default();
        for waiter in waiting {
            if waiter.tx.is_closed() {
                continue;
            }
            if let Some(p) = self.try_join(&waiter.need) {
                if let Err(back) = self.give(waiter, p) {
                    out.extend(back);
                }
                continue;
            }
            if let Some(f) = self.forming.get_mut(key) {
                if f.room() > 0 {
                    f.seats += 1;
                    self.joiners.entry(key.clone()).or_default().push_back(waiter);
                    continue;
                }
            }
            let free_queue = self.queue.is_empty();
            let placement = match self.try_reuse(&waiter.need, free_queue) {
                Some(p) => Some(p),
                None if free_queue => self.try_memory(&waiter.need),
                None => None,
            };
            match placement {
                Some(p) => {
                    if let Err(back) = self.give(waiter, p) {
                        out.extend(back);
                    }
                }
                // Already accepted: it waits in the fair queue whatever its length.
                None => {
                    let tenant = waiter.need.tenant.clone();
                    self.queue.push(&tenant, waiter);
                }
            }
        }
        if self.forming.get(key).is_some_and(|f| f.containers == 0) {
            self.forming.remove(key);
        }
        if !self.queue.is_empty() {
            out.extend(self.pump());
        }
        out
    }

    /// A run in the shared container `container` of `key` ended; `usable` is whether the
    /// container can take more. At zero in flight it goes back to warm idle, or is returned
    /// to be destroyed when it died (or the pool is closing).
    #[must_use = "returned containers must be destroyed"]
    pub fn leave(&mut self, key: &WarmKey, container: &str, usable: bool) -> Vec<Slot<C>> {
        self.leave_inner(key, container, usable, true)
    }

    pub(super) fn leave_inner(
        &mut self,
        key: &WarmKey,
        container: &str,
        usable: bool,
        pump: bool,
    ) -> Vec<Slot<C>> {
        let Some(list) = self.serving.get_mut(key) else {
            tracing::error!(%key, container, "leaving a container that is not serving");
            return Vec::new();
        };
        let Some(i) = list.iter().position(|s| s.slot.id() == container) else {
            tracing::error!(%key, container, "leaving a container that is not serving");
            return Vec::new();
        };
        let s = &mut list[i];
        s.in_flight = s.in_flight.saturating_sub(1);
        if !usable || !s.handle.is_usable() {
            s.dead = true;
        }
        if s.in_flight > 0 {
            // Room for one more: a waiter of the key may take it.
            return if s.dead || !pump || self.queue.is_empty() { Vec::new() } else { self.pump() };
        }
        let s = list.swap_remove(i);
        if list.is_empty() {
            self.serving.remove(key);
        }
        let Serving { mut slot, dead, .. } = s;
        let reusable = !dead && !self.closing;
        let released = reusable
            && slot.release().map_err(|e| {
                tracing::error!(error = %e, "a shared container cannot go back to idle; destroying it");
            }).is_ok();
        if !released {
            // Retired: its memory may be taken at once by a waiter, as for any eviction.
            self.budget.retire(slot.memory_mb());
            self.destroying += 1;
            let mut out = vec![slot];
            if pump && !self.queue.is_empty() {
                out.extend(self.pump());
            }
            return out;
        }
        self.reinsert(vec![slot]);
        if !pump || self.queue.is_empty() {
            return Vec::new();
        }
        self.pump()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use super::super::testkit::{need, placed};
    use super::super::Admission;
    use super::*;
    use crate::invoker::state::tests::Inert;
    use crate::model::Runtime;

    /// A shared handle that does nothing but die on request.
    #[derive(Debug, Default)]
    struct TestShared(std::sync::atomic::AtomicBool);

    impl crate::container::SharedRuns for TestShared {
        fn run<'a>(
            &'a self,
            _: &'a crate::launcher::RunSpec,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<crate::container::RunOutput, crate::container::RunError>,
                    > + Send
                    + 'a,
            >,
        > {
            Box::pin(async { Err(crate::container::RunError::Internal("not run here".into())) })
        }
        fn is_usable(&self) -> bool {
            !self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn shared_need(name: &str, concurrency: u64) -> Need {
        Need { runtime: Runtime::Nodejs, concurrency, ..need(name, 1, 256) }
    }

    /// The first activation's cold start, up to its container initialized in concurrent mode
    /// and serving; returns the handle.
    fn start_serving(
        pool: &mut PoolState<Inert>,
        id: &str,
        n: &Need,
        waiting: usize,
    ) -> (Arc<TestShared>, Vec<oneshot::Receiver<Placement<Inert>>>) {
        assert!(matches!(placed(pool.admit(n.clone())), Placement::Cold { .. }));
        pool.cold_created();
        let joiners: Vec<_> = (0..waiting)
            .map(|_| match pool.admit(n.clone()).unwrap() {
                Admission::Queued(rx) => rx,
                Admission::Placed(p) => panic!("expected to wait for the forming container: {p:?}"),
            })
            .collect();
        assert_eq!(pool.stats().shared_waiting, waiting);
        assert_eq!(pool.stats().starting + pool.stats().warm_busy, 1, "one container only");
        let mut slot = Slot::starting(Inert::new(id), n.runtime, n.memory_mb);
        assert_eq!(slot.claim(&n.key), Ok(true));
        let handle = Arc::new(TestShared::default());
        assert!(pool.serve(slot, handle.clone(), n.concurrency).is_empty());
        (handle, joiners)
    }

    #[test]
    fn two_hundred_activations_share_one_container_and_its_memory() {
        let mut pool = PoolState::<Inert>::new(1024, 4);
        let n = shared_need("many", 200);
        let (_handle, mut joiners) = start_serving(&mut pool, "s1", &n, 150);
        for rx in &mut joiners {
            assert!(matches!(rx.try_recv(), Ok(Placement::Join(ref j)) if j.container == "s1"));
        }
        let mut seats: Vec<Joined> = Vec::new();
        for _ in 0..49 {
            match placed(pool.admit(n.clone())) {
                Placement::Join(j) => seats.push(j),
                other => panic!("expected a seat: {other:?}"),
            }
        }
        let s = pool.stats();
        assert_eq!((s.shared_serving, s.shared_in_flight, s.shared_waiting), (1, 200, 0));
        assert_eq!((s.warm_busy, s.starting, s.memory_in_use_mb), (1, 0, 256));
        assert_eq!(pool.stats().in_flight, 200);
        // Full: the 201st starts a second container.
        assert!(matches!(placed(pool.admit(n.clone())), Placement::Cold { .. }));
        pool.cold_failed(256).into_iter().for_each(drop);
        pool.formation_failed(&n.key).into_iter().for_each(drop);
        for _ in 0..200 {
            assert!(pool.leave(&n.key, "s1", true).is_empty());
        }
        for _ in 0..201 {
            pool.finish();
        }
        let s = pool.stats();
        assert_eq!(
            (s.warm_idle, s.warm_busy, s.shared_serving, s.memory_in_use_mb),
            (1, 0, 0, 256)
        );
        // Idle, it keeps its handle: the next activation joins it without an init.
        assert!(
            matches!(placed(pool.admit(n.clone())), Placement::Join(ref j) if j.container == "s1")
        );
        assert_eq!(pool.stats().shared_in_flight, 1);
        assert!(pool.leave(&n.key, "s1", true).is_empty());
        pool.finish();
        // And it ages out like any warm container.
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(pool.take_expired(later, Duration::from_secs(60)).len(), 1);
    }

    #[test]
    fn a_dead_shared_container_takes_no_joins_and_goes_after_its_last_run() {
        let mut pool = PoolState::<Inert>::new(512, 4);
        let n = shared_need("d", 10);
        let (handle, mut joiners) = start_serving(&mut pool, "s1", &n, 1);
        assert!(matches!(joiners[0].try_recv(), Ok(Placement::Join(_))));
        handle.0.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(pool.leave(&n.key, "s1", false).is_empty(), "one run still in it");
        assert!(
            matches!(placed(pool.admit(n.clone())), Placement::Cold { .. }),
            "a dead container takes no joins"
        );
        let gone = pool.leave(&n.key, "s1", false);
        assert_eq!(gone.iter().map(|s| s.id()).collect::<Vec<_>>(), ["s1"]);
        let s = pool.stats();
        assert_eq!((s.destroying, s.shared_serving, s.warm_idle), (1, 0, 0));
        assert_eq!(s.memory_releasing_mb, 256);
    }

    #[test]
    fn a_shared_container_that_cannot_go_idle_hands_its_memory_to_a_waiter() {
        let mut pool = PoolState::<Inert>::new(256, 4);
        let n = shared_need("s", 10);
        let (_handle, _) = start_serving(&mut pool, "s1", &n, 0);
        let mut waiter = match pool.admit(need("other", 1, 256)).unwrap() {
            Admission::Queued(rx) => rx,
            Admission::Placed(p) => panic!("the budget is full: {p:?}"),
        };
        // The slot is no longer busy when its last run leaves (a bookkeeping slip): it cannot
        // be released to idle, so it is destroyed, and its memory goes to the waiter at once.
        let serving = pool.serving.get_mut(&n.key).unwrap();
        assert_eq!(serving[0].slot.release(), Ok(()));
        let gone = pool.leave(&n.key, "s1", true);
        assert_eq!(gone.iter().map(|s| s.id()).collect::<Vec<_>>(), ["s1"]);
        assert!(
            matches!(waiter.try_recv(), Ok(Placement::Cold { .. })),
            "the waiter was left waiting for memory that was free"
        );
    }

    #[test]
    fn waiters_are_served_by_room_in_the_shared_container() {
        let mut pool = PoolState::<Inert>::new(256, 4);
        let n = shared_need("r", 2);
        assert!(matches!(placed(pool.admit(n.clone())), Placement::Cold { .. }));
        pool.cold_created();
        let Admission::Queued(mut seat) = pool.admit(n.clone()).unwrap() else { panic!() };
        // The forming container has no more room and the budget none: the fair queue.
        let Admission::Queued(mut queued) = pool.admit(n.clone()).unwrap() else { panic!() };
        assert_eq!((pool.stats().shared_waiting, pool.stats().queued), (1, 1));
        let mut slot = Slot::starting(Inert::new("s1"), n.runtime, n.memory_mb);
        slot.claim(&n.key).unwrap();
        assert!(pool.serve(slot, Arc::new(TestShared::default()), 2).is_empty());
        assert!(matches!(seat.try_recv(), Ok(Placement::Join(_))));
        assert!(queued.try_recv().is_err(), "full");
        assert!(pool.leave(&n.key, "s1", true).is_empty());
        assert!(matches!(queued.try_recv(), Ok(Placement::Join(_))), "served by the room");
        assert_eq!(pool.stats().shared_in_flight, 2);
    }

    #[test]
    fn a_failed_formation_places_its_waiters_anew() {
        let mut pool = PoolState::<Inert>::new(512, 4);
        let n = shared_need("f", 5);
        assert!(matches!(placed(pool.admit(n.clone())), Placement::Cold { .. }));
        let Admission::Queued(mut a) = pool.admit(n.clone()).unwrap() else { panic!() };
        let Admission::Queued(mut b) = pool.admit(n.clone()).unwrap() else { panic!() };
        // The create failed: its memory goes back, and the waiters start the next container.
        assert!(pool.cold_failed(256).is_empty());
        assert!(pool.formation_failed(&n.key).is_empty());
        assert!(matches!(a.try_recv(), Ok(Placement::Cold { .. })));
        assert!(b.try_recv().is_err(), "b now waits for a's container");
        assert_eq!(pool.stats().shared_waiting, 1);
        pool.cold_created();
        let mut slot = Slot::starting(Inert::new("s2"), n.runtime, n.memory_mb);
        slot.claim(&n.key).unwrap();
        assert!(pool.serve(slot, Arc::new(TestShared::default()), 5).is_empty());
        assert!(matches!(b.try_recv(), Ok(Placement::Join(ref j)) if j.container == "s2"));
    }
}
