//! The record writer: activation records leave the critical path here and reach LMDB in
//! batches, one write transaction (one fsync) for many records.
//!
//! Reads of records go through [`RecordWriter::flush`] first: the flush request travels the
//! same FIFO channel as the records, so when the writer answers it every record submitted
//! before it is committed. That keeps "durably before anyone can read them back" without a
//! disk write before the invoke response.
//!
//! The writer is a dedicated OS thread, not a tokio task: LMDB commits block (fsync, the
//! inter-process writer lock) and must not stall the runtime's worker threads.
//!
//! Must never: drop a record silently (a failed commit is retried once, then logged with the
//! activation ids), or block the submitter beyond the bounded queue.

use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::model::Activation;
use crate::store::Store;

/// Records waiting for the writer. Bounded so a store slower than the invoke rate pushes back
/// on invokers (submitters wait) rather than growing memory; 1024 records of up to ~1 MB
/// results would already be a lot of memory, and at a few ms per batch commit the queue
/// drains thousands of records per second.
const RECORD_QUEUE: usize = 1024;

/// Records written per transaction at most, so one commit stays short and flush waiters are
/// answered promptly.
const MAX_BATCH: usize = 256;

enum Command {
    Record(Box<Activation>),
    Flush(oneshot::Sender<()>),
    Stop,
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
}

impl RecordWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: Store) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(RECORD_QUEUE);
        let thread = std::thread::Builder::new()
            .name("hearth-records".into())
            .spawn(move || writer_loop(store, rx))?;
        Ok(Self { tx, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a record; waits only when the queue is full.
    pub async fn submit(&self, record: Activation) -> Result<(), WriterStopped> {
        self.tx.send(Command::Record(Box::new(record))).await.map_err(|_| WriterStopped)
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

fn writer_loop(store: Store, mut rx: mpsc::Receiver<Command>) {
    let mut batch: Vec<Activation> = Vec::with_capacity(MAX_BATCH);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else { break };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Record(r) => batch.push(*r),
                Command::Flush(w) => waiters.push(w),
                Command::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        commit(&store, &mut batch);
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
    // Stop or every sender gone: commit whatever is still queued.
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Command::Record(r) => batch.push(*r),
            Command::Flush(w) => waiters.push(w),
            Command::Stop => {}
        }
    }
    commit(&store, &mut batch);
    for w in waiters.drain(..) {
        let _ = w.send(());
    }
    tracing::debug!("record writer stopped");
}

fn commit(store: &Store, batch: &mut Vec<Activation>) {
    if batch.is_empty() {
        return;
    }
    let span = tracing::debug_span!("commit_records", n = batch.len());
    let _g = span.enter();
    let result = store.put_activations(batch).or_else(|first| {
        tracing::warn!(error = %first, "committing activation records failed; retrying once");
        store.put_activations(batch)
    });
    if let Err(e) = result {
        let ids: Vec<String> = batch.iter().map(|a| a.activation_id.to_string()).collect();
        tracing::error!(error = %e, ?ids, "activation records lost");
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationId, ActivationResponse, EntityName};
    use crate::store::test_util::temp_store;

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
                namespace: "guest".into(),
                name: "a".into(),
                subject: "guest".into(),
                activation_id: id,
                start: i,
                end: i,
                duration: 0,
                status_code: 0,
                response: ActivationResponse::success(serde_json::json!({})),
                logs: vec![],
                annotations: vec![],
                version: "0.0.1".into(),
                publish: false,
            })
            .await
            .unwrap();
        }
        w.flush().await.unwrap();
        for id in &ids {
            assert!(store.get_activation(&ns, id).unwrap().is_some());
        }
        w.stop().await;
        assert!(w.flush().await.is_err());
    }
}
