//! The store as the Kafka bus sees it (feature `kafka`): the invoker's revision gate asks it
//! whether an action's revision is materialised here ([`Revisions`]), the controller's
//! publisher drains its entity feed ([`Outbox`]) and is its [`PublishWaiter`]. The bus defines
//! what it needs and the store implements it here, so the bus never depends on the store.

use std::time::Duration;

use super::{PublishWaiter, Store};
use crate::bus::kafka::{Outbox, OutboxEntry, Publisher, RevisionWait, Revisions};
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

impl Outbox for Store {
    fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, String> {
        let entries = self.feed_pending(max).map_err(|e| e.to_string())?;
        Ok(entries
            .into_iter()
            .map(|e| OutboxEntry {
                seq: e.seq,
                key: e.key,
                value: e.value,
                deleted_revision: e.deleted_revision,
            })
            .collect())
    }

    fn done(&self, seq: u64) -> Result<(), String> {
        self.feed_done(seq).map_err(|e| e.to_string())
    }
}

impl PublishWaiter for Publisher {
    fn wait_published(&self, seq: u64) -> Result<(), String> {
        Publisher::wait_published(self, seq)
    }
}
