//! `hearth activation list|get|logs|result|poll`.
//!
//! Owns the activation requests and how records print (wsk's list columns: time, id, kind,
//! cold/warm start, duration, status, entity). It reads records as loose JSON rather than
//! [`crate::model::Activation`] so that a list entry without `response` or `logs` (OpenWhisk
//! leaves them out of lists) still prints. It must never change an activation.

use std::io::Write;
use std::time::SystemTime;

use hyper::Method;
use serde_json::Value;

use super::error::CliError;
use super::http::{Client, Subject};
use super::output::{self, Output};
use super::params::{self, EntityRef};
use super::{poll, ActivationCommand, PageArgs};
use crate::model::ActivationId;

/// The status of a record: `response.status`, else derived from `statusCode` (0..3).
pub fn status_of(record: &Value) -> String {
    if let Some(s) = record.pointer("/response/status").and_then(Value::as_str) {
        return s.to_owned();
    }
    let code = record.get("statusCode").or_else(|| record.pointer("/response/statusCode"));
    match code.and_then(Value::as_u64) {
        Some(0) => "success",
        Some(1) => "application error",
        Some(2) => "action developer error",
        Some(3) => "whisk internal error",
        _ => "-",
    }
    .to_owned()
}

fn annotation<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
    record
        .get("annotations")?
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")
}

/// One row of `activation list`.
pub fn list_row(record: &Value) -> Vec<String> {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let start = record.get("start").and_then(Value::as_u64);
    // OpenWhisk sets initTime only when the activation paid for a container start.
    let started = if annotation(record, "initTime").is_some() { "cold" } else { "warm" };
    vec![
        start.map(output::datetime).unwrap_or_else(|| "-".into()),
        s("activationId"),
        annotation(record, "kind").and_then(Value::as_str).unwrap_or("-").to_owned(),
        started.to_owned(),
        record
            .get("duration")
            .and_then(Value::as_u64)
            .map(output::duration_ms)
            .unwrap_or_else(|| "-".into()),
        status_of(record),
        format!("{}/{}:{}", s("namespace"), s("name"), s("version")),
    ]
}

/// The table of `activation list`.
pub fn list_table(records: &[Value]) -> String {
    let rows: Vec<Vec<String>> = records.iter().map(list_row).collect();
    output::table(
        &["DATETIME", "ACTIVATION ID", "KIND", "START", "DURATION", "STATUS", "ENTITY"],
        &rows,
    )
}

/// The query of an activation list; `name` filters by action (OpenWhisk's `name` parameter).
pub fn list_query(
    name: Option<&EntityRef>,
    page: PageArgs,
    since: Option<u64>,
    upto: Option<u64>,
) -> Vec<(&'static str, String)> {
    let mut q = vec![("limit", page.limit.to_string()), ("skip", page.skip.to_string())];
    if let Some(n) = name {
        q.push(("name", n.name.to_string()));
    }
    if let Some(s) = since {
        q.push(("since", s.to_string()));
    }
    if let Some(u) = upto {
        q.push(("upto", u.to_string()));
    }
    q
}

/// Fetches a list of records as JSON values.
pub fn fetch_list(
    client: &Client,
    namespace: &str,
    query: &[(&str, String)],
) -> Result<(Vec<Value>, String), CliError> {
    let resp =
        client.request(Method::GET, &["namespaces", namespace, "activations"], query, None)?;
    if !resp.is_success() {
        return Err(resp.error(None));
    }
    let v = resp.json("activation list")?;
    match v {
        Value::Array(a) => Ok((a, resp.text())),
        _ => Err(CliError::BadResponse {
            what: "activation list".into(),
            message: "expected a JSON array".into(),
        }),
    }
}

fn parse_id(id: &str) -> Result<ActivationId, CliError> {
    ActivationId::parse(id.trim()).map_err(|e| CliError::Usage(e.to_string()))
}

/// GETs `activations/{id}[/{part}]`, wording a 404 as "activation 'id' not found".
pub fn fetch_one(
    client: &Client,
    id: &ActivationId,
    part: Option<&str>,
) -> Result<(Value, String), CliError> {
    let id_text = id.to_string();
    let mut segs = vec!["namespaces", "_", "activations", id_text.as_str()];
    segs.extend(part);
    let resp = client.request(Method::GET, &segs, &[], None)?;
    if !resp.is_success() {
        return Err(resp.error(Some(Subject { kind: "activation", name: &id_text })));
    }
    Ok((resp.json("activation get")?, resp.text()))
}

/// Runs one activation command.
pub fn run(
    client: &Client,
    output: Output,
    command: ActivationCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        ActivationCommand::List { name, page, since, upto } => {
            let name = name.as_deref().map(EntityRef::parse).transpose()?;
            let now = SystemTime::now();
            let since = since.as_deref().map(|s| params::parse_time(s, now)).transpose()?;
            let upto = upto.as_deref().map(|s| params::parse_time(s, now)).transpose()?;
            let ns = name.as_ref().map(|n| n.namespace.as_str()).unwrap_or("_");
            let (records, raw) =
                fetch_list(client, ns, &list_query(name.as_ref(), page, since, upto))?;
            if output.json {
                return Ok(output.raw(out, &raw)?);
            }
            Ok(write!(out, "{}", list_table(&records))?)
        }
        ActivationCommand::Get { id } => {
            let id = parse_id(&id)?;
            let (v, raw) = fetch_one(client, &id, None)?;
            if output.json {
                return Ok(output.raw(out, &raw)?);
            }
            output.ok(out, &format!("got activation {id}"))?;
            Ok(output.pretty(out, &v)?)
        }
        ActivationCommand::Logs { id } => {
            let id = parse_id(&id)?;
            let (v, raw) = fetch_one(client, &id, Some("logs"))?;
            if output.json {
                return Ok(output.raw(out, &raw)?);
            }
            for line in v.get("logs").and_then(Value::as_array).into_iter().flatten() {
                match line.as_str() {
                    Some(s) => writeln!(out, "{s}")?,
                    None => writeln!(out, "{line}")?,
                }
            }
            Ok(())
        }
        ActivationCommand::Result { id } => {
            let id = parse_id(&id)?;
            let (v, raw) = fetch_one(client, &id, Some("result"))?;
            if output.json {
                return Ok(output.raw(out, &raw)?);
            }
            // OpenWhisk answers {"result": ..., "status": ..., "success": ...}; show the result.
            Ok(output.pretty(out, v.get("result").unwrap_or(&v))?)
        }
        ActivationCommand::Poll { name, exit, interval } => {
            let name = name.as_deref().map(EntityRef::parse).transpose()?;
            poll::run(client, output, name.as_ref(), exit, interval, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({
            "namespace": "guest", "name": "hello", "version": "0.0.1",
            "activationId": "44794bd6aab74415b4e42a308d880e5b",
            "start": 1_552_557_947_123u64, "end": 1_552_557_947_157u64, "duration": 34,
            "response": {"status": "success", "statusCode": 0, "success": true, "result": {}},
            "annotations": [{"key":"kind","value":"python:3"}, {"key":"initTime","value":12}],
        })
    }

    #[test]
    fn list_rows_like_wsk() {
        assert_eq!(
            list_row(&record()),
            [
                "2019-03-14 10:05:47",
                "44794bd6aab74415b4e42a308d880e5b",
                "python:3",
                "cold",
                "34ms",
                "success",
                "guest/hello:0.0.1",
            ]
        );
        // A list entry without response and annotations (OpenWhisk's list shape).
        let slim = json!({"namespace":"guest","name":"h","version":"0.0.3","activationId":"ab","statusCode":1,"start":0});
        let row = list_row(&slim);
        assert_eq!(
            (row[2].as_str(), row[3].as_str(), row[4].as_str(), row[5].as_str()),
            ("-", "warm", "-", "application error")
        );
        let t = list_table(&[record(), slim]);
        assert_eq!(t.lines().count(), 3);
        assert!(t.starts_with("DATETIME "));
    }

    #[test]
    fn status_from_code_or_response() {
        assert_eq!(status_of(&json!({"statusCode": 2})), "action developer error");
        assert_eq!(
            status_of(&json!({"response": {"status": "whisk internal error"}})),
            "whisk internal error"
        );
        assert_eq!(status_of(&json!({})), "-");
    }

    #[test]
    fn list_query_carries_filters() {
        let n = EntityRef::parse("hello").unwrap();
        let q = list_query(Some(&n), PageArgs { limit: 5, skip: 2 }, Some(10), None);
        assert_eq!(
            q,
            [
                ("limit", "5".to_owned()),
                ("skip", "2".to_owned()),
                ("name", "hello".to_owned()),
                ("since", "10".to_owned())
            ]
        );
    }

    #[test]
    fn ids_are_checked_before_sending() {
        assert!(parse_id("44794bd6aab74415b4e42a308d880e5b").is_ok());
        assert!(matches!(parse_id("nope"), Err(CliError::Usage(_))));
    }
}
