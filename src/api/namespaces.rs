//! `/api/v1/namespaces` (the caller's namespace list), `/api/v1/namespaces/{ns}` (its
//! entities, as OpenWhisk's summary) and `/api/v1/namespaces/{ns}/limits` (the limits that
//! hold for it, as OpenWhisk's `Limits` API answers them).

use hyper::{Response, StatusCode};
use serde_json::json;

use super::actions::action_json;
use super::packages::package_json;
use super::response::{json, ApiError, Body};
use crate::controller::Controller;
use crate::model::{
    EntityName, Identity, CONCURRENCY_MAX, CONCURRENCY_MIN, LOGS_MAX_MB, LOGS_MIN_MB,
    MAX_PAYLOAD_BYTES, MEMORY_MAX_MB, MEMORY_MIN_MB, TIMEOUT_MAX_MS, TIMEOUT_MIN_MS,
};

/// Actions shown in the namespace summary at most (OpenWhisk's list maximum).
const SUMMARY_ACTIONS: usize = 200;

pub fn list(c: &Controller, caller: &Identity) -> Response<Body> {
    let names: Vec<String> = c.namespaces(caller).into_iter().map(|n| n.to_string()).collect();
    json(StatusCode::OK, &names)
}

pub fn summary(c: &Controller, ns: &EntityName) -> Result<Response<Body>, ApiError> {
    let actions: Vec<_> =
        c.list_actions(ns, 0, SUMMARY_ACTIONS)?.iter().map(|a| action_json(a, None)).collect();
    let packages: Vec<_> = c
        .store()
        .list_packages(ns, 0, SUMMARY_ACTIONS)
        .map_err(crate::controller::ControllerError::from)?
        .iter()
        .map(package_json)
        .collect();
    let triggers: Vec<_> = c
        .list_triggers(ns, 0, SUMMARY_ACTIONS)?
        .iter()
        .map(super::triggers::trigger_json)
        .collect();
    let rules: Vec<_> = c
        .list_rules(ns, 0, SUMMARY_ACTIONS)?
        .iter()
        .map(|(r, s)| super::rules::rule_json(r, *s))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "actions": actions, "packages": packages, "triggers": triggers, "rules": rules }),
    ))
}

/// The namespace's effective limits with the action limits' ranges, in OpenWhisk's shape
/// (memory in MB, logs in MB, timeouts in ms, the parameter size in bytes).
pub fn limits(c: &Controller, ns: &EntityName) -> Result<Response<Body>, ApiError> {
    let l = c.namespace_limits(ns)?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "invocationsPerMinute": l.invocations_per_minute,
            "concurrentInvocations": l.concurrent_invocations,
            "firesPerMinute": l.fires_per_minute,
            // hearth's own: OpenWhisk's longest sequence is a system setting, here a limit.
            "sequenceMaxLength": l.sequence_max_length,
            "minActionMemory": MEMORY_MIN_MB,
            "maxActionMemory": MEMORY_MAX_MB,
            "minActionLogs": LOGS_MIN_MB,
            "maxActionLogs": LOGS_MAX_MB,
            "minActionTimeout": TIMEOUT_MIN_MS,
            "maxActionTimeout": TIMEOUT_MAX_MS,
            "minActionConcurrency": CONCURRENCY_MIN,
            "maxActionConcurrency": CONCURRENCY_MAX,
            "maxParameterSize": MAX_PAYLOAD_BYTES,
        }),
    ))
}
