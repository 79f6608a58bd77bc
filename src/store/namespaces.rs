//! Namespaces: name -> record. Deleting a namespace deletes everything it owns (keys, actions,
//! code, activation records, pending stubs, limit overrides) in one transaction.

use serde::{Deserialize, Serialize};

use heed::{RoTxn, RwTxn};

use super::codec::{decode, encode, show_key};
use super::error::lmdb;
use super::feed::{
    encode_wire, EntityKind, WireHeader, WireValue, KEY_PREFIX, LIMITS_PREFIX, NAMESPACE_PREFIX,
};
use super::replica::Applied;
use super::{Store, StoreError};
use crate::model::{now_millis, AuthKey, EntityName};

/// One namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: EntityName,
    /// Milliseconds since the epoch.
    pub created: u64,
}

impl Store {
    /// Creates a namespace and a fresh key for it; returns the key (the only time its secret
    /// exists outside the caller).
    pub fn create_namespace(&self, ns: &EntityName) -> Result<AuthKey, StoreError> {
        let key = AuthKey::generate().map_err(|e| StoreError::Random(e.to_string()))?;
        let mut wtxn = self.write_txn()?;
        if self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceExists(ns.to_string()));
        }
        self.put_namespace_in(&mut wtxn, ns)?;
        self.put_key_in(&mut wtxn, ns, &key)?;
        self.bump_keys_generation(&mut wtxn)?;
        let entity = format!("{NAMESPACE_PREFIX}{ns}");
        let seq =
            self.feed_in(&mut wtxn, &[entity.clone(), format!("{KEY_PREFIX}{}", key.uuid)])?;
        wtxn.commit().map_err(lmdb("commit", "namespaces"))?;
        tracing::info!(namespace = %ns, uuid = %key.uuid, "namespace created");
        self.await_published(&entity, seq)?;
        Ok(key)
    }

    /// Makes sure `ns` exists and `key` belongs to it (standalone's public guest key).
    /// Idempotent: a second call changes nothing and does not bump the generation.
    pub fn ensure_namespace_with_key(
        &self,
        ns: &EntityName,
        key: &AuthKey,
    ) -> Result<(), StoreError> {
        let mut wtxn = self.write_txn()?;
        let mut changed = Vec::new();
        if !self.namespace_exists_in(&wtxn, ns)? {
            self.put_namespace_in(&mut wtxn, ns)?;
            changed.push(format!("{NAMESPACE_PREFIX}{ns}"));
        }
        let current = self.key_record_in(&wtxn, &key.uuid)?;
        let up_to_date =
            current.as_ref().is_some_and(|r| &r.namespace == ns && r.hash.matches(&key.hash()));
        if !up_to_date {
            self.put_key_in(&mut wtxn, ns, key)?;
            changed.push(format!("{KEY_PREFIX}{}", key.uuid));
        }
        if !changed.is_empty() {
            self.bump_keys_generation(&mut wtxn)?;
            let seq = self.feed_in(&mut wtxn, &changed)?;
            wtxn.commit().map_err(lmdb("commit", "namespaces"))?;
            self.await_published(&format!("{NAMESPACE_PREFIX}{ns}"), seq)?;
        }
        Ok(())
    }

    /// Makes sure `ns` exists, without creating a key for it (the `whisk.system` catalog:
    /// nobody authenticates as it). Returns whether it was created.
    pub fn ensure_namespace(&self, ns: &EntityName) -> Result<bool, StoreError> {
        let mut wtxn = self.write_txn()?;
        if self.namespace_exists_in(&wtxn, ns)? {
            return Ok(false);
        }
        self.put_namespace_in(&mut wtxn, ns)?;
        self.bump_keys_generation(&mut wtxn)?;
        let entity = format!("{NAMESPACE_PREFIX}{ns}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "namespaces"))?;
        self.await_published(&entity, seq)?;
        Ok(true)
    }

    /// Whether `ns` exists, inside a transaction that is about to change it or its keys.
    pub(crate) fn namespace_exists_in(
        &self,
        txn: &heed::RoTxn,
        ns: &EntityName,
    ) -> Result<bool, StoreError> {
        Ok(self
            .dbs()
            .namespaces
            .get(txn, ns.as_str().as_bytes())
            .map_err(lmdb("get", "namespaces"))?
            .is_some())
    }

    fn put_namespace_in(&self, wtxn: &mut heed::RwTxn, ns: &EntityName) -> Result<(), StoreError> {
        let k = ns.as_str().as_bytes();
        let rec = NamespaceRecord { name: ns.clone(), created: now_millis() };
        let v = encode("namespaces", k, &rec)?;
        self.dbs().namespaces.put(wtxn, k, &v).map_err(lmdb("put", "namespaces"))
    }

    pub fn get_namespace(&self, ns: &EntityName) -> Result<Option<NamespaceRecord>, StoreError> {
        let rtxn = self.read_txn()?;
        let k = ns.as_str().as_bytes();
        match self.dbs().namespaces.get(&rtxn, k).map_err(lmdb("get", "namespaces"))? {
            Some(v) => Ok(Some(decode("namespaces", k, v)?)),
            None => Ok(None),
        }
    }

    /// Every namespace, by name.
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs().namespaces.iter(&rtxn).map_err(lmdb("iter", "namespaces"))? {
            let (k, v) = item.map_err(lmdb("iter", "namespaces"))?;
            out.push(decode("namespaces", k, v)?);
        }
        Ok(out)
    }

    /// Deletes a namespace with its keys, actions, code, activation records and limit
    /// override. Returns false when it did not exist.
    pub fn delete_namespace(&self, ns: &EntityName) -> Result<bool, StoreError> {
        let mut wtxn = self.write_txn()?;
        let d = self.dbs();
        if !d
            .namespaces
            .delete(&mut wtxn, ns.as_str().as_bytes())
            .map_err(lmdb("delete", "namespaces"))?
        {
            return Ok(false);
        }
        let keys = self.delete_keys_of_in(&mut wtxn, ns)?;
        let actions = self.delete_actions_of_in(&mut wtxn, ns)?;
        let packages = self.delete_packages_of_in(&mut wtxn, ns)?;
        let events = self.delete_events_of_in(&mut wtxn, ns)?;
        let activations = self.delete_activations_of_in(&mut wtxn, ns)?;
        let pending = self.delete_pending_of_in(&mut wtxn, ns)?;
        let had_limits = self.delete_namespace_limits_in(&mut wtxn, ns)?;
        self.bump_keys_generation(&mut wtxn)?;
        // Explicit tombstones for what the namespace owned: compaction may drop the
        // namespace's tombstone one day, and the actions' (and the override's) records must
        // not come back then.
        let entity = format!("{NAMESPACE_PREFIX}{ns}");
        let (n_keys, n_actions) = (keys.len(), actions.len());
        let mut fed = keys;
        fed.extend(actions);
        fed.extend(packages);
        fed.extend(events);
        if had_limits {
            fed.push(format!("{LIMITS_PREFIX}{ns}"));
        }
        fed.push(entity.clone());
        let seq = self.feed_in(&mut wtxn, &fed)?;
        wtxn.commit().map_err(lmdb("commit", "namespaces"))?;
        tracing::info!(namespace = %ns, keys = n_keys, actions = n_actions, activations, pending, "namespace deleted");
        self.await_published(&entity, seq)?;
        Ok(true)
    }
}

/// Namespaces on the entity topic: the topic's order decides; a tombstone deletes everything
/// the namespace owns, as the local delete does.
#[derive(Debug)]
pub(crate) struct NamespaceKind;

impl EntityKind for NamespaceKind {
    fn prefix(&self) -> &'static str {
        NAMESPACE_PREFIX
    }

    fn held(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in s.dbs().namespaces.iter(txn).map_err(lmdb("iter", "namespaces"))? {
            out.push(show_key(item.map_err(lmdb("iter", "namespaces"))?.0));
        }
        Ok(out)
    }

    fn wire_value(
        &self,
        s: &Store,
        txn: &RoTxn,
        key: &str,
        header: &WireHeader,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let v = s.dbs().namespaces.get(txn, key.as_bytes()).map_err(lmdb("get", "namespaces"))?;
        Ok(v.map(|v| encode_wire(header, v, &[])))
    }

    fn apply(
        &self,
        s: &Store,
        wtxn: &mut RwTxn,
        ns: &str,
        wire: Option<&WireValue>,
        _deleted_revision: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let name = EntityName::parse(ns).map_err(|e| StoreError::Corrupt {
            db: "entity topic",
            key: format!("{NAMESPACE_PREFIX}{ns}"),
            message: e.to_string(),
        })?;
        let d = s.dbs();
        match wire {
            Some(w) => {
                let _: NamespaceRecord = decode("namespaces", ns.as_bytes(), w.record)?;
                let held =
                    d.namespaces.get(wtxn, ns.as_bytes()).map_err(lmdb("get", "namespaces"))?;
                if held == Some(w.record) {
                    return Ok(Applied::Unchanged);
                }
                d.namespaces
                    .put(wtxn, ns.as_bytes(), w.record)
                    .map_err(lmdb("put", "namespaces"))?;
            }
            None => {
                // As the local delete: everything the namespace owns goes with it.
                d.namespaces.delete(wtxn, ns.as_bytes()).map_err(lmdb("delete", "namespaces"))?;
                s.delete_keys_of_in(wtxn, &name)?;
                s.delete_actions_of_in(wtxn, &name)?;
                s.delete_packages_of_in(wtxn, &name)?;
                s.delete_events_of_in(wtxn, &name)?;
                s.delete_activations_of_in(wtxn, &name)?;
                s.delete_pending_of_in(wtxn, &name)?;
                s.delete_namespace_limits_in(wtxn, &name)?;
            }
        }
        s.bump_keys_generation(wtxn)?;
        Ok(Applied::Changed)
    }
}
