//! API routes: `ns{basepath}` -> [`ApiMeta`] (JSON) in `routes`. A namespace's APIs are one
//! prefix scan, which is also how a gateway URL finds its API (a namespace holds a handful).
//! Replicated like packages: the highest revision wins, a deletion leaves a floor.

use super::codec::{decode, encode, scan};
use super::error::lmdb;
use super::feed::ROUTE_PREFIX;
use super::replica::Revisioned;
use super::{Store, StoreError};
use crate::model::{now_millis, revision, ApiMeta, EntityName};

/// Meta key prefix of the revision floor of a deleted API.
pub(crate) const ROUTE_FLOORS: &str = "route_floor/";

impl Store {
    /// Reads the API at `ns{basepath}`, lets `change` make the new one (`None`: delete it) in
    /// the same write transaction, so concurrent edits of one API never lose an operation.
    /// Returns the API as stored (with its new revision).
    pub fn update_api(
        &self,
        ns: &EntityName,
        basepath: &str,
        change: impl FnOnce(Option<ApiMeta>) -> Option<ApiMeta>,
    ) -> Result<Option<ApiMeta>, StoreError> {
        let key = format!("{ns}{basepath}");
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        let existing: Option<ApiMeta> =
            super::codec::get(&self.dbs().routes, "routes", &wtxn, &key)?;
        let previous = existing.as_ref().map(|a| a.revision);
        let origin = self.origin_in(&wtxn)?;
        let next = match change(existing) {
            Some(mut api) => {
                let previous = match previous {
                    Some(p) => Some(p),
                    None if origin.is_some() => {
                        self.take_floor_in(&mut wtxn, ROUTE_FLOORS, &key)?
                    }
                    None => None,
                };
                api.revision = revision::next(previous, origin.as_deref());
                api.updated = now_millis();
                let v = encode("routes", key.as_bytes(), &api)?;
                self.dbs()
                    .routes
                    .put(&mut wtxn, key.as_bytes(), &v)
                    .map_err(lmdb("put", "routes"))?;
                Some(api)
            }
            None => {
                if let Some(rev) = previous {
                    self.note_floor_in(&mut wtxn, ROUTE_FLOORS, &key, rev)?;
                    self.dbs()
                        .routes
                        .delete(&mut wtxn, key.as_bytes())
                        .map_err(lmdb("delete", "routes"))?;
                }
                None
            }
        };
        let entity = format!("{ROUTE_PREFIX}{key}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "routes"))?;
        tracing::info!(api = %key, stored = next.is_some(), "API route stored");
        self.await_published(&entity, seq)?;
        Ok(next)
    }

    /// The APIs of `ns`, by base path.
    pub fn list_apis(&self, ns: &EntityName) -> Result<Vec<ApiMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        for item in scan(&self.dbs().routes, &rtxn, "routes", &format!("{ns}/"))? {
            let (k, v) = item.map_err(lmdb("iter", "routes"))?;
            // A namespace name holds no '/': `ns/` is exactly ns's APIs.
            out.push(decode("routes", k, v)?);
        }
        Ok(out)
    }
}

/// APIs on the entity topic: highest revision wins, as packages.
#[derive(Debug)]
pub(crate) struct RouteKind;

impl super::feed::EntityKind for RouteKind {
    fn prefix(&self) -> &'static str {
        ROUTE_PREFIX
    }

    fn revisioned<'s>(&self, s: &'s Store) -> Option<Revisioned<'s>> {
        Some(Revisioned {
            db: &s.dbs().routes,
            name: "routes",
            floors: ROUTE_FLOORS,
            payload: None,
            revision: |k, v| Ok(decode::<ApiMeta>("routes", k, v)?.revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{ApiMeta, EntityName, Operation, RouteAction};
    use crate::store::test_util::temp_store;

    fn api(ns: &EntityName, basepath: &str) -> ApiMeta {
        let n = EntityName::parse("hello").unwrap();
        ApiMeta {
            namespace: ns.clone(),
            basepath: basepath.into(),
            name: basepath.into(),
            operations: vec![Operation {
                relpath: "/world".into(),
                verb: "get".into(),
                action: RouteAction { namespace: ns.clone(), package: None, name: n },
                response_type: "json".into(),
                secure_key: None,
            }],
            revision: 0,
            updated: 0,
        }
    }

    #[test]
    fn create_update_list_delete_and_feed() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        s.ensure_namespace(&ns).unwrap();
        s.enable_entity_feed("c0").unwrap();
        let a = s.update_api(&ns, "/hello", |_| Some(api(&ns, "/hello"))).unwrap().unwrap();
        assert!(a.revision > 0);
        let b = s
            .update_api(&ns, "/hello", |old| {
                let mut old = old?;
                old.name = "Hello".into();
                Some(old)
            })
            .unwrap()
            .unwrap();
        assert!(b.revision > a.revision);
        assert_eq!(s.list_apis(&ns).unwrap(), vec![b]);
        let pending = s.feed_pending(10).unwrap();
        assert!(pending.iter().any(|e| e.key == "route/guest/hello"), "{pending:?}");
        assert!(s.update_api(&ns, "/hello", |_| None).unwrap().is_none());
        assert!(s.list_apis(&ns).unwrap().is_empty());
        let other = EntityName::parse("nobody").unwrap();
        assert!(s.update_api(&other, "/x", |_| Some(api(&other, "/x"))).is_err());
    }

    /// A deleted namespace's APIs go with it: its gateway URLs must not come back if the
    /// namespace is created again (this failed before: the routes outlived their namespace).
    #[test]
    fn a_namespace_delete_removes_its_apis() {
        let (_d, s) = temp_store();
        let ns = EntityName::parse("guest").unwrap();
        let other = EntityName::parse("other").unwrap();
        for n in [&ns, &other] {
            s.ensure_namespace(n).unwrap();
            s.update_api(n, "/hello", |_| Some(api(n, "/hello"))).unwrap();
        }
        assert!(s.delete_namespace(&ns).unwrap());
        s.ensure_namespace(&ns).unwrap();
        assert!(s.list_apis(&ns).unwrap().is_empty());
        assert_eq!(s.list_apis(&other).unwrap().len(), 1);
    }
}
