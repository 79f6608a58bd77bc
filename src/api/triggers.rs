//! `/api/v1/namespaces/{ns}/triggers[/{name}]`: list, create/update, get, delete, fire.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::query::Query;
use super::response::{json, ApiError, Body};
use crate::controller::{Controller, FireOutcome};
use crate::model::{EntityName, Identity, KeyValue, TriggerMeta, MAX_PAYLOAD_BYTES};
use crate::store::TriggerUpdate;

/// Largest PUT body read: parameters and annotations and the envelope.
pub const MAX_PUT_BODY: usize = 2 * MAX_PAYLOAD_BYTES + 64 * 1024;

/// Listed when the caller gives no limit, and at most (OpenWhisk's).
const LIST_DEFAULT: usize = 30;
const LIST_MAX: usize = 200;

/// The PUT body as wsk and the clients send it; `namespace`, `name`, `version`, `limits`
/// and `rules` are accepted and ignored (the path names the trigger, the store owns the
/// version, rules are linked by rules).
#[derive(Debug, Deserialize)]
struct PutBody {
    parameters: Option<Vec<KeyValue>>,
    annotations: Option<Vec<KeyValue>>,
    publish: Option<bool>,
}

/// The trigger as OpenWhisk returns it.
pub fn trigger_json(t: &TriggerMeta) -> Value {
    let mut v = json!({
        "namespace": t.namespace,
        "name": t.name,
        "version": t.version,
        "publish": t.publish,
        "parameters": t.parameters,
        "annotations": t.annotations,
        "limits": {},
        "updated": t.updated,
    });
    if !t.rules.is_empty() {
        v["rules"] = json!(t.rules);
    }
    v
}

/// A list entry (OpenWhisk's view: no parameters, no rules).
fn summary_json(t: &TriggerMeta) -> Value {
    json!({
        "namespace": t.namespace,
        "name": t.name,
        "version": t.version,
        "publish": t.publish,
        "annotations": t.annotations,
        "updated": t.updated,
    })
}

/// A body that is empty or whitespace reads as `{}`.
pub(super) fn object_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let b: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("The request content was malformed: {e}")))
}

pub fn list(c: &Controller, ns: &EntityName, q: &Query) -> Result<Response<Body>, ApiError> {
    if q.bool("count", false)? {
        let n = c.list_triggers(ns, q.skip()?, usize::MAX)?.len();
        return Ok(json(StatusCode::OK, &json!({ "triggers": n })));
    }
    let limit = q.limit(LIST_DEFAULT, LIST_MAX)?;
    let list: Vec<Value> =
        c.list_triggers(ns, q.skip()?, limit)?.iter().map(summary_json).collect();
    Ok(json(StatusCode::OK, &list))
}

pub fn get(c: &Controller, ns: &EntityName, name: &EntityName) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &trigger_json(&c.get_trigger(ns, name)?)))
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
    super::actions::check_sizes(&[("parameters", &b.parameters), ("annotations", &b.annotations)])?;
    let update =
        TriggerUpdate { parameters: b.parameters, annotations: b.annotations, publish: b.publish };
    let meta = c.put_trigger(caller, name, update, overwrite).await?;
    Ok(json(StatusCode::OK, &trigger_json(&meta)))
}

pub async fn delete(
    c: &Controller,
    ns: EntityName,
    name: EntityName,
) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &trigger_json(&c.delete_trigger(ns, name).await?)))
}

/// `POST`: 202 with the trigger activation's id, or 204 when no rule is active.
pub async fn fire(
    c: &Controller,
    caller: &Identity,
    name: &EntityName,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The request content was malformed: payload of {} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes.",
                body.len()
            ),
        ));
    }
    let payload: Option<Map<String, Value>> =
        if body.iter().all(u8::is_ascii_whitespace) { None } else { Some(object_body(&body)?) };
    match c.fire_trigger(caller, name, payload).await? {
        FireOutcome::NoActiveRule => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        FireOutcome::Fired(id) => {
            let mut resp = json(StatusCode::ACCEPTED, &json!({ "activationId": id }));
            if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
                resp.headers_mut().insert("x-openwhisk-activation-id", v);
            }
            Ok(resp)
        }
    }
}

/// `POST /namespaces/whisk.system/actions/alarms/{feed}`: the feed action, answered as an
/// invoke of it would be (200 with the record or its result, 502 when it refused, 202 with
/// the id when not blocking).
pub async fn invoke_feed(
    c: &Controller,
    caller: &Identity,
    ns: &EntityName,
    package: &str,
    action: &str,
    q: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let Some(feed) = crate::alarms::feed_of(ns, package, action) else {
        return Err(ApiError::not_found());
    };
    let params: Map<String, Value> = object_body(&body)?;
    let record = crate::alarms::invoke_feed(c, caller, feed, &params).await?;
    let status = if record.response.success { StatusCode::OK } else { StatusCode::BAD_GATEWAY };
    let mut resp = if !q.bool("blocking", false)? {
        json(StatusCode::ACCEPTED, &json!({ "activationId": record.activation_id }))
    } else if q.bool("result", false)? {
        json(status, &record.response.result)
    } else {
        json(status, &record)
    };
    if let Ok(v) = HeaderValue::from_str(&record.activation_id.to_string()) {
        resp.headers_mut().insert("x-openwhisk-activation-id", v);
    }
    Ok(resp)
}
