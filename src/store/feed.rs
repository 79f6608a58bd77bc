//! The entity change feed: an outbox of entity writes, for controllers on several hosts.
//!
//! When the feed is enabled (a controller joined to a Kafka bus calls
//! [`Store::enable_entity_feed`]; the setting is stored, so `hearthd admin` writing into the same
//! data directory feeds too), every entity write (action put/delete, namespace create/delete,
//! key create/revoke, limit override set/clear, ...) appends the changed entity keys to the
//! `feed` database **in the same write transaction** as the change. A publisher (hearthd's
//! cluster wiring) drains the feed to the compacted entity topic: [`Store::feed_pending`]
//! hands the oldest entries with the entity's *current* value encoded for the wire,
//! [`Store::feed_done`] removes them once the broker holds them. So a write can never be
//! committed locally and then forgotten by the cluster, whatever crashes in between: at worst
//! it is published twice (idempotent).
//!
//! Acknowledgement: with a [`PublishWaiter`] installed, a write returns only after its local
//! commit **and** the broker's acknowledgement of its feed entry (bounded by the waiter); when
//! the wait fails the write is still committed here and stays in the feed, and the caller gets
//! [`StoreError::NotReplicated`] saying so.
//!
//! Owns: the feed and `feed_last` databases, the `entity_origin` and `feed_seq` meta keys, the
//! entity key names and the wire encoding of entity values. Must never: publish anything
//! itself (no network here), or block a write on the waiter while its transaction is open.

use std::sync::Arc;

use heed::{RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use super::codec::{be_u64, show_key};
use super::error::lmdb;
use super::replica::{apply_revisioned, Revisioned};
use super::{Store, StoreError};

const ORIGIN: &[u8] = b"entity_origin";
const FEED_SEQ: &[u8] = b"feed_seq";

/// Entity key prefixes on the entity topic.
pub const ACTION_PREFIX: &str = "action/";
pub const NAMESPACE_PREFIX: &str = "namespace/";
pub const KEY_PREFIX: &str = "key/";
pub const PACKAGE_PREFIX: &str = "package/";
pub const ROUTE_PREFIX: &str = "route/";
/// A namespace's limit overrides (`namespace_limits.rs`): `limits/ns`.
pub const LIMITS_PREFIX: &str = "limits/";

/// One kind of entity on the entity topic: how this store reads it for publication and
/// applies it from the topic. Each kind is implemented beside its own store file; adding a
/// kind is one implementation and one line in [`KINDS`]. Keys passed in and out are the
/// entity's store key, without the topic prefix.
pub(crate) trait EntityKind: Sync + std::fmt::Debug {
    /// The key prefix on the topic (`action/`).
    fn prefix(&self) -> &'static str;
    /// For kinds with revisions (the highest wins, deletions leave floors): where they are
    /// kept. Such a kind needs nothing else: every other method has its default from this.
    fn revisioned<'s>(&self, _s: &'s Store) -> Option<Revisioned<'s>> {
        None
    }
    /// Every entity of this kind held here, to publish when joining a cluster or after a
    /// topic reset.
    fn held(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        let Some(r) = self.revisioned(s) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in r.db.iter(txn).map_err(lmdb("iter", r.name))? {
            out.push(show_key(item.map_err(lmdb("iter", r.name))?.0));
        }
        Ok(out)
    }
    /// Entities deleted here whose deletion must be published again after a topic reset.
    fn deletions(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        let Some(r) = self.revisioned(s) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (key, _) in s.floors_in(txn, r.floors)? {
            if r.db.get(txn, key.as_bytes()).map_err(lmdb("get", r.name))?.is_none() {
                out.push(key);
            }
        }
        Ok(out)
    }
    /// The revision a tombstone of `key` deletes, for kinds with revisions.
    fn deleted_revision(
        &self,
        s: &Store,
        txn: &RoTxn,
        key: &str,
    ) -> Result<Option<u64>, StoreError> {
        match self.revisioned(s) {
            Some(r) => s.floor_in(txn, r.floors, key),
            None => Ok(None),
        }
    }
    /// The current value of `key` in wire form; `None` when it does not exist here.
    fn wire_value(
        &self,
        s: &Store,
        txn: &RoTxn,
        key: &str,
        header: &WireHeader,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(r) = self.revisioned(s) else { return Ok(None) };
        let k = key.as_bytes();
        let Some(record) = r.db.get(txn, k).map_err(lmdb("get", r.name))? else {
            return Ok(None);
        };
        let payload = match r.payload {
            Some((db, name)) => db.get(txn, k).map_err(lmdb("get", name))?.unwrap_or(&[]),
            None => &[],
        };
        Ok(Some(encode_wire(header, record, payload)))
    }
    /// Applies a record (`Some`) or a tombstone (`None`) of `key` from the topic.
    fn apply(
        &self,
        s: &Store,
        wtxn: &mut RwTxn,
        key: &str,
        wire: Option<&WireValue>,
        deleted_revision: Option<u64>,
    ) -> Result<super::Applied, StoreError> {
        match self.revisioned(s) {
            Some(r) => apply_revisioned(s, wtxn, &r, key, wire, deleted_revision),
            None => Ok(super::Applied::Unknown),
        }
    }
}

/// Every entity kind, in the order a host replaying the topic needs them: a namespace before
/// its keys, a package before its actions.
pub(crate) const KINDS: &[&dyn EntityKind] = &[
    &super::namespaces::NamespaceKind,
    &super::keys::KeyKind,
    &super::namespace_limits::LimitsKind,
    &super::packages::PackageKind,
    &super::actions::ActionKind,
    &super::named::TRIGGER_KIND,
    &super::named::RULE_KIND,
    &super::named::ALARM_KIND,
    &super::routes::RouteKind,
];

/// The kind of a topic key and the key without its prefix.
pub(crate) fn kind_of(key: &str) -> Option<(&'static dyn EntityKind, &str)> {
    KINDS.iter().find_map(|k| key.strip_prefix(k.prefix()).map(|rest| (*k, rest)))
}

/// Waits until the feed entry `seq` is published (installed by the cluster wiring). Called on
/// the writing thread after the commit (a blocking thread: the controller runs writes there).
pub trait PublishWaiter: Send + Sync + 'static {
    /// `Ok` once the broker acknowledged every feed entry up to `seq`; `Err(why)` when it
    /// could not within the waiter's bound.
    fn wait_published(&self, seq: u64) -> Result<(), String>;
}

/// One entry of the outbox, ready for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub seq: u64,
    /// The entity key on the topic (`action/ns/name`, `namespace/ns`, `key/<uuid>`,
    /// `limits/ns`, ...: the prefixes above).
    pub key: String,
    /// The encoded current value; `None`: the entity is gone (a tombstone).
    pub value: Option<Vec<u8>>,
    /// For a deleted action: the highest revision of it deleted here, published with the
    /// tombstone so that a host holding a newer re-creation keeps it (`replica.rs`).
    pub deleted_revision: Option<u64>,
}

/// Who wrote a record and at which feed position: lets the writer recognise its own echo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireHeader {
    pub origin: String,
    pub seq: u64,
}

/// A decoded entity value: header, the record as stored, and the code of an action.
#[derive(Debug)]
pub(crate) struct WireValue<'a> {
    pub header: WireHeader,
    pub record: &'a [u8],
    pub code: &'a [u8],
}

/// `[u32 len][header JSON][u32 len][record as stored][code...]`: the record bytes are the
/// store's own encoding, copied, and the code travels raw (no base64 on 48 MB).
pub(crate) fn encode_wire(header: &WireHeader, record: &[u8], code: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(8 + h.len() + record.len() + code.len());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(code);
    out
}

pub(crate) fn decode_wire<'a>(key: &str, bytes: &'a [u8]) -> Result<WireValue<'a>, StoreError> {
    let corrupt = |message: &str| StoreError::Corrupt {
        db: "entity topic",
        key: key.to_owned(),
        message: message.to_owned(),
    };
    let take = |b: &'a [u8]| -> Option<(&'a [u8], &'a [u8])> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let rest = b.get(4..)?;
        Some((rest.get(..len)?, rest.get(len..)?))
    };
    let (h, rest) = take(bytes).ok_or_else(|| corrupt("truncated header"))?;
    let (record, code) = take(rest).ok_or_else(|| corrupt("truncated record"))?;
    let header: WireHeader =
        serde_json::from_slice(h).map_err(|e| corrupt(&format!("header: {e}")))?;
    Ok(WireValue { header, record, code })
}

impl Store {
    /// Turns the feed on for this data directory (stored), naming this host as the origin of
    /// its writes. The first time, every existing entity is queued, so a controller that
    /// joins a cluster with data publishes it. Idempotent.
    pub fn enable_entity_feed(&self, origin: &str) -> Result<(), StoreError> {
        let mut wtxn = self.write_txn()?;
        let had = self.origin_in(&wtxn)?;
        self.dbs().meta.put(&mut wtxn, ORIGIN, origin.as_bytes()).map_err(lmdb("put", "meta"))?;
        if had.is_none() {
            let n = self.queue_all_in(&mut wtxn)?;
            tracing::info!(origin, entities = n, "entity feed enabled: existing entities queued");
        }
        wtxn.commit().map_err(lmdb("commit", "meta"))
    }

    /// Queues every entity held here, and every action deletion known here, for publication
    /// again, when the feed is on (a controller); returns how many (0 on an invoker, whose
    /// store has no feed). Called when
    /// the entity topic was reset (a broker with memory storage restarted): hosts started
    /// afterwards would otherwise never learn the entities written before. Idempotent for
    /// every host: a record equal to what a host holds changes nothing there
    /// (`replica.rs`), and with several controllers re-publishing, the highest revision of
    /// each action still wins everywhere.
    pub fn republish_entities(&self) -> Result<usize, StoreError> {
        let mut wtxn = self.write_txn()?;
        if self.origin_in(&wtxn)?.is_none() {
            return Ok(0);
        }
        let n = self.queue_all_in(&mut wtxn)? + self.queue_deletions_in(&mut wtxn)?;
        wtxn.commit().map_err(lmdb("commit", "feed"))?;
        Ok(n)
    }

    /// Appends every entity to the feed (in [`KINDS`] order).
    fn queue_all_in(&self, wtxn: &mut RwTxn) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        for kind in KINDS {
            keys.extend(
                kind.held(self, wtxn)?.into_iter().map(|k| format!("{}{k}", kind.prefix())),
            );
        }
        self.feed_in(wtxn, &keys)?;
        Ok(keys.len())
    }

    /// Appends the deletion of every entity deleted here and not created again (a tombstone
    /// with its revision for kinds that have one: a deletion the broker lost reaches the hosts
    /// that missed it, and a host holding a newer re-creation keeps that).
    fn queue_deletions_in(&self, wtxn: &mut RwTxn) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        for kind in KINDS {
            let gone = kind.deletions(self, wtxn)?;
            keys.extend(gone.into_iter().map(|k| format!("{}{k}", kind.prefix())));
        }
        self.feed_in(wtxn, &keys)?;
        Ok(keys.len())
    }

    /// Installs the waiter that makes entity writes wait for their publication. Once per
    /// store (later calls are ignored).
    pub fn set_publish_waiter(&self, waiter: Arc<dyn PublishWaiter>) {
        if self.inner.publish_waiter.set(waiter).is_err() {
            tracing::warn!("a publish waiter was already installed; keeping the first");
        }
    }

    pub(crate) fn origin_in(&self, rtxn: &RoTxn) -> Result<Option<String>, StoreError> {
        Ok(self
            .dbs()
            .meta
            .get(rtxn, ORIGIN)
            .map_err(lmdb("get", "meta"))?
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// Appends `keys` to the feed inside the caller's transaction when the feed is enabled;
    /// returns the last sequence number used, `None` when the feed is off.
    pub(crate) fn feed_in(
        &self,
        wtxn: &mut RwTxn,
        keys: &[String],
    ) -> Result<Option<u64>, StoreError> {
        if keys.is_empty() || self.origin_in(wtxn)?.is_none() {
            return Ok(None);
        }
        let mut seq = match self.dbs().meta.get(wtxn, FEED_SEQ).map_err(lmdb("get", "meta"))? {
            Some(b) => be_u64("meta", FEED_SEQ, b)?,
            None => 0,
        };
        for key in keys {
            seq += 1;
            let s = seq.to_be_bytes();
            self.dbs().feed.put(wtxn, &s, key.as_bytes()).map_err(lmdb("put", "feed"))?;
            self.dbs().feed_last.put(wtxn, key.as_bytes(), &s).map_err(lmdb("put", "feed_last"))?;
        }
        self.dbs().meta.put(wtxn, FEED_SEQ, &seq.to_be_bytes()).map_err(lmdb("put", "meta"))?;
        Ok(Some(seq))
    }

    /// After a commit: waits for the publication of feed entry `seq` when a waiter is
    /// installed. The write itself is committed either way.
    pub(crate) fn await_published(&self, what: &str, seq: Option<u64>) -> Result<(), StoreError> {
        let (Some(seq), Some(waiter)) = (seq, self.inner.publish_waiter.get()) else {
            return Ok(());
        };
        waiter
            .wait_published(seq)
            .map_err(|reason| StoreError::NotReplicated { entity: what.to_owned(), reason })
    }

    /// The last feed position used in this data dir (0 before the first write); `None` when
    /// the feed is off. With [`Store::feed_published_through`], lets a process without a
    /// publisher of its own (`hearthd admin`) wait for the controller on the same data dir to
    /// publish its writes.
    pub fn feed_position(&self) -> Result<Option<u64>, StoreError> {
        let rtxn = self.read_txn()?;
        if self.origin_in(&rtxn)?.is_none() {
            return Ok(None);
        }
        match self.dbs().meta.get(&rtxn, FEED_SEQ).map_err(lmdb("get", "meta"))? {
            Some(b) => Ok(Some(be_u64("meta", FEED_SEQ, b)?)),
            None => Ok(Some(0)),
        }
    }

    /// Whether every feed entry up to `seq` is published: the publisher removes an entry only
    /// after the broker acknowledged it ([`Store::feed_done`]), so none left at or below `seq`
    /// means the broker holds them all.
    pub fn feed_published_through(&self, seq: u64) -> Result<bool, StoreError> {
        let rtxn = self.read_txn()?;
        match self.dbs().feed.first(&rtxn).map_err(lmdb("first", "feed"))? {
            Some((k, _)) => Ok(be_u64("feed", k, k)? > seq),
            None => Ok(true),
        }
    }

    /// The oldest `max` feed entries with their entities' current values, encoded for the
    /// entity topic.
    pub fn feed_pending(&self, max: usize) -> Result<Vec<FeedEntry>, StoreError> {
        let rtxn = self.read_txn()?;
        let origin = self.origin_in(&rtxn)?.unwrap_or_default();
        let mut out = Vec::new();
        for item in self.dbs().feed.iter(&rtxn).map_err(lmdb("iter", "feed"))?.take(max) {
            let (k, v) = item.map_err(lmdb("iter", "feed"))?;
            let seq = be_u64("feed", k, k)?;
            let key = String::from_utf8_lossy(v).into_owned();
            let header = WireHeader { origin: origin.clone(), seq };
            let (value, deleted_revision) = match kind_of(&key) {
                Some((kind, k)) => {
                    let value = kind.wire_value(self, &rtxn, k, &header)?;
                    let deleted = match value {
                        None => kind.deleted_revision(self, &rtxn, k)?,
                        Some(_) => None,
                    };
                    (value, deleted)
                }
                None => {
                    tracing::warn!(
                        key,
                        "unknown entity kind in the feed; published as a tombstone"
                    );
                    (None, None)
                }
            };
            out.push(FeedEntry { seq, key, value, deleted_revision });
        }
        Ok(out)
    }

    /// Removes every feed entry up to `seq` (published).
    pub fn feed_done(&self, seq: u64) -> Result<(), StoreError> {
        let mut wtxn = self.write_txn()?;
        let mut done = Vec::new();
        for item in self.dbs().feed.iter(&wtxn).map_err(lmdb("iter", "feed"))? {
            let (k, _) = item.map_err(lmdb("iter", "feed"))?;
            if be_u64("feed", k, k)? > seq {
                break;
            }
            done.push(k.to_vec());
        }
        for k in &done {
            self.dbs().feed.delete(&mut wtxn, k).map_err(lmdb("delete", "feed"))?;
        }
        wtxn.commit().map_err(lmdb("commit", "feed"))
    }

    /// The last local feed position that wrote `key` (0: none).
    pub(crate) fn feed_last_in(&self, rtxn: &RoTxn, key: &str) -> Result<u64, StoreError> {
        match self.dbs().feed_last.get(rtxn, key.as_bytes()).map_err(lmdb("get", "feed_last"))? {
            Some(b) => be_u64("feed_last", key.as_bytes(), b),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityName, FullyQualifiedName, Kind};
    use crate::store::test_util::temp_store;
    use crate::store::{ActionUpdate, ExecUpdate};

    fn up(code: &str) -> ActionUpdate {
        ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse("python:3").unwrap(),
                main: None,
                binary: false,
                image: None,
                code: code.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn wire_round_trip_and_truncation() {
        let h = WireHeader { origin: "c1".into(), seq: 9 };
        let w = encode_wire(&h, b"{\"a\":1}", b"CODE");
        let v = decode_wire("k", &w).unwrap();
        assert_eq!((v.header, v.record, v.code), (h, &b"{\"a\":1}"[..], &b"CODE"[..]));
        assert!(decode_wire("k", &w[..6]).is_err());
        assert!(decode_wire("k", b"").is_err());
    }

    #[test]
    fn feed_is_off_until_enabled_then_queues_existing_and_new_writes() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        s.create_namespace(&ns).unwrap();
        assert!(s.feed_pending(10).unwrap().is_empty(), "off by default: nothing queued");
        s.enable_entity_feed("c1").unwrap();
        let first = s.feed_pending(10).unwrap();
        let keys: Vec<_> = first.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[0], "namespace/guest");
        assert!(keys[1].starts_with("key/"));
        s.feed_done(first[1].seq).unwrap();
        assert!(s.feed_pending(10).unwrap().is_empty());

        let f = FullyQualifiedName::new(ns, EntityName::parse("a").unwrap());
        s.put_action(&f, up("CODE"), false).unwrap();
        let e = s.feed_pending(10).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, "action/guest/a");
        let v = decode_wire(&e[0].key, e[0].value.as_deref().unwrap()).unwrap();
        assert_eq!((v.header.origin.as_str(), v.code), ("c1", &b"CODE"[..]));
        s.delete_action(&f).unwrap();
        let e = s.feed_pending(10).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].value, None, "the delete is a tombstone");
        // Enabling again queues nothing more.
        s.enable_entity_feed("c1").unwrap();
        assert_eq!(s.feed_pending(10).unwrap().len(), 2);
    }

    #[test]
    fn the_feed_position_tells_when_a_write_is_published() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        s.create_namespace(&ns).unwrap();
        assert_eq!(s.feed_position().unwrap(), None, "off");
        s.enable_entity_feed("c1").unwrap();
        let queued = s.feed_position().unwrap().unwrap();
        assert_eq!(queued, 2, "the namespace and its key");
        assert!(!s.feed_published_through(queued).unwrap());
        s.feed_done(1).unwrap();
        assert!(s.feed_published_through(1).unwrap());
        assert!(!s.feed_published_through(2).unwrap());
        s.feed_done(2).unwrap();
        assert!(s.feed_published_through(queued).unwrap());
        s.create_key(&ns).unwrap();
        assert_eq!(s.feed_position().unwrap(), Some(3));
        assert!(!s.feed_published_through(3).unwrap());
    }

    struct Refuse;
    impl PublishWaiter for Refuse {
        fn wait_published(&self, seq: u64) -> Result<(), String> {
            Err(format!("broker down at {seq}"))
        }
    }

    #[test]
    fn a_failed_publication_is_reported_but_the_write_stays_committed_and_queued() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        s.create_namespace(&ns).unwrap();
        s.enable_entity_feed("c1").unwrap();
        s.set_publish_waiter(Arc::new(Refuse));
        let f = FullyQualifiedName::new(ns, EntityName::parse("a").unwrap());
        let err = s.put_action(&f, up("x"), false).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotReplicated { entity, .. } if entity == "action/guest/a"),
            "{err}"
        );
        assert!(err.to_string().contains("broker down"), "{err}");
        assert!(s.get_action(&f).unwrap().is_some());
        assert!(s.feed_pending(10).unwrap().iter().any(|e| e.key == "action/guest/a"));
    }
}
