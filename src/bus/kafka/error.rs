//! Errors of the Kafka bus, each naming the brokers, the topic and the activation involved.

use crate::model::ActivationId;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A client (producer, consumer, admin) could not be created: a bad setting, not an outage
    /// (librdkafka connects lazily).
    #[error("cannot create the Kafka {role} for brokers {brokers}: {source}")]
    Client {
        role: &'static str,
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A topic could not be created (or checked) on the brokers.
    #[error("cannot create topic {topic} on brokers {brokers}: {reason}")]
    CreateTopic { topic: String, brokers: String, reason: String },
    /// The brokers did not acknowledge a message in time.
    #[error("brokers {brokers} did not accept {what} for topic {topic}: {source}")]
    Produce {
        what: String,
        topic: String,
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// Subscribing or assigning a consumer failed.
    #[error("cannot consume topic {topic} from brokers {brokers}: {source}")]
    Consume {
        topic: String,
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A message on a hearth topic did not decode: another version or another producer.
    #[error("undecodable message at {topic}/{partition}@{offset}: {source}")]
    Decode {
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: serde_json::Error,
    },
    /// An activation could not be encoded (cannot happen with the model's types; kept typed
    /// rather than unwrapped).
    #[error("cannot encode activation {id}: {source}")]
    Encode {
        id: ActivationId,
        #[source]
        source: serde_json::Error,
    },
    /// A controller id that cannot be part of a topic name.
    #[error("invalid controller id {0:?}: use 1-100 characters among a-z A-Z 0-9 . _ -")]
    BadControllerId(String),
}

impl KafkaError {
    /// The message is for a topic the brokers do not have (a restarted broker with memory
    /// storage, or an invoker that never started): re-creating the topic may help.
    pub fn is_unknown_topic(&self) -> bool {
        let source = match self {
            KafkaError::Produce { source, .. } | KafkaError::Consume { source, .. } => source,
            _ => return false,
        };
        is_unknown_topic(source)
    }
}

/// True when `e` says the topic or partition does not exist (locally or at the broker).
pub(crate) fn is_unknown_topic(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition)
    )
}
