//! `/api/v1/namespaces/{ns}/activations[/{id}[/logs|/result]]`.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::query::Query;
use super::response::{json, ApiError, Body};
use crate::controller::Controller;
use crate::model::{Activation, ActivationId, EntityName};
use crate::store::{ActivationQuery, ACTIVATION_LIST_DEFAULT, ACTIVATION_LIST_MAX};

/// OpenWhisk's list entry without `docs=true`: the record without logs and result.
fn summary(a: &Activation) -> Value {
    json!({
        "namespace": a.namespace,
        "name": a.name,
        "version": a.version,
        "subject": a.subject,
        "activationId": a.activation_id,
        "start": a.start,
        "end": a.end,
        "duration": a.duration,
        "statusCode": a.status_code,
        "annotations": a.annotations,
        "publish": a.publish,
    })
}

fn parse_id(id: &str) -> Result<ActivationId, ApiError> {
    ActivationId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn list(c: &Controller, ns: &EntityName, q: &Query) -> Result<Response<Body>, ApiError> {
    let query = ActivationQuery {
        name: q.str("name").map(|n| n.rsplit('/').next().unwrap_or(n).to_owned()),
        since: q.u64("since")?,
        upto: q.u64("upto")?,
        skip: q.skip()?,
        limit: q.limit(ACTIVATION_LIST_DEFAULT, ACTIVATION_LIST_MAX)?,
    };
    if q.bool("count", false)? {
        let n = c.count_activations(ns, &query).await?;
        return Ok(json(StatusCode::OK, &json!({ "activations": n })));
    }
    let records = c.list_activations(ns, &query).await?;
    if q.bool("docs", false)? {
        return Ok(json(StatusCode::OK, &records));
    }
    let list: Vec<Value> = records.iter().map(summary).collect();
    Ok(json(StatusCode::OK, &list))
}

/// `part` is `None` for the record, `Some("logs")` or `Some("result")`.
pub async fn get(
    c: &Controller,
    ns: &EntityName,
    id: &str,
    part: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let rec = c.get_activation(ns, &id).await?;
    let body = match part {
        None => serde_json::to_value(&rec)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        Some("logs") => json!({ "logs": rec.logs }),
        Some("result") => json!({
            "result": rec.response.result,
            "success": rec.response.success,
            "status": rec.response.status,
            "statusCode": rec.response.status_code,
        }),
        Some(_) => return Err(ApiError::not_found()),
    };
    Ok(json(StatusCode::OK, &body))
}
