//! The action-loop protocol: one JSON line in on the launcher's stdin, one JSON line out on
//! its fd 3.
//!
//! Host to launcher: `{"op":"init","action":..,"entry_point":..,"binary":..}` once, then
//! `{"op":"run","value":{params},"env":{"ACTIVATION_ID":..,..}}` per activation (the launcher
//! prefixes `__OW_`). Launcher to host: `{"ok":true}` or `{"error":msg}` for the init; the
//! value `main` returned for a run. Before each reply the launcher writes [`SENTINEL`] on a line
//! of its own to stdout and to stderr.
//!
//! A reply (to an init or a run) that starts with [`DEVELOPER_ERROR_MARK`] is the launcher
//! saying that the action broke its contract, in OpenWhisk's own words: the rest of the line is
//! a JSON string, the message of the developer error. A result is always an object (it starts
//! with `{`), so the mark can never be mistaken for one. The native launcher uses it for the
//! action proxy's messages ("The action did not return a dictionary or array.").
//!
//! Concurrent mode (an action whose `limits.concurrency` is above 1, Node only): the init
//! carries `"concurrency":N`, every run carries `"id":n` (a number the host picks, unique among
//! the runs in flight) and its reply line is `<id> <reply>` ([`split_concurrent_reply`]). The
//! launcher tags every log line a run writes with [`LOG_TAG`], its id and a space, and ends
//! the run's logs with a tagged [`SENTINEL`] on each stream before its reply
//! ([`split_tagged_line`]). Without concurrency nothing of this is sent: the sequential
//! exchange is byte for byte what it was.
//!
//! Encoding writes into a caller's reusable buffer and decoding works on the caller's bytes:
//! this runs once per warm activation and must stay allocation-light. Nothing here does I/O.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{InitSpec, RunSpec};

/// Written by the launcher after each activation's output, OpenWhisk's marker.
pub const SENTINEL: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";

/// First byte of a log line that a run in concurrent mode wrote (ASCII SOH), followed by the
/// run's id and a space.
pub const LOG_TAG: u8 = 0x01;

/// First byte of a reply that reports a developer error in the launcher's words.
pub const DEVELOPER_ERROR_MARK: u8 = b'!';

/// Characters of a non-object result quoted in [`ReplyError::NotAnObject`].
const SNIPPET_CHARS: usize = 120;

#[derive(Serialize)]
struct InitMessage<'a> {
    op: &'static str,
    action: &'a str,
    entry_point: &'a str,
    binary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u64>,
}

#[derive(Serialize)]
struct RunMessage<'a> {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    value: &'a Map<String, Value>,
    env: EnvObject<'a>,
}

/// Serialises `[(k, v)]` as a JSON object without building a map.
struct EnvObject<'a>(&'a [(String, String)]);

impl Serialize for EnvObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Writes the init line (with its newline) into `buf`, replacing what was there.
pub fn encode_init(init: &InitSpec, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    encode_init_concurrent(init, 1, buf)
}

/// Writes the init line of a launcher that is to run up to `concurrency` activations at once
/// (1: the sequential init, without the field).
pub fn encode_init_concurrent(
    init: &InitSpec,
    concurrency: u64,
    buf: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    buf.clear();
    let msg = InitMessage {
        op: "init",
        action: &init.action,
        entry_point: &init.entry_point,
        binary: init.binary,
        concurrency: (concurrency > 1).then_some(concurrency),
    };
    serde_json::to_writer(&mut *buf, &msg)?;
    buf.push(b'\n');
    Ok(())
}

/// Writes the run line (with its newline) into `buf`, replacing what was there.
pub fn encode_run(run: &RunSpec, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    buf.clear();
    let msg = RunMessage { op: "run", id: None, value: &run.params, env: EnvObject(&run.env) };
    serde_json::to_writer(&mut *buf, &msg)?;
    buf.push(b'\n');
    Ok(())
}

/// Writes a concurrent-mode run line (with its newline), tagged with `id`, into `buf`.
pub fn encode_run_with_id(
    run: &RunSpec,
    id: u64,
    buf: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    buf.clear();
    let msg = RunMessage { op: "run", id: Some(id), value: &run.params, env: EnvObject(&run.env) };
    serde_json::to_writer(&mut *buf, &msg)?;
    buf.push(b'\n');
    Ok(())
}

/// The leading decimal id and what follows its one space, or None when `bytes` does not
/// start that way. No allocation.
fn split_id(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || bytes.get(digits) != Some(&b' ') {
        return None;
    }
    let mut id = 0u64;
    for &b in &bytes[..digits] {
        id = id.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((id, &bytes[digits + 1..]))
}

/// Splits a concurrent-mode reply line `<id> <reply>` into the id and the reply, which
/// [`decode_result`] then decodes. None when the line has no id: the launcher is out of step.
pub fn split_concurrent_reply(line: &[u8]) -> Option<(u64, &[u8])> {
    split_id(line)
}

/// A log line of concurrent mode: `Some((id, text))` when a run wrote it (tagged), None for
/// an untagged line (written outside any run).
pub fn split_tagged_line(line: &[u8]) -> Option<(u64, &[u8])> {
    split_id(line.strip_prefix(&[LOG_TAG])?)
}

/// Why a reply is not a usable result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply is not JSON: {0}")]
    NotJson(String),
    #[error("reply is not an object: {0}")]
    NotAnObject(String),
    /// The launcher reported a developer error; the message is OpenWhisk's text.
    #[error("{0}")]
    Developer(String),
}

/// The message after a [`DEVELOPER_ERROR_MARK`], when `line` starts with one.
fn developer_message(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(&[DEVELOPER_ERROR_MARK])?;
    Some(match serde_json::from_slice::<Value>(rest) {
        Ok(Value::String(s)) => s,
        _ => format!("The action broke its contract: {}", snippet(rest)),
    })
}

/// Decodes a run reply (without its newline) into the result object.
pub fn decode_result(line: &[u8]) -> Result<Value, ReplyError> {
    if let Some(message) = developer_message(line) {
        return Err(ReplyError::Developer(message));
    }
    // An object is checked before the full parse so that a huge non-object is not parsed.
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ReplyError::NotAnObject(snippet(line)));
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ReplyError::NotAnObject(snippet(line))),
        Err(e) => Err(ReplyError::NotJson(e.to_string())),
    }
}

/// Why an init did not load the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitRefusal {
    /// The launcher's error (an exception while loading the code, say), to be prefixed with
    /// hearth's "failed to initialize".
    Failed(String),
    /// A developer error in OpenWhisk's words, to be reported as it is.
    Developer(String),
}

/// Decodes an init reply: `Ok(())` or why the launcher refused.
pub fn decode_init(line: &[u8]) -> Result<(), InitRefusal> {
    if let Some(message) = developer_message(line) {
        return Err(InitRefusal::Developer(message));
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) if m.get("ok") == Some(&Value::Bool(true)) => Ok(()),
        Ok(Value::Object(m)) => Err(InitRefusal::Failed(match m.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => format!("unexpected init reply {}", snippet(line)),
        })),
        _ => Err(InitRefusal::Failed(format!("unexpected init reply {}", snippet(line)))),
    }
}

fn snippet(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.chars().count() > SNIPPET_CHARS {
        let cut: String = text.chars().take(SNIPPET_CHARS).collect();
        format!("{cut}...")
    } else if text.is_empty() {
        "nothing".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn run_line_is_one_json_line() {
        let mut params = Map::new();
        params.insert("name".into(), json!("Ada\nLovelace"));
        let run = RunSpec {
            params,
            env: vec![("ACTIVATION_ID".into(), "abc".into())],
            timeout: Duration::from_secs(1),
            log_limit: 10,
            result_limit: 10,
        };
        let mut buf = b"stale".to_vec();
        encode_run(&run, &mut buf).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v,
            json!({"op":"run","value":{"name":"Ada\nLovelace"},"env":{"ACTIVATION_ID":"abc"}})
        );
    }

    #[test]
    fn sequential_lines_have_no_concurrency_fields() {
        let init = InitSpec { action: "ns/a".into(), entry_point: "main".into(), binary: false };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_init(&init, &mut a).unwrap();
        encode_init_concurrent(&init, 1, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            b"{\"op\":\"init\",\"action\":\"ns/a\",\"entry_point\":\"main\",\"binary\":false}\n"
        );
        encode_init_concurrent(&init, 200, &mut b).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["concurrency"], json!(200));
    }

    #[test]
    fn concurrent_runs_carry_an_id_and_replies_lead_with_it() {
        let run = RunSpec {
            params: Map::new(),
            env: vec![("ACTIVATION_ID".into(), "abc".into())],
            timeout: Duration::from_secs(1),
            log_limit: 10,
            result_limit: 10,
        };
        let mut buf = Vec::new();
        encode_run_with_id(&run, 42, &mut buf).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v, json!({"op":"run","id":42,"value":{},"env":{"ACTIVATION_ID":"abc"}}));

        let (id, rest) = split_concurrent_reply(br#"42 {"a":1}"#).unwrap();
        assert_eq!((id, decode_result(rest).unwrap()), (42, json!({"a":1})));
        let (id, rest) = split_concurrent_reply(br#"7 !"bad""#).unwrap();
        assert_eq!(id, 7);
        assert!(matches!(decode_result(rest), Err(ReplyError::Developer(_))));
        assert_eq!(split_concurrent_reply(br#"{"a":1}"#), None);
        assert_eq!(split_concurrent_reply(b"42{}"), None);
        assert_eq!(split_concurrent_reply(b"99999999999999999999 {}"), None, "overflow");
    }

    #[test]
    fn tagged_log_lines() {
        assert_eq!(split_tagged_line(b"\x0112 hello world"), Some((12, &b"hello world"[..])));
        assert_eq!(split_tagged_line(b"\x013 "), Some((3, &b""[..])));
        assert_eq!(split_tagged_line(b"12 hello"), None, "untagged");
        assert_eq!(split_tagged_line(b"\x01x hello"), None);
        let sentinel = format!("\x015 {SENTINEL}");
        assert_eq!(split_tagged_line(sentinel.as_bytes()), Some((5, SENTINEL.as_bytes())));
    }

    #[test]
    fn init_line() {
        let init = InitSpec { action: "ns/a".into(), entry_point: "main".into(), binary: true };
        let mut buf = Vec::new();
        encode_init(&init, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v, json!({"op":"init","action":"ns/a","entry_point":"main","binary":true}));
    }

    #[test]
    fn results_are_objects() {
        assert_eq!(decode_result(br#"{"a":1}"#).unwrap(), json!({"a":1}));
        assert_eq!(decode_result(b"42"), Err(ReplyError::NotAnObject("42".into())));
        assert_eq!(decode_result(b""), Err(ReplyError::NotAnObject("nothing".into())));
        assert!(matches!(decode_result(b"{nope"), Err(ReplyError::NotJson(_))));
        let long = format!("\"{}\"", "x".repeat(500));
        match decode_result(long.as_bytes()) {
            Err(ReplyError::NotAnObject(s)) => assert!(s.len() < 200 && s.ends_with("...")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn init_replies() {
        assert_eq!(decode_init(br#"{"ok":true}"#), Ok(()));
        assert_eq!(decode_init(br#"{"error":"boom"}"#), Err(InitRefusal::Failed("boom".into())));
        assert!(decode_init(b"[]").is_err());
        assert_eq!(
            decode_init(br#"!"The action failed to locate a binary.""#),
            Err(InitRefusal::Developer("The action failed to locate a binary.".into()))
        );
    }

    #[test]
    fn developer_errors_are_marked() {
        assert_eq!(
            decode_result(br#"!"The action did not return a dictionary or array.""#),
            Err(ReplyError::Developer("The action did not return a dictionary or array.".into()))
        );
        match decode_result(b"!oops") {
            Err(ReplyError::Developer(m)) => assert!(m.contains("oops"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
