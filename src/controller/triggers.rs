//! Triggers and their fire: who may write and fire a trigger (its namespace only, as in
//! OpenWhisk, where triggers are never shared), and what a fire does: charge the namespace's
//! fires per minute, start every active rule's action (non-blocking, as the rule's
//! namespace, with the trigger's parameters under the payload and the trigger activation as
//! its `cause`), and record the trigger activation with one log line per rule.
//!
//! The rules' activations are started before the trigger's record is committed and before
//! the 202 answers, so the id a client sees always names a record whose logs name every
//! action activation (each acknowledged by its own pending stub).

use serde_json::{json, Map, Value};

use super::{blocking, Controller, ControllerError, InvokeOptions, InvokeOutcome};
use crate::model::{
    merge_parameters, now_millis, Activation, ActivationId, ActivationResponse, ActivationStatus,
    EntityName, EntityPath, Identity, RuleStatus, TriggerMeta,
};
use crate::store::TriggerUpdate;

/// OpenWhisk's answer for an entity that is not there.
pub(super) const NOT_FOUND: &str = "The requested resource does not exist.";

/// How a fire ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FireOutcome {
    /// No rule is active: nothing ran and nothing was recorded (OpenWhisk's 204).
    NoActiveRule,
    /// The trigger activation, recorded.
    Fired(ActivationId),
}

impl Controller {
    /// Creates or updates a trigger of the caller's namespace. A `feed` annotation must name
    /// an entity (OpenWhisk's check; the feed itself is run by the client).
    pub async fn put_trigger(
        &self,
        caller: &Identity,
        name: EntityName,
        update: TriggerUpdate,
        overwrite: bool,
    ) -> Result<TriggerMeta, ControllerError> {
        if let Some(anns) = &update.annotations {
            if let Some(feed) = anns.iter().find(|kv| kv.key == "feed") {
                let valid = feed
                    .value
                    .as_str()
                    .is_some_and(|f| EntityPath::parse(f, &caller.namespace).is_ok());
                if !valid {
                    return Err(ControllerError::Invalid("Feed name is not valid".into()));
                }
            }
        }
        let store = self.store.clone();
        let ns = caller.namespace.clone();
        blocking(move || store.put_trigger(&ns, &name, update, overwrite)).await
    }

    pub fn get_trigger(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> Result<TriggerMeta, ControllerError> {
        self.store.get_trigger(ns, name)?.ok_or_else(|| ControllerError::NotFound(NOT_FOUND.into()))
    }

    pub fn list_triggers(
        &self,
        ns: &EntityName,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<TriggerMeta>, ControllerError> {
        Ok(self.store.list_triggers(ns, skip, limit)?)
    }

    pub async fn delete_trigger(
        &self,
        ns: EntityName,
        name: EntityName,
    ) -> Result<TriggerMeta, ControllerError> {
        let store = self.store.clone();
        blocking(move || store.delete_trigger(&ns, &name))
            .await?
            .ok_or_else(|| ControllerError::NotFound(NOT_FOUND.into()))
    }

    /// Fires trigger `name` of the caller's namespace with `payload`.
    #[tracing::instrument(level = "debug", skip(self, payload), fields(namespace = %caller.namespace))]
    pub async fn fire_trigger(
        &self,
        caller: &Identity,
        name: &EntityName,
        payload: Option<Map<String, Value>>,
    ) -> Result<FireOutcome, ControllerError> {
        let ns = &caller.namespace;
        let limits = self.namespace_limits(ns)?;
        self.fires.admit_fire(ns, &limits, self.dispatcher.controllers())?;
        let trigger = self.get_trigger(ns, name)?;
        if !trigger.has_active_rule() {
            tracing::debug!(trigger = %trigger.key(), "fired without an active rule: no record");
            return Ok(FireOutcome::NoActiveRule);
        }
        let id = ActivationId::generate();
        let start = now_millis();
        let payload = payload.unwrap_or_default();
        let mut args = merge_parameters(&[&trigger.parameters]);
        args.extend(payload.clone());
        let mut logs = Vec::with_capacity(trigger.rules.len());
        for (rule, link) in &trigger.rules {
            let outcome = match link.status {
                RuleStatus::Inactive => Err((
                    ActivationStatus::ApplicationError,
                    format!(
                        "Rule '{rule}' is inactive, action '{}' was not activated.",
                        link.action
                    ),
                )),
                RuleStatus::Active => self.start_rule(caller, &link.action, args.clone(), id).await,
            };
            logs.push(rule_log(rule, &link.action, outcome));
        }
        let record = Activation {
            namespace: ns.to_string(),
            name: name.to_string(),
            subject: ns.to_string(),
            activation_id: id,
            start,
            // OpenWhisk's trigger activation has no end (the epoch) and no duration.
            end: 0,
            duration: 0,
            status_code: 0,
            response: ActivationResponse::success(Value::Object(payload)),
            logs,
            annotations: Vec::new(),
            version: trigger.version.clone(),
            publish: false,
            cause: None,
        };
        self.records.commit(record).await.map_err(|e| {
            ControllerError::Internal(format!("recording trigger activation {id}: {e}"))
        })?;
        tracing::debug!(trigger = %trigger.key(), activation_id = %id, rules = trigger.rules.len(), "trigger fired");
        Ok(FireOutcome::Fired(id))
    }

    /// Commits a record made outside the invoke path (a built-in feed action's), before
    /// anyone is told its id.
    pub async fn record_activation(&self, record: Activation) -> Result<(), ControllerError> {
        let id = record.activation_id;
        self.records
            .commit(record)
            .await
            .map_err(|e| ControllerError::Internal(format!("recording activation {id}: {e}")))
    }

    /// Starts one rule's action; its activation id, or the failure as OpenWhisk's rule log
    /// reports it.
    async fn start_rule(
        &self,
        caller: &Identity,
        action: &EntityPath,
        args: Map<String, Value>,
        cause: ActivationId,
    ) -> Result<ActivationId, (ActivationStatus, String)> {
        let fqn = action.fqn().map_err(|e| (ActivationStatus::ApplicationError, e.to_string()))?;
        let options =
            InvokeOptions { blocking: false, cause: Some(cause), annotations: Vec::new() };
        match self.invoke_with(caller, &fqn, args, options).await {
            Ok(InvokeOutcome::Accepted(id)) => Ok(id),
            Ok(InvokeOutcome::Completed(a)) => Ok(a.activation_id),
            Err(e) => {
                let status = match e {
                    ControllerError::Internal(_)
                    | ControllerError::Store(_)
                    | ControllerError::Unavailable(_) => ActivationStatus::InternalError,
                    _ => ActivationStatus::ApplicationError,
                };
                let message = match e {
                    ControllerError::NotFound(_) | ControllerError::Forbidden(_) => {
                        NOT_FOUND.to_owned()
                    }
                    other => other.to_string(),
                };
                tracing::info!(action = %action, error = %message, "a rule's action did not start");
                Err((status, message))
            }
        }
    }
}

/// One line of a trigger activation's logs, as OpenWhisk's `RuleActivationResult` writes it.
fn rule_log(
    rule: &str,
    action: &EntityPath,
    outcome: Result<ActivationId, (ActivationStatus, String)>,
) -> String {
    let mut line = json!({ "rule": rule, "action": action.to_string() });
    match outcome {
        Ok(id) => {
            line["statusCode"] = json!(ActivationStatus::Success.code());
            line["success"] = json!(true);
            line["activationId"] = json!(id.to_string());
        }
        Err((status, error)) => {
            line["statusCode"] = json!(status.code());
            line["success"] = json!(false);
            line["error"] = json!(error);
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_logs_have_openwhisks_fields() {
        let a = EntityPath::parse("a", &EntityName::parse("guest").unwrap()).unwrap();
        let id = ActivationId::generate();
        let ok: Value = serde_json::from_str(&rule_log("guest/r", &a, Ok(id))).unwrap();
        assert_eq!(ok["action"], "guest/a");
        assert_eq!((ok["statusCode"].as_u64(), ok["success"].as_bool()), (Some(0), Some(true)));
        assert_eq!(ok["activationId"], id.to_string());
        let bad: Value = serde_json::from_str(&rule_log(
            "guest/r",
            &a,
            Err((ActivationStatus::ApplicationError, NOT_FOUND.into())),
        ))
        .unwrap();
        assert_eq!((bad["statusCode"].as_u64(), bad["success"].as_bool()), (Some(1), Some(false)));
        assert_eq!(bad["error"], NOT_FOUND);
    }
}
