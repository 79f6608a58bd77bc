//! Invoke orchestration: validate the payload, look up the action (metadata only), merge
//! parameters, dispatch, then wait (blocking) or return at once (non-blocking). The steps are
//! methods of their own (admit, dispatch, await the record, answer, acknowledge) because a
//! sequence (controller/sequence.rs) composes them differently: it dispatches each component
//! and waits for it up to the component's own timeout, never answering with a 202. Every accepted
//! activation ends with exactly one record: the invoker's, or an internal-error record written
//! here when the completion channel closes without one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{Controller, ControllerError, RecordWriter, ResolvedAction};
use crate::dispatch::{ActivationMessage, Completion, DispatchError, Timing};
use crate::model::{
    now_millis, ActionExec, Activation, ActivationId, FullyQualifiedName, Identity, KeyValue,
    MAX_PAYLOAD_BYTES,
};

/// How an invoke ended for the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeOutcome {
    /// The activation finished within the wait: its record (already queued for writing).
    Completed(Box<Activation>),
    /// Non-blocking, or the blocking wait ran out: the activation goes on and its record will
    /// be readable under this id.
    Accepted(ActivationId),
}

/// How an activation is started, beyond its action and parameters. The API's invoke is
/// `InvokeOptions::blocking(b)`; triggers, sequences and web actions say more.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// Wait for the record (up to the blocking wait), or answer with the id at once.
    pub blocking: bool,
    /// The activation that caused this one: its record's `cause`.
    pub cause: Option<ActivationId>,
    /// Annotations added to the record (OpenWhisk's `causedBy`, for one).
    pub annotations: Vec<KeyValue>,
}

impl InvokeOptions {
    pub fn blocking(blocking: bool) -> Self {
        Self { blocking, ..Self::default() }
    }
}

/// How an activation that the controller waits for ends when no record comes the normal
/// way: the invoker's record (or the sequence runner's) is accepted as it is, a closed channel
/// becomes the lost record, and an id acknowledged without a record gets a pending stub. One
/// trait so that the blocking wait, the 202 and the stub are the same code for an action and
/// for a sequence (controller/sequence.rs).
pub(super) trait Finish: Send + 'static {
    /// The activation's record from what its channel gave.
    fn finish(&self, result: Result<Activation, oneshot::error::RecvError>) -> Activation;
    /// The lost record of this activation, with `message` (also its pending stub).
    fn lost(&self, message: &str) -> Activation;
}

/// What the controller needs to write a record itself if the invoker never sends one: the
/// activation's message without its parameters (a record never carries them). The
/// annotations the controller decided (`binding`, the invoke's own) are in the message, so
/// the invoker's record, this lost record and the pending stub all have them alike.
pub(super) struct Pending {
    msg: ActivationMessage,
}

impl Finish for Pending {
    /// The activation's record: the invoker's, or its lost record.
    fn finish(&self, result: Result<Activation, oneshot::error::RecvError>) -> Activation {
        self.finish_record(result)
    }

    fn lost(&self, message: &str) -> Activation {
        self.lost_record(message)
    }
}

impl Pending {
    /// Accepts the invoker's record, making sure it belongs to the caller's namespace; or, when
    /// the channel closed without a record, builds the lost record.
    fn finish_record(&self, result: Result<Activation, oneshot::error::RecvError>) -> Activation {
        let msg = &self.msg;
        match result {
            Ok(mut rec) => {
                if rec.namespace != msg.subject.as_str() {
                    tracing::warn!(activation_id = %msg.activation_id, got = %rec.namespace, "invoker record had a foreign namespace; corrected");
                    rec.namespace = msg.subject.to_string();
                }
                rec
            }
            Err(_) => {
                tracing::error!(activation_id = %msg.activation_id, action = %msg.action, "completion channel closed without a record");
                self.lost_record("The invoker stopped before the activation completed.")
            }
        }
    }

    fn lost_record(&self, message: &str) -> Activation {
        self.msg.lost_record(message, Timing::since_accepted(&self.msg))
    }
}

/// An accepted activation whose record has not come yet: everything needed to wait for it,
/// or to acknowledge its id and see that its record is written later.
pub(super) struct Accepted<F: Finish> {
    pub(super) id: ActivationId,
    pub(super) finish: F,
    pub(super) completion: Completion,
    pub(super) guard: InFlight,
    /// When the controller took the request (for the end-to-end metric).
    pub(super) started: Instant,
}

/// Decrements the in-flight count when the record is handed to the writer (or the task dies),
/// and frees the namespace's concurrency slot with its ticket. A sequence's components carry
/// no ticket: the sequence holds the one its invoke was admitted with (controller/sequence.rs).
pub(super) struct InFlight {
    count: Arc<AtomicUsize>,
    _ticket: Option<super::admission::Ticket>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Parses the request body: empty means `{}`; anything else must be a JSON object.
pub(crate) fn parse_payload(payload: &[u8]) -> Result<Map<String, Value>, ControllerError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ControllerError::TooLarge(format!(
            "The request content of {} bytes exceeds the maximum payload of {MAX_PAYLOAD_BYTES} bytes.",
            payload.len()
        )));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ControllerError::Invalid("The request content must be a JSON object.".into())),
        Err(e) => Err(ControllerError::Invalid(format!("The request content was malformed: {e}"))),
    }
}

/// The annotations the controller adds to an activation's record: `binding`
/// (`namespace/binding`, OpenWhisk's `WhiskActivation.bindingAnnotation`) when the action was
/// reached through a binding, then the invoke's own.
fn record_annotations(binding: Option<String>, extra: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut annotations = Vec::with_capacity(extra.len() + 1);
    if let Some(b) = binding {
        annotations.push(KeyValue::new("binding", b));
    }
    annotations.extend(extra);
    annotations
}

async fn record(records: &RecordWriter, rec: Activation) {
    let id = rec.activation_id;
    if let Err(e) = records.submit(rec).await {
        tracing::error!(activation_id = %id, error = %e, "activation record lost");
    }
}

impl Controller {
    /// Invokes `fqn` as `caller` with the raw request body.
    pub async fn invoke(
        &self,
        caller: &Identity,
        fqn: &FullyQualifiedName,
        payload: &[u8],
        blocking: bool,
    ) -> Result<InvokeOutcome, ControllerError> {
        let request_params = parse_payload(payload)?;
        self.invoke_with(caller, fqn, request_params, InvokeOptions::blocking(blocking)).await
    }

    /// Invokes `fqn` as `caller` with `request_params` over the action's own, as `options`
    /// say. Every way an activation starts comes through here; a sequence is run by the
    /// controller itself ([`Controller::invoke_sequence`]).
    #[tracing::instrument(skip_all, fields(action = %fqn, blocking = options.blocking, activation_id))]
    pub async fn invoke_with(
        &self,
        caller: &Identity,
        fqn: &FullyQualifiedName,
        request_params: Map<String, Value>,
        options: InvokeOptions,
    ) -> Result<InvokeOutcome, ControllerError> {
        let started = Instant::now();
        let resolved = self.resolve_action(caller, fqn)?;
        if let ActionExec::Sequence(_) = &resolved.action.exec {
            return self.invoke_sequence(caller, resolved, request_params, options, started).await;
        }
        let ticket = self.admit(caller)?;
        let timeout = resolved.action.limits.timeout();
        let InvokeOptions { blocking, cause, annotations } = options;
        let mut accepted = self
            .dispatch_action(caller, resolved, request_params, cause, annotations, Some(ticket))
            .await?;
        accepted.started = started;
        tracing::Span::current().record("activation_id", tracing::field::display(accepted.id));
        let wait = self.config.max_blocking_wait.min(timeout + self.config.wait_margin);
        self.answer(accepted, blocking, wait).await
    }

    /// Charges one invoke to the caller's namespace (controller/admission.rs); the ticket is
    /// its concurrency slot until the record is written.
    pub(super) fn admit(
        &self,
        caller: &Identity,
    ) -> Result<super::admission::Ticket, ControllerError> {
        let limits = self.namespace_limits(&caller.namespace)?;
        self.admission.admit(&caller.namespace, &limits, self.dispatcher.controllers())
    }

    /// Counts an accepted activation in flight until its guard drops.
    pub(super) fn in_flight_guard(&self, ticket: Option<super::admission::Ticket>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { count: self.in_flight.clone(), _ticket: ticket }
    }

    /// Hands a resolved code action to an invoker with `request_params` over its own: the
    /// lower half of every invoke, shared by [`invoke_with`](Self::invoke_with) and the
    /// sequence runner, which waits for each component up to its own timeout instead.
    pub(super) async fn dispatch_action(
        &self,
        caller: &Identity,
        resolved: ResolvedAction,
        request_params: Map<String, Value>,
        cause: Option<ActivationId>,
        extra: Vec<KeyValue>,
        ticket: Option<super::admission::Ticket>,
    ) -> Result<Accepted<Pending>, ControllerError> {
        let started = Instant::now();
        let meta = resolved.action;
        let ActionExec::Code(exec) = &meta.exec else {
            return Err(ControllerError::Internal(format!(
                "{} is a sequence, not an action an invoker runs",
                meta.fqn()
            )));
        };
        let mut params = resolved.params;
        params.extend(request_params);
        let id = ActivationId::generate();
        let msg = ActivationMessage {
            activation_id: id,
            // The action that runs: inside the package that holds it (a binding's target).
            action: meta.fqn(),
            revision: meta.revision,
            version: meta.version.clone(),
            exec: exec.clone(),
            limits: meta.limits,
            subject: caller.namespace.clone(),
            params: Map::new(),
            received_at_ms: now_millis(),
            publish: meta.publish,
            cause,
            annotations: record_annotations(resolved.binding, extra),
        };
        let finish = Pending { msg: msg.clone() };
        let msg = ActivationMessage { params, ..msg };
        let completion: Completion = self.dispatcher.dispatch(msg).await.map_err(|e| match e {
            DispatchError::Overloaded(m) => ControllerError::Overloaded(m),
            DispatchError::Unavailable(m) => ControllerError::Unavailable(m),
        })?;
        let guard = self.in_flight_guard(ticket);
        Ok(Accepted { id, finish, completion, guard, started })
    }

    /// Waits up to `wait` for the record of `accepted`: the record (not yet written) and the
    /// guard that counts it in flight, or the activation back when the wait ran out.
    pub(super) async fn await_record<F: Finish>(
        &self,
        mut accepted: Accepted<F>,
        wait: Duration,
    ) -> Result<(Activation, InFlight), Accepted<F>> {
        match tokio::time::timeout(wait, &mut accepted.completion).await {
            Ok(result) => {
                let rec = accepted.finish.finish(result);
                self.metrics.observe(&rec, accepted.started.elapsed());
                Ok((rec, accepted.guard))
            }
            Err(_) => Err(accepted),
        }
    }

    /// The caller's answer: blocking, the record committed before it is returned (an id the
    /// client sees always has a record); else, or when the wait ran out, the id (see
    /// [`acknowledge`](Self::acknowledge)).
    pub(super) async fn answer<F: Finish>(
        &self,
        accepted: Accepted<F>,
        blocking: bool,
        wait: Duration,
    ) -> Result<InvokeOutcome, ControllerError> {
        let accepted = if blocking {
            match self.await_record(accepted, wait).await {
                Ok((rec, guard)) => {
                    let alone = self.in_flight.load(Ordering::Relaxed) <= 1;
                    let committed = self.records.commit_returning(rec, alone).await;
                    drop(guard);
                    let rec = committed.map_err(|e| ControllerError::Internal(e.to_string()))?;
                    return Ok(InvokeOutcome::Completed(Box::new(rec)));
                }
                Err(accepted) => {
                    tracing::debug!(?wait, "blocking wait ran out; answering 202");
                    accepted
                }
            }
        } else {
            accepted
        };
        let id = accepted.id;
        self.acknowledge(accepted).await?;
        Ok(InvokeOutcome::Accepted(id))
    }

    /// The id is about to be acknowledged without a record: commits the stub it ends with if
    /// this process dies first, then lets a task write the record when it comes. The
    /// completion, sent or not, is awaited either way so the activation is recorded even when
    /// the stub could not be.
    pub(super) async fn acknowledge<F: Finish>(
        &self,
        accepted: Accepted<F>,
    ) -> Result<(), ControllerError> {
        let Accepted { finish, completion, guard, started, .. } = accepted;
        let stub = finish.lost(crate::store::STOPPED_MESSAGE);
        let stub_committed = self.records.commit_pending(stub).await;
        let records = self.records.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let result = completion.await;
            let rec = finish.finish(result);
            metrics.observe(&rec, started.elapsed());
            record(&records, rec).await;
            drop(guard);
        });
        stub_committed.map_err(|e| ControllerError::Internal(e.to_string()))
    }

    /// Queues a finished record for the writer (batched; nothing waits for the commit).
    pub(super) async fn submit_record(&self, rec: Activation) {
        record(&self.records, rec).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActivationStatus;

    #[test]
    fn payload_rules() {
        assert!(parse_payload(b"").unwrap().is_empty());
        assert!(parse_payload(b"  \n").unwrap().is_empty());
        assert_eq!(parse_payload(br#"{"a":1}"#).unwrap()["a"], 1);
        assert!(matches!(parse_payload(b"[1]"), Err(ControllerError::Invalid(_))));
        assert!(matches!(parse_payload(b"{nope"), Err(ControllerError::Invalid(_))));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
        assert!(matches!(parse_payload(big.as_bytes()), Err(ControllerError::TooLarge(_))));
    }

    #[test]
    fn closed_channel_yields_internal_error_record() {
        let msg = crate::testing::message("guest", "a", 1);
        let annotations = record_annotations(Some("guest/bound".into()), Vec::new());
        let p = Pending { msg: ActivationMessage { annotations, ..msg } };
        let (tx, rx) = oneshot::channel::<Activation>();
        drop(tx);
        let rec = p.finish(rx.blocking_recv());
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        assert_eq!(rec.status_code, 3);
        assert_eq!(rec.namespace, "guest");
        assert_eq!(rec.annotation("path").unwrap(), "guest/a");
        assert_eq!(rec.annotation("binding").unwrap(), "guest/bound");
    }
}
