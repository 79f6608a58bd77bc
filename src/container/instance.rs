//! One runc container with its launcher on the other end of the pipes: the init, the runs
//! and the teardown. This is the warm critical path: a run is one write to stdin, one line
//! read from fd 3 and a wait for the log sentinels, with buffers reused across runs.
//!
//! An image container's action proxy is driven instead over HTTP ([`super::proxy`]): the
//! same type, the same log pipes, kill and teardown; only the exchange differs.
//!
//! Every way a run can end maps to a typed outcome: a reply (result, invalid result, result
//! too large), the time limit (the container is killed), or the pipe closing (out of memory
//! when the memory cgroup saw an OOM kill, a crash otherwise). After any failed run the
//! container is marked dead; the pool destroys it. Nothing here retries or decides policy.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

use crate::launcher::protocol::{self, InitRefusal, ReplyError};
use crate::model::{LOGS_MAX_MB, MAX_PAYLOAD_BYTES};

use super::bundle;
use super::cgroup;
use super::logs::{LogPipes, LOG_WATCH_AFTER};
use super::mux::SharedMux;
use super::proxy::{self, Proxy, ProxyError, RunOutcome};
use super::runc::{remove_dir_logged, Shared};
use super::{
    ActionContainer, ContainerError, ContainerSpec, RunError, RunOutput, SharedHandle, SharedRuns,
};
use crate::launcher::{InitSpec, RunSpec};
use crate::systemd::machined;

/// How long an init may take. [`InitSpec`] carries no timeout; OpenWhisk bounds init by the
/// action's timeout, whose maximum is 5 minutes, but loading code that takes more than a
/// minute is broken rather than slow.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// After a reply, how long to wait for both sentinels. They were written before the reply,
/// so they are already in the pipes; this only covers the I/O driver not having seen their
/// readiness yet (and at most one pipe buffer of logs to drain).
pub const SENTINEL_WAIT: Duration = Duration::from_millis(200);
/// After the container died, how long to wait for its output pipes to close.
pub const DEATH_WAIT: Duration = Duration::from_millis(500);
/// After the pipes closed, how long to wait for systemd's word that the scope is being stopped
/// before calling the death a crash: the state change is announced just after the kill, so
/// it trails the end of file by a few milliseconds (more on a loaded machine). Spent in full
/// only by runs that really crashed, and only with machined.
pub const STOP_SEEN_WAIT: Duration = Duration::from_millis(250);
/// Largest init reply read; an init replies `{"ok":true}` or an error message.
const INIT_REPLY_LIMIT: usize = MAX_PAYLOAD_BYTES;
/// Logs kept for an init (then handed to the first run).
const INIT_LOG_LIMIT: usize = (LOGS_MAX_MB as usize) * 1024 * 1024;

/// A started runc container. Must be [`ActionContainer::destroy`]ed.
#[derive(Debug)]
pub struct RuncContainer {
    id: String,
    memory_mb: u64,
    shared: Arc<Shared>,
    code_dir: PathBuf,
    bundle_dir: PathBuf,
    memory_dir: PathBuf,
    stdin: pipe::Sender,
    reply: BufReader<pipe::Receiver>,
    /// stdout and stderr, read by the runs themselves.
    logs: LogPipes,
    /// Messages sent so far; each is followed by one sentinel per stream.
    exchanges: u64,
    /// Reused encode buffer for the message to the launcher.
    out: Vec<u8>,
    /// Reused buffer for the reply line.
    line: Vec<u8>,
    /// The container's `pids.current`, opened at the first check and re-read with `pread`
    /// after each run; `None` until then or when it cannot be opened.
    pids_current: Option<std::fs::File>,
    /// Tasks (threads of every process) counted the last time the container was seen to hold
    /// its launcher alone; 0 when never.
    tasks_alone: u64,
    /// The init's logs, handed to the first run.
    init_logs: Vec<String>,
    /// The connection to an image's action proxy; None for a launcher, which is driven
    /// through the pipes.
    proxy: Option<Proxy>,
    /// After an init in concurrent mode: the handle every run goes through (it reads copies
    /// of the pipes; this container no longer reads them).
    mux: Option<Arc<SharedMux>>,
    dead: bool,
    destroyed: bool,
}

/// The pids cgroup dir of a container whose memory cgroup dir is `memory_dir`: the sibling
/// hierarchy on cgroup v1, the same dir on v2 (one hierarchy for every controller).
fn pids_dir(memory_dir: &Path) -> PathBuf {
    cgroup::controller_dir(memory_dir, "pids")
}

/// How reading one reply ended.
enum Reply {
    /// A complete line is in the buffer.
    Line,
    /// A complete line longer than the limit was read and dropped; its size in bytes.
    TooLarge(usize),
    /// The pipe closed first: the launcher is gone.
    Closed,
}

/// Reads one line from `reader` into `line`, keeping at most `limit` bytes but consuming the
/// whole line so that its true size is known and the next reply starts clean.
async fn read_reply(
    reader: &mut BufReader<pipe::Receiver>,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Reply> {
    line.clear();
    let mut size = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Reply::Closed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (buf.len(), false),
        };
        size += take;
        if size <= limit {
            line.extend_from_slice(&buf[..take]);
        } else {
            line.clear();
        }
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if size > limit { Reply::TooLarge(size) } else { Reply::Line });
        }
    }
}

/// How an exchange with the launcher ended, before it is turned into an outcome.
enum Exchange {
    Replied(Reply),
    Failed(io::Error),
    TimedOut,
}

/// How an exchange with an action proxy ended.
enum ProxyExchange {
    Replied(proxy::Response),
    Failed(ProxyError),
    TimedOut,
}

impl RuncContainer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        spec: &ContainerSpec,
        shared: Arc<Shared>,
        code_dir: PathBuf,
        bundle_dir: PathBuf,
        stdin: pipe::Sender,
        reply: BufReader<pipe::Receiver>,
        logs: LogPipes,
    ) -> Self {
        let memory_dir = cgroup::memory_dir(
            &shared.config.cgroup_parent,
            &spec.id,
            shared.config.systemd_cgroup,
        );
        Self {
            id: spec.id.clone(),
            memory_mb: spec.memory_mb,
            shared,
            code_dir,
            bundle_dir,
            memory_dir,
            stdin,
            reply,
            logs,
            exchanges: 0,
            out: Vec::with_capacity(4096),
            line: Vec::with_capacity(4096),
            pids_current: None,
            tasks_alone: 0,
            init_logs: Vec::new(),
            proxy: None,
            mux: None,
            dead: false,
            destroyed: false,
        }
    }

    /// A run that leaves processes behind (a fork bomb, a daemonised child) would hand them to
    /// the next run of the same action, with the pids limit already spent: such a container
    /// is marked dead, so the pool destroys it after this run's record. Only the launcher may
    /// remain between runs.
    ///
    /// Checked on every run, so it must be cheap: the pids cgroup's task counter (one `pread`
    /// on a kept fd) is compared with the count last seen when the launcher was alone; only
    /// when it grew is `cgroup.procs` opened and read (a path lookup and a pid list, twenty
    /// times the cost, which showed in the daemon's CPU per warm invoke when it was done every
    /// run; BENCHMARKS.md, "Design measurements"). A kept fd
    /// on `cgroup.procs` itself would not do: cgroup v1 caches its pid list per open file.
    /// The counter counts threads, so a launcher that started threads (node's thread pool)
    /// is confirmed by the precise read once and then becomes the new baseline.
    fn retire_if_processes_left(&mut self) {
        let tasks = self.tasks_now();
        if let Some(n) = tasks {
            if self.tasks_alone != 0 && n <= self.tasks_alone {
                // Threads may have ended: a lower count is the new baseline.
                self.tasks_alone = n;
                return;
            }
        }
        let procs = self.memory_dir.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(text) => {
                let n = text.lines().filter(|l| !l.trim().is_empty()).count();
                if n > 1 {
                    tracing::info!(id = %self.id, processes = n, "the run left processes behind; retiring the container");
                    self.dead = true;
                } else if let Some(t) = tasks {
                    self.tasks_alone = t;
                }
            }
            // The cgroup is unreadable only if the container is gone: the next run finds out.
            Err(e) => {
                tracing::debug!(path = %procs.display(), error = %e, "cannot count processes")
            }
        }
    }

    /// The pids cgroup's current task count, or `None` when it cannot be read (then every
    /// check reads `cgroup.procs`).
    fn tasks_now(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        if self.pids_current.is_none() {
            let path = pids_dir(&self.memory_dir).join("pids.current");
            match std::fs::File::open(&path) {
                Ok(f) => self.pids_current = Some(f),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no task counter");
                    return None;
                }
            }
        }
        let mut buf = [0u8; 24];
        let n = self.pids_current.as_ref()?.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(buf.get(..n)?).ok()?.trim().parse().ok()
    }

    /// Makes this container one whose action proxy is driven over HTTP (an image container).
    pub(crate) fn set_proxy(&mut self, proxy: Proxy) {
        self.proxy = Some(proxy);
    }

    /// POSTs to the action proxy within `limit`, draining the logs as the launcher exchange
    /// does when the answer takes longer than [`LOG_WATCH_AFTER`].
    async fn proxy_exchange(
        &mut self,
        path: &'static str,
        body: Vec<u8>,
        limit: Duration,
        reply_limit: usize,
    ) -> ProxyExchange {
        let (Some(proxy), logs) = (self.proxy.as_mut(), &mut self.logs) else {
            return ProxyExchange::Failed(ProxyError::Http {
                id: self.id.clone(),
                message: "not an image container".to_owned(),
            });
        };
        let talk = async {
            let post = proxy.post(path, body, reply_limit, INIT_TIMEOUT);
            tokio::pin!(post);
            if let Ok(r) = tokio::time::timeout(LOG_WATCH_AFTER, post.as_mut()).await {
                return r;
            }
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = post.as_mut().poll(cx) {
                    return std::task::Poll::Ready(r);
                }
                logs.poll_pump(cx);
                std::task::Poll::Pending
            })
            .await
        };
        match tokio::time::timeout(limit, talk).await {
            Ok(Ok(r)) => ProxyExchange::Replied(r),
            Ok(Err(e)) => ProxyExchange::Failed(e),
            Err(_) => ProxyExchange::TimedOut,
        }
    }

    /// A proxy that broke the connection: out of memory, terminated from outside, or in
    /// OpenWhisk's words an action that exited unexpectedly.
    async fn proxy_died(&mut self, e: ProxyError, openwhisk_words: &str) -> RunError {
        match Box::pin(self.died(e.to_string())).await {
            RunError::Crashed { detail, logs } => {
                tracing::info!(id = %self.id, %detail, "the action proxy broke the connection");
                RunError::Developer { message: openwhisk_words.to_owned(), logs }
            }
            other => other,
        }
    }

    /// /init of an image's action proxy with the code kept in the code dir. A refused init
    /// is a developer error in the proxy's words, and the container must go.
    async fn init_proxy(&mut self, init: &InitSpec) -> Result<(), RunError> {
        let path = self.code_dir.join(crate::launcher::kinds::IMAGE_CODE);
        let code = match tokio::fs::read(&path).await {
            Ok(code) => code,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(RunError::Internal(format!("cannot read {}: {e}", path.display())))
            }
        };
        let body = proxy::init_body(init, &code)
            .map_err(|e| RunError::Internal(format!("cannot encode init: {e}")))?;
        drop(code);
        self.logs.set_limit(INIT_LOG_LIMIT);
        let outcome = match self.proxy_exchange("/init", body, INIT_TIMEOUT, INIT_REPLY_LIMIT).await
        {
            ProxyExchange::Replied(proxy::Response::Complete { status, body }) => {
                // The proxies write no sentinel after an init: take what is there.
                self.logs.drain().await;
                let logs = self.collect();
                match proxy::init_outcome(status, &body) {
                    None => {
                        self.init_logs = logs;
                        Ok(())
                    }
                    Some(message) => Err(RunError::Developer { message, logs }),
                }
            }
            ProxyExchange::Replied(proxy::Response::TooLarge { size }) => {
                self.logs.drain().await;
                let logs = self.collect();
                let size = size.map_or_else(|| "too many".to_owned(), |n| n.to_string());
                let message =
                    format!("The action failed during initialization: a response of {size} bytes");
                Err(RunError::Developer { message, logs })
            }
            ProxyExchange::Failed(e) => Err(self.proxy_died(e, proxy::ABNORMAL_INIT).await),
            ProxyExchange::TimedOut => Err(Box::pin(self.timed_out(INIT_TIMEOUT)).await),
        };
        if outcome.is_err() {
            self.dead = true;
        }
        outcome
    }

    /// /run of an image's action proxy. After anything but a result the container is not
    /// reused: OpenWhisk destroys a container after a developer error too.
    async fn run_proxy(&mut self, run: &RunSpec) -> Result<RunOutput, RunError> {
        let body = proxy::run_body(run)
            .map_err(|e| RunError::Internal(format!("cannot encode run: {e}")))?;
        self.logs.set_limit(run.log_limit);
        self.exchanges += 1;
        let outcome = match self.proxy_exchange("/run", body, run.timeout, run.result_limit).await {
            ProxyExchange::Replied(proxy::Response::Complete { status, body }) => {
                let logs = self.logs_after_reply().await;
                match proxy::run_outcome(status, &body) {
                    RunOutcome::Result(result) => Ok(RunOutput { result, logs }),
                    RunOutcome::Developer(message) => Err(RunError::Developer { message, logs }),
                }
            }
            ProxyExchange::Replied(proxy::Response::TooLarge { size }) => {
                let logs = self.logs_after_reply().await;
                let size = size.unwrap_or(run.result_limit.saturating_add(1));
                Err(RunError::ResultTooLarge { size, limit: run.result_limit, logs })
            }
            ProxyExchange::Failed(e) => Err(self.proxy_died(e, proxy::ABNORMAL_RUN).await),
            ProxyExchange::TimedOut => Err(Box::pin(self.timed_out(run.timeout)).await),
        };
        if matches!(outcome, Err(RunError::Developer { .. })) {
            self.dead = true;
        }
        outcome
    }

    /// The init exchange with the launcher; `concurrency` above 1 puts it in concurrent mode.
    async fn init_launcher(&mut self, init: &InitSpec, concurrency: u64) -> Result<(), RunError> {
        if self.dead {
            return Err(RunError::Internal(format!("container {} is dead", self.id)));
        }
        if self.proxy.is_some() {
            return Box::pin(self.init_proxy(init)).await;
        }
        protocol::encode_init_concurrent(init, concurrency, &mut self.out)
            .map_err(|e| RunError::Internal(format!("cannot encode init: {e}")))?;
        self.logs.set_limit(INIT_LOG_LIMIT);
        match self.exchange(INIT_TIMEOUT, INIT_REPLY_LIMIT).await {
            Exchange::Replied(Reply::Line) => {
                let verdict = protocol::decode_init(&self.line);
                let logs = self.logs_after_reply().await;
                match verdict {
                    Ok(()) => {
                        self.init_logs = logs;
                        Ok(())
                    }
                    Err(InitRefusal::Failed(message)) => {
                        Err(RunError::InitFailed { message, logs })
                    }
                    Err(InitRefusal::Developer(message)) => {
                        Err(RunError::Developer { message, logs })
                    }
                }
            }
            Exchange::Replied(Reply::TooLarge(size)) => {
                let logs = self.logs_after_reply().await;
                Err(RunError::InitFailed { message: format!("init reply of {size} bytes"), logs })
            }
            Exchange::Replied(Reply::Closed) => {
                Err(Box::pin(self.died("the launcher exited during init".to_owned())).await)
            }
            Exchange::Failed(e) => {
                Err(Box::pin(self.died(format!("pipe error during init: {e}"))).await)
            }
            Exchange::TimedOut => Err(Box::pin(self.timed_out(INIT_TIMEOUT)).await),
        }
    }

    /// Hands the pipes (copies of their descriptors) to a [`SharedMux`] after an init in
    /// concurrent mode; the init's logs go to its first run.
    fn share(&mut self) -> Result<Arc<SharedMux>, RunError> {
        use std::os::fd::AsFd;
        let fail = |e: io::Error| {
            RunError::Internal(format!("cannot share the pipes of container {}: {e}", self.id))
        };
        let [stdout, stderr] = self.logs.fds();
        let stdin = self.stdin.as_fd().try_clone_to_owned().map_err(fail)?;
        let reply = self.reply.get_ref().as_fd().try_clone_to_owned().map_err(fail)?;
        let stdout = stdout.try_clone_to_owned().map_err(fail)?;
        let stderr = stderr.try_clone_to_owned().map_err(fail)?;
        let stdin = pipe::Sender::from_owned_fd(stdin).map_err(fail)?;
        let reply = pipe::Receiver::from_owned_fd(reply).map_err(fail)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout).map_err(fail)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr).map_err(fail)?;
        let mux = Arc::new(SharedMux::start(
            self.id.clone(),
            self.memory_mb,
            self.memory_dir.clone(),
            self.shared.clone(),
            stdin,
            reply,
            stdout,
            stderr,
            std::mem::take(&mut self.init_logs),
        ));
        self.mux = Some(mux.clone());
        Ok(mux)
    }

    /// Whether a failed run left this container unusable.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Sends `self.out` and reads one reply, within `limit`.
    ///
    /// The log pipes are not watched at first: a reply usually comes within microseconds,
    /// and the logs it follows are then read in one go by [`Self::logs_after_reply`]. Only a
    /// run still going after [`LOG_WATCH_AFTER`] has its logs drained as they come, so that a
    /// launcher writing more than a pipe buffer of them is not left blocked.
    async fn exchange(&mut self, timeout: Duration, reply_limit: usize) -> Exchange {
        self.exchanges += 1;
        let (stdin, reader, out, line, logs) =
            (&mut self.stdin, &mut self.reply, &self.out, &mut self.line, &mut self.logs);
        let talk = async {
            stdin.write_all(out).await?;
            let reply = read_reply(reader, line, reply_limit);
            tokio::pin!(reply);
            if let Ok(r) = tokio::time::timeout(LOG_WATCH_AFTER, reply.as_mut()).await {
                return r;
            }
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = reply.as_mut().poll(cx) {
                    return std::task::Poll::Ready(r);
                }
                logs.poll_pump(cx);
                std::task::Poll::Pending
            })
            .await
        };
        match tokio::time::timeout(timeout, talk).await {
            Ok(Ok(reply)) => Exchange::Replied(reply),
            Ok(Err(e)) => Exchange::Failed(e),
            Err(_) => Exchange::TimedOut,
        }
    }

    /// The logs of the exchange that just got its reply: waits for both sentinels.
    async fn logs_after_reply(&mut self) -> Vec<String> {
        if !self.logs.wait_end(self.exchanges, SENTINEL_WAIT).await {
            tracing::warn!(id = %self.id, "log sentinels missing after the reply");
        }
        self.collect()
    }

    /// The logs of a container that died or was killed: waits for its pipes to close.
    async fn logs_after_death(&mut self) -> Vec<String> {
        self.dead = true;
        if !self.logs.wait_end(u64::MAX, DEATH_WAIT).await {
            tracing::debug!(id = %self.id, "log pipes still open after the container died");
        }
        self.collect()
    }

    fn collect(&mut self) -> Vec<String> {
        let logs = self.logs.take();
        if self.init_logs.is_empty() {
            logs
        } else {
            let mut all = std::mem::take(&mut self.init_logs);
            all.extend(logs);
            all
        }
    }

    async fn kill(&self) {
        if let Err(e) = self.shared.runc.kill(&self.id, "KILL").await {
            tracing::warn!(id = %self.id, error = %e, "cannot kill container");
        }
    }

    /// The outcome of the pipe closing or breaking mid-exchange. Callers box this future and
    /// [`Self::timed_out`]'s: they are rare and large (runc calls, waits), and inline they
    /// would grow every activation's future, which tokio copies at spawn and at completion.
    async fn died(&mut self, detail: String) -> RunError {
        let logs = self.logs_after_death().await;
        if cgroup::oom_killed(&self.memory_dir) {
            return RunError::OutOfMemory { limit_mb: self.memory_mb, logs };
        }
        if self.shared.machined.is_some()
            && self.shared.wait_stop_requested(&self.id, STOP_SEEN_WAIT).await
        {
            tracing::warn!(id = %self.id, "container terminated from outside during a run");
            return RunError::Crashed {
                detail: format!(
                    "the container {} was terminated from outside the invoker \
                     (machinectl terminate, or its scope was stopped)",
                    self.id
                ),
                logs,
            };
        }
        RunError::Crashed { detail, logs }
    }

    async fn timed_out(&mut self, limit: Duration) -> RunError {
        self.kill().await;
        let logs = self.logs_after_death().await;
        RunError::Timeout { limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX), logs }
    }

    /// Removes the container and its files now; used by `destroy` and by a failed create.
    pub(crate) async fn destroy_now(mut self) {
        self.destroyed = true;
        // `delete --force` kills every process of the container and waits for them, so a
        // separate `runc kill` first would only add a process spawn to the teardown.
        if let Err(e) = self.shared.runc.delete_force(&self.id).await {
            tracing::warn!(id = %self.id, error = %e, "cannot delete container");
        }
        remove_dir_logged(&self.bundle_dir).await;
        remove_dir_logged(&self.code_dir).await;
        self.shared.forget(&self.id);
    }
}

impl ActionContainer for RuncContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn is_usable(&self) -> bool {
        !self.dead && self.mux.as_ref().map_or(true, |m| m.is_usable())
    }

    fn code_dir(&self) -> &Path {
        &self.code_dir
    }

    #[tracing::instrument(name = "container.init", skip_all, fields(id = %self.id, action = %init.action))]
    async fn init(&mut self, init: &InitSpec) -> Result<(), RunError> {
        self.init_launcher(init, 1).await
    }

    /// A launcher (never an image's proxy, which runs one activation at a time) in concurrent
    /// mode hands its pipes to a [`SharedMux`].
    #[tracing::instrument(name = "container.init", skip_all, fields(id = %self.id, action = %init.action, concurrency))]
    async fn init_shared(
        &mut self,
        init: &InitSpec,
        concurrency: u64,
    ) -> Result<Option<SharedHandle>, RunError> {
        if concurrency <= 1 || self.proxy.is_some() || self.mux.is_some() {
            return self.init_launcher(init, 1).await.map(|()| None);
        }
        self.init_launcher(init, concurrency).await?;
        match self.share() {
            Ok(mux) => Ok(Some(mux as SharedHandle)),
            Err(e) => {
                self.dead = true;
                Err(e)
            }
        }
    }

    #[tracing::instrument(name = "container.run", skip_all, fields(id = %self.id))]
    async fn run(&mut self, run: &RunSpec) -> Result<RunOutput, RunError> {
        if self.dead {
            return Err(RunError::Internal(format!("container {} is dead", self.id)));
        }
        if self.mux.is_some() {
            return Err(RunError::Internal(format!(
                "container {} is shared: its runs go through its shared handle",
                self.id
            )));
        }
        if self.proxy.is_some() {
            // No check for processes left behind: a proxy may keep children between runs
            // (the Go actionloop keeps the action's process).
            return Box::pin(self.run_proxy(run)).await;
        }
        let started = Instant::now();
        protocol::encode_run(run, &mut self.out)
            .map_err(|e| RunError::Internal(format!("cannot encode run: {e}")))?;
        self.logs.set_limit(run.log_limit);
        let outcome = match self.exchange(run.timeout, run.result_limit).await {
            Exchange::Replied(Reply::Line) => {
                let decoded = protocol::decode_result(&self.line);
                let logs = self.logs_after_reply().await;
                match decoded {
                    Ok(result) => Ok(RunOutput { result, logs }),
                    // The launcher replied with one well-formed line and waits for the next
                    // run: the stream is in step, so the container stays usable.
                    Err(ReplyError::NotAnObject(snippet)) => {
                        Err(RunError::InvalidResult { snippet, logs })
                    }
                    Err(ReplyError::Developer(message)) => {
                        Err(RunError::Developer { message, logs })
                    }
                    Err(ReplyError::NotJson(e)) => {
                        self.dead = true;
                        Err(RunError::InvalidResult {
                            snippet: format!("invalid JSON ({e})"),
                            logs,
                        })
                    }
                }
            }
            Exchange::Replied(Reply::TooLarge(size)) => {
                // The oversized line was read through to its end: still in step.
                let logs = self.logs_after_reply().await;
                Err(RunError::ResultTooLarge { size, limit: run.result_limit, logs })
            }
            Exchange::Replied(Reply::Closed) => {
                Err(Box::pin(self.died("the action's process exited without replying".to_owned()))
                    .await)
            }
            Exchange::Failed(e) => Err(Box::pin(self.died(format!("pipe error: {e}"))).await),
            Exchange::TimedOut => Err(Box::pin(self.timed_out(run.timeout)).await),
        };
        if !self.dead {
            self.retire_if_processes_left();
        }
        tracing::debug!(
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            ok = outcome.is_ok(),
            "run finished"
        );
        outcome
    }

    /// Writes the new limits into the container's cgroups; under runc's systemd driver also
    /// into its scope's unit (runtime properties over D-Bus), so that systemd, which owns the
    /// scope, keeps them (a daemon-reload re-applies a unit's properties). Only a stem cell
    /// that no init reached is resized, so its launcher holds a few MB and a smaller limit
    /// fits; when it does not (or the bus refuses), the error goes back to the pool, which
    /// destroys this container and cold-starts.
    #[tracing::instrument(name = "container.resize", skip_all, fields(id = %self.id, from_mb = self.memory_mb, to_mb = memory_mb))]
    async fn resize(&mut self, memory_mb: u64) -> Result<(), ContainerError> {
        if self.dead || self.exchanges > 0 {
            return Err(ContainerError::Other(format!(
                "container {} already ran an action; only a fresh stem cell is resized",
                self.id
            )));
        }
        let bytes = memory_mb.saturating_mul(1024 * 1024);
        let shares = bundle::cpu_shares(memory_mb);
        cgroup::set_limits(&self.memory_dir, bytes, shares)
            .map_err(|e| ContainerError::Other(format!("resizing container {}: {e}", self.id)))?;
        if self.shared.config.systemd_cgroup {
            if let Some(machined) = &self.shared.machined {
                let unit = machined::scope_unit(&self.id);
                let v1 = cgroup::is_v1(&self.memory_dir);
                let cpu = if v1 { shares } else { cgroup::cpu_weight(shares) };
                machined.set_scope_limits(&unit, v1, bytes, cpu).await.map_err(|e| {
                    ContainerError::Other(format!("resizing container {}: {e}", self.id))
                })?;
            }
        }
        self.memory_mb = memory_mb;
        Ok(())
    }

    #[tracing::instrument(name = "container.destroy", skip_all, fields(id = %self.id))]
    async fn destroy(self) {
        self.destroy_now().await;
    }

    /// Copies of stdin (write end), stdout, stderr and the reply pipe (read ends), in the
    /// order [`super::RuncFactory::adopt`] takes them back.
    ///
    /// Image containers are not handed over (their proxy connection would have to be too):
    /// they are destroyed at a restart.
    fn handoff(&self) -> Option<Vec<OwnedFd>> {
        // A shared container's pipes are read by its mux, whose per-run state cannot be
        // handed over: it is destroyed at a restart, like an image container.
        if self.dead || self.proxy.is_some() || self.mux.is_some() {
            return None;
        }
        use std::os::fd::AsFd;
        let [stdout, stderr] = self.logs.fds();
        let fds = [self.stdin.as_fd(), stdout, stderr, self.reply.get_ref().as_fd()];
        match fds.iter().map(|fd| fd.try_clone_to_owned()).collect::<io::Result<Vec<_>>>() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(id = %self.id, error = %e, "cannot copy the pipes for the fd store");
                None
            }
        }
    }

    /// Leaves the container running for the next invoker (live restore): its pipes are in
    /// the fd store, its runc state, bundle and scope stay.
    async fn detach(mut self) {
        self.destroyed = true;
        tracing::debug!(id = %self.id, "container left running for the next invoker");
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        if !self.destroyed {
            // Removing a container needs async runc calls, which a destructor cannot make;
            // the next start's reclaim_leftovers removes it.
            tracing::error!(id = %self.id, "container dropped without destroy; it leaks until reclaimed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_dir_is_the_sibling_hierarchy_on_v1_and_the_same_dir_on_v2() {
        assert_eq!(
            pids_dir(Path::new("/sys/fs/cgroup/memory/hearth/hearth-x-1")),
            Path::new("/sys/fs/cgroup/pids/hearth/hearth-x-1")
        );
        assert_eq!(
            pids_dir(Path::new("/sys/fs/cgroup/hearth/hearth-x-1")),
            Path::new("/sys/fs/cgroup/hearth/hearth-x-1")
        );
    }
}
