//! Actions as stored and as exchanged over the API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActionLimits, EntityName, ExecMeta, FullyQualifiedName};

/// One `{"key": ..., "value": ...}` pair: OpenWhisk's shape for parameters and annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> Self {
        Self { key: key.into(), value: value.into() }
    }
}

/// An action without its code: everything the critical path needs, small enough to decode in
/// a microsecond. The code lives in its own LMDB database so that a lookup never copies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionMeta {
    pub namespace: EntityName,
    pub name: EntityName,
    /// OpenWhisk's semantic version, `0.0.<revision>`.
    pub version: String,
    /// Bumped on every update; warm containers are reused only for the same revision.
    pub revision: u64,
    pub exec: ExecMeta,
    pub limits: ActionLimits,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub publish: bool,
    /// Milliseconds since the epoch of the last change.
    pub updated: u64,
    /// Size of the code in bytes (as stored, after base64 decoding of binary code).
    pub code_size: u64,
}

impl ActionMeta {
    pub fn fqn(&self) -> FullyQualifiedName {
        FullyQualifiedName::new(self.namespace.clone(), self.name.clone())
    }

    /// The version string for a revision.
    pub fn version_for(revision: u64) -> String {
        format!("0.0.{revision}")
    }
}
