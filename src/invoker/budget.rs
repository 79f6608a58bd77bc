//! The memory budget: the sum of the memory limits of all live containers (starting,
//! prewarmed, warm idle and busy) may not pass the configured total. Owns the arithmetic and
//! the choice of which idle containers to evict; it never touches containers or locks (the
//! pool calls it under its own lock).
//!
//! A container handed out to be destroyed stops counting as live at once: its limit moves to
//! the *releasing* share until its teardown (runc kill + delete) is done. That is what lets an
//! activation, or the prewarm filler, take an evicted container's memory without waiting for
//! its destruction, while the sum of limits on the host never passes the total by more than
//! what is being torn down (`live <= total`, always; `live + releasing <= total + releasing`).

/// Megabytes reserved out of a fixed total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    total_mb: u64,
    /// Limits of live containers (and of those about to be created).
    live_mb: u64,
    /// Limits of containers handed out to be destroyed and not yet gone.
    releasing_mb: u64,
}

impl MemoryBudget {
    pub fn new(total_mb: u64) -> Self {
        Self { total_mb, live_mb: 0, releasing_mb: 0 }
    }

    pub fn total_mb(&self) -> u64 {
        self.total_mb
    }

    /// Live containers' limits: never more than the total.
    pub fn live_mb(&self) -> u64 {
        self.live_mb
    }

    /// Limits of containers being torn down: what the host may hold beyond the total.
    pub fn releasing_mb(&self) -> u64 {
        self.releasing_mb
    }

    /// Every limit still on the host: live and being torn down.
    pub fn used_mb(&self) -> u64 {
        self.live_mb + self.releasing_mb
    }

    pub fn free_mb(&self) -> u64 {
        self.total_mb.saturating_sub(self.live_mb)
    }

    /// Whether a container of this size could ever run here, even on an empty pool.
    pub fn could_ever_fit(&self, mb: u64) -> bool {
        mb <= self.total_mb
    }

    /// Takes `mb` if that much is free.
    pub fn try_reserve(&mut self, mb: u64) -> bool {
        if mb <= self.free_mb() {
            self.live_mb += mb;
            true
        } else {
            false
        }
    }

    /// Gives back `mb` of a container that never came to exist (a failed create) or of a
    /// limit that shrank.
    pub fn release(&mut self, mb: u64) {
        subtract(&mut self.live_mb, mb, "released more than reserved");
    }

    /// A live container of `mb` is handed out to be destroyed: its memory is free for new
    /// containers at once and counted as releasing until [`MemoryBudget::torn_down`].
    pub fn retire(&mut self, mb: u64) {
        self.release(mb);
        self.releasing_mb += mb;
    }

    /// A retired container is gone.
    pub fn torn_down(&mut self, mb: u64) {
        subtract(&mut self.releasing_mb, mb, "tore down more than was retired");
    }
}

/// Takes `mb` off a counter. Taking more than it holds is a bookkeeping bug: it is logged and
/// clamped, so the budget never claims more free memory than the total.
fn subtract(counter: &mut u64, mb: u64, bug: &'static str) {
    if mb > *counter {
        tracing::error!(mb, held_mb = *counter, "memory budget {bug}");
        *counter = 0;
    } else {
        *counter -= mb;
    }
}

/// Chooses which idle containers to evict so that `need_mb` fits: a prefix of `candidates`
/// (which the caller orders least recently used first) whose memory plus `free_mb` covers
/// `need_mb`. Returns `None` when even evicting all of them is not enough, so that nothing is
/// destroyed for a request that would still have to wait.
pub fn plan_eviction(
    free_mb: u64,
    need_mb: u64,
    candidates: impl IntoIterator<Item = u64>,
) -> Option<usize> {
    let mut have = free_mb;
    if have >= need_mb {
        return Some(0);
    }
    for (i, mb) in candidates.into_iter().enumerate() {
        have += mb;
        if have >= need_mb {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release() {
        let mut b = MemoryBudget::new(512);
        assert!(b.try_reserve(256));
        assert!(b.try_reserve(256));
        assert!(!b.try_reserve(1));
        assert_eq!(b.free_mb(), 0);
        b.release(256);
        assert_eq!(b.used_mb(), 256);
        assert!(b.could_ever_fit(512));
        assert!(!b.could_ever_fit(513));
    }

    #[test]
    fn over_release_is_clamped() {
        let mut b = MemoryBudget::new(512);
        assert!(b.try_reserve(128));
        b.release(256);
        assert_eq!(b.used_mb(), 0);
        assert_eq!(b.free_mb(), 512);
        b.torn_down(64);
        assert_eq!(b.releasing_mb(), 0);
    }

    #[test]
    fn retired_memory_is_free_at_once_and_bounded_by_the_teardown() {
        let mut b = MemoryBudget::new(512);
        assert!(b.try_reserve(256));
        assert!(b.try_reserve(256));
        b.retire(256);
        assert_eq!((b.live_mb(), b.releasing_mb(), b.free_mb()), (256, 256, 256));
        assert!(b.try_reserve(256), "an evicted container's memory is taken before it is gone");
        assert!(!b.try_reserve(1), "live limits never pass the total");
        assert_eq!(b.used_mb(), b.total_mb() + b.releasing_mb());
        b.torn_down(256);
        assert_eq!((b.live_mb(), b.releasing_mb(), b.used_mb()), (512, 0, 512));
    }

    #[test]
    fn eviction_takes_the_shortest_lru_prefix() {
        assert_eq!(plan_eviction(256, 256, [128, 128]), Some(0));
        assert_eq!(plan_eviction(0, 256, [128, 128, 256]), Some(2));
        assert_eq!(plan_eviction(128, 256, [128, 512]), Some(1));
        assert_eq!(plan_eviction(0, 512, [128, 128]), None);
    }
}
