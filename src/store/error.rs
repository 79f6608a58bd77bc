//! The store's error type: every variant names the database and, where there is one, the key.

use std::path::PathBuf;

use crate::model::LimitError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("opening the LMDB environment at {path}: {source}")]
    Open { path: PathBuf, source: heed::Error },
    #[error("LMDB {op} on {db}: {source}")]
    Lmdb { op: &'static str, db: &'static str, source: heed::Error },
    #[error("record {key:?} in {db} does not decode: {message}")]
    Corrupt { db: &'static str, key: String, message: String },
    #[error("encoding a record for {db} key {key:?}: {source}")]
    Encode { db: &'static str, key: String, source: serde_json::Error },
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(String),
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    #[error("key {0} does not exist")]
    KeyNotFound(String),
    #[error("action {0} already exists (use overwrite to update it)")]
    ActionExists(String),
    #[error("action {0} does not exist")]
    ActionNotFound(String),
    #[error("action {0} has no exec: an action must be created with code")]
    MissingExec(String),
    #[error("action {action}: {source}")]
    InvalidLimits { action: String, source: LimitError },
    #[error("package {0} already exists (use overwrite to update it)")]
    PackageExists(String),
    #[error("package {0} does not exist")]
    PackageNotFound(String),
    /// OpenWhisk's `packageCannotBecomeBinding`.
    #[error("Resource is a package and cannot be converted into a binding.")]
    PackageCannotBecomeBinding(String),
    /// OpenWhisk's message for deleting a package that still holds actions.
    #[error("Package not empty (contains {entities} {}). Set force param or delete package contents.", if *entities == 1 { "entity" } else { "entities" })]
    PackageNotEmpty { package: String, entities: usize },
    /// OpenWhisk's `notAllowedOnBinding`: actions are never written through a binding.
    #[error("Operation not permitted on package binding.")]
    NotAllowedOnBinding(String),
    /// OpenWhisk's `conformanceMessage`: an action and a package share one name space.
    #[error("Resource by this name exists but is not in this collection.")]
    Conformance(String),
    #[error("trigger {0} already exists (use overwrite to update it)")]
    TriggerExists(String),
    /// OpenWhisk's message when a rule names a trigger that does not exist (`/ns/name`).
    #[error("trigger {0} does not exist")]
    TriggerNotFound(String),
    #[error("rule {0} already exists (use overwrite to update it)")]
    RuleExists(String),
    /// OpenWhisk's message for a new rule without a trigger or an action.
    #[error("rule requires a valid trigger and a valid action")]
    RuleIncomplete(String),
    /// OpenWhisk's message for enabling or disabling a rule whose trigger is gone.
    #[error("Only rules with existing triggers can be activated")]
    RuleTriggerMissing(String),
    #[error("starting the sync thread of {path}: {source}")]
    SyncThread { path: PathBuf, source: std::io::Error },
    /// Committed on this host (and queued for publication) but the message bus did not
    /// acknowledge it in time: other hosts see it once the brokers take it.
    #[error("{entity} is stored on this controller but not yet replicated to the cluster (it will be published when the message bus accepts it): {reason}")]
    NotReplicated { entity: String, reason: String },
    #[error("generating a key: {0}")]
    Random(String),
}

/// Shorthand for mapping a heed error with its context.
pub(crate) fn lmdb(op: &'static str, db: &'static str) -> impl FnOnce(heed::Error) -> StoreError {
    move |source| StoreError::Lmdb { op, db, source }
}
