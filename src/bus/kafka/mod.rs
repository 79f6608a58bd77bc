//! The Kafka bus: controllers and invokers on several hosts.
//!
//! This module owns the Kafka side of the controller/invoker seam: topic names and creation,
//! client settings tuned for latency, the controller's [`KafkaBus`] (a [`Dispatcher`] that
//! schedules with the [`balancer`](crate::balancer) and produces to the chosen invoker's topic)
//! and the invoker's [`serve_invoker`] loop. It carries the same [`ActivationMessage`]s and
//! [`Activation`](crate::model::Activation) records as the Unix-socket bus and keeps the same
//! guarantee: every admitted activation ends with a record, never silently lost. It never
//! carries action code (the message has none) and never talks to the store.
//!
//! ```text
//! controller C --ActivationEnvelope--> hearth.invoker.<N>    (one per invoker)
//! invoker N    --Activation----------> hearth.completed.<C>  (one per controller)
//! invoker N    --Ping (every 1 s)----> hearth.health         (every controller reads all)
//! controller   --entity or tombstone-> hearth.entities       (compacted; every host follows)
//! controller   --activation record---> hearth.records        (time retention; every
//!                                                              controller follows)
//! ```
//!
//! Admission is the broker's acknowledgement of the activation (acks=1). See docs/KAFKA.md for
//! the delivery semantics (at most once per activation, failures recorded) and the settings.
//!
//! [`Dispatcher`]: crate::dispatch::Dispatcher
//! [`ActivationMessage`]: crate::dispatch::ActivationMessage

mod attach;
mod claims;
mod client;
mod controller;
mod entities;
mod error;
mod gate;
mod invoker;
pub mod probe;
mod publisher;
mod records;
mod topics;
mod wire;

pub use claims::{ClaimLog, CLAIMS_TOPIC};
pub use client::{consumer_settings, producer_settings, Fetch};
pub use controller::{KafkaBus, KafkaConfig};
pub use entities::{
    follow_entities, mark, EntityLog, EntityRecord, EntitySink, Position, ENTITY_TOPIC,
    MAX_ENTITY_BYTES, REVISION_HEADER,
};
pub use error::KafkaError;
pub use gate::{RevisionGate, RevisionWait, Revisions, REVISION_WAIT};
pub use invoker::{serve_invoker, KafkaInvokerConfig};
pub use publisher::{
    FeedTopic, Outbox, OutboxEntry, PublishBatch, Published, Publisher, PUBLISH_WAIT,
};
pub use records::{
    follow_records, RecordLog, RecordMessage, RecordSink, MAX_RECORD_BYTES, RECORD_TOPIC,
};
pub use topics::{completion_topic, ensure_topics, invoker_topic, valid_client_id, HEALTH_TOPIC};
pub use wire::ActivationEnvelope;
