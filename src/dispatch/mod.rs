//! The contract between whoever accepts an activation and whoever runs it.
//!
//! The controller hands an [`ActivationMessage`] to a [`Dispatcher`] and gets back a
//! [`Completion`]: admission is immediate (an invoker that is full says so at once, so the
//! caller gets 429/503 rather than a timeout), the record arrives later. The invoker implements
//! [`Dispatcher`] (standalone calls it directly) and every bus both implements it (the
//! controller's side) and drives one (the invoker's side), so this module sits below both:
//! it must never know how a message travels, and owns no I/O.

mod record;

pub use record::Timing;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::balancer::{Health, InvokerId};
use crate::model::{
    ActionLimits, Activation, ActivationId, EntityName, ExecMeta, FullyQualifiedName, KeyValue,
};

/// One accepted invoke, as sent to an invoker. It never carries the action's code (up to
/// 48 MB): the invoker reads the code for `action`@`revision` from its own store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationMessage {
    pub activation_id: ActivationId,
    pub action: FullyQualifiedName,
    pub revision: u64,
    pub version: String,
    pub exec: ExecMeta,
    pub limits: ActionLimits,
    /// The caller's namespace: the activation record belongs to it.
    pub subject: EntityName,
    /// The action's default parameters overlaid with the request's.
    pub params: Map<String, Value>,
    /// Milliseconds since the epoch when the controller accepted the request (for `waitTime`).
    pub received_at_ms: u64,
    pub publish: bool,
    /// The activation that caused this one (a trigger's or a sequence's); its record carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ActivationId>,
    /// Annotations the controller decided for this activation's record beyond those every
    /// record has: `binding` (`ns/binding`) when the action was reached through a package
    /// binding, as OpenWhisk's invoker adds it from its message, and the invoke's own
    /// (`InvokeOptions::annotations`). Carried in the message, not added by whoever waits
    /// for the record, so that every record of the activation has them however it ends:
    /// the invoker's, a lost record built by a bus, one that arrives unclaimed after a
    /// restart. Absent on the wire when empty, so messages of either version decode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<KeyValue>,
}

/// Why an activation was not accepted. Nothing was recorded: the caller gets an error status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DispatchError {
    /// The pool's queue is full: 429 to the caller.
    #[error("{0}")]
    Overloaded(String),
    /// No invoker can take work (none running, shutting down): 503 to the caller.
    #[error("{0}")]
    Unavailable(String),
}

/// Where the finished record arrives. The sender is dropped only after it sent a record, so a
/// closed channel is itself an internal error that the controller records.
pub type Completion = oneshot::Receiver<Activation>;

/// What [`Dispatcher::dispatch`] returns: boxed so the trait stays object-safe.
pub type DispatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Completion, DispatchError>> + Send + 'a>>;

/// Something that takes activations: the in-process invoker (standalone), a client of the
/// invoker's Unix socket, or a Kafka producer. Object-safe so the controller holds an
/// `Arc<dyn Dispatcher>` chosen at start-up; the boxed future costs one small allocation per
/// invoke.
pub trait Dispatcher: Send + Sync + 'static {
    /// Admits the activation or refuses it at once.
    fn dispatch(&self, msg: ActivationMessage) -> DispatchFuture<'_>;

    /// The invokers behind this dispatcher and their health as it sees them now (the
    /// controller's `GET /invokers`). Cheap and side-effect free: never starts an invoker.
    fn invokers(&self) -> Vec<InvokerView>;

    /// How many live controllers share the invokers behind this dispatcher, this one
    /// included: each enforces its share of a namespace's limits (`controller::admission`).
    /// One, unless a cluster's bus knows of others.
    fn controllers(&self) -> usize {
        1
    }
}

/// One invoker as a dispatcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokerView {
    pub id: InvokerId,
    pub health: Health,
}

impl InvokerView {
    /// Invoker `id`, up.
    pub fn up(id: u32) -> Self {
        Self { id: InvokerId(id), health: Health::Up }
    }
}
