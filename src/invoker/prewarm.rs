//! The prewarm filler: keeps the configured stem cells (per runtime and memory) started, and
//! refills them in the background when an activation takes one.
//!
//! Creates one container at a time (a cold start competes with activations for the two CPUs,
//! so a burst of parallel creates would only slow both down). It takes only free memory, never
//! evicts, and yields to queued activations (see `PoolState::next_prewarm`).

use std::sync::Arc;
use std::time::Duration;

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
    loop {
        let mut failed = false;
        while let Some(shape) = inner.with_pool(|p| p.next_prewarm(&inner.config.prewarm)) {
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
                    let back = inner.with_pool(|p| p.prewarm_ready(slot));
                    if let Some(slot) = back {
                        inner.destroy(slot).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(container = %spec.id, error = %e, "creating a prewarm container failed");
                    inner.with_pool(|p| p.prewarm_failed(shape));
                    failed = true;
                    break;
                }
            }
        }
        let pause = if failed { RETRY_AFTER_FAILURE } else { RECHECK };
        tokio::select! {
            () = shutdown.wait() => return,
            () = closed.wait() => return,
            () = inner.prewarm_wake.notified(), if !failed => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
