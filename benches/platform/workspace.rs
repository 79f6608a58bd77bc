//! The harness's private corner of the host: a temp dir (LMDB data, config files, sockets), a
//! dir under /run (container state and runc roots), the pids it started and the runc roots and
//! cgroup parents its containers live in.
//!
//! Dropping the [`Workspace`] is the one cleanup path, taken on success, on error and after
//! Ctrl-C alike: it kills the processes it started (by pid), force-deletes the containers
//! listed under its own runc roots, removes their cgroup dirs (by id) and then its dirs. It
//! never touches a process, container or cgroup it did not create.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The runc binary every container here is driven with.
pub const RUNC: &str = "/usr/sbin/runc";
/// The cgroup v1 hierarchies runc creates a container's dirs in.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
pub struct Workspace {
    /// Short random id, part of every name the harness makes.
    pub tag: String,
    /// Data dirs, config dirs, sockets (a temp dir).
    pub dir: PathBuf,
    /// Container state and runc roots (under /run: a tmpfs, as for the real daemons).
    pub run_dir: PathBuf,
    pids: Mutex<Vec<i32>>,
    runc_roots: Mutex<Vec<RuncRoot>>,
}

/// A runc root whose containers are ours, and the cgroup parent they were created under.
#[derive(Debug, Clone)]
struct RuncRoot {
    root: PathBuf,
    cgroup_parent: String,
    /// Whether the parent is the harness's own (removed at the end) or shared with other
    /// hearth daemons on the host (only our containers' dirs are removed).
    own_parent: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Workspace {
    pub fn new() -> anyhow::Result<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = std::env::temp_dir().join(format!("hearth-bench-{tag}"));
        let run_dir = PathBuf::from(format!("/run/hearth-bench-{tag}"));
        for d in [&dir, &run_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(Self { tag, dir, run_dir, pids: Mutex::default(), runc_roots: Mutex::default() })
    }

    /// A path under the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A path under the /run dir.
    pub fn run_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    pub fn track_pid(&self, pid: i32) {
        lock(&self.pids).push(pid);
    }

    pub fn untrack_pid(&self, pid: i32) {
        lock(&self.pids).retain(|p| *p != pid);
    }

    /// Registers a runc root to sweep at the end. `own_parent`: the cgroup parent is ours
    /// alone and may be removed once empty.
    pub fn track_runc_root(&self, root: &Path, cgroup_parent: &str, own_parent: bool) {
        lock(&self.runc_roots).push(RuncRoot {
            root: root.to_owned(),
            cgroup_parent: cgroup_parent.to_owned(),
            own_parent,
        });
    }

    /// Force-deletes every container under our runc roots and their cgroup dirs. Safe to call
    /// more than once.
    pub fn sweep_containers(&self) {
        let roots = lock(&self.runc_roots).clone();
        for r in roots {
            sweep(&r);
        }
    }

    /// The same for one runc root only: after a daemon using it had to be killed, so that its
    /// containers do not linger through the later phases.
    pub fn sweep_root(&self, root: &Path) {
        let roots = lock(&self.runc_roots).clone();
        for r in roots.iter().filter(|r| r.root == root) {
            sweep(r);
        }
    }
}

fn sweep(r: &RuncRoot) {
    for id in &runc_list(&r.root) {
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&r.root)
            .args(["delete", "--force", id])
            .output();
        remove_cgroup_dirs(&r.cgroup_parent, id);
    }
    if r.own_parent {
        remove_own_parent(&r.cgroup_parent);
    }
}

/// Ids runc lists under `root` (empty when the root does not exist).
pub fn runc_list(root: &Path) -> Vec<String> {
    match std::process::Command::new(RUNC).arg("--root").arg(root).args(["list", "-q"]).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn controllers() -> Vec<PathBuf> {
    std::fs::read_dir(CGROUP_ROOT)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn remove_cgroup_dirs(parent: &str, id: &str) {
    for ctrl in controllers() {
        let dir = ctrl.join(parent).join(id);
        if dir.is_dir() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Removes the harness's own cgroup parent (and its now empty ancestors up to the hierarchy
/// root), in every controller; `rmdir` refuses a dir that still holds a cgroup, so a live
/// container keeps it.
fn remove_own_parent(parent: &str) {
    for ctrl in controllers() {
        let mut dir = ctrl.join(parent);
        while dir.starts_with(&ctrl) && dir != ctrl {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p.to_owned(),
                None => break,
            }
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let pids = std::mem::take(&mut *lock(&self.pids));
        for pid in &pids {
            // SAFETY: kill with a pid we spawned ourselves and a constant signal.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for pid in &pids {
            while Instant::now() < deadline {
                let mut status = 0;
                // SAFETY: waitpid on our own child with a valid out pointer.
                let r = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
                if r != 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.sweep_containers();
        for dir in [&self.run_dir, &self.dir] {
            // A mount left under the dir (never expected: runc mounts inside the container's
            // own namespace) would make remove_dir_all reach into what it mounts: keep the dir.
            if has_mounts_under(dir) {
                eprintln!("hearth bench: mounts remain under {}, leaving it", dir.display());
                continue;
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn has_mounts_under(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|p| Path::new(p).starts_with(dir))
}
