//! Actions as stored and as exchanged over the API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActionExec, ActionLimits, EntityName, FullyQualifiedName};

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
    /// The package holding the action (`None`: the namespace's default package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<EntityName>,
    pub name: EntityName,
    /// OpenWhisk's semantic version, `0.0.<counter>` (the update counter of the revision,
    /// see [`revision`]).
    pub version: String,
    /// Bumped on every update; warm containers are reused only for the same revision. Unique
    /// across the controllers of a cluster (see [`revision`]).
    pub revision: u64,
    /// Code in a runtime, or a sequence's components.
    pub exec: ActionExec,
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
        FullyQualifiedName {
            namespace: self.namespace.clone(),
            package: self.package.clone(),
            name: self.name.clone(),
        }
    }

    /// The version string for a revision: its update counter, so a cluster revision (which
    /// also carries the controller tag) still reads `0.0.1`, `0.0.2`, ...
    pub fn version_for(revision: u64) -> String {
        format!("0.0.{}", revision::counter(revision))
    }
}

/// Action revisions, unique across the controllers of a cluster.
///
/// Why: the invoker pool keys warm containers by (action, revision), and an activation names
/// the revision whose code it must run. If two controllers updating one action at the same
/// moment both produced "previous + 1", two different codes would share one revision number:
/// a warm container holding one could serve activations meant for the other, and hosts could
/// not even tell which code "revision N" is. So a controller of a cluster makes
/// `counter << TAG_BITS | tag`: the update counter (previous counter + 1) in the high bits and
/// a tag derived from its controller id in the low bits. Two controllers never make the same
/// revision (unless their ids' tags collide: 20 bits, and the controllers log an error when
/// they see a live peer with their own tag), and the numeric order is "later counter first,
/// then controller tag", a total order every host applies the same way: a host keeps the
/// highest revision it has seen of an action (`store/replica.rs`), so all hosts end with the
/// same action whatever order they saw the records in.
///
/// Standalone and split (no cluster) keep plain counters 1, 2, 3: a revision up to
/// [`TAG_MASK`] is a plain counter, and every cluster revision is larger, so a plain counter
/// continues as a cluster one without going backwards. The user-visible version is
/// `0.0.<counter>` in both cases (monotone: each update's counter exceeds the one it updated).
pub mod revision {
    /// Low bits of a cluster revision naming the controller that made it.
    pub const TAG_BITS: u32 = 20;
    /// The largest tag, and the largest plain (standalone) revision.
    pub const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

    /// The tag of controller `id`: FNV-1a of the id, in `1..=TAG_MASK` (0 is never used, so a
    /// cluster revision is always above every plain one). Fixed here rather than std's hasher:
    /// every host must compute the same tag.
    pub fn tag(id: &str) -> u64 {
        crate::model::fnv1a(id.bytes()) % TAG_MASK + 1
    }

    /// The update counter of `revision` (the revision itself for a plain one).
    pub fn counter(revision: u64) -> u64 {
        if revision <= TAG_MASK {
            revision
        } else {
            revision >> TAG_BITS
        }
    }

    /// The revision after `previous` (`None`: a new action) made by controller `origin`
    /// (`None`: no cluster, a plain counter as always).
    pub fn next(previous: Option<u64>, origin: Option<&str>) -> u64 {
        match origin {
            None => previous.map_or(1, |p| p.saturating_add(1)),
            Some(id) => {
                let counter =
                    previous.map_or(0, counter).saturating_add(1).min(u64::MAX >> TAG_BITS);
                counter << TAG_BITS | tag(id)
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn plain_revisions_are_unchanged() {
            assert_eq!(next(None, None), 1);
            assert_eq!(next(Some(7), None), 8);
            assert_eq!(counter(8), 8);
            assert_eq!(crate::model::ActionMeta::version_for(8), "0.0.8");
        }

        #[test]
        fn two_controllers_never_make_the_same_revision_and_all_agree_on_the_order() {
            let (a, b) = (tag("c1"), tag("c2"));
            assert_ne!(a, b);
            assert!((1..=TAG_MASK).contains(&a) && (1..=TAG_MASK).contains(&b));
            // Both update revision 3 (plain, from before the cluster) at the same moment.
            let (ra, rb) = (next(Some(3), Some("c1")), next(Some(3), Some("c2")));
            assert_ne!(ra, rb);
            assert!(ra > 3 && rb > 3, "a cluster revision continues a plain one upwards");
            assert_eq!((counter(ra), counter(rb)), (4, 4));
            assert_eq!(crate::model::ActionMeta::version_for(ra), "0.0.4");
            // The next update of either is above both.
            let later = next(Some(ra.min(rb)), Some("c1"));
            assert!(later > ra.max(rb));
            assert_eq!(counter(later), 5);
            assert_eq!(tag("c1"), a, "the tag is a fixed function of the id");
        }
    }
}
