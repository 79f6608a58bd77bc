//! `/api/v1/namespaces/{ns}/rules[/{name}]`: list, create/update, get, delete, and `POST
//! {"status": "active"|"inactive"}`.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::Query;
use super::response::{json, ApiError, Body};
use super::triggers::object_body;
use crate::controller::Controller;
use crate::model::{EntityName, EntityPath, Identity, KeyValue, RuleMeta, RuleStatus};
use crate::store::RuleUpdate;

pub const MAX_PUT_BODY: usize = super::triggers::MAX_PUT_BODY;

const LIST_DEFAULT: usize = 30;
const LIST_MAX: usize = 200;

/// The PUT body: `trigger` and `action` as names (`t`, `/ns/t`, `pkg/a`, `/ns/pkg/a`).
#[derive(Debug, Deserialize)]
struct PutBody {
    trigger: Option<String>,
    action: Option<String>,
    annotations: Option<Vec<KeyValue>>,
    publish: Option<bool>,
}

/// The rule with its status, as OpenWhisk's `WhiskRuleResponse`.
pub fn rule_json(r: &RuleMeta, status: RuleStatus) -> Value {
    json!({
        "namespace": r.namespace,
        "name": r.name,
        "version": r.version,
        "publish": r.publish,
        "annotations": r.annotations,
        "status": status.as_str(),
        "trigger": r.trigger,
        "action": r.action,
        "updated": r.updated,
    })
}

pub fn list(c: &Controller, ns: &EntityName, q: &Query) -> Result<Response<Body>, ApiError> {
    if q.bool("count", false)? {
        let n = c.list_rules(ns, q.skip()?, usize::MAX)?.len();
        return Ok(json(StatusCode::OK, &json!({ "rules": n })));
    }
    let limit = q.limit(LIST_DEFAULT, LIST_MAX)?;
    let list: Vec<Value> =
        c.list_rules(ns, q.skip()?, limit)?.iter().map(|(r, s)| rule_json(r, *s)).collect();
    Ok(json(StatusCode::OK, &list))
}

pub fn get(c: &Controller, ns: &EntityName, name: &EntityName) -> Result<Response<Body>, ApiError> {
    let (r, s) = c.get_rule(ns, name)?;
    Ok(json(StatusCode::OK, &rule_json(&r, s)))
}

fn path(s: Option<String>, ns: &EntityName, what: &str) -> Result<Option<EntityPath>, ApiError> {
    s.map(|s| {
        EntityPath::parse(&s, ns).map_err(|e| {
            ApiError::bad_request(format!("The request content was malformed: {what}: {e}"))
        })
    })
    .transpose()
}

pub async fn put(
    c: &Controller,
    caller: &Identity,
    name: EntityName,
    q: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let overwrite = q.bool("overwrite", false)?;
    let b: PutBody = object_body(&body)?;
    super::actions::check_sizes(&[("annotations", &b.annotations)])?;
    let update = RuleUpdate {
        trigger: path(b.trigger, &caller.namespace, "trigger")?,
        action: path(b.action, &caller.namespace, "action")?,
        annotations: b.annotations,
        publish: b.publish,
    };
    let (r, s) = c.put_rule(caller, name, update, overwrite).await?;
    Ok(json(StatusCode::OK, &rule_json(&r, s)))
}

pub async fn delete(
    c: &Controller,
    ns: EntityName,
    name: EntityName,
) -> Result<Response<Body>, ApiError> {
    let r = c.delete_rule(ns, name).await?;
    Ok(json(StatusCode::OK, &rule_json(&r, RuleStatus::Inactive)))
}

/// `POST {"status"}`: 200 (with an empty body, as OpenWhisk) whether or not it changed.
pub async fn set_status(
    c: &Controller,
    ns: EntityName,
    name: EntityName,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    struct StatusBody {
        status: Option<String>,
    }
    let b: StatusBody = object_body(&body)?;
    let status = match b.status.as_deref() {
        Some("active") => RuleStatus::Active,
        Some("inactive") => RuleStatus::Inactive,
        other => {
            return Err(ApiError::bad_request(format!(
                "The request content was malformed:\n'{}' is not a recognized rule state, must be one of ['active', 'inactive']",
                other.unwrap_or("")
            )))
        }
    };
    c.set_rule_status(ns, name, status).await?;
    Ok(json(StatusCode::OK, &json!({})))
}
