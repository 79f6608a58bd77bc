//! `hearth rule create|update|get|delete|list|enable|disable|status`.

use std::io::Write;

use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};

use super::error::CliError;
use super::http::{Client, Subject};
use super::output::{self, Output};
use super::params::EntityRef;
use super::PageArgs;

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Create a rule: when TRIGGER fires, run ACTION
    Create { name: String, trigger: String, action: String },
    /// Update a rule's trigger and action
    Update { name: String, trigger: String, action: String },
    /// Show a rule
    Get { name: String },
    /// Delete a rule
    Delete { name: String },
    /// List rules
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Enable a rule
    Enable { name: String },
    /// Disable a rule
    Disable { name: String },
    /// Show whether a rule is active
    Status { name: String },
}

fn subject(r: &EntityRef) -> Subject<'_> {
    Subject { kind: "rule", name: r.name.as_str() }
}

/// `name` as the server resolves it in the rule's body: `/ns/[pkg/]name` or `[pkg/]name`.
fn target(s: &str) -> Result<String, CliError> {
    Ok(EntityRef::parse(s)?.path())
}

/// Runs one rule command.
pub fn run(
    client: &Client,
    output: Output,
    command: RuleCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let request = |method: Method, name: &str, query: &[(&str, String)], body: Option<&Value>| {
        let r = EntityRef::parse_top(name)?;
        let resp = client.request(method, &r.segments("rules"), query, body)?;
        if !resp.is_success() {
            return Err(resp.error(Some(subject(&r))));
        }
        Ok((r, resp))
    };
    let (r, resp, done) = match command {
        RuleCommand::Create { name, trigger, action } => {
            let body = json!({"trigger": target(&trigger)?, "action": target(&action)?});
            let (r, resp) =
                request(Method::PUT, &name, &[("overwrite", "false".into())], Some(&body))?;
            (r, resp, "created rule")
        }
        RuleCommand::Update { name, trigger, action } => {
            let body = json!({"trigger": target(&trigger)?, "action": target(&action)?});
            let (r, resp) =
                request(Method::PUT, &name, &[("overwrite", "true".into())], Some(&body))?;
            (r, resp, "updated rule")
        }
        RuleCommand::Get { name } => {
            let (r, resp) = request(Method::GET, &name, &[], None)?;
            if !output.json {
                output.ok(out, &format!("got rule {}", r.name))?;
                return Ok(output.pretty(out, &resp.json("rule get")?)?);
            }
            (r, resp, "")
        }
        RuleCommand::Delete { name } => {
            let (r, resp) = request(Method::DELETE, &name, &[], None)?;
            (r, resp, "deleted rule")
        }
        RuleCommand::Enable { name } => {
            let (r, resp) = request(Method::POST, &name, &[], Some(&json!({"status": "active"})))?;
            (r, resp, "enabled rule")
        }
        RuleCommand::Disable { name } => {
            let (r, resp) =
                request(Method::POST, &name, &[], Some(&json!({"status": "inactive"})))?;
            (r, resp, "disabled rule")
        }
        RuleCommand::Status { name } => {
            let (r, resp) = request(Method::GET, &name, &[], None)?;
            if !output.json {
                let v = resp.json("rule get")?;
                let status = v.get("status").and_then(Value::as_str).unwrap_or("-");
                return Ok(output.ok(out, &format!("rule {} is {status}", r.name))?);
            }
            (r, resp, "")
        }
        RuleCommand::List { page } => {
            let query = [("limit", page.limit.to_string()), ("skip", page.skip.to_string())];
            let resp = client.request(Method::GET, &["namespaces", "_", "rules"], &query, None)?;
            if !resp.is_success() {
                return Err(resp.error(None));
            }
            if output.json {
                return Ok(output.raw(out, &resp.text())?);
            }
            let v = resp.json("rule list")?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                    vec![format!("/{}/{}", s("namespace"), s("name")), s("status")]
                })
                .collect();
            return Ok(write!(out, "{}", output::table(&["NAME", "STATUS"], &rows))?);
        }
    };
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    Ok(output.ok(out, &format!("{done} {}", r.name))?)
}
