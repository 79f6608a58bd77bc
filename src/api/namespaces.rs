//! `/api/v1/namespaces` (the caller's namespace list) and `/api/v1/namespaces/{ns}` (its
//! entities, as OpenWhisk's summary).

use hyper::{Response, StatusCode};
use serde_json::json;

use super::actions::action_json;
use super::packages::package_json;
use super::response::{json, ApiError, Body};
use crate::controller::Controller;
use crate::model::{EntityName, Identity};

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
    Ok(json(
        StatusCode::OK,
        &json!({ "actions": actions, "packages": packages, "triggers": [], "rules": [] }),
    ))
}
