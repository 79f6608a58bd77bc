//! Building the activation record (OpenWhisk's shape) for every way a run can end.
//!
//! Owns the mapping from outcomes to statuses: success and application error come from what
//! `main` returned; a broken contract (timeout, out of memory, crash, bad or oversized result,
//! failed init) is an action developer error whose result is `{"error": <RunError message>}`;
//! anything hearth failed at (no container, no code, driver fault, shutdown) is a whisk
//! internal error. It never decides what happens to the container; see `activation.rs`. The
//! record itself is built by [`ActivationMessage::record`](crate::dispatch::ActivationMessage).

use serde_json::Value;

use crate::container::{RunError, RunOutput};
use crate::model::{ActivationResponse, ActivationStatus};

/// The response and logs for a run's outcome.
pub fn outcome(result: Result<RunOutput, RunError>) -> (ActivationResponse, Vec<String>, bool) {
    match result {
        Ok(out) => (response_for_result(out.result), out.logs, false),
        Err(e) => {
            let timed_out = matches!(e, RunError::Timeout { .. });
            let response = response_for_error(&e);
            (response, logs_of(e), timed_out)
        }
    }
}

/// `main`'s return value: an object with an `error` field is an application error. An array
/// is a result too, as in OpenWhisk (only an image's action proxy passes one through; hearth's
/// launchers refuse them before they get here).
pub fn response_for_result(result: Value) -> ActivationResponse {
    match &result {
        Value::Object(map) if map.contains_key("error") => {
            ActivationResponse::new(ActivationStatus::ApplicationError, result)
        }
        Value::Object(_) | Value::Array(_) => ActivationResponse::success(result),
        // The container driver already refuses non-objects (RunError::InvalidResult); this
        // keeps the contract even if a driver lets one through.
        other => ActivationResponse::error(
            ActivationStatus::DeveloperError,
            format!("The action did not return a dictionary and returned {other}."),
        ),
    }
}

pub fn response_for_error(e: &RunError) -> ActivationResponse {
    let status = match e {
        RunError::Internal(_) => ActivationStatus::InternalError,
        _ => ActivationStatus::DeveloperError,
    };
    ActivationResponse::error(status, e.to_string())
}

/// The logs a failed run collected before it failed.
pub fn logs_of(e: RunError) -> Vec<String> {
    match e {
        RunError::Timeout { logs, .. }
        | RunError::OutOfMemory { logs, .. }
        | RunError::InvalidResult { logs, .. }
        | RunError::ResultTooLarge { logs, .. }
        | RunError::Crashed { logs, .. }
        | RunError::InitFailed { logs, .. }
        | RunError::Developer { logs, .. } => logs,
        RunError::Internal(_) => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::dispatch::{ActivationMessage, Timing};
    use crate::model::EntityName;

    pub(crate) fn message(name: &str, revision: u64) -> ActivationMessage {
        ActivationMessage {
            subject: EntityName::parse("caller").unwrap(),
            received_at_ms: 1_000,
            ..crate::testing::message("guest", name, revision)
        }
    }

    #[test]
    fn error_field_is_application_error() {
        let r = response_for_result(json!({"error": "nope"}));
        assert_eq!(r.status, ActivationStatus::ApplicationError);
        assert_eq!(r.result["error"], "nope");
        let r = response_for_result(json!([1]));
        assert_eq!(r.status, ActivationStatus::Success);
        let r = response_for_result(json!(1));
        assert_eq!(r.status, ActivationStatus::DeveloperError);
    }

    #[test]
    fn timeout_is_developer_error_with_its_logs() {
        let msg = message("slow", 1);
        let (resp, logs, timed_out) =
            outcome(Err(RunError::Timeout { limit_ms: 100, logs: vec!["started".into()] }));
        let a = msg.record(resp, logs, Timing::instant(2_000), timed_out);
        assert_eq!(a.response.status, ActivationStatus::DeveloperError);
        assert_eq!(a.status_code, 2);
        assert!(a.response.result["error"].as_str().unwrap().contains("100 milliseconds"));
        assert_eq!(a.logs, ["started"]);
        assert_eq!(a.annotation("timeout"), Some(&json!(true)));
        assert_eq!(a.annotation("initTime"), None);
    }

    #[test]
    fn launcher_words_are_kept() {
        let e = RunError::Developer {
            message: "The action did not return a dictionary or array.".into(),
            logs: vec!["not json".into()],
        };
        let (resp, logs, _) = outcome(Err(e));
        assert_eq!(resp.status, ActivationStatus::DeveloperError);
        assert_eq!(
            resp.result,
            json!({"error": "The action did not return a dictionary or array."})
        );
        assert_eq!(logs, ["not json"]);
    }

    #[test]
    fn driver_fault_is_internal() {
        let (resp, _, _) = outcome(Err(RunError::Internal("pipe closed".into())));
        assert_eq!(resp.status, ActivationStatus::InternalError);
    }

    #[test]
    fn the_cause_travels_from_message_to_record_and_json() {
        let cause = crate::model::ActivationId::generate();
        let msg = ActivationMessage { cause: Some(cause), ..message("ruled", 1) };
        let a =
            msg.record(ActivationResponse::success(json!({})), vec![], Timing::instant(5), false);
        assert_eq!(a.cause, Some(cause));
        let lost = msg.lost_record("gone", Timing::instant(5));
        assert_eq!(lost.cause, Some(cause));
        let wire = serde_json::to_value(&a).unwrap();
        assert_eq!(wire["cause"], json!(cause.to_string()));
        let plain = message("plain", 1).record(
            ActivationResponse::success(json!({})),
            vec![],
            Timing::instant(5),
            false,
        );
        assert!(serde_json::to_value(&plain).unwrap().get("cause").is_none());
    }

    #[test]
    fn a_record_has_openwhisk_fields() {
        let msg = message("hello", 3);
        let a = msg.record(
            ActivationResponse::success(json!({"greeting": "hi"})),
            vec!["line".into()],
            Timing { start_ms: 1_005, end_ms: 1_020, init_ms: Some(7) },
            false,
        );
        assert_eq!(a.namespace, "caller");
        assert_eq!(a.subject, "caller");
        assert_eq!(a.name, "hello");
        assert_eq!(a.version, "0.0.3");
        assert_eq!(a.duration, 15);
        assert_eq!(a.response.status, ActivationStatus::Success);
        assert_eq!(a.logs, ["line"]);
        assert_eq!(a.annotation("path"), Some(&json!("guest/hello")));
        assert_eq!(a.annotation("waitTime"), Some(&json!(5)));
        assert_eq!(a.annotation("initTime"), Some(&json!(7)));
        assert_eq!(a.annotation("kind"), Some(&json!("python:3")));
        assert_eq!(a.annotation("timeout"), Some(&json!(false)));
        assert_eq!(a.annotation("limits").unwrap()["memory"], 256);
    }

    #[test]
    fn a_lost_record_is_an_internal_error_with_the_same_annotations() {
        let msg = message("x", 1);
        let a = msg.lost_record("no code", Timing::instant(5_000));
        assert_eq!(a.response.status, ActivationStatus::InternalError);
        assert_eq!(a.status_code, 3);
        assert_eq!(a.response.result["error"], "no code");
        assert_eq!(a.duration, 0);
        assert_eq!(a.annotation("waitTime"), Some(&json!(4_000)));
        let keys: Vec<&str> = a.annotations.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["path", "waitTime", "kind", "timeout", "limits"]);
        let b = msg.lost_record("gone", Timing::since_accepted(&msg));
        assert_eq!((b.start, b.annotation("waitTime")), (1_000, Some(&json!(0))));
        assert!(b.end >= b.start);
    }
}
