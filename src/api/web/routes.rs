//! API routes: OpenWhisk's API management (`/api/v1/web/whisk.system/apimgmt/{createApi,
//! getApi,deleteApi}.http`, what `wsk api` and the JavaScript client's `routes` send) answered
//! by hearth itself, in the shapes OpenWhisk's apimgmt actions answer; and the gateway URLs
//! it hands out, `/api/{namespace}{basepath}{relpath}`, served here by running the mapped web
//! action with the API's response type. No gateway process.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::super::body;
use super::super::response::{json, ApiError, Body};
use super::{error_response, run, Caller, Extension, UNAUTHORIZED};
use crate::controller::Controller;
use crate::model::{
    normalize_path, normalize_verb, path_parameters, ApiMeta, EntityName, Operation, RouteAction,
    MAX_PAYLOAD_BYTES,
};

pub const SYSTEM_NAMESPACE: &str = "whisk.system";
pub const APIMGMT_PACKAGE: &str = "apimgmt";

/// An apimgmt failure as OpenWhisk's apimgmt actions answer one: 502 `{"error": ...}`.
fn failure(message: String) -> Response<Body> {
    json(StatusCode::BAD_GATEWAY, &json!({ "error": message }))
}

/// `http://host:port` as the caller reached us: the base of the URLs handed back.
fn base_url(req: &Request<Incoming>) -> String {
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// `/api/v1/web/whisk.system/apimgmt/{action}`, authenticated with the caller's key (as the
/// clients send it).
pub async fn apimgmt(
    req: Request<Incoming>,
    c: &Controller,
    caller: &Caller,
    action: &str,
) -> Response<Body> {
    let Some(identity) = &caller.identity else {
        return error_response(ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED));
    };
    let ns = identity.namespace.clone();
    let base = base_url(&req);
    let q = match super::super::query::Query::parse(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return error_response(e),
    };
    let (name, _) = Extension::split(action);
    match (name, req.method().clone()) {
        ("createApi", Method::POST) => {
            let responsetype = q.str("responsetype").unwrap_or("json").to_owned();
            let (parts, b) = req.into_parts();
            let bytes = match body::read(&parts.headers, b, MAX_PAYLOAD_BYTES, "an API").await {
                Ok(b) => b,
                Err(e) => return error_response(e),
            };
            match create(c, &ns, &bytes, &responsetype).await {
                Ok(api) => json(StatusCode::OK, &cli_value(&api, &base)),
                Err(m) => failure(format!("API creation failure: {m}")),
            }
        }
        ("getApi", Method::GET) => match c.apis(&ns, q.str("basepath")) {
            Ok(apis) => {
                let apis: Vec<Value> = apis
                    .iter()
                    .map(|a| json!({"id": "Not Used", "key": "Not Used", "value": cli_value(a, &base)}))
                    .collect();
                json(StatusCode::OK, &json!({ "apis": apis }))
            }
            Err(e) => failure(format!("API GW failure: {e}")),
        },
        ("deleteApi", Method::DELETE) => {
            let Some(which) = q.str("basepath") else {
                return failure("API deletion failure: basepath is required.".into());
            };
            let relpath = q.str("relpath").map(str::to_owned);
            let verb = q.str("operation").map(str::to_ascii_lowercase);
            match c.delete_api(&ns, which, relpath, verb).await {
                Ok(()) => json(StatusCode::OK, &json!({})),
                Err(e) => failure(format!("API deletion failure: {e}")),
            }
        }
        ("createApi" | "getApi" | "deleteApi", _) => error_response(ApiError::method_not_allowed(
            "POST (createApi), GET (getApi), DELETE (deleteApi)",
        )),
        _ => error_response(ApiError::not_found()),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The action an apidoc names: `name` is `action` or `package/action`, its namespace `_` or
/// the caller's (anything else is the caller's too: an API serves its owner's actions, as
/// OpenWhisk's apimgmt rewrites the namespace to the caller's).
fn route_action(ns: &EntityName, name: &str) -> Result<RouteAction, String> {
    let name = name.trim_start_matches('/');
    let parts: Vec<&str> = name.split('/').collect();
    let parse = |s: &str| EntityName::parse(s).map_err(|e| format!("action name {name:?}: {e}"));
    let (package, action) = match parts.as_slice() {
        [a] => (None, parse(a)?),
        [p, a] => (Some(parse(p)?), parse(a)?),
        // `/ns/action` or `/ns/pkg/action`: the namespace part is the caller's.
        [_, p, a] => (Some(parse(p)?), parse(a)?),
        _ => return Err(format!("action name {name:?} is not valid")),
    };
    Ok(RouteAction { namespace: ns.clone(), package, name: action })
}

/// The operations an apidoc defines: one (`gatewayBasePath`, `gatewayPath`, `gatewayMethod`,
/// `action`), or every operation of its `swagger`. With its base path and API name.
fn operations(
    ns: &EntityName,
    doc: &Value,
    responsetype: &str,
) -> Result<(String, Option<String>, Vec<Operation>), String> {
    let check_type = |t: &str| {
        Extension::parse(t)
            .map(|_| t.to_owned())
            .ok_or_else(|| format!("response type {t:?} is not one of http, json, html, svg, text"))
    };
    let swagger = match doc.get("swagger") {
        Some(Value::String(s)) => {
            Some(serde_json::from_str::<Value>(s).map_err(|e| format!("swagger: {e}"))?)
        }
        Some(v @ Value::Object(_)) => Some(v.clone()),
        _ => None,
    };
    if let Some(sw) = swagger {
        let basepath =
            normalize_path(text(&sw, "basePath").unwrap_or("/")).map_err(|e| e.to_string())?;
        let name = sw.get("info").and_then(|i| text(i, "title")).map(str::to_owned);
        let mut ops = Vec::new();
        for (relpath, verbs) in sw.get("paths").and_then(Value::as_object).into_iter().flatten() {
            for (verb, def) in verbs.as_object().into_iter().flatten() {
                let Some(ow) = def.get("x-openwhisk") else { continue };
                let action = text(ow, "action").ok_or("x-openwhisk.action is required")?;
                let full = match text(ow, "package").filter(|p| !p.is_empty()) {
                    Some(p) => format!("{p}/{action}"),
                    None => action.to_owned(),
                };
                let rt =
                    text(ow, "url").and_then(|u| u.rsplit_once('.')).map_or("json", |(_, ext)| ext);
                ops.push(Operation {
                    relpath: normalize_path(relpath).map_err(|e| e.to_string())?,
                    verb: normalize_verb(verb).map_err(|e| e.to_string())?,
                    action: route_action(ns, &full)?,
                    response_type: check_type(rt)?,
                    secure_key: None,
                });
            }
        }
        return Ok((basepath, name, ops));
    }
    let field = |k: &str| text(doc, k).ok_or_else(|| format!("apidoc.{k} is required."));
    let basepath = normalize_path(field("gatewayBasePath")?).map_err(|e| e.to_string())?;
    let action = doc.get("action").ok_or("apidoc.action is required.")?;
    let op = Operation {
        relpath: normalize_path(field("gatewayPath")?).map_err(|e| e.to_string())?,
        verb: normalize_verb(field("gatewayMethod")?).map_err(|e| e.to_string())?,
        action: route_action(ns, text(action, "name").ok_or("apidoc.action.name is required.")?)?,
        response_type: check_type(responsetype)?,
        secure_key: match action.get("secureKey") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
    };
    Ok((basepath, text(doc, "apiName").map(str::to_owned), vec![op]))
}

async fn create(
    c: &Controller,
    ns: &EntityName,
    body: &[u8],
    responsetype: &str,
) -> Result<ApiMeta, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the request content was malformed: {e}"))?;
    let doc = match v.get("apidoc") {
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| format!("apidoc: {e}"))?,
        Some(d @ Value::Object(_)) => d.clone(),
        _ => return Err("apidoc is required.".into()),
    };
    let (basepath, name, ops) = operations(ns, &doc, responsetype)?;
    if ops.is_empty() {
        return Err("the API defines no operation.".into());
    }
    let mut api = None;
    for op in ops {
        // Only an exported action can be reached through a route.
        let a = &op.action;
        c.web_action(
            a.namespace.as_str(),
            a.package.as_ref().map(EntityName::as_str),
            a.name.as_str(),
        )
        .map_err(|_| {
            format!("action '/{}' is not a web action (create it with --web true).", web_name(a))
        })?;
        api = Some(
            c.add_api_operation(ns, basepath.clone(), name.clone(), op)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    api.ok_or_else(|| "the API defines no operation.".into())
}

fn web_name(a: &RouteAction) -> String {
    match &a.package {
        Some(p) => format!("{}/{p}/{}", a.namespace, a.name),
        None => format!("{}/{}", a.namespace, a.name),
    }
}

/// OpenWhisk's operation id: the verb and the camel-cased path (`getBooksIsbn`).
fn operation_id(verb: &str, relpath: &str) -> String {
    let words = relpath
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty());
    let mut id = verb.to_ascii_lowercase();
    for w in words {
        let mut cs = w.chars();
        if let Some(first) = cs.next() {
            id.push(first.to_ascii_uppercase());
            id.push_str(&cs.as_str().to_ascii_lowercase());
        }
    }
    id
}

/// The API's URL: `{base}/api/{ns}{basepath}`.
pub fn api_url(api: &ApiMeta, base: &str) -> String {
    let bp = if api.basepath == "/" { "" } else { api.basepath.as_str() };
    format!("{base}/api/{}{bp}", api.namespace)
}

/// The API as swagger 2.0, in the shape OpenWhisk's apimgmt returns it (`x-openwhisk` per
/// operation).
pub fn swagger(api: &ApiMeta, base: &str) -> Value {
    let mut paths = Map::new();
    for op in &api.operations {
        let params: Vec<Value> = path_parameters(&op.relpath)
            .into_iter()
            .map(|n| json!({"name": n, "in": "path", "description": format!("Default description for '{n}'"), "required": true, "type": "string"}))
            .collect();
        let mut def = json!({
            "operationId": operation_id(&op.verb, &op.relpath),
            "x-openwhisk": {
                "url": format!("{base}/api/v1/web/{}.{}", op.action.web_path(), op.response_type),
                "namespace": op.action.namespace,
                "package": op.action.package.as_ref().map_or("", EntityName::as_str),
                "action": op.action.name,
            },
            "responses": {"default": {"description": "Default response"}},
        });
        if !params.is_empty() {
            def["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(op.relpath.clone()).or_insert_with(|| json!({}));
        entry[op.verb.as_str()] = def;
    }
    json!({
        "swagger": "2.0",
        "info": {"title": api.name, "version": "1.0.0"},
        "basePath": api.basepath,
        "paths": paths,
        "x-ibm-configuration": {"cors": {"enabled": true}},
    })
}

/// The `value` of an API as the CLI reads it (`gwApiUrl` plus the relative path is each
/// operation's URL).
fn cli_value(api: &ApiMeta, base: &str) -> Value {
    json!({
        "namespace": api.namespace,
        "gwApiActivated": true,
        "tenantId": api.namespace,
        "gwApiUrl": api_url(api, base),
        "apidoc": swagger(api, base),
    })
}

/// `/api/{namespace}{path}`: the operation mapped to the verb and path runs its web action
/// with the API's response type; an `http` one sees the whole path (base path, relative path
/// and the values of its parameters) as `__ow_path`, as OpenWhisk's gateway passes it.
pub async fn gateway(
    mut req: Request<Incoming>,
    c: &Controller,
    caller: &Caller,
    ns: &str,
    path: &str,
) -> Response<Body> {
    let verb = req.method().as_str().to_ascii_lowercase();
    let found = c.route(ns, &verb, path).or_else(|e| match verb.as_str() {
        // A browser's preflight of a mapped path: the action's OPTIONS answer (by default
        // OpenWhisk's CORS headers), as the gateway's CORS does.
        "options" => ["get", "post", "put", "delete", "patch", "head"]
            .iter()
            .find_map(|v| c.route(ns, v, path).ok())
            .ok_or(e),
        _ => Err(e),
    });
    let op = match found {
        Ok(op) => op,
        Err(e) => return error_response(e.into()),
    };
    let a = &op.action;
    let web = match c.web_action(
        a.namespace.as_str(),
        a.package.as_ref().map(EntityName::as_str),
        a.name.as_str(),
    ) {
        Ok(w) => w,
        Err(e) => return error_response(ApiError::from(e)),
    };
    let ext = Extension::parse(&op.response_type).unwrap_or(Extension::Json);
    if let Some(v) = op.secure_key.as_deref().and_then(|k| HeaderValue::from_str(k).ok()) {
        req.headers_mut().insert(super::REQUIRE_WHISK_AUTH_HEADER, v);
    }
    let ow_path = if ext == Extension::Http { path.to_owned() } else { String::new() };
    run(req, c, caller, &web, ext, ow_path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids() {
        assert_eq!(operation_id("get", "/books/{isbn}"), "getBooksIsbn");
        assert_eq!(operation_id("POST", "/world"), "postWorld");
    }

    #[test]
    fn apidoc_as_the_client_sends_it() {
        let ns = EntityName::parse("guest").unwrap();
        let doc = json!({
            "namespace": "_", "gatewayBasePath": "/club", "gatewayPath": "/books/{isbn}",
            "gatewayMethod": "GET", "id": "API:_:/club", "apiName": "Book Club",
            "action": {"name": "lib/getBooks", "namespace": "_", "backendMethod": "GET",
                       "backendUrl": "http://h/api/v1/web/_/lib/getBooks.http", "authkey": "k",
                       "secureKey": "s"},
        });
        let (bp, name, ops) = operations(&ns, &doc, "http").unwrap();
        assert_eq!((bp.as_str(), name.as_deref()), ("/club", Some("Book Club")));
        let op = &ops[0];
        assert_eq!(
            (op.relpath.as_str(), op.verb.as_str(), op.response_type.as_str()),
            ("/books/{isbn}", "get", "http")
        );
        assert_eq!(op.action.web_path(), "guest/lib/getBooks");
        assert_eq!(op.secure_key.as_deref(), Some("s"));
        assert!(operations(&ns, &doc, "xml").is_err());
        let api = ApiMeta {
            namespace: ns.clone(),
            basepath: bp,
            name: "Book Club".into(),
            operations: ops,
            revision: 1,
            updated: 0,
        };
        let sw = swagger(&api, "http://h:1");
        let get = &sw["paths"]["/books/{isbn}"]["get"];
        assert_eq!(get["x-openwhisk"]["url"], "http://h:1/api/v1/web/guest/lib/getBooks.http");
        assert_eq!(get["parameters"][0]["name"], "isbn");
        assert_eq!(api_url(&api, "http://h:1"), "http://h:1/api/guest/club");
        // The swagger form round-trips to the same operations.
        let doc2 = json!({"swagger": sw});
        let (_, _, again) = operations(&ns, &doc2, "json").unwrap();
        assert_eq!(
            (again[0].relpath.as_str(), again[0].response_type.as_str()),
            ("/books/{isbn}", "http")
        );
    }
}
