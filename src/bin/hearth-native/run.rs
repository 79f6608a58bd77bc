//! One run: spawn `/action/exec` with the parameters, relay it, judge its last line.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::env::ActivationEnv;
use crate::{developer_error, fds, log, pyjson, relay, EXEC};

/// linux/binfmts.h: the longest single argument execve takes. Longer parameters come on stdin
/// only, as in the action proxy.
const MAX_ARG_STRLEN: usize = 131071;

/// The action proxy's answer for a run without a usable result.
const NOT_A_DICT: &str = "The action did not return a dictionary or array.";

/// Runs the exec once with `value` (the run message's parameters) and returns the reply.
/// Errors are the launcher's own (its log streams broke); the action's failures are replies.
pub fn run(value: Option<&Value>, env: &ActivationEnv) -> io::Result<Vec<u8>> {
    // As Python's `msg.get("value") or {}`: a missing or empty value is an empty object.
    let empty = Value::Object(serde_json::Map::new());
    let value = value.filter(|v| truthy(v)).unwrap_or(&empty);
    let text = pyjson::params(value);
    let mut command = Command::new(EXEC);
    if text.len() <= MAX_ARG_STRLEN {
        // ensure_ascii: the text is ASCII, so the conversion never fails.
        command.arg(String::from_utf8_lossy(&text).as_ref());
    }
    command.envs(env.vars()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            // The action proxy logs the reason on stdout and answers its usual error.
            fds::write_stdout(format!("{}\n", spawn_error(&e)).as_bytes())?;
            return Ok(developer_error(NOT_A_DICT));
        }
    };
    let (last, status) = relay::relay(&mut child, &text)?;
    if let Some(code) = status.code().filter(|c| *c != 0) {
        log(&format!("exec exited with status {code}"))?;
    } else if let Some(signal) = status.signal() {
        log(&format!("exec was killed by signal {signal}"))?;
    }
    if let Ok(value @ (Value::Object(_) | Value::Array(_))) = serde_json::from_slice(&last) {
        // Arrays are let through for the host to refuse: hearth's results are objects.
        return Ok(pyjson::result(&value));
    }
    // As the action proxy does: the unusable last line goes to the logs.
    let mut line = last;
    line.push(b'\n');
    fds::write_stdout(&line)?;
    Ok(developer_error(NOT_A_DICT))
}

/// Python's truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A spawn failure as Python's OSError printed it: `[Errno 8] Exec format error: '/action/exec'`.
fn spawn_error(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => {
            let reason = text.strip_suffix(&format!(" (os error {n})")).unwrap_or(&text);
            format!("[Errno {n}] {reason}: '{EXEC}'")
        }
        None => format!("{text}: '{EXEC}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn falsy_values_are_an_empty_object() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!([]), json!({})] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!({"a": 1}), json!(1), json!("x"), json!([0])] {
            assert!(truthy(&v), "{v}");
        }
    }

    #[test]
    fn spawn_errors_read_as_python_printed_them() {
        let e = io::Error::from_raw_os_error(libc::ENOEXEC);
        assert_eq!(spawn_error(&e), "[Errno 8] Exec format error: '/action/exec'");
    }
}
