//! Packages as stored and as exchanged over the API: a named set of actions with shared
//! parameters, or a binding (a package that points at another one, adding parameters).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{EntityName, KeyValue};

/// Names a package may not have (OpenWhisk reserves `default`: it names the implicit package
/// of actions that are in none).
pub const RESERVED_PACKAGE_NAMES: &[&str] = &["default"];

/// Where a binding points: a package of the binding's own namespace, or a shared one of
/// another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub namespace: EntityName,
    pub name: EntityName,
}

impl Binding {
    /// The bound package's store key, `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A package or a binding. Small: read on the invoke path of every action inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageMeta {
    pub namespace: EntityName,
    pub name: EntityName,
    /// `0.0.<counter>`, as an action's (the update counter of the revision).
    pub version: String,
    /// Bumped on every update, unique across the controllers of a cluster
    /// ([`super::revision`]): replicas keep the highest they have seen.
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub publish: bool,
    /// Milliseconds since the epoch of the last change.
    pub updated: u64,
}

impl PackageMeta {
    /// The store key, `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether a caller of another namespace may read it and run its actions: published,
    /// and a package rather than a binding (OpenWhisk's public view lists no bindings).
    pub fn shared(&self) -> bool {
        self.publish && self.binding.is_none()
    }
}

/// The parameters an action runs with, in OpenWhisk's order: each layer overrides the keys of
/// the layers before it (package < binding < action; the request comes last, added by the
/// caller). OpenWhisk: `resolveBinding(mergeParameters = true)` makes package ++ binding,
/// then `action.inherit(that)` makes (package ++ binding) ++ action.
pub fn merge_parameters(layers: &[&[KeyValue]]) -> Map<String, Value> {
    let mut out = Map::new();
    for layer in layers {
        for kv in *layer {
            out.insert(kv.key.clone(), kv.value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_key_by_key() {
        let pkg = [KeyValue::new("a", "pkg"), KeyValue::new("b", "pkg"), KeyValue::new("c", "pkg")];
        let binding = [KeyValue::new("b", "binding"), KeyValue::new("c", "binding")];
        let action = [KeyValue::new("c", "action"), KeyValue::new("d", "action")];
        let m = merge_parameters(&[&pkg, &binding, &action]);
        assert_eq!(m["a"], "pkg");
        assert_eq!(m["b"], "binding");
        assert_eq!(m["c"], "action");
        assert_eq!(m["d"], "action");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn bindings_and_private_packages_are_not_shared() {
        let n = |s: &str| EntityName::parse(s).unwrap();
        let mut p = PackageMeta {
            namespace: n("a"),
            name: n("p"),
            version: "0.0.1".into(),
            revision: 1,
            binding: None,
            parameters: vec![],
            annotations: vec![],
            publish: false,
            updated: 0,
        };
        assert!(!p.shared());
        p.publish = true;
        assert!(p.shared());
        p.binding = Some(Binding { namespace: n("b"), name: n("q") });
        assert!(!p.shared());
        assert_eq!((p.key(), p.binding.as_ref().unwrap().key()), ("a/p".into(), "b/q".into()));
    }
}
