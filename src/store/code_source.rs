//! The invoker's view of the store: action code handed straight from the memory map.

use super::{Store, StoreError};
use crate::invoker::{CodeError, CodeSource};
use crate::model::FullyQualifiedName;

fn read_err(action: &str) -> impl Fn(StoreError) -> CodeError + '_ {
    move |e| CodeError::Read { action: action.to_owned(), message: e.to_string() }
}

impl CodeSource for Store {
    /// The slice given to `install` points into the memory map and lives only inside the read
    /// transaction: the code is copied exactly once, by `install`, into the container.
    fn with_code(
        &self,
        action: &FullyQualifiedName,
        revision: u64,
        install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
    ) -> Result<(), CodeError> {
        let key = action.key();
        let rtxn = self.read_txn().map_err(read_err(&key))?;
        let meta = self
            .action_in(&rtxn, &key)
            .map_err(read_err(&key))?
            .ok_or_else(|| CodeError::NotFound(key.clone()))?;
        if meta.revision != revision {
            return Err(CodeError::Stale { action: key, wanted: revision, current: meta.revision });
        }
        let code = self
            .dbs()
            .code
            .get(&rtxn, key.as_bytes())
            .map_err(|e| CodeError::Read { action: key.clone(), message: e.to_string() })?
            .ok_or_else(|| CodeError::NotFound(key.clone()))?;
        install(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityName, Kind};
    use crate::store::test_util::temp_store;
    use crate::store::{ActionUpdate, ExecUpdate};

    #[test]
    fn hands_code_and_detects_stale_revision() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        s.create_namespace(&ns).unwrap();
        let f = FullyQualifiedName::new(ns, EntityName::parse("a").unwrap());
        let up = ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse("python:3").unwrap(),
                main: None,
                binary: false,
                image: None,
                code: b"CODE".to_vec(),
            }),
            ..Default::default()
        };
        s.put_action(&f, up, false).unwrap();
        let mut got = Vec::new();
        s.with_code(&f, 1, &mut |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, b"CODE");
        let err = s.with_code(&f, 2, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, CodeError::Stale { wanted: 2, current: 1, .. }), "{err}");
        let missing =
            FullyQualifiedName::new(f.namespace.clone(), EntityName::parse("zz").unwrap());
        assert!(matches!(s.with_code(&missing, 1, &mut |_| Ok(())), Err(CodeError::NotFound(_))));
    }
}
