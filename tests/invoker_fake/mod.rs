//! The pool's integration tests' code source; the container factory they drive is the test
//! kit's (`hearth::testing::container`), re-exported here.

// Test support: a poisoned lock or a bad script should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use hearth::invoker::{CodeError, CodeSource};
use hearth::model::FullyQualifiedName;
pub use hearth::testing::container::{installer, FakeFactory, World};

/// Action code by `ns/name@revision`; a revision below a stored one is `Stale` (the action was
/// updated, as the store says), other missing entries are `NotFound`.
#[derive(Debug, Default)]
pub struct FakeCode {
    pub code: Mutex<HashMap<String, Vec<u8>>>,
}

impl FakeCode {
    pub fn put(&self, action: &str, revision: u64, code: &[u8]) {
        self.code.lock().unwrap().insert(format!("{action}@{revision}"), code.to_vec());
    }
}

impl CodeSource for FakeCode {
    fn with_code(
        &self,
        action: &FullyQualifiedName,
        revision: u64,
        install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
    ) -> Result<(), CodeError> {
        let key = format!("{action}@{revision}");
        let (code, newer) = {
            let map = self.code.lock().unwrap();
            let prefix = format!("{action}@");
            let newer = map
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix)?.parse::<u64>().ok())
                .filter(|r| *r > revision)
                .max();
            (map.get(&key).cloned(), newer)
        };
        match (code, newer) {
            (Some(c), _) => install(&c),
            (None, Some(current)) => {
                Err(CodeError::Stale { action: action.to_string(), wanted: revision, current })
            }
            (None, None) => Err(CodeError::NotFound(key)),
        }
    }
}
