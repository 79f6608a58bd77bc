//! Triggers: `ns/name` -> [`TriggerMeta`] (JSON) in `triggers`. The trigger carries its
//! rules' links (`rules.rs` writes them), so a fire is one memory-map read.

use super::named::TRIGGERS;
use super::{Store, StoreError};
use crate::model::{now_millis, ActionMeta, EntityName, KeyValue, TriggerMeta};

/// A create or update. On update, `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerUpdate {
    pub parameters: Option<Vec<KeyValue>>,
    pub annotations: Option<Vec<KeyValue>>,
    pub publish: Option<bool>,
}

impl Store {
    /// Creates or updates a trigger; an update keeps its rules.
    pub fn put_trigger(
        &self,
        ns: &EntityName,
        name: &EntityName,
        update: TriggerUpdate,
        overwrite: bool,
    ) -> Result<TriggerMeta, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        self.check_conformance_in(&wtxn, &TRIGGERS, &key)?;
        let existing: Option<TriggerMeta> = self.named_in(&wtxn, &TRIGGERS, &key)?;
        if existing.is_some() && !overwrite {
            return Err(StoreError::TriggerExists(key));
        }
        let revision = self.named_revision_in(
            &mut wtxn,
            &TRIGGERS,
            &key,
            existing.as_ref().map(|t| t.revision),
        )?;
        let old = existing.unwrap_or_else(|| TriggerMeta {
            namespace: ns.clone(),
            name: name.clone(),
            version: String::new(),
            revision,
            parameters: Vec::new(),
            annotations: Vec::new(),
            publish: false,
            rules: Default::default(),
            updated: 0,
        });
        let meta = TriggerMeta {
            version: ActionMeta::version_for(revision),
            revision,
            parameters: update.parameters.unwrap_or(old.parameters),
            annotations: update.annotations.unwrap_or(old.annotations),
            publish: update.publish.unwrap_or(old.publish),
            updated: now_millis(),
            ..old
        };
        let fed = self.put_named_in(&mut wtxn, &TRIGGERS, &key, &meta)?;
        self.commit_named(wtxn, &TRIGGERS, &[fed])?;
        tracing::info!(trigger = %key, revision, "trigger stored");
        Ok(meta)
    }

    pub fn get_trigger(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<Option<TriggerMeta>, StoreError> {
        let rtxn = self.read_txn()?;
        self.named_in(&rtxn, &TRIGGERS, &format!("{ns}/{name}"))
    }

    /// Triggers of `ns` by name, `skip` then at most `limit`.
    pub fn list_triggers(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<TriggerMeta>, StoreError> {
        self.list_named(&TRIGGERS, Some(ns), skip, limit)
    }

    /// Deletes a trigger (its rules stay, inactive, as in OpenWhisk). `None`: not found.
    pub fn delete_trigger(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<Option<TriggerMeta>, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        let Some(meta) = self.named_in::<TriggerMeta>(&wtxn, &TRIGGERS, &key)? else {
            return Ok(None);
        };
        let fed = self.remove_named_in(&mut wtxn, &TRIGGERS, &key, meta.revision)?;
        self.commit_named(wtxn, &TRIGGERS, &[fed])?;
        tracing::info!(trigger = %key, "trigger deleted");
        Ok(Some(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    fn n(s: &str) -> EntityName {
        EntityName::parse(s).unwrap()
    }

    #[test]
    fn create_update_list_delete() {
        let (_d, s) = temp_store();
        s.create_namespace(&n("guest")).unwrap();
        let up =
            TriggerUpdate { parameters: Some(vec![KeyValue::new("a", 1)]), ..Default::default() };
        let t = s.put_trigger(&n("guest"), &n("t"), up.clone(), false).unwrap();
        assert_eq!(t.version, "0.0.1");
        assert!(matches!(
            s.put_trigger(&n("guest"), &n("t"), up, false),
            Err(StoreError::TriggerExists(_))
        ));
        let t2 = s.put_trigger(&n("guest"), &n("t"), TriggerUpdate::default(), true).unwrap();
        assert_eq!((t2.version.as_str(), t2.parameters.len()), ("0.0.2", 1));
        assert_eq!(s.list_triggers(&n("guest"), 0, 10).unwrap().len(), 1);
        assert!(matches!(
            s.put_trigger(&n("nobody"), &n("t"), TriggerUpdate::default(), false),
            Err(StoreError::NamespaceNotFound(_))
        ));
        assert!(s.delete_trigger(&n("guest"), &n("t")).unwrap().is_some());
        assert!(s.get_trigger(&n("guest"), &n("t")).unwrap().is_none());
        s.put_trigger(&n("guest"), &n("t"), TriggerUpdate::default(), false).unwrap();
        s.delete_namespace(&n("guest")).unwrap();
        assert!(s.get_trigger(&n("guest"), &n("t")).unwrap().is_none());
    }
}
