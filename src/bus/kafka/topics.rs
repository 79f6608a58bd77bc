//! The hearth topics and their creation. The brokers hearth is tested against do not create
//! topics on first use (and a production cluster should not), so every process creates the
//! topics it reads from, and re-creates them when a broker lost them (memory storage restarted).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::error::KafkaError;
use crate::balancer::InvokerId;

/// Every invoker pings here; every controller reads all of it.
pub const HEALTH_TOPIC: &str = "hearth.health";

/// How long topic creation may take before the caller retries later.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Activations for one invoker.
pub fn invoker_topic(id: InvokerId) -> String {
    format!("hearth.invoker.{}", id.0)
}

/// Completion records for one controller.
pub fn completion_topic(controller_id: &str) -> String {
    format!("hearth.completed.{controller_id}")
}

/// A controller id is part of a topic name: Kafka allows `[a-zA-Z0-9._-]`, at most 249
/// characters; hearth keeps ids short.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates `topics` (one partition each: one consumer per topic, and ordering does not matter
/// more than latency) unless they exist.
pub async fn ensure_topics<C: ClientContext>(
    admin: &AdminClient<C>,
    brokers: &str,
    topics: &[&str],
    replication: i32,
) -> Result<(), KafkaError> {
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(replication))).collect();
    let opts = AdminOptions::new().request_timeout(Some(CREATE_TIMEOUT));
    let results = admin.create_topics(&new, &opts).await.map_err(|e| KafkaError::CreateTopic {
        topic: topics.join(","),
        brokers: brokers.to_string(),
        reason: e.to_string(),
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    brokers: brokers.to_string(),
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Creates one topic with its own settings (compaction, retention, record size) unless it
/// exists.
pub(crate) async fn ensure_configured<C: ClientContext>(
    admin: &AdminClient<C>,
    brokers: &str,
    topic: &NewTopic<'_>,
) -> Result<(), KafkaError> {
    let opts = AdminOptions::new().request_timeout(Some(CREATE_TIMEOUT));
    let err = |reason: String| KafkaError::CreateTopic {
        topic: topic.name.to_string(),
        brokers: brokers.to_string(),
        reason,
    };
    let results = admin.create_topics([topic], &opts).await.map_err(|e| err(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(invoker_topic(InvokerId(7)), "hearth.invoker.7");
        assert_eq!(completion_topic("c0"), "hearth.completed.c0");
        assert!(valid_client_id("ctl-1.host_a"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a/b"));
        assert!(!valid_client_id(&"x".repeat(101)));
    }
}
