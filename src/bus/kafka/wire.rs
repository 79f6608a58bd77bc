//! What travels on the hearth topics, as JSON (small, debuggable with any Kafka tool, and the
//! model types already serialize): activation envelopes, completion records, pings.

use serde::{Deserialize, Serialize};

use crate::bus::ActivationMessage;

/// An activation on an invoker's topic, with the controller that waits for it: the invoker
/// produces the record to `hearth.completed.<controller>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationEnvelope {
    pub controller: String,
    pub msg: ActivationMessage,
}
