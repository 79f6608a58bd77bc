//! Per-namespace limit overrides (`hearthd admin limits`), in the `meta` database under
//! `limits/{namespace}`. Read on every invoke straight from the memory map (a few hundred
//! nanoseconds), so an override written by `hearthd admin` in another process, or applied
//! from the entity topic by this host's follower, applies to the very next request without
//! any cache to invalidate.
//!
//! In a cluster an override is one more replicated entity kind ([`LimitsKind`], `limits/ns`
//! on the entity topic): set and clear append the key to the entity feed in the same
//! transaction as the change, the publisher sends the current override or a tombstone, and
//! every other host writes or removes it. Overrides carry no revision: the topic's order
//! decides, as for namespaces and keys.
//!
//! Owns: the `limits/` meta keys and their wire form. Must never: check the namespace when
//! applying a record (the namespace's own record may come later; `replica.rs`).

use heed::{RoTxn, RwTxn};

use super::codec::{decode, encode, show_key};
use super::error::lmdb;
use super::feed::{encode_wire, EntityKind, WireHeader, WireValue, LIMITS_PREFIX};
use super::replica::Applied;
use super::{Store, StoreError};
use crate::model::{EntityName, NamespaceLimits};

/// The meta key of `ns`'s override; the same text as its key on the entity topic.
fn limits_key(ns: &str) -> String {
    format!("{LIMITS_PREFIX}{ns}")
}

impl Store {
    /// The operator's override for `ns` (all `None` when there is none).
    pub fn namespace_limits(&self, ns: &EntityName) -> Result<NamespaceLimits, StoreError> {
        let rtxn = self.read_txn()?;
        let key = limits_key(ns.as_str());
        match self.dbs().meta.get(&rtxn, key.as_bytes()).map_err(lmdb("get", "meta"))? {
            Some(v) => decode("meta", key.as_bytes(), v),
            None => Ok(NamespaceLimits::default()),
        }
    }

    /// Merges `patch` into the override of `ns` (a set field replaces, an unset one stays) and
    /// returns the new override. The namespace must exist. With the entity feed on, the
    /// override is queued for the other hosts in the same transaction, and the call returns
    /// after the broker's acknowledgement when a publish waiter is installed (as every
    /// entity write).
    pub fn set_namespace_limits(
        &self,
        ns: &EntityName,
        patch: NamespaceLimits,
    ) -> Result<NamespaceLimits, StoreError> {
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        let key = limits_key(ns.as_str());
        let current =
            match self.dbs().meta.get(&wtxn, key.as_bytes()).map_err(lmdb("get", "meta"))? {
                Some(v) => decode("meta", key.as_bytes(), v)?,
                None => NamespaceLimits::default(),
            };
        let next = patch.over(current);
        let v = encode("meta", key.as_bytes(), &next)?;
        self.dbs().meta.put(&mut wtxn, key.as_bytes(), &v).map_err(lmdb("put", "meta"))?;
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&key))?;
        wtxn.commit().map_err(lmdb("commit", "meta"))?;
        tracing::info!(namespace = %ns, limits = ?next, "namespace limits set");
        self.await_published(&key, seq)?;
        Ok(next)
    }

    /// Removes the override of `ns`: the host's defaults apply again. Returns whether there
    /// was one here. The tombstone is queued for the other hosts either way: one of them may
    /// hold an override this host has not applied yet.
    pub fn clear_namespace_limits(&self, ns: &EntityName) -> Result<bool, StoreError> {
        let mut wtxn = self.write_txn()?;
        let had = self.delete_namespace_limits_in(&mut wtxn, ns)?;
        let key = limits_key(ns.as_str());
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&key))?;
        wtxn.commit().map_err(lmdb("commit", "meta"))?;
        tracing::info!(namespace = %ns, had, "namespace limits cleared");
        self.await_published(&key, seq)?;
        Ok(had)
    }

    /// Inside a namespace's deletion (local, or its tombstone applied from the topic).
    /// Returns whether there was an override.
    pub(crate) fn delete_namespace_limits_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<bool, StoreError> {
        let key = limits_key(ns.as_str());
        self.dbs().meta.delete(wtxn, key.as_bytes()).map_err(lmdb("delete", "meta"))
    }
}

/// Overrides on the entity topic (`limits/ns`): the topic's order decides; the record is the
/// override's JSON as stored, checked before it is written (the hot path decodes it).
#[derive(Debug)]
pub(crate) struct LimitsKind;

impl EntityKind for LimitsKind {
    fn prefix(&self) -> &'static str {
        LIMITS_PREFIX
    }

    fn held(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let iter = s
            .dbs()
            .meta
            .prefix_iter(txn, LIMITS_PREFIX.as_bytes())
            .map_err(lmdb("prefix_iter", "meta"))?;
        for item in iter {
            let (k, _) = item.map_err(lmdb("prefix_iter", "meta"))?;
            out.push(show_key(&k[LIMITS_PREFIX.len()..]));
        }
        Ok(out)
    }

    fn wire_value(
        &self,
        s: &Store,
        txn: &RoTxn,
        ns: &str,
        header: &WireHeader,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = limits_key(ns);
        let v = s.dbs().meta.get(txn, key.as_bytes()).map_err(lmdb("get", "meta"))?;
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
        let key = limits_key(ns);
        EntityName::parse(ns).map_err(|e| StoreError::Corrupt {
            db: "entity topic",
            key: key.clone(),
            message: e.to_string(),
        })?;
        let meta = &s.dbs().meta;
        let held = meta.get(wtxn, key.as_bytes()).map_err(lmdb("get", "meta"))?;
        match wire {
            Some(w) => {
                let _: NamespaceLimits = decode("entity topic", key.as_bytes(), w.record)?;
                if held == Some(w.record) {
                    return Ok(Applied::Unchanged);
                }
                meta.put(wtxn, key.as_bytes(), w.record).map_err(lmdb("put", "meta"))?;
            }
            None => {
                if held.is_none() {
                    return Ok(Applied::Unchanged);
                }
                meta.delete(wtxn, key.as_bytes()).map_err(lmdb("delete", "meta"))?;
            }
        }
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{EntityName, NamespaceLimits};
    use crate::store::test_util::temp_store;
    use crate::store::{Applied, Store};

    fn ns() -> EntityName {
        EntityName::parse("tenant").unwrap()
    }

    fn concurrent(n: u32) -> NamespaceLimits {
        NamespaceLimits { concurrent_invocations: Some(n), ..Default::default() }
    }

    /// Copies what `a` published to `b` as the topic would (each record applied once, in
    /// feed order); returns the outcomes by topic key.
    fn ship(a: &Store, b: &Store, offset: &mut i64) -> Vec<(String, Applied)> {
        let entries = a.feed_pending(100).unwrap();
        let mut out = Vec::new();
        for e in &entries {
            let applied =
                b.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, *offset, 0).unwrap();
            out.push((e.key.clone(), applied));
            *offset += 1;
        }
        if let Some(last) = entries.last() {
            a.feed_done(last.seq).unwrap();
        }
        out
    }

    #[test]
    fn set_merges_clear_removes_and_delete_forgets() {
        let (_d, s) = temp_store();
        let ns = ns();
        assert!(s.set_namespace_limits(&ns, NamespaceLimits::default()).is_err(), "no such ns");
        s.create_namespace(&ns).unwrap();
        assert!(s.namespace_limits(&ns).unwrap().is_empty());
        let a = concurrent(2);
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
        assert!(s.feed_pending(10).unwrap().is_empty(), "without the feed nothing is queued");
    }

    /// Host a sets, b applies: equal; applying the same record again changes nothing; a
    /// clears: b has none; a deletes the namespace: b has no override.
    #[test]
    fn an_override_set_cleared_and_deleted_on_one_host_is_the_same_on_another() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = ns();
        a.create_namespace(&ns).unwrap();
        let mut off = 0;
        ship(&a, &b, &mut off);

        a.set_namespace_limits(&ns, concurrent(3)).unwrap();
        let per_minute = NamespaceLimits { invocations_per_minute: Some(90), ..Default::default() };
        let merged = a.set_namespace_limits(&ns, per_minute).unwrap();
        let pending = a.feed_pending(10).unwrap();
        let keys: Vec<&str> = pending.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["limits/tenant", "limits/tenant"], "one entry per write");
        let outcomes = ship(&a, &b, &mut off);
        assert_eq!(outcomes[0].1, Applied::Changed);
        assert_eq!(outcomes[1].1, Applied::Unchanged, "both entries carry the current value");
        assert_eq!(b.namespace_limits(&ns).unwrap(), merged);
        assert_eq!(a.namespace_limits(&ns).unwrap(), merged);

        // The same record again (a re-delivery, or the writer's own echo) changes nothing.
        a.set_namespace_limits(&ns, concurrent(4)).unwrap();
        let again = a.feed_pending(10).unwrap();
        let value = again[0].value.clone().unwrap();
        let before = b.entity_offset().unwrap().unwrap();
        assert_eq!(
            b.apply_entity("limits/tenant", Some(&value), None, before, 0).unwrap(),
            Applied::Changed
        );
        let held = b.namespace_limits(&ns).unwrap();
        assert_eq!(held.concurrent_invocations, Some(4));
        assert_eq!(
            b.apply_entity("limits/tenant", Some(&value), None, before + 1, 0).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(b.namespace_limits(&ns).unwrap(), held);
        assert_eq!(
            a.apply_entity("limits/tenant", Some(&value), None, 0, 0).unwrap(),
            Applied::Unchanged,
            "the echo on the writer"
        );
        a.feed_done(again[0].seq).unwrap();
        off = before + 2;

        // Cleared on a: b has none; the tombstone again changes nothing.
        assert!(a.clear_namespace_limits(&ns).unwrap());
        let outcomes = ship(&a, &b, &mut off);
        assert_eq!(outcomes, [("limits/tenant".to_owned(), Applied::Changed)]);
        assert!(b.namespace_limits(&ns).unwrap().is_empty());
        assert_eq!(
            b.apply_entity("limits/tenant", None, None, off, 0).unwrap(),
            Applied::Unchanged
        );
        off += 1;

        // Set again, then the namespace deleted on a: its override's tombstone goes with the
        // namespace's, and b holds no override (nor would a re-created namespace).
        a.set_namespace_limits(&ns, concurrent(1)).unwrap();
        ship(&a, &b, &mut off);
        assert_eq!(b.namespace_limits(&ns).unwrap(), concurrent(1));
        a.delete_namespace(&ns).unwrap();
        let outcomes = ship(&a, &b, &mut off);
        let limits: Vec<_> = outcomes.iter().filter(|(k, _)| k == "limits/tenant").collect();
        assert_eq!(limits.len(), 1, "the override's tombstone published: {outcomes:?}");
        let ns_at = outcomes.iter().position(|(k, _)| k == "namespace/tenant").unwrap();
        let limits_at = outcomes.iter().position(|(k, _)| k == "limits/tenant").unwrap();
        assert!(limits_at < ns_at, "before the namespace's own tombstone: {outcomes:?}");
        assert!(b.get_namespace(&ns).unwrap().is_none());
        assert!(b.namespace_limits(&ns).unwrap().is_empty());
        // Nothing b applied went into b's own feed.
        b.enable_entity_feed("c2").unwrap();
        assert!(b.feed_pending(10).unwrap().iter().all(|e| !e.key.starts_with("limits/")));
    }

    /// A host that missed the override's own tombstone (compaction, or the namespace record
    /// reached it alone) still drops the override with the namespace's tombstone.
    #[test]
    fn a_namespace_tombstone_alone_removes_the_override() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = ns();
        a.create_namespace(&ns).unwrap();
        a.set_namespace_limits(&ns, concurrent(2)).unwrap();
        let mut off = 0;
        ship(&a, &b, &mut off);
        assert_eq!(b.namespace_limits(&ns).unwrap(), concurrent(2));
        assert_eq!(
            b.apply_entity("namespace/tenant", None, None, off, 0).unwrap(),
            Applied::Changed
        );
        assert!(b.namespace_limits(&ns).unwrap().is_empty());
    }

    /// Applying never checks the namespace (its record may come later); a garbled override
    /// is refused before the hot path could trip on it; a kind this version does not know is
    /// skipped, its offset recorded, and the override untouched.
    #[test]
    fn records_apply_in_any_order_garbage_is_refused_and_unknown_kinds_are_skipped() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = ns();
        a.create_namespace(&ns).unwrap();
        a.set_namespace_limits(&ns, concurrent(5)).unwrap();
        let entries = a.feed_pending(10).unwrap();
        let limits = entries.iter().find(|e| e.key == "limits/tenant").unwrap();
        let value = limits.value.clone().unwrap();
        assert_eq!(
            b.apply_entity(&limits.key, Some(&value), None, 0, 0).unwrap(),
            Applied::Changed
        );
        assert_eq!(b.namespace_limits(&ns).unwrap(), concurrent(5), "before its namespace");

        let header = crate::store::feed::WireHeader { origin: "c9".into(), seq: 1 };
        let bad = crate::store::feed::encode_wire(&header, br#"{"bogus":1}"#, &[]);
        assert!(b.apply_entity("limits/tenant", Some(&bad), None, 1, 0).is_err());
        assert!(b.apply_entity("limits/../x", Some(&value), None, 1, 0).is_err(), "bad name");
        assert_eq!(b.namespace_limits(&ns).unwrap(), concurrent(5), "nothing written");
        assert_eq!(b.entity_offset().unwrap(), Some(1), "a failed apply stores no offset");

        assert_eq!(
            b.apply_entity("quota/tenant", Some(&value), None, 1, 0).unwrap(),
            Applied::Unknown
        );
        assert_eq!(b.entity_offset().unwrap(), Some(2));
        assert_eq!(b.namespace_limits(&ns).unwrap(), concurrent(5));
    }

    /// After a topic reset the overrides are re-published with everything else, and a host
    /// replaying the new topic gets them; where they are held already nothing changes.
    #[test]
    fn overrides_are_republished_after_a_topic_reset() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = ns();
        a.create_namespace(&ns).unwrap();
        a.set_namespace_limits(&ns, concurrent(7)).unwrap();
        let mut off = 0;
        ship(&a, &b, &mut off);
        assert_eq!(a.republish_entities().unwrap(), 3, "the namespace, its key, its override");
        let outcomes = ship(&a, &b, &mut off);
        assert!(outcomes.iter().all(|(_, o)| *o == Applied::Unchanged), "{outcomes:?}");
        let (_dc, c) = temp_store();
        a.republish_entities().unwrap();
        let mut oc = 0;
        ship(&a, &c, &mut oc);
        assert_eq!(c.namespace_limits(&ns).unwrap(), concurrent(7));
    }
}
