//! What travels on the hearth topics, as JSON (small, debuggable with any Kafka tool, and the
//! model types already serialize): activation envelopes, completion records, pings.

use rdkafka::message::{BorrowedMessage, Message};
use serde::{Deserialize, Serialize};

use super::error::KafkaError;

use crate::dispatch::ActivationMessage;

/// An activation on an invoker's topic, with the controller that waits for it: the invoker
/// produces the record to `hearth.completed.<controller>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationEnvelope {
    pub controller: String,
    pub msg: ActivationMessage,
}

/// Decodes one hearth message; an undecodable one (another version, another producer) is
/// logged and skipped.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    m: &BorrowedMessage<'_>,
    what: &str,
) -> Option<T> {
    match serde_json::from_slice::<T>(m.payload()?) {
        Ok(v) => Some(v),
        Err(source) => {
            let e = KafkaError::Decode {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                source,
            };
            tracing::warn!(error = %e, "skipping a {what}");
            None
        }
    }
}
