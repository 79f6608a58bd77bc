//! The prewarm filler: keeps the configured stem cells (per runtime and memory) started, and
//! refills them in the background when an activation takes one.
//!
//! Creates one container at a time (a cold start competes with activations for the two CPUs,
//! so a burst of parallel creates would only slow both down). It takes free memory first;
//! when the budget is full (a burst left it to warm containers) it evicts warm containers
//! that have been idle for `evict_idle_after`, least recently used first, and destroys them in
//! the background while the stem cell starts. It never evicts a stem cell, and yields to
//! queued activations (see `PoolState::next_prewarm`), so the refill is memory reclaimed
//! ahead of need: the next new action finds its stem cell instead of waiting for an eviction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{EvictedFor, PoolEvent};
use super::pool::PrewarmStep;
use super::service::Inner;
use super::state::Slot;
use crate::container::ContainerFactory;
use crate::shutdown::Shutdown;

/// After a failed create, wait this long before trying again, so a broken runtime does not
/// turn into a tight loop of failing runc calls.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Also look every so often even without a wake-up (a safety net; wake-ups do the real work).
const RECHECK: Duration = Duration::from_secs(5);

pub(crate) async fn fill<F: ContainerFactory>(inner: Arc<Inner<F>>, mut shutdown: Shutdown) {
    let mut closed = inner.closed.clone();
    let evict_idle_after = inner.config.evict_idle_after;
    loop {
        // Waiters the neighbour guard held back get another look (PoolState::pump_waiting).
        let back = inner.with_pool(|p| p.pump_waiting());
        inner.destroy_behind(back, None);
        let mut failed = false;
        let retry_at = loop {
            let step = inner.with_pool(|p| {
                p.next_prewarm(&inner.prewarm_plan, Instant::now(), evict_idle_after)
            });
            let (shape, evicted) = match step {
                PrewarmStep::Create { shape, evicted } => (shape, evicted),
                PrewarmStep::Destroy(evicted) => {
                    inner.destroy_behind(evicted, Some(EvictedFor::Prewarm));
                    continue;
                }
                PrewarmStep::RetryAt(at) => break Some(at),
                PrewarmStep::Complete => break None,
            };
            if !evicted.is_empty() {
                tracing::info!(
                    evicted = evicted.len(),
                    "evicting idle warm containers to refill the prewarm plan"
                );
                inner.destroy_behind(evicted, Some(EvictedFor::Prewarm));
            }
            let (runtime, memory_mb) = shape;
            let spec = inner.spec(runtime, memory_mb);
            match inner.factory.create(&spec).await {
                Ok(container) => {
                    let mut slot = Slot::starting(container, runtime, memory_mb);
                    if let Err(e) = slot.park_prewarmed() {
                        tracing::error!(error = %e, "new container cannot be parked");
                        inner.with_pool(|p| p.prewarm_discard(shape));
                        inner.destroy(slot).await;
                        continue;
                    }
                    tracing::debug!(container = %spec.id, runtime = runtime.as_str(), memory_mb, "prewarmed");
                    inner.events.send(PoolEvent::Created {
                        container: spec.id.clone(),
                        runtime,
                        memory_mb,
                        stem_cell: true,
                    });
                    let back = inner.with_pool(|p| p.prewarm_ready(slot));
                    inner.destroy_behind(back, None);
                }
                Err(e) => {
                    tracing::warn!(container = %spec.id, error = %e, "creating a prewarm container failed");
                    let back = inner.with_pool(|p| p.prewarm_failed(shape));
                    inner.destroy_behind(back, None);
                    failed = true;
                    break None;
                }
            }
        };
        let pause = if failed {
            RETRY_AFTER_FAILURE
        } else {
            retry_at.map_or(RECHECK, |at| at.saturating_duration_since(Instant::now()).min(RECHECK))
        };
        let pause =
            if inner.with_pool(|p| p.has_waiters()) { pause.min(evict_idle_after) } else { pause };
        tokio::select! {
            () = shutdown.wait() => return,
            () = closed.wait() => return,
            () = inner.prewarm_wake.notified(), if !failed => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
