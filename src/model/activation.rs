//! Activation records in OpenWhisk's shape.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::KeyValue;

/// 32 lowercase hex digits, as OpenWhisk's activation ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivationId([u8; 16]);

/// Not an activation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an activation id (32 hexadecimal digits)")]
pub struct ActivationIdError(pub String);

impl ActivationId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn parse(s: &str) -> Result<Self, ActivationIdError> {
        let err = || ActivationIdError(s.chars().take(64).collect());
        if s.len() != 32 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| err())?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }
}

impl fmt::Display for ActivationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for ActivationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActivationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ActivationId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How an activation ended; the status strings and codes are OpenWhisk's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivationStatus {
    #[serde(rename = "success")]
    Success,
    /// `main` returned an `error` field or threw.
    #[serde(rename = "application error")]
    ApplicationError,
    /// The action broke its contract: timeout, crash, non-JSON result, out of memory.
    #[serde(rename = "action developer error")]
    DeveloperError,
    /// hearth failed.
    #[serde(rename = "whisk internal error")]
    InternalError,
}

impl ActivationStatus {
    pub fn code(&self) -> u8 {
        match self {
            Self::Success => 0,
            Self::ApplicationError => 1,
            Self::DeveloperError => 2,
            Self::InternalError => 3,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ApplicationError => "application error",
            Self::DeveloperError => "action developer error",
            Self::InternalError => "whisk internal error",
        }
    }
}

/// The `response` object of an activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationResponse {
    pub status: ActivationStatus,
    #[serde(rename = "statusCode")]
    pub status_code: u8,
    pub success: bool,
    pub result: Value,
}

impl ActivationResponse {
    pub fn success(result: Value) -> Self {
        Self::new(ActivationStatus::Success, result)
    }

    /// A failed response whose result is `{"error": message}`, as OpenWhisk reports errors.
    pub fn error(status: ActivationStatus, message: impl Into<String>) -> Self {
        Self::new(status, serde_json::json!({ "error": message.into() }))
    }

    pub fn new(status: ActivationStatus, result: Value) -> Self {
        Self {
            status,
            status_code: status.code(),
            success: status == ActivationStatus::Success,
            result,
        }
    }
}

/// One activation record, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// The namespace of the invoker (the caller), which owns the record.
    pub namespace: String,
    pub name: String,
    pub subject: String,
    #[serde(rename = "activationId")]
    pub activation_id: ActivationId,
    /// Milliseconds since the epoch.
    pub start: u64,
    pub end: u64,
    pub duration: u64,
    #[serde(rename = "statusCode")]
    pub status_code: u8,
    pub response: ActivationResponse,
    #[serde(default)]
    pub logs: Vec<String>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    pub version: String,
    #[serde(default)]
    pub publish: bool,
    /// The activation that caused this one: a trigger's activation for the actions its rules
    /// ran, a sequence's for its components (OpenWhisk's `cause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ActivationId>,
}

/// The annotation marking the failure record of an activation that was not run because its
/// action's revision was superseded (updated, or a concurrent update on another controller
/// won) before it ran. It is the entities moving on, not the invoker failing: a Kafka invoker
/// does not report itself unhealthy for it (bus/kafka/invoker.rs).
pub const SUPERSEDED: &str = "superseded";

impl Activation {
    /// The value of an annotation, if present.
    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
    }

    /// Marks this (failure) record as superseded; see [`SUPERSEDED`].
    pub fn mark_superseded(&mut self) {
        if self.annotation(SUPERSEDED).is_none() {
            self.annotations.push(KeyValue::new(SUPERSEDED, true));
        }
    }

    /// Whether this record was marked with [`SUPERSEDED`].
    pub fn is_superseded(&self) -> bool {
        self.annotation(SUPERSEDED).is_some()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips() {
        let id = ActivationId::generate();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(ActivationId::parse(&s).unwrap(), id);
        assert!(ActivationId::parse("xyz").is_err());
        assert!(ActivationId::parse(&"g".repeat(32)).is_err());
    }

    #[test]
    fn status_serializes_as_openwhisk() {
        let r = ActivationResponse::error(ActivationStatus::DeveloperError, "boom");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "action developer error");
        assert_eq!(v["statusCode"], 2);
        assert_eq!(v["success"], false);
        assert_eq!(v["result"]["error"], "boom");
    }
}
