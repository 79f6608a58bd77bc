//! JSON text as Python's `json.dumps` writes it, which is what OpenWhisk's action proxy (a
//! Python program) hands a native action and what actions written against it expect.
//!
//! Two shapes: the parameters in argv[1] and on stdin use Python's defaults (`", "` and
//! `": "` separators, everything outside printable ASCII escaped as `\uXXXX`), so that an exec
//! that matches on `{"n": 7}` keeps working; the result is compact UTF-8 (`ensure_ascii=False,
//! separators=(",", ":")`). Floats are written as Python's `repr` writes them (`1e+16`,
//! `1e-05`, `1.0`) in both.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::Value;

/// The parameters as the action proxy passes them: `json.dumps(value)`.
pub fn params(value: &Value) -> Vec<u8> {
    encode(value, PyFormatter { ascii: true, spaced: true })
}

/// A result as the action proxy returns it: compact, non-ASCII kept.
pub fn result(value: &Value) -> Vec<u8> {
    encode(value, PyFormatter { ascii: false, spaced: false })
}

fn encode(value: &Value, formatter: PyFormatter) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising a Value into a Vec cannot fail: the map keys are strings and writes to a
    // Vec do not fail. Should it ever, the text so far is all there is.
    let _ = value.serialize(&mut ser);
    out
}

/// serde_json's compact formatter with Python's separators, escapes and float repr.
#[derive(Debug, Clone, Copy)]
struct PyFormatter {
    /// Escape everything outside printable ASCII (`ensure_ascii=True`).
    ascii: bool,
    /// `", "` and `": "` rather than `","` and `":"`.
    spaced: bool,
}

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.separator(w, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.separator(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.spaced { b": " } else { b":" })
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float_repr(value).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ascii {
            return w.write_all(fragment.as_bytes());
        }
        // Python's ESCAPE_ASCII: every character outside ' '..='~' (serde_json has already
        // escaped the quote, the backslash and the C0 controls), astral ones as surrogates.
        let mut units = [0u16; 2];
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

impl PyFormatter {
    fn separator<W: ?Sized + io::Write>(&self, w: &mut W, first: bool) -> io::Result<()> {
        match (first, self.spaced) {
            (true, _) => Ok(()),
            (false, true) => w.write_all(b", "),
            (false, false) => w.write_all(b","),
        }
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional when the decimal
/// exponent is in -4..16 (with `.0` when integral), else `d.ddde+XX` with a signed exponent
/// of at least two digits. JSON numbers are finite, so NaN and the infinities never come here.
fn float_repr(value: f64) -> String {
    // Rust's `{:e}` gives the same shortest digits: "1.5e-7", "-1e16", "0e0".
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat(-point as usize))
        } else if point < n {
            format!("{sign}{}.{}", &digits[..point as usize], &digits[point as usize..])
        } else {
            format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize))
        }
    } else {
        // `{:e}` always writes a digit first; an empty `digits` would only split as "", "".
        let (first, rest) = digits.split_at(digits.len().min(1));
        let rest = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{rest}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn parameters_read_as_json_dumps_writes_them() {
        assert_eq!(text(params(&json!({"n": 7}))), r#"{"n": 7}"#);
        assert_eq!(text(params(&json!({}))), "{}");
        assert_eq!(
            text(params(&json!({"a": [1, "x", null, true], "b": {"c": []}}))),
            r#"{"a": [1, "x", null, true], "b": {"c": []}}"#
        );
        assert_eq!(
            text(params(&json!({"s": "Ada \u{e9}\u{7f}\n\"\\\u{1}\u{1f600}"}))),
            r#"{"s": "Ada \u00e9\u007f\n\"\\\u0001\ud83d\ude00"}"#
        );
    }

    #[test]
    fn results_are_compact_utf8() {
        assert_eq!(
            text(result(&json!({"a": [1, 2.5], "s": "\u{e9}\n"}))),
            "{\"a\":[1,2.5],\"s\":\"\u{e9}\\n\"}"
        );
    }

    #[test]
    fn floats_read_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (-1.25e100, "-1.25e+100"),
            (1e-300, "1e-300"),
        ];
        for (value, want) in cases {
            assert_eq!(float_repr(value), want, "{value:e}");
        }
    }
}
