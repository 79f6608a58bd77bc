//! The HTTP API: OpenWhisk's REST surface under `/api/v1`, on hyper 1.
//!
//! Owns: the accept loop (bounded connections, graceful stop), routing, HTTP basic auth, body
//! limits, and OpenWhisk's response and error shapes. One file per resource.
//! Must never: hold entity logic (that is the controller's), read an unbounded body, or answer
//! anything but JSON.

mod actions;
mod activations;
mod body;
mod info;
mod invokers;
mod namespaces;
mod packages;
mod peer;
mod query;
mod response;
mod router;
mod rules;
mod throttle;
mod triggers;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use actions::MAX_PUT_BODY;
pub use peer::PeerAddr;
pub use response::ApiError;
pub use throttle::{AnonymousLimit, AuthThrottle, Subject};

use crate::controller::Controller;
use crate::shutdown::Shutdown;

/// Connections served at once. Each costs a task and buffers (a few KB idle, up to a request
/// body while one is read); past this the accept loop waits, so a flood of idle clients
/// cannot exhaust file descriptors (the unit's default soft limit is 1024, and LMDB and the
/// invoker need some too).
pub const MAX_CONNECTIONS: usize = 768;

/// A client must send its request headers within this, so idle half-open connections do not
/// hold a permit forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// On shutdown, in-flight requests get this long to finish (a blocking invoke may wait up to
/// 60 s, but a stopping service should not hang that long) before the server returns.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server stopped before shutdown was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("accepting a connection: {0}")]
    Accept(std::io::Error),
}

/// Serves the API on a bound TCP listener until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
    }
    serve_with(|| async { listener.accept().await.map(|(s, _)| s) }, controller, shutdown).await
}

/// Accept errors that concern one connection or a passing shortage; the loop goes on.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
}

/// The accept loop over any stream source (TCP here; a Unix listener or a socket-activated
/// fd later): a permit is taken before `accept`, moved into the connection task and released
/// when the connection ends.
pub async fn serve_with<A, F, IO>(
    accept: A,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), ServeError>
where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + PeerAddr + Unpin + Send + 'static,
{
    serve_throttled(accept, controller, shutdown, Arc::new(AuthThrottle::default())).await
}

/// [`serve_with`] with a given authentication throttle (tests use a short cool-down).
pub async fn serve_throttled<A, F, IO>(
    mut accept: A,
    controller: Arc<Controller>,
    mut shutdown: Shutdown,
    throttle: Arc<AuthThrottle>,
) -> Result<(), ServeError>
where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + PeerAddr + Unpin + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let result = loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break Ok(()),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let io = tokio::select! {
            _ = shutdown.wait() => break Ok(()),
            r = accept() => match r {
                Ok(io) => io,
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => break Err(ServeError::Accept(e)),
            },
        };
        let controller = controller.clone();
        let throttle = throttle.clone();
        let peer = io.peer_ip();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let c = controller.clone();
                let t = throttle.clone();
                async move { Ok::<_, std::convert::Infallible>(router::handle(req, c, &t, peer).await) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = conn_shutdown.wait() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error while draining");
                    }
                }
            }
        });
    };
    // Every connection task holds a permit: holding all of them means all have ended.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after the drain timeout; stopping anyway");
    }
    tracing::info!("API stopped");
    result
}
