//! The store as a replica of the entity topic: every host (controllers and invokers) applies
//! the records of `hearth.entities` into its own LMDB, with the topic offset it reached stored
//! in the same transaction, so a restart resumes exactly after the last applied record.
//!
//! Convergence. Actions: the highest revision wins. Revisions are unique across controllers
//! and totally ordered (`model::revision`: update counter, then controller tag), so a host
//! keeps an incoming action only when its revision is above the one it holds, and every host
//! ends with the same action whatever order it saw the records in (two controllers updating
//! at once, a topic re-published by several controllers after a broker lost it). Namespaces
//! and keys (no revision): the topic's order decides. Deletions (tombstones) apply in topic
//! order. For all kinds, a host skips its *own* record when it has written that key again
//! since (its later write is further down the topic and will be applied in turn): without
//! that rule the echo of a write could briefly undo the next write of the same key on the
//! host that made both.
//!
//! Idempotence: a record equal to what the host holds (same revision and bytes for an
//! action, same bytes for a namespace or key) changes nothing and bumps nothing, so the
//! entities re-published after the broker lost the topic (`Store::republish_entities`) cost
//! every host a comparison, not a write, and keep authentication caches.
//!
//! Applying never feeds the outbox (that would loop the record back to the topic), and
//! bumps `keys_generation` when keys or namespaces change so authentication caches drop.
//!
//! Owns: applying entity records and the `entity_offset` meta key; waking waiters for a
//! revision. Must never: reject a record for a reason the next record can fix (a namespace
//! not yet known): records are applied as they are, in order.

use std::time::{Duration, Instant};

use heed::RwTxn;

use super::codec::show_key;
use super::error::lmdb;
use super::feed::decode_wire;
use super::{Store, StoreError};
use crate::model::FullyQualifiedName;

const ENTITY_OFFSET: &[u8] = b"entity_offset";
/// The mark (a fingerprint from the bus) of the record just before the resume offset: tells
/// the topic this host read from a re-created one that has grown past its position.
const ENTITY_MARK: &[u8] = b"entity_mark";

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written (or deleted).
    Changed,
    /// This host's own write, superseded by a later local write of the same key.
    SkippedOwn,
    /// Not an entity this store knows (another version's kind); skipped, offset recorded.
    Unknown,
    /// An action at a lower revision than the one held here (a concurrent update that lost,
    /// or a stale copy re-published): skipped.
    Superseded,
    /// Exactly what the host holds already (a re-publication): nothing written or bumped.
    Unchanged,
}

impl Store {
    /// The offset of the next entity record to apply; `None`: from the beginning.
    pub fn entity_offset(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.meta_u64(ENTITY_OFFSET)?.map(|o| o as i64))
    }

    /// The mark of the last applied entity record (stored with its offset); `None` before the
    /// first, or in a store written before marks were kept.
    pub fn entity_mark(&self) -> Result<Option<u64>, StoreError> {
        self.meta_u64(ENTITY_MARK)
    }

    fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        let rtxn = self.read_txn()?;
        match self.dbs().meta.get(&rtxn, key).map_err(lmdb("get", "meta"))? {
            Some(b) => Ok(Some(super::codec::be_u64("meta", key, b)?)),
            None => Ok(None),
        }
    }

    /// Applies the entity topic's record at `offset`: `Some(value)` writes `key`, `None`
    /// deletes it (an action only up to `deleted_revision`, when the tombstone names one).
    /// The resume offset (`offset + 1`) and the record's `mark` are stored in the same
    /// transaction.
    pub fn apply_entity(
        &self,
        key: &str,
        value: Option<&[u8]>,
        deleted_revision: Option<u64>,
        offset: i64,
        mark: u64,
    ) -> Result<Applied, StoreError> {
        let mut wtxn = self.write_txn()?;
        let outcome = self.apply_in(&mut wtxn, key, value, deleted_revision)?;
        let next = (offset.max(-1) + 1) as u64;
        let meta = &self.dbs().meta;
        meta.put(&mut wtxn, ENTITY_OFFSET, &next.to_be_bytes()).map_err(lmdb("put", "meta"))?;
        meta.put(&mut wtxn, ENTITY_MARK, &mark.to_be_bytes()).map_err(lmdb("put", "meta"))?;
        wtxn.commit().map_err(lmdb("commit", "entities"))?;
        if outcome == Applied::Changed {
            self.inner.applied.notify_waiters();
        }
        tracing::debug!(key, offset, ?outcome, "entity record applied");
        Ok(outcome)
    }

    fn apply_in(
        &self,
        wtxn: &mut RwTxn,
        key: &str,
        value: Option<&[u8]>,
        deleted_revision: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let wire = match value {
            Some(v) => Some(decode_wire(key, v)?),
            None => None,
        };
        if let Some(w) = &wire {
            let own = self.origin_in(wtxn)?.is_some_and(|o| o == w.header.origin);
            if own && self.feed_last_in(wtxn, key)? > w.header.seq {
                return Ok(Applied::SkippedOwn);
            }
        }
        match super::feed::kind_of(key) {
            Some((kind, k)) => kind.apply(self, wtxn, k, wire.as_ref(), deleted_revision),
            None => {
                tracing::warn!(key = %show_key(key.as_bytes()), "unknown entity kind on the topic: skipped");
                Ok(Applied::Unknown)
            }
        }
    }

    /// The stored revision of `action`, `None` when it does not exist.
    pub fn action_revision(&self, action: &FullyQualifiedName) -> Result<Option<u64>, StoreError> {
        Ok(self.get_action(action)?.map(|m| m.revision))
    }

    /// Waits (at most `bound`) until `action` exists here at `revision` or later: an invoker
    /// may receive an activation before its entity follower applied the action's record.
    /// Waits until the entity records before `offset` are applied (a starting controller
    /// catching up with the topic); `false` when `bound` passes first.
    pub async fn wait_for_entity_offset(
        &self,
        offset: i64,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        self.wait_for_offset(Store::entity_offset, offset, bound).await
    }

    /// Waits until `read` (a follower's stored resume offset) reaches `offset`; `false` when
    /// `bound` passes first.
    pub(crate) async fn wait_for_offset(
        &self,
        read: fn(&Store) -> Result<Option<i64>, StoreError>,
        offset: i64,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + bound;
        loop {
            if read(self)?.is_some_and(|o| o >= offset) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            // Polled: a catch-up at start-up, not a hot path.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the revision held (`Ok`: at least `revision`; above it when the action was
    /// updated since), or the revision found last (`Err(None)`: still missing) when the bound
    /// passes.
    pub async fn wait_for_revision(
        &self,
        action: &FullyQualifiedName,
        revision: u64,
        bound: Duration,
    ) -> Result<Result<u64, Option<u64>>, StoreError> {
        let deadline = Instant::now() + bound;
        loop {
            // Registered before the check, so an apply between the check and the wait wakes us.
            let notified = self.inner.applied.notified();
            let current = self.action_revision(action)?;
            if let Some(held) = current.filter(|r| *r >= revision) {
                return Ok(Ok(held));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Err(current));
            }
            // Also re-checked every 50 ms: a write by another process on this data directory
            // does not notify this one.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }
}

/// Where a kind with revisions (actions, packages) keeps its records: the highest revision
/// wins on every host, and its deletions leave floors (`actions.rs`).
pub(crate) struct Revisioned<'a> {
    pub db: &'a super::Db,
    pub name: &'static str,
    /// The meta key prefix of this kind's floors.
    pub floors: &'static str,
    /// A database for what travels beside the record (an action's code), by the same key.
    pub payload: Option<(&'a super::Db, &'static str)>,
    /// The revision of a record (decoding it also refuses garbage before the hot path).
    pub revision: fn(&[u8], &[u8]) -> Result<u64, StoreError>,
}

/// Applies a record or tombstone of a kind with revisions. A copy of a revision deleted here
/// (another controller re-publishing what it held when the broker lost the deletion) stays
/// deleted, a lower revision than the one held loses, the same bytes change nothing; a
/// deletion of revision R does not delete a re-creation above R, and raises the floor so
/// stale copies stay deleted.
pub(crate) fn apply_revisioned(
    s: &Store,
    wtxn: &mut RwTxn,
    r: &Revisioned,
    key: &str,
    wire: Option<&super::feed::WireValue>,
    deleted_revision: Option<u64>,
) -> Result<Applied, StoreError> {
    let k = key.as_bytes();
    let held = match r.db.get(wtxn, k).map_err(lmdb("get", r.name))? {
        Some(v) => Some((v.to_vec(), (r.revision)(k, v)?)),
        None => None,
    };
    match wire {
        Some(w) => {
            let incoming = (r.revision)(k, w.record)?;
            if s.floor_in(wtxn, r.floors, key)?.is_some_and(|f| f >= incoming) {
                return Ok(Applied::Superseded);
            }
            match &held {
                Some((_, rev)) if *rev > incoming => return Ok(Applied::Superseded),
                Some((bytes, _)) if bytes == w.record => return Ok(Applied::Unchanged),
                _ => {}
            }
            r.db.put(wtxn, k, w.record).map_err(lmdb("put", r.name))?;
            if let Some((db, name)) = r.payload {
                db.put(wtxn, k, w.code).map_err(lmdb("put", name))?;
            }
        }
        None => {
            let held = held.map(|(_, rev)| rev);
            if let (Some(held), Some(deleted)) = (held, deleted_revision) {
                if held > deleted {
                    return Ok(Applied::Superseded);
                }
            }
            if let Some(floor) = held.max(deleted_revision) {
                s.raise_floor_in(wtxn, r.floors, key, floor)?;
            }
            r.db.delete(wtxn, k).map_err(lmdb("delete", r.name))?;
            if let Some((db, name)) = r.payload {
                db.delete(wtxn, k).map_err(lmdb("delete", name))?;
            }
        }
    }
    Ok(Applied::Changed)
}

#[cfg(feature = "kafka")]
impl crate::bus::kafka::EntitySink for Store {
    fn position(&self) -> Option<crate::bus::kafka::Position> {
        let read = self.entity_offset().and_then(|next| Ok((next, self.entity_mark()?)));
        match read {
            Ok((next, last_mark)) => {
                next.map(|next| crate::bus::kafka::Position { next, last_mark })
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the entity offset failed: replaying the topic");
                None
            }
        }
    }

    fn apply(&self, record: &crate::bus::kafka::EntityRecord<'_>) {
        let r = record;
        if let Err(e) = self.apply_entity(r.key, r.value, r.deleted_revision, r.offset, r.mark) {
            let (key, offset) = (r.key, r.offset);
            tracing::error!(key, offset, error = %e, "applying an entity record failed");
        }
    }

    fn topic_reset(&self) {
        match self.republish_entities() {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                entities = n,
                "the entity topic was reset (the broker lost it): re-publishing every entity held here"
            ),
            Err(e) => tracing::error!(error = %e, "queueing the entities for re-publication failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{revision, ActionMeta, EntityName, Kind};
    use crate::store::feed::KEY_PREFIX;
    use crate::store::test_util::temp_store;
    use crate::store::{ActionUpdate, ExecUpdate, FeedEntry};

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

    fn fqn(n: &str) -> FullyQualifiedName {
        FullyQualifiedName::new(EntityName::parse("team").unwrap(), EntityName::parse(n).unwrap())
    }

    /// Writes on `a` (feed on), then copies every published record to `b` as the topic would.
    fn ship(a: &Store, b: &Store, offset: &mut i64) {
        let entries = a.feed_pending(100).unwrap();
        for e in &entries {
            b.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, *offset, 0).unwrap();
            *offset += 1;
        }
        if let Some(last) = entries.last() {
            a.feed_done(last.seq).unwrap();
        }
    }

    /// Packages travel as actions do: a package, an action inside it and a binding reach
    /// another host; an update wins by revision; a deletion leaves a floor that refuses a
    /// stale copy and is re-published after a topic reset.
    #[test]
    fn packages_and_their_actions_replicate_with_revisions_floors_and_resets() {
        use crate::model::Binding;
        use crate::store::PackageUpdate;
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = EntityName::parse("team").unwrap();
        let tools = EntityName::parse("tools").unwrap();
        a.create_namespace(&ns).unwrap();
        let p = PackageUpdate { parameters: Some(vec![]), ..Default::default() };
        a.put_package(&ns, &tools, p, false).unwrap();
        let inner = FullyQualifiedName::in_package(
            ns.clone(),
            tools.clone(),
            EntityName::parse("x").unwrap(),
        );
        a.put_action(&inner, up("INNER"), false).unwrap();
        let bind = PackageUpdate {
            binding: Some(Binding { namespace: ns.clone(), name: tools.clone() }),
            ..Default::default()
        };
        a.put_package(&ns, &EntityName::parse("mine").unwrap(), bind, false).unwrap();
        let mut off = 0;
        ship(&a, &b, &mut off);
        let through = FullyQualifiedName::in_package(
            ns.clone(),
            EntityName::parse("mine").unwrap(),
            inner.name.clone(),
        );
        let r = b.resolve_action(&through).unwrap();
        assert_eq!(r.action.unwrap().fqn().key(), "team/tools/x", "resolved on the other host");
        assert_eq!(b.get_action_with_code(&inner).unwrap().unwrap().1, b"INNER");
        // An update wins; the stale record of the first revision is superseded.
        let first = a.get_package(&ns, &tools).unwrap().unwrap();
        let published = |s: &Store| s.feed_pending(100).unwrap();
        let up2 = PackageUpdate { publish: Some(true), ..Default::default() };
        a.put_package(&ns, &tools, up2, true).unwrap();
        let second = published(&a);
        ship(&a, &b, &mut off);
        assert!(b.get_package(&ns, &tools).unwrap().unwrap().publish);
        let stale = encode_wire_for_test(&first);
        let key = "package/team/tools".to_owned();
        assert_eq!(b.apply_entity(&key, Some(&stale), None, off, 0).unwrap(), Applied::Superseded);
        off += 1;
        assert!(second.iter().any(|e| e.key == key));
        // Deleted with force (its action too): tombstones carry the revisions; b deletes both.
        a.delete_package(&ns, &EntityName::parse("mine").unwrap(), false).unwrap();
        a.delete_package(&ns, &tools, true).unwrap();
        let deletions = published(&a);
        let gone = deletions.iter().find(|e| e.key == key).unwrap();
        assert_eq!((gone.value.as_ref(), gone.deleted_revision.is_some()), (None, true));
        ship(&a, &b, &mut off);
        assert!(b.get_package(&ns, &tools).unwrap().is_none());
        assert!(b.get_action(&inner).unwrap().is_none());
        // A re-published copy of the deleted package stays deleted on a; a reset
        // re-publishes the deletion.
        let republished =
            encode_wire_for_test(&b.get_package(&ns, &tools).unwrap().unwrap_or(first));
        assert_eq!(
            a.apply_entity(&key, Some(&republished), None, 0, 0).unwrap(),
            Applied::Superseded
        );
        a.republish_entities().unwrap();
        assert!(published(&a).iter().any(|e| e.key == key && e.value.is_none()));
    }

    /// A package record as another controller would publish it.
    fn encode_wire_for_test(p: &crate::model::PackageMeta) -> Vec<u8> {
        super::super::feed::encode_wire(
            &super::super::feed::WireHeader { origin: "c2".into(), seq: 1 },
            &serde_json::to_vec(p).unwrap(),
            &[],
        )
    }

    #[test]
    fn another_host_materialises_namespaces_keys_and_actions_and_resumes() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = EntityName::parse("team").unwrap();
        let key = a.create_namespace(&ns).unwrap();
        a.put_action(&fqn("x"), up("CODE1"), false).unwrap();
        let mut off = 0;
        assert_eq!(b.entity_offset().unwrap(), None);
        ship(&a, &b, &mut off);
        assert_eq!(b.entity_offset().unwrap(), Some(off));
        assert_eq!(b.authenticate(&key.to_string()).unwrap().unwrap().namespace.as_str(), "team");
        let (meta, code) = b.get_action_with_code(&fqn("x")).unwrap().unwrap();
        assert_eq!((meta.version.as_str(), code.as_slice()), ("0.0.1", &b"CODE1"[..]));
        assert_eq!(meta, a.get_action(&fqn("x")).unwrap().unwrap(), "the same revision");

        a.put_action(&fqn("x"), up("CODE2"), true).unwrap();
        a.revoke_key(&key.uuid).unwrap();
        ship(&a, &b, &mut off);
        let (meta, code) = b.get_action_with_code(&fqn("x")).unwrap().unwrap();
        assert_eq!((meta.version.as_str(), code.as_slice()), ("0.0.2", &b"CODE2"[..]));
        assert!(b.authenticate(&key.to_string()).unwrap().is_none(), "the revoke reached b");

        a.delete_namespace(&ns).unwrap();
        ship(&a, &b, &mut off);
        assert!(b.get_namespace(&ns).unwrap().is_none());
        assert!(b.get_action(&fqn("x")).unwrap().is_none());
        // Nothing b applied went into b's own feed.
        b.enable_entity_feed("c2").unwrap();
        assert!(b.feed_pending(10).unwrap().is_empty());
    }

    /// The broker lost a deletion before controller b applied it (memory storage restarted):
    /// b re-publishes the action it still holds, a re-publishes the deletion with its
    /// revision. Whatever order they arrive in, neither brings the action back, and a host
    /// that missed the deletion (c) deletes it; a re-creation above the deleted revision
    /// survives a late deletion.
    #[test]
    fn a_lost_deletion_is_republished_with_its_revision_and_wins_over_stale_copies() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        let (_dc, c) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        b.enable_entity_feed("c2").unwrap();
        a.create_namespace(&EntityName::parse("team").unwrap()).unwrap();
        a.put_action(&fqn("x"), up("v1"), false).unwrap();
        let (mut ob, mut oc) = (0, 0);
        let published = a.feed_pending(100).unwrap();
        for e in &published {
            for (host, off) in [(&b, &mut ob), (&c, &mut oc)] {
                host.apply_entity(&e.key, e.value.as_deref(), None, *off, 0).unwrap();
                *off += 1;
            }
        }
        a.feed_done(published.last().unwrap().seq).unwrap();
        let rev = a.get_action(&fqn("x")).unwrap().unwrap().revision;
        a.delete_action(&fqn("x")).unwrap();
        let deletion = a.feed_pending(100).unwrap();
        assert_eq!(deletion.len(), 1);
        assert_eq!((deletion[0].value.as_ref(), deletion[0].deleted_revision), (None, Some(rev)));
        a.feed_done(deletion[0].seq).unwrap();
        // ... and the broker loses it: b and c still hold x. Both controllers re-publish.
        assert_eq!(b.republish_entities().unwrap(), 3, "the namespace, its key and x");
        let from_b = b.feed_pending(100).unwrap();
        a.republish_entities().unwrap();
        let from_a = a.feed_pending(100).unwrap();
        let x_of = |v: &[FeedEntry]| v.iter().find(|e| e.key == "action/team/x").cloned().unwrap();
        let (stale, gone) = (x_of(&from_b), x_of(&from_a));
        assert_eq!(
            (gone.value, gone.deleted_revision),
            (None, Some(rev)),
            "a re-publishes the deletion"
        );
        // a refuses b's stale copy; c deletes x whichever comes first; b too.
        let stale_value = stale.value.clone().unwrap();
        assert_eq!(
            a.apply_entity(&stale.key, Some(&stale_value), None, 0, 0).unwrap(),
            Applied::Superseded
        );
        assert!(a.get_action(&fqn("x")).unwrap().is_none(), "not brought back on a");
        c.apply_entity(&gone.key, None, Some(rev), oc, 0).unwrap();
        c.apply_entity(&stale.key, Some(&stale_value), None, oc + 1, 0).unwrap();
        assert!(c.get_action(&fqn("x")).unwrap().is_none(), "the deletion reached c");
        b.apply_entity(&stale.key, Some(&stale_value), None, ob, 0).unwrap();
        b.apply_entity(&gone.key, None, Some(rev), ob + 1, 0).unwrap();
        assert!(b.get_action(&fqn("x")).unwrap().is_none(), "and b, after its own copy");
        // A re-creation numbers above the deleted revision and survives a late deletion.
        b.put_action(&fqn("x"), up("v2"), false).unwrap();
        let again = b.get_action(&fqn("x")).unwrap().unwrap();
        assert!(again.revision > rev);
        assert_eq!(
            b.apply_entity(&gone.key, None, Some(rev), ob + 2, 0).unwrap(),
            Applied::Superseded
        );
        assert_eq!(b.get_action_with_code(&fqn("x")).unwrap().unwrap().1, b"v2");
    }

    /// The same for a key: a revocation the broker lost is re-published, and a copy of the
    /// revoked key (re-published by a controller that still held it) never authenticates
    /// again, on any host, in either order.
    #[test]
    fn a_lost_revocation_is_republished_and_a_revoked_key_never_comes_back() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        let (_dc, c) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        b.enable_entity_feed("c2").unwrap();
        let key = a.create_namespace(&EntityName::parse("team").unwrap()).unwrap();
        let (mut ob, mut oc) = (0, 0);
        ship(&a, &b, &mut ob);
        b.republish_entities().unwrap();
        // c learns the key from b's copy of it (as from the topic).
        let from_b = b.feed_pending(100).unwrap();
        let copy = from_b.iter().find(|e| e.key.starts_with(KEY_PREFIX)).cloned().unwrap();
        c.apply_entity(&copy.key, copy.value.as_deref(), None, oc, 0).unwrap();
        oc += 1;
        assert!(c.authenticate(&key.to_string()).unwrap().is_some());
        // a revokes; the broker loses the revocation; both controllers re-publish.
        a.revoke_key(&key.uuid).unwrap();
        a.feed_done(a.feed_pending(100).unwrap().last().unwrap().seq).unwrap();
        a.republish_entities().unwrap();
        let revoked = a.feed_pending(100).unwrap();
        let revoked = revoked.iter().find(|e| e.key == copy.key).cloned().unwrap();
        assert_eq!(revoked.value, None, "a re-publishes the revocation");
        let stale = copy.value.clone().unwrap();
        assert_eq!(
            a.apply_entity(&copy.key, Some(&stale), None, 0, 0).unwrap(),
            Applied::Superseded
        );
        assert!(a.authenticate(&key.to_string()).unwrap().is_none(), "not back on a");
        c.apply_entity(&revoked.key, None, None, oc, 0).unwrap();
        c.apply_entity(&copy.key, Some(&stale), None, oc + 1, 0).unwrap();
        assert!(c.authenticate(&key.to_string()).unwrap().is_none(), "not back on c");
        b.apply_entity(&copy.key, Some(&stale), None, ob, 0).unwrap();
        b.apply_entity(&revoked.key, None, None, ob + 1, 0).unwrap();
        assert!(b.authenticate(&key.to_string()).unwrap().is_none(), "revoked on b");
    }

    #[test]
    fn an_echo_of_an_own_write_never_undoes_a_later_write() {
        let (_da, a) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        a.create_namespace(&EntityName::parse("team").unwrap()).unwrap();
        a.put_action(&fqn("x"), up("v1"), false).unwrap();
        let first = a.feed_pending(100).unwrap();
        a.put_action(&fqn("x"), up("v2"), true).unwrap();
        // The topic now delivers the first batch back to a, after a wrote v2.
        let act = first.iter().find(|e| e.key == "action/team/x").unwrap();
        // The value was read at publication time; rebuild the v1 one as published before v2.
        let v1 = act.value.clone().unwrap();
        let stale = decode_wire(&act.key, &v1).unwrap();
        assert_eq!(stale.code, b"v1");
        let out = a.apply_entity(&act.key, Some(&v1), None, 7, 0).unwrap();
        assert_eq!(out, Applied::SkippedOwn);
        assert_eq!(a.get_action_with_code(&fqn("x")).unwrap().unwrap().1, b"v2");
        // Another controller's record: applied when its revision is higher, skipped when lower.
        let held = a.get_action(&fqn("x")).unwrap().unwrap();
        let theirs = |revision: u64, code: &[u8]| {
            let mut m: ActionMeta = serde_json::from_slice(stale.record).unwrap();
            m.revision = revision;
            super::super::feed::encode_wire(
                &super::super::feed::WireHeader { origin: "c2".into(), seq: 1 },
                &serde_json::to_vec(&m).unwrap(),
                code,
            )
        };
        let lower = theirs(revision::next(Some(held.revision - (1 << 20)), Some("c2")), b"old");
        assert_eq!(
            a.apply_entity(&act.key, Some(&lower), None, 8, 0).unwrap(),
            Applied::Superseded
        );
        assert_eq!(a.get_action_with_code(&fqn("x")).unwrap().unwrap().1, b"v2");
        let higher = theirs(revision::next(Some(held.revision), Some("c2")), b"theirs");
        assert_eq!(a.apply_entity(&act.key, Some(&higher), None, 9, 0).unwrap(), Applied::Changed);
        assert_eq!(a.get_action_with_code(&fqn("x")).unwrap().unwrap().1, b"theirs");
        assert_eq!(
            a.apply_entity(&act.key, Some(&higher), None, 10, 0).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(a.entity_offset().unwrap(), Some(11));
    }

    #[test]
    fn concurrent_updates_on_two_controllers_converge_on_every_host_whatever_the_order() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        b.enable_entity_feed("c2").unwrap();
        let ns = EntityName::parse("team").unwrap();
        a.create_namespace(&ns).unwrap();
        let (mut oa, mut ob) = (0, 0);
        ship(&a, &b, &mut ob);
        a.put_action(&fqn("x"), up("base"), false).unwrap();
        ship(&a, &b, &mut ob);
        // Both update the same revision at the same moment: two distinct revisions.
        let ra = a.put_action(&fqn("x"), up("from-c1"), true).unwrap();
        let rb = b.put_action(&fqn("x"), up("from-c2"), true).unwrap();
        assert_ne!(ra.revision, rb.revision);
        assert_eq!(ra.version, rb.version, "the same update counter");
        let winner = if ra.revision > rb.revision { "from-c1" } else { "from-c2" };
        let ea = a.feed_pending(100).unwrap();
        let eb = b.feed_pending(100).unwrap();
        // Hosts that see the records in either order end the same: h1 sees c1's first, h2
        // c2's first; each controller sees its own write, then the other's record.
        let (_d1, h1) = temp_store();
        let (_d2, h2) = temp_store();
        let apply_all = |s: &Store, entries: &[&FeedEntry], off: &mut i64| {
            for e in entries {
                s.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, *off, 0).unwrap();
                *off += 1;
            }
        };
        let (mut o1, mut o2) = (0, 0);
        apply_all(&h1, &ea.iter().chain(&eb).collect::<Vec<_>>(), &mut o1);
        apply_all(&h2, &eb.iter().chain(&ea).collect::<Vec<_>>(), &mut o2);
        apply_all(&a, &eb.iter().collect::<Vec<_>>(), &mut oa);
        apply_all(&b, &ea.iter().collect::<Vec<_>>(), &mut ob);
        let final_of = |s: &Store| {
            let (m, code) = s.get_action_with_code(&fqn("x")).unwrap().unwrap();
            (m.revision, code)
        };
        let expected = (ra.revision.max(rb.revision), winner.as_bytes().to_vec());
        for (name, s) in [("c1", &a), ("c2", &b), ("h1", &h1), ("h2", &h2)] {
            assert_eq!(final_of(s), expected, "{name}");
        }
    }

    #[test]
    fn re_published_entities_change_nothing_where_they_are_held() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        let ns = EntityName::parse("team").unwrap();
        let key = a.create_namespace(&ns).unwrap();
        a.put_action(&fqn("x"), up("CODE"), false).unwrap();
        let mut off = 0;
        ship(&a, &b, &mut off);
        let before = b.get_action(&fqn("x")).unwrap().unwrap();
        let generation = b.keys_generation().unwrap();
        // The broker lost the topic: a re-publishes everything it holds.
        assert_eq!(a.republish_entities().unwrap(), 3);
        assert_eq!(b.republish_entities().unwrap(), 0, "a host without a feed publishes nothing");
        let entries = a.feed_pending(100).unwrap();
        assert_eq!(entries.len(), 3);
        for e in &entries {
            let out =
                b.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, off, 0).unwrap();
            assert_eq!(out, Applied::Unchanged, "{}", e.key);
            let own =
                a.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, off, 0).unwrap();
            assert_eq!(own, Applied::Unchanged, "the echo on a itself: {}", e.key);
            off += 1;
        }
        assert_eq!(b.get_action(&fqn("x")).unwrap().unwrap(), before);
        assert_eq!(b.keys_generation().unwrap(), generation, "auth caches kept");
        assert!(b.authenticate(&key.to_string()).unwrap().is_some());
        // A new host replaying the re-published topic gets them all.
        let (_dc, c) = temp_store();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                c.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, i as i64, 0)
                    .unwrap(),
                Applied::Changed
            );
        }
        assert_eq!(c.get_action(&fqn("x")).unwrap().unwrap(), before);
        assert!(c.authenticate(&key.to_string()).unwrap().is_some());
    }

    #[test]
    fn garbage_records_are_errors_and_unknown_kinds_are_skipped() {
        let (_d, s) = temp_store();
        assert!(s.apply_entity("action/team/x", Some(b"nonsense"), None, 0, 7).is_err());
        assert_eq!(s.entity_offset().unwrap(), None, "a failed apply stores no offset");
        assert_eq!(s.entity_mark().unwrap(), None, "nor a mark");
        assert_eq!(
            s.apply_entity("no-such-kind/team/t", None, None, 1, 42).unwrap(),
            Applied::Unknown
        );
        assert_eq!(s.entity_offset().unwrap(), Some(2));
        assert_eq!(s.entity_mark().unwrap(), Some(42), "the mark goes with the offset");
    }

    #[tokio::test]
    async fn waiting_for_a_revision_ends_when_it_is_applied_or_the_bound_passes() {
        let (_da, a) = temp_store();
        let (_db, b) = temp_store();
        a.enable_entity_feed("c1").unwrap();
        a.create_namespace(&EntityName::parse("team").unwrap()).unwrap();
        let r1 = a.put_action(&fqn("x"), up("v1"), false).unwrap().revision;
        let missing = b.wait_for_revision(&fqn("x"), r1, Duration::from_millis(60)).await.unwrap();
        assert_eq!(missing, Err(None));
        let b2 = b.clone();
        let entries = a.feed_pending(100).unwrap();
        let applier = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            for (i, e) in entries.iter().enumerate() {
                b2.apply_entity(&e.key, e.value.as_deref(), e.deleted_revision, i as i64, 0)
                    .unwrap();
            }
        });
        let t = Instant::now();
        let ok = b.wait_for_revision(&fqn("x"), r1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(ok, Ok(r1));
        assert!(t.elapsed() < Duration::from_secs(1), "woken by the apply: {:?}", t.elapsed());
        applier.await.unwrap();
        let newer =
            b.wait_for_revision(&fqn("x"), r1 + 1, Duration::from_millis(30)).await.unwrap();
        assert_eq!(newer, Err(Some(r1)));
    }
}
