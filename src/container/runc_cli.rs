//! The runc command line: one async function per verb (run, kill, delete, state, list), each
//! spawning `runc --root R ...` through tokio and turning a failure into
//! [`ContainerError::Runc`] with runc's own message.
//!
//! `run --detach` is the delicate one: runc's detached pass-through mode hands the container
//! the stdio of the `runc run` process and, with `--preserve-fds 1`, its fd 3. The container
//! keeps all four after runc exits, so runc's errors are read from its `--log` file, never
//! from its stderr (which would not reach end of file while the container lives).
//!
//! One `runc run --detach` rather than `runc create` then `runc start`: the container's
//! process is the launcher, which is started at once anyway, and every runc invocation is a
//! Go binary's start on the cold path (BENCHMARKS.md, "cold start").

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::ContainerError;

/// The fd the launcher writes its replies to.
pub const REPLY_FD: libc::c_int = 3;

/// Where `runc run` writes the container's init pid, inside the bundle: read to register
/// the container with machined without another runc process.
pub const PID_FILE: &str = "init.pid";

/// A runc binary with our own state root.
#[derive(Debug, Clone)]
pub struct Runc {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

/// The child ends of the four pipes a container is created with.
#[derive(Debug)]
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub reply: OwnedFd,
}

/// A close-on-exec pipe: (read end, write end). Close-on-exec so that no other child spawned
/// meanwhile inherits an end and holds the pipe open.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: pipe2 writes two fds into the array we own; on success both are new open fds
    // owned by nobody else, so taking ownership of them is sound.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn runc_err(verb: &'static str, id: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::Runc { verb, id: id.to_owned(), message: message.into() }
}

impl Runc {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.stdin(Stdio::null()).kill_on_drop(false);
        cmd
    }

    /// `runc run --detach` with the container's stdio and reply pipes: creates the container
    /// and starts its process; returns once runc exited (the process runs on). On an error
    /// runc has destroyed what it made; the caller still runs `delete --force` to be sure.
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        stdio: ChildStdio,
    ) -> Result<(), ContainerError> {
        let log = bundle.join("runc.log");
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(bundle.join(PID_FILE))
            .arg("--preserve-fds")
            .arg("1")
            .arg(id)
            .stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        let reply = stdio.reply;
        let reply_fd = reply.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and calls only dup2 and
        // fcntl, which are async-signal-safe; it allocates nothing and touches no lock.
        // dup2 onto fd 3 clears close-on-exec on the copy; when the pipe already is fd 3,
        // the flag is cleared directly because dup2(3, 3) would leave it set.
        unsafe {
            cmd.pre_exec(move || {
                if reply_fd == REPLY_FD {
                    let flags = libc::fcntl(REPLY_FD, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(REPLY_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(reply_fd, REPLY_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // The Command holds the parent's copies of the child's stdio until dropped; they must
        // close now or the host never sees end of file on the container's output.
        drop(cmd);
        drop(reply);
        let mut child = spawned.map_err(|e| runc_err("run", id, format!("cannot spawn: {e}")))?;
        let status = child.wait().await.map_err(|e| runc_err("run", id, format!("wait: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(runc_err("run", id, format!("{status}: {}", log_errors(&log))))
        }
    }

    /// `runc kill ID SIGNAL`.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), ContainerError> {
        self.simple("kill", id, &["kill", id, signal]).await.map(drop)
    }

    /// `runc delete --force`: kills whatever still runs, removes the cgroups and runc's state.
    pub async fn delete_force(&self, id: &str) -> Result<(), ContainerError> {
        self.simple("delete", id, &["delete", "--force", id]).await.map(drop)
    }

    /// `runc state`'s status of one container (`created`, `running`, `stopped`, `paused`).
    pub async fn status(&self, id: &str) -> Result<String, ContainerError> {
        let out = self.simple("state", id, &["state", id]).await?;
        let v: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| runc_err("state", id, format!("unreadable output: {e}")))?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_owned())
    }

    /// The ids of every container under our root.
    /// The ids of the containers under our root: the directory entries `runc list` reads,
    /// read directly. `runc list` fails as a whole when one container's state directory
    /// disappears while it lists (a `runc delete` of a killed invoker still finishing), which
    /// would stop the next invoker's start; a vanished entry here is simply skipped by the
    /// `delete --force` that follows.
    pub async fn list(&self) -> Result<Vec<String>, ContainerError> {
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(runc_err(
                    "list",
                    "-",
                    format!("cannot read {}: {e}", self.root.display()),
                ))
            }
        };
        let mut ids = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| {
            runc_err("list", "-", format!("cannot read {}: {e}", self.root.display()))
        })? {
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                ids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    async fn simple(
        &self,
        verb: &'static str,
        id: &str,
        args: &[&str],
    ) -> Result<Vec<u8>, ContainerError> {
        let out = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| runc_err(verb, id, format!("cannot spawn: {e}")))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(runc_err(verb, id, format!("{}: {message}", out.status)))
        }
    }
}

/// The error messages of a runc `--log-format json` log, or a note that there were none.
fn log_errors(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return format!("no log at {}", log.display());
    };
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .collect();
    if msgs.is_empty() {
        text.lines().last().unwrap_or("no message").to_owned()
    } else {
        msgs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_are_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"no such file\"}\n",
        )
        .unwrap();
        assert_eq!(log_errors(&log), "no such file");
        assert!(log_errors(&dir.path().join("none")).starts_with("no log"));
    }

    #[test]
    fn pipes_are_cloexec() {
        let (r, w) = pipe().unwrap();
        for fd in [r.as_raw_fd(), w.as_raw_fd()] {
            // SAFETY: F_GETFD on an fd we own.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0);
        }
    }
}
