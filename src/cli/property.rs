//! `hearth property get`: which server and key the client uses, and where each came from.
//!
//! Owns that report. It must never print the key's secret, and never contact the server:
//! it answers "what would a command use" even when no server runs, and still shows the
//! API host when no key is configured for it.

use std::io::Write;

use serde_json::json;

use super::config::{self, ConfigError, Inputs};
use super::error::CliError;
use super::output::{self, Output};

/// One setting for the report: value and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub apihost: String,
    pub apihost_source: String,
    pub auth: String,
    pub auth_source: String,
}

/// Resolves what a command would use. A missing key is shown as such, not an error; any
/// other configuration problem (a malformed host or key) is the error the user must fix.
pub fn report(inputs: &Inputs) -> Result<Report, CliError> {
    match config::resolve(inputs) {
        Ok(c) => Ok(Report {
            apihost: c.apihost.to_string(),
            apihost_source: c.apihost_source.to_string(),
            auth: c.masked_auth(),
            auth_source: c.auth_source.to_string(),
        }),
        Err(ConfigError::NoKey { .. }) => {
            let (apihost, source) = config::resolve_apihost(inputs)?;
            Ok(Report {
                apihost: apihost.to_string(),
                apihost_source: source.to_string(),
                auth: "(not set)".into(),
                auth_source: "-".into(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The human report: one row per setting.
pub fn table(r: &Report) -> String {
    output::table(
        &["PROPERTY", "VALUE", "SOURCE"],
        &[
            vec!["apihost".into(), r.apihost.clone(), r.apihost_source.clone()],
            vec!["auth".into(), r.auth.clone(), r.auth_source.clone()],
            vec!["client version".into(), env!("CARGO_PKG_VERSION").into(), "-".into()],
        ],
    )
}

pub fn get(inputs: &Inputs, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let r = report(inputs)?;
    if output.json {
        let v = json!({
            "apihost": r.apihost,
            "apihost_source": r.apihost_source,
            "auth": r.auth,
            "auth_source": r.auth_source,
            "client_version": env!("CARGO_PKG_VERSION"),
        });
        return Ok(writeln!(out, "{v}")?);
    }
    Ok(write!(out, "{}", table(&r))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GUEST_KEY;

    #[test]
    fn shows_sources_and_masks_the_secret() {
        let t = table(&report(&Inputs::default()).unwrap());
        assert!(t.contains("http://127.0.0.1:3233"));
        assert!(t.contains("default guest key, loopback only"));
        let secret = GUEST_KEY.split_once(':').unwrap().1;
        assert!(!t.contains(secret));
        let mut buf = Vec::new();
        get(&Inputs::default(), Output { json: true, color: false }, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["apihost_source"], "default");
        assert!(!String::from_utf8(buf).unwrap().contains(secret));
    }

    #[test]
    fn remote_host_without_key_still_reports() {
        let i = Inputs { env_apihost: Some("http://example.org:3233".into()), ..Inputs::default() };
        let r = report(&i).unwrap();
        assert_eq!(r.apihost, "http://example.org:3233");
        assert_eq!(r.apihost_source, "environment HEARTH_APIHOST");
        assert_eq!(r.auth, "(not set)");
        let bad = Inputs { flag_apihost: Some("https://x".into()), ..Inputs::default() };
        assert!(report(&bad).is_err());
    }
}
