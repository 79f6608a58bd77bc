//! The record an activation ends with, built in one place for every way it can end.
//!
//! [`ActivationMessage::record`] gives OpenWhisk's shape (`path`, `waitTime`, `kind`,
//! `timeout`, `limits`, and `initTime` after an init) to whatever outcome the invoker
//! reached. [`ActivationMessage::lost_record`] is the *lost record*: the "whisk internal
//! error" an activation ends with when it did not finish normally (no container or code, the
//! invoker shut down or died, a connection or channel closed, the revision never arrived),
//! so that every accepted activation ends with exactly one record even when nothing ran. Who
//! notices the loss (invoker, bus, controller) builds it here, so every lost record carries the
//! same annotations.

use serde_json::json;

use super::ActivationMessage;
use crate::model::{now_millis, Activation, ActivationResponse, ActivationStatus, KeyValue};

/// When the work for one activation happened, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the container began working on the activation: the init on a cold or prewarmed
    /// start, else the run. As in OpenWhisk, `duration` therefore includes `initTime`, and
    /// `waitTime + duration` is the time from acceptance to the end.
    pub start_ms: u64,
    pub end_ms: u64,
    /// How long the init took, only when this activation had to initialize the container.
    pub init_ms: Option<u64>,
}

impl Timing {
    /// For activations that never reached a container.
    pub fn instant(now_ms: u64) -> Self {
        Self { start_ms: now_ms, end_ms: now_ms, init_ms: None }
    }

    /// From the controller's acceptance of `msg` until now: all that is known of an
    /// activation whose loss was noticed outside the invoker (a bus, the controller).
    pub fn since_accepted(msg: &ActivationMessage) -> Self {
        let now = now_millis();
        Self { start_ms: msg.received_at_ms.min(now), end_ms: now, init_ms: None }
    }
}

impl ActivationMessage {
    /// This activation's record, ended with `response`.
    pub fn record(
        &self,
        response: ActivationResponse,
        logs: Vec<String>,
        timing: Timing,
        timed_out: bool,
    ) -> Activation {
        let mut annotations = Vec::with_capacity(6);
        annotations.push(KeyValue::new("path", self.action.key()));
        annotations
            .push(KeyValue::new("waitTime", timing.start_ms.saturating_sub(self.received_at_ms)));
        annotations.push(KeyValue::new("kind", self.exec.kind.as_str()));
        annotations.push(KeyValue::new("timeout", timed_out));
        annotations.push(KeyValue::new(
            "limits",
            json!({
                "timeout": self.limits.timeout,
                "memory": self.limits.memory,
                "logs": self.limits.logs,
                "concurrency": self.limits.concurrency,
            }),
        ));
        if let Some(init) = timing.init_ms {
            annotations.push(KeyValue::new("initTime", init));
        }
        Activation {
            namespace: self.subject.to_string(),
            name: self.action.name.to_string(),
            subject: self.subject.to_string(),
            activation_id: self.activation_id,
            start: timing.start_ms,
            end: timing.end_ms,
            duration: timing.end_ms.saturating_sub(timing.start_ms),
            status_code: response.status_code,
            response,
            logs,
            annotations,
            version: self.version.clone(),
            publish: self.publish,
        }
    }

    /// The lost record of this activation (see the module's doc): "whisk internal error" with
    /// `message`, no logs.
    pub fn lost_record(&self, message: impl Into<String>, timing: Timing) -> Activation {
        let response = ActivationResponse::error(ActivationStatus::InternalError, message);
        self.record(response, Vec::new(), timing, false)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::EntityName;

    fn message(name: &str) -> ActivationMessage {
        ActivationMessage {
            subject: EntityName::parse("caller").unwrap(),
            received_at_ms: 1_000,
            ..ActivationMessage::for_test("guest", name, 3)
        }
    }

    #[test]
    fn a_record_has_openwhisk_fields() {
        let msg = message("hello");
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
        let msg = message("x");
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
