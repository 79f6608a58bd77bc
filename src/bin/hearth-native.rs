//! `hearth-native`: the launcher of native actions (OpenWhisk's dockerskeleton contract) over
//! the action-loop protocol, installed as `/hearth/native` in every container.
//!
//! The action is an executable at `/action/exec` (a script or a binary, from a zip or sent as
//! text). Every run spawns it afresh, as OpenWhisk's action proxy (actionproxy.py) does: the
//! parameters as a JSON string in argv[1] (left out past MAX_ARG_STRLEN) and on stdin; its
//! stderr goes straight to the activation's logs; of its stdout, every line but the last is
//! logged and the last line is the result, which must be a JSON object.
//!
//! Protocol as the other launchers': one JSON line in on stdin, one line out on fd 3, the
//! sentinels on stdout and stderr before each reply. A reply starting with "!" is a developer
//! error in the action proxy's words (hearth::launcher::protocol), e.g.
//! `!"The action did not return a dictionary or array."`. The exit status does not decide the
//! outcome (it does not in OpenWhisk either); a non-zero one is logged.
//!
//! A compiled program rather than a Python script because this process starts on every cold
//! start of a native action: an interpreter's start was a third of it (BENCHMARKS.md, "cold
//! start native"), as OpenWhisk's own compiled action loop (openwhisk-runtime-go) avoids.
//! Hence std, serde_json and libc only: nothing here may cost start-up time.

// A crate root under src/bin looks for its modules in src/bin itself: point at the folder.
#[path = "hearth-native/env.rs"]
mod env;
#[path = "hearth-native/fds.rs"]
mod fds;
#[path = "hearth-native/pyjson.rs"]
mod pyjson;
#[path = "hearth-native/relay.rs"]
mod relay;
#[path = "hearth-native/run.rs"]
mod run;

use std::io::{self, BufRead, BufReader};
use std::process::ExitCode;

use serde_json::{json, Value};

use fds::Protocol;

/// Where the action's code is mounted (hearth::launcher::kinds::CODE_MOUNT).
const CODE_DIR: &str = "/action";
/// The executable a native action runs (hearth::launcher::kinds::NATIVE_EXEC, under CODE_DIR).
const EXEC: &str = "/action/exec";

/// The action proxy's answer when there is nothing to run.
const NO_BINARY: &str = "The action failed to generate or locate a binary. See logs for details.";

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The host sees the launcher exit (its pipes close) and reports the container as
            // broken; this line lands in the container's logs.
            eprintln!("hearth-native: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The protocol loop: one message per line on the original stdin until it closes.
fn serve() -> io::Result<()> {
    // An ignored signal stays ignored across exec, and whatever started this launcher may have
    // ignored SIGXFSZ (a Python parent does): restore the default, which the exec inherits, so
    // that an exec over its file size limit dies as it would anywhere else. SIGPIPE, which
    // Rust's runtime ignores here, std resets to the default in every child it spawns.
    // SAFETY: SIG_DFL is a valid disposition for SIGXFSZ and no handler is involved.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_DFL) };
    let (input, mut proto) = Protocol::take()?;
    // The action proxy runs the exec from the action's directory.
    std::env::set_current_dir(CODE_DIR)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot chdir to {CODE_DIR}: {e}")))?;
    let mut input = BufReader::new(input);
    let mut ready = false;
    let mut env = env::ActivationEnv::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let msg = match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(msg)) => msg,
            Ok(other) => {
                let reply = json!({ "error": format!("bad message: not an object: {other}") });
                proto.end_of_activation(reply.to_string().as_bytes())?;
                continue;
            }
            Err(e) => {
                let reply = json!({ "error": format!("bad message: {e}") });
                proto.end_of_activation(reply.to_string().as_bytes())?;
                continue;
            }
        };
        let reply = match msg.get("op").and_then(Value::as_str) {
            Some("init") => {
                let reply = init()?;
                ready = reply.starts_with(b"{");
                reply
            }
            Some("run") => {
                env.update(msg.get("env"))?;
                if ready {
                    run::run(msg.get("value"), &env)?
                } else {
                    developer_error(NO_BINARY)
                }
            }
            _ => {
                let op = msg.get("op").map_or_else(|| "None".to_owned(), python_repr);
                json!({ "error": format!("unknown op {op}") }).to_string().into_bytes()
            }
        };
        proto.end_of_activation(&reply)?;
    }
}

/// The init: there must be an executable file at [`EXEC`]; why not goes to the logs.
fn init() -> io::Result<Vec<u8>> {
    let is_file = std::fs::metadata(EXEC).is_ok_and(|m| m.is_file());
    if is_file && executable(EXEC) {
        return Ok(br#"{"ok":true}"#.to_vec());
    }
    if std::fs::symlink_metadata(EXEC).is_ok() {
        log("/action/exec is not an executable file")?;
    } else {
        log("the action has no file named exec at the top of its zip")?;
    }
    Ok(developer_error(NO_BINARY))
}

/// Whether this process (the action's uid) may execute `path`, as the kernel will judge it.
fn executable(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// A developer error reply: the mark, then the message as a JSON string.
fn developer_error(message: &str) -> Vec<u8> {
    let mut reply = b"!".to_vec();
    reply.extend_from_slice(Value::from(message).to_string().as_bytes());
    reply
}

/// One line on stderr, which is the activation's log.
fn log(text: &str) -> io::Result<()> {
    fds::write_stderr(format!("{text}\n").as_bytes())
}

/// The op as Python's `%r` showed it in the script launcher's message: strings quoted in
/// single quotes, null as None, anything else as JSON.
fn python_repr(op: &Value) -> String {
    match op {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn developer_errors_are_marked_json_strings() {
        assert_eq!(
            developer_error(NO_BINARY),
            br#"!"The action failed to generate or locate a binary. See logs for details.""#
        );
        assert_eq!(developer_error("a \"q\""), br#"!"a \"q\"""#);
    }

    #[test]
    fn unknown_ops_read_as_python_printed_them() {
        assert_eq!(python_repr(&json!("stop")), "'stop'");
        assert_eq!(python_repr(&Value::Null), "None");
        assert_eq!(python_repr(&json!(3)), "3");
    }

    #[test]
    fn the_sentinel_is_the_hosts() {
        assert_eq!(fds::SENTINEL_LINE, format!("{}\n", hearth::launcher::protocol::SENTINEL));
    }
}
