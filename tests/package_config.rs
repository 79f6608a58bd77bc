//! The commented default configs that the packages install as /etc/hearth/*.toml stay true:
//! uncommenting every setting gives valid TOML whose values are the built-in defaults, so an
//! operator who uncomments a line changes nothing until they edit it.
//! (Once the daemon's config loader lands, the invoker half should also deserialize into
//! `InvokerConfig` and compare with `InvokerConfig::default()`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use hearth::controller::ControllerConfig;
use hearth::model::MAX_PAYLOAD_BYTES;

fn read(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name),
    )
    .unwrap()
}

/// Every `# key = value`, `# [table]` and `# [[table]]` line, uncommented; prose comments
/// stay out.
fn uncommented(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else { continue };
        let is_setting = rest.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        let name = rest.trim_start_matches('[').trim_end_matches(']');
        let is_table = rest.starts_with('[')
            && rest.ends_with(']')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if is_setting || is_table {
            out.push_str(rest);
            out.push('\n');
        }
    }
    out
}

fn settings(name: &str) -> toml::Table {
    let text = read(name);
    // Nothing is set by default: the packaged file must not override the built-in defaults.
    let active: Vec<_> =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert!(active.is_empty(), "{name} sets something: {active:?}");
    let body = uncommented(&text);
    body.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{name} uncommented is not TOML: {e}\n{body}"))
}

fn duration(t: &toml::Table, key: &str) -> Duration {
    let v = t.get(key).unwrap_or_else(|| panic!("{key} missing"));
    humantime::parse_duration(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn controller_toml_shows_the_built_in_defaults() {
    let t = settings("controller.toml");
    let d = ControllerConfig::default();
    assert_eq!(duration(&t, "max_blocking_wait"), d.max_blocking_wait);
    assert_eq!(duration(&t, "wait_margin"), d.wait_margin);
    assert_eq!(duration(&t, "retention"), d.retention);
    assert_eq!(duration(&t, "retention_interval"), d.retention_interval);
    assert_eq!(t["data_dir"].as_str(), Some("/var/lib/hearth"));
    assert_eq!(t["invoker_socket"].as_str(), Some("/run/hearth/invoker.sock"));
    let listen: std::net::SocketAddr = t["listen"].as_str().unwrap().parse().unwrap();
    assert_eq!(listen.port(), 3233, "OpenWhisk standalone's port");
    assert!(t.contains_key("idle_exit"));
    let limits = t["limits"].as_table().expect("[limits]");
    let number = |k: &str| limits[k].as_integer().map(|n| n as u32);
    assert_eq!(number("invocations_per_minute"), d.namespace_limits.invocations_per_minute);
    assert_eq!(number("concurrent_invocations"), d.namespace_limits.concurrent_invocations);
    assert_eq!(number("fires_per_minute"), d.namespace_limits.fires_per_minute);
    assert_eq!(number("sequence_max_length"), d.namespace_limits.sequence_max_length);
}

#[test]
fn invoker_toml_shows_the_built_in_defaults() {
    let t = settings("invoker.toml");
    assert_eq!(t["memory_budget_mb"].as_integer(), Some(2048));
    assert_eq!(duration(&t, "idle_timeout"), Duration::from_secs(600));
    assert_eq!(duration(&t, "reap_interval"), Duration::from_secs(10));
    assert_eq!(duration(&t, "drain_timeout"), Duration::from_secs(30));
    assert_eq!(t["queue_limit"].as_integer(), Some(256));
    assert_eq!(t["network"].as_bool(), Some(false));
    assert_eq!(t["max_result_bytes"].as_integer(), Some(MAX_PAYLOAD_BYTES as i64));
    let prewarm = t["prewarm"].as_array().unwrap();
    let kinds: Vec<_> = prewarm.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["python:3", "nodejs:20"]);
    for p in prewarm {
        hearth::model::Kind::parse(p["kind"].as_str().unwrap()).unwrap();
        assert_eq!(p["memory_mb"].as_integer(), Some(256));
        assert_eq!(p["count"].as_integer(), Some(1));
    }
}
