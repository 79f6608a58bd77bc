//! When the prewarm filler must leave an action's warm containers alone.
//!
//! The filler refills the prewarm plan after a burst by evicting warm containers idle for a
//! short while ([`super::pool::PoolState::next_prewarm`]). Under a steady load at the edge of
//! the memory budget that is a loop: the action's least used container is idle for a moment,
//! the filler evicts it for a stem cell, the action's next peak takes that stem cell (or
//! cold-starts), and the filler evicts again: a `runc delete` and a `runc run` every few
//! hundred milliseconds, a sixth of the machine's CPU in the throughput benchmark, for no
//! container that anyone keeps.
//!
//! So an eviction the action undoes at once is taken as a mistake: when an action outgrows its
//! warm containers (an activation of it takes a stem cell or cold-starts) within
//! [`MISTAKE_WINDOW`] of the filler evicting one of them, the filler leaves that action's
//! containers alone for a while, [`FIRST_PIN`] at first and twice as long at each repeated
//! mistake, up to [`MAX_PIN`]. An eviction that is not undone within the window forgets the
//! action's history. A pin also gives way as soon as the action is quiet (none of its idle
//! containers used within the filler's idle period, which the pool checks): the load is over,
//! and the plan is refilled as quickly as before.
//! The reaper's idle timeout and evictions on demand are not affected.
//!
//! Must never: hold more than one entry per action the filler evicted from, or pin an action
//! for longer than [`MAX_PIN`] after its last mistake.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::state::WarmKey;

/// An outgrowth this soon after an eviction of the action's container undoes it.
pub const MISTAKE_WINDOW: Duration = Duration::from_secs(2);
/// How long the filler leaves an action alone after its first mistake.
pub const FIRST_PIN: Duration = Duration::from_secs(1);
/// The longest it does, however often the mistake repeats.
pub const MAX_PIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the filler last evicted a container of the action, if that is not settled yet.
    evicted_at: Option<Instant>,
    /// The filler leaves the action alone until then.
    pinned_until: Instant,
    /// The last pin's length (doubled at the next mistake).
    pin: Duration,
}

/// Per action (key): the filler's evictions and the mistakes among them.
#[derive(Debug, Default)]
pub struct RefillBackoff {
    entries: HashMap<WarmKey, Entry>,
}

impl RefillBackoff {
    /// Whether the filler must leave `key`'s warm containers alone at `now`.
    pub fn pinned(&self, key: &WarmKey, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|e| e.pinned_until > now)
    }

    /// The filler evicted a container of `key` at `now`.
    pub fn evicted(&mut self, key: &WarmKey, now: Instant) {
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            evicted_at: None,
            pinned_until: now,
            pin: Duration::ZERO,
        });
        e.evicted_at = Some(now);
    }

    /// An activation of `key` took a stem cell or a cold start at `now`: its warm containers
    /// were all busy. Returns whether that made the action pinned (a mistake).
    pub fn outgrown(&mut self, key: &WarmKey, now: Instant) -> bool {
        let Some(e) = self.entries.get_mut(key) else { return false };
        let Some(at) = e.evicted_at else { return false };
        if now.saturating_duration_since(at) > MISTAKE_WINDOW {
            return false;
        }
        e.pin = if e.pin.is_zero() { FIRST_PIN } else { (e.pin * 2).min(MAX_PIN) };
        e.pinned_until = now + e.pin;
        e.evicted_at = None;
        true
    }

    /// Forgets what is settled at `now`: an eviction not undone within the window (the action
    /// really had a container to spare) and pins long over. Keeps the map to the actions the
    /// filler is still deciding about.
    pub fn settle(&mut self, now: Instant) {
        self.entries.retain(|_, e| match e.evicted_at {
            Some(at) => now.saturating_duration_since(at) <= MISTAKE_WINDOW,
            None => e.pinned_until + MAX_PIN > now,
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoker::state::tests::key;

    #[test]
    fn an_eviction_undone_at_once_pins_the_action_longer_each_time() {
        let mut b = RefillBackoff::default();
        let k = key("a", 1);
        let t0 = Instant::now();
        assert!(!b.outgrown(&k, t0), "no eviction, no mistake");
        b.evicted(&k, t0);
        assert!(!b.pinned(&k, t0));
        let t1 = t0 + Duration::from_millis(150);
        assert!(b.outgrown(&k, t1));
        assert!(b.pinned(&k, t1 + FIRST_PIN - Duration::from_millis(1)));
        assert!(!b.pinned(&k, t1 + FIRST_PIN));
        // Evicted again after the pin, undone again: twice as long.
        let t2 = t1 + FIRST_PIN;
        b.evicted(&k, t2);
        assert!(b.outgrown(&k, t2 + Duration::from_millis(10)));
        assert!(b.pinned(&k, t2 + FIRST_PIN * 2));
        // Never longer than the cap.
        let mut t = t2;
        for _ in 0..20 {
            t += MAX_PIN;
            b.evicted(&k, t);
            b.outgrown(&k, t);
        }
        assert!(b.pinned(&k, t + MAX_PIN - Duration::from_millis(1)));
        assert!(!b.pinned(&k, t + MAX_PIN));
    }

    #[test]
    fn an_eviction_that_holds_forgets_the_action() {
        let mut b = RefillBackoff::default();
        let (k, other) = (key("a", 1), key("b", 1));
        let t0 = Instant::now();
        b.evicted(&k, t0);
        b.evicted(&other, t0);
        let late = t0 + MISTAKE_WINDOW + Duration::from_millis(1);
        assert!(!b.outgrown(&k, late), "outgrown long after the eviction: no mistake");
        assert!(!b.pinned(&k, late));
        b.settle(late);
        assert_eq!(b.len(), 0, "both settled");
        // A pin is kept until it is long over, so that a repeat still doubles it.
        b.evicted(&k, late);
        assert!(b.outgrown(&k, late));
        b.settle(late + FIRST_PIN);
        assert_eq!(b.len(), 1);
        b.settle(late + FIRST_PIN + MAX_PIN);
        assert_eq!(b.len(), 0);
    }
}
