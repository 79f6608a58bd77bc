//! The record an activation ends with, built in one place for every way it can end.
//!
//! [`ActivationMessage::record`] gives OpenWhisk's shape (`path`, `waitTime`, `kind`,
//! `timeout`, `limits`, and `initTime` after an init) to whatever outcome the invoker
//! reached. [`ActivationMessage::lost_record`] is the *lost record*: the "whisk internal
//! error" an activation ends with when it did not finish normally (no container or code, the
//! invoker shut down or died, a connection or channel closed, the revision never arrived),
//! so that every accepted activation ends with exactly one record even when nothing ran. Who
//! notices the loss (invoker, bus, controller) builds it here, so every lost record carries the
//! same annotations. Both end with the annotations the controller put in the message
//! (`binding`, the invoke's own): a record never depends on who waited for it to get them.

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
        let mut annotations = Vec::with_capacity(6 + self.annotations.len());
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
        annotations.extend(self.annotations.iter().cloned());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionLimits, ActivationId, EntityName, FullyQualifiedName};
    use serde_json::Map;

    /// Written out rather than taken from `crate::testing`, which depends on this module.
    fn bound() -> ActivationMessage {
        let guest = EntityName::parse("guest").unwrap();
        ActivationMessage {
            activation_id: ActivationId::generate(),
            action: FullyQualifiedName::new(guest.clone(), EntityName::parse("show").unwrap()),
            revision: 1,
            version: "0.0.1".into(),
            exec: serde_json::from_value(json!({"kind": "python:3"})).unwrap(),
            limits: ActionLimits::default(),
            subject: guest,
            params: Map::new(),
            received_at_ms: now_millis(),
            publish: false,
            cause: None,
            annotations: vec![
                KeyValue::new("binding", "guest/mine"),
                KeyValue::new("causedBy", "trigger"),
            ],
        }
    }

    /// Every way the activation ends carries the controller's annotations: the invoker's
    /// record and the lost record, whoever builds it.
    #[test]
    fn the_controllers_annotations_are_on_every_record() {
        let msg = bound();
        let ok = msg.record(
            ActivationResponse::success(json!({"a": 1})),
            vec!["line".into()],
            Timing { start_ms: msg.received_at_ms, end_ms: msg.received_at_ms + 2, init_ms: None },
            false,
        );
        let lost = msg.lost_record("the invoker went away", Timing::since_accepted(&msg));
        for rec in [&ok, &lost] {
            assert_eq!(rec.annotation("binding").unwrap(), "guest/mine");
            assert_eq!(rec.annotation("causedBy").unwrap(), "trigger");
            assert_eq!(rec.annotation("path").unwrap(), "guest/show");
            let keys: Vec<&str> = rec.annotations.iter().map(|a| a.key.as_str()).collect();
            assert_eq!(keys.iter().filter(|k| **k == "binding").count(), 1, "{keys:?}");
        }
        assert_eq!(lost.response.status, ActivationStatus::InternalError);
        // Without a binding, no binding annotation.
        let plain = ActivationMessage { annotations: Vec::new(), ..bound() }
            .lost_record("gone", Timing::instant(5));
        assert!(plain.annotation("binding").is_none(), "{:?}", plain.annotations);
    }

    /// The annotations travel with the message (every bus serialises it), and a message of
    /// a version without them still decodes.
    #[test]
    fn annotations_travel_and_old_messages_decode() {
        let msg = bound();
        let wire = serde_json::to_value(&msg).unwrap();
        let back: ActivationMessage = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(back, msg);
        let plain = ActivationMessage { annotations: Vec::new(), ..bound() };
        let wire = serde_json::to_value(&plain).unwrap();
        assert!(wire.get("annotations").is_none(), "absent when empty: {wire}");
        let back: ActivationMessage = serde_json::from_value(wire).unwrap();
        assert!(back.annotations.is_empty());
    }
}
