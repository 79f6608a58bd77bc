//! The invoker's side of the Unix-socket bus: accepts controller connections, hands each
//! activation to the invoker, and keeps the records of a connection that died for the next one.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::{ToController, ToInvoker, WRITE_QUEUE};
use crate::bus::frame;
use crate::dispatch::{Dispatcher, Timing};
use crate::model::Activation;
use crate::shutdown::Shutdown;

/// How many records of activations whose controller connection died the invoker keeps for the
/// next connection (the restarted controller); past that the oldest go (their activations end
/// with the controller's placeholder record).
const KEPT_RECORDS: usize = 4096;

/// Records that ended after their connection died, for the next connection.
type Kept = Arc<Mutex<std::collections::VecDeque<Activation>>>;

/// The invoker's side: accepts controller connections on `listener` and hands each activation
/// to `dispatcher` (the invoker), until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    dispatcher: Arc<dyn Dispatcher>,
    mut shutdown: Shutdown,
) {
    let kept: Kept = Arc::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (d, s, k) = (dispatcher.clone(), shutdown.clone(), kept.clone());
                    tokio::spawn(serve_connection(stream, d, s, k));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a controller connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_connection(
    stream: UnixStream,
    dispatcher: Arc<dyn Dispatcher>,
    mut shutdown: Shutdown,
    kept: Kept,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToController>(WRITE_QUEUE);
    let writer_kept = kept.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Err(e) = frame::write(&mut wr, &msg).await {
                tracing::warn!(error = %e, "writing to the controller failed: keeping its records for its next connection");
                // This record and every one still queued or still to come (their senders
                // fail once the queue is closed) wait for the next connection.
                rx.close();
                let mut msg = Some(msg);
                while let Some(m) = msg.take().or_else(|| rx.try_recv().ok()) {
                    if let ToController::Completed(r) = m {
                        keep(&writer_kept, *r);
                    }
                }
                break;
            }
        }
    });
    // What ended while no controller was connected goes to this one first.
    let earlier: Vec<Activation> =
        kept.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
    if !earlier.is_empty() {
        tracing::info!(
            records = earlier.len(),
            "handing the controller the records kept since its last connection"
        );
    }
    for record in earlier {
        send_or_keep(&tx, &kept, record).await;
    }
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait() => break,
            m = frame::read::<_, ToInvoker>(&mut rd) => m,
        };
        let msg = match msg {
            Ok(Some(ToInvoker::Activate(msg))) => msg,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading from the controller failed");
                break;
            }
        };
        let id = msg.activation_id;
        let fallback = (*msg).clone();
        match dispatcher.dispatch(*msg).await {
            Ok(done) => {
                if tx.send(ToController::Admitted(id)).await.is_err() {
                    break;
                }
                let (tx, kept) = (tx.clone(), kept.clone());
                tokio::spawn(async move {
                    let record = done.await.unwrap_or_else(|_| {
                        fallback.lost_record(
                            "the invoker lost the activation before it ended",
                            Timing::since_accepted(&fallback),
                        )
                    });
                    send_or_keep(&tx, &kept, record).await;
                });
            }
            Err(error) => {
                if tx.send(ToController::Rejected { id, error }).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Sends `record` to this connection's controller, or keeps it for the next connection when
/// this one is gone.
async fn send_or_keep(tx: &mpsc::Sender<ToController>, kept: &Kept, record: Activation) {
    if let Err(mpsc::error::SendError(ToController::Completed(r))) =
        tx.send(ToController::Completed(Box::new(record))).await
    {
        keep(kept, *r);
    }
}

/// Keeps `record` for the next controller connection, dropping the oldest past
/// [`KEPT_RECORDS`].
fn keep(kept: &Kept, record: Activation) {
    let mut k = kept.lock().unwrap_or_else(PoisonError::into_inner);
    if k.len() == KEPT_RECORDS {
        k.pop_front();
    }
    tracing::debug!(activation = %record.activation_id, "controller gone: record kept for its next connection");
    k.push_back(record);
}

/// Binds the invoker's socket at `path` (when not socket-activated), replacing a stale file.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}
