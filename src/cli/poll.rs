//! `hearth activation poll`: print each new activation's logs as it arrives.
//!
//! Owns the polling loop: list activations started since the poll began, fetch each record
//! not seen yet, print it oldest first, sleep, repeat until `--exit` seconds have passed (or
//! forever; Ctrl-C ends it). It must never print an activation twice and never hold more
//! than a bounded window of ids.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::activation::{fetch_list, fetch_one, status_of};
use super::error::CliError;
use super::http::Client;
use super::output::Output;
use super::params::{millis, EntityRef};
use crate::model::{ActivationId, TIMEOUT_MAX_MS};

/// Records are listed when they complete, up to the longest action timeout after they
/// started; a window that long behind the newest start seen never misses a late record.
const LATE_WINDOW_MS: u64 = TIMEOUT_MAX_MS + 10_000;
/// The most records asked for per poll (OpenWhisk's list maximum).
const PAGE: u32 = 200;

/// What the loop remembers between polls.
#[derive(Debug, Default)]
pub struct Seen {
    /// id -> start (ms), pruned to the late window.
    ids: HashMap<String, u64>,
    newest_start: u64,
}

impl Seen {
    /// Keeps the ids of `entries` not seen before, oldest first, and remembers them.
    pub fn take_new(&mut self, entries: &[Value]) -> Vec<(String, u64)> {
        let mut fresh: Vec<(String, u64)> = entries
            .iter()
            .filter_map(|e| {
                let id = e.get("activationId")?.as_str()?.to_owned();
                let start = e.get("start").and_then(Value::as_u64).unwrap_or(0);
                (!self.ids.contains_key(&id)).then_some((id, start))
            })
            .collect();
        fresh.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        fresh.dedup_by(|a, b| a.0 == b.0);
        for (id, start) in &fresh {
            self.ids.insert(id.clone(), *start);
            self.newest_start = self.newest_start.max(*start);
        }
        let floor = self.floor(0);
        self.ids.retain(|_, start| *start >= floor);
        fresh
    }

    /// The `since` of the next list: the poll's start, or the late window behind the newest
    /// record, whichever is later.
    pub fn floor(&self, poll_start: u64) -> u64 {
        poll_start.max(self.newest_start.saturating_sub(LATE_WINDOW_MS))
    }
}

/// The block printed for one activation.
pub fn format_record(record: &Value) -> String {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("-");
    let mut text =
        format!("Activation: '{}' ({}) {}\n", s("name"), s("activationId"), status_of(record));
    for line in record.get("logs").and_then(Value::as_array).into_iter().flatten() {
        text.push_str("    ");
        match line.as_str() {
            Some(l) => text.push_str(l),
            None => text.push_str(&line.to_string()),
        }
        text.push('\n');
    }
    text
}

/// Runs the loop.
pub fn run(
    client: &Client,
    output: Output,
    name: Option<&EntityRef>,
    exit_after: Option<u64>,
    interval_ms: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let began = Instant::now();
    let poll_start = millis(SystemTime::now());
    let deadline = exit_after.map(|s| began + Duration::from_secs(s));
    let ns = name.map(|n| n.namespace.as_str()).unwrap_or("_");
    let mut seen = Seen::default();
    if !output.json {
        match exit_after {
            Some(s) => eprintln!("Polling for activation logs for {s} s."),
            None => eprintln!("Polling for activation logs; press Ctrl-C to stop."),
        }
    }
    loop {
        let mut query =
            vec![("limit", PAGE.to_string()), ("since", seen.floor(poll_start).to_string())];
        if let Some(n) = name {
            query.push(("name", n.name.to_string()));
        }
        let (entries, _) = fetch_list(client, ns, &query)?;
        for (id, _) in seen.take_new(&entries) {
            let Ok(parsed) = ActivationId::parse(&id) else {
                tracing::warn!(%id, "the server listed an activation id that does not parse");
                continue;
            };
            // Lists may leave out logs; the record itself always has them.
            let (record, raw) = fetch_one(client, &parsed, None)?;
            if output.json {
                let compact = serde_json::to_string(&record).unwrap_or(raw);
                writeln!(out, "{compact}")?;
            } else {
                write!(out, "{}", format_record(&record))?;
            }
            out.flush()?;
        }
        let pause = Duration::from_millis(interval_ms);
        match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(());
                }
                std::thread::sleep(pause.min(d - now));
            }
            None => std::thread::sleep(pause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_records_once_oldest_first() {
        let mut seen = Seen::default();
        let a = json!({"activationId":"a","start":20});
        let b = json!({"activationId":"b","start":10});
        let fresh = seen.take_new(&[a.clone(), b.clone()]);
        assert_eq!(fresh, [("b".to_owned(), 10), ("a".to_owned(), 20)]);
        assert!(seen.take_new(&[a, b]).is_empty());
        let c = json!({"activationId":"c","start":30});
        assert_eq!(seen.take_new(&[c]).len(), 1);
    }

    #[test]
    fn window_is_bounded() {
        let mut seen = Seen::default();
        seen.take_new(&[json!({"activationId":"old","start":1})]);
        let late = 1 + LATE_WINDOW_MS + 1;
        seen.take_new(&[json!({"activationId":"new","start":late})]);
        assert_eq!(seen.ids.len(), 1);
        assert_eq!(seen.floor(0), 2);
        assert_eq!(seen.floor(late), late);
    }

    #[test]
    fn record_block() {
        let r = json!({"name":"hello","activationId":"ab","response":{"status":"success"},"logs":["l1","l2"]});
        assert_eq!(format_record(&r), "Activation: 'hello' (ab) success\n    l1\n    l2\n");
    }
}
