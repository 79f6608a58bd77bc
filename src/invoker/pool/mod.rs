//! The pool's bookkeeping: which containers are idle (warm or prewarmed), how much memory is
//! reserved, who waits, and where the next activation goes.
//!
//! Everything here is synchronous and runs under the invoker's one `std::sync::Mutex`: each
//! call is a few map operations, so the lock is never held across container I/O or an await
//! (the activation task carries out a [`Placement`] after the lock is dropped). Busy
//! containers of actions with concurrency 1 are not in here at all: the activation task owns
//! them, which is what makes one activation per container hold by construction.
//!
//! Actions with `limits.concurrency` N > 1 (Node) share containers. The first activation gets
//! a container as any other (warm, stem cell, cold) and, while it starts and inits, the key is
//! *forming*: up to N - 1 more activations of the same key wait for it (`joiners`) instead of
//! starting containers of their own. Once it is initialized in concurrent mode the activation
//! registers it with [`PoolState::serve`]: its slot stays here, in `serving`, with its
//! [`SharedHandle`] and an in-flight count, and every activation of the key that finds room
//! gets [`Placement::Join`], which reserves no memory (the container's memory is counted once,
//! however many runs it holds). Each run ends with [`PoolState::leave`]; at zero in flight the
//! slot goes back to warm idle (LRU, idle timeout, eviction as any other), keeping its handle
//! for the next join. A container that died takes no more joins and is destroyed when its
//! last run leaves. Waiters of the key (in `joiners` or the fair queue) are served by room as
//! soon as it appears.
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
//! evicts warm containers idle for at least `evict_idle_after`, least recently used first,
//! to refill the prewarm plan once a burst is over ([`PoolState::next_prewarm`]), but not
//! those of an action that undid such an eviction at once by outgrowing its warm containers
//! (a steady load at the budget's edge would otherwise trade a warm container for a stem cell
//! and back every few hundred milliseconds: [`RefillBackoff`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::{plan_eviction, MemoryBudget};
use super::config::PrewarmConfig;
use super::fair_queue::FairQueue;
use super::refill_backoff::RefillBackoff;
use super::state::{Slot, State, WarmKey};
use super::stats::PoolStats;
use crate::container::{ActionContainer, SharedHandle};
use crate::dispatch::DispatchError;
use crate::model::{EntityName, Runtime};

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
struct Serving<C> {
    slot: Slot<C>,
    handle: SharedHandle,
    in_flight: u64,
    max: u64,
    /// Died or failed a run for all: takes no more joins, destroyed after its last run.
    dead: bool,
}

/// Containers of a shared key being started or initialized, and the joiners promised a seat.
#[derive(Debug, Default)]
struct Forming {
    containers: u64,
    seats: u64,
    max: u64,
}

impl Forming {
    fn room(&self) -> u64 {
        self.containers.saturating_mul(self.max.saturating_sub(1)).saturating_sub(self.seats)
    }
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

    /// A seat in a serving container of the key with room, else an idle container of the key
    /// that was shared before (it becomes serving with this one run).
    fn try_join(&mut self, need: &Need) -> Option<Placement<C>> {
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

    /// Notes that a placement for a shared action starts a container that will serve it: the
    /// key is forming until [`PoolState::serve`] or [`PoolState::formation_failed`].
    fn forms(&mut self, need: &Need, p: Placement<C>) -> Placement<C> {
        if need.concurrency > 1 && !matches!(p, Placement::Join(_)) {
            let f = self.forming.entry(need.key.clone()).or_default();
            f.containers += 1;
            f.max = need.concurrency;
        }
        p
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
    fn formation_ended(&mut self, key: &WarmKey) -> Vec<Slot<C>> {
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

    fn leave_inner(
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
        if dead || self.closing {
            self.budget.retire(slot.memory_mb());
            self.destroying += 1;
            let mut out = vec![slot];
            if pump && !self.queue.is_empty() {
                out.extend(self.pump());
            }
            return out;
        }
        if let Err(e) = slot.release() {
            tracing::error!(error = %e, "a shared container cannot go back to idle; destroying it");
            self.budget.retire(slot.memory_mb());
            self.destroying += 1;
            return vec![slot];
        }
        self.reinsert(vec![slot]);
        if !pump || self.queue.is_empty() {
            return Vec::new();
        }
        self.pump()
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
    use super::*;
    use crate::invoker::state::tests::{key, Inert};
    use crate::model::{FullyQualifiedName, Kind};

    fn need(name: &str, rev: u64, mb: u64) -> Need {
        Need {
            key: key(name, rev),
            runtime: Runtime::Python,
            memory_mb: mb,
            tenant: EntityName::parse("guest").unwrap(),
            concurrency: 1,
        }
    }

    fn placed<C>(a: Result<Admission<C>, DispatchError>) -> Placement<C> {
        match a.unwrap() {
            Admission::Placed(p) => p,
            Admission::Queued(_) => panic!("queued"),
        }
    }

    /// A prewarm plan of one 256 MB python stem cell.
    fn python_plan() -> Vec<PrewarmConfig> {
        vec![PrewarmConfig {
            kind: Kind::parse("python:3").unwrap(),
            memory_mb: 256,
            count: 1,
            image: None,
            digest: None,
        }]
    }

    /// Runs a cold placement to the point where its container is idle and warm.
    fn make_warm(pool: &mut PoolState<Inert>, id: &str, n: &Need) {
        let p = placed(pool.admit(n.clone()));
        assert!(matches!(p, Placement::Cold { .. }));
        pool.cold_created();
        let mut slot = Slot::starting(Inert::new(id), n.runtime, n.memory_mb);
        slot.claim(&n.key).unwrap();
        slot.release().unwrap();
        assert!(pool.put_back(slot).is_empty());
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

    fn stem_cell(pool: &mut PoolState<Inert>, id: &str, mb: u64) {
        assert!(pool.budget.try_reserve(mb));
        let mut slot = Slot::starting(Inert::new(id), Runtime::Python, mb);
        slot.park_prewarmed().unwrap();
        pool.prewarmed.push(slot);
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

    /// Another namespace's action, billed to that namespace.
    fn need_of(ns: &str, name: &str, mb: u64) -> Need {
        let ns = EntityName::parse(ns).unwrap();
        let mut n = need(name, 1, mb);
        n.key.action = FullyQualifiedName::new(ns.clone(), EntityName::parse(name).unwrap());
        n.tenant = ns;
        n
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

    use std::sync::Arc;

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
