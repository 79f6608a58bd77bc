//! `hearth namespace list`: the namespaces the key may use.
//!
//! Owns that one request and its printing. It must never create or delete namespaces:
//! administration belongs to `hearthd admin`, on the server's host.

use std::io::Write;

use hyper::Method;
use serde_json::Value;

use super::error::CliError;
use super::http::Client;
use super::output::{self, Output};

/// Names from OpenWhisk's answer (an array of strings), tolerating `{"name": ...}` objects.
pub fn names(v: &Value) -> Result<Vec<String>, CliError> {
    let arr = v.as_array().ok_or_else(|| CliError::BadResponse {
        what: "namespace list".into(),
        message: "expected a JSON array".into(),
    })?;
    Ok(arr
        .iter()
        .filter_map(|e| {
            e.as_str().or_else(|| e.get("name").and_then(Value::as_str)).map(str::to_owned)
        })
        .collect())
}

pub fn list(client: &Client, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let resp = client.request(Method::GET, &["namespaces"], &[], None)?;
    if !resp.is_success() {
        return Err(resp.error(None));
    }
    if output.json {
        return Ok(output.raw(out, &resp.text())?);
    }
    let rows: Vec<Vec<String>> =
        names(&resp.json("namespace list")?)?.into_iter().map(|n| vec![n]).collect();
    Ok(write!(out, "{}", output::table(&["NAMESPACE"], &rows))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_from_both_shapes() {
        assert_eq!(names(&json!(["guest", {"name":"ops"}, 3])).unwrap(), ["guest", "ops"]);
        assert!(names(&json!({"error":"x"})).is_err());
    }
}
