//! Triggers as stored and as exchanged over the API: a named channel of events, with default
//! parameters and the rules it fires (OpenWhisk's `WhiskTrigger`, whose `rules` map keeps
//! each rule's action and status inside the trigger, so a fire reads one record).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::{EntityPath, RuleStatus};
use super::{EntityName, KeyValue};

/// What a trigger keeps of one of its rules (OpenWhisk's `ReducedRule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducedRule {
    pub action: EntityPath,
    pub status: RuleStatus,
}

/// A trigger. Small: read on every fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerMeta {
    pub namespace: EntityName,
    pub name: EntityName,
    /// `0.0.<counter>`, as an action's.
    pub version: String,
    /// Bumped on every update (a rule linked or its status changed too), unique across the
    /// controllers of a cluster ([`super::revision`]).
    pub revision: u64,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub publish: bool,
    /// The rules that name this trigger, by `namespace/rule` (OpenWhisk's key).
    #[serde(default)]
    pub rules: BTreeMap<String, ReducedRule>,
    /// Milliseconds since the epoch of the last change.
    pub updated: u64,
}

impl TriggerMeta {
    /// The store key, `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The trigger's `feed` annotation (`/whisk.system/alarms/alarm`), when it has one.
    pub fn feed(&self) -> Option<&str> {
        self.annotations.iter().find(|kv| kv.key == "feed").and_then(|kv| kv.value.as_str())
    }

    /// Whether any rule is active: a fire without one answers 204 and records nothing.
    pub fn has_active_rule(&self) -> bool {
        self.rules.values().any(|r| r.status == RuleStatus::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_map_has_openwhisks_shape() {
        let n = |s: &str| EntityName::parse(s).unwrap();
        let mut t = TriggerMeta {
            namespace: n("guest"),
            name: n("t"),
            version: "0.0.1".into(),
            revision: 1,
            parameters: vec![],
            annotations: vec![KeyValue::new("feed", "/whisk.system/alarms/alarm")],
            publish: false,
            rules: BTreeMap::new(),
            updated: 0,
        };
        assert!(!t.has_active_rule());
        let action = EntityPath { path: "guest".into(), name: n("a") };
        t.rules.insert("guest/r".into(), ReducedRule { action, status: RuleStatus::Active });
        assert!(t.has_active_rule());
        assert_eq!(t.feed(), Some("/whisk.system/alarms/alarm"));
        let v = serde_json::to_value(&t.rules).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"guest/r": {"action": {"path": "guest", "name": "a"}, "status": "active"}})
        );
    }
}
