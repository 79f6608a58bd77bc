//! `/api/v1/namespaces/{ns}/actions[/{name}]`: list, create/update, get, delete, invoke.

use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::Query;
use super::response::{json, ApiError, Body};
use crate::controller::{Controller, InvokeOutcome};
use crate::model::{
    check_image, ActionExec, ActionMeta, ActivationStatus, EntityName, ExecMeta,
    FullyQualifiedName, Identity, KeyValue, Kind, LimitsPatch, Runtime, SequenceExec,
    MAX_CODE_BYTES, MAX_PAYLOAD_BYTES, NATIVE_IMAGE, SEQUENCE,
};
use crate::store::{ActionUpdate, ExecUpdate};

/// Largest PUT body read: the code limit as base64 (4/3) plus room for parameters,
/// annotations and the JSON envelope.
pub const MAX_PUT_BODY: usize = MAX_CODE_BYTES / 3 * 4 + 4 * 1024 * 1024;

/// Actions listed when the caller gives no limit, and at most.
const LIST_DEFAULT: usize = 30;
const LIST_MAX: usize = 200;

/// The PUT body as wsk and the OpenWhisk clients send it. `namespace`, `name` and `version`
/// are accepted and ignored: the path names the action and the store owns the version.
#[derive(Debug, Deserialize)]
struct PutBody {
    exec: Option<ExecBody>,
    parameters: Option<Vec<KeyValue>>,
    annotations: Option<Vec<KeyValue>>,
    limits: Option<LimitsPatch>,
    publish: Option<bool>,
    #[serde(rename = "namespace")]
    _namespace: Option<Value>,
    #[serde(rename = "name")]
    _name: Option<Value>,
    #[serde(rename = "version")]
    _version: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ExecBody {
    kind: String,
    /// A sequence's action paths (kind `sequence`).
    components: Option<Value>,
    code: Option<String>,
    binary: Option<bool>,
    main: Option<String>,
    /// Only blackbox takes one: OpenWhisk's skeleton (a native action) or any other image
    /// (an image action; `model::check_image`).
    image: Option<String>,
}

/// The action as OpenWhisk returns it; `code` is included when given.
pub fn action_json(a: &ActionMeta, code: Option<&[u8]>) -> Value {
    let e = match &a.exec {
        ActionExec::Code(e) => e,
        ActionExec::Sequence(seq) => {
            return entity_json(a, json!({ "kind": SEQUENCE, "components": seq.paths() }))
        }
    };
    let mut exec = json!({ "kind": e.kind.as_str(), "binary": e.binary });
    if let Some(image) = e.run_image() {
        exec["image"] = json!(image);
    } else if e.kind.runtime() == Runtime::Native {
        exec["image"] = json!(NATIVE_IMAGE);
    }
    if let Some(main) = &e.main {
        exec["main"] = json!(main);
    }
    if let Some(code) = code {
        exec["code"] = if e.binary {
            json!(base64::engine::general_purpose::STANDARD.encode(code))
        } else {
            json!(String::from_utf8_lossy(code))
        };
    }
    entity_json(a, exec)
}

/// The action around its `exec`.
fn entity_json(a: &ActionMeta, exec: Value) -> Value {
    json!({
        "namespace": a.fqn().path(),
        "name": a.name,
        "version": a.version,
        "exec": exec,
        "parameters": a.parameters,
        "annotations": a.annotations,
        "limits": a.limits,
        "publish": a.publish,
        "updated": a.updated,
    })
}

pub fn list(c: &Controller, ns: &EntityName, q: &Query) -> Result<Response<Body>, ApiError> {
    if q.bool("count", false)? {
        return Ok(json(StatusCode::OK, &json!({ "actions": c.count_actions(ns)? })));
    }
    let limit = q.limit(LIST_DEFAULT, LIST_MAX)?;
    let list: Vec<Value> =
        c.list_actions(ns, q.skip()?, limit)?.iter().map(|a| action_json(a, None)).collect();
    Ok(json(StatusCode::OK, &list))
}

pub fn get(
    c: &Controller,
    caller: &Identity,
    fqn: &FullyQualifiedName,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let (meta, code) = c.read_action(caller, fqn, q.bool("code", true)?)?;
    Ok(json(StatusCode::OK, &action_json(&meta, code.as_deref())))
}

/// `GET .../actions/{package}/`: the actions of a package (through a binding, of the bound
/// package), OpenWhisk's list shape.
pub fn list_in_package(
    c: &Controller,
    caller: &Identity,
    ns: &EntityName,
    pkg: &EntityName,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    if q.bool("count", false)? {
        let n = c.list_package_actions(caller, ns, pkg, q.skip()?, usize::MAX)?.len();
        return Ok(json(StatusCode::OK, &json!({ "actions": n })));
    }
    let limit = q.limit(LIST_DEFAULT, LIST_MAX)?;
    let list = c.list_package_actions(caller, ns, pkg, q.skip()?, limit)?;
    let list: Vec<Value> = list.iter().map(|a| action_json(a, None)).collect();
    Ok(json(StatusCode::OK, &list))
}

fn size_of_json(v: &[KeyValue]) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// OpenWhisk's inference of `binary` when a client leaves it out (`Exec.isBinaryCode`): the
/// trimmed code is non-empty, a multiple of 4 long and nothing but base64 with its padding.
/// So a zip sent as base64 by a client that does not say `binary` is still taken as a zip.
fn is_binary_code(code: &str) -> bool {
    let t = code.trim().as_bytes();
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    let body = t.strip_suffix(b"==").or_else(|| t.strip_suffix(b"=")).unwrap_or(t);
    !t.is_empty() && t.len() % 4 == 0 && body.iter().all(alphabet)
}

/// Parameters and annotations are each held to the payload limit (413 naming it).
pub(super) fn check_sizes(lists: &[(&str, &Option<Vec<KeyValue>>)]) -> Result<(), ApiError> {
    for (what, list) in lists {
        if let Some(l) = list {
            let n = size_of_json(l);
            if n > MAX_PAYLOAD_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "The {what} of {n} bytes exceed the maximum of {MAX_PAYLOAD_BYTES} bytes."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The components of a sequence's exec, OpenWhisk's messages when they are malformed; `_`
/// is `ns`, the creator's namespace.
fn parse_sequence(components: Option<Value>, ns: &EntityName) -> Result<SequenceExec, ApiError> {
    let malformed =
        |m: &str| ApiError::bad_request(format!("The request content was malformed: {m}"));
    let list = match components {
        None => return Err(malformed("'components' must be defined for sequence kind")),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(malformed("'components' must be an array")),
    };
    let paths = list
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(malformed("fully qualified name malformed")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    SequenceExec::parse(&paths, ns).map_err(|m| malformed(&m))
}

/// Turns the PUT body into a store update, validating everything the store does not; `ns`
/// is the creator's namespace (a sequence's `_`).
fn parse_update(body: &[u8], ns: &EntityName) -> Result<ActionUpdate, ApiError> {
    let b: PutBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request content was malformed: {e}")))?;
    let mut sequence = None;
    let exec = match b.exec {
        None => None,
        Some(e) if e.kind.trim().eq_ignore_ascii_case(SEQUENCE) => {
            sequence = Some(parse_sequence(e.components, ns)?);
            None
        }
        Some(e) => {
            let kind = Kind::parse(&e.kind).map_err(|k| ApiError::bad_request(k.to_string()))?;
            check_image(&kind, e.image.as_deref())
                .map_err(|err| ApiError::bad_request(err.to_string()))?;
            // An image action needs no code (`wsk action create --docker IMAGE` sends none):
            // the image's proxy then gets an empty init. Native actions stay as they were.
            let image = e.image.filter(|_| kind.runtime() == Runtime::Native);
            let runs_image = image.as_deref().is_some_and(|i| !ExecMeta::is_native_image(i));
            let text = match e.code {
                Some(text) => text,
                None if runs_image => String::new(),
                None => return Err(ApiError::bad_request("exec.code is required")),
            };
            let binary = e.binary.unwrap_or_else(|| !text.is_empty() && is_binary_code(&text));
            let code = if binary {
                base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|err| {
                    ApiError::bad_request(format!("exec.code is not valid base64: {err}"))
                })?
            } else {
                text.into_bytes()
            };
            if code.len() > MAX_CODE_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The action code of {} bytes exceeds the maximum of {MAX_CODE_BYTES} bytes.", code.len()),
                ));
            }
            if let Some(main) = &e.main {
                if main.is_empty() || main.len() > 256 {
                    return Err(ApiError::bad_request("exec.main must be 1 to 256 characters"));
                }
            }
            let image = image.filter(|_| runs_image);
            Some(ExecUpdate { kind, main: e.main, binary, code, image })
        }
    };
    check_sizes(&[("parameters", &b.parameters), ("annotations", &b.annotations)])?;
    Ok(ActionUpdate {
        exec,
        sequence,
        parameters: b.parameters,
        annotations: b.annotations,
        limits: b.limits,
        publish: b.publish,
    })
}

pub async fn put(
    c: &Controller,
    caller: &Identity,
    fqn: FullyQualifiedName,
    q: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let overwrite = q.bool("overwrite", false)?;
    let mut update = parse_update(&body, &fqn.namespace)?;
    c.prepare_action_update(caller, &fqn, &mut update).await?;
    let meta = c.put_action(fqn, update, overwrite).await?;
    // The whole stored entity, code included, as OpenWhisk answers a PUT (clients read it).
    let code = match c.get_action_with_code(&meta.fqn()) {
        Ok((_, code)) => Some(code),
        Err(_) => None,
    };
    Ok(json(StatusCode::OK, &action_json(&meta, code.as_deref())))
}

pub async fn delete(c: &Controller, fqn: FullyQualifiedName) -> Result<Response<Body>, ApiError> {
    let meta = c.delete_action(fqn).await?;
    Ok(json(StatusCode::OK, &action_json(&meta, None)))
}

/// The status of a finished activation: 200 on success, 502 when the action failed, 500 when
/// hearth did.
fn status_of(s: ActivationStatus) -> StatusCode {
    match s {
        ActivationStatus::Success => StatusCode::OK,
        ActivationStatus::ApplicationError | ActivationStatus::DeveloperError => {
            StatusCode::BAD_GATEWAY
        }
        ActivationStatus::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub async fn invoke(
    c: &Controller,
    caller: &Identity,
    fqn: &FullyQualifiedName,
    q: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let blocking = q.bool("blocking", false)?;
    let result_only = q.bool("result", false)?;
    let (mut resp, id) = match c.invoke(caller, fqn, &body, blocking).await? {
        InvokeOutcome::Accepted(id) => {
            (json(StatusCode::ACCEPTED, &json!({ "activationId": id })), id)
        }
        InvokeOutcome::Completed(rec) => {
            let status = status_of(rec.response.status);
            let resp =
                if result_only { json(status, &rec.response.result) } else { json(status, &rec) };
            (resp, rec.activation_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert("x-openwhisk-activation-id", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_update_guest(body: &[u8]) -> Result<ActionUpdate, ApiError> {
        parse_update(body, &EntityName::parse("guest").unwrap())
    }

    #[test]
    fn sequence_bodies_follow_openwhisk() {
        let u = parse_update_guest(
            br#"{"exec":{"kind":"sequence","components":["/_/a","/whisk.system/utils/echo"]}}"#,
        )
        .unwrap();
        assert!(u.exec.is_none());
        assert_eq!(u.sequence.unwrap().paths(), ["/guest/a", "/whisk.system/utils/echo"]);
        for (bad, message) in [
            (
                &br#"{"exec":{"kind":"sequence"}}"#[..],
                "'components' must be defined for sequence kind",
            ),
            (
                br#"{"exec":{"kind":"sequence","components":"/_/a"}}"#,
                "'components' must be an array",
            ),
            (
                br#"{"exec":{"kind":"sequence","components":["a"]}}"#,
                crate::model::MALFORMED_COMPONENT,
            ),
            (br#"{"exec":{"kind":"sequence","components":[1]}}"#, "fully qualified name malformed"),
        ] {
            let e = parse_update_guest(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(message), "{}: {}", String::from_utf8_lossy(bad), e.message);
        }
    }

    #[test]
    fn binary_is_inferred_as_openwhisk_infers_it() {
        for yes in ["UEsDBA==", "UEsDBAo=", " UEsD ", "abcd"] {
            assert!(is_binary_code(yes), "{yes:?}");
        }
        for no in ["", "x", "def main(a): return a", "UEsDB", "UE==sD", "a=bc"] {
            assert!(!is_binary_code(no), "{no:?}");
        }
        let zip =
            parse_update_guest(br#"{"exec":{"kind":"nodejs:default","code":"UEsDBA=="}}"#).unwrap();
        let e = zip.exec.unwrap();
        assert_eq!(
            (e.binary, e.code.as_slice(), e.kind.as_str()),
            (true, &b"PK\x03\x04"[..], "nodejs:20")
        );
        let text =
            parse_update_guest(br#"{"exec":{"kind":"python:3","code":"abcd","binary":false}}"#)
                .unwrap();
        assert!(!text.exec.unwrap().binary, "an explicit binary wins");
    }

    #[test]
    fn put_body_validation() {
        let ok = parse_update_guest(br#"{"namespace":"_","name":"x","exec":{"kind":"python:3","code":"def main(a): return a"}}"#).unwrap();
        assert_eq!(ok.exec.unwrap().code, b"def main(a): return a");
        let bin =
            parse_update_guest(br#"{"exec":{"kind":"nodejs:20","code":"UEsDBA==","binary":true}}"#)
                .unwrap();
        assert_eq!(bin.exec.unwrap().code, b"PK\x03\x04");
        for bad in [
            &br#"{"exec":{"kind":"java:8","code":"x"}}"#[..],
            br#"{"exec":{"kind":"python:3"}}"#,
            br#"{"exec":{"kind":"python:3","code":"!!","binary":true}}"#,
            br#"{"limits":{"bogus":1}}"#,
            br#"{"#,
            br#"[]"#,
        ] {
            let e = parse_update_guest(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn image_actions_need_no_code_and_keep_their_image() {
        let u =
            parse_update_guest(br#"{"exec":{"kind":"blackbox","image":"hearth-test/proxy:1"}}"#)
                .unwrap();
        let e = u.exec.unwrap();
        assert_eq!(e.image.as_deref(), Some("hearth-test/proxy:1"));
        assert!(e.code.is_empty() && !e.binary);
        let u = parse_update_guest(
            br#"{"exec":{"kind":"blackbox","image":"x/y:1","code":"def main(a): return a"}}"#,
        )
        .unwrap();
        assert_eq!(u.exec.unwrap().code, b"def main(a): return a");
        // Native actions stay as they were: the skeleton is not stored, and code is required.
        let u = parse_update_guest(
            br#"{"exec":{"kind":"blackbox","image":"openwhisk/dockerskeleton","code":"x"}}"#,
        )
        .unwrap();
        assert_eq!(u.exec.unwrap().image, None);
        let e = parse_update_guest(
            br#"{"exec":{"kind":"blackbox","image":"openwhisk/dockerskeleton"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_update_guest(br#"{"exec":{"kind":"blackbox","image":"a b"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
