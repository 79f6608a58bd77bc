//! The memory budget: the sum of all containers' memory limits may not pass the configured
//! total. Owns the arithmetic and the choice of which idle containers to evict; it never
//! touches containers or locks (the pool calls it under its own lock).

/// Megabytes reserved out of a fixed total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    total_mb: u64,
    used_mb: u64,
}

impl MemoryBudget {
    pub fn new(total_mb: u64) -> Self {
        Self { total_mb, used_mb: 0 }
    }

    pub fn total_mb(&self) -> u64 {
        self.total_mb
    }

    pub fn used_mb(&self) -> u64 {
        self.used_mb
    }

    pub fn free_mb(&self) -> u64 {
        self.total_mb - self.used_mb
    }

    /// Whether a container of this size could ever run here, even on an empty pool.
    pub fn could_ever_fit(&self, mb: u64) -> bool {
        mb <= self.total_mb
    }

    /// Takes `mb` if that much is free.
    pub fn try_reserve(&mut self, mb: u64) -> bool {
        if mb <= self.free_mb() {
            self.used_mb += mb;
            true
        } else {
            false
        }
    }

    /// Gives `mb` back. Releasing more than is reserved is a bookkeeping bug: it is logged and
    /// clamped, so the budget never claims more free memory than the total.
    pub fn release(&mut self, mb: u64) {
        if mb > self.used_mb {
            tracing::error!(
                mb,
                used_mb = self.used_mb,
                "memory budget released more than reserved"
            );
            self.used_mb = 0;
        } else {
            self.used_mb -= mb;
        }
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
    }

    #[test]
    fn eviction_takes_the_shortest_lru_prefix() {
        assert_eq!(plan_eviction(256, 256, [128, 128]), Some(0));
        assert_eq!(plan_eviction(0, 256, [128, 128, 256]), Some(2));
        assert_eq!(plan_eviction(128, 256, [128, 512]), Some(1));
        assert_eq!(plan_eviction(0, 512, [128, 128]), None);
    }
}
