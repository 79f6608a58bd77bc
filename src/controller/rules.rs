//! Rules: who may link what. A rule, its trigger and the namespace running its action are
//! the caller's: the trigger must be of the caller's namespace (triggers are never shared);
//! the action may be the caller's or one of a shared package of another namespace (it runs
//! as the rule's namespace, as an invoke by its owner would). Both must exist when the rule
//! is written, with OpenWhisk's messages.

use super::triggers::NOT_FOUND;
use super::{blocking, Controller, ControllerError};
use crate::model::{EntityName, EntityPath, Identity, RuleMeta, RuleStatus};
use crate::store::{RuleUpdate, StatusChange, StoreError};

impl Controller {
    /// Creates or updates a rule of the caller's namespace.
    pub async fn put_rule(
        &self,
        caller: &Identity,
        name: EntityName,
        update: RuleUpdate,
        overwrite: bool,
    ) -> Result<(RuleMeta, RuleStatus), ControllerError> {
        let ns = caller.namespace.clone();
        let existing = self.store.get_rule(&ns, &name)?.map(|(r, _)| r);
        if existing.is_none() && (update.trigger.is_none() || update.action.is_none()) {
            return Err(ControllerError::Invalid(
                "rule requires a valid trigger and a valid action".into(),
            ));
        }
        if let Some(t) = &update.trigger {
            if t.namespace() != ns.as_str() {
                return Err(ControllerError::Forbidden(t.namespace().to_owned()));
            }
        }
        if existing.is_some() && !overwrite {
            return Err(StoreError::RuleExists(format!("{ns}/{name}")).into());
        }
        let trigger = update.trigger.as_ref().or(existing.as_ref().map(|r| &r.trigger));
        let action = update.action.as_ref().or(existing.as_ref().map(|r| &r.action));
        if let (Some(trigger), Some(action)) = (trigger, action) {
            self.check_rule_targets(caller, trigger, action)?;
        }
        let store = self.store.clone();
        blocking(move || store.put_rule(&ns, &name, update, overwrite)).await
    }

    /// OpenWhisk's `checkTriggerAndActionExist`, with its messages (400).
    fn check_rule_targets(
        &self,
        caller: &Identity,
        trigger: &EntityPath,
        action: &EntityPath,
    ) -> Result<(), ControllerError> {
        let t_name = EntityName::parse(trigger.path.as_str()).ok();
        let t_exists = match t_name {
            Some(ns) => self.store.get_trigger(&ns, &trigger.name)?.is_some(),
            None => false,
        };
        if !t_exists {
            return Err(ControllerError::Invalid(format!("trigger /{trigger} does not exist")));
        }
        let missing = || ControllerError::Invalid(format!("action /{action} does not exist"));
        let fqn = action.fqn().map_err(|_| missing())?;
        match self.resolve_action(caller, &fqn) {
            Ok(_) => Ok(()),
            Err(ControllerError::NotFound(_)) => Err(missing()),
            // Another namespace's action outside a shared package: hidden, as it would be to
            // an invoke.
            Err(e) => Err(e),
        }
    }

    pub fn get_rule(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<(RuleMeta, RuleStatus), ControllerError> {
        self.store.get_rule(ns, name)?.ok_or_else(|| ControllerError::NotFound(NOT_FOUND.into()))
    }

    pub fn list_rules(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(RuleMeta, RuleStatus)>, ControllerError> {
        Ok(self.store.list_rules(ns, skip, limit)?)
    }

    /// Enables or disables a rule (`POST {"status"}`).
    pub async fn set_rule_status(
        &self,
        ns: EntityName,
        name: EntityName,
        status: RuleStatus,
    ) -> Result<StatusChange, ControllerError> {
        let store = self.store.clone();
        blocking(move || store.set_rule_status(&ns, &name, status))
            .await?
            .ok_or_else(|| ControllerError::NotFound(NOT_FOUND.into()))
    }

    pub async fn delete_rule(
        &self,
        ns: EntityName,
        name: EntityName,
    ) -> Result<RuleMeta, ControllerError> {
        let store = self.store.clone();
        blocking(move || store.delete_rule(&ns, &name))
            .await?
            .ok_or_else(|| ControllerError::NotFound(NOT_FOUND.into()))
    }
}
