//! How results reach the terminal: human text by default, the server's JSON with `--json`.
//!
//! Owns the `ok:` lines, tables, pretty JSON, time formatting and the colour decision
//! (colour only on a terminal, never when `NO_COLOR` is set). Formatting functions return
//! strings so they are tested without a terminal. It must never talk to the server.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// How one command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Print the server's JSON as it came, for scripts.
    pub json: bool,
    /// Colour the `ok:`/`error:` prefixes.
    pub color: bool,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Colour is for people: only when the stream is a terminal and NO_COLOR is unset.
pub fn color_for(stream_is_terminal: bool, no_color: Option<&str>) -> bool {
    stream_is_terminal && !matches!(no_color, Some(v) if !v.is_empty())
}

/// Whether stdout should be coloured in this process.
pub fn stdout_color() -> bool {
    color_for(std::io::stdout().is_terminal(), std::env::var("NO_COLOR").ok().as_deref())
}

/// Whether stderr should be coloured in this process.
pub fn stderr_color() -> bool {
    color_for(std::io::stderr().is_terminal(), std::env::var("NO_COLOR").ok().as_deref())
}

/// `ok: <message>`.
pub fn ok_line(color: bool, message: &str) -> String {
    if color {
        format!("{GREEN}ok:{RESET} {message}")
    } else {
        format!("ok: {message}")
    }
}

/// `error: <message>`, one line.
pub fn error_line(color: bool, message: &str) -> String {
    let one_line = message.replace('\n', " ");
    if color {
        format!("{RED}error:{RESET} {one_line}")
    } else {
        format!("error: {one_line}")
    }
}

/// JSON indented for reading.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Columns padded to their widest cell; the last column is not padded so lines carry no
/// trailing spaces (friendly to `awk` and `cut`).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC, like wsk's activation list.
pub fn datetime(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string().trim_end_matches('Z').replacen('T', " ", 1)
}

/// A duration in milliseconds, compact: `34ms`, `1.25s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        let secs = f64::from(u32::try_from(ms).unwrap_or(u32::MAX)) / 1000.0;
        format!("{secs:.2}s")
    }
}

impl Output {
    /// Prints an `ok:` line (human mode only; `--json` prints data, never chatter).
    pub fn ok(&self, out: &mut dyn Write, message: &str) -> std::io::Result<()> {
        if !self.json {
            writeln!(out, "{}", ok_line(self.color, message))?;
        }
        Ok(())
    }

    /// Prints a server body as it came (`--json`), with exactly one trailing newline.
    pub fn raw(&self, out: &mut dyn Write, body: &str) -> std::io::Result<()> {
        writeln!(out, "{}", body.trim_end())
    }

    /// Prints a value indented.
    pub fn pretty(&self, out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
        writeln!(out, "{}", pretty(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(color_for(true, None));
        assert!(color_for(true, Some("")));
        assert!(!color_for(true, Some("1")));
        assert!(!color_for(false, None));
        assert_eq!(ok_line(false, "created action hello"), "ok: created action hello");
        assert!(ok_line(true, "x").contains("\x1b[32m"));
        assert_eq!(error_line(false, "a\nb"), "error: a b");
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let t = table(
            &["NAME", "KIND", "VERSION"],
            &[
                vec!["/guest/hello".into(), "python:3".into(), "0.0.1".into()],
                vec!["/guest/a".into(), "nodejs:20".into(), "0.0.12".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          KIND       VERSION\n\
             /guest/hello  python:3   0.0.1\n\
             /guest/a      nodejs:20  0.0.12\n"
        );
        assert!(t.lines().all(|l| !l.ends_with(' ')));
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }

    #[test]
    fn times() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_552_557_947_123), "2019-03-14 10:05:47");
        assert_eq!(duration_ms(34), "34ms");
        assert_eq!(duration_ms(1250), "1.25s");
    }

    #[test]
    fn json_mode_prints_no_chatter() {
        let mut buf = Vec::new();
        let o = Output { json: true, color: false };
        o.ok(&mut buf, "created").unwrap();
        o.raw(&mut buf, "{\"a\":1}\n\n").unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "{\"a\":1}\n");
    }
}
