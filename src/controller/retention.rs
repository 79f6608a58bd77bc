//! Retention: a background task that prunes old activation records.

use std::time::Duration;

use crate::model::now_millis;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Prunes records older than `max_age` now and then every `interval`, until shutdown.
pub async fn run_retention(
    store: Store,
    max_age: Duration,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    loop {
        let cutoff = now_millis().saturating_sub(max_age_ms);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune_activations(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(pruned = n, cutoff, "activation records pruned"),
            Ok(Err(e)) => tracing::error!(error = %e, "pruning activation records failed"),
            Err(e) => tracing::error!(error = %e, "the pruning task failed"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, EntityName};
    use crate::store::test_util::temp_store;

    #[tokio::test]
    async fn prunes_then_stops_on_shutdown() {
        let (_d, store) = temp_store();
        let rec = |start| Activation {
            end: start,
            duration: 0,
            annotations: vec![],
            ..crate::testing::activation("guest", "a", start)
        };
        let old = rec(1);
        let fresh = rec(now_millis());
        store.put_activations(&[old.clone(), fresh.clone()]).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run_retention(
            store.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(10),
            shutdown,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        let ns = EntityName::parse("guest").unwrap();
        assert!(store.get_activation(&ns, &old.activation_id).unwrap().is_none());
        assert!(store.get_activation(&ns, &fresh.activation_id).unwrap().is_some());
    }
}
