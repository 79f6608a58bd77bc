//! `hearth api create|get|list|delete` (wsk's `api` commands, through OpenWhisk's API
//! management routes `/api/v1/web/whisk.system/apimgmt/...` as wsk sends them), and the web
//! parts of `hearth action`: `--web true|false|raw` and `get --url`.

use std::io::Write;

use hyper::Method;
use serde_json::{json, Value};

use super::http::Client;
use super::output::{self, Output};
use super::params::EntityRef;
use super::{ApiCommand, CliError};

/// The annotations wsk's `--web` sets: `web-export`, `raw-http` and `final`.
pub fn web_annotations(flag: &str) -> Result<[Value; 3], CliError> {
    let (export, raw) = match flag {
        "true" | "yes" => (true, false),
        "raw" => (true, true),
        "false" | "no" => (false, false),
        other => {
            return Err(CliError::Usage(format!(
                "--web takes true, yes, raw, false or no, not {other:?}"
            )))
        }
    };
    Ok([
        json!({"key": "web-export", "value": export}),
        json!({"key": "raw-http", "value": raw}),
        json!({"key": "final", "value": export}),
    ])
}

/// Puts `--web`'s annotations into an action's PUT body: over the annotations given, or on
/// update over the stored ones (as wsk does, so `--web` alone keeps the rest).
pub fn apply_web(
    client: &Client,
    segments: &[&str],
    flag: &str,
    update: bool,
    body: &mut Value,
) -> Result<(), CliError> {
    let web = web_annotations(flag)?;
    let mut list = match body.get("annotations") {
        Some(Value::Array(a)) => a.clone(),
        _ if update => {
            let resp = client.request(Method::GET, segments, &[("code", "false".into())], None)?;
            let current = if resp.is_success() { resp.json("action get")? } else { json!({}) };
            current["annotations"].as_array().cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    };
    list.retain(|a| !matches!(a["key"].as_str(), Some("web-export" | "raw-http" | "final")));
    list.extend(web);
    body["annotations"] = Value::Array(list);
    Ok(())
}

/// The web URL of an action as `get` returned it (`namespace` is `ns` or `ns/package`).
pub fn web_url(client: &Client, action: &Value) -> String {
    let ns = action["namespace"].as_str().unwrap_or("_");
    let path = if ns.contains('/') { ns.to_owned() } else { format!("{ns}/default") };
    format!("{}/api/v1/web/{path}/{}", client.apihost(), action["name"].as_str().unwrap_or(""))
}

fn apimgmt(
    client: &Client,
    method: Method,
    action: &str,
    query: &[(&str, String)],
    body: Option<&Value>,
) -> Result<Value, CliError> {
    let segments = ["web", "whisk.system", "apimgmt", action];
    let resp = client.request(method, &segments, query, body)?;
    if !resp.is_success() {
        return Err(resp.error(None));
    }
    resp.json("API management")
}

/// `URL` lines (`VERB URL  ACTION`) of the APIs in a getApi answer, filtered as `list` asks.
fn rows(answer: &Value, relpath: Option<&str>, verb: Option<&str>) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for api in answer["apis"].as_array().into_iter().flatten() {
        let value = &api["value"];
        let url = value["gwApiUrl"].as_str().unwrap_or("");
        let doc = &value["apidoc"];
        let name = doc["info"]["title"].as_str().unwrap_or("");
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            if relpath.is_some_and(|r| r != path) {
                continue;
            }
            for (op, def) in ops.as_object().into_iter().flatten() {
                if verb.is_some_and(|v| !v.eq_ignore_ascii_case(op)) {
                    continue;
                }
                let ow = &def["x-openwhisk"];
                let action = match ow["package"].as_str().filter(|p| !p.is_empty()) {
                    Some(p) => format!(
                        "/{}/{p}/{}",
                        ow["namespace"].as_str().unwrap_or("_"),
                        ow["action"].as_str().unwrap_or("")
                    ),
                    None => format!(
                        "/{}/{}",
                        ow["namespace"].as_str().unwrap_or("_"),
                        ow["action"].as_str().unwrap_or("")
                    ),
                };
                rows.push(vec![action, op.to_owned(), name.to_owned(), format!("{url}{path}")]);
            }
        }
    }
    rows
}

/// Runs one `api` command.
pub fn run(
    client: &Client,
    output: Output,
    command: ApiCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        ApiCommand::Create { basepath, relpath, verb, action, apiname, response_type } => {
            let a = EntityRef::parse(&action)?;
            let name = match &a.package {
                Some(p) => format!("{p}/{}", a.name),
                None => a.name.to_string(),
            };
            let mut doc = json!({
                "namespace": "_", "gatewayBasePath": basepath, "gatewayPath": relpath,
                "gatewayMethod": verb, "id": format!("API:_:{basepath}"),
                "action": {"name": name, "namespace": a.namespace, "backendMethod": verb,
                           "backendUrl": format!("{}/api/v1/web/{}/{}/{}.{response_type}", client.apihost(), a.namespace, a.package.as_ref().map_or("default", |p| p.as_str()), a.name)},
            });
            if let Some(n) = apiname {
                doc["apiName"] = json!(n);
            }
            let answer = apimgmt(
                client,
                Method::POST,
                "createApi.http",
                &[("responsetype", response_type.clone())],
                Some(&json!({ "apidoc": doc })),
            )?;
            if output.json {
                return Ok(output.pretty(out, &answer)?);
            }
            let url = answer["gwApiUrl"].as_str().unwrap_or("");
            output.ok(
                out,
                &format!(
                    "created API {basepath}{relpath} {} for action {}",
                    verb.to_uppercase(),
                    a.short()
                ),
            )?;
            Ok(writeln!(out, "{url}{relpath}")?)
        }
        ApiCommand::Get { api } => {
            let answer =
                apimgmt(client, Method::GET, "getApi.http", &[("basepath", api.clone())], None)?;
            let doc = answer["apis"].get(0).map(|a| a["value"]["apidoc"].clone());
            match doc {
                Some(d) => Ok(output.pretty(out, &d)?),
                None => Err(CliError::Usage(format!("API {api:?} does not exist"))),
            }
        }
        ApiCommand::List { api, relpath, verb } => {
            let query: Vec<(&str, String)> = api.iter().map(|a| ("basepath", a.clone())).collect();
            let answer = apimgmt(client, Method::GET, "getApi.http", &query, None)?;
            if output.json {
                return Ok(output.pretty(out, &answer)?);
            }
            output.ok(out, "APIs")?;
            let rows = rows(&answer, relpath.as_deref(), verb.as_deref());
            Ok(write!(out, "{}", output::table(&["Action", "Verb", "API Name", "URL"], &rows))?)
        }
        ApiCommand::Delete { api, relpath, verb } => {
            let mut query = vec![("basepath", api.clone()), ("force", "true".to_owned())];
            query.extend(relpath.iter().map(|r| ("relpath", r.clone())));
            query.extend(verb.iter().map(|v| ("operation", v.clone())));
            apimgmt(client, Method::DELETE, "deleteApi.http", &query, None)?;
            let what =
                [Some(api), relpath, verb].into_iter().flatten().collect::<Vec<_>>().join(" ");
            Ok(output.ok(out, &format!("deleted API {what}"))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_flags_as_wsk_sets_them() {
        let [e, r, f] = web_annotations("raw").unwrap();
        assert_eq!(
            (e["value"].clone(), r["value"].clone(), f["value"].clone()),
            (json!(true), json!(true), json!(true))
        );
        let [e, r, f] = web_annotations("no").unwrap();
        assert_eq!(
            (e["value"].clone(), r["value"].clone(), f["value"].clone()),
            (json!(false), json!(false), json!(false))
        );
        assert!(web_annotations("maybe").is_err());
    }

    #[test]
    fn list_rows_from_a_getapi_answer() {
        let answer = json!({"apis": [{"value": {"gwApiUrl": "http://h/api/guest/club", "apidoc": {
            "info": {"title": "Book Club"},
            "paths": {"/books": {"get": {"x-openwhisk": {"namespace": "guest", "package": "", "action": "getBooks"}},
                                 "post": {"x-openwhisk": {"namespace": "guest", "package": "lib", "action": "add"}}}}}}}]});
        let r = rows(&answer, None, Some("POST"));
        assert_eq!(
            r,
            vec![vec![
                "/guest/lib/add".to_owned(),
                "post".into(),
                "Book Club".into(),
                "http://h/api/guest/club/books".into()
            ]]
        );
        assert_eq!(rows(&answer, Some("/other"), None).len(), 0);
    }
}
