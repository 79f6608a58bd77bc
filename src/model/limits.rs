//! Action limits and their allowed ranges (OpenWhisk's defaults).

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const TIMEOUT_MIN_MS: u64 = 100;
pub const TIMEOUT_MAX_MS: u64 = 300_000;
pub const TIMEOUT_DEFAULT_MS: u64 = 60_000;
pub const MEMORY_MIN_MB: u64 = 128;
pub const MEMORY_MAX_MB: u64 = 512;
pub const MEMORY_DEFAULT_MB: u64 = 256;
pub const LOGS_MIN_MB: u64 = 0;
pub const LOGS_MAX_MB: u64 = 10;
pub const LOGS_DEFAULT_MB: u64 = 10;
pub const CONCURRENCY_MIN: u64 = 1;
/// OpenWhisk's largest `limits.concurrency`; only Node kinds take more than 1
/// ([`ActionLimits::validate_for_kind`]).
pub const CONCURRENCY_MAX: u64 = 500;
/// Largest invoke payload (parameters) and largest result, as in OpenWhisk.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest action code, as in OpenWhisk (48 MB after base64 decoding).
pub const MAX_CODE_BYTES: usize = 48 * 1024 * 1024;

/// The limits of one action; every field has OpenWhisk's default when omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionLimits {
    /// Milliseconds the action may run before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Megabytes of memory for the container (cgroup limit).
    #[serde(default = "default_memory")]
    pub memory: u64,
    /// Megabytes of log output kept per activation.
    #[serde(default = "default_logs")]
    pub logs: u64,
    /// Activations one container runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u64,
}

fn default_timeout() -> u64 {
    TIMEOUT_DEFAULT_MS
}
fn default_memory() -> u64 {
    MEMORY_DEFAULT_MB
}
fn default_logs() -> u64 {
    LOGS_DEFAULT_MB
}
fn default_concurrency() -> u64 {
    1
}

impl Default for ActionLimits {
    fn default() -> Self {
        Self {
            timeout: TIMEOUT_DEFAULT_MS,
            memory: MEMORY_DEFAULT_MB,
            logs: LOGS_DEFAULT_MB,
            concurrency: 1,
        }
    }
}

/// A limit the action may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Outside the range every action has.
    #[error("{name} {value} {unit} is outside the allowed range {min}..={max} {unit}")]
    Range { name: &'static str, value: u64, min: u64, max: u64, unit: &'static str },
    /// More than one activation per container for a kind whose launcher runs one at a time
    /// (only the Node launcher has a concurrent mode).
    #[error(
        "concurrency {value} is not allowed for kind {kind}: it serves one activation per \
         container (only nodejs kinds take a concurrency above 1, up to {CONCURRENCY_MAX})"
    )]
    OnePerContainer { kind: String, value: u64 },
}

impl LimitError {
    /// The limit at fault.
    pub fn name(&self) -> &'static str {
        match self {
            LimitError::Range { name, .. } => name,
            LimitError::OnePerContainer { .. } => "concurrency",
        }
    }
}

/// Whether actions of `kind` may run several activations in one container: the Node kinds,
/// whose launcher has a concurrent mode.
pub fn kind_serves_many(kind: &str) -> bool {
    kind == "nodejs" || kind.starts_with("nodejs:")
}

impl ActionLimits {
    /// Checks every limit against its range.
    pub fn validate(&self) -> Result<(), LimitError> {
        let check = |name, value, min, max, unit| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(LimitError::Range { name, value, min, max, unit })
            }
        };
        check("timeout", self.timeout, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, "ms")?;
        check("memory", self.memory, MEMORY_MIN_MB, MEMORY_MAX_MB, "MB")?;
        check("logs", self.logs, LOGS_MIN_MB, LOGS_MAX_MB, "MB")?;
        check("concurrency", self.concurrency, CONCURRENCY_MIN, CONCURRENCY_MAX, "")?;
        Ok(())
    }

    /// [`Self::validate`], then the concurrency against what the action's `kind` can serve
    /// (`sequence` and every non-Node kind keep 1).
    pub fn validate_for_kind(&self, kind: &str) -> Result<(), LimitError> {
        self.validate()?;
        if self.concurrency > 1 && !kind_serves_many(kind) {
            return Err(LimitError::OnePerContainer {
                kind: kind.to_owned(),
                value: self.concurrency,
            });
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout)
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory * 1024 * 1024
    }

    pub fn log_bytes(&self) -> usize {
        usize::try_from(self.logs * 1024 * 1024).unwrap_or(usize::MAX)
    }
}

/// Limits as sent in an update: omitted fields keep the stored value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    pub timeout: Option<u64>,
    pub memory: Option<u64>,
    pub logs: Option<u64>,
    pub concurrency: Option<u64>,
}

impl LimitsPatch {
    /// Applies the patch on top of `base`.
    pub fn apply(&self, base: ActionLimits) -> ActionLimits {
        ActionLimits {
            timeout: self.timeout.unwrap_or(base.timeout),
            memory: self.memory.unwrap_or(base.memory),
            logs: self.logs.unwrap_or(base.logs),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(ActionLimits::default().validate().is_ok());
    }

    #[test]
    fn ranges_are_enforced() {
        let mut l = ActionLimits { timeout: 99, ..Default::default() };
        assert_eq!(l.validate().unwrap_err().name(), "timeout");
        l.timeout = 300_001;
        assert!(l.validate().is_err());
        l = ActionLimits { memory: 513, ..Default::default() };
        assert_eq!(l.validate().unwrap_err().name(), "memory");
        l = ActionLimits { memory: 128, timeout: 100, ..Default::default() };
        assert!(l.validate().is_ok());
    }

    #[test]
    fn concurrency_depends_on_the_kind() {
        let l = ActionLimits { concurrency: 200, ..Default::default() };
        assert!(l.validate_for_kind("nodejs:20").is_ok());
        assert!(l.validate_for_kind("nodejs").is_ok());
        let e = l.validate_for_kind("python:3").unwrap_err();
        assert!(matches!(e, LimitError::OnePerContainer { .. }));
        assert!(e.to_string().contains("python:3"), "{e}");
        assert!(e.to_string().contains("one activation per container"), "{e}");
        assert!(l.validate_for_kind("blackbox").is_err());
        assert!(l.validate_for_kind("sequence").is_err());
        let over = ActionLimits { concurrency: 501, ..Default::default() };
        assert!(matches!(over.validate_for_kind("nodejs:20"), Err(LimitError::Range { .. })));
        assert!(ActionLimits::default().validate_for_kind("python:3").is_ok());
    }

    #[test]
    fn patch_merges() {
        let p: LimitsPatch = serde_json::from_str(r#"{"timeout": 1000}"#).unwrap();
        let l = p.apply(ActionLimits::default());
        assert_eq!(l.timeout, 1000);
        assert_eq!(l.memory, MEMORY_DEFAULT_MB);
    }
}
