//! The record writer: activation records reach LMDB here, in batches, one write transaction
//! for every record (and pending stub) queued at the moment the writer wakes up.
//!
//! Durability rule: an activation id is acknowledged to a client only after something is
//! committed under it. A blocking invoke's record is committed before its response
//! ([`RecordWriter::commit`]); a non-blocking invoke (or a blocking wait that ran out) commits
//! a pending stub before answering 202 ([`RecordWriter::commit_pending`]), and the finished
//! record replaces the stub later. The store is opened `NO_SYNC`, so a commit is a page-cache
//! write of tens of microseconds and survives a kill -9; concurrent callers share one
//! transaction because the writer drains the queue into one batch.
//!
//! Reads of records go through [`RecordWriter::flush`] first: the flush request travels the
//! same FIFO channel as the records, so when the writer answers it every record submitted
//! before it is committed.
//!
//! The writer is a dedicated OS thread, not a tokio task: LMDB commits block (the
//! inter-process writer lock, page faults on the map) and must not stall the runtime's worker
//! threads under load. One exception, for latency: a blocking invoke that is the only
//! activation in flight, with the writer idle (an empty queue, no batch being written),
//! commits its own record on its worker ([`RecordWriter::commit_returning`]). The commit of
//! one record with `NO_SYNC` is a few pages written to the page cache, cheaper than the two
//! thread wake-ups of the hand-off to the writer and back; with several activations in
//! flight, records batch as before: committing every idle-time record inline cost throughput
//! with many clients, where batching amortises each commit's fixed pages (BENCHMARKS.md,
//! "Design measurements").
//!
//! Records nobody waits for come the same way: an *unclaimed* record (its activation was
//! acknowledged before this controller restarted and ended while it was away; the bus hands
//! it to the daemon's sink, which calls [`RecordWriter::submit_unclaimed`]) shares the
//! batches, the retry and the records outbox of every other record, and is written only
//! where its [`UnclaimedRule`] allows, never over a real record
//! ([`Store::commit_records`]). Only the materialiser of other controllers' records writes
//! records apart from this writer (`store/record_feed.rs` says why).
//!
//! Must never: drop a record silently (a failed commit is retried once, then logged with the
//! activation ids), or block the submitter beyond the bounded queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::model::Activation;
use crate::store::{Store, UnclaimedRule};

/// Records waiting for the writer. Bounded so a store slower than the invoke rate pushes back
/// on invokers (submitters wait) rather than growing memory; 1024 records of up to ~1 MB
/// results would already be a lot of memory, and at a few ms per batch commit the queue
/// drains thousands of records per second.
const RECORD_QUEUE: usize = 1024;

/// Records written per transaction at most, so one commit stays short and flush waiters are
/// answered promptly.
const MAX_BATCH: usize = 256;

/// Answered `true` once the item is committed, `false` when the commit failed.
type Ack = oneshot::Sender<bool>;

/// As [`Ack`], with the record handed back: the blocking invoke answers with the record it
/// committed, and handing it back costs a move where a copy kept by the caller would cost a
/// deep clone (result, logs, annotations) on every warm invoke.
type Return = oneshot::Sender<(bool, Box<Activation>)>;

enum Command {
    Record(Box<Activation>, Option<Ack>),
    /// A record committed and handed back.
    Commit(Box<Activation>, Return),
    Pending(Box<Activation>, Ack),
    /// A record nobody waits for, written where its rule allows.
    Unclaimed(Box<Activation>, UnclaimedRule),
    Flush(oneshot::Sender<()>),
    Stop,
}

/// Why a record or stub was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Stopped(#[from] WriterStopped),
    #[error("activation {0}: the record could not be committed to the store")]
    Failed(crate::model::ActivationId),
}

/// The writer was stopped; nothing more can be recorded or flushed.
#[derive(Debug, thiserror::Error)]
#[error("the activation record writer has stopped")]
pub struct WriterStopped;

/// Handle to the writer thread.
#[derive(Debug)]
pub struct RecordWriter {
    tx: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// For the idle fast path of [`commit_returning`](Self::commit_returning).
    store: Store,
    /// Set by the writer thread while it holds a batch.
    busy: Arc<AtomicBool>,
}

impl RecordWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: Store) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(RECORD_QUEUE);
        let busy = Arc::new(AtomicBool::new(false));
        let (thread_store, thread_busy) = (store.clone(), busy.clone());
        let thread = std::thread::Builder::new()
            .name("hearth-records".into())
            .spawn(move || writer_loop(thread_store, rx, &thread_busy))?;
        Ok(Self { tx, thread: Mutex::new(Some(thread)), store, busy })
    }

    /// Queues a record; waits only when the queue is full.
    pub async fn submit(&self, record: Activation) -> Result<(), WriterStopped> {
        self.tx.send(Command::Record(Box::new(record), None)).await.map_err(|_| WriterStopped)
    }

    /// Queues an unclaimed record (see the module's doc); waits only when the queue is full.
    pub async fn submit_unclaimed(
        &self,
        record: Activation,
        rule: UnclaimedRule,
    ) -> Result<(), WriterStopped> {
        self.tx.send(Command::Unclaimed(Box::new(record), rule)).await.map_err(|_| WriterStopped)
    }

    /// Queues a record and resolves once it is committed (batched with whatever else is
    /// queued): a blocking invoke answers only after this.
    pub async fn commit(&self, record: Activation) -> Result<(), CommitError> {
        let id = record.activation_id;
        let (ack, wait) = oneshot::channel();
        self.tx
            .send(Command::Record(Box::new(record), Some(ack)))
            .await
            .map_err(|_| WriterStopped)?;
        Self::acked(id, wait).await
    }

    /// As [`commit`](Self::commit), handing the committed record back (no copy is kept while
    /// it waits in the queue). When the writer is idle the record is committed here, on the
    /// caller's thread (see the module's doc); the guarantee is the same: committed before
    /// this returns. `alone`: the caller's activation is the only one in flight, so nothing
    /// would share a batch with it.
    pub async fn commit_returning(
        &self,
        record: Activation,
        alone: bool,
    ) -> Result<Activation, CommitError> {
        let id = record.activation_id;
        if alone && self.idle() {
            let batch = std::slice::from_ref(&record);
            let result = self.store.commit_activations(batch, &[]).or_else(|first| {
                tracing::warn!(error = %first, "committing an activation record failed; retrying once");
                self.store.commit_activations(batch, &[])
            });
            return match result {
                Ok(()) => Ok(record),
                Err(e) => {
                    tracing::error!(error = %e, activation_id = %id, "activation record lost");
                    Err(CommitError::Failed(id))
                }
            };
        }
        let (ret, wait) = oneshot::channel();
        self.tx.send(Command::Commit(Box::new(record), ret)).await.map_err(|_| WriterStopped)?;
        match wait.await {
            Ok((true, record)) => Ok(*record),
            Ok((false, _)) => Err(CommitError::Failed(id)),
            Err(_) => Err(CommitError::Stopped(WriterStopped)),
        }
    }

    /// Commits the stub an acknowledged, unfinished activation ends with if the server stops
    /// first; its record (via [`submit`](Self::submit) or [`commit`](Self::commit)) replaces it.
    pub async fn commit_pending(&self, stub: Activation) -> Result<(), CommitError> {
        let id = stub.activation_id;
        let (ack, wait) = oneshot::channel();
        self.tx.send(Command::Pending(Box::new(stub), ack)).await.map_err(|_| WriterStopped)?;
        Self::acked(id, wait).await
    }

    async fn acked(
        id: crate::model::ActivationId,
        wait: oneshot::Receiver<bool>,
    ) -> Result<(), CommitError> {
        match wait.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CommitError::Failed(id)),
            Err(_) => Err(CommitError::Stopped(WriterStopped)),
        }
    }

    /// Running, nothing queued and no batch being written: a commit here waits for nobody and
    /// nobody waits for it (LMDB serialises it with a batch that starts meanwhile).
    fn idle(&self) -> bool {
        !self.tx.is_closed()
            && self.tx.capacity() == self.tx.max_capacity()
            && !self.busy.load(Ordering::Acquire)
    }

    /// Resolves once every record submitted before this call is committed.
    pub async fn flush(&self) -> Result<(), WriterStopped> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Command::Flush(done)).await.map_err(|_| WriterStopped)?;
        wait.await.map_err(|_| WriterStopped)
    }

    /// Commits what is queued, stops the thread and waits for it (so the store's environment
    /// can be reopened in this process afterwards).
    pub async fn stop(&self) {
        let _ = self.tx.send(Command::Stop).await;
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            if tokio::task::spawn_blocking(move || h.join()).await.is_err() {
                tracing::error!("the record writer thread panicked");
            }
        }
    }
}

impl super::Controller {
    /// This controller's record writer, for the records nobody waits for: the daemon points
    /// the bus's unclaimed sink at it ([`RecordWriter::submit_unclaimed`]).
    pub fn record_writer(&self) -> Arc<RecordWriter> {
        self.records.clone()
    }
}

/// One transaction's worth of work.
#[derive(Default)]
struct Batch {
    records: Vec<Activation>,
    pending: Vec<Activation>,
    unclaimed: Vec<(Activation, UnclaimedRule)>,
    acks: Vec<Ack>,
    /// Indexes into `records` of the records to hand back, with where to.
    returns: Vec<(usize, Return)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Record(r, ack) => {
                self.records.push(*r);
                self.acks.extend(ack);
            }
            Command::Commit(r, ret) => {
                self.returns.push((self.records.len(), ret));
                self.records.push(*r);
            }
            Command::Pending(p, ack) => {
                self.pending.push(*p);
                self.acks.push(ack);
            }
            Command::Unclaimed(r, rule) => self.unclaimed.push((*r, rule)),
            Command::Flush(w) => self.flushes.push(w),
            Command::Stop => return false,
        }
        true
    }

    fn full(&self) -> bool {
        self.records.len() + self.pending.len() + self.unclaimed.len() >= MAX_BATCH
    }
}

fn writer_loop(store: Store, mut rx: mpsc::Receiver<Command>, busy: &AtomicBool) {
    let mut batch = Batch::default();
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else { break };
        busy.store(true, Ordering::Release);
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            if !batch.add(cmd) {
                stop = true;
                break;
            }
            if batch.full() {
                break;
            }
            next = rx.try_recv().ok();
        }
        commit(&store, &mut batch);
        busy.store(false, Ordering::Release);
    }
    // Stop or every sender gone: commit whatever is still queued.
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        batch.add(cmd);
    }
    commit(&store, &mut batch);
    tracing::debug!("record writer stopped");
}

fn commit(store: &Store, batch: &mut Batch) {
    let ok = if batch.records.is_empty() && batch.pending.is_empty() && batch.unclaimed.is_empty() {
        true
    } else {
        let span = tracing::debug_span!(
            "commit_records",
            records = batch.records.len(),
            pending = batch.pending.len(),
            unclaimed = batch.unclaimed.len()
        );
        let _g = span.enter();
        let (records, pending, unclaimed) = (&batch.records, &batch.pending, &batch.unclaimed);
        let result = store.commit_records(records, pending, unclaimed).or_else(|first| {
            tracing::warn!(error = %first, "committing activation records failed; retrying once");
            store.commit_records(records, pending, unclaimed)
        });
        match result {
            Ok(written) => {
                for (a, _) in unclaimed.iter().filter(|(a, _)| written.contains(&a.activation_id)) {
                    tracing::info!(
                        activation = %a.activation_id,
                        status = a.response.status.as_str(),
                        "recorded an activation that ended while this controller was away"
                    );
                }
                true
            }
            Err(e) => {
                let ids: Vec<String> = records
                    .iter()
                    .chain(pending)
                    .chain(unclaimed.iter().map(|(a, _)| a))
                    .map(|a| a.activation_id.to_string())
                    .collect();
                tracing::error!(error = %e, ?ids, "activation records lost");
                false
            }
        }
    };
    for a in batch.acks.drain(..) {
        let _ = a.send(ok);
    }
    if !batch.returns.is_empty() {
        let mut records: Vec<Option<Activation>> = batch.records.drain(..).map(Some).collect();
        for (i, ret) in batch.returns.drain(..) {
            if let Some(r) = records.get_mut(i).and_then(Option::take) {
                let _ = ret.send((ok, Box::new(r)));
            }
        }
    }
    for w in batch.flushes.drain(..) {
        let _ = w.send(());
    }
    batch.records.clear();
    batch.pending.clear();
    batch.unclaimed.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationId, ActivationResponse, EntityName};
    use crate::store::test_util::temp_store;

    fn sample(id: ActivationId) -> Activation {
        Activation {
            activation_id: id,
            end: 0,
            duration: 0,
            response: ActivationResponse::success(serde_json::json!({"r": 1})),
            annotations: vec![],
            ..crate::testing::activation("guest", "a", 0)
        }
    }

    #[tokio::test]
    async fn flush_makes_submitted_records_readable() {
        let (_d, store) = temp_store();
        let w = RecordWriter::start(store.clone()).unwrap();
        let ns = EntityName::parse("guest").unwrap();
        let mut ids = Vec::new();
        for i in 0..50u64 {
            let id = ActivationId::generate();
            ids.push(id);
            w.submit(Activation {
                activation_id: id,
                end: i,
                duration: 0,
                annotations: vec![],
                ..crate::testing::activation("guest", "a", i)
            })
            .await
            .unwrap();
        }
        let mut back = Activation { start: 7, ..sample(ActivationId::generate()) };
        back.logs.push("a line".into());
        let returned = w.commit_returning(back.clone(), false).await.unwrap();
        assert_eq!(returned, back);
        ids.push(back.activation_id);
        w.flush().await.unwrap();
        for id in &ids {
            assert!(store.get_activation(&ns, id).unwrap().is_some());
        }
        w.stop().await;
        assert!(w.flush().await.is_err());
    }

    /// The idle fast path commits before returning, and only while the writer runs: after
    /// `stop` nothing is committed behind the stopped writer's back.
    #[tokio::test]
    async fn an_idle_writer_commits_on_the_caller_and_a_stopped_one_refuses() {
        let (_d, store) = temp_store();
        let w = RecordWriter::start(store.clone()).unwrap();
        let ns = EntityName::parse("guest").unwrap();
        let rec = sample(ActivationId::generate());
        assert!(w.idle(), "a fresh writer is idle");
        let back = w.commit_returning(rec.clone(), true).await.unwrap();
        assert_eq!(back, rec);
        // Readable at once, without a flush: it was committed before commit_returning returned.
        assert!(store.get_activation(&ns, &rec.activation_id).unwrap().is_some());
        w.stop().await;
        assert!(!w.idle());
        let late = sample(ActivationId::generate());
        assert!(w.commit_returning(late.clone(), true).await.is_err());
        assert!(store.get_activation(&ns, &late.activation_id).unwrap().is_none());
    }

    /// An unclaimed record takes the same route as any record: the writer's batch, the
    /// records outbox; over a placeholder (or nothing, when adopted), never over a real one.
    #[tokio::test]
    async fn unclaimed_records_go_through_the_writer_and_spare_real_records() {
        let (_d, store) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        store.enable_record_feed().unwrap();
        // A previous run acknowledged `away` and `known`; its restart made placeholders.
        let (away, known) = (sample(ActivationId::generate()), sample(ActivationId::generate()));
        store.commit_activations(&[], &[away.clone(), known.clone()]).unwrap();
        assert_eq!(store.replace_pending_with_placeholders().unwrap(), 2);
        let w = RecordWriter::start(store.clone()).unwrap();
        // `known`'s record was written meanwhile (say, by the lost record of its bus).
        let mut real = known.clone();
        real.response = ActivationResponse::success(serde_json::json!({"first": true}));
        w.commit(real.clone()).await.unwrap();
        let fed = store.count_record_feed().unwrap();
        let mut late_known = known.clone();
        late_known.response = ActivationResponse::success(serde_json::json!({"late": true}));
        let stranger = sample(ActivationId::generate());
        let adopted = sample(ActivationId::generate());
        for (r, rule) in [
            (away.clone(), UnclaimedRule::Acknowledged),
            (late_known, UnclaimedRule::Adopted),
            (stranger.clone(), UnclaimedRule::Acknowledged),
            (adopted.clone(), UnclaimedRule::Adopted),
        ] {
            w.submit_unclaimed(r, rule).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(store.get_activation(&ns, &away.activation_id).unwrap().unwrap(), away);
        assert_eq!(store.get_activation(&ns, &known.activation_id).unwrap().unwrap(), real);
        assert!(store.get_activation(&ns, &stranger.activation_id).unwrap().is_none());
        assert_eq!(store.get_activation(&ns, &adopted.activation_id).unwrap().unwrap(), adopted);
        assert_eq!(store.count_record_feed().unwrap(), fed + 2, "the two written are published");
        w.stop().await;
        assert!(w
            .submit_unclaimed(sample(ActivationId::generate()), UnclaimedRule::Adopted)
            .await
            .is_err());
    }
}
