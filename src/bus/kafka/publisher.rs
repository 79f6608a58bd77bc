//! A controller's outboxes drained to their topics: the [`Publisher`] drains a local store's
//! outbox (entity writes to the entity topic; committed activation records to the records
//! topic, `records.rs`), removes what the broker took, and tells each waiting write when the
//! broker has taken it (an entity write is answered after the local commit and the broker's
//! acknowledgement). The store answers through [`Outbox`] and the topic through [`FeedTopic`],
//! so the bus never depends on the store and one drain loop serves both outboxes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Instrument;

use super::KafkaError;
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

/// Entries taken from the entity feed at once (the records' publisher takes more: see
/// [`FeedTopic::batch`]).
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

/// What a batch's publication achieved: the feed seq of the last entry of the acknowledged
/// prefix (`None`: none of it), and the error that stopped the rest.
#[derive(Debug, Default)]
pub struct Published {
    pub done: Option<u64>,
    pub error: Option<KafkaError>,
}

/// The future of one batch's publication.
pub type PublishBatch<'a> = Pin<Box<dyn Future<Output = Published> + Send + 'a>>;

/// A topic an outbox drains to.
pub trait FeedTopic: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes `entries` (oldest first); entries after the first failure may have been sent
    /// too: an outbox is idempotent, so they are sent again.
    fn publish_batch<'a>(&'a self, entries: &'a [OutboxEntry]) -> PublishBatch<'a>;

    /// Entries taken from the outbox at once.
    fn batch(&self) -> usize {
        FEED_BATCH
    }
}

/// Drains a store's outbox to its topic, and tells waiting writes when theirs is published.
pub struct Publisher {
    outbox: Arc<dyn Outbox>,
    log: Arc<dyn FeedTopic>,
    /// What is drained, for the logs ("entity", "record").
    what: &'static str,
    /// Highest feed seq the broker acknowledged (this process's run).
    published: Mutex<u64>,
    cond: Condvar,
    wake: Arc<Notify>,
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
    /// Creates the publisher of the entity feed and starts draining `outbox`; the caller
    /// installs it as the store's publish waiter.
    pub fn start(
        outbox: Arc<dyn Outbox>,
        log: Arc<super::EntityLog>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Self::start_with(outbox, log, "entity", Arc::new(Notify::new()), shutdown)
    }

    /// Creates a publisher of `what` draining `outbox` to `log`, woken by `wake` (the store
    /// notifies it after each commit that fed the outbox) or by [`wait_published`].
    ///
    /// [`wait_published`]: Self::wait_published
    pub fn start_with(
        outbox: Arc<dyn Outbox>,
        log: Arc<dyn FeedTopic>,
        what: &'static str,
        wake: Arc<Notify>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let p = Arc::new(Self {
            outbox,
            log,
            what,
            published: Mutex::new(0),
            cond: Condvar::new(),
            wake,
            last_error: Mutex::new(None),
        });
        let span = tracing::info_span!("publisher", what);
        tokio::spawn(p.clone().run(shutdown).instrument(span));
        p
    }

    async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let what = self.what;
        let mut failing = false;
        loop {
            let entries = match self.outbox.pending(self.log.batch()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, what, "reading the outbox failed");
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
            let t = Instant::now();
            let Published { done, error } = self.log.publish_batch(&entries).await;
            if let Some(seq) = done {
                tracing::debug!(
                    what,
                    seq,
                    entries = entries.len(),
                    took_us = t.elapsed().as_micros() as u64,
                    "published"
                );
                if let Err(err) = self.outbox.done(seq) {
                    tracing::error!(error = %err, what, "removing published outbox entries failed (they will be published again)");
                }
                let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
                *published = (*published).max(seq);
                self.cond.notify_all();
            }
            match error {
                None if failing => {
                    tracing::info!(what, "the message bus takes these records again");
                    failing = false;
                }
                None => {}
                Some(err) => {
                    if !failing {
                        tracing::error!(error = %err, what, "publishing failed: the message bus is unavailable; retrying");
                        failing = true;
                    }
                    *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(err.to_string());
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                }
            }
        }
    }
}
