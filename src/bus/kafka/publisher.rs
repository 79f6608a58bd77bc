//! The controller's side of entity replication: the [`Publisher`] drains the local store's
//! outbox of entity writes to the entity topic, and tells each waiting write when the broker
//! has taken it (an entity write is answered after the local commit and the broker's
//! acknowledgement). The store answers through [`Outbox`], so the bus never depends on it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Instrument;

use super::EntityLog;
use crate::shutdown::Shutdown;

/// How long an entity write waits for the broker to take its publication. The producer's own
/// delivery timeout (the daemon's entity log's) is shorter, so a dead broker is reported with
/// librdkafka's reason rather than a bare timeout.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How often the publisher looks at the feed without being woken: catches writes made by
/// another process on the same data directory (`hearthd admin`).
const FEED_POLL: Duration = Duration::from_millis(250);

/// Pause after a failed publication before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Entries taken from the feed at once.
const FEED_BATCH: usize = 32;

/// One entry of the outbox, ready for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// The entity key on the topic.
    pub key: String,
    /// The encoded current value; `None`: the entity is gone (a tombstone).
    pub value: Option<Vec<u8>>,
    /// For a deleted action: the highest revision of it deleted here.
    pub deleted_revision: Option<u64>,
}

/// The local store's outbox of entity writes, as the publisher drains it.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` entries not yet published, oldest first.
    fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, String>;
    /// Removes every entry up to `seq`: the broker took them.
    fn done(&self, seq: u64) -> Result<(), String>;
}

/// Drains the store's entity feed to the entity topic, and tells waiting writes when theirs
/// is published.
pub struct Publisher {
    outbox: Arc<dyn Outbox>,
    log: Arc<EntityLog>,
    /// Highest feed seq the broker acknowledged (this process's run).
    published: Mutex<u64>,
    cond: Condvar,
    wake: Notify,
    /// Why the last publication failed, for the writers' error.
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("log", &self.log).finish_non_exhaustive()
    }
}

impl Publisher {
    /// `Ok` once the broker acknowledged every feed entry up to `seq`; `Err(why)` when it did
    /// not within [`PUBLISH_WAIT`]. Wakes the drain first, so a fresh write goes out at once.
    pub fn wait_published(&self, seq: u64) -> Result<(), String> {
        self.wake.notify_one();
        let deadline = Instant::now() + PUBLISH_WAIT;
        let mut done = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        while *done < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_else(|| "no acknowledgement yet".into());
                return Err(format!(
                    "the message bus did not acknowledge it within {} s: {why}",
                    PUBLISH_WAIT.as_secs()
                ));
            }
            done = self.cond.wait_timeout(done, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        Ok(())
    }
}

impl Publisher {
    /// Creates the publisher and starts draining `outbox`; the caller installs it as the
    /// store's publish waiter.
    pub fn start(outbox: Arc<dyn Outbox>, log: Arc<EntityLog>, shutdown: Shutdown) -> Arc<Self> {
        let p = Arc::new(Self {
            outbox,
            log,
            published: Mutex::new(0),
            cond: Condvar::new(),
            wake: Notify::new(),
            last_error: Mutex::new(None),
        });
        tokio::spawn(p.clone().run(shutdown).instrument(tracing::info_span!("entity_publisher")));
        p
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut failing = false;
        loop {
            let entries = match self.outbox.pending(FEED_BATCH) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the entity feed failed");
                    Vec::new()
                }
            };
            if entries.is_empty() {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(FEED_POLL) => {}
                }
                continue;
            }
            for e in entries {
                let t = Instant::now();
                match self.log.publish(&e.key, e.value.as_deref(), e.deleted_revision).await {
                    Ok(offset) => {
                        if failing {
                            tracing::info!("the message bus takes entity records again");
                            failing = false;
                        }
                        tracing::debug!(key = %e.key, seq = e.seq, offset, took_us = t.elapsed().as_micros() as u64, "entity published");
                        if let Err(err) = self.outbox.done(e.seq) {
                            tracing::error!(error = %err, "removing a published feed entry failed (it will be published again)");
                        }
                        let mut done =
                            self.published.lock().unwrap_or_else(PoisonError::into_inner);
                        *done = (*done).max(e.seq);
                        self.cond.notify_all();
                    }
                    Err(err) => {
                        if !failing {
                            tracing::error!(error = %err, key = %e.key, "publishing an entity failed: the message bus is unavailable; retrying");
                            failing = true;
                        }
                        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(err.to_string());
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        }
                        break;
                    }
                }
            }
        }
    }
}
