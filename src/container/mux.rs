//! A launcher in concurrent mode, driven by many activations at once: the handle
//! [`SharedMux`] that [`super::RuncContainer`] gives out after an init with a concurrency above
//! 1 (Node actions with `limits.concurrency` > 1; the protocol is in
//! [`crate::launcher::protocol`]).
//!
//! A run picks an id, registers itself, writes its message (writes are serialised by an async
//! mutex; one line each) and waits on a oneshot. Three reader tasks own the read ends: the
//! reply pipe routes each `<id> <reply>` line to its run; the stdout and stderr tasks route
//! each tagged line into that run's own [`RunLogs`] (its own limit) and note its tagged end
//! marker. A run completes when its reply and both of its end markers are in (the launcher
//! writes the markers first, so this is normally at once). Untagged lines (written outside
//! any run) go to the next run that completes; the init's logs to the activation that
//! initialised the container.
//!
//! Failure is shared, as in OpenWhisk: when the pipes close (out of memory, a crash, the
//! container killed from outside) every run in flight gets its outcome with what it logged.
//! When one run passes its time limit the whole container is killed: that run ends in
//! `Timeout`, every other one in flight in `Crashed`, saying that another activation of the
//! action exceeded its time limit. The container is then not usable; the pool destroys it
//! after its last run.
//!
//! Nothing here decides policy or touches the pool; the reader tasks end when the container's
//! processes are gone (the pipes reach end of file).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, Notify};

use super::cgroup;
use super::instance::DEATH_WAIT;
use super::logs::{entry, RunLogs, Stream, MAX_LINE_BYTES};
use super::runc::Shared;
use super::{RunError, RunOutput, SharedRuns};
use crate::launcher::protocol::{self, ReplyError, SENTINEL};
use crate::launcher::RunSpec;
use crate::model::MAX_PAYLOAD_BYTES;

/// How a run's wait ended, as the reader tasks report it.
#[derive(Debug)]
enum Done {
    /// The reply (its first `kept` bytes; `size` is the whole line's) and the run's logs.
    Replied { reply: Vec<u8>, size: usize, logs: Vec<String> },
    /// The container's pipes closed first.
    Died { logs: Vec<String> },
}

/// One run in flight.
#[derive(Debug)]
struct Pending {
    logs: RunLogs,
    reply: Option<(Vec<u8>, usize)>,
    /// Its end marker seen on stdout, stderr.
    ended: [bool; 2],
    tx: Option<oneshot::Sender<Done>>,
}

/// What the reader tasks and the runs share.
#[derive(Debug, Default)]
struct Table {
    runs: HashMap<u64, Pending>,
    /// Lines written outside any run (and the init's logs): the next run to complete takes them.
    orphans: Vec<String>,
    /// End of file seen on stdout, stderr, the reply pipe.
    eof: [bool; 3],
}

impl Table {
    /// Completes run `id` when its reply and both its end markers (or the end of its
    /// streams) are in.
    fn try_complete(&mut self, id: u64) {
        let eof = self.eof;
        let Some(p) = self.runs.get(&id) else { return };
        let ready = p.reply.is_some() && (0..2).all(|i| p.ended[i] || eof[i]);
        if !ready {
            return;
        }
        if let Some(mut p) = self.runs.remove(&id) {
            let logs = self.logs_of(&mut p);
            if let (Some(tx), Some((reply, size))) = (p.tx.take(), p.reply.take()) {
                // The run may have stopped waiting (its time ran out); nothing to do then.
                let _ = tx.send(Done::Replied { reply, size, logs });
            }
        }
    }

    /// The orphans collected so far, then the run's own lines.
    fn logs_of(&mut self, p: &mut Pending) -> Vec<String> {
        let own = std::mem::take(&mut p.logs.lines);
        if self.orphans.is_empty() {
            own
        } else {
            let mut all = std::mem::take(&mut self.orphans);
            all.extend(own);
            all
        }
    }

    /// Every run still waiting ends: the container is gone.
    fn fail_all(&mut self) {
        let ids: Vec<u64> = self.runs.keys().copied().collect();
        for id in ids {
            if let Some(mut p) = self.runs.remove(&id) {
                let logs = self.logs_of(&mut p);
                if let Some(tx) = p.tx.take() {
                    let _ = tx.send(Done::Died { logs });
                }
            }
        }
    }
}

/// The state behind a [`SharedMux`], shared with its reader tasks.
#[derive(Debug)]
struct Core {
    id: String,
    memory_mb: u64,
    memory_dir: PathBuf,
    shared: Arc<Shared>,
    stdin: tokio::sync::Mutex<pipe::Sender>,
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Largest result limit of the runs so far: how much of a reply line is kept.
    reply_keep: AtomicUsize,
    /// The container died or was killed: no more runs.
    dead: AtomicBool,
    /// Set before the container is killed for a run that passed its time limit.
    killed_for_timeout: AtomicBool,
    /// Woken when a log stream reaches end of file.
    log_eof: Notify,
    /// The init's logs, for the activation that initialised the container.
    init_logs: Mutex<Vec<String>>,
}

impl Core {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A shared handle on a launcher in concurrent mode. Cloned (as an `Arc`) by every
/// activation that runs in the container.
#[derive(Debug)]
pub struct SharedMux {
    core: Arc<Core>,
}

/// How reading one line ended.
enum Line {
    /// A line (without its newline) of `size` bytes; at most the cap is kept.
    Complete(usize),
    /// `cap` bytes with no newline yet (log streams only, which cut long lines).
    Cut,
    Eof,
}

/// Reads one line into `line`, keeping at most `cap` bytes. With `cut`, a line longer than
/// `cap` is returned in pieces; otherwise it is read through to its newline and its size
/// reported.
///
/// `cap` is asked again at each read: the reply reader's cap grows when a run with a larger
/// result limit registers, possibly while the reader already waits for the next line.
async fn read_line(
    reader: &mut BufReader<pipe::Receiver>,
    line: &mut Vec<u8>,
    cap: impl Fn() -> usize,
    cut: bool,
) -> io::Result<Line> {
    line.clear();
    let mut size = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        let cap = cap();
        if buf.is_empty() {
            return Ok(if line.is_empty() { Line::Eof } else { Line::Complete(size) });
        }
        let (mut take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (buf.len(), false),
        };
        let room = cap.saturating_sub(line.len());
        if cut && take > room {
            line.extend_from_slice(&buf[..room]);
            reader.consume(room);
            return Ok(Line::Cut);
        }
        line.extend_from_slice(&buf[..take.min(room)]);
        size += take;
        if done {
            take += 1;
        }
        reader.consume(take);
        if done {
            return Ok(Line::Complete(size));
        }
    }
}

impl SharedMux {
    /// Takes over a launcher that answered an init in concurrent mode: the pipes given are
    /// the container's (copies of its descriptors); `init_logs` are kept for
    /// [`SharedRuns::take_init_logs`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        id: String,
        memory_mb: u64,
        memory_dir: PathBuf,
        shared: Arc<Shared>,
        stdin: pipe::Sender,
        reply: pipe::Receiver,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
        init_logs: Vec<String>,
    ) -> Self {
        let core = Arc::new(Core {
            id,
            memory_mb,
            memory_dir,
            shared,
            stdin: tokio::sync::Mutex::new(stdin),
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(1),
            reply_keep: AtomicUsize::new(MAX_PAYLOAD_BYTES),
            dead: AtomicBool::new(false),
            killed_for_timeout: AtomicBool::new(false),
            log_eof: Notify::new(),
            init_logs: Mutex::new(init_logs),
        });
        tokio::spawn(read_replies(core.clone(), BufReader::new(reply)));
        tokio::spawn(read_logs(core.clone(), Stream::Stdout, BufReader::new(stdout)));
        tokio::spawn(read_logs(core.clone(), Stream::Stderr, BufReader::new(stderr)));
        Self { core }
    }

    async fn run_one(&self, run: &RunSpec) -> Result<RunOutput, RunError> {
        let core = &self.core;
        if core.dead.load(Ordering::Acquire) {
            return Err(RunError::Internal(format!("container {} is dead", core.id)));
        }
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(1024);
        protocol::encode_run_with_id(run, id, &mut out)
            .map_err(|e| RunError::Internal(format!("cannot encode run: {e}")))?;
        core.reply_keep.fetch_max(run.result_limit, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        {
            let mut table = core.table();
            if table.eof[2] {
                return Err(RunError::Internal(format!("container {} is dead", core.id)));
            }
            let pending = Pending {
                logs: RunLogs::new(run.log_limit),
                reply: None,
                ended: [false; 2],
                tx: Some(tx),
            };
            table.runs.insert(id, pending);
        }
        let sent = async {
            let mut stdin = core.stdin.lock().await;
            stdin.write_all(&out).await
        };
        let waited = async {
            sent.await?;
            Ok::<_, io::Error>((&mut rx).await)
        };
        match tokio::time::timeout(run.timeout, waited).await {
            Ok(Ok(Ok(Done::Replied { reply, size, logs }))) => {
                self.outcome(&reply, size, run, logs)
            }
            Ok(Ok(Ok(Done::Died { logs }))) => Err(self.died(logs)),
            Ok(Ok(Err(_))) => Err(self.died(Vec::new())),
            Ok(Err(e)) => {
                // The write failed: the launcher is gone. Its readers deliver the logs.
                tracing::debug!(id = %core.id, error = %e, "cannot write to the launcher");
                let logs = self.wait_death(&mut rx).await;
                Err(self.died(logs))
            }
            Err(_) => {
                core.killed_for_timeout.store(true, Ordering::Release);
                core.dead.store(true, Ordering::Release);
                if let Err(e) = core.shared.runc.kill(&core.id, "KILL").await {
                    tracing::warn!(id = %core.id, error = %e, "cannot kill container");
                }
                let logs = self.wait_death(&mut rx).await;
                let limit_ms = u64::try_from(run.timeout.as_millis()).unwrap_or(u64::MAX);
                Err(RunError::Timeout { limit_ms, logs })
            }
        }
    }

    /// After the container died or was killed: the run's logs once the readers saw the end,
    /// or what it had after [`DEATH_WAIT`] (a process that escaped the kill may hold a pipe).
    async fn wait_death(&self, rx: &mut oneshot::Receiver<Done>) -> Vec<String> {
        match tokio::time::timeout(DEATH_WAIT * 2, &mut *rx).await {
            Ok(Ok(Done::Died { logs } | Done::Replied { logs, .. })) => logs,
            _ => Vec::new(),
        }
    }

    /// The run's outcome from its reply (without the id) of `size` bytes.
    fn outcome(
        &self,
        reply: &[u8],
        size: usize,
        run: &RunSpec,
        logs: Vec<String>,
    ) -> Result<RunOutput, RunError> {
        if size > run.result_limit {
            return Err(RunError::ResultTooLarge { size, limit: run.result_limit, logs });
        }
        // Every reply is routed by its id, so even a malformed one leaves the others in
        // step: the container stays usable.
        match protocol::decode_result(reply) {
            Ok(result) => Ok(RunOutput { result, logs }),
            Err(ReplyError::NotAnObject(snippet)) => Err(RunError::InvalidResult { snippet, logs }),
            Err(ReplyError::Developer(message)) => Err(RunError::Developer { message, logs }),
            Err(ReplyError::NotJson(e)) => {
                Err(RunError::InvalidResult { snippet: format!("invalid JSON ({e})"), logs })
            }
        }
    }

    /// The outcome of a run whose container died under it.
    fn died(&self, logs: Vec<String>) -> RunError {
        let core = &self.core;
        core.dead.store(true, Ordering::Release);
        if core.killed_for_timeout.load(Ordering::Acquire) {
            return RunError::Crashed {
                detail: format!(
                    "the container {} was destroyed because another activation of the action \
                     running in it exceeded its time limit",
                    core.id
                ),
                logs,
            };
        }
        if cgroup::oom_killed(&core.memory_dir) {
            return RunError::OutOfMemory { limit_mb: core.memory_mb, logs };
        }
        RunError::Crashed {
            detail: "the action's process exited without replying".to_owned(),
            logs,
        }
    }
}

impl SharedRuns for SharedMux {
    fn run<'a>(
        &'a self,
        run: &'a RunSpec,
    ) -> Pin<Box<dyn Future<Output = Result<RunOutput, RunError>> + Send + 'a>> {
        Box::pin(self.run_one(run))
    }

    fn is_usable(&self) -> bool {
        !self.core.dead.load(Ordering::Acquire)
    }

    fn take_init_logs(&self) -> Vec<String> {
        std::mem::take(&mut *self.core.init_logs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Lines written outside any run kept for the next run at most; past this they are dropped
/// (and counted in the daemon's log), so a stray timer cannot grow the host's memory.
const ORPHANS_MAX: usize = 1000;

/// Routes reply lines to their runs; at end of file marks the container dead and, once the
/// log streams ended too (or [`DEATH_WAIT`] passed), ends every run still waiting.
async fn read_replies(core: Arc<Core>, mut reader: BufReader<pipe::Receiver>) {
    let mut line = Vec::with_capacity(4096);
    loop {
        // The id and its space come before the kept result bytes.
        let cap = || core.reply_keep.load(Ordering::Relaxed).saturating_add(24);
        match read_line(&mut reader, &mut line, cap, false).await {
            Ok(Line::Complete(size)) => match protocol::split_concurrent_reply(&line) {
                Some((id, rest)) => {
                    let body = size - (line.len() - rest.len());
                    let mut table = core.table();
                    if let Some(p) = table.runs.get_mut(&id) {
                        p.reply = Some((rest.to_vec(), body));
                        table.try_complete(id);
                    }
                }
                None => tracing::warn!(id = %core.id, "a reply without a run id; dropped"),
            },
            Ok(Line::Cut) => {}
            Ok(Line::Eof) => break,
            Err(e) => {
                tracing::debug!(id = %core.id, error = %e, "reply pipe read failed");
                break;
            }
        }
    }
    core.dead.store(true, Ordering::Release);
    let deadline = tokio::time::Instant::now() + DEATH_WAIT;
    loop {
        let notified = core.log_eof.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut table = core.table();
            table.eof[2] = true;
            if table.eof[0] && table.eof[1] {
                break;
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }
    core.table().fail_all();
}

/// Routes one log stream's lines into their runs' logs and notes their end markers.
async fn read_logs(core: Arc<Core>, stream: Stream, mut reader: BufReader<pipe::Receiver>) {
    let i = stream as usize;
    let mut line = Vec::with_capacity(1024);
    let mut dropped = 0u64;
    loop {
        match read_line(&mut reader, &mut line, || MAX_LINE_BYTES, true).await {
            Ok(Line::Complete(_) | Line::Cut) => {}
            Ok(Line::Eof) => break,
            Err(e) => {
                tracing::debug!(id = %core.id, error = %e, "log pipe read failed");
                break;
            }
        }
        let mut table = core.table();
        // A line tagged with the id of a run that already ended comes from something that
        // run left behind (a timer keeps its run's context): an orphan like untagged ones.
        let (run, text) = match protocol::split_tagged_line(&line) {
            Some((id, text)) if table.runs.contains_key(&id) => (Some(id), text),
            Some((_, text)) => (None, text),
            None => (None, &line[..]),
        };
        match run {
            Some(id) if text == SENTINEL.as_bytes() => {
                if let Some(p) = table.runs.get_mut(&id) {
                    p.ended[i] = true;
                }
                table.try_complete(id);
            }
            Some(id) => {
                if let Some(p) = table.runs.get_mut(&id) {
                    p.logs.push(stream, text);
                }
            }
            None if text == SENTINEL.as_bytes() => {}
            None if table.orphans.len() < ORPHANS_MAX => {
                let e = entry(stream, text);
                table.orphans.push(e);
            }
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::info!(id = %core.id, dropped, "log lines written outside any run were dropped");
    }
    let mut table = core.table();
    table.eof[i] = true;
    let ids: Vec<u64> = table.runs.keys().copied().collect();
    for id in ids {
        table.try_complete(id);
    }
    drop(table);
    core.log_eof.notify_waiters();
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn pending(limit: usize) -> (Pending, oneshot::Receiver<Done>) {
        let (tx, rx) = oneshot::channel();
        (Pending { logs: RunLogs::new(limit), reply: None, ended: [false; 2], tx: Some(tx) }, rx)
    }

    #[test]
    fn a_run_completes_with_its_reply_and_both_end_markers_and_takes_the_orphans() {
        let mut table = Table::default();
        let (p, mut rx) = pending(1000);
        table.runs.insert(7, p);
        table.orphans.push("stray".into());
        let run = table.runs.get_mut(&7).unwrap();
        run.logs.push(Stream::Stdout, b"mine");
        run.reply = Some((b"{}".to_vec(), 2));
        table.try_complete(7);
        assert!(rx.try_recv().is_err(), "no end markers yet");
        table.runs.get_mut(&7).unwrap().ended = [true, false];
        table.try_complete(7);
        assert!(rx.try_recv().is_err(), "stderr's marker missing");
        table.eof[1] = true;
        table.try_complete(7);
        match rx.try_recv() {
            Ok(Done::Replied { reply, size, logs }) => {
                assert_eq!((reply.as_slice(), size), (&b"{}"[..], 2));
                assert_eq!(logs.len(), 2);
                assert_eq!(logs[0], "stray");
                assert!(logs[1].ends_with("stdout: mine"), "{logs:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(table.runs.is_empty() && table.orphans.is_empty());
    }

    #[test]
    fn every_waiting_run_ends_when_the_container_dies() {
        let mut table = Table::default();
        let (a, mut ra) = pending(1000);
        let (b, mut rb) = pending(1000);
        table.runs.insert(1, a);
        table.runs.insert(2, b);
        table.fail_all();
        assert!(matches!(ra.try_recv(), Ok(Done::Died { .. })));
        assert!(matches!(rb.try_recv(), Ok(Done::Died { .. })));
    }

    #[tokio::test]
    async fn lines_are_capped_cut_or_measured() {
        let (mut w, r) = pipe::pipe().unwrap();
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        w.write_all(b"0123456789\nabc\n").await.unwrap();
        // A reply line past the cap: the prefix is kept, the whole size reported.
        assert!(matches!(
            read_line(&mut reader, &mut line, || 4, false).await.unwrap(),
            Line::Complete(10)
        ));
        assert_eq!(line, b"0123");
        assert!(matches!(
            read_line(&mut reader, &mut line, || 4, false).await.unwrap(),
            Line::Complete(3)
        ));
        assert_eq!(line, b"abc");
        // A log line past the cap comes in pieces.
        w.write_all(b"abcdefgh\n").await.unwrap();
        assert!(matches!(read_line(&mut reader, &mut line, || 5, true).await.unwrap(), Line::Cut));
        assert_eq!(line, b"abcde");
        assert!(matches!(
            read_line(&mut reader, &mut line, || 5, true).await.unwrap(),
            Line::Complete(_)
        ));
        assert_eq!(line, b"fgh");
        drop(w);
        assert!(matches!(read_line(&mut reader, &mut line, || 5, true).await.unwrap(), Line::Eof));
    }
}
