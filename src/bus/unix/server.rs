//! The invoker's side of the Unix-socket bus: accepts controller connections, hands each
//! activation to the invoker, and holds the *unclaimed* records (those whose controller
//! connection died) for the next connection, where they arrive unclaimed.

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

/// How many unclaimed records (their controller connection died) the invoker holds for the
/// next connection (the restarted controller); past that the oldest go (their activations end
/// with the controller's placeholder record).
const UNCLAIMED_LIMIT: usize = 4096;

/// Unclaimed records: ended after their connection died, held for the next connection.
type UnclaimedQueue = Arc<Mutex<std::collections::VecDeque<Activation>>>;

/// The invoker's side: accepts controller connections on `listener` and hands each activation
/// to `dispatcher` (the invoker), until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    dispatcher: Arc<dyn Dispatcher>,
    mut shutdown: Shutdown,
) {
    let unclaimed: UnclaimedQueue = Arc::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (d, s, k) = (dispatcher.clone(), shutdown.clone(), unclaimed.clone());
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
    unclaimed: UnclaimedQueue,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToController>(WRITE_QUEUE);
    let writer_unclaimed = unclaimed.clone();
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
                        hold_unclaimed(&writer_unclaimed, *r);
                    }
                }
                break;
            }
        }
    });
    // What ended while no controller was connected goes to this one first.
    let earlier: Vec<Activation> =
        unclaimed.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
    if !earlier.is_empty() {
        tracing::info!(
            records = earlier.len(),
            "handing the controller the unclaimed records held since its last connection"
        );
    }
    for record in earlier {
        send_or_hold(&tx, &unclaimed, record).await;
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
                let (tx, unclaimed) = (tx.clone(), unclaimed.clone());
                tokio::spawn(async move {
                    let record = done.await.unwrap_or_else(|_| {
                        fallback.lost_record(
                            "the invoker lost the activation before it ended",
                            Timing::since_accepted(&fallback),
                        )
                    });
                    send_or_hold(&tx, &unclaimed, record).await;
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

/// Sends `record` to this connection's controller, or holds it, unclaimed, for the next
/// connection when this one is gone.
async fn send_or_hold(
    tx: &mpsc::Sender<ToController>,
    unclaimed: &UnclaimedQueue,
    record: Activation,
) {
    if let Err(mpsc::error::SendError(ToController::Completed(r))) =
        tx.send(ToController::Completed(Box::new(record))).await
    {
        hold_unclaimed(unclaimed, *r);
    }
}

/// Holds the unclaimed `record` for the next controller connection, dropping the oldest past
/// [`UNCLAIMED_LIMIT`].
fn hold_unclaimed(unclaimed: &UnclaimedQueue, record: Activation) {
    let mut k = unclaimed.lock().unwrap_or_else(PoisonError::into_inner);
    if k.len() == UNCLAIMED_LIMIT {
        k.pop_front();
    }
    tracing::debug!(activation = %record.activation_id, "controller gone: record held, unclaimed, for its next connection");
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
