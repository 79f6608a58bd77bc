//! The idle reaper: destroys warm containers that no activation used for `idle_timeout`
//! (OpenWhisk's 10 minutes by default), so that memory held by rarely used actions goes back
//! to the budget. Stem cells are not reaped: they are the point of prewarming.
//!
//! It only takes containers the pool marks expired; it never touches busy ones.

use std::sync::Arc;
use std::time::Instant;

use tokio::time::MissedTickBehavior;

use super::service::Inner;
use crate::container::ContainerFactory;
use crate::shutdown::Shutdown;

pub(crate) async fn reap<F: ContainerFactory>(inner: Arc<Inner<F>>, mut shutdown: Shutdown) {
    let mut closed = inner.closed.clone();
    let mut tick = tokio::time::interval(inner.config.reap_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = closed.wait() => return,
            _ = tick.tick() => {}
        }
        let idle_timeout = inner.config.idle_timeout;
        let expired = inner.with_pool(|p| p.take_expired(Instant::now(), idle_timeout));
        if expired.is_empty() {
            continue;
        }
        tracing::info!(count = expired.len(), ?idle_timeout, "reaping idle containers");
        // One after another: nobody waits for this memory (it was free once retired), and
        // parallel runc calls would compete with activations for the CPUs.
        for slot in expired {
            inner.destroy(slot).await;
        }
    }
}
