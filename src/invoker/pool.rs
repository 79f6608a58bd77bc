//! The pool's bookkeeping: which containers are idle (warm or prewarmed), how much memory is
//! reserved, who waits, and where the next activation goes.
//!
//! Everything here is synchronous and runs under the invoker's one `std::sync::Mutex`: each
//! call is a few map operations, so the lock is never held across container I/O or an await
//! (the activation task carries out a [`Placement`] after the lock is dropped). Busy
//! containers are not in here at all: the activation task owns them, which is what makes
//! per-container concurrency 1 hold by construction.
//!
//! Placement order for an activation: a warm idle container of the same action and revision;
//! else a prewarmed container of the same runtime and memory; else a cold start if the memory
//! budget allows, evicting idle containers least recently used first to make room; else the
//! bounded FIFO queue. Waiters keep priority on memory (a new activation never takes memory
//! that a queued one is waiting for), but anyone may take a warm or prewarmed container.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::{plan_eviction, MemoryBudget};
use super::config::PrewarmConfig;
use super::state::{Slot, State, WarmKey};
use super::stats::PoolStats;
use crate::container::ActionContainer;
use crate::dispatch::DispatchError;
use crate::model::Runtime;

/// What an activation needs from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub key: WarmKey,
    pub runtime: Runtime,
    pub memory_mb: u64,
}

/// Where an activation will run. Memory for the container is already reserved in every case.
#[derive(Debug)]
pub enum Placement<C> {
    /// An idle container initialized with this action and revision.
    Warm(Slot<C>),
    /// A stem cell of the right runtime and memory: install the code and init.
    Prewarmed(Slot<C>),
    /// Create a new container. The `evicted` idle containers must be destroyed first (their
    /// memory pays for the new one); then `surplus_mb` goes back to the budget.
    Cold { evicted: Vec<Slot<C>>, taken_mb: u64, need_mb: u64 },
}

impl<C: ActionContainer> Placement<C> {
    /// Memory freed by the evictions beyond what the new container needs.
    pub fn surplus_mb(evicted: &[Slot<C>], taken_mb: u64, need_mb: u64) -> u64 {
        let evicted_mb: u64 = evicted.iter().map(Slot::memory_mb).sum();
        (evicted_mb + taken_mb).saturating_sub(need_mb)
    }
}

/// The answer to an admission.
#[derive(Debug)]
pub enum Admission<C> {
    Placed(Placement<C>),
    /// Waiting for memory; the placement arrives on the receiver (which closes if the invoker
    /// shuts down first).
    Queued(oneshot::Receiver<Placement<C>>),
}

#[derive(Debug)]
struct Waiter<C> {
    need: Need,
    tx: oneshot::Sender<Placement<C>>,
}

/// The pool's state. See the module docs for the placement rules.
#[derive(Debug)]
pub struct PoolState<C> {
    budget: MemoryBudget,
    /// Warm idle containers per action revision; the most recently used is last, and is taken
    /// first so that the others age out and get reaped.
    idle: HashMap<WarmKey, Vec<Slot<C>>>,
    prewarmed: Vec<Slot<C>>,
    queue: VecDeque<Waiter<C>>,
    queue_limit: usize,
    /// Containers owned by activation tasks.
    busy: usize,
    /// Containers being created (for activations or the prewarm filler).
    starting: usize,
    /// Containers handed out to be destroyed and not yet gone.
    destroying: usize,
    starting_prewarm: HashMap<(Runtime, u64), usize>,
    /// Accepted activations not yet finished (queued ones included).
    active: usize,
    completed: u64,
    closing: bool,
}

impl<C: ActionContainer> PoolState<C> {
    pub fn new(memory_budget_mb: u64, queue_limit: usize) -> Self {
        Self {
            budget: MemoryBudget::new(memory_budget_mb),
            idle: HashMap::new(),
            prewarmed: Vec::new(),
            queue: VecDeque::new(),
            queue_limit,
            busy: 0,
            starting: 0,
            destroying: 0,
            starting_prewarm: HashMap::new(),
            active: 0,
            completed: 0,
            closing: false,
        }
    }

    /// Admits an activation: places it at once, queues it, or refuses it.
    pub fn admit(&mut self, need: Need) -> Result<Admission<C>, DispatchError> {
        if self.closing {
            return Err(DispatchError::Unavailable("the invoker is shutting down".to_owned()));
        }
        if !self.budget.could_ever_fit(need.memory_mb) {
            return Err(DispatchError::Unavailable(format!(
                "action {} needs {} MB but the invoker's whole memory budget is {} MB",
                need.key.action,
                need.memory_mb,
                self.budget.total_mb()
            )));
        }
        if let Some(p) = self.try_reuse(&need) {
            self.active += 1;
            return Ok(Admission::Placed(p));
        }
        if self.queue.is_empty() {
            if let Some(p) = self.try_memory(&need) {
                self.active += 1;
                return Ok(Admission::Placed(p));
            }
        }
        if self.queue.len() >= self.queue_limit {
            return Err(DispatchError::Overloaded(format!(
                "the invoker is at capacity: {} activations are already waiting for memory \
                 (queue limit {}), {} of {} MB in use; retry later",
                self.queue.len(),
                self.queue_limit,
                self.budget.used_mb(),
                self.budget.total_mb()
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push_back(Waiter { need, tx });
        self.active += 1;
        Ok(Admission::Queued(rx))
    }

    /// A warm container of the same revision, else a matching stem cell. Counts it busy.
    fn try_reuse(&mut self, need: &Need) -> Option<Placement<C>> {
        if let Some(stack) = self.idle.get_mut(&need.key) {
            if let Some(slot) = stack.pop() {
                if stack.is_empty() {
                    self.idle.remove(&need.key);
                }
                self.busy += 1;
                return Some(Placement::Warm(slot));
            }
        }
        let i = self
            .prewarmed
            .iter()
            .position(|s| s.runtime() == need.runtime && s.memory_mb() == need.memory_mb)?;
        self.busy += 1;
        Some(Placement::Prewarmed(self.prewarmed.swap_remove(i)))
    }

    /// Free memory for a cold start, evicting idle containers (warm ones least recently used
    /// first, then stem cells) when needed. Counts it starting.
    fn try_memory(&mut self, need: &Need) -> Option<Placement<C>> {
        if self.budget.try_reserve(need.memory_mb) {
            self.starting += 1;
            return Some(Placement::Cold {
                evicted: Vec::new(),
                taken_mb: need.memory_mb,
                need_mb: need.memory_mb,
            });
        }
        let mut candidates: Vec<(bool, Instant, u64, &str)> = self
            .idle
            .values()
            .flatten()
            .map(|s| (false, s.last_used(), s.memory_mb(), s.id()))
            .chain(self.prewarmed.iter().map(|s| (true, s.last_used(), s.memory_mb(), s.id())))
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let free = self.budget.free_mb();
        let n = plan_eviction(free, need.memory_mb, candidates.iter().map(|c| c.2))?;
        let chosen: HashSet<String> = candidates[..n].iter().map(|c| c.3.to_owned()).collect();
        let evicted = self.extract_idle(&chosen);
        let evicted_mb: u64 = evicted.iter().map(Slot::memory_mb).sum();
        let taken_mb = need.memory_mb.saturating_sub(evicted_mb);
        if !self.budget.try_reserve(taken_mb) {
            // plan_eviction guarantees taken_mb <= free; put everything back if it did not.
            tracing::error!(taken_mb, free, "eviction plan does not fit the budget");
            self.reinsert(evicted);
            return None;
        }
        self.starting += 1;
        self.destroying += evicted.len();
        tracing::debug!(
            need_mb = need.memory_mb,
            evicted = evicted.len(),
            "evicting idle containers"
        );
        Some(Placement::Cold { evicted, taken_mb, need_mb: need.memory_mb })
    }

    fn extract_idle(&mut self, ids: &HashSet<String>) -> Vec<Slot<C>> {
        let mut out = Vec::with_capacity(ids.len());
        for stack in self.idle.values_mut() {
            let (take, keep): (Vec<_>, Vec<_>) =
                std::mem::take(stack).into_iter().partition(|s| ids.contains(s.id()));
            *stack = keep;
            out.extend(take);
        }
        self.idle.retain(|_, stack| !stack.is_empty());
        let (take, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.prewarmed).into_iter().partition(|s| ids.contains(s.id()));
        self.prewarmed = keep;
        out.extend(take);
        out
    }

    /// Puts idle slots back where their state says they belong.
    fn reinsert(&mut self, slots: Vec<Slot<C>>) {
        for slot in slots {
            match (slot.state(), slot.warm_key().cloned()) {
                (State::WarmIdle, Some(key)) => self.idle.entry(key).or_default().push(slot),
                _ => self.prewarmed.push(slot),
            }
        }
    }

    /// Undoes a placement whose activation went away before taking it.
    fn undo(&mut self, p: Placement<C>) {
        match p {
            Placement::Warm(slot) | Placement::Prewarmed(slot) => {
                self.busy -= 1;
                self.reinsert(vec![slot]);
            }
            Placement::Cold { evicted, taken_mb, .. } => {
                self.starting -= 1;
                self.destroying -= evicted.len();
                self.budget.release(taken_mb);
                self.reinsert(evicted);
            }
        }
    }

    /// Hands containers and memory to waiters: in FIFO order for memory, to anyone for a warm
    /// or prewarmed container.
    fn pump(&mut self) {
        loop {
            let mut undone = false;
            let mut memory_blocked = false;
            let mut i = 0;
            while i < self.queue.len() {
                if self.queue[i].tx.is_closed() {
                    self.queue.remove(i);
                    continue;
                }
                let need = self.queue[i].need.clone();
                let placement = match self.try_reuse(&need) {
                    Some(p) => Some(p),
                    None if !memory_blocked => {
                        let p = self.try_memory(&need);
                        memory_blocked = p.is_none();
                        p
                    }
                    None => None,
                };
                let Some(p) = placement else {
                    i += 1;
                    continue;
                };
                let Some(waiter) = self.queue.remove(i) else { break };
                if let Err(p) = waiter.tx.send(p) {
                    self.undo(p);
                    undone = true;
                }
            }
            if !undone {
                return;
            }
        }
    }

    /// A cold container was created for its activation.
    pub fn cold_created(&mut self) {
        self.starting -= 1;
        self.busy += 1;
    }

    /// A cold start failed; its memory goes back.
    pub fn cold_failed(&mut self, need_mb: u64) {
        self.starting -= 1;
        self.budget.release(need_mb);
        self.pump();
    }

    /// The evictions of a cold placement finished; `surplus_mb` is what they freed beyond
    /// the new container's need (the rest stays reserved for it).
    pub fn evictions_done(&mut self, count: usize, surplus_mb: u64) {
        self.destroying -= count;
        if surplus_mb > 0 {
            self.budget.release(surplus_mb);
            self.pump();
        }
    }

    /// A busy container finished an activation and is usable again (already released to
    /// `WarmIdle`). Returns it when the pool is closing: the caller destroys it.
    pub fn put_back(&mut self, slot: Slot<C>) -> Option<Slot<C>> {
        self.busy -= 1;
        if self.closing {
            self.destroying += 1;
            return Some(slot);
        }
        self.reinsert(vec![slot]);
        self.pump();
        None
    }

    /// A busy container leaves the pool to be destroyed; its memory stays reserved until
    /// [`PoolState::destroyed`].
    pub fn retire_busy(&mut self) {
        self.busy -= 1;
        self.destroying += 1;
    }

    /// A container handed out for destruction is gone: its memory goes back.
    pub fn destroyed(&mut self, memory_mb: u64) {
        self.destroying -= 1;
        self.budget.release(memory_mb);
        self.pump();
    }

    /// An accepted activation ended (its record was sent).
    pub fn finish(&mut self) {
        self.active -= 1;
        self.completed += 1;
    }

    /// Removes warm containers idle for at least `idle_timeout`; the caller destroys them and
    /// reports each with [`PoolState::destroyed`].
    pub fn take_expired(&mut self, now: Instant, idle_timeout: Duration) -> Vec<Slot<C>> {
        let ids: HashSet<String> = self
            .idle
            .values()
            .flatten()
            .filter(|s| now.saturating_duration_since(s.last_used()) >= idle_timeout)
            .map(|s| s.id().to_owned())
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let out = self.extract_idle(&ids);
        self.destroying += out.len();
        out
    }

    /// The next stem cell the filler should create, with its memory already reserved. Waiters
    /// come first: nothing is prewarmed while anyone is queued.
    pub fn next_prewarm(&mut self, plan: &[PrewarmConfig]) -> Option<(Runtime, u64)> {
        if self.closing || !self.queue.is_empty() {
            return None;
        }
        for p in plan {
            let shape = (p.runtime(), p.memory_mb);
            let ready =
                self.prewarmed.iter().filter(|s| (s.runtime(), s.memory_mb()) == shape).count();
            let coming = self.starting_prewarm.get(&shape).copied().unwrap_or(0);
            if ready + coming < p.count && self.budget.try_reserve(p.memory_mb) {
                self.starting += 1;
                *self.starting_prewarm.entry(shape).or_default() += 1;
                return Some(shape);
            }
        }
        None
    }

    fn prewarm_done(&mut self, shape: (Runtime, u64)) {
        self.starting -= 1;
        if let Some(n) = self.starting_prewarm.get_mut(&shape) {
            *n = n.saturating_sub(1);
        }
    }

    /// A stem cell is ready (already `Prewarmed`). Returns it when the pool is closing.
    pub fn prewarm_ready(&mut self, slot: Slot<C>) -> Option<Slot<C>> {
        self.prewarm_done((slot.runtime(), slot.memory_mb()));
        if self.closing {
            self.destroying += 1;
            return Some(slot);
        }
        self.prewarmed.push(slot);
        self.pump();
        None
    }

    /// A new stem cell cannot be parked; the caller destroys it (memory goes back then).
    pub fn prewarm_discard(&mut self, shape: (Runtime, u64)) {
        self.prewarm_done(shape);
        self.destroying += 1;
    }

    /// Creating a stem cell failed; its memory goes back.
    pub fn prewarm_failed(&mut self, shape: (Runtime, u64)) {
        self.prewarm_done(shape);
        self.budget.release(shape.1);
        self.pump();
    }

    /// Takes in a warm container restored from an earlier invoker, reserving its memory.
    /// Returns it when the budget cannot hold it (the caller destroys it).
    pub fn adopt(&mut self, slot: Slot<C>) -> Option<Slot<C>> {
        if self.closing || !self.budget.try_reserve(slot.memory_mb()) {
            return Some(slot);
        }
        self.reinsert(vec![slot]);
        None
    }

    /// Takes the idle container `id` out of the pool (it was terminated from outside); the
    /// caller destroys it and reports [`PoolState::destroyed`]. None when it is not idle here
    /// (busy ones find out through their run).
    pub fn take_idle(&mut self, id: &str) -> Option<Slot<C>> {
        let ids: HashSet<String> = std::iter::once(id.to_owned()).collect();
        let mut out = self.extract_idle(&ids);
        let slot = out.pop()?;
        self.destroying += 1;
        Some(slot)
    }

    /// Whether [`close`](Self::close) was called: nothing is admitted any more.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Stops admitting, drops every waiter (their receivers close) and hands over every idle
    /// container to destroy. Idempotent.
    pub fn close(&mut self) -> Vec<Slot<C>> {
        self.closing = true;
        self.queue.clear();
        let mut out: Vec<Slot<C>> = self.idle.drain().flat_map(|(_, v)| v).collect();
        out.append(&mut self.prewarmed);
        self.destroying += out.len();
        out
    }

    /// Nothing running, starting or waiting.
    pub fn is_quiet(&self) -> bool {
        self.active == 0 && self.starting == 0 && self.busy == 0 && self.destroying == 0
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            warm_idle: self.idle.values().map(Vec::len).sum(),
            warm_busy: self.busy,
            prewarmed: self.prewarmed.len(),
            starting: self.starting,
            destroying: self.destroying,
            in_flight: self.active.saturating_sub(self.queue.len()),
            queued: self.queue.len(),
            memory_in_use_mb: self.budget.used_mb(),
            memory_budget_mb: self.budget.total_mb(),
            completed: self.completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoker::state::tests::{key, Inert};
    use crate::model::Kind;

    fn need(name: &str, rev: u64, mb: u64) -> Need {
        Need { key: key(name, rev), runtime: Runtime::Python, memory_mb: mb }
    }

    fn placed<C>(a: Result<Admission<C>, DispatchError>) -> Placement<C> {
        match a.unwrap() {
            Admission::Placed(p) => p,
            Admission::Queued(_) => panic!("queued"),
        }
    }

    /// Runs a cold placement to the point where its container is idle and warm.
    fn make_warm(pool: &mut PoolState<Inert>, id: &str, n: &Need) {
        let p = placed(pool.admit(n.clone()));
        assert!(matches!(p, Placement::Cold { .. }));
        pool.cold_created();
        let mut slot = Slot::starting(Inert::new(id), n.runtime, n.memory_mb);
        slot.claim(&n.key).unwrap();
        slot.release().unwrap();
        assert!(pool.put_back(slot).is_none());
        pool.finish();
    }

    #[test]
    fn warm_is_reused_only_for_the_same_revision() {
        let mut pool = PoolState::new(1024, 4);
        make_warm(&mut pool, "w1", &need("a", 1, 256));
        assert!(
            matches!(placed(pool.admit(need("a", 1, 256))), Placement::Warm(s) if s.id() == "w1")
        );
        assert!(matches!(placed(pool.admit(need("a", 2, 256))), Placement::Cold { .. }));
        let s = pool.stats();
        assert_eq!((s.warm_busy, s.starting, s.memory_in_use_mb), (1, 1, 512));
    }

    #[test]
    fn stem_cell_of_matching_shape_is_taken() {
        let mut pool = PoolState::<Inert>::new(1024, 4);
        let plan = vec![PrewarmConfig {
            kind: Kind::parse("python:3").unwrap(),
            memory_mb: 256,
            count: 1,
        }];
        let shape = pool.next_prewarm(&plan).unwrap();
        assert_eq!(shape, (Runtime::Python, 256));
        assert_eq!(pool.next_prewarm(&plan), None, "one is already coming");
        let mut slot = Slot::starting(Inert::new("p1"), Runtime::Python, 256);
        slot.park_prewarmed().unwrap();
        assert!(pool.prewarm_ready(slot).is_none());
        assert!(
            matches!(placed(pool.admit(need("x", 1, 128))), Placement::Cold { .. }),
            "memory differs"
        );
        assert!(matches!(placed(pool.admit(need("x", 1, 256))), Placement::Prewarmed(_)));
        assert!(pool.next_prewarm(&plan).is_some(), "refill after it was taken");
    }

    #[test]
    fn eviction_is_lru_and_queue_is_fifo_and_bounded() {
        let mut pool = PoolState::new(512, 1);
        make_warm(&mut pool, "old", &need("a", 1, 256));
        std::thread::sleep(Duration::from_millis(2));
        make_warm(&mut pool, "new", &need("b", 1, 256));
        match placed(pool.admit(need("c", 1, 256))) {
            Placement::Cold { evicted, taken_mb, need_mb } => {
                assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["old"]);
                assert_eq!((taken_mb, need_mb), (0, 256));
                pool.cold_created();
                pool.evictions_done(evicted.len(), 0);
            }
            _ => panic!("expected a cold start with eviction"),
        }
        // c busy, b idle: a 512 MB action cannot fit even after evicting b: queued, b kept.
        let Admission::Queued(mut rx) = pool.admit(need("big", 1, 512)).unwrap() else {
            panic!("expected queued")
        };
        assert_eq!(pool.stats().warm_idle, 1);
        let err = pool.admit(need("d", 1, 256)).unwrap_err();
        assert!(
            matches!(err, DispatchError::Overloaded(ref m) if m.contains("queue limit 1")),
            "{err}"
        );
        // A warm hit bypasses the queue: it needs no memory.
        assert!(matches!(placed(pool.admit(need("b", 1, 256))), Placement::Warm(_)));
        assert!(rx.try_recv().is_err());
        // c retires and is destroyed; b still busy: 256 free, big still waits.
        pool.retire_busy();
        pool.destroyed(256);
        assert!(rx.try_recv().is_err());
        pool.retire_busy();
        pool.destroyed(256);
        assert!(matches!(rx.try_recv(), Ok(Placement::Cold { need_mb: 512, .. })));
        assert_eq!(pool.stats().memory_in_use_mb, 512);
    }

    #[test]
    fn too_big_and_closing_are_unavailable() {
        let mut pool = PoolState::<Inert>::new(256, 4);
        assert!(matches!(pool.admit(need("a", 1, 512)), Err(DispatchError::Unavailable(_))));
        make_warm(&mut pool, "w", &need("a", 1, 256));
        let idle = pool.close();
        assert_eq!(idle.len(), 1);
        assert!(matches!(pool.admit(need("a", 1, 256)), Err(DispatchError::Unavailable(_))));
    }

    #[test]
    fn expired_idle_containers_are_taken() {
        let mut pool = PoolState::new(1024, 4);
        make_warm(&mut pool, "w", &need("a", 1, 256));
        assert!(pool.take_expired(Instant::now(), Duration::from_secs(60)).is_empty());
        let later = Instant::now() + Duration::from_secs(61);
        let gone = pool.take_expired(later, Duration::from_secs(60));
        assert_eq!(gone.len(), 1);
        assert_eq!(pool.stats().warm_idle, 0);
        assert_eq!(pool.stats().memory_in_use_mb, 256, "held until destroyed");
        pool.destroyed(256);
        assert_eq!(pool.stats().memory_in_use_mb, 0);
    }

    #[test]
    fn adopted_and_externally_removed_containers() {
        let mut pool = PoolState::new(512, 4);
        let s = Slot::restored(Inert::new("r1"), Runtime::Python, 256, key("a", 1));
        assert!(pool.adopt(s).is_none());
        let s = Slot::restored(Inert::new("r2"), Runtime::Python, 512, key("b", 1));
        assert!(pool.adopt(s).is_some(), "no room for a second one");
        assert_eq!((pool.stats().warm_idle, pool.stats().memory_in_use_mb), (1, 256));
        assert!(pool.take_idle("nope").is_none());
        let gone = pool.take_idle("r1").unwrap();
        assert_eq!(gone.id(), "r1");
        assert_eq!(pool.stats().warm_idle, 0);
        pool.destroyed(256);
        assert_eq!(pool.stats().memory_in_use_mb, 0);
        assert!(pool.is_quiet());
    }

    #[test]
    fn dropped_waiter_gives_its_placement_back() {
        let mut pool = PoolState::new(256, 4);
        make_warm(&mut pool, "w", &need("a", 1, 256));
        assert!(matches!(placed(pool.admit(need("a", 1, 256))), Placement::Warm(_)));
        let Admission::Queued(rx) = pool.admit(need("b", 1, 256)).unwrap() else { panic!() };
        drop(rx);
        pool.retire_busy();
        pool.destroyed(256);
        assert_eq!(pool.stats().queued, 0);
        assert_eq!(pool.stats().memory_in_use_mb, 0);
    }
}
