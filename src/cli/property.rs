//! `hearth property get`: which server and key the client uses, and where each came from.
//!
//! Owns that report. It must never print the key's secret, and never contact the server:
//! it answers "what would a command use" even when no server runs.

use std::io::Write;

use serde_json::json;

use super::config::Config;
use super::error::CliError;
use super::output::{self, Output};

/// The human report: one row per setting.
pub fn table(config: &Config) -> String {
    output::table(
        &["PROPERTY", "VALUE", "SOURCE"],
        &[
            vec!["apihost".into(), config.apihost.to_string(), config.apihost_source.to_string()],
            vec!["auth".into(), config.masked_auth(), config.auth_source.to_string()],
            vec!["client version".into(), env!("CARGO_PKG_VERSION").into(), "-".into()],
        ],
    )
}

pub fn get(config: &Config, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    if output.json {
        let v = json!({
            "apihost": config.apihost.to_string(),
            "apihost_source": config.apihost_source.to_string(),
            "auth": config.masked_auth(),
            "auth_source": config.auth_source.to_string(),
            "client_version": env!("CARGO_PKG_VERSION"),
        });
        return Ok(writeln!(out, "{v}")?);
    }
    Ok(write!(out, "{}", table(config))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::{resolve, Inputs};
    use crate::model::GUEST_KEY;

    #[test]
    fn shows_sources_and_masks_the_secret() {
        let c = resolve(&Inputs::default()).unwrap();
        let t = table(&c);
        assert!(t.contains("http://127.0.0.1:3233"));
        assert!(t.contains("default guest key, loopback only"));
        let secret = GUEST_KEY.split_once(':').unwrap().1;
        assert!(!t.contains(secret));
        let mut buf = Vec::new();
        get(&c, Output { json: true, color: false }, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["apihost_source"], "default");
        assert!(!String::from_utf8(buf).unwrap().contains(secret));
    }
}
