//! The steps every small revisioned entity of `ns/name` shares (triggers, rules, alarm
//! schedules): the revision after a write (cluster-unique, above a deleted one's floor), the
//! write and delete with their feed keys, listing by namespace, and the entity topic's kind.
//! Packages and actions predate this and keep their own files.

use heed::{RoTxn, RwTxn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, scan, show_key};
use super::error::lmdb;
use super::feed::EntityKind;
use super::replica::Revisioned;
use super::{Db, Dbs, Store, StoreError};
use crate::model::{revision, EntityName};

/// One kind's database, names and topic prefix.
#[derive(Debug)]
pub(crate) struct Table {
    /// The database's name (error messages).
    pub name: &'static str,
    /// The key prefix on the entity topic (`trigger/`).
    pub prefix: &'static str,
    /// The meta prefix of its deletion floors.
    pub floors: &'static str,
    pub db: fn(&Dbs) -> &Db,
}

pub(crate) const TRIGGERS: Table =
    Table { name: "triggers", prefix: "trigger/", floors: "trigger_floor/", db: |d| &d.triggers };
pub(crate) const RULES: Table =
    Table { name: "rules", prefix: "rule/", floors: "rule_floor/", db: |d| &d.rules };
pub(crate) const ALARMS: Table =
    Table { name: "alarms", prefix: "alarm/", floors: "alarm_floor/", db: |d| &d.alarms };
/// API routes (`routes.rs` writes them; `ns{basepath}` keys start with `ns/` too): listed
/// here so that a namespace's deletion removes them with the rest.
pub(crate) const ROUTES: Table = Table {
    name: "routes",
    prefix: super::feed::ROUTE_PREFIX,
    floors: super::routes::ROUTE_FLOORS,
    db: |d| &d.routes,
};

/// A kind of [`Table`] on the entity topic: the highest revision wins (`replica.rs`).
#[derive(Debug)]
pub(crate) struct NamedKind(pub &'static Table);

pub(crate) const TRIGGER_KIND: NamedKind = NamedKind(&TRIGGERS);
pub(crate) const RULE_KIND: NamedKind = NamedKind(&RULES);
pub(crate) const ALARM_KIND: NamedKind = NamedKind(&ALARMS);

/// Every record of these kinds has a `revision` field; nothing else is read to compare.
#[derive(Deserialize)]
struct RevisionOnly {
    revision: u64,
}

impl EntityKind for NamedKind {
    fn prefix(&self) -> &'static str {
        self.0.prefix
    }

    fn revisioned<'s>(&self, s: &'s Store) -> Option<Revisioned<'s>> {
        Some(Revisioned {
            db: (self.0.db)(s.dbs()),
            name: self.0.name,
            floors: self.0.floors,
            payload: None,
            revision: |k, v| Ok(decode::<RevisionOnly>("entity", k, v)?.revision),
        })
    }
}

impl Store {
    pub(crate) fn named_in<T: DeserializeOwned>(
        &self,
        txn: &RoTxn,
        t: &Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        super::codec::get((t.db)(self.dbs()), t.name, txn, key)
    }

    /// The revision a write of `key` gets, after `existing` (`None`: a new record).
    pub(crate) fn named_revision_in(
        &self,
        wtxn: &mut RwTxn,
        t: &Table,
        key: &str,
        existing: Option<u64>,
    ) -> Result<u64, StoreError> {
        let origin = self.origin_in(wtxn)?;
        let previous = match existing {
            Some(r) => Some(r),
            None if origin.is_some() => self.take_floor_in(wtxn, t.floors, key)?,
            None => None,
        };
        Ok(revision::next(previous, origin.as_deref()))
    }

    /// Writes `v` under `key`; returns its feed key.
    pub(crate) fn put_named_in<T: Serialize>(
        &self,
        wtxn: &mut RwTxn,
        t: &Table,
        key: &str,
        v: &T,
    ) -> Result<String, StoreError> {
        let bytes = encode(t.name, key.as_bytes(), v)?;
        (t.db)(self.dbs()).put(wtxn, key.as_bytes(), &bytes).map_err(lmdb("put", t.name))?;
        Ok(format!("{}{key}", t.prefix))
    }

    /// Deletes `key` (of `revision`), leaving its floor in a cluster; returns its feed key.
    pub(crate) fn remove_named_in(
        &self,
        wtxn: &mut RwTxn,
        t: &Table,
        key: &str,
        revision: u64,
    ) -> Result<String, StoreError> {
        self.note_floor_in(wtxn, t.floors, key, revision)?;
        (t.db)(self.dbs()).delete(wtxn, key.as_bytes()).map_err(lmdb("delete", t.name))?;
        Ok(format!("{}{key}", t.prefix))
    }

    /// Commits `wtxn` after feeding `fed`, and waits for the publication of the last one.
    pub(crate) fn commit_named(
        &self,
        mut wtxn: RwTxn,
        t: &Table,
        fed: &[String],
    ) -> Result<(), StoreError> {
        let seq = self.feed_in(&mut wtxn, fed)?;
        wtxn.commit().map_err(lmdb("commit", t.name))?;
        match fed.last() {
            Some(last) => self.await_published(last, seq),
            None => Ok(()),
        }
    }

    /// Records of `ns` by name, `skip` then at most `limit`; all namespaces for `None`.
    pub(crate) fn list_named<T: DeserializeOwned>(
        &self,
        t: &Table,
        ns: Option<&EntityName>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let rtxn = self.read_txn()?;
        let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
        let mut out = Vec::new();
        for item in scan((t.db)(self.dbs()), &rtxn, t.name, &prefix)?.skip(skip).take(limit) {
            let (k, v) = item.map_err(lmdb("iter", t.name))?;
            out.push(decode(t.name, k, v)?);
        }
        Ok(out)
    }

    /// Deletes every record of `ns` (its namespace is being deleted); returns their feed keys.
    pub(crate) fn delete_named_of_in(
        &self,
        wtxn: &mut RwTxn,
        t: &Table,
        ns: &EntityName,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{ns}/");
        let mut doomed = Vec::new();
        for item in (t.db)(self.dbs())
            .prefix_iter(wtxn, prefix.as_bytes())
            .map_err(lmdb("prefix_iter", t.name))?
        {
            let (k, v) = item.map_err(lmdb("prefix_iter", t.name))?;
            doomed.push((show_key(k), decode::<RevisionOnly>(t.name, k, v)?.revision));
        }
        let mut fed = Vec::with_capacity(doomed.len());
        for (k, rev) in doomed {
            fed.push(self.remove_named_in(wtxn, t, &k, rev)?);
        }
        Ok(fed)
    }

    /// Every trigger, rule, schedule and API of `ns` (its namespace is being deleted).
    pub(crate) fn delete_events_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<Vec<String>, StoreError> {
        let mut fed = self.delete_named_of_in(wtxn, &TRIGGERS, ns)?;
        fed.extend(self.delete_named_of_in(wtxn, &RULES, ns)?);
        fed.extend(self.delete_named_of_in(wtxn, &ALARMS, ns)?);
        fed.extend(self.delete_named_of_in(wtxn, &ROUTES, ns)?);
        Ok(fed)
    }

    /// Refuses a name another collection of the namespace holds (OpenWhisk keeps actions,
    /// packages, triggers and rules under one name space).
    pub(crate) fn check_conformance_in(
        &self,
        txn: &RoTxn,
        own: &Table,
        key: &str,
    ) -> Result<(), StoreError> {
        let d = self.dbs();
        let mut others = vec![(&d.actions, "actions"), (&d.packages, "packages")];
        for t in [&TRIGGERS, &RULES] {
            if t.name != own.name {
                others.push(((t.db)(d), t.name));
            }
        }
        for (db, name) in others {
            if db.get(txn, key.as_bytes()).map_err(lmdb("get", name))?.is_some() {
                return Err(StoreError::Conformance(key.to_owned()));
            }
        }
        Ok(())
    }
}
