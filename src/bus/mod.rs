//! The seam between the controller and the invoker: how the [`crate::dispatch`] contract
//! travels between processes and hosts.
//!
//! The in-process bus (standalone) is no bus at all: the controller calls the invoker's
//! [`Dispatcher`](crate::dispatch::Dispatcher) directly. The Unix-socket bus (`unix`) and the
//! Kafka bus (`kafka`, feature `kafka`) carry the same messages between processes and hosts.

pub mod frame;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod unix;

use crate::model::Activation;

/// Takes *unclaimed* records: those of activations no request waits for any more, which a
/// controller acknowledged before it restarted and which ended while it was away (the daemon
/// writes them over the pending stub or the placeholder its restart left;
/// `Store::record_unclaimed`).
pub type Unclaimed = std::sync::Arc<dyn Fn(Activation) + Send + Sync>;

/// Where a dispatcher hands the records nobody waits for: installed once by the daemon
/// (`on_unclaimed` of each bus), empty (records dropped) until then.
#[derive(Default)]
pub struct UnclaimedSink(std::sync::OnceLock<Unclaimed>);

impl std::fmt::Debug for UnclaimedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "UnclaimedSink(installed)"
        } else {
            "UnclaimedSink(none)"
        })
    }
}

impl UnclaimedSink {
    /// Installs `sink`; a second call is ignored (and logged).
    pub fn install(&self, sink: Unclaimed) {
        if self.0.set(sink).is_err() {
            tracing::warn!("an unclaimed-record sink was already installed; keeping the first");
        }
    }

    /// Hands over a record of an activation no request waits for.
    pub fn hand(&self, record: Activation) {
        tracing::debug!(activation = %record.activation_id, "a record nobody waits for");
        if let Some(f) = self.0.get() {
            f(record);
        }
    }
}
