//! Keeps a consumer assigned to its partition only while its topic is known to exist.
//!
//! Why: the brokers hearth is tested against (tansu) answer a fetch for a topic they do not
//! have with a "current leader" hint and no topic id, and librdkafka 2.12 dereferences the
//! missing topic name while applying that hint: the whole process crashes (SIGSEGV in
//! `rd_kafka_metadata_update_op`). That happens when a consumer fetches before its topic is
//! created, or after a broker with memory storage restarts empty (the topic comes back with a
//! new id, and a client that lived through the outage fetches by the old one). So a consumer is
//! created and assigned only after its topic was created (or found), is dropped as soon as
//! the brokers go down or say the topic is gone, and a new one is assigned, at the offset the
//! old one had reached, once the topic exists again.
//!
//! A topic re-created while a host was away may also have grown past the position it had
//! reached: then the end offset cannot tell the new topic from the old one. A consumer that
//! can tell its records apart (the entity follower, by their marks) attaches
//! [`checking_previous`](Attachment::checking_previous): one record before its position, to
//! compare that record with the one it applied there.

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::error::KafkaError;

/// Between attempts to create the topic while the brokers are away.
const RETRY: Duration = Duration::from_millis(250);

/// How long a re-attach may wait to learn where the partition ends.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a consumer error that keeps the consumer, so an outage does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// A consumer whose close never blocks the thread that drops it.
///
/// Why: dropping a librdkafka consumer that has a group id closes it, and rust-rdkafka's drop
/// polls until the close completes, which can take forever when the brokers die at that
/// moment (fede1024/rust-rdkafka#509; seen here: a test's runtime shutdown hung for minutes
/// in that drop). Blocking there stalls a tokio worker, or a daemon's exit. So the consumer
/// is dropped on a thread of its own ([`Drop`]), and a graceful stop waits for that close
/// only for a bounded time ([`close`](Self::close)); a close still running when the process
/// exits is cut short with it, which loses nothing committed.
pub(crate) struct Assigned<C: ConsumerContext + 'static>(Option<StreamConsumer<C>>);

impl<C: ConsumerContext + 'static> Assigned<C> {
    fn new(c: StreamConsumer<C>) -> Self {
        Self(Some(c))
    }

    /// Closes the consumer, waiting at most `within` (its final commit is sent during the
    /// close); after that the close goes on in the background.
    pub async fn close(mut self, within: Duration) {
        let Some(c) = self.0.take() else { return };
        let (done_tx, done) = tokio::sync::oneshot::channel();
        detach(move || {
            drop(c);
            let _ = done_tx.send(());
        });
        if tokio::time::timeout(within, done).await.is_err() {
            tracing::warn!(
                ?within,
                "a Kafka consumer did not close in time; closing it in the background"
            );
        }
    }
}

impl<C: ConsumerContext + 'static> Deref for Assigned<C> {
    type Target = StreamConsumer<C>;

    fn deref(&self) -> &StreamConsumer<C> {
        // Always Some until close or drop, which take self.
        self.0.as_ref().unwrap_or_else(|| unreachable!("a consumer used after its close"))
    }
}

impl<C: ConsumerContext + 'static> Drop for Assigned<C> {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            detach(move || drop(c));
        }
    }
}

/// Runs `f` on a thread of its own, not waited for. When no thread can be made, `f` is
/// dropped unrun, which still drops what it captured (a consumer closes in place then).
pub(crate) fn detach(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name("kafka-close".into()).spawn(f) {
        tracing::warn!(error = %e, "no thread to close a Kafka client on; closing it in place");
    }
}

/// One consumer's binding to partition 0 of `topic`.
#[derive(Debug)]
pub(crate) struct Attachment {
    topic: String,
    next: Offset,
    /// The last connect found the topic re-created (see [`take_reset`](Self::take_reset)).
    reset: bool,
    /// Attach one record early, to check the record before the position.
    check_previous: bool,
    /// The offset of that record, until the first message after a connect arrives.
    checking: Option<i64>,
}

impl Attachment {
    pub fn new(topic: &str, start: Offset) -> Self {
        Self {
            topic: topic.to_string(),
            next: start,
            reset: false,
            check_previous: false,
            checking: None,
        }
    }

    /// Every connect at a position after the first record assigns the partition one record
    /// earlier: the first message is then the record just before the position (unless
    /// compaction removed it), which [`is_check`](Self::is_check) identifies.
    pub fn checking_previous(mut self) -> Self {
        self.check_previous = true;
        self
    }

    /// Whether the message at `offset`, the first since a connect, is the record before the
    /// position, read again for a check (never true after the first message).
    pub fn is_check(&mut self, offset: i64) -> bool {
        self.checking.take() == Some(offset)
    }

    /// The check found another record than the one applied there: the topic was re-created.
    /// The next connect reads it from its beginning and reports the reset.
    pub fn restart_from_beginning(&mut self) {
        tracing::warn!(topic = %self.topic, "the topic was re-created and has grown past this host's position: reading it from the beginning");
        self.next = Offset::Beginning;
        self.reset = true;
        self.checking = None;
    }

    /// Whether a connect since the last call found the topic re-created (it ended before the
    /// position reached): the entity follower then has the controllers re-publish.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }

    /// Records that the message at `offset` was consumed: a re-attach resumes after it.
    pub fn consumed(&mut self, offset: i64) {
        self.next = Offset::Offset(offset + 1);
    }

    /// Creates a fresh consumer with `make` and assigns it, once `ensure` (topic creation)
    /// succeeded; retries until then. A fresh client each time: one that lived through an
    /// outage caches the old topic ids, and fetching a re-created topic by its old id is
    /// exactly the crash this module avoids.
    pub async fn connect<C, M, F, Fut>(&mut self, make: M, ensure: F) -> Assigned<C>
    where
        C: ConsumerContext + 'static,
        M: Fn() -> Result<StreamConsumer<C>, KafkaError>,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), KafkaError>>,
    {
        let mut logged = false;
        loop {
            let attempt = match ensure().await {
                Ok(()) => make(),
                Err(e) => Err(e),
            };
            let consumer = match attempt {
                Ok(c) => c,
                Err(e) => {
                    if !logged {
                        tracing::warn!(topic = %self.topic, error = %e, "waiting for the brokers to have the topic");
                        logged = true;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            self.rewind_if_recreated(&consumer);
            let at = match self.next {
                Offset::Offset(n) if self.check_previous && n > 0 => {
                    self.checking = Some(n - 1);
                    Offset::Offset(n - 1)
                }
                other => {
                    self.checking = None;
                    other
                }
            };
            let mut tpl = TopicPartitionList::new();
            let assigned =
                tpl.add_partition_offset(&self.topic, 0, at).and_then(|()| consumer.assign(&tpl));
            match assigned {
                Ok(()) => {
                    if logged {
                        tracing::info!(topic = %self.topic, "consuming again");
                    }
                    return Assigned::new(consumer);
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "assigning the partition failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The consumer a follower reads with next: the one it `held` (kept after its last
    /// message), else a new one [`connect`](Self::connect)ed; `None` once `shutdown` fires.
    pub async fn held_or_connect<C, M, F, Fut>(
        &mut self,
        held: Option<Assigned<C>>,
        make: M,
        ensure: F,
        shutdown: &mut crate::shutdown::Shutdown,
    ) -> Option<Assigned<C>>
    where
        C: ConsumerContext + 'static,
        M: Fn() -> Result<StreamConsumer<C>, KafkaError>,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), KafkaError>>,
    {
        if held.is_some() {
            return held;
        }
        tokio::select! {
            _ = shutdown.wait() => None,
            c = self.connect(make, ensure) => Some(c),
        }
    }

    /// A broker with memory storage comes back with empty topics, and it answers a fetch
    /// beyond the end by waiting for data rather than with "offset out of range": resuming at
    /// the old position would skip every message until the new topic grows past it. So when
    /// the end of the partition is before the position, the topic is new: start at its
    /// beginning. (A blocking metadata call of at most a second, on the recovery path only.)
    fn rewind_if_recreated<C: ConsumerContext + 'static>(&mut self, consumer: &StreamConsumer<C>) {
        let Offset::Offset(next) = self.next else { return };
        match consumer.fetch_watermarks(&self.topic, 0, WATERMARK_TIMEOUT) {
            Ok((_, high)) if high < next => {
                tracing::warn!(topic = %self.topic, next, high, "the topic was re-created: reading it from the beginning");
                self.next = Offset::Beginning;
                self.reset = true;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(topic = %self.topic, error = %e, "end of partition unknown"),
        }
    }

    /// Whether a consumer error means the brokers are gone or lost the topic: the caller then
    /// drops its consumer at once (so it fetches nothing when the broker returns) and
    /// [`connect`](Self::connect)s a new one.
    pub fn is_gone(&self, error: &RdError) -> bool {
        use RDKafkaErrorCode as E;
        let gone = matches!(
            error.rdkafka_error_code(),
            Some(
                E::AllBrokersDown
                    | E::BrokerTransportFailure
                    | E::UnknownTopicOrPartition
                    | E::UnknownTopic
                    | E::UnknownPartition
            )
        );
        if gone {
            tracing::warn!(topic = %self.topic, %error, "brokers unavailable: dropping this consumer until they are back");
        }
        gone
    }

    /// What a consumer loop does with a consumer error: `true` when the consumer must be
    /// dropped ([`is_gone`](Self::is_gone)); otherwise after a short pause, `false` (keep it).
    pub async fn recover(&self, error: &RdError) -> bool {
        let gone = self.is_gone(error);
        if !gone {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        gone
    }
}
