//! Activation records across a cluster: the records outbox and the materialiser.
//!
//! A controller joined to a Kafka bus turns the feed on ([`Store::enable_record_feed`]); then
//! every finished record it writes (its record writer's batches, the placeholders of its
//! restart, a record that arrived while it was away) also appends its id to the
//! `record_feed` database **in the same write transaction**, and the bus's publisher drains
//! it to the records topic ([`Store::record_feed_pending`], [`Store::record_feed_done`]),
//! woken after each commit ([`Store::record_feed_wake`]). A committed record can therefore not
//! be forgotten by the cluster whatever crashes between the commit and the publication (a
//! restarted controller publishes what its outbox still holds); at worst it is published
//! twice, which the materialiser ignores. Pending stubs are not fed: an activation another
//! controller acknowledged reads as 404 here until its record exists, the answer OpenWhisk
//! gives for a running activation (clients poll until 200).
//!
//! Every controller materialises the topic into its own activations database
//! ([`Store::materialise_records`]) with one rule, shared with the unclaimed records its
//! record writer commits ([`Store::commit_records`]): a record is written when nothing is
//! held under its id, or over a placeholder ("the server stopped before the activation
//! finished"), never over any other record. So the first real record wins everywhere,
//! whatever order the copies arrive in, and what a controller materialised is never fed back
//! (no loop).
//!
//! Why the materialiser is not a client of the record writer, as every record this
//! controller originates is: it commits the topic's resume offset in the same transaction
//! as the records it read (so a restart neither loses nor re-reads a batch), it must never
//! feed the outbox (the record is another controller's), and the follower already hands it
//! one batch per poll on a blocking thread of its own. The rule it writes by is the same.
//!
//! Owns: the `record_feed` database and the `record_offset` meta key. Must never: publish
//! anything itself (no network here), or write over a real record.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use heed::RwTxn;

use super::codec::{be_u64, decode};
use super::error::lmdb;
use super::pending::is_placeholder;
use super::{Store, StoreError};
use crate::model::{Activation, ActivationId};

/// The offset of the next record of the records topic to materialise.
const RECORD_OFFSET: &[u8] = b"record_offset";

/// The records outbox's state in this process.
#[derive(Debug, Default)]
pub(crate) struct RecordFeed {
    enabled: AtomicBool,
    /// The next outbox seq; only read and bumped inside write transactions, which LMDB
    /// serialises, so seqs follow commit order.
    next_seq: AtomicU64,
    wake: Arc<tokio::sync::Notify>,
}

/// One entry of the records outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFeedEntry {
    pub seq: u64,
    pub id: ActivationId,
    /// The record as stored; `None` when it is gone (pruned, its namespace deleted).
    pub value: Option<Vec<u8>>,
}

/// What [`Store::materialise_records`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Materialised {
    /// Written: new here, or over a placeholder.
    pub written: usize,
    /// Held already (this controller's own records, a copy published twice).
    pub held: usize,
    /// Undecodable, logged and skipped.
    pub skipped: usize,
}

impl Store {
    /// Feeds every finished record written from now on to the records outbox (a cluster
    /// controller, before it serves). Resumes after the entries a previous run left.
    pub fn enable_record_feed(&self) -> Result<(), StoreError> {
        let rtxn = self.read_txn()?;
        let last = self.dbs().record_feed.last(&rtxn).map_err(lmdb("last", "record_feed"))?;
        let next = match last {
            Some((k, _)) => be_u64("record_feed", k, k)?.wrapping_add(1),
            None => 1,
        };
        let feed = &self.inner.record_feed;
        feed.next_seq.store(next, Ordering::Relaxed);
        feed.enabled.store(true, Ordering::Release);
        Ok(())
    }

    /// Notified after each commit that fed the outbox: the publisher's wake-up.
    pub fn record_feed_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.record_feed.wake.clone()
    }

    /// Appends `id` to the outbox inside the caller's transaction, when the feed is on.
    pub(crate) fn feed_record_in(
        &self,
        wtxn: &mut RwTxn,
        id: &ActivationId,
    ) -> Result<(), StoreError> {
        let feed = &self.inner.record_feed;
        if !feed.enabled.load(Ordering::Acquire) {
            return Ok(());
        }
        let seq = feed.next_seq.fetch_add(1, Ordering::Relaxed);
        self.dbs()
            .record_feed
            .put(wtxn, &seq.to_be_bytes(), id.as_bytes())
            .map_err(lmdb("put", "record_feed"))
    }

    /// After a commit that may have fed the outbox: wakes the publisher.
    pub(crate) fn record_feed_committed(&self) {
        let feed = &self.inner.record_feed;
        if feed.enabled.load(Ordering::Acquire) {
            feed.wake.notify_one();
        }
    }

    /// Up to `max` outbox entries, oldest first, each with its record's current bytes.
    pub fn record_feed_pending(&self, max: usize) -> Result<Vec<RecordFeedEntry>, StoreError> {
        let rtxn = self.read_txn()?;
        let d = self.dbs();
        let mut out = Vec::new();
        for item in d.record_feed.iter(&rtxn).map_err(lmdb("iter", "record_feed"))?.take(max) {
            let (k, v) = item.map_err(lmdb("iter", "record_feed"))?;
            let seq = be_u64("record_feed", k, k)?;
            let id = <[u8; 16]>::try_from(v).map(ActivationId::from_bytes).map_err(|_| {
                StoreError::Corrupt {
                    db: "record_feed",
                    key: seq.to_string(),
                    message: "not an activation id".into(),
                }
            })?;
            let value = d
                .activations
                .get(&rtxn, id.as_bytes())
                .map_err(lmdb("get", "activations"))?
                .map(<[u8]>::to_vec);
            out.push(RecordFeedEntry { seq, id, value });
        }
        Ok(out)
    }

    /// Removes every outbox entry up to `seq`: the broker holds them.
    pub fn record_feed_done(&self, seq: u64) -> Result<(), StoreError> {
        let mut wtxn = self.write_txn()?;
        let upto = seq.to_be_bytes();
        let range = (Bound::Unbounded, Bound::Included(upto.as_slice()));
        self.dbs()
            .record_feed
            .delete_range(&mut wtxn, &range)
            .map_err(lmdb("delete_range", "record_feed"))?;
        wtxn.commit().map_err(lmdb("commit", "record_feed"))
    }

    /// How many records wait in the outbox (tests and status figures).
    pub fn count_record_feed(&self) -> Result<u64, StoreError> {
        let rtxn = self.read_txn()?;
        self.dbs().record_feed.len(&rtxn).map_err(lmdb("len", "record_feed"))
    }

    /// The offset of the next record of the records topic to materialise; `None`: from the
    /// beginning of retention.
    pub fn record_offset(&self) -> Result<Option<i64>, StoreError> {
        let rtxn = self.read_txn()?;
        match self.dbs().meta.get(&rtxn, RECORD_OFFSET).map_err(lmdb("get", "meta"))? {
            Some(b) => Ok(Some(be_u64("meta", RECORD_OFFSET, b)? as i64)),
            None => Ok(None),
        }
    }

    /// Materialises records of the records topic (each the store's encoding of an
    /// [`Activation`]) under the rule of the module's doc, and stores `next` as the resume
    /// offset, all in one transaction. Nothing is fed back to the outbox.
    pub fn materialise_records(
        &self,
        values: &[&[u8]],
        next: i64,
    ) -> Result<Materialised, StoreError> {
        let mut done = Materialised::default();
        let mut wtxn = self.write_txn()?;
        for v in values {
            let a: Activation = match decode("records topic", b"", v) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "an undecodable record on the records topic: skipped");
                    done.skipped += 1;
                    continue;
                }
            };
            if self.settle_in(&mut wtxn, &a, true, false)? {
                done.written += 1;
            } else {
                done.held += 1;
            }
        }
        let next = next.max(0) as u64;
        self.dbs()
            .meta
            .put(&mut wtxn, RECORD_OFFSET, &next.to_be_bytes())
            .map_err(lmdb("put", "meta"))?;
        wtxn.commit().map_err(lmdb("commit", "activations"))?;
        Ok(done)
    }

    /// The one rule for a record that is not this controller's awaited one (materialised,
    /// unclaimed): written when nothing is held under its id (if `absent` allows it) or only
    /// its pending stub, or over a placeholder by a record that is not one; never over any
    /// other record. `feed`: this controller is the record's origin (an unclaimed record),
    /// so it goes to the records outbox like any record it writes.
    pub(crate) fn settle_in(
        &self,
        wtxn: &mut RwTxn,
        a: &Activation,
        absent: bool,
        feed: bool,
    ) -> Result<bool, StoreError> {
        let id = a.activation_id.as_bytes();
        let d = self.dbs();
        let held = match d.activations.get(wtxn, id).map_err(lmdb("get", "activations"))? {
            Some(v) => Some(decode::<Activation>("activations", id, v)?),
            None => None,
        };
        match held {
            None if absent => {}
            None => {
                if d.pending.get(wtxn, id).map_err(lmdb("get", "pending"))?.is_none() {
                    return Ok(false);
                }
            }
            Some(h) if is_placeholder(&h) && !is_placeholder(a) => {
                self.delete_activation_in(wtxn, &h)?
            }
            Some(_) => return Ok(false),
        }
        if feed {
            self.put_activation_in(wtxn, a)?;
        } else {
            self.write_activation_in(wtxn, a)?;
        }
        Ok(true)
    }

    /// Waits until the records before `offset` are materialised (a starting controller
    /// catching up with the topic); `false` when `bound` passes first.
    pub async fn wait_for_record_offset(
        &self,
        offset: i64,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        self.wait_for_offset(Store::record_offset, offset, bound).await
    }
}

/// The store as the records topic's outbox and sink (feature `kafka`).
#[cfg(feature = "kafka")]
mod kafka {
    use super::*;
    use crate::bus::kafka::{Outbox, OutboxEntry, RecordMessage, RecordSink};

    /// The records outbox of a store, for the bus's publisher (the store itself is the
    /// entity feed's outbox).
    #[derive(Debug, Clone)]
    pub struct RecordOutbox(pub Store);

    impl Outbox for RecordOutbox {
        fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, String> {
            let entries = self.0.record_feed_pending(max).map_err(|e| e.to_string())?;
            Ok(entries
                .into_iter()
                .map(|e| OutboxEntry {
                    seq: e.seq,
                    key: e.id.to_string(),
                    value: e.value,
                    deleted_revision: None,
                })
                .collect())
        }

        fn done(&self, seq: u64) -> Result<(), String> {
            self.0.record_feed_done(seq).map_err(|e| e.to_string())
        }
    }

    impl RecordSink for Store {
        fn next_offset(&self) -> Option<i64> {
            match self.record_offset() {
                Ok(o) => o,
                Err(e) => {
                    // Replaying from the beginning is safe (materialising is idempotent).
                    tracing::error!(error = %e, "reading the records offset failed: replaying the records topic");
                    None
                }
            }
        }

        fn apply(&self, records: &[RecordMessage<'_>], next: i64) {
            let values: Vec<&[u8]> = records.iter().map(|r| r.value).collect();
            match self.materialise_records(&values, next) {
                Ok(m) => {
                    tracing::debug!(
                        written = m.written,
                        held = m.held,
                        skipped = m.skipped,
                        next,
                        "records materialised"
                    )
                }
                Err(e) => {
                    let first = records.first().map(|r| r.key).unwrap_or_default();
                    tracing::error!(error = %e, count = records.len(), first, next, "materialising records failed: they stay readable only on their own controller")
                }
            }
        }
    }
}

#[cfg(feature = "kafka")]
pub use kafka::RecordOutbox;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationResponse, ActivationStatus, EntityName};
    use crate::store::codec::encode;
    use crate::store::test_util::temp_store;
    use crate::store::{ActivationQuery, STOPPED_MESSAGE};

    fn rec(name: &str, start: u64) -> Activation {
        Activation {
            end: start + 1,
            duration: 1,
            response: ActivationResponse::success(serde_json::json!({"n": start})),
            logs: vec!["a line".into()],
            annotations: vec![],
            ..crate::testing::activation("guest", name, start)
        }
    }

    fn bytes(a: &Activation) -> Vec<u8> {
        encode("test", b"", a).unwrap()
    }

    #[test]
    fn only_records_written_here_are_fed_and_published_entries_go() {
        let (_d, s) = temp_store();
        let a = rec("a", 1);
        s.put_activations(std::slice::from_ref(&a)).unwrap();
        assert_eq!(s.count_record_feed().unwrap(), 0, "off: nothing fed");
        s.enable_record_feed().unwrap();
        let (b, c) = (rec("a", 2), rec("a", 3));
        s.commit_activations(&[b.clone(), c.clone()], &[rec("a", 4)]).unwrap();
        let pending = s.record_feed_pending(10).unwrap();
        assert_eq!(pending.len(), 2, "records, not stubs: {pending:?}");
        assert_eq!(pending[0].id, b.activation_id);
        assert_eq!(pending[0].value.as_deref(), Some(bytes(&b).as_slice()));
        // Materialised records are not fed back.
        let other = rec("a", 5);
        let m = s.materialise_records(&[&bytes(&other)], 1).unwrap();
        assert_eq!(m, Materialised { written: 1, held: 0, skipped: 0 });
        assert_eq!(s.count_record_feed().unwrap(), 2);
        s.record_feed_done(pending[0].seq).unwrap();
        assert_eq!(s.record_feed_pending(10).unwrap()[0].id, c.activation_id);
        // A restart resumes the seqs after what is left.
        s.enable_record_feed().unwrap();
        s.put_activations(&[rec("a", 6)]).unwrap();
        let seqs: Vec<u64> = s.record_feed_pending(10).unwrap().iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }

    #[test]
    fn materialising_is_idempotent_and_lists_merge() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let recs: Vec<Activation> =
            (0..5).map(|i| rec(if i % 2 == 0 { "x" } else { "y" }, i)).collect();
        s.put_activations(&recs[..2]).unwrap();
        let all: Vec<Vec<u8>> = recs.iter().map(bytes).collect();
        let values: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        let m = s.materialise_records(&values, 5).unwrap();
        assert_eq!((m.written, m.held), (3, 2));
        assert_eq!(s.materialise_records(&values, 5).unwrap().held, 5, "again: nothing written");
        assert_eq!(s.record_offset().unwrap(), Some(5));
        let q = ActivationQuery { name: Some("x".into()), limit: 2, ..Default::default() };
        let starts: Vec<u64> =
            s.list_activations(&ns, &q).unwrap().iter().map(|a| a.start).collect();
        assert_eq!(starts, [4, 2]);
        assert_eq!(s.count_activations(&ns, &ActivationQuery::default()).unwrap(), 5);
        assert_eq!(s.materialise_records(&[b"not json"], 6).unwrap().skipped, 1);
    }

    #[test]
    fn a_real_record_replaces_a_placeholder_never_the_other_way_round() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let real = rec("a", 10);
        let mut placeholder = real.clone();
        placeholder.response =
            ActivationResponse::error(ActivationStatus::InternalError, STOPPED_MESSAGE);
        placeholder.start = 11;
        s.materialise_records(&[&bytes(&placeholder)], 1).unwrap();
        s.materialise_records(&[&bytes(&real)], 2).unwrap();
        let got = s.get_activation(&ns, &real.activation_id).unwrap().unwrap();
        assert_eq!(got, real);
        s.materialise_records(&[&bytes(&placeholder)], 3).unwrap();
        assert_eq!(s.get_activation(&ns, &real.activation_id).unwrap().unwrap(), real);
        let listed = s.list_activations(&ns, &ActivationQuery { limit: 9, ..Default::default() });
        assert_eq!(listed.unwrap().len(), 1, "the placeholder's index entry went with it");
        // A late record of a controller that lost its data dir is written, and fed.
        s.enable_record_feed().unwrap();
        let late = rec("a", 20);
        let adopted = [(late.clone(), crate::store::UnclaimedRule::Adopted)];
        assert_eq!(s.commit_records(&[], &[], &adopted).unwrap(), [late.activation_id]);
        assert!(s.commit_records(&[], &[], &adopted).unwrap().is_empty());
        assert_eq!(s.count_record_feed().unwrap(), 1);
    }
}
