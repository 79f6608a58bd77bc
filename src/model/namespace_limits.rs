//! A namespace's limits, as OpenWhisk keeps them per subject (docs/reference.md: per-namespace
//! system limits): invocations per minute, concurrent invocations, trigger fires per minute,
//! and the longest sequence. The host-wide defaults come from controller.toml; an operator's
//! override of any of them for one namespace (`hearthd admin limits set`) is stored with the
//! namespace and wins over the default, field by field.

use serde::{Deserialize, Serialize};

/// OpenWhisk's longest sequence (`actionSequenceMaxLength`).
pub const SEQUENCE_MAX_LENGTH_DEFAULT: u32 = 50;

/// Limits of one namespace. In an override, `None` means "the host's default"; in the
/// effective limits every field is set. Names and JSON shape are OpenWhisk's (`UserLimits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_invocations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_max_length: Option<u32>,
}

impl NamespaceLimits {
    /// Defaults sized for a host with one owner: nobody meets them in normal use, but one
    /// namespace's runaway client cannot hold every slot of the invoker's queue (256) or
    /// flood the host with trigger fires. A multi-tenant host lowers them in controller.toml
    /// or per namespace.
    pub const SINGLE_OWNER: NamespaceLimits = NamespaceLimits {
        // 100,000 a second, above what one host serves: no rate limit in practice.
        invocations_per_minute: Some(6_000_000),
        concurrent_invocations: Some(100),
        fires_per_minute: Some(6_000),
        sequence_max_length: Some(SEQUENCE_MAX_LENGTH_DEFAULT),
    };

    /// `self` (an override) over `defaults`, field by field.
    pub fn over(self, defaults: NamespaceLimits) -> NamespaceLimits {
        NamespaceLimits {
            invocations_per_minute: self.invocations_per_minute.or(defaults.invocations_per_minute),
            concurrent_invocations: self.concurrent_invocations.or(defaults.concurrent_invocations),
            fires_per_minute: self.fires_per_minute.or(defaults.fires_per_minute),
            sequence_max_length: self.sequence_max_length.or(defaults.sequence_max_length),
        }
    }

    /// True when no field is set (an override that changes nothing).
    pub fn is_empty(&self) -> bool {
        *self == NamespaceLimits::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_wins_field_by_field() {
        let o = NamespaceLimits { concurrent_invocations: Some(3), ..Default::default() };
        let e = o.over(NamespaceLimits::SINGLE_OWNER);
        assert_eq!(e.concurrent_invocations, Some(3));
        assert_eq!(e.invocations_per_minute, NamespaceLimits::SINGLE_OWNER.invocations_per_minute);
        assert!(!o.is_empty() && NamespaceLimits::default().is_empty());
    }

    #[test]
    fn json_is_openwhisks_shape() {
        let o = NamespaceLimits { invocations_per_minute: Some(60), ..Default::default() };
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"invocationsPerMinute":60}"#);
        let back: NamespaceLimits =
            serde_json::from_str(r#"{"concurrentInvocations":30,"firesPerMinute":60}"#).unwrap();
        assert_eq!(back.concurrent_invocations, Some(30));
        assert!(serde_json::from_str::<NamespaceLimits>(r#"{"bogus":1}"#).is_err());
    }
}
