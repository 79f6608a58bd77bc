//! Entity names and paths, validated by OpenWhisk's rules.
//!
//! Every name that reaches the store or a file path passes through [`EntityName::parse`], so a
//! name can never carry a path separator, a NUL or a leading dot-dot: names are safe to use as
//! LMDB keys and as parts of directory names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest entity name OpenWhisk accepts.
pub const MAX_NAME_LEN: usize = 256;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("the name {0:?} contains characters that are not allowed (letters, digits, '_', '@', '.', '-' and spaces inside; it must start with a letter, digit or '_')")]
    Invalid(String),
}

/// A validated entity name (namespace, action, package): OpenWhisk's
/// `\A([\w]|[\w][\w@ .-]*[\w@.-]+)\z`, at most 256 characters, ASCII word characters only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EntityName(String);

impl EntityName {
    /// Validates `s` as an entity name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let bytes = s.as_bytes();
        let first_ok = word(bytes[0]);
        let middle_ok =
            bytes[1..].iter().all(|&c| word(c) || matches!(c, b'@' | b' ' | b'.' | b'-'));
        let last = bytes[bytes.len() - 1];
        let last_ok = bytes.len() == 1 || word(last) || matches!(last, b'@' | b'.' | b'-');
        if first_ok && middle_ok && last_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Invalid(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EntityName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EntityName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `namespace/name` or `namespace/package/name`: an action's full name, unique in a store.
/// Used as the LMDB key of the action, as the journal's `HEARTH_ACTION` field and as the
/// activation's `path` annotation. The package is optional so that an action outside any
/// package keeps the key (and the wire form) it always had; a '/' never occurs inside a
/// name, so the two forms cannot collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FullyQualifiedName {
    pub namespace: EntityName,
    /// The package holding the action; `None`: the namespace's default package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<EntityName>,
    pub name: EntityName,
}

impl FullyQualifiedName {
    pub fn new(namespace: EntityName, name: EntityName) -> Self {
        Self { namespace, package: None, name }
    }

    /// An action inside `package` of `namespace`.
    pub fn in_package(namespace: EntityName, package: EntityName, name: EntityName) -> Self {
        Self { namespace, package: Some(package), name }
    }

    /// The store key: `namespace/name`, or `namespace/package/name` inside a package.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// OpenWhisk's `namespace` field of the entity: `namespace` or `namespace/package`.
    pub fn path(&self) -> String {
        match &self.package {
            Some(p) => format!("{}/{p}", self.namespace),
            None => self.namespace.to_string(),
        }
    }
}

impl fmt::Display for FullyQualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.package {
            Some(p) => write!(f, "{}/{p}/{}", self.namespace, self.name),
            None => write!(f, "{}/{}", self.namespace, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_openwhisk_names() {
        for ok in ["a", "hello", "hello_world", "my-action", "a.b", "x@y", "with space", "_", "9"] {
            assert!(EntityName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "-a", ".hidden", "../etc", "a/b", "a\0", "trailing ", "é", " a"] {
            assert!(EntityName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(EntityName::parse(&"a".repeat(257)), Err(NameError::TooLong));
        assert!(EntityName::parse(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn packaged_names_key_with_the_package_and_keep_the_old_wire_form_without() {
        let n = |s: &str| EntityName::parse(s).unwrap();
        let plain = FullyQualifiedName::new(n("guest"), n("a"));
        assert_eq!((plain.key(), plain.path()), ("guest/a".into(), "guest".into()));
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"namespace":"guest","name":"a"}"#);
        let old: FullyQualifiedName =
            serde_json::from_str(r#"{"namespace":"guest","name":"a"}"#).unwrap();
        assert_eq!(old, plain);
        let inner = FullyQualifiedName::in_package(n("guest"), n("utils"), n("a"));
        assert_eq!((inner.key(), inner.path()), ("guest/utils/a".into(), "guest/utils".into()));
        let back: FullyQualifiedName =
            serde_json::from_str(&serde_json::to_string(&inner).unwrap()).unwrap();
        assert_eq!(back, inner);
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<EntityName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<EntityName>("\"../x\"").is_err());
    }
}
