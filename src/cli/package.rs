//! `hearth package create|update|bind|get|list|delete`.
//!
//! Owns the request bodies for packages and bindings (parameters, annotations, `publish`,
//! `binding`, in OpenWhisk's shape) and the printing of package answers. The body builder is
//! a pure function, tested without a server. Like the action commands it never validates
//! what the server validates.

use std::io::Write;

use hyper::Method;
use serde_json::{json, Map, Value};

use super::error::CliError;
use super::http::{Client, Subject};
use super::output::{self, Output};
use super::params::{self, EntityRef};
use super::{AnnotationArgs, PackageCommand, PageArgs, ParamArgs};

/// `--shared` as wsk takes it: yes/no (true/false accepted too).
pub fn parse_shared(s: &str) -> Result<bool, CliError> {
    match s {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        other => Err(CliError::Usage(format!("--shared takes yes or no, not {other:?}"))),
    }
}

/// The PUT body of a package or binding. Only what was given is sent, so an update keeps
/// every omitted setting (the server merges, as OpenWhisk does).
pub fn package_body(
    params: &ParamArgs,
    annotations: &AnnotationArgs,
    shared: Option<bool>,
    binding: Option<&EntityRef>,
) -> Result<Value, CliError> {
    let mut body = Map::new();
    if !params.param.is_empty() || params.param_file.is_some() {
        let p = params::collect(&params.param, params.param_file.as_deref(), "parameter file")?;
        body.insert("parameters".into(), serde_json::to_value(p).unwrap_or_default());
    }
    if !annotations.annotation.is_empty() || annotations.annotation_file.is_some() {
        let a = params::collect(
            &annotations.annotation,
            annotations.annotation_file.as_deref(),
            "annotation file",
        )?;
        body.insert("annotations".into(), serde_json::to_value(a).unwrap_or_default());
    }
    if let Some(s) = shared {
        body.insert("publish".into(), json!(s));
    }
    if let Some(b) = binding {
        body.insert("binding".into(), json!({ "namespace": b.namespace, "name": b.name }));
    }
    Ok(Value::Object(body))
}

/// Rows of `hearth package list`: name, visibility, what a binding points at, version.
pub fn list_rows(entries: &[Value]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
            let shared = e.get("publish").and_then(Value::as_bool).unwrap_or(false);
            let binding = match e.get("binding") {
                Some(Value::Object(b)) if !b.is_empty() => format!(
                    "/{}/{}",
                    b.get("namespace").and_then(Value::as_str).unwrap_or("-"),
                    b.get("name").and_then(Value::as_str).unwrap_or("-")
                ),
                _ => "-".to_owned(),
            };
            vec![
                format!("/{}/{}", s("namespace"), s("name")),
                if shared { "shared" } else { "private" }.to_owned(),
                binding,
                s("version"),
            ]
        })
        .collect()
}

/// Runs one package command.
pub fn run(
    client: &Client,
    output: Output,
    command: PackageCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        PackageCommand::Create { name, spec } => {
            let shared = spec.shared.as_deref().map(parse_shared).transpose()?;
            let body = package_body(&spec.params, &spec.annotations, shared, None)?;
            put(client, output, &name, &body, false, "created package", out)
        }
        PackageCommand::Update { name, spec } => {
            let shared = spec.shared.as_deref().map(parse_shared).transpose()?;
            let body = package_body(&spec.params, &spec.annotations, shared, None)?;
            put(client, output, &name, &body, true, "updated package", out)
        }
        PackageCommand::Bind { package, name, params, annotations } => {
            let target = EntityRef::parse_top(&package)?;
            let body = package_body(&params, &annotations, None, Some(&target))?;
            put(client, output, &name, &body, false, "created binding", out)
        }
        PackageCommand::Get { name, summary } => get(client, output, &name, summary, out),
        PackageCommand::List { namespace, page } => {
            list(client, output, namespace.as_deref(), page, out)
        }
        PackageCommand::Delete { name } => {
            let r = EntityRef::parse_top(&name)?;
            let resp = client.request(Method::DELETE, &r.segments("packages"), &[], None)?;
            if !resp.is_success() {
                return Err(resp.error(Some(subject(&r))));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            Ok(output.ok(out, &format!("deleted package {}", r.name))?)
        }
    }
}

fn subject(r: &EntityRef) -> Subject<'_> {
    Subject { kind: "package", name: r.name.as_str() }
}

fn put(
    client: &Client,
    output: Output,
    name: &str,
    body: &Value,
    overwrite: bool,
    done: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse_top(name)?;
    let query = [("overwrite", overwrite.to_string())];
    let resp = client.request(Method::PUT, &r.segments("packages"), &query, Some(body))?;
    if !resp.is_success() {
        return Err(resp.error(Some(subject(&r))));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    Ok(output.ok(out, &format!("{done} {}", r.name))?)
}

fn get(
    client: &Client,
    output: Output,
    name: &str,
    summary: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let r = EntityRef::parse_top(name)?;
    let resp = client.request(Method::GET, &r.segments("packages"), &[], None)?;
    if !resp.is_success() {
        return Err(resp.error(Some(subject(&r))));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let v = resp.json("package get")?;
    if !summary {
        output.ok(out, &format!("got package {}", r.name))?;
        return Ok(output.pretty(out, &v)?);
    }
    let ns = v.get("namespace").and_then(Value::as_str).unwrap_or("-");
    writeln!(out, "package /{ns}/{}", r.name)?;
    for a in v.get("actions").and_then(Value::as_array).into_iter().flatten() {
        let n = a.get("name").and_then(Value::as_str).unwrap_or("-");
        writeln!(out, "   action /{ns}/{}/{n}", r.name)?;
    }
    Ok(())
}

fn list(
    client: &Client,
    output: Output,
    namespace: Option<&str>,
    page: PageArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ns = namespace.map(|n| n.trim_matches('/')).filter(|n| !n.is_empty()).unwrap_or("_");
    if ns != "_" {
        crate::model::EntityName::parse(ns)
            .map_err(|e| CliError::Usage(format!("invalid namespace {ns:?}: {e}")))?;
    }
    let query = [("limit", page.limit.to_string()), ("skip", page.skip.to_string())];
    let resp = client.request(Method::GET, &["namespaces", ns, "packages"], &query, None)?;
    if !resp.is_success() {
        return Err(resp.error(None));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let v = resp.json("package list")?;
    let entries = v.as_array().ok_or_else(|| CliError::BadResponse {
        what: "package list".into(),
        message: "expected a JSON array".into(),
    })?;
    Ok(write!(
        out,
        "{}",
        output::table(&["NAME", "VISIBILITY", "BINDING", "VERSION"], &list_rows(entries))
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_send_only_what_was_given() {
        let none =
            package_body(&ParamArgs::default(), &AnnotationArgs::default(), None, None).unwrap();
        assert_eq!(none, json!({}));
        let params = ParamArgs { param: vec!["a".into(), "1".into()], param_file: None };
        let ann =
            AnnotationArgs { annotation: vec!["d".into(), "x".into()], annotation_file: None };
        let target = EntityRef::parse_top("/whisk.system/utils").unwrap();
        let b = package_body(&params, &ann, Some(true), Some(&target)).unwrap();
        assert_eq!(
            b,
            json!({
                "parameters": [{"key": "a", "value": 1}],
                "annotations": [{"key": "d", "value": "x"}],
                "publish": true,
                "binding": {"namespace": "whisk.system", "name": "utils"},
            })
        );
        assert!(parse_shared("yes").unwrap() && !parse_shared("no").unwrap());
        assert!(parse_shared("maybe").is_err());
    }

    #[test]
    fn list_rows_show_visibility_and_binding() {
        let rows = list_rows(&[
            json!({"namespace": "whisk.system", "name": "utils", "publish": true, "binding": false, "version": "0.0.1"}),
            json!({"namespace": "guest", "name": "b", "publish": false, "binding": {"namespace": "whisk.system", "name": "utils"}, "version": "0.0.2"}),
        ]);
        assert_eq!(rows[0], ["/whisk.system/utils", "shared", "-", "0.0.1"]);
        assert_eq!(rows[1], ["/guest/b", "private", "/whisk.system/utils", "0.0.2"]);
    }
}
