//! The invoker: a pool of runc containers (cold, prewarmed, warm) that runs activations.

use crate::model::FullyQualifiedName;

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
