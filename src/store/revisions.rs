//! The store as the Kafka bus's [`Revisions`]: the invoker's revision gate asks it whether an
//! action's revision is materialised here, so the bus never depends on the store.

use std::time::Duration;

use super::Store;
use crate::bus::kafka::{RevisionWait, Revisions};
use crate::model::FullyQualifiedName;

impl Revisions for Store {
    fn wait_for_revision<'a>(
        &'a self,
        action: &'a FullyQualifiedName,
        revision: u64,
        bound: Duration,
    ) -> RevisionWait<'a> {
        Box::pin(async move {
            Store::wait_for_revision(self, action, revision, bound).await.map_err(|e| e.to_string())
        })
    }
}
