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
//!
//! [`client`] is the controller's side ([`UnixBus`]), [`server`] the invoker's ([`serve`],
//! [`bind`]); the frames they exchange are defined here, once.

mod client;
mod server;

pub use client::UnixBus;
pub use server::{bind, serve};

use serde::{Deserialize, Serialize};

use crate::dispatch::{ActivationMessage, DispatchError};
use crate::model::{Activation, ActivationId};

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::dispatch::Dispatcher;
    use crate::testing::{FakeInvoker, FakeMode};

    fn message(name: &str) -> ActivationMessage {
        let params = serde_json::json!({"n": name}).as_object().unwrap().clone();
        ActivationMessage { params, ..crate::testing::message("guest", name, 1) }
    }

    #[tokio::test]
    async fn activations_cross_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoker.sock");
        let listener = bind(&path).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let invoker = Arc::new(FakeInvoker::new());
        let server = tokio::spawn(serve(listener, invoker.clone(), shutdown));
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
        invoker.set(FakeMode::Overloaded);
        let refused = bus.dispatch(message("full")).await.unwrap_err();
        assert!(matches!(refused, DispatchError::Overloaded(_)), "{refused:?}");
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
            let server =
                tokio::spawn(serve(bind(&path).unwrap(), Arc::new(FakeInvoker::new()), shutdown));
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
