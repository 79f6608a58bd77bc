//! The hot-path authentication: an in-memory cache keyed by the presented credential.
//!
//! An entry is trusted only while the store's `keys_generation` equals the generation it was
//! cached at. Reading that counter is one read transaction and one `get` on a memory-mapped
//! page (well under a microsecond), so a key revoked by `hearthd admin` in another process
//! stops working on the very next request, without any cross-process notification.
//!
//! Why a std `RwLock`: the critical section is a hash lookup and never awaits; readers do not
//! block each other.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;

use super::{Store, StoreError};
use crate::model::{AuthKey, Identity};

/// Entries kept at most. A full cache is simply cleared: keys are few in practice, and a clear
/// costs one LMDB lookup per key on the next request, while a bound stops a client that sends
/// endless valid-looking keys from growing memory.
const AUTH_CACHE_MAX: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    entries: RwLock<HashMap<String, (u64, Identity)>>,
}

impl AuthCache {
    fn get(&self, presented: &str, generation: u64) -> Option<Identity> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match map.get(presented) {
            Some((g, id)) if *g == generation => Some(id.clone()),
            _ => None,
        }
    }

    fn insert(&self, presented: &str, generation: u64, id: Identity) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= AUTH_CACHE_MAX {
            map.clear();
        }
        map.insert(presented.to_owned(), (generation, id));
    }
}

/// Extracts `uuid:secret` from an `Authorization` header value (`Basic base64`) or returns the
/// input when it already is a bare key.
fn credential(presented: &str) -> Option<String> {
    let trimmed = presented.trim();
    match trimmed.split_once(' ') {
        Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
            String::from_utf8(raw).ok()
        }
        Some(_) => None,
        None => Some(trimmed.to_owned()),
    }
}

impl Store {
    /// Resolves an `Authorization` header value (or a bare `uuid:secret`) to the identity it
    /// belongs to; `Ok(None)` for a malformed, unknown or revoked key.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Identity>, StoreError> {
        let rtxn = self.read_txn()?;
        let generation = self.keys_generation_in(&rtxn)?;
        if let Some(id) = self.inner.auth_cache.get(presented, generation) {
            return Ok(Some(id));
        }
        let Some(cred) = credential(presented) else { return Ok(None) };
        let Ok(key) = AuthKey::parse(&cred) else { return Ok(None) };
        let Some(rec) = self.key_record_in(&rtxn, &key.uuid)? else { return Ok(None) };
        if !rec.hash.matches(&key.hash()) {
            return Ok(None);
        }
        let id = Identity { namespace: rec.namespace, uuid: rec.uuid };
        self.inner.auth_cache.insert(presented, generation, id.clone());
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityName;
    use crate::store::test_util::temp_store;

    fn basic(key: &AuthKey) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(key.to_string()))
    }

    #[test]
    fn authenticates_header_and_bare_key() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("alice").unwrap();
        let key = s.create_namespace(&ns).unwrap();
        assert_eq!(s.authenticate(&basic(&key)).unwrap().unwrap().namespace, ns);
        assert_eq!(s.authenticate(&key.to_string()).unwrap().unwrap().uuid, key.uuid);
        let wrong = AuthKey { uuid: key.uuid, secret: "x".repeat(64) };
        assert!(s.authenticate(&basic(&wrong)).unwrap().is_none());
        assert!(s.authenticate("Basic !!!").unwrap().is_none());
        assert!(s.authenticate("Bearer abc").unwrap().is_none());
        assert!(s.authenticate("").unwrap().is_none());
    }

    #[test]
    fn revoked_key_stops_even_when_cached() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("bob").unwrap();
        let key = s.create_namespace(&ns).unwrap();
        let h = basic(&key);
        assert!(s.authenticate(&h).unwrap().is_some());
        assert!(s.authenticate(&h).unwrap().is_some(), "cached hit");
        s.revoke_key(&key.uuid).unwrap();
        assert!(s.authenticate(&h).unwrap().is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let c = AuthCache::default();
        let id = Identity { namespace: EntityName::parse("a").unwrap(), uuid: uuid::Uuid::nil() };
        for i in 0..AUTH_CACHE_MAX + 10 {
            c.insert(&i.to_string(), 1, id.clone());
        }
        assert!(c.entries.read().unwrap().len() <= AUTH_CACHE_MAX);
        assert!(c.get(&(AUTH_CACHE_MAX + 9).to_string(), 1).is_some());
        assert!(c.get(&(AUTH_CACHE_MAX + 9).to_string(), 2).is_none());
    }
}
