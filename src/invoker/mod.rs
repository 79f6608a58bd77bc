//! The invoker: a pool of containers (cold, prewarmed, warm) that runs activations.
//!
//! The path of one activation reads top to bottom: [`Invoker::submit`] admits it
//! (`service.rs`), the pool places it (`pool/`, with `budget.rs` for memory), the activation
//! task carries it out (`activation.rs`: install code, init, run) and builds its record
//! (`record.rs`); each container moves through the state machine in `state.rs`. Around it,
//! `prewarm.rs` keeps stem cells ready (evicting warm containers left idle after a burst),
//! `reaper.rs` removes idle containers, and `events.rs` reports the pool's decisions.
//!
//! The pool is generic over [`crate::container::ContainerFactory`], so its logic is tested
//! with scripted fake containers and runs runc in production. It knows nothing of HTTP or the
//! store's layout: code arrives through [`CodeSource`] and is written by a [`CodeInstaller`].

mod activation;
mod budget;
pub(crate) mod config;
mod events;
mod fair_queue;
pub mod logsink;
mod pool;
mod prewarm;
mod reaper;
mod record;
mod refill_backoff;
pub mod restore;
mod service;
mod state;
mod stats;

#[cfg(test)]
mod live_tests;

use std::path::Path;
use std::sync::Arc;

pub use config::{InvokerConfig, PoolConfigError, PrewarmConfig};
pub use events::{EvictedFor, PoolEvent, Start, EVENT_BACKLOG};
pub use service::{Invoker, Restored, StartError, StartOptions, StopPolicy, CONTAINER_ID_PREFIX};
pub use state::{State, StateError, WarmKey};
pub use stats::PoolStats;

use crate::model::{FullyQualifiedName, Runtime};

/// Writes an action's code into a container's code directory: `(dir, runtime, code, binary)`.
/// In production this is `crate::launcher::code::install`; a closure keeps the pool independent
/// of the launchers' file layout (and lets tests count installs).
pub type CodeInstaller =
    Arc<dyn Fn(&Path, Runtime, &[u8], bool) -> std::io::Result<()> + Send + Sync>;

/// Why an action's code could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("action {0} does not exist")]
    NotFound(String),
    #[error("action {action} is at revision {current}, not {wanted}: it was updated while the activation waited")]
    Stale { action: String, wanted: u64, current: u64 },
    #[error("reading the code of {action}: {message}")]
    Read { action: String, message: String },
    #[error("installing the code into {dir}: {source}")]
    Install { dir: String, source: std::io::Error },
}

/// Where the invoker gets action code from: the LMDB store (the controller's in standalone, the
/// invoker's own cache in split deployments). The code is handed to `install` as a slice
/// borrowed from the memory map, so it is copied once, into the container's code directory.
pub trait CodeSource: Send + Sync + 'static {
    /// Calls `install` with the code of `action` at `revision`, inside one read transaction.
    fn with_code(
        &self,
        action: &FullyQualifiedName,
        revision: u64,
        install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
    ) -> Result<(), CodeError>;
}
