//! Pending activations: an id acknowledged to a client (202, or a blocking wait that ran out)
//! whose record is not written yet. The stub is committed before the acknowledgement and
//! replaced by the finished record in the same transaction that writes it; stubs still here
//! when a server starts belong to a run that stopped before they finished, and
//! [`Store::finish_stale_pending`] turns them into "whisk internal error" records.
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

    /// How many stubs are pending (tests and status figures).
    pub fn count_pending(&self) -> Result<u64, StoreError> {
        let rtxn = self.read_txn()?;
        self.dbs().pending.len(&rtxn).map_err(lmdb("len", "pending"))
    }

    /// Ends every pending stub as a "whisk internal error" record saying the server stopped.
    /// Call at start, before serving: nothing of this process is in flight yet, so every stub
    /// belongs to a previous run. Returns how many were ended.
    pub fn finish_stale_pending(&self) -> Result<usize, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActivationId, EntityName};
    use crate::store::test_util::temp_store;

    fn rec(ns: &str) -> Activation {
        Activation {
            namespace: ns.into(),
            name: "a".into(),
            subject: ns.into(),
            activation_id: ActivationId::generate(),
            start: 10,
            end: 10,
            duration: 0,
            status_code: 0,
            response: ActivationResponse::success(serde_json::json!({"ok": true})),
            logs: vec![],
            annotations: vec![],
            version: "0.0.1".into(),
            publish: false,
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
        assert_eq!(s.finish_stale_pending().unwrap(), 0);
    }

    #[test]
    fn stale_stubs_end_as_internal_errors() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let stubs: Vec<Activation> = (0..3).map(|_| rec("guest")).collect();
        s.commit_activations(&[], &stubs).unwrap();
        assert_eq!(s.finish_stale_pending().unwrap(), 3);
        for st in &stubs {
            let got = s.get_activation(&ns, &st.activation_id).unwrap().unwrap();
            assert_eq!(got.response.status, ActivationStatus::InternalError);
            assert_eq!(got.status_code, 3);
            assert!(got.response.result["error"].as_str().unwrap().contains("server stopped"));
        }
        assert_eq!(s.count_pending().unwrap(), 0);
    }
}
