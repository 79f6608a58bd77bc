//! The Unix-socket bus: the controller and the invoker of one host as separate processes.
//!
//! The controller connects to the invoker's socket (`/run/hearth/invoker.sock`, socket-activated:
//! the first connection starts the invoker). One connection carries many activations at once:
//! every message names its activation id, and replies come back in any order.
//!
//! ```text
//! controller -> invoker   Activate(msg)
//! invoker -> controller   Admitted(id) | Rejected{id, error}     at once
//! invoker -> controller   Completed(activation)                   when the run ends
//! ```
//!
//! If the connection drops, every activation still waiting for admission is refused
//! (Unavailable) and every admitted one loses its completion sender, which the controller
//! turns into a "whisk internal error" record: nothing is silently lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::{frame, Unclaimed, UnclaimedSink};
use crate::balancer::{Health, InvokerId};
use crate::dispatch::{ActivationMessage, DispatchError, DispatchFuture, Dispatcher, InvokerView};
use crate::model::{Activation, ActivationId};
use crate::shutdown::Shutdown;

/// How long the controller waits for the invoker to admit an activation. Generous because the
/// first connection may have to wait for systemd to start the invoker (socket activation),
/// which reclaims leftovers before it accepts.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(20);

/// Frames queued for one connection's writer before senders wait: bounds memory when the
/// peer reads slowly.
const WRITE_QUEUE: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
enum ToInvoker {
    Activate(Box<ActivationMessage>),
}

#[derive(Debug, Serialize, Deserialize)]
enum ToController {
    Admitted(ActivationId),
    Rejected { id: ActivationId, error: DispatchError },
    Completed(Box<Activation>),
}

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

    /// Connects now (not at the first dispatch), so that the records the invoker kept for
    /// this controller's previous run arrive: called at start when that run left pending
    /// activations. A connection starts a socket-activated invoker.
    pub async fn collect_kept_records(&self) {
        if let Err(e) = self.connection().await {
            tracing::warn!(error = %e, "cannot collect the records the invoker kept");
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
                        // A record the invoker kept from a connection that died.
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
                        fallback.failure_record("the invoker lost the activation before it ended")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActivationResponse;

    /// Completes every activation with a success record echoing its params; refuses the
    /// activation named "full" as the real invoker does when its queue is full.
    struct Echo;

    impl Dispatcher for Echo {
        fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_> {
            Box::pin(async move {
                if msg.action.name.as_str() == "full" {
                    return Err(DispatchError::Overloaded("queue full".into()));
                }
                let (tx, rx) = oneshot::channel();
                let mut rec = msg.failure_record("unused");
                rec.response =
                    ActivationResponse::success(serde_json::Value::Object(msg.params.clone()));
                let _ = tx.send(rec);
                Ok(rx)
            })
        }

        fn invokers(&self) -> Vec<InvokerView> {
            vec![InvokerView::up(0)]
        }
    }

    fn message(name: &str) -> ActivationMessage {
        let params = serde_json::json!({"n": name}).as_object().unwrap().clone();
        ActivationMessage { params, ..ActivationMessage::for_test("guest", name, 1) }
    }

    #[tokio::test]
    async fn activations_cross_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoker.sock");
        let listener = bind(&path).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(serve(listener, Arc::new(Echo), shutdown));
        let bus = UnixBus::new(&path);
        let mut waits = Vec::new();
        for i in 0..50 {
            let m = message(&format!("a{i}"));
            let id = m.activation_id;
            waits.push((id, bus.dispatch(m).await.unwrap()));
        }
        for (id, w) in waits {
            let rec = w.await.unwrap();
            assert_eq!(rec.activation_id, id);
            assert!(rec.response.success);
        }
        let refused = bus.dispatch(message("full")).await.unwrap_err();
        assert_eq!(refused, DispatchError::Overloaded("queue full".into()));
        trigger.fire();
        server.await.unwrap();
    }

    /// Regression: after the invoker restarted, the cached connection looked open (its writer
    /// task was still waiting) and the next dispatch hung for the admission timeout.
    #[tokio::test]
    async fn reconnects_after_the_invoker_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoker.sock");
        let bus = UnixBus::new(&path);
        for round in 0..3 {
            let (trigger, shutdown) = crate::shutdown::channel();
            let server = tokio::spawn(serve(bind(&path).unwrap(), Arc::new(Echo), shutdown));
            let done = tokio::time::timeout(
                Duration::from_secs(2),
                bus.dispatch(message(&format!("r{round}"))),
            )
            .await
            .expect("dispatch after a restart must not wait for the admission timeout")
            .unwrap();
            assert!(done.await.unwrap().response.success);
            trigger.fire();
            server.await.unwrap();
            // Let the connection's tasks see the hang-up (or not: both must work).
            tokio::time::sleep(Duration::from_millis(if round == 1 { 0 } else { 20 })).await;
        }
    }

    #[tokio::test]
    async fn unreachable_invoker_is_unavailable() {
        let bus = UnixBus::new("/nonexistent/hearth/invoker.sock");
        let err = bus.dispatch(message("x")).await.unwrap_err();
        assert!(matches!(err, DispatchError::Unavailable(m) if m.contains("not reachable")));
    }
}
