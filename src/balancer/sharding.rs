//! OpenWhisk's sharding container-pool balancer, for one controller.
//!
//! Every action has a *home* invoker, `hash(namespace/action) mod n`, and a *step*, a number
//! co-prime with `n` picked by the same hash. Scheduling walks `home, home+step, home+2*step,
//! ...` (mod n); because the step is co-prime with n the walk visits every invoker exactly once.
//! The first *up* invoker with enough free memory (its pinged capacity minus what this
//! controller has in flight there) takes the activation. So one action's activations keep
//! landing where its warm containers are, and two actions that share a home overflow to
//! different invokers (different steps) instead of piling onto the same neighbour.
//!
//! When every up invoker is full, the activation goes to the first up invoker on the walk
//! (the home invoker when it is up) and is marked as an overload: the invoker queues it, which
//! beats refusing work that a warm container will take in milliseconds. OpenWhisk picks a
//! random healthy invoker here; the walk keeps the choice sticky and deterministic. Only when
//! no invoker is up does scheduling fail.
//!
//! Several controllers: as OpenWhisk's balancer, each controller schedules only its *share* of
//! every invoker's memory, capacity / (live controllers), never less than the smallest action
//! ([`shard_mb`]); otherwise k controllers that each account only for their own in-flight
//! work would send k times what an invoker can hold. Controllers count each other from their
//! pings on the health topic ([`observe_controller`](ShardingBalancer::observe_controller)),
//! with the invokers' offline time: a controller that dies gives its share back to the
//! others once it has been silent that long.
//!
//! `n` counts invoker *slots* (the highest id seen + 1), not the invokers up right now, so an
//! invoker going offline does not move every other action's home.
//!
//! The hash is FNV-1a, fixed here rather than std's `DefaultHasher` (whose algorithm may change
//! between Rust releases): every controller of a cluster must agree on the home invokers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::health::{Health, InvokerId, InvokerState, Ping, Transition};
use crate::model::{FullyQualifiedName, MEMORY_MIN_MB};

/// How the balancer judges invokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerConfig {
    /// An invoker that has not pinged for this long is offline and its in-flight activations
    /// are failed. Ten pings at the default 1 s interval: long enough that a GC pause or a
    /// busy broker does not fail healthy work, short enough that users are not left waiting.
    /// A controller silent this long no longer counts among the controllers sharing the
    /// invokers' memory.
    pub offline_after: Duration,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self { offline_after: Duration::from_secs(10) }
    }
}

/// Where an activation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub invoker: InvokerId,
    /// Every up invoker was full: the activation will queue at `invoker`.
    pub overloaded: bool,
}

/// No invoker can take work: the caller answers 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no healthy invoker for {action}: {known} known, {unhealthy} unhealthy, {offline} offline")]
pub struct NoInvoker {
    pub action: String,
    pub known: usize,
    pub unhealthy: usize,
    pub offline: usize,
}

/// The balancer of one controller: invoker states indexed by id, and the scheduling walk.
#[derive(Debug, Clone)]
pub struct ShardingBalancer {
    config: BalancerConfig,
    invokers: Vec<InvokerState>,
    /// The *other* live controllers, by id, with when each last pinged.
    peers: BTreeMap<String, Instant>,
}

/// The memory of an invoker with `capacity_mb` that one of `controllers` live controllers may
/// schedule there: an equal share, as OpenWhisk's sharding balancer (`userMemory /
/// clusterSize`), but at least the smallest action's memory ([`MEMORY_MIN_MB`], as OpenWhisk
/// does too) so that every controller can still place one, and never more than the capacity.
pub fn shard_mb(capacity_mb: u64, controllers: usize) -> u64 {
    let share = capacity_mb / controllers.max(1) as u64;
    share.max(MEMORY_MIN_MB).min(capacity_mb)
}

/// The 64-bit FNV-1a hash of `namespace/action`.
pub fn action_hash(action: &FullyQualifiedName) -> u64 {
    // The bytes of the key, `ns/name` or `ns/pkg/name`, without building it: actions outside
    // packages keep the home they always had.
    let ns = action.namespace.as_str().bytes();
    let pkg = action.package.iter().flat_map(|p| p.as_str().bytes().chain(std::iter::once(b'/')));
    let name = action.name.as_str().bytes();
    crate::model::fnv1a(ns.chain(std::iter::once(b'/')).chain(pkg).chain(name))
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The step sizes for `n` invokers as OpenWhisk computes them: the numbers in `1..=n` that are
/// co-prime with `n` and with every smaller step already taken (so different actions that share
/// a home invoker spread along different walks).
pub fn step_sizes(n: usize) -> Vec<usize> {
    let mut steps: Vec<usize> = Vec::new();
    for cur in 1..=n.max(1) {
        if gcd(cur, n.max(1)) == 1 && steps.iter().all(|&s| gcd(s, cur) == 1) {
            steps.push(cur);
        }
    }
    steps
}

impl ShardingBalancer {
    pub fn new(config: BalancerConfig) -> Self {
        Self { config, invokers: Vec::new(), peers: BTreeMap::new() }
    }

    /// How many controllers share the invokers: this one and every peer that pinged within
    /// the offline time (as of the last [`tick`](Self::tick)).
    pub fn controllers(&self) -> usize {
        1 + self.peers.len()
    }

    /// The live peer controllers' ids.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Takes a ping from another controller (the caller skips this controller's own);
    /// returns the new controller count when it changed.
    pub fn observe_controller(&mut self, id: &str, now: Instant) -> Option<usize> {
        let new = self.peers.insert(id.to_owned(), now).is_none();
        new.then(|| self.controllers())
    }

    /// Forgets peers silent for longer than the offline time; returns the new controller
    /// count when it changed.
    pub fn tick_controllers(&mut self, now: Instant) -> Option<usize> {
        let after = self.config.offline_after;
        let before = self.peers.len();
        self.peers.retain(|_, at| now.saturating_duration_since(*at) <= after);
        (self.peers.len() != before).then(|| self.controllers())
    }

    /// The memory of invoker `id` this controller may schedule (its [`shard_mb`]).
    pub fn share_mb(&self, id: InvokerId) -> u64 {
        self.slot(id).map_or(0, |s| shard_mb(s.capacity_mb, self.controllers()))
    }

    /// The memory of `slot`'s share this controller has not reserved.
    fn free_in_share(&self, slot: &InvokerState) -> u64 {
        shard_mb(slot.capacity_mb, self.controllers()).saturating_sub(slot.in_flight_mb)
    }

    pub fn config(&self) -> BalancerConfig {
        self.config
    }

    /// Every invoker slot, indexed by id.
    pub fn invokers(&self) -> &[InvokerState] {
        &self.invokers
    }

    pub fn health(&self, id: InvokerId) -> Health {
        self.slot(id).map_or(Health::Offline, |s| s.health)
    }

    fn slot(&self, id: InvokerId) -> Option<&InvokerState> {
        self.invokers.get(id.0 as usize)
    }

    /// Takes a ping received at `now`, creating slots up to its id.
    pub fn observe(&mut self, ping: &Ping, now: Instant) -> Option<Transition> {
        let idx = ping.invoker.0 as usize;
        while self.invokers.len() <= idx {
            let id = InvokerId(self.invokers.len() as u32);
            self.invokers.push(InvokerState::unknown(id));
        }
        self.invokers[idx].observe(ping, now)
    }

    /// Marks silent invokers offline; returns the transitions for the caller to act on.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let after = self.config.offline_after;
        self.invokers.iter_mut().filter_map(|s| s.tick(now, after)).collect()
    }

    /// The home invoker and step of `action` among the current slots; `None` with no slots.
    pub fn home_and_step(&self, action: &FullyQualifiedName) -> Option<(usize, usize)> {
        let n = self.invokers.len();
        if n == 0 {
            return None;
        }
        let hash = action_hash(action);
        let steps = step_sizes(n);
        let home = (hash % n as u64) as usize;
        let step = steps[(hash % steps.len() as u64) as usize];
        Some((home, step))
    }

    /// Chooses the invoker for one activation of `action` needing `memory_mb`, and reserves
    /// that memory there until [`release`](Self::release).
    pub fn choose(
        &mut self,
        action: &FullyQualifiedName,
        memory_mb: u64,
    ) -> Result<Choice, NoInvoker> {
        let n = self.invokers.len();
        let walk: Vec<usize> = match self.home_and_step(action) {
            Some((home, step)) => (0..n).map(|i| (home + i * step) % n).collect(),
            None => Vec::new(),
        };
        let up = |s: &InvokerState| s.health == Health::Up;
        let fits = walk.iter().copied().find(|&i| {
            let slot = &self.invokers[i];
            up(slot) && self.free_in_share(slot) >= memory_mb
        });
        let (idx, overloaded) = match fits {
            Some(i) => (i, false),
            None => match walk.iter().copied().find(|&i| up(&self.invokers[i])) {
                Some(i) => (i, true),
                None => return Err(self.no_invoker(action)),
            },
        };
        let slot = &mut self.invokers[idx];
        slot.in_flight_mb = slot.in_flight_mb.saturating_add(memory_mb);
        Ok(Choice { invoker: slot.id, overloaded })
    }

    /// Gives back the memory reserved by [`choose`](Self::choose) when the activation ended.
    pub fn release(&mut self, id: InvokerId, memory_mb: u64) {
        if let Some(slot) = self.invokers.get_mut(id.0 as usize) {
            slot.in_flight_mb = slot.in_flight_mb.saturating_sub(memory_mb);
        }
    }

    fn no_invoker(&self, action: &FullyQualifiedName) -> NoInvoker {
        let count = |h| self.invokers.iter().filter(|s| s.health == h).count();
        NoInvoker {
            action: action.to_string(),
            known: self.invokers.len(),
            unhealthy: count(Health::Unhealthy),
            offline: count(Health::Offline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityName;

    fn fqn(ns: &str, name: &str) -> FullyQualifiedName {
        FullyQualifiedName::new(EntityName::parse(ns).unwrap(), EntityName::parse(name).unwrap())
    }

    fn ping(id: u32, capacity_mb: u64, system_error: bool) -> Ping {
        Ping {
            invoker: InvokerId(id),
            capacity_mb,
            free_mb: capacity_mb,
            system_error,
            sent_at_ms: 0,
        }
    }

    fn balancer(n: u32, capacity_mb: u64, now: Instant) -> ShardingBalancer {
        let mut b = ShardingBalancer::new(BalancerConfig::default());
        for i in 0..n {
            b.observe(&ping(i, capacity_mb, false), now);
        }
        b
    }

    #[test]
    fn steps_are_pairwise_coprime_with_n() {
        assert_eq!(step_sizes(1), vec![1]);
        assert_eq!(step_sizes(3), vec![1, 2]);
        assert_eq!(step_sizes(4), vec![1, 3]);
        assert_eq!(step_sizes(10), vec![1, 3, 7], "9 shares a factor with the step 3");
        for n in 1..40 {
            for s in step_sizes(n) {
                assert_eq!(gcd(s, n), 1, "step {s} for n={n}");
            }
        }
    }

    #[test]
    fn a_coprime_walk_visits_every_invoker_once() {
        let b = balancer(10, 1024, Instant::now());
        for i in 0..50 {
            let (home, step) = b.home_and_step(&fqn("guest", &format!("a{i}"))).unwrap();
            let mut seen: Vec<usize> = (0..10).map(|k| (home + k * step) % 10).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_hash_is_fixed_across_releases() {
        // FNV-1a of "guest/hello" (computed independently): a change here would move every action's home invoker.
        assert_eq!(action_hash(&fqn("guest", "hello")), 0x164c_5b87_fd87_3964);
        // An action in a package hashes its whole key, so two packages' `echo` differ.
        let n = |s: &str| crate::model::EntityName::parse(s).unwrap();
        let inner = FullyQualifiedName::in_package(n("guest"), n("utils"), n("hello"));
        assert_eq!(action_hash(&inner), crate::model::fnv1a("guest/utils/hello".bytes()));
        assert_ne!(action_hash(&inner), action_hash(&fqn("guest", "hello")));
    }

    #[test]
    fn an_action_sticks_to_its_home_invoker() {
        let now = Instant::now();
        let mut b = balancer(5, 1 << 20, now);
        let action = fqn("guest", "hello");
        let (home, _) = b.home_and_step(&action).unwrap();
        for _ in 0..100 {
            let c = b.choose(&action, 256).unwrap();
            assert_eq!(c, Choice { invoker: InvokerId(home as u32), overloaded: false });
        }
    }

    #[test]
    fn many_actions_spread_over_all_invokers() {
        let now = Instant::now();
        let mut b = balancer(4, 1 << 30, now);
        let mut per = [0u32; 4];
        for i in 0..1000 {
            let c = b.choose(&fqn("guest", &format!("action-{i}")), 128).unwrap();
            per[c.invoker.0 as usize] += 1;
        }
        for (i, count) in per.iter().enumerate() {
            assert!((150..=350).contains(count), "invoker {i} got {count} of 1000: {per:?}");
        }
    }

    #[test]
    fn a_full_home_overflows_along_the_step_and_comes_back_on_release() {
        let now = Instant::now();
        let mut b = balancer(5, 512, now);
        let action = fqn("guest", "busy");
        let (home, step) = b.home_and_step(&action).unwrap();
        let next = (home + step) % 5;
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        let third = b.choose(&action, 256).unwrap();
        assert_eq!((third.invoker.0 as usize, third.overloaded), (next, false));
        b.release(InvokerId(home as u32), 256);
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        assert_eq!(b.invokers()[home].in_flight_mb, 512);
        assert_eq!(b.invokers()[next].in_flight_mb, 256);
    }

    #[test]
    fn all_full_is_an_overload_at_home() {
        let now = Instant::now();
        let mut b = balancer(3, 256, now);
        let action = fqn("guest", "x");
        let (home, _) = b.home_and_step(&action).unwrap();
        for _ in 0..3 {
            assert!(!b.choose(&action, 256).unwrap().overloaded);
        }
        let c = b.choose(&action, 256).unwrap();
        assert_eq!(c, Choice { invoker: InvokerId(home as u32), overloaded: true });
    }

    #[test]
    fn only_up_invokers_get_work() {
        let now = Instant::now();
        let mut b = balancer(3, 1024, now);
        let action = fqn("guest", "y");
        let (home, step) = b.home_and_step(&action).unwrap();
        b.observe(&ping(home as u32, 1024, true), now);
        let c = b.choose(&action, 128).unwrap();
        assert_eq!(c.invoker.0 as usize, (home + step) % 3, "skips the unhealthy home");
        // Everyone else goes silent: only the unhealthy home is still pinging.
        let later = now + Duration::from_secs(11);
        b.observe(&ping(home as u32, 1024, true), later);
        let t = b.tick(later);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.to == Health::Offline));
        let err = b.choose(&action, 128).unwrap_err();
        assert_eq!((err.known, err.unhealthy, err.offline), (3, 1, 2));
        assert!(err.to_string().contains("guest/y"), "{err}");
    }

    #[test]
    fn homes_do_not_move_when_an_invoker_goes_offline() {
        let now = Instant::now();
        let mut b = balancer(4, 1 << 20, now);
        let before: Vec<_> =
            (0..20).map(|i| b.home_and_step(&fqn("g", &format!("a{i}")))).collect();
        let later = now + Duration::from_secs(11);
        for i in [0, 1, 3] {
            b.observe(&ping(i, 1 << 20, false), later);
        }
        assert_eq!(b.tick(later).len(), 1);
        let after: Vec<_> = (0..20).map(|i| b.home_and_step(&fqn("g", &format!("a{i}")))).collect();
        assert_eq!(before, after);
        for i in 0..20 {
            assert_ne!(b.choose(&fqn("g", &format!("a{i}")), 1).unwrap().invoker, InvokerId(2));
        }
    }

    #[test]
    fn the_share_is_capacity_over_live_controllers_at_least_one_small_action() {
        assert_eq!(shard_mb(4096, 1), 4096);
        assert_eq!(shard_mb(4096, 2), 2048);
        assert_eq!(shard_mb(4096, 3), 1365);
        assert_eq!(shard_mb(4096, 0), 4096, "no count is one controller");
        assert_eq!(shard_mb(512, 8), MEMORY_MIN_MB, "never below the smallest action");
        assert_eq!(shard_mb(100, 4), 100, "never above the capacity");
    }

    #[test]
    fn each_of_two_controllers_schedules_half_and_a_dead_one_gives_it_back() {
        let now = Instant::now();
        let mut b = balancer(3, 1024, now);
        let action = fqn("guest", "shared");
        let (home, step) = b.home_and_step(&action).unwrap();
        assert_eq!(b.controllers(), 1);
        assert_eq!(b.observe_controller("c2", now), Some(2));
        assert_eq!(b.observe_controller("c2", now + Duration::from_secs(1)), None);
        assert_eq!(b.share_mb(InvokerId(home as u32)), 512);
        // Half of the home's 1024 MB: two 256 MB activations, the third overflows.
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, (home + step) % 3);
        // c2 falls silent: after the offline time its half comes back.
        let t = now + Duration::from_secs(1);
        for i in 0..3 {
            b.observe(&ping(i, 1024, false), t + Duration::from_secs(10));
        }
        assert_eq!(
            b.tick_controllers(t + Duration::from_secs(10)),
            None,
            "exactly 10 s: still live"
        );
        assert_eq!(b.tick_controllers(t + Duration::from_millis(10_001)), Some(1));
        assert_eq!(b.share_mb(InvokerId(home as u32)), 1024);
        assert_eq!(b.choose(&action, 256).unwrap().invoker.0 as usize, home);
        assert_eq!(b.invokers()[home].in_flight_mb, 768);
    }

    #[test]
    fn no_invokers_is_an_error() {
        let mut b = ShardingBalancer::new(BalancerConfig::default());
        let err = b.choose(&fqn("guest", "z"), 128).unwrap_err();
        assert_eq!(err.known, 0);
    }
}
