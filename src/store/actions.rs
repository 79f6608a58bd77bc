//! Actions: `ns/name` -> [`ActionMeta`] (JSON, no code) in `actions`, and `ns/name` -> raw code
//! bytes in `code`. Keeping the code apart means the hot lookup decodes a few hundred bytes and
//! never pages in a 48 MB archive.

use heed::{RoTxn, RwTxn};

use super::codec::{be_u64, decode, encode, scan, show_key};
use super::error::lmdb;
use super::feed::{EntityKind, ACTION_PREFIX};
use super::replica::Revisioned;
use super::{Store, StoreError};
use crate::model::{
    amend_exec_annotation, now_millis, revision, ActionExec, ActionLimits, ActionMeta, EntityName,
    ExecMeta, FullyQualifiedName, KeyValue, Kind, LimitsPatch, SequenceExec,
};

/// Meta key prefix of the revision floor of a deleted action (`revision_floor/ns/name`).
pub(crate) const ACTION_FLOORS: &str = "revision_floor/";
/// The same for packages (`package_floor/ns/name`): an action and a package may be deleted
/// under one name, and each kind keeps its own floors.
pub(crate) const PACKAGE_FLOORS: &str = "package_floor/";

/// New code for an action.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecUpdate {
    pub kind: Kind,
    pub main: Option<String>,
    /// True when `code` is a zip archive.
    pub binary: bool,
    /// A blackbox action's image (`ExecMeta::image`).
    pub image: Option<String>,
    /// The code as stored (base64 already decoded for binary code).
    pub code: Vec<u8>,
}

/// A create or update. On update, `None` keeps the stored value; `limits` is merged field by
/// field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionUpdate {
    /// New code (a code action from now on).
    pub exec: Option<ExecUpdate>,
    /// New components (a sequence from now on). The API sets at most one of `exec` and
    /// `sequence`; given both, the sequence wins. Kept apart from [`ExecUpdate`] so that the
    /// many writers of code updates stay as they are.
    pub sequence: Option<SequenceExec>,
    pub parameters: Option<Vec<KeyValue>>,
    pub annotations: Option<Vec<KeyValue>>,
    pub limits: Option<LimitsPatch>,
    pub publish: Option<bool>,
}

impl Store {
    pub(crate) fn action_in(
        &self,
        rtxn: &RoTxn,
        key: &str,
    ) -> Result<Option<ActionMeta>, StoreError> {
        super::codec::get(&self.dbs().actions, "actions", rtxn, key)
    }

    /// Creates or updates an action in one write transaction: meta and code change together
    /// or not at all, and the revision is bumped (1 on create).
    pub fn put_action(
        &self,
        fqn: &FullyQualifiedName,
        update: ActionUpdate,
        overwrite: bool,
    ) -> Result<ActionMeta, StoreError> {
        let key = fqn.key();
        let mut wtxn = self.write_txn()?;
        let ns_key = fqn.namespace.as_str().as_bytes();
        if self.dbs().namespaces.get(&wtxn, ns_key).map_err(lmdb("get", "namespaces"))?.is_none() {
            return Err(StoreError::NamespaceNotFound(fqn.namespace.to_string()));
        }
        match &fqn.package {
            // Actions are written into a package, never through a binding.
            Some(pkg) => match self.package_in(&wtxn, &format!("{}/{pkg}", fqn.namespace))? {
                None => {
                    return Err(StoreError::PackageNotFound(format!("{}/{pkg}", fqn.namespace)))
                }
                Some(p) if p.binding.is_some() => return Err(StoreError::NotAllowedOnBinding(key)),
                Some(_) => {}
            },
            None if self.package_in(&wtxn, &key)?.is_some() => {
                return Err(StoreError::Conformance(key))
            }
            None => {}
        }
        let existing = self.action_in(&wtxn, &key)?;
        if existing.is_some() && !overwrite {
            return Err(StoreError::ActionExists(key));
        }
        let (exec, code_size, code) = match (update.sequence, update.exec, &existing) {
            // A sequence has no code: an empty entry, so every action has one.
            (Some(seq), _, _) => (ActionExec::Sequence(seq), 0, Some(Vec::new())),
            (None, Some(e), _) => {
                let size = e.code.len() as u64;
                let exec =
                    ExecMeta { kind: e.kind, main: e.main, binary: e.binary, image: e.image };
                (ActionExec::Code(exec), size, Some(e.code))
            }
            (None, None, Some(old)) => (old.exec.clone(), old.code_size, None),
            (None, None, None) => return Err(StoreError::MissingExec(key)),
        };
        let base_limits = existing.as_ref().map(|a| a.limits).unwrap_or_default();
        let limits: ActionLimits = update.limits.unwrap_or_default().apply(base_limits);
        limits
            .validate_for_kind(exec.kind())
            .map_err(|source| StoreError::InvalidLimits { action: key.clone(), source })?;
        // In a cluster the revision carries this controller's tag (model::revision), and a
        // re-created action continues above the revision it had when deleted: other hosts
        // keep the highest revision they saw, so a re-creation numbered 1 again would lose
        // against the old action on a host that never saw the delete's tombstone.
        let origin = self.origin_in(&wtxn)?;
        let previous = match &existing {
            Some(a) => Some(a.revision),
            None if origin.is_some() => self.take_floor_in(&mut wtxn, ACTION_FLOORS, &key)?,
            None => None,
        };
        let revision = revision::next(previous, origin.as_deref());
        let mut annotations = update.annotations.unwrap_or_else(|| {
            existing.as_ref().map(|a| a.annotations.clone()).unwrap_or_default()
        });
        amend_exec_annotation(&mut annotations, &exec);
        let meta = ActionMeta {
            namespace: fqn.namespace.clone(),
            package: fqn.package.clone(),
            name: fqn.name.clone(),
            version: ActionMeta::version_for(revision),
            revision,
            exec,
            limits,
            parameters: update.parameters.unwrap_or_else(|| {
                existing.as_ref().map(|a| a.parameters.clone()).unwrap_or_default()
            }),
            annotations,
            publish: update.publish.unwrap_or_else(|| existing.as_ref().is_some_and(|a| a.publish)),
            updated: now_millis(),
            code_size,
        };
        let v = encode("actions", key.as_bytes(), &meta)?;
        self.dbs().actions.put(&mut wtxn, key.as_bytes(), &v).map_err(lmdb("put", "actions"))?;
        if let Some(code) = code {
            self.dbs().code.put(&mut wtxn, key.as_bytes(), &code).map_err(lmdb("put", "code"))?;
        }
        let entity = format!("{ACTION_PREFIX}{key}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "actions"))?;
        tracing::info!(action = %key, revision, "action stored");
        self.await_published(&entity, seq)?;
        Ok(meta)
    }

    /// The action without its code: the hot-path lookup.
    pub fn get_action(&self, fqn: &FullyQualifiedName) -> Result<Option<ActionMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        self.action_in(&rtxn, &fqn.key())
    }

    /// The action and a copy of its code (for `GET` with code).
    pub fn get_action_with_code(
        &self,
        fqn: &FullyQualifiedName,
    ) -> Result<Option<(ActionMeta, Vec<u8>)>, StoreError> {
        let key = fqn.key();
        let rtxn = self.read_txn()?;
        let Some(meta) = self.action_in(&rtxn, &key)? else { return Ok(None) };
        let code =
            self.dbs().code.get(&rtxn, key.as_bytes()).map_err(lmdb("get", "code"))?.ok_or_else(
                || StoreError::Corrupt {
                    db: "code",
                    key: key.clone(),
                    message: "the action exists but its code is missing".into(),
                },
            )?;
        Ok(Some((meta, code.to_vec())))
    }

    /// Actions of `ns` by name, `skip` then at most `limit`.
    pub fn list_actions(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ActionMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        let prefix = format!("{ns}/");
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

    /// Every action, over all namespaces, whose code runs an image (`exec.image` set), with
    /// that image as its creator named it: read-only, for `hearthd admin image rm`, which
    /// refuses to remove an image an action still uses.
    pub fn actions_with_image(&self) -> Result<Vec<(FullyQualifiedName, String)>, StoreError> {
        let rtxn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs().actions.iter(&rtxn).map_err(lmdb("iter", "actions"))? {
            let (k, v) = item.map_err(lmdb("iter", "actions"))?;
            let meta: ActionMeta = decode("actions", k, v)?;
            if let ActionExec::Code(ExecMeta { image: Some(image), .. }) = &meta.exec {
                let fqn = match &meta.package {
                    Some(pkg) => FullyQualifiedName::in_package(
                        meta.namespace.clone(),
                        pkg.clone(),
                        meta.name.clone(),
                    ),
                    None => FullyQualifiedName::new(meta.namespace.clone(), meta.name.clone()),
                };
                out.push((fqn, image.clone()));
            }
        }
        Ok(out)
    }

    /// How many actions `ns` has.
    pub fn count_actions(&self, ns: &EntityName) -> Result<usize, StoreError> {
        let rtxn = self.read_txn()?;
        let prefix = format!("{ns}/");
        let iter = self
            .dbs()
            .actions
            .prefix_iter(&rtxn, prefix.as_bytes())
            .map_err(lmdb("prefix_iter", "actions"))?;
        let mut n = 0;
        for item in iter {
            item.map_err(lmdb("prefix_iter", "actions"))?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes an action and its code; returns the deleted meta, `None` if it did not exist.
    pub fn delete_action(
        &self,
        fqn: &FullyQualifiedName,
    ) -> Result<Option<ActionMeta>, StoreError> {
        let key = fqn.key();
        let mut wtxn = self.write_txn()?;
        if let Some(pkg) = &fqn.package {
            let p = self.package_in(&wtxn, &format!("{}/{pkg}", fqn.namespace))?;
            if p.is_some_and(|p| p.binding.is_some()) {
                return Err(StoreError::NotAllowedOnBinding(key));
            }
        }
        let Some(meta) = self.action_in(&wtxn, &key)? else { return Ok(None) };
        self.note_floor_in(&mut wtxn, ACTION_FLOORS, &key, meta.revision)?;
        self.dbs().actions.delete(&mut wtxn, key.as_bytes()).map_err(lmdb("delete", "actions"))?;
        self.dbs().code.delete(&mut wtxn, key.as_bytes()).map_err(lmdb("delete", "code"))?;
        let entity = format!("{ACTION_PREFIX}{key}");
        let seq = self.feed_in(&mut wtxn, std::slice::from_ref(&entity))?;
        wtxn.commit().map_err(lmdb("commit", "actions"))?;
        tracing::info!(action = %key, "action deleted");
        self.await_published(&entity, seq)?;
        Ok(Some(meta))
    }

    pub(crate) fn delete_actions_of_in(
        &self,
        wtxn: &mut RwTxn,
        ns: &EntityName,
    ) -> Result<Vec<String>, StoreError> {
        let doomed = self.action_keys_in(wtxn, &format!("{ns}/"))?;
        self.delete_action_keys_in(wtxn, &doomed)
    }

    /// The keys and revisions of the actions under `prefix` (a namespace's, a package's).
    pub(crate) fn action_keys_in(
        &self,
        txn: &RoTxn,
        prefix: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in scan(&self.dbs().actions, txn, "actions", prefix)? {
            let (k, v) = item.map_err(lmdb("iter", "actions"))?;
            let meta: ActionMeta = decode("actions", k, v)?;
            out.push((show_key(k), meta.revision));
        }
        Ok(out)
    }

    /// Deletes the actions `doomed` (with their code, noting their floors); returns their
    /// feed keys.
    pub(crate) fn delete_action_keys_in(
        &self,
        wtxn: &mut RwTxn,
        doomed: &[(String, u64)],
    ) -> Result<Vec<String>, StoreError> {
        for (k, rev) in doomed {
            self.note_floor_in(wtxn, ACTION_FLOORS, k, *rev)?;
            self.dbs().actions.delete(wtxn, k.as_bytes()).map_err(lmdb("delete", "actions"))?;
            self.dbs().code.delete(wtxn, k.as_bytes()).map_err(lmdb("delete", "code"))?;
        }
        Ok(doomed.iter().map(|(k, _)| format!("{ACTION_PREFIX}{k}")).collect())
    }
}

impl Store {
    /// Remembers, in a cluster, the revision of an action being deleted (locally or by a
    /// tombstone), so that re-creating it continues above it, a stale copy of it re-published
    /// by another controller is refused (`replica.rs`), and its deletion can be re-published
    /// (`feed.rs`). Nothing outside a cluster (standalone numbering is unchanged). One small
    /// meta entry per deleted action, the highest revision noted, removed when the action is
    /// created again here.
    pub(crate) fn note_floor_in(
        &self,
        wtxn: &mut RwTxn,
        floors: &str,
        key: &str,
        revision: u64,
    ) -> Result<(), StoreError> {
        if self.origin_in(wtxn)?.is_none() {
            return Ok(());
        }
        self.raise_floor_in(wtxn, floors, key, revision)
    }

    /// [`note_floor_in`](Self::note_floor_in) on any host: a replica (an invoker too)
    /// applying a deletion from the entity topic is in a cluster by definition.
    pub(crate) fn raise_floor_in(
        &self,
        wtxn: &mut RwTxn,
        floors: &str,
        key: &str,
        revision: u64,
    ) -> Result<(), StoreError> {
        let revision = self.floor_in(wtxn, floors, key)?.map_or(revision, |f| f.max(revision));
        let k = format!("{floors}{key}");
        self.dbs()
            .meta
            .put(wtxn, k.as_bytes(), &revision.to_be_bytes())
            .map_err(lmdb("put", "meta"))
    }

    /// The revision floor of entity `key` (`ns/name`) of the kind whose floors are under
    /// `floors`: the highest revision of it deleted here.
    pub(crate) fn floor_in(
        &self,
        rtxn: &RoTxn,
        floors: &str,
        key: &str,
    ) -> Result<Option<u64>, StoreError> {
        let k = format!("{floors}{key}");
        match self.dbs().meta.get(rtxn, k.as_bytes()).map_err(lmdb("get", "meta"))? {
            Some(b) => Ok(Some(be_u64("meta", k.as_bytes(), b)?)),
            None => Ok(None),
        }
    }

    /// Every entity of a kind deleted here and not created again: `(ns/name, floor)`.
    pub(crate) fn floors_in(
        &self,
        rtxn: &RoTxn,
        floors: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let d = self.dbs();
        let mut out = Vec::new();
        for item in
            d.meta.prefix_iter(rtxn, floors.as_bytes()).map_err(lmdb("prefix_iter", "meta"))?
        {
            let (k, v) = item.map_err(lmdb("prefix_iter", "meta"))?;
            let key = String::from_utf8_lossy(&k[floors.len()..]).into_owned();
            out.push((key, be_u64("meta", k, v)?));
        }
        Ok(out)
    }

    /// The revision floor of `key` (see [`note_floor_in`](Self::note_floor_in)), removed.
    pub(crate) fn take_floor_in(
        &self,
        wtxn: &mut RwTxn,
        floors: &str,
        key: &str,
    ) -> Result<Option<u64>, StoreError> {
        let floor = self.floor_in(wtxn, floors, key)?;
        if floor.is_some() {
            let k = format!("{floors}{key}");
            self.dbs().meta.delete(wtxn, k.as_bytes()).map_err(lmdb("delete", "meta"))?;
        }
        Ok(floor)
    }
}

/// Actions on the entity topic: meta and code travel together; the highest revision wins
/// (`replica.rs`).
#[derive(Debug)]
pub(crate) struct ActionKind;

impl EntityKind for ActionKind {
    fn prefix(&self) -> &'static str {
        ACTION_PREFIX
    }

    fn revisioned<'s>(&self, s: &'s Store) -> Option<Revisioned<'s>> {
        Some(Revisioned {
            db: &s.dbs().actions,
            name: "actions",
            floors: ACTION_FLOORS,
            payload: Some((&s.dbs().code, "code")),
            revision: |k, v| Ok(decode::<ActionMeta>("actions", k, v)?.revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    fn fqn(ns: &str, n: &str) -> FullyQualifiedName {
        FullyQualifiedName::new(EntityName::parse(ns).unwrap(), EntityName::parse(n).unwrap())
    }

    fn py(code: &str) -> ExecUpdate {
        ExecUpdate {
            kind: Kind::parse("python:3").unwrap(),
            main: None,
            binary: false,
            image: None,
            code: code.into(),
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let (d, s) = temp_store();
        s.create_namespace(&EntityName::parse("guest").unwrap()).unwrap();
        (d, s)
    }

    #[test]
    fn create_get_delete() {
        let (_d, s) = setup();
        let f = fqn("guest", "hello");
        let up = ActionUpdate { exec: Some(py("def main(a): return a")), ..Default::default() };
        let m = s.put_action(&f, up, false).unwrap();
        assert_eq!((m.revision, m.version.as_str(), m.code_size), (1, "0.0.1", 21));
        assert_eq!(s.get_action(&f).unwrap().unwrap(), m);
        let (_, code) = s.get_action_with_code(&f).unwrap().unwrap();
        assert_eq!(code, b"def main(a): return a");
        assert!(s.delete_action(&f).unwrap().is_some());
        assert!(s.get_action(&f).unwrap().is_none());
        assert!(s.delete_action(&f).unwrap().is_none());
    }

    #[test]
    fn overwrite_conflict_and_merge() {
        let (_d, s) = setup();
        let f = fqn("guest", "a");
        let up = ActionUpdate {
            exec: Some(py("x")),
            parameters: Some(vec![KeyValue::new("p", 1)]),
            limits: Some(LimitsPatch { timeout: Some(1000), ..Default::default() }),
            ..Default::default()
        };
        s.put_action(&f, up.clone(), false).unwrap();
        assert!(matches!(s.put_action(&f, up, false), Err(StoreError::ActionExists(_))));
        // Update only the memory limit and the annotations: code, params and timeout stay.
        let up2 = ActionUpdate {
            annotations: Some(vec![KeyValue::new("x", "y")]),
            limits: Some(LimitsPatch { memory: Some(128), ..Default::default() }),
            ..Default::default()
        };
        let m = s.put_action(&f, up2, true).unwrap();
        assert_eq!(m.revision, 2);
        assert_eq!(m.version, "0.0.2");
        assert_eq!(m.limits.timeout, 1000);
        assert_eq!(m.limits.memory, 128);
        assert_eq!(m.parameters, vec![KeyValue::new("p", 1)]);
        assert_eq!(m.annotations, vec![KeyValue::new("x", "y")]);
        assert_eq!(s.get_action_with_code(&f).unwrap().unwrap().1, b"x");
    }

    #[test]
    fn invalid_input_stores_nothing() {
        let (_d, s) = setup();
        let f = fqn("guest", "b");
        assert!(matches!(
            s.put_action(&f, ActionUpdate::default(), true),
            Err(StoreError::MissingExec(_))
        ));
        let bad = ActionUpdate {
            exec: Some(py("x")),
            limits: Some(LimitsPatch { memory: Some(4096), ..Default::default() }),
            ..Default::default()
        };
        assert!(matches!(s.put_action(&f, bad, true), Err(StoreError::InvalidLimits { .. })));
        assert!(s.get_action(&f).unwrap().is_none());
        let other = fqn("nobody", "x");
        let up = ActionUpdate { exec: Some(py("x")), ..Default::default() };
        assert!(matches!(s.put_action(&other, up, true), Err(StoreError::NamespaceNotFound(_))));
    }

    #[test]
    fn list_paginates_within_namespace() {
        let (_d, s) = setup();
        s.create_namespace(&EntityName::parse("guest2").unwrap()).unwrap();
        for i in 0..5 {
            let up = ActionUpdate { exec: Some(py("x")), ..Default::default() };
            s.put_action(&fqn("guest", &format!("a{i}")), up, false).unwrap();
        }
        let up = ActionUpdate { exec: Some(py("x")), ..Default::default() };
        s.put_action(&fqn("guest2", "z"), up, false).unwrap();
        let ns = EntityName::parse("guest").unwrap();
        let names: Vec<_> =
            s.list_actions(&ns, 1, 2).unwrap().into_iter().map(|a| a.name.to_string()).collect();
        assert_eq!(names, ["a1", "a2"]);
        assert_eq!(s.count_actions(&ns).unwrap(), 5);
        assert_eq!(s.list_actions(&ns, 10, 30).unwrap().len(), 0);
    }

    #[test]
    fn cluster_revisions_carry_the_controller_and_survive_a_re_creation() {
        let (_d, s) = setup();
        let f = fqn("guest", "r");
        let up = || ActionUpdate { exec: Some(py("x")), ..Default::default() };
        // Plain before the cluster.
        assert_eq!(s.put_action(&f, up(), false).unwrap().revision, 1);
        s.enable_entity_feed("c1").unwrap();
        let m = s.put_action(&f, up(), true).unwrap();
        assert_eq!(m.revision, 2 << revision::TAG_BITS | revision::tag("c1"));
        assert_eq!(m.version, "0.0.2");
        s.delete_action(&f).unwrap();
        let m = s.put_action(&f, up(), false).unwrap();
        assert_eq!(m.version, "0.0.3", "a re-creation continues above the deleted revision");
        s.delete_namespace(&EntityName::parse("guest").unwrap()).unwrap();
        s.create_namespace(&EntityName::parse("guest").unwrap()).unwrap();
        let m = s.put_action(&f, up(), false).unwrap();
        assert_eq!(m.version, "0.0.4", "also after the namespace was deleted");
    }
}
