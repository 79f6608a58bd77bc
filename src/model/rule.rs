//! Rules as stored and as exchanged over the API: "when trigger T fires, run action A"
//! (OpenWhisk's `WhiskRule`). The status is not kept here but in the trigger's rules map, as
//! OpenWhisk does, so the fire path reads the trigger alone.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EntityName, FullyQualifiedName, KeyValue, NameError};

/// A rule's state, as `POST {"status": ...}` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Active,
    Inactive,
}

impl RuleStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

/// OpenWhisk's `FullyQualifiedEntityName` as its JSON shows it: `{"path": "ns" or
/// "ns/pkg", "name": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityPath {
    pub path: String,
    pub name: EntityName,
}

impl EntityPath {
    /// Parses `name`, `ns/name`, `/ns/name` or `/ns/pkg/name` as OpenWhisk resolves a rule's
    /// trigger or action: a name without a namespace (or `_`) is in `default_ns`. A leading
    /// slash means the first segment is the namespace; without it, two segments are
    /// `package/name` of `default_ns` (wsk's `pkg/action`), three are `ns/pkg/name`.
    pub fn parse(s: &str, default_ns: &EntityName) -> Result<Self, NameError> {
        let absolute = s.starts_with('/');
        let parts: Vec<&str> = s.trim_start_matches('/').split('/').collect();
        let ns = |p: &str| {
            if p == "_" {
                Ok(default_ns.clone())
            } else {
                EntityName::parse(p)
            }
        };
        let (namespace, package, name) = match (absolute, parts.as_slice()) {
            (false, [n]) => (default_ns.clone(), None, *n),
            (false, [p, n]) => (default_ns.clone(), Some(*p), *n),
            (true, [s, n]) => (ns(s)?, None, *n),
            (_, [s, p, n]) => (ns(s)?, Some(*p), *n),
            _ => return Err(NameError::Invalid(s.chars().take(256).collect())),
        };
        let name = EntityName::parse(name)?;
        let path = match package {
            Some(p) => format!("{namespace}/{}", EntityName::parse(p)?),
            None => namespace.to_string(),
        };
        Ok(Self { path, name })
    }

    /// As an action's full name (`path` is `ns` or `ns/pkg`).
    pub fn fqn(&self) -> Result<FullyQualifiedName, NameError> {
        match self.path.split_once('/') {
            Some((ns, pkg)) => Ok(FullyQualifiedName::in_package(
                EntityName::parse(ns)?,
                EntityName::parse(pkg)?,
                self.name.clone(),
            )),
            None => Ok(FullyQualifiedName::new(EntityName::parse(&self.path)?, self.name.clone())),
        }
    }

    /// The namespace, the first segment of `path`.
    pub fn namespace(&self) -> &str {
        self.path.split('/').next().unwrap_or(&self.path)
    }
}

impl fmt::Display for EntityPath {
    /// `path/name`, OpenWhisk's `asString` (the rule logs of a trigger activation).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.path, self.name)
    }
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleMeta {
    pub namespace: EntityName,
    pub name: EntityName,
    pub version: String,
    /// As a trigger's ([`super::revision`]).
    pub revision: u64,
    pub trigger: EntityPath,
    pub action: EntityPath,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub publish: bool,
    pub updated: u64,
}

impl RuleMeta {
    /// The store key, `namespace/name`; also the key of its link in the trigger's rules map.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_as_openwhisk_resolves_them() {
        let guest = EntityName::parse("guest").unwrap();
        let p = |s: &str| EntityPath::parse(s, &guest).map(|e| e.to_string());
        assert_eq!(p("a").unwrap(), "guest/a");
        assert_eq!(p("pkg/a").unwrap(), "guest/pkg/a");
        assert_eq!(p("/_/a").unwrap(), "guest/a");
        assert_eq!(p("/other/a").unwrap(), "other/a");
        assert_eq!(p("/whisk.system/utils/echo").unwrap(), "whisk.system/utils/echo");
        assert_eq!(p("whisk.system/utils/echo").unwrap(), "whisk.system/utils/echo");
        assert!(p("/a/b/c/d").is_err());
        assert!(p("").is_err());
        let e = EntityPath::parse("/whisk.system/utils/echo", &guest).unwrap();
        assert_eq!(e.fqn().unwrap().key(), "whisk.system/utils/echo");
        assert_eq!(e.namespace(), "whisk.system");
        assert_eq!(serde_json::to_value(&e).unwrap()["path"], "whisk.system/utils");
    }
}
