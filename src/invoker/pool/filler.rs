//! The prewarm filler's side of the pool (the task itself is `invoker/prewarm.rs`).
//!
//! Ahead of need, the prewarm filler evicts warm containers idle for at least
//! `evict_idle_after`, least recently used first, to refill the prewarm plan once a burst is
//! over ([`PoolState::next_prewarm`]), but not those of an action that undid such an eviction
//! at once by outgrowing its warm containers (a steady load at the budget's edge would
//! otherwise trade a warm container for a stem cell and back every few hundred milliseconds:
//! [`RefillBackoff`](crate::invoker::refill_backoff::RefillBackoff)).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{PoolState, PrewarmStep};
use crate::container::ActionContainer;
use crate::invoker::budget::plan_eviction;
use crate::invoker::config::PrewarmConfig;
use crate::invoker::state::{Slot, WarmKey};
use crate::model::Runtime;

impl<C: ActionContainer> PoolState<C> {
    /// What the prewarm filler should do next. A short shape is created from free memory,
    /// else by evicting warm containers idle since `now - evict_idle_after` or earlier, least
    /// recently used first (never a stem cell, never one in use by a burst that is still
    /// going on). Waiters come first: nothing is prewarmed or evicted while anyone is queued.
    pub fn next_prewarm(
        &mut self,
        plan: &[PrewarmConfig],
        now: Instant,
        evict_idle_after: Duration,
    ) -> PrewarmStep<C> {
        if self.closing {
            return PrewarmStep::Complete;
        }
        let mut short = false;
        let mut retry_at: Option<Instant> = None;
        for p in plan {
            let shape = (p.runtime(), p.memory_mb);
            let ready =
                self.prewarmed.iter().filter(|s| (s.runtime(), s.memory_mb()) == shape).count();
            let coming = self.starting_prewarm.get(&shape).copied().unwrap_or(0);
            if ready + coming >= p.count {
                continue;
            }
            short = true;
            if !self.queue.is_empty() {
                break;
            }
            let evicted = if self.budget.try_reserve(p.memory_mb) {
                Vec::new()
            } else {
                let cutoff = now.checked_sub(evict_idle_after).unwrap_or(now);
                self.refill.settle(now);
                let (refill, idle) = (&self.refill, &self.idle);
                // A pinned action that went quiet (none of its idle containers used within
                // the idle period) is past its load: the pin gives way, so a burst that is
                // over is refilled from as quickly as ever.
                let quiet = |k: &WarmKey| {
                    idle.get(k).map_or(true, |stack| stack.iter().all(|s| s.last_used() <= cutoff))
                };
                let candidates =
                    self.lru_warm(Some(cutoff), |k| refill.pinned(k, now) && !quiet(k));
                let free = self.budget.free_mb();
                let Some(n) = plan_eviction(free, p.memory_mb, candidates.iter().map(|c| c.1))
                else {
                    // The next container to pass the idle threshold, if any is idle at all.
                    let next = self
                        .idle
                        .values()
                        .flatten()
                        .map(|s| s.last_used() + evict_idle_after)
                        .filter(|t| *t > now)
                        .min();
                    retry_at = match (retry_at, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    continue;
                };
                let chosen: HashSet<String> = candidates[..n].iter().map(|c| c.2.clone()).collect();
                let evicted = self.retire_idle(&chosen);
                for key in evicted.iter().filter_map(|s| s.warm_key()) {
                    self.refill.evicted(key, now);
                }
                if !self.budget.try_reserve(p.memory_mb) {
                    tracing::error!(need_mb = p.memory_mb, "eviction plan does not fit the budget");
                    return PrewarmStep::Destroy(evicted);
                }
                evicted
            };
            self.starting += 1;
            *self.starting_prewarm.entry(shape).or_default() += 1;
            return PrewarmStep::Create { shape, evicted };
        }
        if !short {
            return PrewarmStep::Complete;
        }
        // Queued activations, or every container busy: look again after one idle period.
        PrewarmStep::RetryAt(retry_at.unwrap_or(now + evict_idle_after))
    }

    fn prewarm_done(&mut self, shape: (Runtime, u64)) {
        self.starting -= 1;
        if let Some(n) = self.starting_prewarm.get_mut(&shape) {
            *n = n.saturating_sub(1);
        }
    }

    /// A stem cell is ready (already `Prewarmed`). Returns it when the pool is closing.
    #[must_use = "returned containers must be destroyed"]
    pub fn prewarm_ready(&mut self, slot: Slot<C>) -> Vec<Slot<C>> {
        self.prewarm_done((slot.runtime(), slot.memory_mb()));
        if self.closing {
            self.budget.retire(slot.memory_mb());
            self.destroying += 1;
            return vec![slot];
        }
        self.prewarmed.push(slot);
        if self.queue.is_empty() {
            return Vec::new();
        }
        self.pump()
    }

    /// A new stem cell cannot be parked; the caller destroys it.
    pub fn prewarm_discard(&mut self, shape: (Runtime, u64)) {
        self.prewarm_done(shape);
        self.budget.retire(shape.1);
        self.destroying += 1;
    }

    /// Creating a stem cell failed; its memory goes back.
    #[must_use = "retired containers must be destroyed"]
    pub fn prewarm_failed(&mut self, shape: (Runtime, u64)) -> Vec<Slot<C>> {
        self.prewarm_done(shape);
        self.budget.release(shape.1);
        self.pump()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{make_warm, need, placed, python_plan};
    use super::super::{Admission, Placement};
    use super::*;
    use crate::invoker::state::tests::Inert;

    #[test]
    fn stem_cell_of_matching_shape_is_taken() {
        let mut pool = PoolState::<Inert>::new(1024, 4);
        let plan = python_plan();
        let grace = Duration::from_millis(100);
        let step = pool.next_prewarm(&plan, Instant::now(), grace);
        assert!(
            matches!(step, PrewarmStep::Create { shape: (Runtime::Python, 256), ref evicted } if evicted.is_empty())
        );
        assert!(
            matches!(pool.next_prewarm(&plan, Instant::now(), grace), PrewarmStep::Complete),
            "one is already coming"
        );
        let mut slot = Slot::starting(Inert::new("p1"), Runtime::Python, 256);
        slot.park_prewarmed().unwrap();
        assert!(pool.prewarm_ready(slot).is_empty());
        assert!(matches!(
            placed(pool.admit(need("x", 1, 256))),
            Placement::Prewarmed { need_mb: 256, .. }
        ));
        assert!(
            matches!(pool.next_prewarm(&plan, Instant::now(), grace), PrewarmStep::Create { .. }),
            "refill after it was taken"
        );
    }

    #[test]
    fn the_filler_evicts_only_warm_containers_idle_long_enough() {
        let mut pool = PoolState::new(512, 4);
        make_warm(&mut pool, "old", &need("a", 1, 256));
        make_warm(&mut pool, "new", &need("b", 1, 256));
        let plan = python_plan();
        let grace = Duration::from_secs(60);
        let now = Instant::now();
        match pool.next_prewarm(&plan, now, grace) {
            PrewarmStep::RetryAt(at) => assert!(at > now && at <= now + grace),
            other => panic!("nothing is idle long enough yet: {other:?}"),
        }
        assert_eq!(pool.stats().warm_idle, 2);
        let later = now + grace + Duration::from_secs(1);
        let PrewarmStep::Create { shape, evicted } = pool.next_prewarm(&plan, later, grace) else {
            panic!("expected an eviction")
        };
        assert_eq!(shape, (Runtime::Python, 256));
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["old"], "LRU first");
        let s = pool.stats();
        assert_eq!((s.warm_idle, s.starting, s.destroying), (1, 1, 1));
        assert_eq!((pool.budget.live_mb(), s.memory_releasing_mb), (512, 256));
        // Waiters come first: nothing is evicted while one is queued.
        let Admission::Queued(_rx) = pool.admit(need("c", 1, 512)).unwrap() else {
            panic!("expected queued")
        };
        let plan2 = vec![PrewarmConfig { count: 2, ..plan[0].clone() }];
        assert!(matches!(pool.next_prewarm(&plan2, later, grace), PrewarmStep::RetryAt(_)));
        assert_eq!(pool.stats().warm_idle, 1);
    }

    /// A steady load at the budget's edge: the filler evicts the action's least used container
    /// for a stem cell, the action's next peak takes the stem cell; the filler then leaves the
    /// action's containers alone instead of evicting again at the next idle moment, until the
    /// action goes quiet.
    #[test]
    fn the_filler_does_not_evict_again_what_an_action_took_back_at_once() {
        let mut pool = PoolState::new(512, 4);
        let a = need("a", 1, 256);
        // Two warm containers of the action (two runs at once made them).
        for _ in 0..2 {
            assert!(matches!(placed(pool.admit(a.clone())), Placement::Cold { .. }));
            pool.cold_created();
        }
        for id in ["a1", "a2"] {
            let mut slot = Slot::starting(Inert::new(id), a.runtime, a.memory_mb);
            slot.claim(&a.key).unwrap();
            slot.release().unwrap();
            assert!(pool.put_back(slot).is_empty());
            pool.finish();
        }
        let plan = python_plan();
        let idle = Duration::from_millis(100);
        let later = Instant::now() + Duration::from_secs(1);
        let PrewarmStep::Create { evicted, .. } = pool.next_prewarm(&plan, later, idle) else {
            panic!("expected an eviction")
        };
        assert_eq!(evicted.len(), 1);
        pool.destroyed(256);
        let mut stem = Slot::starting(Inert::new("stem"), Runtime::Python, 256);
        stem.park_prewarmed().unwrap();
        assert!(pool.prewarm_ready(stem).is_empty());
        // The action's peak: its warm container and the stem cell, both back after the runs.
        let Placement::Warm(mut warm) = placed(pool.admit(a.clone())) else { panic!("warm") };
        let Placement::Prewarmed { slot: mut taken, .. } = placed(pool.admit(a.clone())) else {
            panic!("the stem cell")
        };
        warm.claim(&a.key).unwrap();
        taken.claim(&a.key).unwrap();
        warm.release().unwrap();
        assert!(pool.put_back(warm).is_empty());
        // The load goes on: one of its containers was just used, the other a while ago.
        std::thread::sleep(Duration::from_millis(30));
        taken.release().unwrap();
        assert!(pool.put_back(taken).is_empty());
        pool.finish();
        pool.finish();
        let short = Duration::from_millis(20);
        assert!(matches!(pool.next_prewarm(&plan, Instant::now(), short), PrewarmStep::RetryAt(_)));
        assert_eq!(pool.stats().warm_idle, 2, "the filler waits rather than evict again");
        // Once the action is quiet (no container used within the idle period), the pin gives
        // way even before it is over: the load ended.
        let quiet = Instant::now() + Duration::from_millis(500);
        assert!(matches!(pool.next_prewarm(&plan, quiet, idle), PrewarmStep::Create { .. }));
    }
}
