//! The controller's side of the Unix-socket bus: one connection to the invoker's socket,
//! many activations in flight on it, reconnected on demand after the invoker restarts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::{ToController, ToInvoker, WRITE_QUEUE};
use crate::balancer::{Health, InvokerId};
use crate::bus::{frame, Unclaimed, UnclaimedSink};
use crate::dispatch::{ActivationMessage, DispatchError, DispatchFuture, Dispatcher, InvokerView};
use crate::model::{Activation, ActivationId};

/// How long the controller waits for the invoker to admit an activation. Generous because the
/// first connection may have to wait for systemd to start the invoker (socket activation),
/// which reclaims leftovers before it accepts.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(20);

/// An activation the controller sent and has not heard the end of.
#[derive(Debug)]
struct Pending {
    admitted: Option<oneshot::Sender<Result<(), DispatchError>>>,
    completion: oneshot::Sender<Activation>,
}

type PendingMap = Arc<Mutex<HashMap<ActivationId, Pending>>>;

/// One live connection to the invoker.
#[derive(Debug)]
struct Connection {
    tx: mpsc::Sender<ToInvoker>,
    pending: PendingMap,
    /// Cleared by the reader, under the pending lock, when the invoker hangs up: a dispatch
    /// that sees it set under that lock is guaranteed an answer or a refusal.
    alive: Arc<AtomicBool>,
}

impl Connection {
    fn is_open(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Registers an activation awaiting its answer; false when the connection is gone.
    fn register(&self, id: ActivationId, pending: Pending) -> bool {
        let mut map = lock(&self.pending);
        if !self.alive.load(Ordering::Acquire) {
            return false;
        }
        map.insert(id, pending);
        true
    }
}

/// The controller's side: a [`Dispatcher`] that talks to the invoker's socket, connecting (and
/// reconnecting after a loss) on demand.
#[derive(Debug)]
pub struct UnixBus {
    path: PathBuf,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    unclaimed: Arc<UnclaimedSink>,
}

impl UnixBus {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), conn: tokio::sync::Mutex::new(None), unclaimed: Arc::default() }
    }

    /// Installs where records go that no request waits for: the invoker keeps the records of
    /// a connection that died (this controller restarted) and hands them to the next one.
    /// Once; later calls are ignored.
    pub fn on_unclaimed(&self, sink: Unclaimed) {
        self.unclaimed.install(sink);
    }

    /// Connects now (not at the first dispatch), so that the unclaimed records the invoker holds for
    /// this controller's previous run arrive: called at start when that run left pending
    /// activations. A connection starts a socket-activated invoker.
    pub async fn collect_unclaimed(&self) {
        if let Err(e) = self.connection().await {
            tracing::warn!(error = %e, "cannot collect the unclaimed records the invoker holds");
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, DispatchError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let stream = UnixStream::connect(&self.path).await.map_err(|e| {
            DispatchError::Unavailable(format!(
                "the invoker is not reachable at {}: {e}",
                self.path.display()
            ))
        })?;
        let conn = Arc::new(start_client(stream, self.unclaimed.clone()));
        *guard = Some(conn.clone());
        Ok(conn)
    }
}

fn lock(p: &PendingMap) -> std::sync::MutexGuard<'_, HashMap<ActivationId, Pending>> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_client(stream: UnixStream, unclaimed: Arc<UnclaimedSink>) -> Connection {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ToInvoker>(WRITE_QUEUE);
    let pending: PendingMap = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Err(e) = frame::write(&mut wr, &msg).await {
                tracing::warn!(error = %e, "writing to the invoker failed");
                break;
            }
        }
    });
    let reader_pending = pending.clone();
    let reader_alive = alive.clone();
    tokio::spawn(async move {
        loop {
            match frame::read::<_, ToController>(&mut rd).await {
                Ok(Some(ToController::Admitted(id))) => {
                    if let Some(p) = lock(&reader_pending).get_mut(&id) {
                        if let Some(a) = p.admitted.take() {
                            let _ = a.send(Ok(()));
                        }
                    }
                }
                Ok(Some(ToController::Rejected { id, error })) => {
                    if let Some(mut p) = lock(&reader_pending).remove(&id) {
                        if let Some(a) = p.admitted.take() {
                            let _ = a.send(Err(error));
                        }
                    }
                }
                Ok(Some(ToController::Completed(act))) => {
                    let waiting = lock(&reader_pending).remove(&act.activation_id);
                    match waiting {
                        Some(p) => {
                            let _ = p.completion.send(*act);
                        }
                        // An unclaimed record: the invoker held it from a connection that died.
                        None => unclaimed.hand(*act),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading from the invoker failed");
                    break;
                }
            }
        }
        // The connection is gone: refuse what was not admitted; admitted activations lose
        // their completion sender, which the controller records as an internal error.
        let lost: Vec<Pending> = {
            let mut map = lock(&reader_pending);
            reader_alive.store(false, Ordering::Release);
            map.drain().map(|(_, p)| p).collect()
        };
        for mut p in lost {
            if let Some(a) = p.admitted.take() {
                let _ = a.send(Err(DispatchError::Unavailable(
                    "the connection to the invoker was lost".into(),
                )));
            }
        }
    });
    Connection { tx, pending, alive }
}

impl Dispatcher for UnixBus {
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
        Box::pin(async move {
            let id = msg.activation_id;
            let lost =
                || DispatchError::Unavailable("the connection to the invoker was lost".into());
            // Two attempts: a cached connection may have died since (the invoker restarted).
            // Retrying is safe only before admission: the invoker has not seen the activation.
            let mut msg = Some(msg);
            for attempt in 0..2 {
                let conn = self.connection().await?;
                let (adm_tx, adm_rx) = oneshot::channel();
                let (done_tx, done_rx) = oneshot::channel();
                if !conn.register(id, Pending { admitted: Some(adm_tx), completion: done_tx }) {
                    continue;
                }
                let frame = if attempt == 0 { msg.clone() } else { msg.take() };
                let Some(frame) = frame else { break };
                if conn.tx.send(ToInvoker::Activate(Box::new(frame))).await.is_err() {
                    lock(&conn.pending).remove(&id);
                    return Err(lost());
                }
                return match tokio::time::timeout(ADMISSION_TIMEOUT, adm_rx).await {
                    Ok(Ok(Ok(()))) => Ok(done_rx),
                    Ok(Ok(Err(e))) => Err(e),
                    Ok(Err(_)) if attempt == 0 => continue,
                    Ok(Err(_)) => Err(lost()),
                    Err(_) => {
                        lock(&conn.pending).remove(&id);
                        Err(DispatchError::Unavailable(format!(
                            "the invoker did not admit the activation within {} s",
                            ADMISSION_TIMEOUT.as_secs()
                        )))
                    }
                };
            }
            Err(lost())
        })
    }

    /// The one invoker behind the socket: up while a connection to it is open or while the
    /// socket exists (systemd, or the invoker, listens there). Not probed by connecting: that
    /// would start a socket-activated invoker for a status query.
    fn invokers(&self) -> Vec<InvokerView> {
        let open =
            self.conn.try_lock().ok().is_some_and(|c| c.as_ref().is_some_and(|c| c.is_open()));
        let health = if open || self.path.exists() { Health::Up } else { Health::Offline };
        vec![InvokerView { id: InvokerId(0), health }]
    }
}
