//! `hearth trigger create|update|get|delete|list|fire`, with `--feed` as wsk drives a feed:
//! create the trigger (annotated `feed`), then invoke the feed action with lifecycleEvent
//! CREATE and the trigger's name (the `-p` parameters go to the feed); if the feed refuses,
//! the trigger is deleted again. `delete` of a feed's trigger invokes its DELETE first.

use std::io::Write;

use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::error::CliError;
use super::http::{Client, Subject};
use super::output::{self, Output};
use super::params::{self, EntityRef};
use super::{AnnotationArgs, PageArgs, ParamArgs};

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Create a trigger (with --feed: and start the feed for it, e.g. /whisk.system/alarms/alarm)
    Create {
        name: String,
        /// The feed action to drive for this trigger; -p parameters go to the feed
        #[arg(short = 'f', long, value_name = "ACTION")]
        feed: Option<String>,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        annotations: AnnotationArgs,
    },
    /// Update a trigger (or create it); omitted settings keep their values
    Update {
        name: String,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        annotations: AnnotationArgs,
    },
    /// Show a trigger and its rules
    Get { name: String },
    /// Delete a trigger (and stop its feed)
    Delete { name: String },
    /// List triggers
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Fire a trigger with a payload (-p)
    Fire {
        name: String,
        #[command(flatten)]
        params: ParamArgs,
    },
}

fn subject(r: &EntityRef) -> Subject<'_> {
    Subject { kind: "trigger", name: r.name.as_str() }
}

/// The PUT body: what was given only (an update keeps the rest); the feed's annotation.
pub fn trigger_body(
    params: Option<&ParamArgs>,
    annotations: &AnnotationArgs,
    feed: Option<&str>,
) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(p) = params.filter(|p| !p.param.is_empty() || p.param_file.is_some()) {
        let kv = params::collect(&p.param, p.param_file.as_deref(), "parameter file")?;
        body.insert("parameters".into(), serde_json::to_value(kv).unwrap_or_default());
    }
    let mut ann = if !annotations.annotation.is_empty() || annotations.annotation_file.is_some() {
        params::collect(
            &annotations.annotation,
            annotations.annotation_file.as_deref(),
            "annotation file",
        )?
    } else {
        Vec::new()
    };
    if let Some(f) = feed {
        ann.retain(|kv| kv.key != "feed");
        ann.push(crate::model::KeyValue::new("feed", f));
    }
    if !ann.is_empty() {
        body.insert("annotations".into(), serde_json::to_value(ann).unwrap_or_default());
    }
    Ok(Value::Object(body))
}

/// Invokes `feed` (blocking, result only) for trigger `r` with `event` and `params`.
fn drive_feed(
    client: &Client,
    feed: &str,
    r: &EntityRef,
    event: &str,
    params: &ParamArgs,
) -> Result<(), CliError> {
    let action = EntityRef::parse(feed)?;
    let mut body = match params::to_object(params::collect(
        &params.param,
        params.param_file.as_deref(),
        "parameter file",
    )?) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    body.insert("lifecycleEvent".into(), json!(event));
    body.insert("triggerName".into(), json!(format!("/{}/{}", r.namespace, r.name)));
    let query = [("blocking", "true".to_string()), ("result", "true".to_string())];
    let resp = client.request(
        Method::POST,
        &action.segments("actions"),
        &query,
        Some(&Value::Object(body)),
    )?;
    if resp.is_success() {
        return Ok(());
    }
    let why = resp
        .json("feed")
        .ok()
        .and_then(|v| v.get("error").map(|e| e.as_str().map_or(e.to_string(), str::to_owned)))
        .unwrap_or_else(|| resp.text());
    Err(CliError::Usage(format!(
        "feed {} {event} for trigger {} failed: {why}",
        action.path(),
        r.name
    )))
}

/// Runs one trigger command.
pub fn run(
    client: &Client,
    output: Output,
    command: TriggerCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        TriggerCommand::Create { name, feed, params, annotations } => {
            let r = EntityRef::parse_top(&name)?;
            let trigger_params = if feed.is_some() { None } else { Some(&params) };
            let body = trigger_body(trigger_params, &annotations, feed.as_deref())?;
            put(client, &r, &body, false)?;
            if let Some(f) = &feed {
                if let Err(e) = drive_feed(client, f, &r, "CREATE", &params) {
                    let _ = client.request(Method::DELETE, &r.segments("triggers"), &[], None);
                    return Err(e);
                }
            }
            Ok(output.ok(out, &format!("created trigger {}", r.name))?)
        }
        TriggerCommand::Update { name, params, annotations } => {
            let r = EntityRef::parse_top(&name)?;
            put(client, &r, &trigger_body(Some(&params), &annotations, None)?, true)?;
            Ok(output.ok(out, &format!("updated trigger {}", r.name))?)
        }
        TriggerCommand::Get { name } => {
            let r = EntityRef::parse_top(&name)?;
            let resp = client.request(Method::GET, &r.segments("triggers"), &[], None)?;
            if !resp.is_success() {
                return Err(resp.error(Some(subject(&r))));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            output.ok(out, &format!("got trigger {}", r.name))?;
            Ok(output.pretty(out, &resp.json("trigger get")?)?)
        }
        TriggerCommand::Delete { name } => {
            let r = EntityRef::parse_top(&name)?;
            let got = client.request(Method::GET, &r.segments("triggers"), &[], None)?;
            let feed =
                got.is_success().then(|| got.json("trigger get").ok()).flatten().and_then(|v| {
                    v.get("annotations")?
                        .as_array()?
                        .iter()
                        .find(|a| a.get("key").and_then(Value::as_str) == Some("feed"))?
                        .get("value")?
                        .as_str()
                        .map(str::to_owned)
                });
            if let Some(f) = feed {
                if let Err(e) = drive_feed(client, &f, &r, "DELETE", &ParamArgs::default()) {
                    tracing::warn!(error = %e, "the feed's DELETE failed; deleting the trigger anyway");
                }
            }
            let resp = client.request(Method::DELETE, &r.segments("triggers"), &[], None)?;
            if !resp.is_success() {
                return Err(resp.error(Some(subject(&r))));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            Ok(output.ok(out, &format!("deleted trigger {}", r.name))?)
        }
        TriggerCommand::List { page } => {
            let query = [("limit", page.limit.to_string()), ("skip", page.skip.to_string())];
            let resp =
                client.request(Method::GET, &["namespaces", "_", "triggers"], &query, None)?;
            if !resp.is_success() {
                return Err(resp.error(None));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            let v = resp.json("trigger list")?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                    vec![format!("/{}/{}", s("namespace"), s("name")), s("version")]
                })
                .collect();
            Ok(write!(out, "{}", output::table(&["NAME", "VERSION"], &rows))?)
        }
        TriggerCommand::Fire { name, params } => {
            let r = EntityRef::parse_top(&name)?;
            let payload = params::to_object(params::collect(
                &params.param,
                params.param_file.as_deref(),
                "parameter file",
            )?);
            let resp =
                client.request(Method::POST, &r.segments("triggers"), &[], Some(&payload))?;
            if !resp.is_success() {
                return Err(resp.error(Some(subject(&r))));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            match resp
                .json("trigger fire")
                .ok()
                .and_then(|v| v["activationId"].as_str().map(str::to_owned))
            {
                Some(id) => Ok(output
                    .ok(out, &format!("triggered /{}/{} with id {id}", r.namespace, r.name))?),
                None => Ok(output.ok(
                    out,
                    &format!("triggered /{}/{} (no active rule: nothing ran)", r.namespace, r.name),
                )?),
            }
        }
    }
}

fn put(client: &Client, r: &EntityRef, body: &Value, overwrite: bool) -> Result<(), CliError> {
    let query = [("overwrite", overwrite.to_string())];
    let resp = client.request(Method::PUT, &r.segments("triggers"), &query, Some(body))?;
    if resp.is_success() {
        Ok(())
    } else {
        Err(resp.error(Some(subject(r))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_is_an_annotation_and_its_params_are_not_the_triggers() {
        let ann = AnnotationArgs::default();
        let b = trigger_body(None, &ann, Some("/whisk.system/alarms/alarm")).unwrap();
        assert_eq!(
            b,
            json!({"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]})
        );
        let p = ParamArgs { param: vec!["a".into(), "1".into()], param_file: None };
        assert_eq!(
            trigger_body(Some(&p), &ann, None).unwrap(),
            json!({"parameters": [{"key": "a", "value": 1}]})
        );
    }
}
