//! The processes the harness starts (hearthd standalone, hearthd invoker, systemd-socket-activate
//! running hearthd controller): spawning with a private environment, collecting their log lines
//! and sd_notify messages with the instant the harness saw them, and stopping them by pid.
//!
//! Log lines are how the harness sees the pool refill a prewarm slot (the prewarm filler's
//! `prewarmed` debug event), so the daemons log at `warn` except for that one module; nothing
//! else on their critical path pays for logging.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::report::{Row, Unit};
use crate::workspace::{self, Workspace};
use crate::Plan;

/// The daemon under test: built by cargo with the same profile as this bench.
pub const HEARTHD: &str = env!("CARGO_BIN_EXE_hearthd");

/// `hearthd admin --data-dir DATA ARGS...`, as an operator runs it (on a running server's data
/// dir too); its stdout, trimmed, or an error with its stderr.
pub fn admin(data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(HEARTHD)
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .with_context(|| format!("running hearthd admin {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("hearthd admin {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
/// Only the prewarm filler's debug events (one line per container made ready) and warnings.
const LOG_FILTER: &str = "warn,hearth::invoker::prewarm=debug";

/// Timestamped text lines from one source (stderr lines or notify datagrams).
#[derive(Debug, Default)]
pub struct Events {
    lines: Mutex<Vec<(Instant, String)>>,
    changed: Notify,
}

impl Events {
    fn push(&self, line: String) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), line));
        self.changed.notify_waiters();
    }

    fn find(&self, since: Instant, pred: &dyn Fn(&str) -> bool) -> Option<(Instant, String)> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().find(|(t, l)| *t >= since && pred(l)).cloned()
    }

    /// Waits for a line seen at or after `since` that satisfies `pred`; returns when it was
    /// seen. Lines already seen count, so a caller cannot miss one that came early.
    pub async fn wait_for(
        &self,
        since: Instant,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(Instant, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(hit) = self.find(since, &pred) {
                return Ok(hit);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("no {what} within {timeout:?}");
            }
        }
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().rev().take(n).rev().map(|(_, l)| l.clone()).collect()
    }
}

/// The pool's prewarm filler made a stem cell of `runtime` ready (`python` or `nodejs`).
pub fn is_prewarmed(line: &str, runtime: &str) -> bool {
    line.contains("prewarmed") && line.contains(&format!("\"{runtime}\""))
}

/// One started process.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    /// When it was started: every event of this daemon comes after it.
    pub started: Instant,
    child: Child,
    pub pid: i32,
    /// Its stderr, line by line.
    pub log: Arc<Events>,
    /// Its sd_notify datagrams (READY=1, STATUS=...), when started with a notify socket.
    pub notify: Arc<Events>,
    ws: Arc<Workspace>,
}

/// Starts `program args` with stderr captured; with `notify` a datagram socket is bound at that
/// path and passed as NOTIFY_SOCKET.
pub fn spawn(
    ws: &Arc<Workspace>,
    name: &str,
    program: &Path,
    args: &[&OsStr],
    notify: Option<&Path>,
) -> anyhow::Result<Daemon> {
    let notify_events = Arc::new(Events::default());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("HEARTH_LOG", LOG_FILTER)
        .env("NO_COLOR", "1")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = notify {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)
            .with_context(|| format!("binding the notify socket {}", path.display()))?;
        cmd.env("NOTIFY_SOCKET", path);
        let events = notify_events.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                events.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().context("the child has no pid")? as i32;
    ws.track_pid(pid);
    let log = Arc::new(Events::default());
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.push(line);
            }
        });
    }
    Ok(Daemon {
        name: name.to_owned(),
        started,
        child,
        pid,
        log,
        notify: notify_events,
        ws: ws.clone(),
    })
}

impl Daemon {
    /// Waits for READY=1 on the notify socket (the daemon serves from then on).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let since = self.started;
        tokio::select! {
            r = self.notify.wait_for(since, timeout, "READY=1", |l| l.contains("READY=1")) => {
                r.map(|_| ()).with_context(|| self.context())
            }
            status = self.child.wait() => {
                bail!("{} exited before it was ready ({status:?}); {}", self.name, self.context())
            }
        }
    }

    /// Its last log lines, for an error message.
    pub fn context(&self) -> String {
        let tail = self.log.tail(12);
        if tail.is_empty() {
            format!("{} wrote nothing on stderr", self.name)
        } else {
            format!("{} stderr:\n  {}", self.name, tail.join("\n  "))
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let r = tokio::time::timeout(timeout, self.child.wait()).await.ok()?.ok();
        if r.is_some() {
            self.ws.untrack_pid(self.pid);
        }
        r
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone, with how long
    /// it took and whether it had to be killed.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<Stopped> {
        if let Ok(Some(_)) = self.child.try_wait() {
            self.ws.untrack_pid(self.pid);
            return Ok(Stopped { took: Duration::ZERO, killed: false });
        }
        let t = Instant::now();
        // SAFETY: kill with the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let killed = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => {
                r.with_context(|| format!("waiting for {}", self.name))?;
                false
            }
            Err(_) => {
                // SAFETY: as above; the child is still unreaped.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                self.child.wait().await.with_context(|| format!("waiting for {}", self.name))?;
                true
            }
        };
        let took = t.elapsed();
        self.ws.untrack_pid(self.pid);
        Ok(Stopped { took, killed })
    }
}

/// How a [`Daemon::stop`] went.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub took: Duration,
    pub killed: bool,
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Writes `invoker.toml` into a fresh config dir and returns the dir.
pub fn config_dir(ws: &Workspace, name: &str, invoker_toml: &str) -> anyhow::Result<PathBuf> {
    let dir = ws.path(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("invoker.toml");
    std::fs::write(&file, invoker_toml).with_context(|| format!("writing {}", file.display()))?;
    Ok(dir)
}

/// SIGTERM, SIGKILL after the grace; a row saying how long the exit took, and the daemon's
/// containers swept when it had to be killed (a clean exit destroys them itself).
pub async fn stop_row(ws: &Workspace, d: Daemon, state: &Path, plan: &Plan) -> anyhow::Result<Row> {
    let name = d.name.clone();
    let stopped = d.stop(plan.stop_grace).await?;
    let root = state.join("runc");
    let left = workspace::runc_list(&root).len();
    let row =
        Row::value(format!("{name}: SIGTERM to exit"), Unit::Ms, stopped.took.as_secs_f64() * 1e3)
            .target(format!("exits within {:?} (harness check)", plan.stop_grace), !stopped.killed);
    if stopped.killed {
        ws.sweep_root(&root);
        return Ok(row.note(format!(
            "did not exit within {:?} of SIGTERM: killed, {left} containers left behind (swept by the harness)",
            plan.stop_grace
        )));
    }
    Ok(row.note(format!("{left} containers left behind")))
}
