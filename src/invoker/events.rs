//! The pool's events: what it created, evicted, resized and destroyed, and where the
//! activations that did not find a warm container went. For tests and diagnostics: they show
//! the pool's decisions in the order they were taken, without timing anything.
//!
//! A bounded broadcast: nobody listening costs one uncontended lock per event, and a slow
//! listener loses the oldest events (it sees `Lagged`) instead of slowing the pool. Warm
//! placements are not reported, so the warm path never sends one.

use tokio::sync::broadcast;

use crate::model::Runtime;

/// Events kept for a listener that has not read them yet.
pub const EVENT_BACKLOG: usize = 4096;

/// Who took an evicted container's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictedFor {
    /// An activation that found no warm container, no stem cell and no free memory.
    Activation,
    /// The prewarm filler, refilling the plan from warm containers left idle.
    Prewarm,
}

/// How an activation that missed the warm pool got its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Prewarmed,
    /// A stem cell of another size, resized to the action's limit.
    PrewarmedResized,
    Cold,
}

/// One decision of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A container was created: a stem cell for the plan, or a cold start.
    Created { container: String, runtime: Runtime, memory_mb: u64, stem_cell: bool },
    /// An idle container was retired to make room; its destruction runs in the background.
    Evicted { container: String, memory_mb: u64, by: EvictedFor },
    /// A container handed out for destruction is gone (killed, removed, memory released).
    Destroyed { container: String, memory_mb: u64 },
    /// A taken stem cell now has the action's memory limit.
    Resized { container: String, from_mb: u64, to_mb: u64 },
    /// A taken stem cell could not take the action's limit; a cold start replaced it.
    ResizeFailed { container: String, from_mb: u64, to_mb: u64, error: String },
    /// An activation got a container other than a warm one, ready for its init.
    Placed { activation_id: String, container: String, start: Start },
}

/// The sending side, held by the invoker.
#[derive(Debug)]
pub(crate) struct Events {
    tx: broadcast::Sender<PoolEvent>,
}

impl Events {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BACKLOG);
        Self { tx }
    }

    pub(crate) fn send(&self, event: PoolEvent) {
        // No listener is the normal case.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.tx.subscribe()
    }
}
