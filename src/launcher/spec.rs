//! What the host asks of a launcher: the init that loads an action and the input of one run.
//!
//! They belong to the launcher's contract (the action-loop [`protocol`](super::protocol)
//! encodes them), not to how a container is made: the container driver takes them and sends
//! them, so `container` depends on this module and never the other way round.

use std::time::Duration;

use serde_json::{Map, Value};

/// The action-specific part of starting a container: sent once, after the code was installed
/// into the container's code dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSpec {
    /// `namespace/name`, for the launcher's error messages.
    pub action: String,
    /// The function to call (`main` unless the action says otherwise).
    pub entry_point: String,
    /// True when the code dir holds an unpacked zip rather than a single source file.
    pub binary: bool,
}

/// One activation's input.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// The merged parameters, passed to `main`.
    pub params: Map<String, Value>,
    /// `__OW_*` values (without the prefix: `ACTIVATION_ID`, `NAMESPACE`, `ACTION_NAME`,
    /// `DEADLINE`, ...), set in the action's environment for this run.
    pub env: Vec<(String, String)>,
    /// After this, the container is killed and the run ends in a timeout.
    pub timeout: Duration,
    /// Log bytes kept for this run; past it the logs end with a truncation note.
    pub log_limit: usize,
    /// Largest result accepted, in bytes of JSON.
    pub result_limit: usize,
}
