//! The invoker's configuration (`/etc/hearth/invoker.toml`): the memory budget, the prewarm
//! plan, idle and queue limits.
//!
//! Owns parsing defaults and validating them; it never reads files itself (the daemon does, so
//! tests and standalone can build a config in code).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::{
    check_image, ExecMeta, ImageDigest, Kind, Runtime, BLACKBOX, MAX_PAYLOAD_BYTES, MEMORY_MAX_MB,
    MEMORY_MIN_MB,
};

/// What the pool may use and how it behaves. Every field has a default, so an empty file is a
/// valid configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvokerConfig {
    /// All containers' memory limits together, in MB (starting, prewarmed, warm and busy).
    pub memory_budget_mb: u64,
    /// Stem cells kept started ahead of any request.
    pub prewarm: Vec<PrewarmConfig>,
    /// A warm container unused this long is destroyed (OpenWhisk: 10 minutes).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A warm container idle this long may be evicted in the background, least recently used
    /// first, to refill the prewarm plan when the budget is full. Short enough that the stem
    /// cells are back soon after a burst, long enough that a container a running burst is
    /// still cycling through (idle for microseconds between its runs) is never taken.
    #[serde(deserialize_with = "duration")]
    pub evict_idle_after: Duration,
    /// How often the reaper looks for idle containers past `idle_timeout`.
    #[serde(deserialize_with = "duration")]
    pub reap_interval: Duration,
    /// Activations allowed to wait for memory; past it, submits are refused (429).
    pub queue_limit: usize,
    /// Whether action containers may reach the network (otherwise loopback only).
    pub network: bool,
    /// Largest result accepted from an action, in bytes of JSON.
    pub max_result_bytes: usize,
    /// How long shutdown waits for running activations before it kills them.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
}

/// One kind of stem cell: `count` containers of `kind` with `memory_mb` each, or of an image
/// (`image = "repo:tag"` instead of `kind`; exactly one of the two).
///
/// An image is resolved to its digest in the host's image store when the invoker starts
/// ([`PrewarmConfig::digest`]); one that is not there then is logged and left out of the plan
/// (an administrator may import it later; the plan takes it at the next start), so that a
/// missing image never keeps the invoker, and every other action, from starting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPrewarm")]
pub struct PrewarmConfig {
    /// The kind; `blackbox` for an image.
    pub kind: Kind,
    pub memory_mb: u64,
    pub count: usize,
    /// The image's name, for image stem cells.
    pub image: Option<String>,
    /// The image's digest once the invoker resolved it; an image entry without one is not
    /// prewarmed.
    pub digest: Option<ImageDigest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrewarm {
    kind: Option<Kind>,
    image: Option<String>,
    memory_mb: u64,
    count: usize,
}

impl TryFrom<RawPrewarm> for PrewarmConfig {
    type Error = String;

    fn try_from(raw: RawPrewarm) -> Result<Self, String> {
        let kind = match (raw.kind, &raw.image) {
            (Some(kind), None) => kind,
            (None, Some(image)) => {
                let kind = Kind::parse(BLACKBOX).map_err(|e| e.to_string())?;
                check_image(&kind, Some(image)).map_err(|e| e.to_string())?;
                if ExecMeta::is_native_image(image) {
                    return Err(format!(
                        "prewarm image {image:?} is OpenWhisk's skeleton: use kind = \"blackbox\""
                    ));
                }
                kind
            }
            _ => return Err("a prewarm entry names exactly one of kind and image".to_owned()),
        };
        Ok(Self {
            kind,
            memory_mb: raw.memory_mb,
            count: raw.count,
            image: raw.image,
            digest: None,
        })
    }
}

impl PrewarmConfig {
    /// The stem cells' runtime: the kind's, or the resolved image's.
    pub fn runtime(&self) -> Runtime {
        match self.digest {
            Some(d) => Runtime::Image(d),
            None => self.kind.runtime(),
        }
    }

    /// What the entry is called in messages: its kind or its image.
    pub fn label(&self) -> String {
        self.image.clone().unwrap_or_else(|| self.kind.to_string())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    #[error("memory_budget_mb must be at least {MEMORY_MIN_MB} (one smallest container), not {0}")]
    BudgetTooSmall(u64),
    #[error("prewarm {kind}: memory_mb {memory_mb} is outside {MEMORY_MIN_MB}..={MEMORY_MAX_MB}")]
    PrewarmMemory { kind: String, memory_mb: u64 },
    #[error("the prewarm containers need {needed_mb} MB, more than memory_budget_mb {budget_mb}")]
    PrewarmOverBudget { needed_mb: u64, budget_mb: u64 },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
}

impl Default for InvokerConfig {
    fn default() -> Self {
        // Both kinds are in Kind's alias table (the unit test `defaults_are_valid` checks that
        // neither is dropped); filter_map keeps this free of a panic path.
        let prewarm = ["python:3", "nodejs:20"]
            .iter()
            .filter_map(|k| Kind::parse(k).ok())
            .map(|kind| PrewarmConfig { kind, memory_mb: 256, count: 1, image: None, digest: None })
            .collect();
        Self {
            memory_budget_mb: 2048,
            prewarm,
            idle_timeout: Duration::from_secs(600),
            evict_idle_after: Duration::from_millis(100),
            reap_interval: Duration::from_secs(10),
            queue_limit: 256,
            network: false,
            max_result_bytes: MAX_PAYLOAD_BYTES,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl InvokerConfig {
    /// Checks the values against each other; called by [`crate::invoker::Invoker::start`].
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        if self.memory_budget_mb < MEMORY_MIN_MB {
            return Err(PoolConfigError::BudgetTooSmall(self.memory_budget_mb));
        }
        let mut needed_mb = 0u64;
        for p in &self.prewarm {
            if !(MEMORY_MIN_MB..=MEMORY_MAX_MB).contains(&p.memory_mb) {
                return Err(PoolConfigError::PrewarmMemory {
                    kind: p.label(),
                    memory_mb: p.memory_mb,
                });
            }
            needed_mb = needed_mb.saturating_add(p.memory_mb.saturating_mul(p.count as u64));
        }
        if needed_mb > self.memory_budget_mb {
            return Err(PoolConfigError::PrewarmOverBudget {
                needed_mb,
                budget_mb: self.memory_budget_mb,
            });
        }
        if self.reap_interval.is_zero() {
            return Err(PoolConfigError::Zero { field: "reap_interval" });
        }
        if self.idle_timeout.is_zero() {
            return Err(PoolConfigError::Zero { field: "idle_timeout" });
        }
        if self.evict_idle_after.is_zero() {
            return Err(PoolConfigError::Zero { field: "evict_idle_after" });
        }
        if self.max_result_bytes == 0 {
            return Err(PoolConfigError::Zero { field: "max_result_bytes" });
        }
        Ok(())
    }
}

/// Durations are written as humantime strings (`"10m"`, `"500ms"`) or as integer
/// milliseconds, so both `idle_timeout = "10m"` and `idle_timeout = 600000` read naturally.
/// A duration in a configuration file: milliseconds (`250`) or text (`"10m"`, `"7days"`).
/// Shared with the daemon's own settings ([`crate::daemon::config`]).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(s) => humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("duration {s:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = InvokerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.prewarm.len(), 2);
        assert_eq!(c.prewarm[0].runtime(), Runtime::Python);
        assert_eq!(c.prewarm[1].runtime(), Runtime::Nodejs);
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.max_result_bytes, 1024 * 1024);
    }

    #[test]
    fn empty_document_is_the_default() {
        let c: InvokerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, InvokerConfig::default());
    }

    #[test]
    fn durations_parse_as_text_or_millis() {
        let c: InvokerConfig =
            serde_json::from_str(r#"{"idle_timeout": "2m", "reap_interval": 250}"#).unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.reap_interval, Duration::from_millis(250));
        let bad = serde_json::from_str::<InvokerConfig>(r#"{"idle_timeout": "soon"}"#);
        assert!(bad.unwrap_err().to_string().contains("soon"));
    }

    #[test]
    fn prewarm_list_and_unknown_fields() {
        let c: InvokerConfig = serde_json::from_str(
            r#"{"prewarm": [{"kind": "nodejs", "memory_mb": 128, "count": 3}]}"#,
        )
        .unwrap();
        assert_eq!(c.prewarm[0].count, 3);
        assert!(serde_json::from_str::<InvokerConfig>(r#"{"memroy_budget_mb": 1}"#).is_err());
        assert!(serde_json::from_str::<InvokerConfig>(
            r#"{"prewarm": [{"kind": "java:8", "memory_mb": 128, "count": 1}]}"#
        )
        .is_err());
    }

    #[test]
    fn prewarm_names_a_kind_or_an_image() {
        let c: InvokerConfig = serde_json::from_str(
            r#"{"prewarm": [{"image": "hearth-test/proxy:1", "memory_mb": 128, "count": 1}]}"#,
        )
        .unwrap();
        let p = &c.prewarm[0];
        assert_eq!(p.image.as_deref(), Some("hearth-test/proxy:1"));
        assert_eq!(p.runtime(), Runtime::Native, "unresolved until the invoker starts");
        let d = ImageDigest::from_bytes([7; 32]);
        let resolved = PrewarmConfig { digest: Some(d), ..p.clone() };
        assert_eq!(resolved.runtime(), Runtime::Image(d));
        for bad in [
            r#"{"prewarm": [{"kind": "python:3", "image": "x:1", "memory_mb": 128, "count": 1}]}"#,
            r#"{"prewarm": [{"memory_mb": 128, "count": 1}]}"#,
            r#"{"prewarm": [{"image": "openwhisk/dockerskeleton", "memory_mb": 128, "count": 1}]}"#,
        ] {
            assert!(serde_json::from_str::<InvokerConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_catches_impossible_plans() {
        let mut c = InvokerConfig { memory_budget_mb: 64, ..Default::default() };
        assert_eq!(c.validate(), Err(PoolConfigError::BudgetTooSmall(64)));
        c.memory_budget_mb = 256;
        assert!(matches!(
            c.validate(),
            Err(PoolConfigError::PrewarmOverBudget { needed_mb: 512, .. })
        ));
        c.prewarm[0].memory_mb = 1024;
        assert!(matches!(c.validate(), Err(PoolConfigError::PrewarmMemory { .. })));
        c = InvokerConfig { reap_interval: Duration::ZERO, ..Default::default() };
        assert_eq!(c.validate(), Err(PoolConfigError::Zero { field: "reap_interval" }));
    }
}
