//! The pool's bookkeeping: which containers are idle (warm or prewarmed), how much memory is
//! reserved, who waits, and where the next activation goes.
//!
//! Everything here is synchronous and runs under the invoker's one `std::sync::Mutex`: each
//! call is a few map operations, so the lock is never held across container I/O or an await
//! (the activation task carries out a [`Placement`] after the lock is dropped). Busy
//! containers of actions with concurrency 1 are not in here at all: the activation task owns
//! them, which is what makes one activation per container hold by construction.
//!
//! Actions with `limits.concurrency` N > 1 (Node) share containers: see `shared.rs` for how
//! a key forms, serves and seats its joiners.
//!
//! Placement order for an activation: a warm idle container of the same action and revision;
//! else a stem cell of the same runtime (of the same memory if there is one, else of any
//! memory: the activation resizes it to the action's limit); else a cold start if the memory
//! budget allows, evicting idle containers least recently used first to make room; else the
//! bounded queue, fair across namespaces. Waiters keep priority on memory (a new activation
//! never takes memory that a queued one is waiting for), but anyone may take a warm or
//! prewarmed container. An eviction on demand never takes another namespace's warm container
//! used within the neighbour guard ([`PoolState::set_neighbour_guard`]), so a namespace that
//! floods a full pool cannot take each container a neighbour hands back.
//!
//! Destruction is never on an activation's path: an evicted container is retired at once
//! (its memory moves to the budget's releasing share, see `budget.rs`) and handed out to be
//! destroyed behind the activation that took its memory. Ahead of need, the prewarm filler
//! evicts idle warm containers to refill the prewarm plan: see `filler.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::{plan_eviction, MemoryBudget};
use super::fair_queue::FairQueue;
use super::refill_backoff::RefillBackoff;
use super::state::{Slot, State, WarmKey};
use super::stats::PoolStats;
use crate::container::ActionContainer;
use crate::dispatch::DispatchError;
use crate::model::{EntityName, Runtime};

mod filler;
mod shared;
#[cfg(test)]
mod testkit;

pub use shared::Joined;
use shared::{Forming, Serving};

/// What an activation needs from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub key: WarmKey,
    pub runtime: Runtime,
    pub memory_mb: u64,
    /// The namespace the activation is billed to (the caller's): waiters are served fairly
    /// across namespaces.
    pub tenant: EntityName,
    /// The action's `limits.concurrency`: activations one container runs at once.
    pub concurrency: u64,
}

/// Where an activation will run. Memory for the container is already reserved in every case,
/// and every container in `evicted` is already retired: the activation hands them out to be
/// destroyed behind it and never waits for them.
#[derive(Debug)]
pub enum Placement<C> {
    /// An idle container initialized with this action and revision.
    Warm(Slot<C>),
    /// A stem cell of the right runtime: resize it to `need_mb` if its limit differs, install
    /// the code and init. The budget holds the larger of its limit and `need_mb` until
    /// [`PoolState::stem_cell_resized`] or [`PoolState::stem_cell_unfit`].
    Prewarmed { slot: Slot<C>, evicted: Vec<Slot<C>>, need_mb: u64 },
    /// Create a new container of `need_mb`.
    Cold { evicted: Vec<Slot<C>>, need_mb: u64 },
    /// A seat in a container that serves this action concurrently: no memory is reserved.
    Join(Joined),
}

/// The answer to an admission.
#[derive(Debug)]
pub enum Admission<C> {
    Placed(Placement<C>),
    /// Waiting for memory; the placement arrives on the receiver (which closes if the invoker
    /// shuts down first).
    Queued(oneshot::Receiver<Placement<C>>),
}

/// What the prewarm filler should do next.
#[derive(Debug)]
pub enum PrewarmStep<C> {
    /// Create a stem cell of this runtime and memory (already reserved); `evicted` (already
    /// retired) are to be destroyed meanwhile.
    Create { shape: (Runtime, u64), evicted: Vec<Slot<C>> },
    /// The plan is short but nothing can be done now (activations are waiting, or no idle
    /// container has been idle long enough): look again at this instant, or when woken.
    RetryAt(Instant),
    /// The plan is complete.
    Complete,
    /// Only destroy these (retired) containers: an eviction that did not make room, which
    /// the budget's arithmetic rules out.
    Destroy(Vec<Slot<C>>),
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
    queue: FairQueue<Waiter<C>>,
    queue_limit: usize,
    /// Containers owned by activation tasks.
    busy: usize,
    /// Containers being created (for activations or the prewarm filler).
    starting: usize,
    /// Containers handed out to be destroyed and not yet gone.
    destroying: usize,
    starting_prewarm: HashMap<(Runtime, u64), usize>,
    /// Shared containers of actions with concurrency above 1, per key.
    serving: HashMap<WarmKey, Vec<Serving<C>>>,
    /// Keys whose shared container is starting, and the activations waiting for a seat in it.
    forming: HashMap<WarmKey, Forming>,
    joiners: HashMap<WarmKey, VecDeque<Waiter<C>>>,
    /// Accepted activations not yet finished (queued ones included).
    active: usize,
    completed: u64,
    closing: bool,
    /// A warm container used this recently is never evicted on demand for an activation of
    /// another namespace's action (see [`PoolState::set_neighbour_guard`]).
    neighbour_guard: Duration,
    /// Actions whose containers the prewarm filler leaves alone for now.
    refill: RefillBackoff,
}

impl<C: ActionContainer> PoolState<C> {
    pub fn new(memory_budget_mb: u64, queue_limit: usize) -> Self {
        Self {
            budget: MemoryBudget::new(memory_budget_mb),
            idle: HashMap::new(),
            prewarmed: Vec::new(),
            queue: FairQueue::default(),
            queue_limit,
            busy: 0,
            starting: 0,
            destroying: 0,
            starting_prewarm: HashMap::new(),
            serving: HashMap::new(),
            forming: HashMap::new(),
            joiners: HashMap::new(),
            active: 0,
            completed: 0,
            closing: false,
            neighbour_guard: Duration::ZERO,
            refill: RefillBackoff::default(),
        }
    }

    /// Tenant fairness: a warm container that served an action of namespace X within `guard`
    /// is not evicted to cold-start an activation of namespace Y when Y has more activations
    /// waiting than X: the heavier waiter yields. Without it, a namespace flooding a full pool
    /// takes every container another namespace hands back, microseconds after its run (it is
    /// the least recently used idle one, and the flooder always has a waiter): the other
    /// namespace then cold-starts on every invoke. The other way round stays open (the
    /// lighter namespace's waiter may evict the flooder's container, or it would starve), as
    /// do Y's own idle containers, stem cells and containers idle for longer; the prewarm
    /// filler re-runs the queue at least once per guard period while anyone waits
    /// ([`PoolState::pump_waiting`]), so the guard delays a waiter by at most that long.
    /// X is the namespace of the container's action, Y the namespace billed for the waiter.
    pub fn set_neighbour_guard(&mut self, guard: Duration) {
        self.neighbour_guard = guard;
    }

    /// Whether activations are queued for memory.
    pub fn has_waiters(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Re-runs the queue (the prewarm filler's periodic look: a waiter that the neighbour
    /// guard held back may be placed once the guard passed). Returns what to destroy.
    pub fn pump_waiting(&mut self) -> Vec<Slot<C>> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        self.pump()
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
        if need.concurrency > 1 {
            if let Some(p) = self.try_join(&need) {
                self.active += 1;
                return Ok(Admission::Placed(p));
            }
            if let Some(f) = self.forming.get_mut(&need.key) {
                if f.room() > 0 {
                    f.seats += 1;
                    let (tx, rx) = oneshot::channel();
                    let key = need.key.clone();
                    self.joiners.entry(key).or_default().push_back(Waiter { need, tx });
                    self.active += 1;
                    return Ok(Admission::Queued(rx));
                }
            }
        }
        if let Some(p) = self.try_reuse(&need, self.queue.is_empty()) {
            self.active += 1;
            return Ok(Admission::Placed(self.placed(&need, p)));
        }
        if self.queue.is_empty() {
            if let Some(p) = self.try_memory(&need) {
                self.active += 1;
                return Ok(Admission::Placed(self.placed(&need, p)));
            }
        }
        if self.queue.len() >= self.queue_limit {
            return Err(DispatchError::Overloaded(format!(
                "the invoker is at capacity: {} activations are already waiting for memory \
                 (queue limit {}), {} of {} MB in use; retry later",
                self.queue.len(),
                self.queue_limit,
                self.budget.live_mb(),
                self.budget.total_mb()
            )));
        }
        let (tx, rx) = oneshot::channel();
        let tenant = need.tenant.clone();
        self.queue.push(&tenant, Waiter { need, tx });
        self.active += 1;
        Ok(Admission::Queued(rx))
    }

    /// Notes what a placement means before it is handed out: an action that outgrew its warm
    /// containers (a stem cell or a cold start) right after the filler evicted one of them
    /// makes that eviction a mistake ([`RefillBackoff`]); and a shared action's container is
    /// forming (see [`PoolState::forms`]).
    fn placed(&mut self, need: &Need, p: Placement<C>) -> Placement<C> {
        if matches!(p, Placement::Prewarmed { .. } | Placement::Cold { .. })
            && self.refill.outgrown(&need.key, Instant::now())
        {
            tracing::debug!(key = %need.key, "the filler's eviction was undone at once: it leaves the action alone for a while");
        }
        self.forms(need, p)
    }

    /// A warm container of the same revision, else a stem cell of the same runtime (of the
    /// same memory first). Counts it busy. A stem cell that must grow takes memory, so it is
    /// only taken when `may_take_memory` (no waiter ahead is owed that memory).
    fn try_reuse(&mut self, need: &Need, may_take_memory: bool) -> Option<Placement<C>> {
        if need.concurrency > 1 {
            if let Some(p) = self.try_join(need) {
                return Some(p);
            }
        }
        if let Some(stack) = self.idle.get_mut(&need.key) {
            // A shared container is only ever joined (above): one whose handle died while it
            // was idle waits here to be reaped or evicted, never run one at a time.
            if let Some(i) = stack.iter().rposition(|s| s.shared().is_none()) {
                let slot = stack.remove(i);
                if stack.is_empty() {
                    self.idle.remove(&need.key);
                }
                self.busy += 1;
                return Some(Placement::Warm(slot));
            }
        }
        let same_runtime = |s: &Slot<C>| s.runtime() == need.runtime;
        if let Some(i) =
            self.prewarmed.iter().position(|s| same_runtime(s) && s.memory_mb() == need.memory_mb)
        {
            self.busy += 1;
            let slot = self.prewarmed.swap_remove(i);
            return Some(Placement::Prewarmed {
                slot,
                evicted: Vec::new(),
                need_mb: need.memory_mb,
            });
        }
        // Another size: the smallest one that is at least as large needs no more memory;
        // otherwise the largest, which needs the least more.
        let i = self
            .prewarmed
            .iter()
            .enumerate()
            .filter(|(_, s)| same_runtime(s))
            .min_by_key(|(_, s)| {
                let mb = s.memory_mb();
                if mb >= need.memory_mb {
                    (0, mb)
                } else {
                    (1, u64::MAX - mb)
                }
            })
            .map(|(i, _)| i)?;
        let more_mb = need.memory_mb.saturating_sub(self.prewarmed[i].memory_mb());
        if more_mb > 0 && !may_take_memory {
            return None;
        }
        let evicted = if more_mb == 0 || self.budget.try_reserve(more_mb) {
            Vec::new()
        } else {
            // Only warm containers make room for a growing stem cell: evicting another stem
            // cell to grow this one would leave the plan as short.
            let candidates = self.lru_warm(None, |_| false);
            let n = plan_eviction(self.budget.free_mb(), more_mb, candidates.iter().map(|c| c.1))?;
            let chosen: HashSet<String> = candidates[..n].iter().map(|c| c.2.clone()).collect();
            let evicted = self.retire_idle(&chosen);
            if !self.budget.try_reserve(more_mb) {
                tracing::error!(more_mb, "eviction plan does not fit the budget");
            }
            evicted
        };
        self.busy += 1;
        let slot = self.prewarmed.swap_remove(i);
        Some(Placement::Prewarmed { slot, evicted, need_mb: need.memory_mb })
    }

    /// Idle warm containers, least recently used first: (last used, memory, id). With
    /// `idle_since`, only those idle since that instant or earlier; never those of a key for
    /// which `skip` is true.
    fn lru_warm(
        &self,
        idle_since: Option<Instant>,
        skip: impl Fn(&WarmKey) -> bool,
    ) -> Vec<(Instant, u64, String)> {
        let mut out: Vec<(Instant, u64, String)> = self
            .idle
            .iter()
            .filter(|(k, _)| !skip(k))
            .flat_map(|(_, stack)| stack)
            .filter(|s| idle_since.map_or(true, |t| s.last_used() <= t))
            .map(|s| (s.last_used(), s.memory_mb(), s.id().to_owned()))
            .collect();
        out.sort_by_key(|c| c.0);
        out
    }

    /// Free memory for a cold start, evicting idle containers (warm ones least recently used
    /// first, then stem cells) when needed. Counts it starting.
    fn try_memory(&mut self, need: &Need) -> Option<Placement<C>> {
        if self.budget.try_reserve(need.memory_mb) {
            self.starting += 1;
            return Some(Placement::Cold { evicted: Vec::new(), need_mb: need.memory_mb });
        }
        let now = Instant::now();
        let guard = self.neighbour_guard;
        let mine = self.queue.len_of(&need.tenant);
        let queue = &self.queue;
        let evictable = |s: &Slot<C>| {
            s.warm_key().map_or(true, |k| {
                k.action.namespace == need.key.action.namespace
                    || queue.len_of(&k.action.namespace) >= mine
            }) || now.saturating_duration_since(s.last_used()) >= guard
        };
        let mut candidates: Vec<(bool, Instant, u64, &str)> = self
            .idle
            .values()
            .flatten()
            .filter(|s| evictable(s))
            .map(|s| (false, s.last_used(), s.memory_mb(), s.id()))
            .chain(self.prewarmed.iter().map(|s| (true, s.last_used(), s.memory_mb(), s.id())))
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let free = self.budget.free_mb();
        let n = plan_eviction(free, need.memory_mb, candidates.iter().map(|c| c.2))?;
        let chosen: HashSet<String> = candidates[..n].iter().map(|c| c.3.to_owned()).collect();
        let evicted = self.retire_idle(&chosen);
        if !self.budget.try_reserve(need.memory_mb) {
            // plan_eviction guarantees the fit; the evicted are retired either way, so the
            // activation waits in the queue for the memory they free.
            tracing::error!(
                need_mb = need.memory_mb,
                free,
                "eviction plan does not fit the budget"
            );
            return None;
        }
        self.starting += 1;
        tracing::debug!(
            need_mb = need.memory_mb,
            evicted = evicted.len(),
            "evicting idle containers"
        );
        Some(Placement::Cold { evicted, need_mb: need.memory_mb })
    }

    /// Takes the idle containers `ids` out of the pool and retires them: their memory is free
    /// at once and releasing until each is [`PoolState::destroyed`].
    fn retire_idle(&mut self, ids: &HashSet<String>) -> Vec<Slot<C>> {
        let out = self.extract_idle(ids);
        for slot in &out {
            self.budget.retire(slot.memory_mb());
        }
        self.destroying += out.len();
        out
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

    /// Undoes a placement whose activation went away before taking it. Evicted containers
    /// stay retired: they come back as `destroy` for the caller.
    fn undo(&mut self, p: Placement<C>) -> Vec<Slot<C>> {
        match p {
            Placement::Warm(slot) => {
                self.busy -= 1;
                self.reinsert(vec![slot]);
                Vec::new()
            }
            Placement::Prewarmed { slot, evicted, need_mb } => {
                self.busy -= 1;
                self.budget.release(need_mb.saturating_sub(slot.memory_mb()));
                self.reinsert(vec![slot]);
                evicted
            }
            Placement::Cold { evicted, need_mb } => {
                self.starting -= 1;
                self.budget.release(need_mb);
                evicted
            }
            // No pump: an undo runs inside one.
            Placement::Join(j) => self.leave_inner(&j.key, &j.container, true, false),
        }
    }

    /// Sends a placement to a waiter; when the waiter went away, undoes it (and its forming)
    /// and returns what must be destroyed.
    fn give(&mut self, waiter: Waiter<C>, p: Placement<C>) -> Result<(), Vec<Slot<C>>> {
        let Waiter { need, tx } = waiter;
        let p = self.placed(&need, p);
        let forming = need.concurrency > 1 && !matches!(p, Placement::Join(_));
        match tx.send(p) {
            Ok(()) => Ok(()),
            Err(p) => {
                let mut out = self.undo(p);
                if forming {
                    out.extend(self.formation_ended(&need.key));
                }
                Err(out)
            }
        }
    }

    /// Hands containers and memory to waiters: in FIFO order for memory, to anyone for a warm
    /// or prewarmed container. Returns containers retired on the way (placements a waiter
    /// dropped), which the caller destroys.
    #[must_use = "retired containers must be destroyed"]
    fn pump(&mut self) -> Vec<Slot<C>> {
        let mut retired = Vec::new();
        self.queue.retain(|w| !w.tx.is_closed());
        loop {
            let mut undone = false;
            let mut memory_blocked = false;
            for id in self.queue.service_order() {
                // Nothing left that a waiter could take (no idle or stem cell container, no
                // shared container, and memory owed to a waiter ahead): the rest of the queue
                // stays as it is. Without this, every run that ends under a flood walks (and
                // clones) every waiter for nothing.
                if memory_blocked
                    && self.idle.is_empty()
                    && self.prewarmed.is_empty()
                    && self.serving.is_empty()
                {
                    break;
                }
                let Some(need) = self.queue.get(id).map(|w| w.need.clone()) else { continue };
                let placement = match self.try_reuse(&need, !memory_blocked) {
                    Some(p) => Some(p),
                    None if !memory_blocked => {
                        let p = self.try_memory(&need);
                        memory_blocked = p.is_none();
                        p
                    }
                    None => None,
                };
                let Some(p) = placement else { continue };
                let Some(waiter) = self.queue.serve(id) else { break };
                if let Err(back) = self.give(waiter, p) {
                    retired.extend(back);
                    undone = true;
                }
            }
            if !undone {
                return retired;
            }
        }
    }

    /// A cold container was created for its activation.
    pub fn cold_created(&mut self) {
        self.starting -= 1;
        self.busy += 1;
    }

    /// A cold start failed; its memory goes back.
    #[must_use = "retired containers must be destroyed"]
    pub fn cold_failed(&mut self, need_mb: u64) -> Vec<Slot<C>> {
        self.starting -= 1;
        self.budget.release(need_mb);
        self.pump()
    }

    /// A taken stem cell now has the activation's limit `to_mb` (it had `from_mb`): a smaller
    /// limit gives the difference back.
    #[must_use = "retired containers must be destroyed"]
    pub fn stem_cell_resized(&mut self, from_mb: u64, to_mb: u64) -> Vec<Slot<C>> {
        if to_mb < from_mb {
            self.budget.release(from_mb - to_mb);
            return self.pump();
        }
        Vec::new()
    }

    /// A taken stem cell of `from_mb` could not take the limit `to_mb`: the activation
    /// destroys it and cold-starts instead. The stem cell is retired and `to_mb` stays
    /// reserved for the new container (it is at most what the placement held).
    pub fn stem_cell_unfit(&mut self, from_mb: u64, to_mb: u64) {
        self.busy -= 1;
        self.destroying += 1;
        self.starting += 1;
        // The placement held max(from, to); keep `to` for the new container.
        self.budget.retire(from_mb);
        if !self.budget.try_reserve(from_mb.min(to_mb)) {
            tracing::error!(
                from_mb,
                to_mb,
                "an unfit stem cell's memory does not cover its cold start"
            );
        }
    }

    /// A busy container finished an activation and is usable again (already released to
    /// `WarmIdle`). Returns what the caller must destroy: the container itself when the pool
    /// is closing, or containers a waiter evicted and then dropped.
    #[must_use = "returned containers must be destroyed"]
    pub fn put_back(&mut self, slot: Slot<C>) -> Vec<Slot<C>> {
        self.busy -= 1;
        if self.closing {
            self.budget.retire(slot.memory_mb());
            self.destroying += 1;
            return vec![slot];
        }
        self.reinsert(vec![slot]);
        if self.queue.is_empty() {
            return Vec::new();
        }
        self.pump()
    }

    /// A busy container leaves the pool to be destroyed: its memory is free at once and
    /// releasing until [`PoolState::destroyed`].
    #[must_use = "retired containers must be destroyed"]
    pub fn retire_busy(&mut self, memory_mb: u64) -> Vec<Slot<C>> {
        self.busy -= 1;
        self.destroying += 1;
        self.budget.retire(memory_mb);
        self.pump()
    }

    /// A container handed out for destruction is gone.
    pub fn destroyed(&mut self, memory_mb: u64) {
        self.destroying -= 1;
        self.budget.torn_down(memory_mb);
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
        let mut out = self.retire_idle(&ids);
        out.extend(self.pump());
        out
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
    pub fn take_idle(&mut self, id: &str) -> Option<Vec<Slot<C>>> {
        let ids: HashSet<String> = std::iter::once(id.to_owned()).collect();
        let mut out = self.retire_idle(&ids);
        if out.is_empty() {
            return None;
        }
        out.extend(self.pump());
        Some(out)
    }

    /// Whether [`close`](Self::close) was called: nothing is admitted any more.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Stops admitting, drops every waiter (their receivers close) and hands over every idle
    /// container to destroy. Idempotent.
    pub fn close(&mut self) -> Vec<Slot<C>> {
        self.closing = true;
        drop(self.queue.drain());
        self.joiners.clear();
        self.forming.clear();
        let mut out: Vec<Slot<C>> = self.idle.drain().flat_map(|(_, v)| v).collect();
        out.append(&mut self.prewarmed);
        for slot in &out {
            self.budget.retire(slot.memory_mb());
        }
        self.destroying += out.len();
        out
    }

    /// Nothing running, starting or waiting.
    pub fn is_quiet(&self) -> bool {
        self.active == 0
            && self.starting == 0
            && self.busy == 0
            && self.destroying == 0
            && self.serving.is_empty()
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            warm_idle: self.idle.values().map(Vec::len).sum(),
            warm_busy: self.busy + self.serving.values().map(Vec::len).sum::<usize>(),
            shared_serving: self.serving.values().map(Vec::len).sum(),
            shared_in_flight: self
                .serving
                .values()
                .flatten()
                .map(|s| usize::try_from(s.in_flight).unwrap_or(usize::MAX))
                .sum(),
            shared_waiting: self.joiners.values().map(VecDeque::len).sum(),
            prewarmed: self.prewarmed.len(),
            starting: self.starting,
            destroying: self.destroying,
            in_flight: self.active.saturating_sub(
                self.queue.len() + self.joiners.values().map(VecDeque::len).sum::<usize>(),
            ),
            queued: self.queue.len(),
            memory_in_use_mb: self.budget.used_mb(),
            memory_releasing_mb: self.budget.releasing_mb(),
            memory_budget_mb: self.budget.total_mb(),
            completed: self.completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{make_warm, need, need_of, placed, stem_cell};
    use super::*;
    use crate::invoker::state::tests::{key, Inert};

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
    fn a_stem_cell_of_another_size_is_taken_and_accounted_at_the_larger_size() {
        let mut pool = PoolState::<Inert>::new(768, 4);
        stem_cell(&mut pool, "s", 256);
        // Growing: 256 more MB are reserved at once.
        let Placement::Prewarmed { slot, evicted, need_mb: 512 } =
            placed(pool.admit(need("big", 1, 512)))
        else {
            panic!("expected the stem cell")
        };
        assert!(evicted.is_empty());
        assert_eq!(pool.stats().memory_in_use_mb, 512);
        assert!(pool.stem_cell_resized(256, 512).is_empty());
        assert_eq!(pool.stats().memory_in_use_mb, 512);
        drop(slot);

        // Shrinking: the larger size is held until the resize, then the difference goes back.
        stem_cell(&mut pool, "t", 256);
        let Placement::Prewarmed { need_mb: 128, .. } = placed(pool.admit(need("small", 1, 128)))
        else {
            panic!("expected the stem cell")
        };
        assert_eq!(pool.stats().memory_in_use_mb, 768);
        assert!(pool.stem_cell_resized(256, 128).is_empty());
        assert_eq!(pool.stats().memory_in_use_mb, 640);
    }

    /// Issue 17: namespace A floods a full pool; B's container, handed back microseconds ago,
    /// stays B's (its next invoke is warm) until it has been idle for the guard; A's own idle
    /// containers are always A's to evict.
    #[test]
    fn a_flooding_namespace_does_not_evict_a_neighbours_container_just_handed_back() {
        let mut pool = PoolState::<Inert>::new(512, 8);
        pool.set_neighbour_guard(Duration::from_secs(3600));
        let a = need_of("flood", "a", 256);
        let b = need_of("quiet", "b", 256);
        assert!(matches!(placed(pool.admit(a.clone())), Placement::Cold { .. }));
        pool.cold_created();
        make_warm(&mut pool, "b1", &b);
        // A's first waiter is the only one of anybody's: it may evict (nobody waits less).
        let Placement::Cold { evicted, .. } = placed(pool.admit(need_of("flood", "a2", 256)))
        else {
            panic!("expected a cold start")
        };
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["b1"]);

        // A floods: two waiters of A's. B's container, back just now, stays B's.
        let mut pool = PoolState::<Inert>::new(512, 8);
        pool.set_neighbour_guard(Duration::from_secs(3600));
        assert!(matches!(placed(pool.admit(a.clone())), Placement::Cold { .. }));
        pool.cold_created();
        assert!(matches!(placed(pool.admit(b.clone())), Placement::Cold { .. }));
        pool.cold_created();
        let mut rxs = Vec::new();
        for name in ["a2", "a3"] {
            let Admission::Queued(rx) = pool.admit(need_of("flood", name, 256)).unwrap() else {
                panic!("the pool is full: queued")
            };
            rxs.push(rx);
        }
        let mut slot = Slot::starting(Inert::new("b1"), b.runtime, b.memory_mb);
        slot.claim(&b.key).unwrap();
        slot.release().unwrap();
        assert!(pool.put_back(slot).is_empty());
        pool.finish();
        assert!(pool.pump_waiting().is_empty());
        for rx in &mut rxs {
            assert!(rx.try_recv().is_err(), "still waiting: B's container is guarded");
        }
        assert!(matches!(placed(pool.admit(b.clone())), Placement::Warm(_)), "B stays warm");

        // B, the lighter waiter, may evict the flooder's container just handed back. A's
        // first waiter (queued first) takes A's own container; B is next in turn.
        let Admission::Queued(mut rx_b) = pool.admit(need_of("quiet", "b2", 256)).unwrap() else {
            panic!("queued behind the pool")
        };
        let hand_back = |pool: &mut PoolState<Inert>, id: &str, n: &Need| {
            let mut slot = Slot::starting(Inert::new(id), n.runtime, n.memory_mb);
            slot.claim(&n.key).unwrap();
            slot.release().unwrap();
            assert!(pool.put_back(slot).is_empty());
        };
        hand_back(&mut pool, "a1", &a);
        let Ok(Placement::Cold { evicted, .. }) = rxs[0].try_recv() else {
            panic!("A's first waiter evicts A's own container")
        };
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["a1"]);
        pool.cold_created();
        hand_back(&mut pool, "a2", &need_of("flood", "a2", 256));
        let Ok(Placement::Cold { evicted, .. }) = rx_b.try_recv() else {
            panic!("B's waiter evicts the container A handed back just now")
        };
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["a2"]);

        // Without the guard (or once it passed) the waiter evicts the idle container.
        let mut pool = PoolState::<Inert>::new(512, 8);
        assert!(matches!(placed(pool.admit(a.clone())), Placement::Cold { .. }));
        pool.cold_created();
        make_warm(&mut pool, "b1", &b);
        pool.set_neighbour_guard(Duration::ZERO);
        let p = placed(pool.admit(need_of("flood", "a2", 256)));
        let Placement::Cold { evicted, .. } = p else { panic!("expected a cold start") };
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["b1"]);

        // A's own idle container is A's to evict, guard or not.
        let mut pool = PoolState::<Inert>::new(512, 8);
        pool.set_neighbour_guard(Duration::from_secs(3600));
        make_warm(&mut pool, "a1", &a);
        make_warm(&mut pool, "b1", &b);
        let p = placed(pool.admit(need_of("flood", "a2", 256)));
        let Placement::Cold { evicted, .. } = p else { panic!("expected a cold start") };
        assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["a1"]);
    }

    #[test]
    fn a_growing_stem_cell_does_not_take_memory_a_waiter_is_owed() {
        let mut pool = PoolState::<Inert>::new(512, 4);
        stem_cell(&mut pool, "s", 256);
        let mut busy = need("busy", 1, 256);
        busy.runtime = Runtime::Nodejs;
        assert!(matches!(placed(pool.admit(busy)), Placement::Cold { .. }));
        let mut waiter = need("w", 1, 512);
        waiter.runtime = Runtime::Nodejs;
        let Admission::Queued(_rx) = pool.admit(waiter).unwrap() else { panic!("expected queued") };
        assert!(
            matches!(pool.admit(need("big", 1, 512)), Ok(Admission::Queued(_))),
            "growing the stem cell would take memory the waiter is owed"
        );
        assert!(
            matches!(placed(pool.admit(need("same", 1, 256))), Placement::Prewarmed { .. }),
            "a stem cell of the right size is anyone's"
        );
    }

    #[test]
    fn an_unfit_stem_cell_becomes_a_cold_start_without_passing_the_budget() {
        let mut pool = PoolState::<Inert>::new(512, 4);
        stem_cell(&mut pool, "s", 256);
        let Placement::Prewarmed { .. } = placed(pool.admit(need("big", 1, 512))) else {
            panic!("expected the stem cell")
        };
        pool.stem_cell_unfit(256, 512);
        let s = pool.stats();
        assert_eq!((s.warm_busy, s.starting, s.destroying), (0, 1, 1));
        assert_eq!(pool.budget.live_mb(), 512, "the cold start holds the action's size");
        assert_eq!(s.memory_releasing_mb, 256, "the stem cell is being torn down");
        pool.destroyed(256);
        pool.cold_created();
        assert_eq!(pool.stats().memory_in_use_mb, 512);
    }

    #[test]
    fn eviction_is_lru_and_queue_is_fifo_and_bounded() {
        let mut pool = PoolState::new(512, 1);
        make_warm(&mut pool, "old", &need("a", 1, 256));
        std::thread::sleep(Duration::from_millis(2));
        make_warm(&mut pool, "new", &need("b", 1, 256));
        match placed(pool.admit(need("c", 1, 256))) {
            Placement::Cold { evicted, need_mb } => {
                assert_eq!(evicted.iter().map(|s| s.id()).collect::<Vec<_>>(), ["old"]);
                assert_eq!(need_mb, 256);
                let s = pool.stats();
                assert_eq!((s.memory_in_use_mb, s.memory_releasing_mb), (768, 256));
                pool.cold_created();
                pool.destroyed(256);
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
        // c retires: its memory is free at once; b still busy: 256 free, big still waits.
        assert!(pool.retire_busy(256).is_empty());
        assert!(rx.try_recv().is_err());
        assert!(pool.retire_busy(256).is_empty());
        assert!(
            matches!(rx.try_recv(), Ok(Placement::Cold { need_mb: 512, .. })),
            "placed before either teardown finished"
        );
        pool.destroyed(256);
        pool.destroyed(256);
        assert_eq!(pool.stats().memory_in_use_mb, 512);
    }

    /// Memory that frees up while two namespaces wait goes to them in turns: a namespace with
    /// a long queue delays another's waiter by one placement at most.
    #[test]
    fn waiters_are_served_fairly_across_namespaces() {
        let mut pool = PoolState::<Inert>::new(256, 16);
        let of = |tenant: &str, name: &str| Need {
            tenant: EntityName::parse(tenant).unwrap(),
            ..need(name, 1, 256)
        };
        assert!(matches!(placed(pool.admit(of("a", "a0"))), Placement::Cold { .. }));
        pool.cold_created();
        let mut flood: Vec<_> = (1..=4)
            .map(|i| match pool.admit(of("a", &format!("a{i}"))).unwrap() {
                Admission::Queued(rx) => rx,
                _ => panic!("expected queued"),
            })
            .collect();
        let Admission::Queued(mut b) = pool.admit(of("b", "b1")).unwrap() else {
            panic!("expected queued")
        };
        // The running activation ends: the flood's first waiter was first in the rotation.
        assert!(pool.retire_busy(256).is_empty());
        pool.destroyed(256);
        assert!(flood[0].try_recv().is_ok());
        assert!(b.try_recv().is_err());
        pool.cold_created();
        // The next memory is b's turn, ahead of three older waiters of a.
        assert!(pool.retire_busy(256).is_empty());
        pool.destroyed(256);
        assert!(matches!(b.try_recv(), Ok(Placement::Cold { need_mb: 256, .. })));
        assert!(flood.iter_mut().skip(1).all(|rx| rx.try_recv().is_err()));
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
        assert_eq!(pool.stats().memory_in_use_mb, 256, "on the host until destroyed");
        assert_eq!(pool.budget.free_mb(), 1024, "but free for new containers");
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
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id(), "r1");
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
        assert!(pool.retire_busy(256).is_empty());
        pool.destroyed(256);
        assert_eq!(pool.stats().queued, 0);
        assert_eq!(pool.stats().memory_in_use_mb, 0);
    }
}
