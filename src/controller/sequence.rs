//! Sequences, run by the controller as OpenWhisk runs them (SequenceActions.scala): each
//! component is dispatched to an invoker like any action, awaited up to its own timeout, and
//! its result becomes the next component's input; the sequence's own record is made here.
//!
//! Why in the controller: a sequence is composition, not computation. Its components may run
//! on different invokers (each is placed by the balancer like any action), so the only place
//! that sees every component's completion without a new message type on the bus is the
//! controller that dispatched them; it already waits for completions and writes records.
//!
//! Owns: the create-time rules (components exist and are readable by the creator, at most
//! the namespace's `sequenceMaxLength` atomic actions counting nested sequences, no
//! recursion), the invoke-time rule (every component is resolved as the invoking namespace,
//! at every level), the dynamic count of atomic actions, and the sequence's record.
//! Must never: wait for a component longer than its timeout plus [`COMPONENT_GRACE`], write
//! anything per component beyond that component's own record, or leave an acknowledged id
//! without a record.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::invoke::{Accepted, Finish};
use super::{Controller, ControllerError, InvokeOptions, InvokeOutcome, ResolvedAction};
use crate::model::{
    now_millis, ActionExec, ActionMeta, Activation, ActivationId, ActivationResponse,
    ActivationStatus, FullyQualifiedName, Identity, KeyValue, SequenceExec,
    SEQUENCE_MAX_LENGTH_DEFAULT,
};
use crate::store::ActionUpdate;

/// OpenWhisk's messages (`Messages` in ErrorResponse.scala).
pub const TOO_LONG: &str = "Too many actions in the sequence.";
pub const NO_COMPONENT: &str = "No component specified for the sequence.";
pub const CYCLIC: &str = "Sequence may not refer to itself.";
pub const COMPONENT_NOT_FOUND: &str = "Sequence component does not exist.";
pub const SEQUENCE_FAILED: &str = "Sequence failed.";

/// How long past its own timeout a component is awaited (OpenWhisk: one minute): room for
/// the invoker's queue ahead of the run, which a blocking invoke's margin does not cover.
pub const COMPONENT_GRACE: Duration = Duration::from_secs(60);

/// The parameter OpenWhisk stores on a sequence in place of any the creator gave: its
/// components. A sequence's own parameters never reach a component (docs/actions.md: the
/// first component gets what the invoke passed).
const ACTIONS_PARAMETER: &str = "_actions";

fn timed_out(id: ActivationId) -> String {
    format!("Timeout reached when retrieving activation {id} for sequence component.")
}

/// A component's path, resolved for `caller`: the action (and its merged parameters) or why
/// it cannot run.
type Component = Result<ResolvedAction, ControllerError>;

/// What a run adds up as it goes (OpenWhisk's `SequenceAccounting`).
struct Accounting {
    /// Atomic actions run so far since the topmost sequence started.
    atomic: usize,
    /// The limit on `atomic`: the invoking namespace's `sequenceMaxLength`.
    limit: usize,
    /// The component activation ids: the sequence record's `logs`.
    logs: Vec<String>,
    /// The sum of the components' durations: the sequence's `duration`.
    duration: u64,
    /// The largest memory limit of a component that ran (the record's `limits.memory`).
    max_memory: Option<u64>,
    /// The last response; before any component ran, nothing.
    response: Option<ActivationResponse>,
}

impl Accounting {
    /// Ends the run with `response` (a failure that has no component record).
    fn fail(&mut self, status: ActivationStatus, message: impl Into<String>) {
        self.response = Some(ActivationResponse::error(status, message));
    }

    /// Adds a finished component; true when the sequence goes on (its result has no
    /// `error` field, OpenWhisk's short-circuit rule).
    fn add(&mut self, rec: &Activation) -> bool {
        self.logs.push(rec.activation_id.to_string());
        self.duration += rec.duration;
        let memory = rec.annotation("limits").and_then(|l| l.get("memory")).and_then(Value::as_u64);
        self.max_memory = self.max_memory.max(memory);
        self.response = Some(rec.response.clone());
        rec.response.result.get("error").is_none()
    }
}

/// The sequence action being run and how its activation came about.
#[derive(Clone)]
struct Run {
    id: ActivationId,
    action: ActionMeta,
    binding: Option<String>,
    /// Invoked directly (OpenWhisk's `topmost`), not as a component of another sequence.
    topmost: bool,
    /// What caused it: the enclosing sequence's activation, or for a topmost one the
    /// invoke's own cause (a trigger's activation, say).
    cause: Option<ActivationId>,
    /// Annotations the invoke asked for ([`InvokeOptions::annotations`]), topmost only.
    extra: Vec<KeyValue>,
    received_at_ms: u64,
    start_ms: u64,
}

impl Run {
    /// A new activation of the sequence `resolved`, starting now.
    fn start(
        resolved: ResolvedAction,
        topmost: bool,
        cause: Option<ActivationId>,
        extra: Vec<KeyValue>,
    ) -> Self {
        let now = now_millis();
        Self {
            id: ActivationId::generate(),
            action: resolved.action,
            binding: resolved.binding,
            topmost,
            cause,
            extra,
            received_at_ms: now,
            start_ms: now,
        }
    }

    /// The sequence's record in OpenWhisk's shape (`makeSequenceActivation`).
    fn record(&self, caller: &Identity, acc: Accounting, end_ms: u64) -> Activation {
        let topmost = self.topmost;
        let limits = &self.action.limits;
        let mut annotations = vec![
            KeyValue::new("topmost", topmost),
            KeyValue::new("path", self.action.fqn().key()),
            KeyValue::new("kind", crate::model::SEQUENCE),
        ];
        if !topmost {
            annotations.push(KeyValue::new("causedBy", crate::model::SEQUENCE));
        }
        annotations
            .push(KeyValue::new("waitTime", self.start_ms.saturating_sub(self.received_at_ms)));
        if let Some(b) = &self.binding {
            annotations.push(KeyValue::new("binding", b.clone()));
        }
        if let Some(memory) = acc.max_memory {
            let limits = json!({
                "timeout": limits.timeout,
                "memory": memory,
                "logs": limits.logs,
                "concurrency": limits.concurrency,
            });
            annotations.push(KeyValue::new("limits", limits));
        }
        annotations.extend(self.extra.iter().cloned());
        let response = acc.response.unwrap_or_else(|| {
            ActivationResponse::error(ActivationStatus::InternalError, SEQUENCE_FAILED)
        });
        Activation {
            namespace: caller.namespace.to_string(),
            name: self.action.name.to_string(),
            subject: caller.namespace.to_string(),
            activation_id: self.id,
            start: self.start_ms,
            end: end_ms.max(self.start_ms),
            duration: acc.duration,
            status_code: response.status_code,
            response,
            logs: acc.logs,
            annotations,
            version: self.action.version.clone(),
            publish: false,
            cause: self.cause,
        }
    }
}

/// The topmost sequence's side of [`Finish`]: its record comes from the runner task; if the
/// task dies, or the id is acknowledged first, the record is built here in the same shape.
struct SequenceFinish {
    caller: Identity,
    run: Run,
}

impl SequenceFinish {
    fn lost_record(&self, message: &str) -> Activation {
        let mut acc = Accounting::new(0);
        acc.fail(ActivationStatus::InternalError, message);
        self.run.record(&self.caller, acc, now_millis())
    }
}

impl Finish for SequenceFinish {
    fn finish(&self, result: Result<Activation, oneshot::error::RecvError>) -> Activation {
        result.unwrap_or_else(|_| {
            tracing::error!(activation_id = %self.run.id, "sequence runner ended without a record");
            self.lost_record("The sequence stopped before it completed.")
        })
    }

    fn lost(&self, message: &str) -> Activation {
        self.lost_record(message)
    }
}

type Running<'a> = Pin<Box<dyn Future<Output = Activation> + Send + 'a>>;

impl Controller {
    /// The longest sequence `caller`'s namespace may run, in atomic actions.
    fn sequence_limit(&self, caller: &Identity) -> Result<usize, ControllerError> {
        let limits = self.namespace_limits(&caller.namespace)?;
        let max = limits.sequence_max_length.unwrap_or(SEQUENCE_MAX_LENGTH_DEFAULT);
        Ok(usize::try_from(max).unwrap_or(usize::MAX))
    }

    /// Resolves every component for `caller` up front (OpenWhisk fetches them all before the
    /// first runs, hiding the lookups' latency); a component the caller may not read is
    /// refused here, before anything runs.
    fn resolve_components(
        &self,
        caller: &Identity,
        seq: &SequenceExec,
    ) -> Result<Vec<Component>, ControllerError> {
        seq.components
            .iter()
            .map(|c| match self.resolve_action(caller, c) {
                Err(e @ ControllerError::Forbidden(_)) => Err(e),
                other => Ok(other),
            })
            .collect()
    }

    /// Invokes a sequence reached through `resolved`: admitted once for the caller's
    /// namespace (its components are that one invoke's work, as OpenWhisk throttles them),
    /// run by a task of its own so that a blocking wait that runs out (answered 202) or a
    /// non-blocking invoke leaves it running; answered as any invoke.
    pub(super) async fn invoke_sequence(
        &self,
        caller: &Identity,
        resolved: ResolvedAction,
        request_params: Map<String, Value>,
        options: InvokeOptions,
        started: Instant,
    ) -> Result<InvokeOutcome, ControllerError> {
        let ActionExec::Sequence(seq) = &resolved.action.exec else {
            return Err(ControllerError::Internal("not a sequence".into()));
        };
        let components = self.resolve_components(caller, seq)?;
        let limit = self.sequence_limit(caller)?;
        let ticket = self.admit(caller)?;
        let this = self.me.upgrade().ok_or_else(|| {
            ControllerError::Unavailable("The controller is shutting down.".into())
        })?;
        let InvokeOptions { blocking, cause, annotations } = options;
        let run = Run::start(resolved, true, cause, annotations);
        let id = run.id;
        tracing::Span::current().record("activation_id", tracing::field::display(id));
        let (tx, completion) = oneshot::channel();
        let finish = SequenceFinish { caller: caller.clone(), run: run.clone() };
        let runner_caller = caller.clone();
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut acc = Accounting::new(limit);
                let rec = this
                    .run_sequence(&runner_caller, run, components, request_params, &mut acc, 0)
                    .await;
                // The receiver is gone only if the answer was dropped with its request; the
                // record is then written here (the stub, if any, was committed before).
                if let Err(rec) = tx.send(rec) {
                    this.submit_record(rec).await;
                }
            },
            span,
        ));
        let guard = self.in_flight_guard(Some(ticket));
        let accepted = Accepted { id, finish, completion, guard, started };
        self.answer(accepted, blocking, self.config.max_blocking_wait).await
    }

    /// Runs `run`'s components in order, each one's result the next one's input, and returns
    /// the sequence's record (not written: the caller writes it). A nested sequence runs here
    /// too, as a component, sharing the atomic count of the topmost.
    fn run_sequence<'a>(
        &'a self,
        caller: &'a Identity,
        run: Run,
        components: Vec<Component>,
        mut input: Map<String, Value>,
        acc: &'a mut Accounting,
        depth: usize,
    ) -> Running<'a> {
        Box::pin(async move {
            // This sequence's own accounting; the atomic count is the topmost's.
            let mut own = Accounting::new(acc.limit);
            own.atomic = acc.atomic;
            for component in components {
                let next =
                    match self.run_component(caller, &run, component, input, &mut own, depth).await
                    {
                        Some(next) => next,
                        None => break,
                    };
                input = next;
            }
            acc.atomic = own.atomic;
            run.record(caller, own, now_millis())
        })
    }

    /// Runs one component and accounts for it; the next component's input, or `None` when
    /// the sequence ends here (a failure, or a result with an `error` field).
    #[tracing::instrument(level = "debug", skip_all, fields(sequence = %run.id))]
    async fn run_component(
        &self,
        caller: &Identity,
        run: &Run,
        component: Component,
        input: Map<String, Value>,
        acc: &mut Accounting,
        depth: usize,
    ) -> Option<Map<String, Value>> {
        if acc.atomic >= acc.limit || depth >= acc.limit {
            acc.fail(ActivationStatus::ApplicationError, TOO_LONG);
            return None;
        }
        let resolved = match component {
            Ok(r) => r,
            Err(ControllerError::NotFound(_)) => {
                acc.fail(ActivationStatus::ApplicationError, COMPONENT_NOT_FOUND);
                return None;
            }
            Err(e @ ControllerError::Forbidden(_)) => {
                acc.fail(ActivationStatus::ApplicationError, e.to_string());
                return None;
            }
            Err(e) => {
                tracing::error!(sequence = %run.id, error = %e, "sequence component could not be resolved");
                acc.fail(ActivationStatus::InternalError, SEQUENCE_FAILED);
                return None;
            }
        };
        let rec = match &resolved.action.exec {
            ActionExec::Sequence(inner) => {
                let components = match self.resolve_components(caller, inner) {
                    Ok(c) => c,
                    Err(e) => {
                        acc.fail(ActivationStatus::ApplicationError, e.to_string());
                        return None;
                    }
                };
                let inner_run = Run::start(resolved, false, Some(run.id), Vec::new());
                let rec =
                    self.run_sequence(caller, inner_run, components, input, acc, depth + 1).await;
                self.metrics.observe(&rec, Duration::from_millis(rec.end - rec.start));
                rec
            }
            ActionExec::Code(_) => {
                let wait = resolved.action.limits.timeout() + COMPONENT_GRACE;
                let caused_by = vec![KeyValue::new("causedBy", crate::model::SEQUENCE)];
                let dispatched = self
                    .dispatch_action(caller, resolved, input, Some(run.id), caused_by, None)
                    .await;
                let accepted = match dispatched {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(sequence = %run.id, error = %e, "sequence component refused");
                        acc.fail(ActivationStatus::InternalError, SEQUENCE_FAILED);
                        return None;
                    }
                };
                acc.atomic += 1;
                match self.await_record(accepted, wait).await {
                    Ok((rec, _guard)) => rec,
                    Err(accepted) => {
                        let id = accepted.id;
                        tracing::error!(sequence = %run.id, activation_id = %id, "sequence component timed out");
                        acc.logs.push(id.to_string());
                        acc.fail(ActivationStatus::InternalError, timed_out(id));
                        if let Err(e) = self.acknowledge(accepted).await {
                            tracing::error!(activation_id = %id, error = %e, "component stub not committed");
                        }
                        return None;
                    }
                }
            }
        };
        let go_on = acc.add(&rec);
        let next = match &rec.response.result {
            Value::Object(m) if go_on => Some(m.clone()),
            _ if go_on => Some(Map::new()),
            _ => None,
        };
        self.submit_record(rec).await;
        next
    }

    /// OpenWhisk's create and update rules for a sequence, applied to `update` before it is
    /// stored as `fqn` by `caller`: every component readable by the creator (403 otherwise),
    /// between one and the namespace's `sequenceMaxLength` components, no component that is
    /// (or contains) the sequence itself, at most `sequenceMaxLength` atomic actions with
    /// nested sequences counted inline. A sequence's parameters are its components
    /// (`_actions`, as OpenWhisk stores them); an update that keeps the exec of a sequence
    /// keeps them, and an action that stops being a sequence drops them.
    pub async fn prepare_action_update(
        &self,
        caller: &Identity,
        fqn: &FullyQualifiedName,
        update: &mut ActionUpdate,
    ) -> Result<(), ControllerError> {
        let existing_is_sequence = || -> Result<bool, ControllerError> {
            Ok(self
                .store()
                .get_action(fqn)?
                .is_some_and(|a| matches!(a.exec, ActionExec::Sequence(_))))
        };
        let Some(seq) = &update.sequence else {
            if update.exec.is_none() && existing_is_sequence()? {
                update.parameters = None;
            } else if update.exec.is_some()
                && update.parameters.is_none()
                && existing_is_sequence()?
            {
                update.parameters = Some(Vec::new());
            }
            return Ok(());
        };
        self.resolve_components(caller, seq)?;
        let limit = self.sequence_limit(caller)?;
        if seq.components.len() > limit {
            return Err(ControllerError::Invalid(TOO_LONG.into()));
        }
        if seq.components.is_empty() {
            return Err(ControllerError::Invalid(NO_COMPONENT.into()));
        }
        let atomic = self.count_atomic(caller, fqn, seq, limit, 0)?;
        if atomic > limit {
            return Err(ControllerError::Invalid(TOO_LONG.into()));
        }
        update.parameters = Some(vec![KeyValue::new(ACTIONS_PARAMETER, seq.paths())]);
        Ok(())
    }

    /// The atomic actions of `seq` with nested sequences inlined (OpenWhisk's
    /// `countAtomicActionsAndCheckCycle`), refusing a component that resolves to `origin`.
    /// Stops counting past `limit`, so a wide tree of shared sequences costs at most a limit's
    /// worth of lookups; a cycle that does not pass through `origin` (possible only through a
    /// binding re-pointed later) is cut by the same bound on depth.
    fn count_atomic(
        &self,
        caller: &Identity,
        origin: &FullyQualifiedName,
        seq: &SequenceExec,
        limit: usize,
        depth: usize,
    ) -> Result<usize, ControllerError> {
        if depth > limit {
            return Err(ControllerError::Invalid(TOO_LONG.into()));
        }
        let mut count = 0;
        for c in &seq.components {
            let resolved = match self.resolve_action(caller, c) {
                Ok(r) => r,
                Err(ControllerError::NotFound(_)) => {
                    return Err(ControllerError::Invalid(COMPONENT_NOT_FOUND.into()))
                }
                Err(e) => return Err(e),
            };
            if &resolved.action.fqn() == origin {
                return Err(ControllerError::Invalid(CYCLIC.into()));
            }
            count += match &resolved.action.exec {
                ActionExec::Sequence(inner) => {
                    self.count_atomic(caller, origin, inner, limit, depth + 1)?
                }
                ActionExec::Code(_) => 1,
            };
            if count > limit {
                return Err(ControllerError::Invalid(TOO_LONG.into()));
            }
        }
        Ok(count)
    }
}

impl Accounting {
    fn new(limit: usize) -> Self {
        Self { atomic: 0, limit, logs: Vec::new(), duration: 0, max_memory: None, response: None }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::controller::ControllerConfig;
    use crate::model::{EntityName, Kind};
    use crate::store::{Store, StoreOptions};
    use crate::testing::FakeInvoker;

    fn n(s: &str) -> EntityName {
        EntityName::parse(s).unwrap()
    }

    fn caller(ns: &str) -> Identity {
        Identity { namespace: n(ns), uuid: uuid::Uuid::nil() }
    }

    fn fqn(path: &str) -> FullyQualifiedName {
        let seq = SequenceExec::parse(&[path.to_owned()], &n("guest")).unwrap();
        seq.components[0].clone()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        c: Arc<Controller>,
        invoker: Arc<FakeInvoker>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), StoreOptions { map_size: 64 << 20, ..Default::default() })
                .unwrap();
        for ns in ["guest", "other"] {
            store.ensure_namespace(&n(ns)).unwrap();
        }
        let invoker = Arc::new(FakeInvoker::new());
        let c = Controller::new(store, invoker.clone(), ControllerConfig::default()).unwrap();
        Fixture { _dir: dir, c, invoker }
    }

    impl Fixture {
        async fn code(&self, path: &str) {
            let update = ActionUpdate {
                exec: Some(crate::store::ExecUpdate {
                    kind: Kind::parse("python:3").unwrap(),
                    main: None,
                    binary: false,
                    image: None,
                    code: b"def main(a): return a".to_vec(),
                }),
                ..Default::default()
            };
            self.c.put_action(fqn(path), update, true).await.unwrap();
        }

        /// Creates (or updates) sequence `path` as `who` through the API's steps.
        async fn sequence(
            &self,
            who: &str,
            path: &str,
            components: &[&str],
        ) -> Result<ActionMeta, ControllerError> {
            let paths: Vec<String> = components.iter().map(|s| s.to_string()).collect();
            let seq = SequenceExec::parse(&paths, &n(who)).unwrap();
            let mut update = ActionUpdate {
                sequence: Some(seq),
                parameters: Some(vec![KeyValue::new("ignored", 1)]),
                ..Default::default()
            };
            let target = fqn(path);
            self.c.prepare_action_update(&caller(who), &target, &mut update).await?;
            self.c.put_action(target, update, true).await
        }

        async fn record(&self, id: &str) -> Activation {
            let id = ActivationId::parse(id).unwrap();
            self.c.get_activation(&n("guest"), &id).await.unwrap()
        }

        async fn invoke(&self, who: &str, path: &str, params: Value) -> Activation {
            let Value::Object(params) = params else { panic!("params must be an object") };
            let options = InvokeOptions::blocking(true);
            match self.c.invoke_with(&caller(who), &fqn(path), params, options).await.unwrap() {
                InvokeOutcome::Completed(rec) => *rec,
                other => panic!("not completed: {other:?}"),
            }
        }
    }

    fn invalid(r: Result<ActionMeta, ControllerError>) -> String {
        match r {
            Err(ControllerError::Invalid(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_rules_are_openwhisks() {
        let f = fixture();
        f.code("/guest/a").await;
        f.code("/guest/b").await;
        f.code("/other/private").await;
        let s = f.sequence("guest", "/guest/s", &["/_/a", "/guest/b"]).await.unwrap();
        assert_eq!(s.parameters, [KeyValue::new("_actions", json!(["/guest/a", "/guest/b"]))]);
        assert!(s.annotations.contains(&KeyValue::new("exec", "sequence")));
        assert_eq!(invalid(f.sequence("guest", "/guest/e", &[]).await), NO_COMPONENT);
        assert_eq!(
            invalid(f.sequence("guest", "/guest/e", &["/_/nope"]).await),
            COMPONENT_NOT_FOUND
        );
        let long = vec!["/_/a"; 51];
        assert_eq!(invalid(f.sequence("guest", "/guest/e", &long).await), TOO_LONG);
        assert!(f.sequence("guest", "/guest/fifty", &vec!["/_/a"; 50]).await.is_ok());
        // Nested sequences count inline: 26 times s (2 each) is 52 atomic actions.
        assert_eq!(invalid(f.sequence("guest", "/guest/e", &vec!["/_/s"; 26]).await), TOO_LONG);
        assert!(f.sequence("guest", "/guest/outer", &vec!["/_/s"; 25]).await.is_ok());
        // No recursion: itself, or through a sequence it contains.
        assert_eq!(invalid(f.sequence("guest", "/guest/s", &["/_/s"]).await), CYCLIC);
        assert_eq!(invalid(f.sequence("guest", "/guest/s", &["/_/a", "/_/outer"]).await), CYCLIC);
        // Another namespace's action outside a shared package: refused as hidden.
        let e = f.sequence("guest", "/guest/e", &["/other/private"]).await.unwrap_err();
        assert!(matches!(e, ControllerError::Forbidden(_)), "{e:?}");
        assert!(f.c.get_action(&fqn("/guest/e")).is_err(), "nothing refused was stored");
    }

    #[tokio::test]
    async fn a_run_chains_results_and_records_every_component() {
        let f = fixture();
        f.code("/guest/a").await;
        f.code("/guest/b").await;
        f.sequence("guest", "/guest/s", &["/_/a", "/_/b"]).await.unwrap();
        f.sequence("guest", "/guest/outer", &["/_/s", "/_/a"]).await.unwrap();
        let rec = f.invoke("guest", "/guest/outer", json!({"x": 1})).await;
        assert_eq!(rec.response.result, json!({"x": 1}), "the fake invoker echoes its input");
        assert_eq!(rec.annotation("topmost"), Some(&json!(true)));
        assert_eq!(rec.annotation("kind"), Some(&json!("sequence")));
        assert_eq!(rec.cause, None);
        assert_eq!(rec.logs.len(), 2, "the inner sequence and a: {:?}", rec.logs);
        let seen = f.invoker.seen();
        assert_eq!(seen.len(), 3, "a, b inside s, then a");
        let inner = f.record(&rec.logs[0]).await;
        assert_eq!(inner.cause, Some(rec.activation_id));
        assert_eq!(inner.annotation("topmost"), Some(&json!(false)));
        assert_eq!(inner.annotation("causedBy"), Some(&json!("sequence")));
        assert_eq!(inner.logs.len(), 2);
        for (id, cause) in
            [(&inner.logs[0], inner.activation_id), (&rec.logs[1], rec.activation_id)]
        {
            let c = f.record(id).await;
            assert_eq!(c.cause, Some(cause));
            assert_eq!(c.annotation("causedBy"), Some(&json!("sequence")));
        }
        assert_eq!(rec.duration, 3, "the sum of the components' durations (1 ms each)");
        // A failing component ends the sequence with its error.
        let failed = f.invoke("guest", "/guest/s", json!({"fail": true})).await;
        assert_eq!(failed.response.status, ActivationStatus::ApplicationError);
        assert_eq!(failed.logs.len(), 1);
        assert_eq!(f.invoker.seen().len(), 4, "b never ran");
    }

    /// The atomic count is enforced while running too: a component sequence that grew after
    /// the outer one was created ends the run at the limit, with OpenWhisk's message.
    #[tokio::test]
    async fn the_limit_holds_at_run_time() {
        let f = fixture();
        f.code("/guest/a").await;
        f.sequence("guest", "/guest/s", &["/_/a", "/_/a"]).await.unwrap();
        f.sequence("guest", "/guest/outer", &vec!["/_/s"; 25]).await.unwrap();
        f.sequence("guest", "/guest/s", &["/_/a", "/_/a", "/_/a"]).await.unwrap();
        let rec = f.invoke("guest", "/guest/outer", json!({})).await;
        assert_eq!(rec.response.status, ActivationStatus::ApplicationError);
        assert_eq!(rec.response.result, json!({"error": TOO_LONG}));
        assert_eq!(f.invoker.seen().len(), 50, "exactly the limit's worth of actions ran");
        assert_eq!(rec.logs.len(), 17, "16 whole inner sequences and the one cut short");
        let cut = f.record(&rec.logs[16]).await;
        assert_eq!(cut.response.result, json!({"error": TOO_LONG}));
        assert_eq!(cut.logs.len(), 2);
    }

    /// A component that never answers: the blocking invoke gets its 202 at the blocking
    /// wait, and the sequence ends at the component's timeout plus the grace with
    /// OpenWhisk's whisk error naming the component, whose id is in the logs.
    #[tokio::test(start_paused = true)]
    async fn a_component_that_never_answers_ends_the_sequence() {
        let f = fixture();
        f.code("/guest/a").await;
        f.sequence("guest", "/guest/s", &["/_/a", "/_/a"]).await.unwrap();
        let Value::Object(params) = json!({"hold": true}) else { unreachable!() };
        let options = InvokeOptions::blocking(true);
        let (who, path) = (caller("guest"), fqn("/guest/s"));
        let InvokeOutcome::Accepted(id) =
            f.c.invoke_with(&who, &path, params, options).await.unwrap()
        else {
            panic!("a held component outlasts the blocking wait")
        };
        // The pending stub is not readable: the first record read is the sequence's own.
        let rec = loop {
            if let Ok(rec) = f.c.get_activation(&n("guest"), &id).await {
                break rec;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert_eq!(f.invoker.held(), 1, "the second component never started");
        let held = f.invoker.seen()[0].activation_id;
        assert_eq!(rec.logs, [held.to_string()]);
        assert_eq!(rec.response.status, ActivationStatus::InternalError);
        assert_eq!(rec.response.result, json!({"error": timed_out(held)}));
        assert_eq!(rec.annotation("kind"), Some(&json!("sequence")));
    }
}
