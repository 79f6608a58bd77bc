//! Web actions as the controller sees them: which action a web path names, whether it is
//! exported, what its web annotations ask for, and whose activation it is (the owner's: the
//! namespace in the URL, never the caller's).
//!
//! Owns: the export check (an action that is not exported is answered exactly like a missing
//! one, so the web surface tells nothing about unexported actions), the annotations
//! `web-export`, `raw-http`, `final`, `require-whisk-auth` and `web-custom-options`.
//! Must never: know HTTP (the request's translation into parameters is the API's), or run an
//! action for a caller other than its owner.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Controller, ControllerError, InvokeOptions, InvokeOutcome};
use crate::model::{EntityName, FullyQualifiedName, Identity, KeyValue};

/// OpenWhisk's annotation names for web actions.
pub const WEB_EXPORT: &str = "web-export";
pub const RAW_HTTP: &str = "raw-http";
pub const FINAL: &str = "final";
pub const REQUIRE_WHISK_AUTH: &str = "require-whisk-auth";
pub const WEB_CUSTOM_OPTIONS: &str = "web-custom-options";

/// What `require-whisk-auth` asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebAuth {
    /// Absent or `false`: anyone with the URL.
    Public,
    /// `true`: valid OpenWhisk credentials (Basic auth).
    Whisk,
    /// A string or number: the `X-Require-Whisk-Auth` header must carry exactly this.
    Secret(String),
    /// Any other value: nothing is allowed (OpenWhisk's rule for a malformed annotation).
    Refused,
}

/// An exported action, resolved for a web request.
#[derive(Debug, Clone)]
pub struct WebAction {
    /// The owner, whose namespace runs, records and pays for the activation.
    pub owner: Identity,
    /// The action path as the URL named it (through a binding, the binding's path).
    pub fqn: FullyQualifiedName,
    pub raw_http: bool,
    pub custom_options: bool,
    pub auth: WebAuth,
    /// Parameters a request may not set: with `final: true`, every parameter the action
    /// (with its package and binding) defines; with `final: [names]`, those of them.
    pub immutable: HashSet<String>,
}

fn annotation<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    list.iter().rev().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// Only a JSON `true` counts, as OpenWhisk reads these flags (`getAs[Boolean]`).
fn flag(list: &[KeyValue], key: &str) -> bool {
    annotation(list, key) == Some(&Value::Bool(true))
}

/// `require-whisk-auth` as OpenWhisk reads it (`confirmAuthenticated`).
pub fn web_auth(annotations: &[KeyValue]) -> WebAuth {
    match annotation(annotations, REQUIRE_WHISK_AUTH) {
        None | Some(Value::Bool(false)) => WebAuth::Public,
        Some(Value::Bool(true)) => WebAuth::Whisk,
        Some(Value::String(s)) => WebAuth::Secret(s.clone()),
        Some(Value::Number(n)) => WebAuth::Secret(n.to_string()),
        Some(_) => WebAuth::Refused,
    }
}

/// The parameters `final` protects, among the merged `params`: the defined ones (a null
/// value is a parameter declared without a value, which a request is expected to supply).
pub fn immutable_parameters(
    annotations: &[KeyValue],
    params: &Map<String, Value>,
) -> HashSet<String> {
    let defined = |k: &String| params.get(k).is_some_and(|v| !v.is_null());
    match annotation(annotations, FINAL) {
        Some(Value::Bool(true)) => params.keys().filter(|k| defined(k)).cloned().collect(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .filter(|k| defined(k))
            .collect(),
        _ => HashSet::new(),
    }
}

/// The answer to every web path that does not name an exported action.
fn not_found() -> ControllerError {
    ControllerError::NotFound("The requested resource does not exist.".into())
}

impl Controller {
    /// The exported action at `namespace/package/name` (package `None`: `default`), as its
    /// owner sees it. Missing namespace, package or action, a package or binding the owner
    /// may not read, and an action without `web-export: true` all answer the same 404.
    pub fn web_action(
        &self,
        namespace: &str,
        package: Option<&str>,
        name: &str,
    ) -> Result<WebAction, ControllerError> {
        let parse = |s: &str| EntityName::parse(s).map_err(|_| not_found());
        let ns = parse(namespace)?;
        let name = parse(name)?;
        let fqn = match package {
            Some(p) => FullyQualifiedName::in_package(ns.clone(), parse(p)?, name),
            None => FullyQualifiedName::new(ns.clone(), name),
        };
        // The owner's identity is its namespace; the key it was created with does not matter
        // to anything downstream (admission, records and the package rights go by namespace).
        let owner = Identity { namespace: ns, uuid: uuid::Uuid::nil() };
        let resolved = match self.resolve_action(&owner, &fqn) {
            Ok(r) => r,
            Err(ControllerError::NotFound(_) | ControllerError::Forbidden(_)) => {
                return Err(not_found())
            }
            Err(e) => return Err(e),
        };
        let a = &resolved.action.annotations;
        if !flag(a, WEB_EXPORT) {
            tracing::debug!(action = %fqn, "not exported; answered as missing");
            return Err(not_found());
        }
        Ok(WebAction {
            raw_http: flag(a, RAW_HTTP),
            custom_options: flag(a, WEB_CUSTOM_OPTIONS),
            auth: web_auth(a),
            immutable: immutable_parameters(a, &resolved.params),
            owner,
            fqn,
        })
    }

    /// Runs a web action as its owner with the request's parameters (the action's own go
    /// under them), waiting for the result as a blocking invoke does.
    pub async fn invoke_web(
        &self,
        action: &WebAction,
        params: Map<String, Value>,
    ) -> Result<InvokeOutcome, ControllerError> {
        self.invoke_with(&action.owner, &action.fqn, params, InvokeOptions::blocking(true)).await
    }
}

/// API routes: the operations of a namespace's APIs, kept by the store and served by the API
/// layer at `/api/{namespace}{basepath}{relpath}`.
impl Controller {
    /// Adds (or replaces) `op` in the API at `basepath` of `ns`, creating the API (named
    /// `name`, or its base path) when it is new; a name given later renames it.
    pub async fn add_api_operation(
        &self,
        ns: &EntityName,
        basepath: String,
        name: Option<String>,
        op: crate::model::Operation,
    ) -> Result<crate::model::ApiMeta, ControllerError> {
        let store = self.store.clone();
        let ns2 = ns.clone();
        let api = super::blocking(move || {
            store.update_api(&ns2, &basepath, |old| {
                let mut api = old.unwrap_or_else(|| crate::model::ApiMeta {
                    namespace: ns2.clone(),
                    basepath: basepath.clone(),
                    name: name.clone().unwrap_or_else(|| basepath.clone()),
                    operations: Vec::new(),
                    revision: 0,
                    updated: 0,
                });
                if let Some(n) = name {
                    api.name = n;
                }
                api.operations.retain(|o| !(o.relpath == op.relpath && o.verb == op.verb));
                api.operations.push(op);
                Some(api)
            })
        })
        .await?;
        api.ok_or_else(|| ControllerError::Internal("the API was not stored".into()))
    }

    /// The APIs of `ns`; with `which`, those whose base path or name it is.
    pub fn apis(
        &self,
        ns: &EntityName,
        which: Option<&str>,
    ) -> Result<Vec<crate::model::ApiMeta>, ControllerError> {
        let mut apis = self.store.list_apis(ns)?;
        if let Some(w) = which {
            apis.retain(|a| a.basepath == w || a.name == w);
        }
        Ok(apis)
    }

    /// Deletes the API `which` (base path or name) of `ns`, or only its operations on
    /// `relpath` (and `verb`); an API left without operations goes. A message naming what
    /// does not exist when nothing matched.
    pub async fn delete_api(
        &self,
        ns: &EntityName,
        which: &str,
        relpath: Option<String>,
        verb: Option<String>,
    ) -> Result<(), ControllerError> {
        let Some(api) = self.apis(ns, Some(which))?.into_iter().next() else {
            return Err(ControllerError::NotFound(format!("API '{which}' does not exist.")));
        };
        let missing = match (&relpath, &verb) {
            (None, _) => None,
            (Some(r), None) => (!api.operations.iter().any(|o| &o.relpath == r))
                .then(|| format!("path '{r}' does not exist in the API")),
            (Some(r), Some(v)) => (!api.operations.iter().any(|o| &o.relpath == r && &o.verb == v))
                .then(|| format!("path '{r}' with operation '{v}' does not exist in the API")),
        };
        if let Some(m) = missing {
            return Err(ControllerError::NotFound(m));
        }
        let store = self.store.clone();
        let ns = ns.clone();
        super::blocking(move || {
            store.update_api(&ns, &api.basepath.clone(), |old| {
                let mut api = old?;
                if let Some(r) = &relpath {
                    api.operations.retain(|o| {
                        !(&o.relpath == r && verb.as_ref().map_or(true, |v| &o.verb == v))
                    });
                } else {
                    api.operations.clear();
                }
                (!api.operations.is_empty()).then_some(api)
            })
        })
        .await?;
        Ok(())
    }

    /// The operation a gateway request `verb path` of namespace `ns` maps to (`path`: after
    /// `/api/{ns}`, e.g. `/club/books/978`): the API with the longest base path that holds a
    /// matching operation.
    pub fn route(
        &self,
        ns: &str,
        verb: &str,
        path: &str,
    ) -> Result<crate::model::Operation, ControllerError> {
        let ns = EntityName::parse(ns).map_err(|_| not_found())?;
        let mut apis = self.store.list_apis(&ns)?;
        apis.sort_by_key(|a| std::cmp::Reverse(a.basepath.len()));
        apis.iter()
            .find_map(|a| {
                let rel = if a.basepath == "/" {
                    Some(path)
                } else {
                    path.strip_prefix(a.basepath.as_str())
                        .filter(|r| r.is_empty() || r.starts_with('/'))
                };
                rel.and_then(|r| a.find(verb, r)).cloned()
            })
            .ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue::new(k, v)
    }

    #[test]
    fn require_whisk_auth_values() {
        assert_eq!(web_auth(&[]), WebAuth::Public);
        assert_eq!(web_auth(&[kv(REQUIRE_WHISK_AUTH, json!(false))]), WebAuth::Public);
        assert_eq!(web_auth(&[kv(REQUIRE_WHISK_AUTH, json!(true))]), WebAuth::Whisk);
        assert_eq!(web_auth(&[kv(REQUIRE_WHISK_AUTH, json!("s3"))]), WebAuth::Secret("s3".into()));
        assert_eq!(web_auth(&[kv(REQUIRE_WHISK_AUTH, json!(42))]), WebAuth::Secret("42".into()));
        assert_eq!(web_auth(&[kv(REQUIRE_WHISK_AUTH, json!({}))]), WebAuth::Refused);
    }

    #[test]
    fn flags_are_json_true_only() {
        assert!(flag(&[kv(WEB_EXPORT, json!(true))], WEB_EXPORT));
        assert!(!flag(&[kv(WEB_EXPORT, json!("true"))], WEB_EXPORT));
        assert!(!flag(&[], WEB_EXPORT));
    }

    #[test]
    fn final_protects_defined_parameters() {
        let params = json!({"a": 1, "b": null, "c": "x"});
        let params = params.as_object().unwrap();
        let all = immutable_parameters(&[kv(FINAL, json!(true))], params);
        assert_eq!(all, HashSet::from(["a".to_owned(), "c".to_owned()]));
        let some = immutable_parameters(&[kv(FINAL, json!(["c", "b", "zz"]))], params);
        assert_eq!(some, HashSet::from(["c".to_owned()]));
        assert!(immutable_parameters(&[], params).is_empty());
    }
}
