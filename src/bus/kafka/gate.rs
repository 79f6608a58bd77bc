//! The invoker's side of entity replication on the activation path: an activation names the
//! action's revision, and this host runs it only once its own store holds that revision's
//! code (the entity follower applies it a few milliseconds after the controller's write).
//!
//! [`RevisionGate`] sits in front of the pool: an activation for a revision not materialised
//! yet waits for it (bounded by [`REVISION_WAIT`]); one that never arrives, or was superseded
//! by an update, ends with a lost record that says why. The store answers through
//! [`Revisions`], so the bus never depends on the store (the store already implements the
//! bus's [`EntitySink`](super::EntitySink)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::dispatch::{
    ActivationMessage, Completion, DispatchError, DispatchFuture, Dispatcher, InvokerView, Timing,
};
use crate::model::FullyQualifiedName;

/// How long an invoker waits for an action revision its follower has not applied yet. The
/// follow lag is milliseconds; seconds cover a follower catching up after a restart.
pub const REVISION_WAIT: Duration = Duration::from_secs(5);

/// What [`Revisions::wait_for_revision`] returns: `Ok(Ok(held))` once the action is held at
/// `revision` or later, `Ok(Err(held))` with what is held (if anything) when the bound ran
/// out, `Err(why)` when the store could not be read.
pub type RevisionWait<'a> =
    Pin<Box<dyn Future<Output = Result<Result<u64, Option<u64>>, String>> + Send + 'a>>;

/// The local store's revisions of actions, as the gate asks for them.
pub trait Revisions: Send + Sync + 'static {
    /// Waits up to `bound` for `action` to be held at `revision` or later.
    fn wait_for_revision<'a>(
        &'a self,
        action: &'a FullyQualifiedName,
        revision: u64,
        bound: Duration,
    ) -> RevisionWait<'a>;
}

/// The invoker's pool behind a check that the action's revision is materialised here.
pub struct RevisionGate {
    revisions: Arc<dyn Revisions>,
    pool: Arc<dyn Dispatcher>,
    invoker: String,
    bound: Duration,
}

impl std::fmt::Debug for RevisionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionGate").field("invoker", &self.invoker).finish_non_exhaustive()
    }
}

impl RevisionGate {
    pub fn new(
        revisions: Arc<dyn Revisions>,
        pool: Arc<dyn Dispatcher>,
        invoker: String,
        bound: Duration,
    ) -> Self {
        Self { revisions, pool, invoker, bound }
    }

    async fn gate(&self, msg: ActivationMessage) -> Result<Completion, DispatchError> {
        let why = match self.revisions.wait_for_revision(&msg.action, msg.revision, self.bound).await {
            Ok(Ok(held)) if held == msg.revision => return self.pool.dispatch(msg).await,
            Ok(Ok(held)) => {
                // The action was updated (or lost a concurrent update) after the controller
                // sent this: its code is gone here. Not run, as the standalone pool does for
                // an action updated while the activation waited; and not a fault of this host,
                // so the record says so and the invoker stays healthy (kafka/invoker.rs).
                let why = format!(
                    "{} has action {} at version {}, not {}: it was updated while the activation waited, so it was not run",
                    self.invoker,
                    msg.action,
                    crate::model::ActionMeta::version_for(held),
                    msg.version
                );
                tracing::warn!(activation = %msg.activation_id, "{why}");
                let mut record = msg.lost_record(why, Timing::since_accepted(&msg));
                record.mark_superseded();
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(record);
                return Ok(rx);
            }
            Ok(Err(None)) => format!(
                "{} does not have action {} (revision {}): its entity record did not arrive within {} s",
                self.invoker, msg.action, msg.revision, self.bound.as_secs()
            ),
            Ok(Err(Some(found))) => format!(
                "{} has action {} at revision {found}, not {}: the newer record did not arrive within {} s",
                self.invoker, msg.action, msg.revision, self.bound.as_secs()
            ),
            Err(e) => format!("{} cannot read action {}: {e}", self.invoker, msg.action),
        };
        tracing::error!(activation = %msg.activation_id, "{why}");
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(msg.lost_record(why, Timing::since_accepted(&msg)));
        Ok(rx)
    }
}

impl Dispatcher for RevisionGate {
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        Box::pin(self.gate(msg))
    }

    fn invokers(&self) -> Vec<InvokerView> {
        self.pool.invokers()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::ActivationStatus;
    use crate::testing::FakeInvoker;

    /// A store that holds fixed revisions and never receives more.
    struct Held(HashMap<String, u64>);

    impl Revisions for Held {
        fn wait_for_revision<'a>(
            &'a self,
            action: &'a FullyQualifiedName,
            revision: u64,
            _bound: Duration,
        ) -> RevisionWait<'a> {
            let held = self.0.get(&action.key()).copied();
            Box::pin(async move {
                Ok(match held {
                    Some(h) if h >= revision => Ok(h),
                    other => Err(other),
                })
            })
        }
    }

    fn message(action: &str, revision: u64) -> ActivationMessage {
        ActivationMessage {
            version: "0.0.1".into(),
            ..crate::testing::message("team", action, revision)
        }
    }

    #[tokio::test]
    async fn the_gate_runs_materialised_revisions_and_records_missing_ones() {
        let held = Held(HashMap::from([("team/a".to_owned(), 1)]));
        let gate = RevisionGate::new(
            Arc::new(held),
            Arc::new(FakeInvoker::new()),
            "invoker4".into(),
            Duration::from_millis(50),
        );
        let rec = gate.dispatch(message("a", 1)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::Success);
        let rec = gate.dispatch(message("a", 2)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        let text = rec.response.result.to_string();
        assert!(text.contains("invoker4") && text.contains("revision 1, not 2"), "{text}");
        assert!(!rec.is_superseded());
        // An older revision than the one held: superseded, not run, not a system error.
        let rec = gate.dispatch(message("a", 0)).await.unwrap().await.unwrap();
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        let text = rec.response.result.to_string();
        assert!(text.contains("updated while the activation waited"), "{text}");
        assert!(rec.is_superseded(), "{rec:?}");
        let rec = gate.dispatch(message("b", 1)).await.unwrap().await.unwrap();
        assert!(rec.response.result.to_string().contains("does not have action team/b"), "{rec:?}");
    }
}
