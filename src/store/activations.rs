//! Activation records: id -> [`Activation`] (JSON), plus two indexes that make listing and
//! retention range scans:
//! - `activations_by_ns`: `ns 0x00 start_ms(BE u64) id(16)` -> action name, scanned backwards
//!   for newest-first listing; the name in the value filters by action without decoding
//!   records.
//! - `activations_by_time`: `start_ms(BE u64) id(16)` -> namespace, scanned forwards by
//!   retention.
//!
//! A record and its index entries are always written and deleted in the same transaction.

use std::ops::Bound;

use heed::RwTxn;

use super::codec::{decode, encode, show_key};
use super::error::lmdb;
use super::pending::UnclaimedRule;
use super::{Store, StoreError};
use crate::model::{Activation, ActivationId, EntityName};

/// Records returned by a list when the caller gives no limit (OpenWhisk's default).
pub const ACTIVATION_LIST_DEFAULT: usize = 30;
/// The largest page a list returns (OpenWhisk's maximum).
pub const ACTIVATION_LIST_MAX: usize = 200;

/// Records deleted per write transaction by retention, so one prune never holds the writer
/// lock (which `hearthd admin` and the record writer share) for long.
const PRUNE_BATCH: usize = 5000;

/// Filters of an activation listing; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationQuery {
    /// Only activations of this action name.
    pub name: Option<String>,
    /// Only activations that started at or after this time (ms since the epoch).
    pub since: Option<u64>,
    /// Only activations that started at or before this time (ms since the epoch).
    pub upto: Option<u64>,
    pub skip: usize,
    pub limit: usize,
}

fn ns_prefix(ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 25);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k
}

fn ns_key(ns: &str, start: u64, id: &ActivationId) -> Vec<u8> {
    let mut k = ns_prefix(ns);
    k.extend_from_slice(&start.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn time_key(start: u64, id: &ActivationId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&start.to_be_bytes());
    k[8..].copy_from_slice(id.as_bytes());
    k
}

/// The id in the last 16 bytes of an index key.
fn id_of_index_key(db: &'static str, key: &[u8]) -> Result<ActivationId, StoreError> {
    key.len()
        .checked_sub(16)
        .and_then(|at| <[u8; 16]>::try_from(&key[at..]).ok())
        .map(ActivationId::from_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            db,
            key: show_key(key),
            message: "index key too short".into(),
        })
}

/// The `start_ms id` suffix (24 bytes) of an index key.
fn time_suffix(db: &'static str, key: &[u8]) -> Result<[u8; 24], StoreError> {
    key.len().checked_sub(24).and_then(|at| <[u8; 24]>::try_from(&key[at..]).ok()).ok_or_else(
        || StoreError::Corrupt { db, key: show_key(key), message: "index key too short".into() },
    )
}

/// The keys of a record's two index entries: by namespace and start, by start.
fn index_keys(a: &Activation) -> (Vec<u8>, Vec<u8>) {
    (ns_key(&a.namespace, a.start, &a.activation_id), time_key(a.start, &a.activation_id).to_vec())
}

impl Store {
    /// Writes records and their index entries in one transaction (the record writer batches).
    pub fn put_activations(&self, records: &[Activation]) -> Result<(), StoreError> {
        self.commit_activations(records, &[])
    }

    /// One transaction: `pending` stubs are written first, then the finished `records`, each
    /// of which replaces its own pending stub (a stub and its record may share a batch, and a
    /// stub is always submitted before its record).
    pub fn commit_activations(
        &self,
        records: &[Activation],
        pending: &[Activation],
    ) -> Result<(), StoreError> {
        self.commit_records(records, pending, &[]).map(|_| ())
    }

    /// The record writer's transaction: as [`commit_activations`](Self::commit_activations),
    /// then the `unclaimed` records, each where its [`UnclaimedRule`] allows and never over a
    /// real record (the rule of `store/record_feed.rs`), fed to the records outbox like every
    /// record this controller writes. Returns the ids of the unclaimed records written.
    pub fn commit_records(
        &self,
        records: &[Activation],
        pending: &[Activation],
        unclaimed: &[(Activation, UnclaimedRule)],
    ) -> Result<Vec<ActivationId>, StoreError> {
        if records.is_empty() && pending.is_empty() && unclaimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut wtxn = self.write_txn()?;
        for a in pending {
            self.put_pending_in(&mut wtxn, a)?;
        }
        for a in records {
            self.put_activation_in(&mut wtxn, a)?;
        }
        let mut written = Vec::new();
        for (a, rule) in unclaimed {
            if self.settle_in(&mut wtxn, a, *rule == UnclaimedRule::Adopted, true)? {
                written.push(a.activation_id);
            }
        }
        wtxn.commit().map_err(lmdb("commit", "activations"))?;
        if !records.is_empty() || !written.is_empty() {
            self.record_feed_committed();
        }
        Ok(written)
    }

    /// A finished record written here (by this controller's record writer, unclaimed ones
    /// included, or its restart's placeholders): [`write_activation_in`](Self::write_activation_in),
    /// and in a cluster its entry in the records outbox, in the same transaction.
    pub(crate) fn put_activation_in(
        &self,
        wtxn: &mut RwTxn,
        a: &Activation,
    ) -> Result<(), StoreError> {
        self.write_activation_in(wtxn, a)?;
        self.feed_record_in(wtxn, &a.activation_id)
    }

    /// A finished record, its index entries, and the removal of its pending stub; never fed
    /// to the records topic (records materialised from it are written here).
    pub(crate) fn write_activation_in(
        &self,
        wtxn: &mut RwTxn,
        a: &Activation,
    ) -> Result<(), StoreError> {
        let d = self.dbs();
        let id = a.activation_id.as_bytes();
        let v = encode("activations", id, a)?;
        let (by_ns, by_time) = index_keys(a);
        d.activations.put(wtxn, id, &v).map_err(lmdb("put", "activations"))?;
        let name = a.name.as_bytes();
        d.activations_by_ns.put(wtxn, &by_ns, name).map_err(lmdb("put", "activations_by_ns"))?;
        let ns = a.namespace.as_bytes();
        d.activations_by_time
            .put(wtxn, &by_time, ns)
            .map_err(lmdb("put", "activations_by_time"))?;
        d.pending.delete(wtxn, id).map_err(lmdb("delete", "pending"))?;
        Ok(())
    }

    /// Removes a record and its index entries.
    pub(crate) fn delete_activation_in(
        &self,
        wtxn: &mut RwTxn,
        a: &Activation,
    ) -> Result<(), StoreError> {
        let d = self.dbs();
        let (by_ns, by_time) = index_keys(a);
        for (db, key, name) in [
            (&d.activations, a.activation_id.as_bytes().to_vec(), "activations"),
            (&d.activations_by_ns, by_ns, "activations_by_ns"),
            (&d.activations_by_time, by_time, "activations_by_time"),
        ] {
            db.delete(wtxn, &key).map_err(lmdb("delete", name))?;
        }
        Ok(())
    }

    /// One record, only if it belongs to `ns` (another namespace's record reads as absent).
    pub fn get_activation(
        &self,
        ns: &EntityName,
        id: &ActivationId,
    ) -> Result<Option<Activation>, StoreError> {
        let rtxn = self.read_txn()?;
        let k = id.as_bytes();
        let Some(v) = self.dbs().activations.get(&rtxn, k).map_err(lmdb("get", "activations"))?
        else {
            return Ok(None);
        };
        let a: Activation = decode("activations", k, v)?;
        Ok((a.namespace == ns.as_str()).then_some(a))
    }

    /// Walks the namespace index newest first, applying the filters; calls `f` with each
    /// matching id until it returns false.
    fn scan_ns(
        &self,
        rtxn: &heed::RoTxn,
        ns: &EntityName,
        q: &ActivationQuery,
        mut f: impl FnMut(ActivationId) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let lo = {
            let mut k = ns_prefix(ns.as_str());
            k.extend_from_slice(&q.since.unwrap_or(0).to_be_bytes());
            k
        };
        let hi = {
            let mut k = ns_prefix(ns.as_str());
            k.extend_from_slice(&q.upto.unwrap_or(u64::MAX).to_be_bytes());
            k.extend_from_slice(&[0xff; 16]);
            k
        };
        let range = (Bound::Included(lo.as_slice()), Bound::Included(hi.as_slice()));
        let iter = self
            .dbs()
            .activations_by_ns
            .rev_range(rtxn, &range)
            .map_err(lmdb("rev_range", "activations_by_ns"))?;
        for item in iter {
            let (k, name) = item.map_err(lmdb("rev_range", "activations_by_ns"))?;
            if let Some(want) = &q.name {
                if name != want.as_bytes() {
                    continue;
                }
            }
            if !f(id_of_index_key("activations_by_ns", k)?)? {
                break;
            }
        }
        Ok(())
    }

    /// Records of `ns`, newest first, filtered and paged by `q`.
    pub fn list_activations(
        &self,
        ns: &EntityName,
        q: &ActivationQuery,
    ) -> Result<Vec<Activation>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        let mut skipped = 0;
        self.scan_ns(&rtxn, ns, q, |id| {
            if skipped < q.skip {
                skipped += 1;
                return Ok(true);
            }
            let k = id.as_bytes();
            if let Some(v) =
                self.dbs().activations.get(&rtxn, k).map_err(lmdb("get", "activations"))?
            {
                out.push(decode("activations", k, v)?);
            }
            Ok(out.len() < q.limit)
        })?;
        Ok(out)
    }

    /// How many records of `ns` match the filters (skip and limit ignored).
    pub fn count_activations(
        &self,
        ns: &EntityName,
        q: &ActivationQuery,
    ) -> Result<usize, StoreError> {
        let rtxn = self.read_txn()?;
        let mut n = 0;
        self.scan_ns(&rtxn, ns, q, |_| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    /// Deletes every record that started before `older_than_ms`; returns how many.
    pub fn prune_activations(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let mut wtxn = self.write_txn()?;
            let d = self.dbs();
            let mut doomed: Vec<([u8; 24], Vec<u8>)> = Vec::new();
            let upper = older_than_ms.to_be_bytes();
            let range = (Bound::Unbounded, Bound::Excluded(upper.as_slice()));
            for item in d
                .activations_by_time
                .range(&wtxn, &range)
                .map_err(lmdb("range", "activations_by_time"))?
            {
                let (k, ns) = item.map_err(lmdb("range", "activations_by_time"))?;
                doomed.push((time_suffix("activations_by_time", k)?, ns.to_vec()));
                if doomed.len() == PRUNE_BATCH {
                    break;
                }
            }
            for (tk, ns) in &doomed {
                let id = id_of_index_key("activations_by_time", tk)?;
                d.activations
                    .delete(&mut wtxn, id.as_bytes())
                    .map_err(lmdb("delete", "activations"))?;
                d.activations_by_time
                    .delete(&mut wtxn, tk)
                    .map_err(lmdb("delete", "activations_by_time"))?;
                let mut nk = ns.clone();
                nk.push(0);
                nk.extend_from_slice(tk);
                d.activations_by_ns
                    .delete(&mut wtxn, &nk)
                    .map_err(lmdb("delete", "activations_by_ns"))?;
            }
            wtxn.commit().map_err(lmdb("commit", "activations"))?;
            total += doomed.len();
            if doomed.len() < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }

    pub(crate) fn delete_activations_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<usize, StoreError> {
        let prefix = ns_prefix(ns.as_str());
        let d = self.dbs();
        let mut doomed = Vec::new();
        for item in d
            .activations_by_ns
            .prefix_iter(wtxn, &prefix)
            .map_err(lmdb("prefix_iter", "activations_by_ns"))?
        {
            let (k, _) = item.map_err(lmdb("prefix_iter", "activations_by_ns"))?;
            doomed.push(k.to_vec());
        }
        for k in &doomed {
            let tk = time_suffix("activations_by_ns", k)?;
            let id = id_of_index_key("activations_by_ns", k)?;
            d.activations.delete(wtxn, id.as_bytes()).map_err(lmdb("delete", "activations"))?;
            d.activations_by_time
                .delete(wtxn, &tk)
                .map_err(lmdb("delete", "activations_by_time"))?;
            d.activations_by_ns.delete(wtxn, k).map_err(lmdb("delete", "activations_by_ns"))?;
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationResponse, AuthKey};
    use crate::store::test_util::temp_store;

    fn record(ns: &str, name: &str, start: u64) -> Activation {
        Activation {
            end: start + 5,
            duration: 5,
            response: ActivationResponse::success(serde_json::json!({"n": start})),
            logs: vec!["log line".into()],
            annotations: vec![],
            ..crate::testing::activation(ns, name, start)
        }
    }

    fn q(limit: usize) -> ActivationQuery {
        ActivationQuery { limit, ..Default::default() }
    }

    #[test]
    fn list_filters_and_pages_newest_first() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let mut all = Vec::new();
        for i in 0..10u64 {
            all.push(record("guest", if i % 2 == 0 { "even" } else { "odd" }, 1000 + i));
        }
        all.push(record("other", "even", 1005));
        s.put_activations(&all).unwrap();

        let starts = |v: Vec<Activation>| v.into_iter().map(|a| a.start).collect::<Vec<_>>();
        assert_eq!(starts(s.list_activations(&ns, &q(3)).unwrap()), [1009, 1008, 1007]);
        let page2 = ActivationQuery { skip: 3, limit: 3, ..Default::default() };
        assert_eq!(starts(s.list_activations(&ns, &page2).unwrap()), [1006, 1005, 1004]);
        let even = ActivationQuery { name: Some("even".into()), limit: 30, ..Default::default() };
        assert_eq!(starts(s.list_activations(&ns, &even).unwrap()), [1008, 1006, 1004, 1002, 1000]);
        let window = ActivationQuery {
            since: Some(1002),
            upto: Some(1004),
            limit: 30,
            ..Default::default()
        };
        assert_eq!(starts(s.list_activations(&ns, &window).unwrap()), [1004, 1003, 1002]);
        assert_eq!(s.count_activations(&ns, &even).unwrap(), 5);
        assert_eq!(s.count_activations(&ns, &q(0)).unwrap(), 10);

        let other_rec = &all[10];
        assert!(s.get_activation(&ns, &other_rec.activation_id).unwrap().is_none());
        let other = EntityName::parse("other").unwrap();
        assert_eq!(
            s.get_activation(&other, &other_rec.activation_id).unwrap().unwrap(),
            *other_rec
        );
    }

    #[test]
    fn retention_prunes_old_records_and_index() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let recs: Vec<_> = (0..6u64).map(|i| record("guest", "a", 100 * i)).collect();
        s.put_activations(&recs).unwrap();
        assert_eq!(s.prune_activations(250).unwrap(), 3);
        assert_eq!(s.count_activations(&ns, &q(0)).unwrap(), 3);
        assert!(s.get_activation(&ns, &recs[0].activation_id).unwrap().is_none());
        assert!(s.get_activation(&ns, &recs[3].activation_id).unwrap().is_some());
        assert_eq!(s.prune_activations(250).unwrap(), 0);
    }

    #[test]
    fn namespace_deletion_removes_everything() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("doomed").unwrap();
        let key = s.create_namespace(&ns).unwrap();
        let fqn =
            crate::model::FullyQualifiedName::new(ns.clone(), EntityName::parse("a").unwrap());
        let up = crate::store::ActionUpdate {
            exec: Some(crate::store::ExecUpdate {
                kind: crate::model::Kind::parse("nodejs").unwrap(),
                main: None,
                binary: false,
                image: None,
                code: b"x".to_vec(),
            }),
            ..Default::default()
        };
        s.put_action(&fqn, up, false).unwrap();
        let rec = record("doomed", "a", 5);
        s.put_activations(std::slice::from_ref(&rec)).unwrap();
        assert!(s.authenticate(&key.to_string()).unwrap().is_some());

        assert!(s.delete_namespace(&ns).unwrap());
        assert!(s.authenticate(&key.to_string()).unwrap().is_none());
        assert!(s.get_action(&fqn).unwrap().is_none());
        assert!(s.get_activation(&ns, &rec.activation_id).unwrap().is_none());
        assert_eq!(s.prune_activations(u64::MAX).unwrap(), 0, "time index cleaned too");
        assert!(!s.delete_namespace(&ns).unwrap());
        let _ = AuthKey::parse(&key.to_string()).unwrap();
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::store::StoreOptions { map_size: 64 << 20, ..Default::default() };
        let ns = EntityName::parse("guest").unwrap();
        let rec = record("guest", "a", 42);
        let key = {
            let s = Store::open(dir.path(), opts.clone()).unwrap();
            let key = s.create_namespace(&ns).unwrap();
            s.put_activations(std::slice::from_ref(&rec)).unwrap();
            key
        };
        let s = Store::open(dir.path(), opts).unwrap();
        assert_eq!(s.get_activation(&ns, &rec.activation_id).unwrap().unwrap(), rec);
        assert_eq!(s.authenticate(&key.to_string()).unwrap().unwrap().namespace, ns);
        assert_eq!(s.list_namespaces().unwrap().len(), 1);
    }
}
