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
            cause: self.cause,
        }
    }

    /// The lost record of this activation (see the module's doc): "whisk internal error" with
    /// `message`, no logs.
    pub fn lost_record(&self, message: impl Into<String>, timing: Timing) -> Activation {
        let response = ActivationResponse::error(ActivationStatus::InternalError, message);
        self.record(response, Vec::new(), timing, false)
    }
}
