//! Keys: uuid (16 bytes) -> record with the namespace and the salted hash of the secret. The
//! secret itself is never stored: it is shown once, when the key is created.

use heed::{RoTxn, RwTxn};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::error::lmdb;
use super::feed::{encode_wire, EntityKind, WireHeader, WireValue, KEY_PREFIX};
use super::replica::Applied;
use super::{Store, StoreError};
use crate::model::{now_millis, AuthKey, EntityName, SecretHash};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    #[serde(with = "uuid_text")]
    pub uuid: Uuid,
    pub namespace: EntityName,
    pub hash: SecretHash,
    /// Milliseconds since the epoch.
    pub created: u64,
}

/// The uuid as its hyphenated text (the `uuid` crate is built without its serde feature).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(u)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let s = String::deserialize(d)?;
        Uuid::parse_str(&s).map_err(serde::de::Error::custom)
    }
}

impl Store {
    pub(crate) fn key_record_in(
        &self,
        rtxn: &RoTxn,
        uuid: &Uuid,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let k = uuid.as_bytes();
        match self.dbs().keys.get(rtxn, k).map_err(lmdb("get", "keys"))? {
            Some(v) => Ok(Some(decode("keys", k, v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put_key_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
        key: &AuthKey,
    ) -> Result<(), StoreError> {
        let k = key.uuid.as_bytes();
        let rec = KeyRecord {
            uuid: key.uuid,
            namespace: ns.clone(),
            hash: key.hash(),
            created: now_millis(),
        };
        let v = encode("keys", k, &rec)?;
        self.dbs().keys.put(wtxn, k, &v).map_err(lmdb("put", "keys"))
    }

    /// A new key for an existing namespace.
    pub fn create_key(&self, ns: &EntityName) -> Result<AuthKey, StoreError> {
        let key = AuthKey::generate().map_err(|e| StoreError::Random(e.to_string()))?;
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        self.put_key_in(&mut wtxn, ns, &key)?;
        self.bump_keys_generation(&mut wtxn)?;
        let entity = format!("{KEY_PREFIX}{}", key.uuid);
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "keys"))?;
        tracing::info!(namespace = %ns, uuid = %key.uuid, "key created");
        self.await_published(&entity, seq)?;
        Ok(key)
    }

    /// Revokes a key: it stops authenticating at once, in every process (the generation bump
    /// invalidates every cached entry).
    pub fn revoke_key(&self, uuid: &Uuid) -> Result<(), StoreError> {
        let mut wtxn = self.write_txn()?;
        if !self.dbs().keys.delete(&mut wtxn, uuid.as_bytes()).map_err(lmdb("delete", "keys"))? {
            return Err(StoreError::KeyNotFound(uuid.to_string()));
        }
        self.note_revoked_in(&mut wtxn, uuid)?;
        self.bump_keys_generation(&mut wtxn)?;
        let entity = format!("{KEY_PREFIX}{uuid}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "keys"))?;
        tracing::info!(%uuid, "key revoked");
        self.await_published(&entity, seq)?;
        Ok(())
    }

    /// The keys of one namespace (hashes only).
    pub fn list_keys(&self, ns: &EntityName) -> Result<Vec<KeyRecord>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs().keys.iter(&rtxn).map_err(lmdb("iter", "keys"))? {
            let (k, v) = item.map_err(lmdb("iter", "keys"))?;
            let rec: KeyRecord = decode("keys", k, v)?;
            if &rec.namespace == ns {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Deletes every key of `ns`; a scan, as keys are few and this runs only on namespace
    /// deletion.
    pub(crate) fn delete_keys_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<Vec<String>, StoreError> {
        let mut doomed = Vec::new();
        for item in self.dbs().keys.iter(wtxn).map_err(lmdb("iter", "keys"))? {
            let (k, v) = item.map_err(lmdb("iter", "keys"))?;
            let rec: KeyRecord = decode("keys", k, v)?;
            if &rec.namespace == ns {
                doomed.push(k.to_vec());
            }
        }
        let doomed: Vec<Uuid> = doomed.iter().filter_map(|k| Uuid::from_slice(k).ok()).collect();
        for u in &doomed {
            self.dbs().keys.delete(wtxn, u.as_bytes()).map_err(lmdb("delete", "keys"))?;
            self.note_revoked_in(wtxn, u)?;
        }
        Ok(doomed.iter().map(|u| format!("{KEY_PREFIX}{u}")).collect())
    }

    /// Remembers that key `uuid` was revoked (or deleted with its namespace), for good: key
    /// uuids are never made again, so a copy of a revoked key (re-published by a controller
    /// that had not yet applied the revocation when the broker lost it) is refused, and the
    /// revocation itself is re-published (`feed.rs`). 16 bytes per revoked key.
    pub(crate) fn note_revoked_in(&self, wtxn: &mut RwTxn, uuid: &Uuid) -> Result<(), StoreError> {
        let k = revoked_key(uuid);
        self.dbs().meta.put(wtxn, &k, &[]).map_err(lmdb("put", "meta"))
    }

    pub(crate) fn is_revoked_in(&self, rtxn: &RoTxn, uuid: &Uuid) -> Result<bool, StoreError> {
        Ok(self.dbs().meta.get(rtxn, &revoked_key(uuid)).map_err(lmdb("get", "meta"))?.is_some())
    }

    /// Every key revoked here.
    pub(crate) fn revoked_in(&self, rtxn: &RoTxn) -> Result<Vec<Uuid>, StoreError> {
        let mut out = Vec::new();
        let iter = self
            .dbs()
            .meta
            .prefix_iter(rtxn, REVOKED_PREFIX)
            .map_err(lmdb("prefix_iter", "meta"))?;
        for item in iter {
            let (k, _) = item.map_err(lmdb("prefix_iter", "meta"))?;
            if let Ok(u) = Uuid::from_slice(&k[REVOKED_PREFIX.len()..]) {
                out.push(u);
            }
        }
        Ok(out)
    }
}

/// Meta key prefix of a revoked key's uuid.
const REVOKED_PREFIX: &[u8] = b"revoked_key/";

fn revoked_key(uuid: &Uuid) -> Vec<u8> {
    [REVOKED_PREFIX, uuid.as_bytes()].concat()
}

/// Keys on the entity topic: the topic's order decides; a revoked key never comes back.
#[derive(Debug)]
pub(crate) struct KeyKind;

fn parse_uuid(u: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(u).map_err(|e| StoreError::Corrupt {
        db: "entity topic",
        key: format!("{KEY_PREFIX}{u}"),
        message: e.to_string(),
    })
}

impl EntityKind for KeyKind {
    fn prefix(&self) -> &'static str {
        KEY_PREFIX
    }

    fn held(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in s.dbs().keys.iter(txn).map_err(lmdb("iter", "keys"))? {
            let (k, _) = item.map_err(lmdb("iter", "keys"))?;
            if let Ok(u) = Uuid::from_slice(k) {
                out.push(u.to_string());
            }
        }
        Ok(out)
    }

    fn deletions(&self, s: &Store, txn: &RoTxn) -> Result<Vec<String>, StoreError> {
        Ok(s.revoked_in(txn)?.into_iter().map(|u| u.to_string()).collect())
    }

    fn wire_value(
        &self,
        s: &Store,
        txn: &RoTxn,
        key: &str,
        header: &WireHeader,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(u) = Uuid::parse_str(key) else { return Ok(None) };
        let v = s.dbs().keys.get(txn, u.as_bytes()).map_err(lmdb("get", "keys"))?;
        Ok(v.map(|v| encode_wire(header, v, &[])))
    }

    fn apply(
        &self,
        s: &Store,
        wtxn: &mut RwTxn,
        key: &str,
        wire: Option<&WireValue>,
        _deleted_revision: Option<u64>,
    ) -> Result<Applied, StoreError> {
        let uuid = parse_uuid(key)?;
        let k = uuid.as_bytes();
        let d = s.dbs();
        match wire {
            Some(w) => {
                let _: KeyRecord = decode("keys", k, w.record)?;
                // A copy of a revoked key stays revoked (see `note_revoked_in`).
                if s.is_revoked_in(wtxn, &uuid)? {
                    return Ok(Applied::Superseded);
                }
                if d.keys.get(wtxn, k).map_err(lmdb("get", "keys"))? == Some(w.record) {
                    return Ok(Applied::Unchanged);
                }
                d.keys.put(wtxn, k, w.record).map_err(lmdb("put", "keys"))?;
            }
            None => {
                d.keys.delete(wtxn, k).map_err(lmdb("delete", "keys"))?;
                s.note_revoked_in(wtxn, &uuid)?;
            }
        }
        s.bump_keys_generation(wtxn)?;
        Ok(Applied::Changed)
    }
}
