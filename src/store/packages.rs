//! Packages: `ns/name` -> [`PackageMeta`] (JSON) in `packages`. The actions of a package live
//! in `actions` under `ns/package/name`, so a package's actions are one prefix scan and
//! resolving `ns/package/action` on the invoke path is two or three memory-map lookups
//! (package, bound package, action), never a code read.

use heed::{RoTxn, RwTxn};

use super::actions::PACKAGE_FLOORS;
use super::codec::{decode, encode, scan, show_key};
use super::error::lmdb;
use super::feed::PACKAGE_PREFIX;
use super::replica::Revisioned;
use super::{Store, StoreError};
use crate::model::{
    now_millis, revision, ActionMeta, Binding, EntityName, FullyQualifiedName, KeyValue,
    PackageMeta,
};

/// The annotation OpenWhisk sets on a binding (always by the controller, never the client).
pub const BINDING_ANNOTATION: &str = "binding";

/// A create or update. On update, `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageUpdate {
    /// `Some`: the package is (or stays) a binding to this package.
    pub binding: Option<Binding>,
    pub parameters: Option<Vec<KeyValue>>,
    pub annotations: Option<Vec<KeyValue>>,
    pub publish: Option<bool>,
}

/// What an action path resolves to, read in one transaction: the package the path names,
/// the package a binding points at, and the action inside the resolved package.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolution {
    pub package: Option<PackageMeta>,
    pub bound: Option<PackageMeta>,
    pub action: Option<ActionMeta>,
}

impl Store {
    pub(crate) fn package_in(
        &self,
        rtxn: &RoTxn,
        key: &str,
    ) -> Result<Option<PackageMeta>, StoreError> {
        super::codec::get(&self.dbs().packages, "packages", rtxn, key)
    }

    /// Creates or updates a package (OpenWhisk's rules: a package never becomes a binding, a
    /// binding may be re-pointed, the `binding` annotation is the store's own).
    pub fn put_package(
        &self,
        ns: &EntityName,
        name: &EntityName,
        update: PackageUpdate,
        overwrite: bool,
    ) -> Result<PackageMeta, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        if self.action_in(&wtxn, &key)?.is_some() {
            return Err(StoreError::Conformance(key));
        }
        let existing = self.package_in(&wtxn, &key)?;
        if existing.is_some() && !overwrite {
            return Err(StoreError::PackageExists(key));
        }
        if update.binding.is_some() && existing.as_ref().is_some_and(|p| p.binding.is_none()) {
            return Err(StoreError::PackageCannotBecomeBinding(key));
        }
        let binding = update.binding.or_else(|| existing.as_ref().and_then(|p| p.binding.clone()));
        let mut annotations = update.annotations.unwrap_or_else(|| {
            existing.as_ref().map(|p| p.annotations.clone()).unwrap_or_default()
        });
        annotations.retain(|kv| kv.key != BINDING_ANNOTATION);
        if let Some(b) = &binding {
            let value = serde_json::to_value(b).unwrap_or_default();
            annotations.push(KeyValue::new(BINDING_ANNOTATION, value));
        }
        let origin = self.origin_in(&wtxn)?;
        let previous = match &existing {
            Some(p) => Some(p.revision),
            None if origin.is_some() => self.take_floor_in(&mut wtxn, PACKAGE_FLOORS, &key)?,
            None => None,
        };
        let revision = revision::next(previous, origin.as_deref());
        let meta = PackageMeta {
            namespace: ns.clone(),
            name: name.clone(),
            version: crate::model::ActionMeta::version_for(revision),
            revision,
            binding,
            parameters: update.parameters.unwrap_or_else(|| {
                existing.as_ref().map(|p| p.parameters.clone()).unwrap_or_default()
            }),
            annotations,
            publish: update.publish.unwrap_or_else(|| existing.as_ref().is_some_and(|p| p.publish)),
            updated: now_millis(),
        };
        let v = encode("packages", key.as_bytes(), &meta)?;
        self.dbs().packages.put(&mut wtxn, key.as_bytes(), &v).map_err(lmdb("put", "packages"))?;
        let entity = format!("{PACKAGE_PREFIX}{key}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "packages"))?;
        tracing::info!(package = %key, revision, "package stored");
        self.await_published(&entity, seq)?;
        Ok(meta)
    }

    pub fn get_package(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<Option<PackageMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        self.package_in(&rtxn, &format!("{ns}/{name}"))
    }

    /// Resolves an action path: the named package, the package its binding points at, and
    /// the action in the package that holds it. One read transaction; no code is touched.
    pub fn resolve_action(&self, fqn: &FullyQualifiedName) -> Result<Resolution, StoreError> {
        let rtxn = self.read_txn()?;
        let Some(pkg) = &fqn.package else {
            return Ok(Resolution {
                action: self.action_in(&rtxn, &fqn.key())?,
                ..Default::default()
            });
        };
        let Some(package) = self.package_in(&rtxn, &format!("{}/{pkg}", fqn.namespace))? else {
            return Ok(Resolution::default());
        };
        let (holder, bound) = match &package.binding {
            Some(b) => match self.package_in(&rtxn, &b.key())? {
                Some(target) => ((target.namespace.clone(), target.name.clone()), Some(target)),
                None => return Ok(Resolution { package: Some(package), ..Default::default() }),
            },
            None => ((package.namespace.clone(), package.name.clone()), None),
        };
        let key = format!("{}/{}/{}", holder.0, holder.1, fqn.name);
        let action = self.action_in(&rtxn, &key)?;
        Ok(Resolution { package: Some(package), bound, action })
    }

    /// Packages (and bindings) of `ns` by name, `skip` then at most `limit`.
    pub fn list_packages(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<PackageMeta>, StoreError> {
        self.scan_packages(&format!("{ns}/"), |_| true, skip, limit)
    }

    /// Shared packages ([`PackageMeta::shared`]): of `ns` only, or of every namespace but
    /// `except`.
    pub fn list_shared_packages(
        &self,
        ns: Option<&EntityName>,
        except: Option<&EntityName>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<PackageMeta>, StoreError> {
        let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
        let keep = |p: &PackageMeta| p.shared() && except != Some(&p.namespace);
        self.scan_packages(&prefix, keep, skip, limit)
    }

    fn scan_packages(
        &self,
        prefix: &str,
        keep: impl Fn(&PackageMeta) -> bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<PackageMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        let mut skipped = 0;
        for item in scan(&self.dbs().packages, &rtxn, "packages", prefix)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(lmdb("iter", "packages"))?;
            let p: PackageMeta = decode("packages", k, v)?;
            if !keep(&p) {
                continue;
            }
            if skipped < skip {
                skipped += 1;
                continue;
            }
            out.push(p);
        }
        Ok(out)
    }

    /// The actions inside package `ns/pkg`, by name.
    pub fn list_package_actions(
        &self,
        ns: &EntityName,
        pkg: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ActionMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        let prefix = format!("{ns}/{pkg}/");
        let mut out = Vec::new();
        let iter = self
            .dbs()
            .actions
            .prefix_iter(&rtxn, prefix.as_bytes())
            .map_err(lmdb("prefix_iter", "actions"))?;
        for item in iter.skip(skip).take(limit) {
            let (k, v) = item.map_err(lmdb("prefix_iter", "actions"))?;
            out.push(decode("actions", k, v)?);
        }
        Ok(out)
    }

    /// Deletes a package. A package that still holds actions is refused unless `force`, which
    /// deletes them with it (OpenWhisk's `force`); a binding holds none. `None`: not found.
    pub fn delete_package(
        &self,
        ns: &EntityName,
        name: &EntityName,
        force: bool,
    ) -> Result<Option<PackageMeta>, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        let Some(meta) = self.package_in(&wtxn, &key)? else { return Ok(None) };
        let mut fed = Vec::new();
        if meta.binding.is_none() {
            let inner = self.action_keys_in(&wtxn, &format!("{key}/"))?;
            if !inner.is_empty() && !force {
                return Err(StoreError::PackageNotEmpty { package: key, entities: inner.len() });
            }
            fed = self.delete_action_keys_in(&mut wtxn, &inner)?;
        }
        self.note_floor_in(&mut wtxn, PACKAGE_FLOORS, &key, meta.revision)?;
        self.dbs()
            .packages
            .delete(&mut wtxn, key.as_bytes())
            .map_err(lmdb("delete", "packages"))?;
        let entity = format!("{PACKAGE_PREFIX}{key}");
        fed.push(entity.clone());
        let seq = self.feed_in(&mut wtxn, &fed)?;
        wtxn.commit().map_err(lmdb("commit", "packages"))?;
        tracing::info!(package = %key, "package deleted");
        self.await_published(&entity, seq)?;
        Ok(Some(meta))
    }

    /// Deletes every package of `ns` (its namespace is being deleted); returns their feed keys.
    pub(crate) fn delete_packages_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{ns}/");
        let mut doomed = Vec::new();
        for item in self
            .dbs()
            .packages
            .prefix_iter(wtxn, prefix.as_bytes())
            .map_err(lmdb("prefix_iter", "packages"))?
        {
            let (k, v) = item.map_err(lmdb("prefix_iter", "packages"))?;
            let meta: PackageMeta = decode("packages", k, v)?;
            doomed.push((show_key(k), meta.revision));
        }
        let mut fed = Vec::with_capacity(doomed.len());
        for (k, rev) in doomed {
            self.note_floor_in(wtxn, PACKAGE_FLOORS, &k, rev)?;
            self.dbs().packages.delete(wtxn, k.as_bytes()).map_err(lmdb("delete", "packages"))?;
            fed.push(format!("{PACKAGE_PREFIX}{k}"));
        }
        Ok(fed)
    }
}

/// Packages on the entity topic: highest revision wins, as actions (`replica.rs`).
#[derive(Debug)]
pub(crate) struct PackageKind;

impl super::feed::EntityKind for PackageKind {
    fn prefix(&self) -> &'static str {
        PACKAGE_PREFIX
    }

    fn revisioned<'s>(&self, s: &'s Store) -> Option<Revisioned<'s>> {
        Some(Revisioned {
            db: &s.dbs().packages,
            name: "packages",
            floors: PACKAGE_FLOORS,
            payload: None,
            revision: |k, v| Ok(decode::<PackageMeta>("packages", k, v)?.revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::store::test_util::temp_store;
    use crate::store::{ActionUpdate, ExecUpdate};

    fn n(s: &str) -> EntityName {
        EntityName::parse(s).unwrap()
    }

    fn up() -> ActionUpdate {
        ActionUpdate {
            exec: Some(ExecUpdate {
                kind: Kind::parse("python:3").unwrap(),
                main: None,
                binary: false,
                image: None,
                code: b"def main(a): return a".to_vec(),
            }),
            ..Default::default()
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let (d, s) = temp_store();
        s.create_namespace(&n("guest")).unwrap();
        (d, s)
    }

    #[test]
    fn create_update_bumps_version_and_keeps_unset_fields() {
        let (_d, s) = setup();
        let p = PackageUpdate {
            parameters: Some(vec![KeyValue::new("a", 1)]),
            annotations: Some(vec![KeyValue::new("binding", "forged")]),
            ..Default::default()
        };
        let m = s.put_package(&n("guest"), &n("p"), p.clone(), false).unwrap();
        assert_eq!((m.version.as_str(), m.annotations.len()), ("0.0.1", 0), "no forged binding");
        assert!(matches!(
            s.put_package(&n("guest"), &n("p"), p, false),
            Err(StoreError::PackageExists(_))
        ));
        let m = s
            .put_package(
                &n("guest"),
                &n("p"),
                PackageUpdate { publish: Some(true), ..Default::default() },
                true,
            )
            .unwrap();
        assert_eq!((m.version.as_str(), m.publish), ("0.0.2", true));
        assert_eq!(m.parameters, vec![KeyValue::new("a", 1)]);
        let b = Binding { namespace: n("guest"), name: n("p") };
        let cannot = PackageUpdate { binding: Some(b), ..Default::default() };
        assert!(matches!(
            s.put_package(&n("guest"), &n("p"), cannot, true),
            Err(StoreError::PackageCannotBecomeBinding(_))
        ));
    }

    #[test]
    fn actions_live_inside_and_a_non_empty_package_is_not_deleted() {
        let (_d, s) = setup();
        s.put_package(&n("guest"), &n("p"), PackageUpdate::default(), false).unwrap();
        let inner = FullyQualifiedName::in_package(n("guest"), n("p"), n("a"));
        s.put_action(&inner, up(), false).unwrap();
        s.put_action(&FullyQualifiedName::new(n("guest"), n("top")), up(), false).unwrap();
        let names: Vec<_> = s
            .list_package_actions(&n("guest"), &n("p"), 0, 10)
            .unwrap()
            .into_iter()
            .map(|a| a.fqn().key())
            .collect();
        assert_eq!(names, ["guest/p/a"]);
        assert_eq!(s.count_actions(&n("guest")).unwrap(), 2, "the namespace lists both");
        match s.delete_package(&n("guest"), &n("p"), false) {
            Err(StoreError::PackageNotEmpty { entities: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(s.delete_package(&n("guest"), &n("p"), true).unwrap().is_some());
        assert!(s.get_action(&inner).unwrap().is_none(), "force deleted the action too");
        let missing = FullyQualifiedName::in_package(n("guest"), n("nope"), n("a"));
        assert!(matches!(s.put_action(&missing, up(), false), Err(StoreError::PackageNotFound(_))));
    }

    #[test]
    fn resolution_follows_one_binding_and_refuses_writes_through_it() {
        let (_d, s) = setup();
        s.create_namespace(&n("other")).unwrap();
        s.put_package(&n("other"), &n("lib"), PackageUpdate::default(), false).unwrap();
        s.put_action(&FullyQualifiedName::in_package(n("other"), n("lib"), n("a")), up(), false)
            .unwrap();
        let b = Binding { namespace: n("other"), name: n("lib") };
        let bind = PackageUpdate { binding: Some(b.clone()), ..Default::default() };
        let m = s.put_package(&n("guest"), &n("mine"), bind, false).unwrap();
        assert_eq!(m.annotations[0].key, "binding");
        let r = s
            .resolve_action(&FullyQualifiedName::in_package(n("guest"), n("mine"), n("a")))
            .unwrap();
        assert_eq!(r.package.unwrap().binding, Some(b));
        assert_eq!(r.bound.unwrap().key(), "other/lib");
        assert_eq!(r.action.unwrap().fqn().key(), "other/lib/a");
        let through = FullyQualifiedName::in_package(n("guest"), n("mine"), n("x"));
        assert!(matches!(
            s.put_action(&through, up(), false),
            Err(StoreError::NotAllowedOnBinding(_))
        ));
        // An action and a package never share a name.
        s.put_action(&FullyQualifiedName::new(n("guest"), n("solo")), up(), false).unwrap();
        assert!(matches!(
            s.put_package(&n("guest"), &n("solo"), PackageUpdate::default(), false),
            Err(StoreError::Conformance(_))
        ));
        assert!(matches!(
            s.put_action(&FullyQualifiedName::new(n("guest"), n("mine")), up(), false),
            Err(StoreError::Conformance(_))
        ));
        // Deleting the namespace takes its packages.
        s.delete_namespace(&n("other")).unwrap();
        assert!(s.get_package(&n("other"), &n("lib")).unwrap().is_none());
    }
}
