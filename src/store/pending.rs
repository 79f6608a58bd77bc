//! Pending activations: an id acknowledged to a client (202, or a blocking wait that ran out)
//! whose record is not written yet. The stub is committed before the acknowledgement and
//! replaced by the finished record in the same transaction that writes it; stubs still here
//! when a server starts belong to a run that stopped before they finished, and
//! [`Store::replace_pending_with_placeholders`] turns them into *placeholders* ("whisk internal
//! error" records saying the server stopped). An unclaimed record that arrives later (the
//! activation ended while its controller was away) replaces its stub or its placeholder, as
//! [`UnclaimedRule`] says; the record writer commits it ([`Store::commit_records`]).
//!
//! Stubs are kept apart from the records so that reads (`GET .../activations/{id}`, listings)
//! never show an unfinished activation as finished: OpenWhisk clients poll until a 200.

use heed::RwTxn;

use super::codec::{decode, encode};
use super::error::lmdb;
use super::{Store, StoreError};
use crate::model::{now_millis, Activation, ActivationResponse, ActivationStatus};

/// What a client reads for an activation that was running when its server stopped.
pub const STOPPED_MESSAGE: &str =
    "The server stopped before the activation finished; it may or may not have run.";

/// Where an *unclaimed* record (its activation was acknowledged before this controller
/// restarted and ended while it was away) may be written. Either way never over a real
/// record: the first real record of an activation stands; a placeholder is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnclaimedRule {
    /// Only over its pending stub or the placeholder a restart made of it: an id this data
    /// dir acknowledged. One host: anything else is not this controller's (a namespace
    /// deleted meanwhile took its stubs along; a blocking invoke's id was never seen).
    Acknowledged,
    /// Also when nothing is held under its id: a cluster controller that replaced a lost one
    /// with an empty data dir reads the completion topic of the id it took over, and those
    /// activations are its own.
    Adopted,
}

impl Store {
    pub(crate) fn put_pending_in(
        &self,
        wtxn: &mut RwTxn,
        stub: &Activation,
    ) -> Result<(), StoreError> {
        let id = stub.activation_id.as_bytes();
        let v = encode("pending", id, stub)?;
        self.dbs().pending.put(wtxn, id, &v).map_err(lmdb("put", "pending"))
    }

    /// Deletes the stubs of namespace `ns` (inside its deletion): its activations will never
    /// be readable, and a restart must not turn them into records of a namespace that is
    /// gone. Returns how many there were.
    pub(crate) fn delete_pending_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &crate::model::EntityName,
    ) -> Result<usize, StoreError> {
        let mut ids = Vec::new();
        for item in self.dbs().pending.iter(wtxn).map_err(lmdb("iter", "pending"))? {
            let (k, v) = item.map_err(lmdb("iter", "pending"))?;
            // A stub that does not decode cannot be attributed; it is left for the start-up
            // sweep, which reports it.
            if let Ok(a) = decode::<Activation>("pending", k, v) {
                if a.namespace == ns.as_str() {
                    ids.push(k.to_vec());
                }
            }
        }
        for id in &ids {
            self.dbs().pending.delete(wtxn, id).map_err(lmdb("delete", "pending"))?;
        }
        Ok(ids.len())
    }

    /// How many stubs are pending (tests and status figures).
    pub fn count_pending(&self) -> Result<u64, StoreError> {
        let rtxn = self.read_txn()?;
        self.dbs().pending.len(&rtxn).map_err(lmdb("len", "pending"))
    }

    /// Ends every pending stub as a placeholder: a "whisk internal error" record saying the
    /// server stopped.
    /// Call at start, before serving: nothing of this process is in flight yet, so every stub
    /// belongs to a previous run. Returns how many were ended.
    pub fn replace_pending_with_placeholders(&self) -> Result<usize, StoreError> {
        let mut wtxn = self.write_txn()?;
        let mut stubs = Vec::new();
        for item in self.dbs().pending.iter(&wtxn).map_err(lmdb("iter", "pending"))? {
            let (k, v) = item.map_err(lmdb("iter", "pending"))?;
            match decode::<Activation>("pending", k, v) {
                Ok(a) => stubs.push(a),
                // A stub that does not decode cannot be turned into a record; it is reported
                // and skipped rather than blocking the start.
                Err(e) => tracing::error!(error = %e, "a pending activation stub is unreadable"),
            }
        }
        let now = now_millis();
        for mut a in stubs.iter().cloned() {
            let response =
                ActivationResponse::error(ActivationStatus::InternalError, STOPPED_MESSAGE);
            a.status_code = response.status_code;
            a.response = response;
            a.end = now.max(a.start);
            a.duration = a.end - a.start;
            self.put_activation_in(&mut wtxn, &a)?;
        }
        self.dbs().pending.clear(&mut wtxn).map_err(lmdb("clear", "pending"))?;
        wtxn.commit().map_err(lmdb("commit", "pending"))?;
        if !stubs.is_empty() {
            let ids: Vec<String> = stubs.iter().map(|a| a.activation_id.to_string()).collect();
            tracing::warn!(
                count = stubs.len(),
                ?ids,
                "activations of a previous run ended as internal errors"
            );
        }
        Ok(stubs.len())
    }
}

/// The record [`Store::replace_pending_with_placeholders`] makes of a stub.
pub(crate) fn is_placeholder(a: &Activation) -> bool {
    a.response.status == ActivationStatus::InternalError
        && a.response.result.get("error").and_then(|e| e.as_str()) == Some(STOPPED_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityName;
    use crate::store::test_util::temp_store;

    fn rec(ns: &str) -> Activation {
        Activation {
            end: 10,
            duration: 0,
            response: ActivationResponse::success(serde_json::json!({"ok": true})),
            annotations: vec![],
            ..crate::testing::activation(ns, "a", 10)
        }
    }

    #[test]
    fn stub_is_invisible_until_finished_and_replaced_by_its_record() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let a = rec("guest");
        s.commit_activations(&[], std::slice::from_ref(&a)).unwrap();
        assert_eq!(s.count_pending().unwrap(), 1);
        assert!(s.get_activation(&ns, &a.activation_id).unwrap().is_none());
        // Stub and record in one batch: the record wins.
        let b = rec("guest");
        s.commit_activations(&[a.clone(), b.clone()], std::slice::from_ref(&b)).unwrap();
        assert_eq!(s.count_pending().unwrap(), 0);
        assert_eq!(s.get_activation(&ns, &a.activation_id).unwrap().unwrap(), a);
        assert_eq!(s.get_activation(&ns, &b.activation_id).unwrap().unwrap(), b);
        assert_eq!(s.replace_pending_with_placeholders().unwrap(), 0);
    }

    #[test]
    fn stale_stubs_end_as_internal_errors() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let stubs: Vec<Activation> = (0..3).map(|_| rec("guest")).collect();
        s.commit_activations(&[], &stubs).unwrap();
        assert_eq!(s.replace_pending_with_placeholders().unwrap(), 3);
        for st in &stubs {
            let got = s.get_activation(&ns, &st.activation_id).unwrap().unwrap();
            assert_eq!(got.response.status, ActivationStatus::InternalError);
            assert_eq!(got.status_code, 3);
            assert!(got.response.result["error"].as_str().unwrap().contains("server stopped"));
        }
        assert_eq!(s.count_pending().unwrap(), 0);
    }

    #[test]
    fn deleting_a_namespace_deletes_its_stubs_only() {
        let (_d, s) = temp_store();
        let gone = EntityName::parse("gone").unwrap();
        s.create_namespace(&gone).unwrap();
        let stubs = vec![rec("gone"), rec("gone"), rec("guest")];
        s.commit_activations(&[], &stubs).unwrap();
        assert!(s.delete_namespace(&gone).unwrap());
        assert_eq!(s.count_pending().unwrap(), 1, "the other namespace's stub stays");
        assert_eq!(s.replace_pending_with_placeholders().unwrap(), 1);
        assert!(s.get_activation(&gone, &stubs[0].activation_id).unwrap().is_none());
    }

    /// A namespace deleted on another controller reaches this host as a tombstone on the
    /// entity topic: its stubs here go too, as with a local delete.
    #[test]
    fn a_namespace_tombstone_from_the_topic_deletes_its_stubs_only() {
        let (_d, s) = temp_store();
        let gone = EntityName::parse("gone").unwrap();
        s.create_namespace(&gone).unwrap();
        let stubs = vec![rec("gone"), rec("guest")];
        s.commit_activations(&[], &stubs).unwrap();
        s.apply_entity("namespace/gone", None, None, 0, 0).unwrap();
        assert!(s.get_namespace(&gone).unwrap().is_none());
        assert_eq!(s.count_pending().unwrap(), 1, "the other namespace's stub stays");
    }

    /// Commits `a` as the record writer commits an unclaimed record; whether it was written.
    fn unclaimed(s: &Store, a: &Activation, rule: UnclaimedRule) -> bool {
        let written = s.commit_records(&[], &[], &[(a.clone(), rule)]).unwrap();
        written == [a.activation_id]
    }

    #[test]
    fn a_record_after_a_restart_replaces_the_stub_or_its_placeholder_and_nothing_else() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let (mut a, mut b) = (rec("guest"), rec("guest"));
        let mut wtxn = s.write_txn().unwrap();
        s.put_pending_in(&mut wtxn, &a).unwrap();
        s.put_pending_in(&mut wtxn, &b).unwrap();
        wtxn.commit().unwrap();
        // a's record arrives before the restart's clean-up; b's after it.
        a.start = 12;
        assert!(unclaimed(&s, &a, UnclaimedRule::Acknowledged));
        assert_eq!(s.replace_pending_with_placeholders().unwrap(), 1);
        let placeholder = s.get_activation(&ns, &b.activation_id).unwrap().unwrap();
        assert_eq!(placeholder.response.status, ActivationStatus::InternalError);
        b.start = 13;
        assert!(unclaimed(&s, &b, UnclaimedRule::Acknowledged));
        for x in [&a, &b] {
            let got = s.get_activation(&ns, &x.activation_id).unwrap().unwrap();
            assert_eq!((got.response.status, got.start), (ActivationStatus::Success, x.start));
        }
        // One entry each in the listing (the placeholder's index entry went with it).
        let all = crate::store::ActivationQuery { limit: 10, ..Default::default() };
        let listed = s.list_activations(&ns, &all).unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        // A real record stands; an unknown one is not this store's.
        let mut again = b.clone();
        again.response = ActivationResponse::error(ActivationStatus::InternalError, "late");
        for rule in [UnclaimedRule::Acknowledged, UnclaimedRule::Adopted] {
            assert!(!unclaimed(&s, &again, rule), "{rule:?}");
        }
        assert!(!unclaimed(&s, &rec("guest"), UnclaimedRule::Acknowledged));
        assert_eq!(s.list_activations(&ns, &all).unwrap().len(), 2);
        // Adopted (a cluster controller): also written when nothing is held.
        assert!(unclaimed(&s, &rec("guest"), UnclaimedRule::Adopted));
        assert_eq!(s.list_activations(&ns, &all).unwrap().len(), 3);
    }
}
