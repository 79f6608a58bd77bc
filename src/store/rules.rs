//! Rules: `ns/name` -> [`RuleMeta`] (JSON) in `rules`, and each rule's link (action and
//! status) in its trigger's rules map, written in the same transaction (OpenWhisk keeps the
//! status in the trigger only; a rule whose trigger is gone reads as inactive).

use heed::RoTxn;

use super::named::{RULES, TRIGGERS};
use super::{Store, StoreError};
use crate::model::{
    now_millis, ActionMeta, EntityName, EntityPath, KeyValue, ReducedRule, RuleMeta, RuleStatus,
    TriggerMeta,
};

/// A create or update. On update, `None` keeps the stored value; a create needs both
/// `trigger` and `action` (the controller checks it, with OpenWhisk's message).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleUpdate {
    pub trigger: Option<EntityPath>,
    pub action: Option<EntityPath>,
    pub annotations: Option<Vec<KeyValue>>,
    pub publish: Option<bool>,
}

/// What `POST {"status"}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Changed,
    /// The rule already had that status.
    Unchanged,
}

impl Store {
    /// The trigger `path` names, when it is a trigger of a namespace (never in a package).
    fn trigger_at_in(
        &self,
        txn: &RoTxn,
        path: &EntityPath,
    ) -> Result<Option<TriggerMeta>, StoreError> {
        if path.path.contains('/') {
            return Ok(None);
        }
        self.named_in(txn, &TRIGGERS, &path.to_string())
    }

    /// The status of rule `key` as its trigger's link says (inactive when there is none).
    fn status_in(&self, txn: &RoTxn, rule: &RuleMeta) -> Result<RuleStatus, StoreError> {
        Ok(self
            .trigger_at_in(txn, &rule.trigger)?
            .and_then(|t| t.rules.get(&rule.key()).map(|r| r.status))
            .unwrap_or(RuleStatus::Inactive))
    }

    /// Creates or updates a rule and links it into its trigger (unlinking it from a previous
    /// trigger). A new rule is active; an update keeps its status.
    pub fn put_rule(
        &self,
        ns: &EntityName,
        name: &EntityName,
        update: RuleUpdate,
        overwrite: bool,
    ) -> Result<(RuleMeta, RuleStatus), StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        if !self.namespace_exists_in(&wtxn, ns)? {
            return Err(StoreError::NamespaceNotFound(ns.to_string()));
        }
        self.check_conformance_in(&wtxn, &RULES, &key)?;
        let existing: Option<RuleMeta> = self.named_in(&wtxn, &RULES, &key)?;
        if existing.is_some() && !overwrite {
            return Err(StoreError::RuleExists(key));
        }
        let (trigger, action) = match (&existing, update.trigger, update.action) {
            (_, Some(t), Some(a)) => (t, a),
            (Some(r), t, a) => (t.unwrap_or(r.trigger.clone()), a.unwrap_or(r.action.clone())),
            (None, _, _) => return Err(StoreError::RuleIncomplete(key)),
        };
        let mut new_trigger = self
            .trigger_at_in(&wtxn, &trigger)?
            .ok_or_else(|| StoreError::TriggerNotFound(format!("/{trigger}")))?;
        let status = match &existing {
            Some(r) => self.status_in(&wtxn, r)?,
            None => RuleStatus::Active,
        };
        let revision =
            self.named_revision_in(&mut wtxn, &RULES, &key, existing.as_ref().map(|r| r.revision))?;
        let meta = RuleMeta {
            namespace: ns.clone(),
            name: name.clone(),
            version: ActionMeta::version_for(revision),
            revision,
            trigger: trigger.clone(),
            action: action.clone(),
            annotations: update.annotations.unwrap_or_else(|| {
                existing.as_ref().map(|r| r.annotations.clone()).unwrap_or_default()
            }),
            publish: update.publish.unwrap_or_else(|| existing.as_ref().is_some_and(|r| r.publish)),
            updated: now_millis(),
        };
        let mut fed = vec![self.put_named_in(&mut wtxn, &RULES, &key, &meta)?];
        if let Some(old) = existing.as_ref().filter(|r| r.trigger != trigger) {
            if let Some(mut t) = self.trigger_at_in(&wtxn, &old.trigger)? {
                t.rules.remove(&key);
                fed.push(self.relink_in(&mut wtxn, t)?);
            }
        }
        new_trigger.rules.insert(key.clone(), ReducedRule { action, status });
        fed.push(self.relink_in(&mut wtxn, new_trigger)?);
        self.commit_named(wtxn, &RULES, &fed)?;
        tracing::info!(rule = %key, %trigger, revision, "rule stored");
        Ok((meta, status))
    }

    /// Writes a trigger whose rules map changed, as a new revision.
    fn relink_in(&self, wtxn: &mut heed::RwTxn, mut t: TriggerMeta) -> Result<String, StoreError> {
        let key = t.key();
        t.revision = self.named_revision_in(wtxn, &TRIGGERS, &key, Some(t.revision))?;
        t.version = ActionMeta::version_for(t.revision);
        t.updated = now_millis();
        self.put_named_in(wtxn, &TRIGGERS, &key, &t)
    }

    /// A rule with its status.
    pub fn get_rule(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<Option<(RuleMeta, RuleStatus)>, StoreError> {
        let rtxn = self.read_txn()?;
        let Some(rule) = self.named_in::<RuleMeta>(&rtxn, &RULES, &format!("{ns}/{name}"))? else {
            return Ok(None);
        };
        let status = self.status_in(&rtxn, &rule)?;
        Ok(Some((rule, status)))
    }

    /// Rules of `ns` by name, with their status.
    pub fn list_rules(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(RuleMeta, RuleStatus)>, StoreError> {
        let rules: Vec<RuleMeta> = self.list_named(&RULES, Some(ns), skip, limit)?;
        let rtxn = self.read_txn()?;
        rules
            .into_iter()
            .map(|r| {
                let s = self.status_in(&rtxn, &r)?;
                Ok((r, s))
            })
            .collect()
    }

    /// Enables or disables a rule: its link in its trigger. `None`: no such rule.
    pub fn set_rule_status(
        &self,
        ns: &EntityName,
        name: &EntityName,
        status: RuleStatus,
    ) -> Result<Option<StatusChange>, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        let Some(rule) = self.named_in::<RuleMeta>(&wtxn, &RULES, &key)? else {
            return Ok(None);
        };
        let Some(mut trigger) = self.trigger_at_in(&wtxn, &rule.trigger)? else {
            return Err(StoreError::RuleTriggerMissing(key));
        };
        if trigger.rules.get(&key).map(|r| r.status) == Some(status) {
            return Ok(Some(StatusChange::Unchanged));
        }
        trigger.rules.insert(key.clone(), ReducedRule { action: rule.action.clone(), status });
        let fed = self.relink_in(&mut wtxn, trigger)?;
        self.commit_named(wtxn, &TRIGGERS, &[fed])?;
        tracing::info!(rule = %key, status = status.as_str(), "rule status changed");
        Ok(Some(StatusChange::Changed))
    }

    /// Deletes a rule and its link. `None`: not found.
    pub fn delete_rule(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<Option<RuleMeta>, StoreError> {
        let key = format!("{ns}/{name}");
        let mut wtxn = self.write_txn()?;
        let Some(rule) = self.named_in::<RuleMeta>(&wtxn, &RULES, &key)? else {
            return Ok(None);
        };
        let mut fed = vec![self.remove_named_in(&mut wtxn, &RULES, &key, rule.revision)?];
        if let Some(mut t) = self.trigger_at_in(&wtxn, &rule.trigger)? {
            if t.rules.remove(&key).is_some() {
                fed.push(self.relink_in(&mut wtxn, t)?);
            }
        }
        self.commit_named(wtxn, &RULES, &fed)?;
        tracing::info!(rule = %key, "rule deleted");
        Ok(Some(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;
    use crate::store::TriggerUpdate;

    fn n(s: &str) -> EntityName {
        EntityName::parse(s).unwrap()
    }

    fn path(s: &str) -> EntityPath {
        EntityPath::parse(s, &n("guest")).unwrap()
    }

    fn rule(t: &str, a: &str) -> RuleUpdate {
        RuleUpdate { trigger: Some(path(t)), action: Some(path(a)), ..Default::default() }
    }

    #[test]
    fn links_follow_the_rule_and_status_lives_in_the_trigger() {
        let (_d, s) = temp_store();
        let g = n("guest");
        s.create_namespace(&g).unwrap();
        assert!(matches!(
            s.put_rule(&g, &n("r"), rule("t", "a"), false),
            Err(StoreError::TriggerNotFound(t)) if t == "/guest/t"
        ));
        s.put_trigger(&g, &n("t"), TriggerUpdate::default(), false).unwrap();
        s.put_trigger(&g, &n("t2"), TriggerUpdate::default(), false).unwrap();
        let (r, st) = s.put_rule(&g, &n("r"), rule("t", "a"), false).unwrap();
        assert_eq!((r.trigger.to_string().as_str(), st), ("guest/t", RuleStatus::Active));
        assert!(s.get_trigger(&g, &n("t")).unwrap().unwrap().has_active_rule());
        assert!(matches!(
            s.put_rule(&g, &n("r"), rule("t", "a"), false),
            Err(StoreError::RuleExists(_))
        ));
        assert_eq!(
            s.set_rule_status(&g, &n("r"), RuleStatus::Inactive).unwrap(),
            Some(StatusChange::Changed)
        );
        assert_eq!(
            s.set_rule_status(&g, &n("r"), RuleStatus::Inactive).unwrap(),
            Some(StatusChange::Unchanged)
        );
        // Moving the rule to t2 keeps its status and unlinks it from t.
        let (_, st) = s
            .put_rule(
                &g,
                &n("r"),
                RuleUpdate { trigger: Some(path("t2")), ..Default::default() },
                true,
            )
            .unwrap();
        assert_eq!(st, RuleStatus::Inactive);
        assert!(s.get_trigger(&g, &n("t")).unwrap().unwrap().rules.is_empty());
        assert_eq!(s.get_trigger(&g, &n("t2")).unwrap().unwrap().rules.len(), 1);
        // A trigger of the same name as a rule is refused.
        assert!(matches!(
            s.put_trigger(&g, &n("r"), TriggerUpdate::default(), false),
            Err(StoreError::Conformance(_))
        ));
        s.delete_trigger(&g, &n("t2")).unwrap();
        assert_eq!(s.get_rule(&g, &n("r")).unwrap().unwrap().1, RuleStatus::Inactive);
        assert!(matches!(
            s.set_rule_status(&g, &n("r"), RuleStatus::Active),
            Err(StoreError::RuleTriggerMissing(_))
        ));
        assert!(s.delete_rule(&g, &n("r")).unwrap().is_some());
        assert!(s.list_rules(&g, 0, 10).unwrap().is_empty());
    }
}
