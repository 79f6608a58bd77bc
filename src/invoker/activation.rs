//! One activation from admission to record: get a container (warm, prewarmed or cold),
//! install the code and init when the container is new to the action, run, send the record,
//! then give the container back or destroy it.
//!
//! Owns the per-activation guarantees: exactly one record per accepted activation (a drop
//! guard sends an internal-error record if this task ends any other way, even by a panic),
//! a usable container is back in the pool before the record goes out (so an immediate
//! re-invoke finds it warm), a broken one is destroyed after (off the critical path), and
//! a container whose process may be broken is never reused. No destruction is ever awaited
//! before the record goes out: containers evicted for this activation are destroyed in the
//! background while it runs. It never touches pool state except through [`Inner::with_pool`].
//!
//! An action with `limits.concurrency` above 1 (Node) shares containers: the activation that
//! gets a fresh container inits it in concurrent mode and registers it with the pool
//! ([`super::pool::PoolState::serve`]); others join it ([`Placement::Join`]). Either way the
//! run goes through the container's shared handle and ends with a `leave`, which returns the
//! container to idle at zero in flight or destroys it when it died.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{oneshot, Notify};

use super::events::{EvictedFor, PoolEvent, Start};
use super::logsink::ActionLogBatch;
use super::pool::{Admission, Joined, Placement};
use super::record;
use super::restore::WarmRecord;
use super::service::{missing_image_record, Inner};
use super::state::{Slot, WarmKey};
use super::CodeError;
use crate::container::{ActionContainer, ContainerFactory, RunError, RunOutput, SharedHandle};
use crate::dispatch::{ActivationMessage, Timing};
use crate::launcher::{InitSpec, RunSpec};
use crate::model::{now_millis, Activation, Runtime};

/// What happens to the container after the record was sent.
enum Disposal<C> {
    /// The process is usable: back to warm idle.
    Keep(Slot<C>),
    /// The process is dead or suspect.
    Destroy(Slot<C>),
    /// A run in a shared container ended; `usable`: whether the container can take more.
    Left { joined: Joined, usable: bool },
    /// No container was obtained.
    Nothing,
}

/// Activations one container of this action runs at once: the action's
/// `limits.concurrency` for the Node launcher (the only one with a concurrent mode), 1 for
/// everything else whatever the limit says.
pub(crate) fn concurrency_of(msg: &ActivationMessage) -> u64 {
    if msg.exec.kind.runtime() == Runtime::Nodejs && msg.exec.run_image().is_none() {
        msg.limits.concurrency.max(1)
    } else {
        1
    }
}

/// Held by the activation that starts a shared action's container until the container is
/// serving: dropped any other way (a failed create or init, a driver that cannot share), it
/// tells the pool, which places the activations waiting for a seat in it anew.
struct FormingGuard<'a, F: ContainerFactory> {
    inner: &'a Arc<Inner<F>>,
    key: Option<WarmKey>,
}

impl<F: ContainerFactory> FormingGuard<'_, F> {
    fn disarm(&mut self) {
        self.key = None;
    }
}

impl<F: ContainerFactory> Drop for FormingGuard<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let doomed = self.inner.with_pool(|p| p.formation_failed(&key));
            self.inner.destroy_behind(doomed, None);
        }
    }
}

/// Sends the record once and, whatever happens, tells the pool the activation ended.
struct Finish<F: ContainerFactory> {
    inner: Arc<Inner<F>>,
    /// The message without its parameters (those went into the run).
    msg: ActivationMessage,
    tx: Option<oneshot::Sender<Activation>>,
}

impl<F: ContainerFactory> Finish<F> {
    fn send(&mut self, record: Activation) {
        tracing::info!(
            status = record.response.status.as_str(),
            duration_ms = record.duration,
            "activation finished"
        );
        if let Some(tx) = self.tx.take() {
            // The caller may have stopped waiting; the record is then simply dropped.
            let _ = tx.send(record);
        }
    }
}

impl<F: ContainerFactory> Drop for Finish<F> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            tracing::error!("activation task ended without a record");
            let record = self.msg.lost_record(
                "The invoker failed while running the activation.",
                Timing::instant(now_millis()),
            );
            self.send(record);
        }
        self.inner.with_pool(|p| p.finish());
    }
}

/// Wakes the prewarm filler when dropped: held while an activation that took a stem cell
/// installs its code, inits and makes its first run (for at most [`REFILL_HOLD`] of that
/// run), so that the refill (`runc run` and an interpreter start, much more CPU than the init
/// and the run) does not compete with them on a two-core host, where it would double their
/// time (BENCHMARKS.md, "Design measurements" and session 7). Any early return drops it too,
/// so the pool is never left without its refill.
struct RefillAfterInit<'a>(&'a Notify);

/// How long a prewarmed start's first run holds its stem cell's refill back: long enough for
/// the first run of a short action (a few milliseconds: its code's first execution), short
/// beside the refill itself (tens of milliseconds), so a long run does not leave the pool
/// without its stem cell.
const REFILL_HOLD: Duration = Duration::from_millis(50);

/// Runs `run` while holding `refill` for at most [`REFILL_HOLD`].
async fn holding_refill<T>(run: impl Future<Output = T>, refill: Option<RefillAfterInit<'_>>) -> T {
    let Some(refill) = refill else { return run.await };
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => {
            drop(refill);
            r
        }
        () = tokio::time::sleep(REFILL_HOLD) => {
            drop(refill);
            run.await
        }
    }
}

impl Drop for RefillAfterInit<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Why an init or run did not reach its end.
enum Interrupted {
    Failed(RunError),
    /// Shutdown's drain timeout ran out.
    Aborted,
}

/// The task of one admitted activation.
pub(crate) async fn run<F: ContainerFactory>(
    inner: Arc<Inner<F>>,
    mut msg: ActivationMessage,
    admission: Admission<F::Container>,
    tx: oneshot::Sender<Activation>,
) {
    let params = std::mem::take(&mut msg.params);
    let mut finish = Finish { inner: inner.clone(), msg, tx: Some(tx) };
    let (record, mut disposal) = execute(&inner, &finish.msg, params, admission).await;
    let handoff = handoff(&inner, &mut disposal);
    // Only copied when a forwarder exists (under systemd); a few lines, then handed over.
    let container = match &disposal {
        Disposal::Keep(slot) | Disposal::Destroy(slot) => Some(slot.id()),
        Disposal::Left { joined, .. } => Some(joined.container.as_str()),
        Disposal::Nothing => None,
    };
    let batch = match (&inner.log_forwarder, container) {
        (Some(_), Some(container)) => Some(ActionLogBatch {
            activation_id: record.activation_id.to_string(),
            namespace: finish.msg.action.namespace.to_string(),
            action: finish.msg.action.key(),
            container: container.to_owned(),
            lines: record.logs.clone(),
        }),
        _ => None,
    };
    // A usable container goes back before the record goes out, so that a caller who invokes
    // again as soon as it has the result finds it warm; a broken one is destroyed after.
    let doomed = settle(&inner, disposal);
    finish.send(record);
    if let (Some(batch), Some(fwd)) = (batch, &inner.log_forwarder) {
        fwd.offer(batch);
    }
    if let (Some((rec, fds)), Some(live)) = (handoff, &inner.live_restore) {
        let live = live.clone();
        tokio::task::spawn_blocking(move || live.kept(&rec, &fds));
    }
    for slot in doomed {
        // Boxed: the teardown's futures (runc, file removal) are rare and large.
        Box::pin(inner.destroy(slot)).await;
    }
}

/// A container going warm for the first time is recorded for live restore: copies of its
/// pipes now (four dups), the file and the fd store after the record went out.
fn handoff<F: ContainerFactory>(
    inner: &Inner<F>,
    disposal: &mut Disposal<F::Container>,
) -> Option<(WarmRecord, Vec<std::os::fd::OwnedFd>)> {
    inner.live_restore.as_ref()?;
    let Disposal::Keep(slot) = disposal else { return None };
    if slot.is_stored() {
        return None;
    }
    let key = slot.warm_key()?.clone();
    let fds = slot.container().handoff()?;
    slot.mark_stored();
    Some((WarmRecord::new(slot.id(), &key, slot.runtime(), slot.memory_mb()), fds))
}

async fn execute<F: ContainerFactory>(
    inner: &Arc<Inner<F>>,
    msg: &ActivationMessage,
    params: Map<String, Value>,
    admission: Admission<F::Container>,
) -> (Activation, Disposal<F::Container>) {
    let placement = match admission {
        Admission::Placed(p) => p,
        Admission::Queued(rx) => match rx.await {
            Ok(p) => p,
            Err(_) => {
                let m = "The invoker shut down before the activation could start.";
                return (msg.lost_record(m, Timing::instant(now_millis())), Disposal::Nothing);
            }
        },
    };
    let placement = match placement {
        Placement::Join(joined) => {
            let mut abort = inner.abort.clone();
            return Box::pin(run_shared(inner, msg, params, joined, None, &mut abort)).await;
        }
        other => other,
    };
    let key = WarmKey { action: msg.action.clone(), revision: msg.revision };
    let max = concurrency_of(msg);
    let mut forming = FormingGuard { inner, key: (max > 1).then(|| key.clone()) };
    let refill = matches!(placement, Placement::Prewarmed { .. })
        .then(|| RefillAfterInit(&inner.prewarm_wake));
    let mut slot = match acquire(inner, msg, placement).await {
        Ok(slot) => slot,
        Err(record) => return (*record, Disposal::Nothing),
    };
    tracing::Span::current().record("container", slot.id());
    let needs_init = match slot.claim(&key) {
        Ok(n) => n,
        Err(e) => {
            return (
                msg.lost_record(e.to_string(), Timing::instant(now_millis())),
                Disposal::Destroy(slot),
            )
        }
    };

    let mut abort = inner.abort.clone();
    let mut init = None;
    if needs_init {
        // Boxed: the code install and init (a blocking-pool task, the init exchange) would
        // otherwise be laid out inline in every activation's future, which tokio copies
        // twice per task (into its cell at spawn, and over it when the task completes).
        match Box::pin(initialise(inner, msg, &mut slot, max, &mut abort)).await {
            Ok((times, None)) => init = Some(times),
            Ok((times, Some(handle))) => {
                drop(refill);
                let joined = Joined {
                    key: key.clone(),
                    container: slot.id().to_owned(),
                    handle: handle.clone(),
                };
                let doomed = inner.with_pool(|p| p.serve(slot, handle, max));
                forming.disarm();
                inner.destroy_behind(doomed, None);
                return Box::pin(run_shared(inner, msg, params, joined, Some(times), &mut abort))
                    .await;
            }
            Err(record) => return (record, Disposal::Destroy(slot)),
        }
    }
    // Not shared (the driver runs one activation at a time, or a warm container): the
    // activations waiting for a seat are placed anew.
    drop(forming);

    let run_start_ms = now_millis();
    let spec = run_spec(inner, msg, params, run_start_ms);
    let result = tokio::select! {
        r = holding_refill(slot.container_mut().run(&spec), refill) => Ok(r),
        () = abort.wait() => Err(Interrupted::Aborted),
    };
    let timing = Timing {
        start_ms: init.map_or(run_start_ms, |(s, _)| s),
        end_ms: now_millis(),
        init_ms: init.map(|(_, ms)| ms),
    };
    match result {
        Err(why) => (interrupted_record(msg, why, timing), Disposal::Destroy(slot)),
        Ok(result) => {
            // After a bad or oversized result, or a developer error the launcher reported, the
            // launcher is alive and waiting for the next run, so the container is kept; every
            // other failure may have left it broken.
            let keep = slot.container().is_usable()
                && match &result {
                    Ok(_) => true,
                    Err(
                        RunError::InvalidResult { .. }
                        | RunError::ResultTooLarge { .. }
                        | RunError::Developer { .. },
                    ) => true,
                    Err(_) => false,
                };
            let (response, logs, timed_out) = record::outcome(result);
            let record = msg.record(response, logs, timing, timed_out);
            (record, if keep { Disposal::Keep(slot) } else { Disposal::Destroy(slot) })
        }
    }
}

/// One run's input.
fn run_spec<F: ContainerFactory>(
    inner: &Inner<F>,
    msg: &ActivationMessage,
    params: Map<String, Value>,
    run_start_ms: u64,
) -> RunSpec {
    RunSpec {
        params,
        env: environment(msg, run_start_ms.saturating_add(msg.limits.timeout)),
        timeout: msg.limits.timeout(),
        log_limit: msg.limits.log_bytes(),
        result_limit: inner.config.max_result_bytes,
    }
}

/// A run in a shared container, beside the others in flight: the same record as a
/// sequential run; the container is left (not kept or destroyed) when the record is sent.
/// `init` is the start and duration of the init this activation did, if it did one.
async fn run_shared<F: ContainerFactory>(
    inner: &Inner<F>,
    msg: &ActivationMessage,
    params: Map<String, Value>,
    joined: Joined,
    init: Option<(u64, u64)>,
    abort: &mut crate::shutdown::Shutdown,
) -> (Activation, Disposal<F::Container>) {
    tracing::Span::current().record("container", joined.container.as_str());
    let run_start_ms = now_millis();
    let spec = run_spec(inner, msg, params, run_start_ms);
    let result: Result<Result<RunOutput, RunError>, Interrupted> = tokio::select! {
        r = joined.handle.run(&spec) => Ok(r),
        () = abort.wait() => Err(Interrupted::Aborted),
    };
    let timing = Timing {
        start_ms: init.map_or(run_start_ms, |(s, _)| s),
        end_ms: now_millis(),
        init_ms: init.map(|(_, ms)| ms),
    };
    let (record, usable) = match result {
        Err(why) => (interrupted_record(msg, why, timing), false),
        Ok(mut result) => {
            if init.is_some() {
                let init_logs = joined.handle.take_init_logs();
                if !init_logs.is_empty() {
                    prepend_logs(&mut result, init_logs);
                }
            }
            let usable = joined.handle.is_usable()
                && matches!(
                    &result,
                    Ok(_)
                        | Err(RunError::InvalidResult { .. }
                            | RunError::ResultTooLarge { .. }
                            | RunError::Developer { .. })
                );
            let (response, logs, timed_out) = record::outcome(result);
            (msg.record(response, logs, timing, timed_out), usable)
        }
    };
    (record, Disposal::Left { joined, usable })
}

/// Puts the init's log lines before a run's own.
fn prepend_logs(result: &mut Result<RunOutput, RunError>, mut init_logs: Vec<String>) {
    let logs = match result {
        Ok(RunOutput { logs, .. })
        | Err(
            RunError::Timeout { logs, .. }
            | RunError::OutOfMemory { logs, .. }
            | RunError::InvalidResult { logs, .. }
            | RunError::ResultTooLarge { logs, .. }
            | RunError::Crashed { logs, .. }
            | RunError::InitFailed { logs, .. }
            | RunError::Developer { logs, .. },
        ) => logs,
        Err(RunError::Internal(_)) => return,
    };
    init_logs.append(logs);
    *logs = init_logs;
}

/// Installs the action's code into a fresh container and initialises it (in concurrent mode
/// when `concurrency` is above 1); the start time and the init's duration, with the shared
/// handle when the container was shared, or the record of the failure (the container must
/// then be destroyed: a failed init leaves the launcher holding broken code).
async fn initialise<F: ContainerFactory>(
    inner: &Inner<F>,
    msg: &ActivationMessage,
    slot: &mut Slot<F::Container>,
    concurrency: u64,
    abort: &mut crate::shutdown::Shutdown,
) -> Result<((u64, u64), Option<SharedHandle>), Activation> {
    let start_ms = now_millis();
    let clock = Instant::now();
    let runtime = slot.runtime();
    if let Err(e) = install(inner, msg, runtime, slot.container().code_dir().to_path_buf()).await {
        let m = format!("The action's code could not be installed: {e}");
        let mut rec = msg.lost_record(m, Timing::instant(now_millis()));
        if matches!(e, CodeError::Stale { .. }) {
            // Updated while the activation waited: not this host failing (model::SUPERSEDED).
            tracing::warn!(error = %e, "the action was updated before its code was installed");
            rec.mark_superseded();
        } else {
            tracing::error!(error = %e, "installing the action's code failed");
        }
        return Err(rec);
    }
    let spec = InitSpec {
        action: msg.action.key(),
        entry_point: msg.exec.entry_point().to_owned(),
        binary: msg.exec.binary,
    };
    let result = if concurrency > 1 {
        tokio::select! {
            r = slot.container_mut().init_shared(&spec, concurrency) => r.map_err(Interrupted::Failed),
            () = abort.wait() => Err(Interrupted::Aborted),
        }
    } else {
        tokio::select! {
            r = slot.container_mut().init(&spec) => r.map(|()| None).map_err(Interrupted::Failed),
            () = abort.wait() => Err(Interrupted::Aborted),
        }
    };
    let init_ms = elapsed_ms(clock);
    match result {
        Ok(handle) => Ok(((start_ms, init_ms), handle)),
        Err(why) => {
            let timing = Timing { start_ms, end_ms: now_millis(), init_ms: Some(init_ms) };
            Err(interrupted_record(msg, why, timing))
        }
    }
}

/// Turns a placement into a container of this activation's own. Containers evicted for it
/// are handed out to be destroyed behind it: their memory is already this activation's.
/// `Err` is the record that ends the activation.
async fn acquire<F: ContainerFactory>(
    inner: &Arc<Inner<F>>,
    msg: &ActivationMessage,
    placement: Placement<F::Container>,
) -> Result<Slot<F::Container>, Box<Activation>> {
    match placement {
        // A taken stem cell's refill is woken by `RefillAfterInit` once the init is done.
        Placement::Warm(slot) => Ok(slot),
        Placement::Prewarmed { slot, evicted, need_mb } => {
            inner.destroy_behind(evicted, Some(EvictedFor::Activation));
            if slot.memory_mb() == need_mb {
                placed(inner, msg, &slot, Start::Prewarmed);
                return Ok(slot);
            }
            // Boxed, like the init: the resize's futures are large and not on the warm path.
            Box::pin(resize(inner, msg, slot, need_mb)).await
        }
        // Boxed, like the init: a cold start's futures (bundle, runc) are large and rare.
        Placement::Cold { evicted, need_mb } => {
            inner.destroy_behind(evicted, Some(EvictedFor::Activation));
            Box::pin(cold_start(inner, msg, need_mb)).await
        }
        // Taken apart by `execute` before it gets here.
        Placement::Join(joined) => {
            let m = format!(
                "internal error: a seat in container {} taken as a container",
                joined.container
            );
            let doomed = inner.with_pool(|p| p.leave(&joined.key, &joined.container, true));
            inner.destroy_behind(doomed, None);
            Err(Box::new(msg.lost_record(m, Timing::instant(now_millis()))))
        }
    }
}

fn placed<F: ContainerFactory>(
    inner: &Inner<F>,
    msg: &ActivationMessage,
    slot: &Slot<F::Container>,
    start: Start,
) {
    inner.events.send(PoolEvent::Placed {
        activation_id: msg.activation_id.to_string(),
        container: slot.id().to_owned(),
        start,
    });
}

/// Gives a stem cell of another size the action's memory limit (and its CPU share). When the
/// container refuses (a limit below what it already uses, or a driver that cannot resize),
/// the stem cell is destroyed behind the activation and a cold start takes its place.
async fn resize<F: ContainerFactory>(
    inner: &Arc<Inner<F>>,
    msg: &ActivationMessage,
    mut slot: Slot<F::Container>,
    need_mb: u64,
) -> Result<Slot<F::Container>, Box<Activation>> {
    let from_mb = slot.memory_mb();
    let container = slot.id().to_owned();
    match slot.container_mut().resize(need_mb).await {
        Ok(()) => {
            slot.set_memory_mb(need_mb);
            let back = inner.with_pool(|p| p.stem_cell_resized(from_mb, need_mb));
            inner.destroy_behind(back, None);
            tracing::debug!(%container, from_mb, to_mb = need_mb, "stem cell resized");
            inner.events.send(PoolEvent::Resized { container, from_mb, to_mb: need_mb });
            placed(inner, msg, &slot, Start::PrewarmedResized);
            Ok(slot)
        }
        Err(e) => {
            tracing::warn!(
                %container,
                from_mb,
                to_mb = need_mb,
                error = %e,
                "a stem cell could not take the action's memory limit; cold start instead"
            );
            inner.events.send(PoolEvent::ResizeFailed {
                container,
                from_mb,
                to_mb: need_mb,
                error: e.to_string(),
            });
            inner.with_pool(|p| p.stem_cell_unfit(from_mb, need_mb));
            let runtime = slot.runtime();
            inner.destroy_behind(vec![slot], None);
            cold_start_as(inner, msg, runtime, need_mb).await
        }
    }
}

/// Creates a new container; its memory is reserved already. An image action's image is
/// resolved again here (the cold path may ask the store): an image imported again under the
/// same name is used from its next cold start on, and a removed one ends the activation with
/// OpenWhisk's image error.
async fn cold_start<F: ContainerFactory>(
    inner: &Arc<Inner<F>>,
    msg: &ActivationMessage,
    need_mb: u64,
) -> Result<Slot<F::Container>, Box<Activation>> {
    let runtime = match msg.exec.run_image() {
        None => msg.exec.kind.runtime(),
        Some(name) => match inner.resolve_image(name) {
            Ok(Some(digest)) => Runtime::Image(digest),
            Ok(None) => {
                give_back(inner, need_mb);
                return Err(Box::new(missing_image_record(msg, name)));
            }
            Err(e) => {
                give_back(inner, need_mb);
                let m = format!("The image store failed to resolve '{name}': {e}");
                return Err(Box::new(msg.lost_record(m, Timing::instant(now_millis()))));
            }
        },
    };
    cold_start_as(inner, msg, runtime, need_mb).await
}

/// Returns the memory reserved for a cold start that did not happen.
fn give_back<F: ContainerFactory>(inner: &Arc<Inner<F>>, need_mb: u64) {
    let back = inner.with_pool(|p| p.cold_failed(need_mb));
    inner.destroy_behind(back, None);
    inner.prewarm_wake.notify_one();
}

/// [`cold_start`] in a runtime already known.
async fn cold_start_as<F: ContainerFactory>(
    inner: &Arc<Inner<F>>,
    msg: &ActivationMessage,
    runtime: Runtime,
    need_mb: u64,
) -> Result<Slot<F::Container>, Box<Activation>> {
    let spec = inner.spec(runtime, need_mb);
    match inner.factory.create(&spec).await {
        Ok(container) => {
            inner.with_pool(|p| p.cold_created());
            inner.events.send(PoolEvent::Created {
                container: spec.id.clone(),
                runtime,
                memory_mb: need_mb,
                stem_cell: false,
            });
            let slot = Slot::starting(container, runtime, need_mb);
            placed(inner, msg, &slot, Start::Cold);
            Ok(slot)
        }
        Err(e) => {
            tracing::error!(container = %spec.id, error = %e, "creating a container failed");
            give_back(inner, need_mb);
            let m = format!("Failed to start a container for the action: {e}");
            Err(Box::new(msg.lost_record(m, Timing::instant(now_millis()))))
        }
    }
}

/// Copies the action's code into the container's code dir. The store reads it inside a read
/// transaction and writes up to 48 MB, so it runs on the blocking pool.
async fn install<F: ContainerFactory>(
    inner: &Inner<F>,
    msg: &ActivationMessage,
    runtime: Runtime,
    dir: PathBuf,
) -> Result<(), CodeError> {
    let code = inner.code.clone();
    let installer = inner.installer.clone();
    let action = msg.action.clone();
    let revision = msg.revision;
    let binary = msg.exec.binary;
    let task = tokio::task::spawn_blocking(move || {
        code.with_code(&action, revision, &mut |bytes| {
            installer(&dir, runtime, bytes, binary)
                .map_err(|source| CodeError::Install { dir: dir.display().to_string(), source })
        })
    });
    match task.await {
        Ok(r) => r,
        Err(e) => Err(CodeError::Read {
            action: msg.action.key(),
            message: format!("the install task failed: {e}"),
        }),
    }
}

fn interrupted_record(msg: &ActivationMessage, why: Interrupted, timing: Timing) -> Activation {
    match why {
        Interrupted::Failed(e) => {
            let timed_out = matches!(e, RunError::Timeout { .. });
            let response = record::response_for_error(&e);
            msg.record(response, record::logs_of(e), timing, timed_out)
        }
        Interrupted::Aborted => {
            msg.lost_record("The invoker shut down while the action was running.", timing)
        }
    }
}

/// The `__OW_*` values (without the prefix) for one run. There is no separate transaction id
/// in the message, so the activation id, which is unique per request, serves as one.
fn environment(msg: &ActivationMessage, deadline_ms: u64) -> Vec<(String, String)> {
    let id = msg.activation_id.to_string();
    vec![
        ("ACTIVATION_ID".to_owned(), id.clone()),
        ("NAMESPACE".to_owned(), msg.subject.to_string()),
        ("ACTION_NAME".to_owned(), format!("/{}", msg.action)),
        ("ACTION_VERSION".to_owned(), msg.version.clone()),
        ("DEADLINE".to_owned(), deadline_ms.to_string()),
        ("TRANSACTION_ID".to_owned(), id),
    ]
}

/// Returns a usable container to the pool (a few map operations, no I/O) and hands back the
/// containers that must be destroyed, if any.
fn settle<F: ContainerFactory>(
    inner: &Inner<F>,
    disposal: Disposal<F::Container>,
) -> Vec<Slot<F::Container>> {
    match disposal {
        Disposal::Nothing => Vec::new(),
        Disposal::Keep(mut slot) => match slot.release() {
            Ok(()) => inner.with_pool(|p| p.put_back(slot)),
            Err(e) => {
                tracing::error!(error = %e, "container cannot go back to idle; destroying it");
                let mut doomed = inner.with_pool(|p| p.retire_busy(slot.memory_mb()));
                doomed.push(slot);
                doomed
            }
        },
        Disposal::Destroy(slot) => {
            let mut doomed = inner.with_pool(|p| p.retire_busy(slot.memory_mb()));
            doomed.push(slot);
            doomed
        }
        Disposal::Left { joined, usable } => {
            inner.with_pool(|p| p.leave(&joined.key, &joined.container, usable))
        }
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::invoker::record::tests::message;
    use crate::invoker::{CodeSource, Invoker, InvokerConfig};
    use crate::model::{FullyQualifiedName, Kind};
    use crate::testing::container::{installer, FakeFactory, World};

    struct AnyCode;

    impl CodeSource for AnyCode {
        fn with_code(
            &self,
            _: &FullyQualifiedName,
            _: u64,
            install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
        ) -> Result<(), CodeError> {
            install(b"code")
        }
    }

    fn node(concurrency: u64, params: Value) -> ActivationMessage {
        let mut msg = message("io", 1);
        msg.exec.kind = Kind::parse("nodejs:20").unwrap();
        msg.limits.concurrency = concurrency;
        let Value::Object(params) = params else { panic!("params must be an object") };
        msg.params = params;
        msg
    }

    /// The whole invoker with the fake driver: two hundred activations of an action with
    /// concurrency 200 run at once in one container, initialised once in concurrent mode,
    /// its memory counted once; at the end it is warm idle. A crash in a shared container
    /// destroys it after its last run, and the next activation starts a new one.
    #[tokio::test]
    async fn a_shared_action_runs_two_hundred_at_once_in_one_container() {
        let world = Arc::new(World::default());
        world.create_delay_ms.store(20, Ordering::SeqCst);
        let (_trigger, signal) = crate::shutdown::channel();
        let config =
            InvokerConfig { memory_budget_mb: 1024, prewarm: vec![], ..Default::default() };
        let invoker = Invoker::start(
            config,
            FakeFactory { world: world.clone() },
            Arc::new(AnyCode),
            installer(world.clone()),
            signal,
        )
        .await
        .unwrap();
        let completions: Vec<_> = (0..200)
            .map(|i| {
                invoker.submit(node(200, serde_json::json!({"sleep_ms": 200, "i": i}))).unwrap()
            })
            .collect();
        crate::testing::eventually("all in flight in one container", || {
            let s = invoker.stats();
            (s.shared_serving, s.shared_in_flight) == (1, 200)
        })
        .await;
        assert_eq!(invoker.stats().memory_in_use_mb, 256, "the container's memory, once");
        let mut inits = 0;
        for c in completions {
            let a = c.await.unwrap();
            assert!(a.response.success, "{:?}", a.response);
            inits += usize::from(a.annotation("initTime").is_some());
        }
        assert_eq!(inits, 1);
        assert_eq!(world.created_count(), 1);
        assert_eq!(world.max_per_container.load(Ordering::SeqCst), 200);
        assert_eq!(world.shared_inits.lock().unwrap().values().copied().collect::<Vec<_>>(), [200]);
        crate::testing::eventually("idle warm again", || {
            let s = invoker.stats();
            (s.warm_idle, s.shared_serving, s.in_flight) == (1, 0, 0)
        })
        .await;

        let crashed = invoker.submit(node(200, serde_json::json!({"outcome": "crash"}))).unwrap();
        assert!(!crashed.await.unwrap().response.success);
        let first = world.created_ids()[0].clone();
        crate::testing::eventually("the crashed container destroyed", || {
            world.was_destroyed(&first)
        })
        .await;
        let next = invoker.submit(node(200, serde_json::json!({}))).unwrap().await.unwrap();
        assert!(next.response.success, "{:?}", next.response);
        assert_eq!(world.created_count(), 2);
    }

    #[test]
    fn environment_names_the_action_and_deadline() {
        let msg = message("hello", 4);
        let env = environment(&msg, 12_345);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("ACTION_NAME"), "/guest/hello");
        assert_eq!(get("NAMESPACE"), "caller");
        assert_eq!(get("ACTION_VERSION"), "0.0.4");
        assert_eq!(get("DEADLINE"), "12345");
        assert_eq!(get("ACTIVATION_ID"), msg.activation_id.to_string());
        assert_eq!(get("TRANSACTION_ID"), msg.activation_id.to_string());
    }
}
