//! A snapshot of the pool's counts, for systemd's `STATUS=` line and for metrics. Plain data:
//! taking it costs one short lock of the pool.

use std::fmt;

use serde::Serialize;

/// Counts at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Initialized containers waiting for their action.
    pub warm_idle: usize,
    /// Containers running an activation (or its init).
    pub warm_busy: usize,
    /// Stem cells ready for any action of their runtime and memory.
    pub prewarmed: usize,
    /// Containers being created.
    pub starting: usize,
    /// Containers being killed and removed (their memory is still counted).
    pub destroying: usize,
    /// Containers shared by actions with concurrency above 1 that hold runs now (counted in
    /// `warm_busy` too).
    pub shared_serving: usize,
    /// Activations running in those shared containers.
    pub shared_in_flight: usize,
    /// Activations waiting for a seat in a shared container being started (counted in
    /// neither `in_flight` nor `queued`: they wait for no memory).
    pub shared_waiting: usize,
    /// Accepted activations that have a container (or are getting one) and no record yet.
    pub in_flight: usize,
    /// Accepted activations waiting for memory.
    pub queued: usize,
    /// Memory limits of every container on the host, in MB: live ones and those being torn
    /// down. Passes the budget by at most `memory_releasing_mb`.
    pub memory_in_use_mb: u64,
    /// The part of `memory_in_use_mb` held by containers being torn down: already free for
    /// new containers (see `budget.rs`).
    pub memory_releasing_mb: u64,
    pub memory_budget_mb: u64,
    /// Activations that ended with a record since start.
    pub completed: u64,
}

impl fmt::Display for PoolStats {
    /// One line for `systemctl status`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} warm ({} busy), {} prewarmed, {} starting; {} running, {} queued; {}/{} MB; {} done",
            self.warm_idle + self.warm_busy,
            self.warm_busy,
            self.prewarmed,
            self.starting,
            self.in_flight,
            self.queued,
            self.memory_in_use_mb,
            self.memory_budget_mb,
            self.completed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let s = PoolStats {
            warm_idle: 2,
            warm_busy: 1,
            prewarmed: 2,
            memory_in_use_mb: 1280,
            memory_budget_mb: 2048,
            completed: 7,
            ..Default::default()
        };
        assert_eq!(
            s.to_string(),
            "3 warm (1 busy), 2 prewarmed, 0 starting; 0 running, 0 queued; 1280/2048 MB; 7 done"
        );
    }
}
