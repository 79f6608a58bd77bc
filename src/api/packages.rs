//! `/api/v1/namespaces/{ns}/packages[/{name}]`: list, create/update, get, delete.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::Query;
use super::response::{json, ApiError, Body};
use crate::controller::{Controller, PackageView};
use crate::model::{
    ActionMeta, Binding, EntityName, Identity, KeyValue, PackageMeta, MAX_PAYLOAD_BYTES,
};
use crate::store::PackageUpdate;

/// Largest PUT body read: parameters and annotations (each up to the payload limit) and the
/// JSON envelope.
pub const MAX_PUT_BODY: usize = 2 * MAX_PAYLOAD_BYTES + 64 * 1024;

/// Packages listed when the caller gives no limit, and at most (OpenWhisk's).
const LIST_DEFAULT: usize = 30;
const LIST_MAX: usize = 200;

/// The annotation that marks an action as a feed (listed under `feeds`, not `actions`).
const FEED_ANNOTATION: &str = "feed";

/// The PUT body as wsk and the OpenWhisk clients send it. `namespace`, `name` and `version`
/// are accepted and ignored: the path names the package and the store owns the version.
#[derive(Debug, Deserialize)]
struct PutBody {
    binding: Option<Value>,
    parameters: Option<Vec<KeyValue>>,
    annotations: Option<Vec<KeyValue>>,
    publish: Option<bool>,
    #[serde(rename = "namespace")]
    _namespace: Option<Value>,
    #[serde(rename = "name")]
    _name: Option<Value>,
    #[serde(rename = "version")]
    _version: Option<Value>,
}

/// The package as OpenWhisk stores and returns it; `binding` is `{}` for a package.
pub fn package_json(p: &PackageMeta) -> Value {
    json!({
        "namespace": p.namespace,
        "name": p.name,
        "version": p.version,
        "publish": p.publish,
        "binding": p.binding.as_ref().map_or(json!({}), |b| json!(b)),
        "parameters": p.parameters,
        "annotations": p.annotations,
        "updated": p.updated,
    })
}

/// A list entry, as OpenWhisk's package view: no parameters, `binding` false for a package.
fn summary_json(p: &PackageMeta) -> Value {
    json!({
        "namespace": p.namespace,
        "name": p.name,
        "version": p.version,
        "publish": p.publish,
        "binding": p.binding.as_ref().map_or(json!(false), |b| json!(b)),
        "annotations": p.annotations,
        "updated": p.updated,
    })
}

fn entry_json(a: &ActionMeta) -> Value {
    json!({ "name": a.name, "version": a.version, "annotations": a.annotations })
}

/// `GET` of one package: the package with the actions (and feeds) it holds.
fn view_json(v: &PackageView) -> Value {
    let (feeds, actions): (Vec<&ActionMeta>, Vec<&ActionMeta>) =
        v.actions.iter().partition(|a| a.annotations.iter().any(|kv| kv.key == FEED_ANNOTATION));
    let mut out = package_json(&v.package);
    out["actions"] = actions.into_iter().map(entry_json).collect();
    out["feeds"] = feeds.into_iter().map(entry_json).collect();
    out
}

pub fn list(
    c: &Controller,
    caller: &Identity,
    ns: &EntityName,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let public = q.bool("public", false)?;
    if q.bool("count", false)? {
        let n = c.list_packages(caller, ns, public, q.skip()?, usize::MAX)?.len();
        return Ok(json(StatusCode::OK, &json!({ "packages": n })));
    }
    let limit = q.limit(LIST_DEFAULT, LIST_MAX)?;
    let list: Vec<Value> =
        c.list_packages(caller, ns, public, q.skip()?, limit)?.iter().map(summary_json).collect();
    Ok(json(StatusCode::OK, &list))
}

pub fn get(
    c: &Controller,
    caller: &Identity,
    ns: &EntityName,
    name: &EntityName,
) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &view_json(&c.get_package(caller, ns, name)?)))
}

/// A binding as sent: `{}` (or absent) is none; a namespace of `_` (or none) is the caller's.
fn parse_binding(v: Option<Value>, caller: &Identity) -> Result<Option<Binding>, ApiError> {
    let bad = |m: &str| ApiError::bad_request(format!("The request content was malformed: {m}"));
    let Some(v) = v else { return Ok(None) };
    let Value::Object(o) = v else { return Err(bad("binding must be an object")) };
    if o.is_empty() {
        return Ok(None);
    }
    let field = |k: &str| o.get(k).and_then(Value::as_str);
    let name = field("name").ok_or_else(|| bad("binding.name is required"))?;
    let name = EntityName::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let namespace = match field("namespace").map(|n| n.trim_start_matches('/')) {
        None | Some("_") | Some("") => caller.namespace.clone(),
        Some(n) => EntityName::parse(n).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    Ok(Some(Binding { namespace, name }))
}

fn parse_update(body: &[u8], caller: &Identity) -> Result<PackageUpdate, ApiError> {
    let b: PutBody = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(body)
    }
    .map_err(|e| ApiError::bad_request(format!("The request content was malformed: {e}")))?;
    super::actions::check_sizes(&[("parameters", &b.parameters), ("annotations", &b.annotations)])?;
    Ok(PackageUpdate {
        binding: parse_binding(b.binding, caller)?,
        parameters: b.parameters,
        annotations: b.annotations,
        publish: b.publish,
    })
}

pub async fn put(
    c: &Controller,
    caller: &Identity,
    name: EntityName,
    q: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let overwrite = q.bool("overwrite", false)?;
    let update = parse_update(&body, caller)?;
    let meta = c.put_package(caller, name, update, overwrite).await?;
    Ok(json(StatusCode::OK, &package_json(&meta)))
}

pub async fn delete(
    c: &Controller,
    ns: EntityName,
    name: EntityName,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let meta = c.delete_package(ns, name, q.bool("force", false)?).await?;
    Ok(json(StatusCode::OK, &package_json(&meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Identity {
        Identity { namespace: EntityName::parse("guest").unwrap(), uuid: uuid::Uuid::nil() }
    }

    #[test]
    fn bindings_parse_as_openwhisk_sends_them() {
        let c = caller();
        let u = parse_update(br#"{"binding":{}}"#, &c).unwrap();
        assert_eq!(u.binding, None);
        let u = parse_update(br#"{"binding":{"namespace":"_","name":"p"}}"#, &c).unwrap();
        assert_eq!(u.binding.unwrap().key(), "guest/p");
        let u = parse_update(br#"{"binding":{"namespace":"/whisk.system","name":"utils"}}"#, &c)
            .unwrap();
        assert_eq!(u.binding.unwrap().key(), "whisk.system/utils");
        assert!(parse_update(b"", &c).unwrap().binding.is_none());
        for bad in [&br#"{"binding":1}"#[..], br#"{"binding":{"name":"../x"}}"#, br#"{"#] {
            assert_eq!(parse_update(bad, &c).unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }
}
