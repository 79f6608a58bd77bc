//! The client's errors and the exit codes they map to.
//!
//! Owns the one-line wording of every failure the user sees and the documented exit codes.
//! It must never print: [`super::run`] is the only place that writes an error to stderr.
//!
//! Exit codes (stable, for scripts):
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | success |
//! | 1    | error: a local problem (file, config) or the server refused the request (4xx) |
//! | 2    | the action failed (application or developer error), as `wsk` exits 2 |
//! | 3    | the server could not be reached (refused, unresolvable, timed out) |
//! | 4    | the server failed (5xx other than an action failure, or an unreadable answer) |
//! | 5    | a blocking invoke did not finish within the server's wait; the id is printed |
//! | 64   | usage: the command line is wrong (sysexits' EX_USAGE) |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a local problem or a request the server refused (4xx).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: the action ran and failed.
pub const EXIT_ACTION_FAILED: u8 = 2;
/// Exit code: no answer from the server.
pub const EXIT_NETWORK: u8 = 3;
/// Exit code: the server answered with an internal failure.
pub const EXIT_SERVER: u8 = 4;
/// Exit code: a blocking invoke is still running; its result is not known yet.
pub const EXIT_PENDING: u8 = 5;
/// Exit code: the command line does not parse.
pub const EXIT_USAGE: u8 = 64;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that parse but make no sense (a bad name, a missing --kind).
    #[error("{0}")]
    Usage(String),

    #[error("cannot read {what} {path}: {source}")]
    ReadFile { what: &'static str, path: PathBuf, source: std::io::Error },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("configuration: {0}")]
    Config(#[from] super::config::ConfigError),

    /// The server could not be reached at all.
    #[error("cannot connect to the hearth server at {addr} ({source}); start one with `hearthd standalone` or point --apihost / HEARTH_APIHOST at a running server")]
    Connect { addr: String, source: std::io::Error },

    #[error("the hearth server at {addr} did not answer within {}s", after.as_secs_f64())]
    Timeout { addr: String, after: Duration },

    #[error("the connection to {addr} failed: {message}")]
    Protocol { addr: String, message: String },

    /// A 4xx or 5xx answer, already worded for the user (see [`super::http::Response::error`]).
    #[error("{message} ({status})")]
    Server { status: u16, message: String },

    /// The server answered 2xx with something that is not the JSON OpenWhisk sends.
    #[error("the server sent an unexpected answer to {what}: {message}")]
    BadResponse { what: String, message: String },

    /// An invoked action failed; its result was already printed.
    #[error("action '{name}' failed: {status} (activation {activation_id})")]
    ActionFailed { name: String, status: String, activation_id: String },

    /// A blocking invoke outlived the server's wait; the activation id was already printed.
    #[error("action '{name}' is still running (activation {activation_id}); fetch the result later with `hearth activation result {activation_id}`")]
    Pending { name: String, activation_id: String },

    #[error("cannot start the client's I/O runtime: {0}")]
    Runtime(std::io::Error),

    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::ReadFile { .. }
            | CliError::BadFile { .. }
            | CliError::Config(_)
            | CliError::Runtime(_)
            | CliError::Output(_) => EXIT_ERROR,
            CliError::Connect { .. } | CliError::Timeout { .. } => EXIT_NETWORK,
            CliError::Protocol { .. } | CliError::BadResponse { .. } => EXIT_SERVER,
            CliError::Server { status, .. } if *status >= 500 => EXIT_SERVER,
            CliError::Server { .. } => EXIT_ERROR,
            CliError::ActionFailed { status, .. } if status == "whisk internal error" => {
                EXIT_SERVER
            }
            CliError::ActionFailed { .. } => EXIT_ACTION_FAILED,
            CliError::Pending { .. } => EXIT_PENDING,
        }
    }

    /// The process exit code.
    pub fn to_exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_class() {
        let server = |status| CliError::Server { status, message: "m".into() };
        assert_eq!(server(404).exit_code(), EXIT_ERROR);
        assert_eq!(server(409).exit_code(), EXIT_ERROR);
        assert_eq!(server(500).exit_code(), EXIT_SERVER);
        assert_eq!(server(503).exit_code(), EXIT_SERVER);
        let failed = |status: &str| CliError::ActionFailed {
            name: "a".into(),
            status: status.into(),
            activation_id: "i".into(),
        };
        assert_eq!(failed("application error").exit_code(), EXIT_ACTION_FAILED);
        assert_eq!(failed("action developer error").exit_code(), EXIT_ACTION_FAILED);
        assert_eq!(failed("whisk internal error").exit_code(), EXIT_SERVER);
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            CliError::Connect { addr: "a".into(), source: refused }.exit_code(),
            EXIT_NETWORK
        );
        assert_eq!(
            CliError::Pending { name: "a".into(), activation_id: "i".into() }.exit_code(),
            EXIT_PENDING
        );
    }

    #[test]
    fn connection_refused_says_where_and_how() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = CliError::Connect { addr: "127.0.0.1:3233".into(), source: refused };
        let msg = e.to_string();
        assert!(msg.contains("127.0.0.1:3233"), "{msg}");
        assert!(msg.contains("hearthd standalone"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
