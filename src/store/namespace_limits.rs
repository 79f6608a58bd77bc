//! Per-namespace limit overrides (`hearthd admin limits`), in the `meta` database under
//! `limits/{namespace}`. Read on every invoke straight from the memory map (a few hundred
//! nanoseconds), so an override written by `hearthd admin` in another process applies to the
//! very next request without any cache to invalidate.

use heed::RwTxn;

use super::codec::{decode, encode};
use super::error::lmdb;
use super::{Store, StoreError};
use crate::model::{EntityName, NamespaceLimits};

const LIMITS_PREFIX: &str = "limits/";

fn limits_key(ns: &EntityName) -> String {
    format!("{LIMITS_PREFIX}{ns}")
}

impl Store {
    /// The operator's override for `ns` (all `None` when there is none).
    pub fn namespace_limits(&self, ns: &EntityName) -> Result<NamespaceLimits, StoreError> {
        let rtxn = self.read_txn()?;
        let key = limits_key(ns);
        match self.dbs().meta.get(&rtxn, key.as_bytes()).map_err(lmdb("get", "meta"))? {
            Some(v) => decode("meta", key.as_bytes(), v),
            None => Ok(NamespaceLimits::default()),
        }
    }

    /// Merges `patch` into the override of `ns` (a set field replaces, an unset one stays) and
    /// returns the new override. The namespace must exist.
    pub fn set_namespace_limits(
        &self,
        ns: &EntityName,
        patch: NamespaceLimits,
    ) -> Result<NamespaceLimits, StoreError> {
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        let key = limits_key(ns);
        let current =
            match self.dbs().meta.get(&wtxn, key.as_bytes()).map_err(lmdb("get", "meta"))? {
                Some(v) => decode("meta", key.as_bytes(), v)?,
                None => NamespaceLimits::default(),
            };
        let next = patch.over(current);
        let v = encode("meta", key.as_bytes(), &next)?;
        self.dbs().meta.put(&mut wtxn, key.as_bytes(), &v).map_err(lmdb("put", "meta"))?;
        wtxn.commit().map_err(lmdb("commit", "meta"))?;
        tracing::info!(namespace = %ns, limits = ?next, "namespace limits set");
        Ok(next)
    }

    /// Removes the override of `ns`: the host's defaults apply again. Returns whether there
    /// was one.
    pub fn clear_namespace_limits(&self, ns: &EntityName) -> Result<bool, StoreError> {
        let mut wtxn = self.write_txn()?;
        let had = self.delete_namespace_limits_in(&mut wtxn, ns)?;
        wtxn.commit().map_err(lmdb("commit", "meta"))?;
        Ok(had)
    }

    /// Inside a namespace's deletion.
    pub(crate) fn delete_namespace_limits_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<bool, StoreError> {
        self.dbs().meta.delete(wtxn, limits_key(ns).as_bytes()).map_err(lmdb("delete", "meta"))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{EntityName, NamespaceLimits};
    use crate::store::test_util::temp_store;

    #[test]
    fn set_merges_clear_removes_and_delete_forgets() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("tenant").unwrap();
        assert!(s.set_namespace_limits(&ns, NamespaceLimits::default()).is_err(), "no such ns");
        s.create_namespace(&ns).unwrap();
        assert!(s.namespace_limits(&ns).unwrap().is_empty());
        let a = NamespaceLimits { concurrent_invocations: Some(2), ..Default::default() };
        let b = NamespaceLimits { invocations_per_minute: Some(60), ..Default::default() };
        s.set_namespace_limits(&ns, a).unwrap();
        let both = s.set_namespace_limits(&ns, b).unwrap();
        assert_eq!((both.concurrent_invocations, both.invocations_per_minute), (Some(2), Some(60)));
        assert_eq!(s.namespace_limits(&ns).unwrap(), both);
        assert!(s.clear_namespace_limits(&ns).unwrap());
        assert!(s.namespace_limits(&ns).unwrap().is_empty());
        s.set_namespace_limits(&ns, a).unwrap();
        s.delete_namespace(&ns).unwrap();
        s.create_namespace(&ns).unwrap();
        assert!(s.namespace_limits(&ns).unwrap().is_empty(), "a re-created namespace starts clean");
    }
}
