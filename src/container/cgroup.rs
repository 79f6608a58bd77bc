//! The host-side view of the containers' cgroups, with runc's cgroupfs driver (a plain parent
//! path) or its systemd driver (one `hearth-<id>.scope` per container in a slice): where a
//! container's memory cgroup is, reading its OOM counter (cgroup v1 `memory.oom_control`, v2
//! `memory.events`), changing a live container's memory limit and CPU share (a stem cell
//! taken by an action of another size), and removing what a crashed invoker left under the
//! hearth parent.
//!
//! runc creates and removes the cgroups; this module reads them on the critical path's
//! failure branch, writes a stem cell's new limits when it is taken, and cleans leftovers at
//! start-up. It must never touch a cgroup outside the configured parent.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup filesystem root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Attempts at removing a cgroup whose processes were just killed; the kernel empties it
/// asynchronously after the last task exits.
const RMDIR_ATTEMPTS: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(10);

/// `cgroupsPath` for runc: `/parent/id` with cgroupfs, `parent:hearth:id` with systemd.
pub fn cgroups_path(parent: &str, id: &str, systemd: bool) -> String {
    if systemd {
        format!("{parent}:hearth:{id}")
    } else {
        format!("/{}/{id}", parent.trim_matches('/'))
    }
}

/// A slice's path in the cgroup tree: systemd nests `a-b.slice` inside `a.slice`, so
/// `a-b.slice` lives at `a.slice/a-b.slice`.
pub fn slice_path(slice: &str) -> PathBuf {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return PathBuf::from(slice.trim_matches('/'));
    };
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    path
}

/// A container's cgroup path relative to a hierarchy's root: `parent/id` with cgroupfs, the
/// scope runc's systemd driver makes (`<slice path>/hearth-<id>.scope`) with systemd.
pub fn relative_dir(parent: &str, id: &str, systemd: bool) -> PathBuf {
    if systemd {
        slice_path(parent).join(format!("hearth-{id}.scope"))
    } else {
        Path::new(parent.trim_matches('/')).join(id)
    }
}

/// The memory controller's dir of a container: the v1 `memory` hierarchy when mounted, else
/// the unified (v2) one.
pub fn memory_dir(parent: &str, id: &str, systemd: bool) -> PathBuf {
    let rel = relative_dir(parent, id, systemd);
    let v1 = Path::new(CGROUP_ROOT).join("memory");
    if v1.is_dir() {
        return v1.join(rel);
    }
    let hybrid = Path::new(CGROUP_ROOT).join("unified");
    if hybrid.join("cgroup.controllers").exists() {
        return hybrid.join(rel);
    }
    Path::new(CGROUP_ROOT).join(rel)
}

/// Whether the kernel's OOM killer acted in this memory cgroup: `oom_kill` of v2's
/// memory.events, or of v1's memory.oom_control (kernels since 4.13), else `under_oom`, else
/// any failed charge.
pub fn oom_killed(memory_dir: &Path) -> bool {
    if let Ok(text) = fs::read_to_string(memory_dir.join("memory.events")) {
        let kills = text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse::<u64>().ok()));
        return kills.is_some_and(|n| n > 0);
    }
    if let Ok(text) = fs::read_to_string(memory_dir.join("memory.oom_control")) {
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next().and_then(|v| v.parse::<u64>().ok())) {
                (Some("oom_kill"), Some(n)) => return n > 0,
                (Some("under_oom"), Some(n)) if n > 0 => return true,
                _ => {}
            }
        }
    }
    fs::read_to_string(memory_dir.join("memory.failcnt"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// A limit the kernel refused (or a file that could not be opened or read).
#[derive(Debug, thiserror::Error)]
#[error("writing {value} to {path}: {source}")]
pub struct LimitError {
    pub path: PathBuf,
    pub value: String,
    #[source]
    pub source: io::Error,
}

/// Whether `memory_dir` is in a cgroup v1 memory hierarchy (else it is a v2 dir holding every
/// controller).
pub fn is_v1(memory_dir: &Path) -> bool {
    memory_dir.starts_with(Path::new(CGROUP_ROOT).join("memory"))
}

/// The dir of the same cgroup under another v1 controller (`cpu`, `pids`); the same dir on v2.
pub fn controller_dir(memory_dir: &Path, controller: &str) -> PathBuf {
    let root = Path::new(CGROUP_ROOT);
    match memory_dir.strip_prefix(root.join("memory")) {
        Ok(rel) => root.join(controller).join(rel),
        Err(_) => memory_dir.to_path_buf(),
    }
}

/// cgroup v2's cpu.weight for a v1 cpu.shares value, with runc's conversion (so a resized
/// container has what one created at that size has).
pub fn cpu_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

fn write_value(path: &Path, value: u64) -> Result<(), LimitError> {
    fs::write(path, value.to_string()).map_err(|source| LimitError {
        path: path.to_owned(),
        value: value.to_string(),
        source,
    })
}

/// Gives the live cgroup whose memory dir is `memory_dir` the limits a container of
/// `memory_bytes` is created with (`bundle::config`): the memory limit, swap included (no
/// swap beyond it), and the CPU share. v1: `memory.limit_in_bytes` may never pass
/// `memory.memsw.limit_in_bytes`, so a growing limit writes memsw first and a shrinking one
/// writes it last. A limit below what the cgroup already uses fails (EBUSY once reclaim cannot
/// get under it): nothing was changed then, and the error says so.
///
/// Plain writes of a few bytes to cgroupfs (no disk), so callers on an async thread may call
/// this directly.
pub fn set_limits(memory_dir: &Path, memory_bytes: u64, cpu_shares: u64) -> Result<(), LimitError> {
    if is_v1(memory_dir) {
        let limit = memory_dir.join("memory.limit_in_bytes");
        let memsw = memory_dir.join("memory.memsw.limit_in_bytes");
        // Without swap accounting (no memsw file) the memory limit alone bounds the container.
        let has_memsw = memsw.exists();
        let current = fs::read_to_string(&limit)
            .map_err(|source| LimitError { path: limit.clone(), value: "(read)".into(), source })?
            .trim()
            .parse::<u64>()
            .unwrap_or(u64::MAX);
        if memory_bytes > current {
            if has_memsw {
                write_value(&memsw, memory_bytes)?;
            }
            write_value(&limit, memory_bytes)?;
        } else {
            write_value(&limit, memory_bytes)?;
            if has_memsw {
                write_value(&memsw, memory_bytes)?;
            }
        }
        write_value(&controller_dir(memory_dir, "cpu").join("cpu.shares"), cpu_shares)
    } else {
        write_value(&memory_dir.join("memory.max"), memory_bytes)?;
        write_value(&memory_dir.join("cpu.weight"), cpu_weight(cpu_shares))
    }
}

/// Reads one number from a cgroup file (`memory.limit_in_bytes`, `cpu.shares`, ...).
pub fn read_value(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every hierarchy's dir for `parent` (a path, or a slice name for the systemd driver): one
/// per v1 controller mount and the unified one.
fn parent_dirs(parent: &str) -> Vec<PathBuf> {
    let rel = if parent.ends_with(".slice") {
        slice_path(parent)
    } else {
        PathBuf::from(parent.trim_matches('/'))
    };
    let Ok(entries) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(&rel))
        .filter(|p| p.is_dir())
        .collect();
    // cgroup2 mounted directly at the root (pure v2 host).
    let direct = Path::new(CGROUP_ROOT).join(&rel);
    if direct.join("cgroup.procs").exists() && !dirs.contains(&direct) {
        dirs.push(direct);
    }
    dirs
}

/// The cgroup dirs of containers under `parent` (cgroupfs driver), by container id, in every
/// hierarchy.
pub fn leftover_dirs(parent: &str) -> Vec<(String, PathBuf)> {
    scan(parent, false)
}

/// The scopes of containers in `slice` (systemd driver), by container id, in every hierarchy.
/// Only `hearth-<id>.scope` dirs count: a foreign unit put in the slice is not ours to kill.
pub fn leftover_scopes(slice: &str) -> Vec<(String, PathBuf)> {
    scan(slice, true)
}

fn scan(parent: &str, systemd: bool) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for dir in parent_dirs(parent) {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = if systemd {
                match name.strip_prefix("hearth-").and_then(|n| n.strip_suffix(".scope")) {
                    Some(id) => id.to_owned(),
                    None => continue,
                }
            } else {
                name
            };
            found.push((id, entry.path()));
        }
    }
    found
}

/// Kills every process in the cgroup dir and removes it. Only called on dirs under the hearth
/// parent whose container runc no longer knows, so every pid in it is a leftover of ours.
pub async fn remove_leftover(dir: &Path) -> io::Result<()> {
    for attempt in 0..RMDIR_ATTEMPTS {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<libc::pid_t>().ok()) {
                // SAFETY: kill(2) with a pid read from the leftover cgroup and a constant
                // signal; it touches no memory of ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt + 1 == RMDIR_ATTEMPTS => return Err(e),
            Err(_) => tokio::time::sleep(RMDIR_PAUSE).await,
        }
    }
    Ok(())
}

/// Removes the parent dirs themselves when empty (best effort: another invoker sharing the
/// parent may still have containers there, and then rmdir fails harmlessly).
pub fn remove_empty_parents(parent: &str) {
    for dir in parent_dirs(parent) {
        let _ = fs::remove_dir(&dir);
    }
}

/// Whether any cgroup dir of container `id` under `parent` exists in any hierarchy.
pub fn exists(parent: &str, id: &str) -> bool {
    parent_dirs(parent).iter().any(|d| d.join(id).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(cgroups_path("hearth", "c1", false), "/hearth/c1");
        assert_eq!(cgroups_path("/hearth/t/", "c1", false), "/hearth/t/c1");
        assert_eq!(cgroups_path("hearth.slice", "c1", true), "hearth.slice:hearth:c1");
        assert_eq!(relative_dir("hearth", "c1", false), Path::new("hearth/c1"));
        assert_eq!(
            relative_dir("hearth.slice", "c1", true),
            Path::new("hearth.slice/hearth-c1.scope")
        );
        assert_eq!(slice_path("a-b.slice"), Path::new("a.slice/a-b.slice"));
    }

    #[test]
    fn controller_dirs_and_weights() {
        let mem = Path::new(CGROUP_ROOT).join("memory/hearth/c1");
        assert!(is_v1(&mem));
        assert_eq!(controller_dir(&mem, "cpu"), Path::new(CGROUP_ROOT).join("cpu/hearth/c1"));
        let v2 = Path::new(CGROUP_ROOT).join("hearth/c1");
        assert!(!is_v1(&v2));
        assert_eq!(controller_dir(&v2, "cpu"), v2);
        // runc's conversion: 2 -> 1, 262144 -> 10000, 1024 -> 39.
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1024), 39);
    }

    #[test]
    fn oom_counter_is_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(!oom_killed(dir.path()));
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(oom_killed(dir.path()));
        assert!(!oom_killed(&dir.path().join("missing")));
        let v2 = tempfile::tempdir().unwrap();
        fs::write(v2.path().join("memory.events"), "low 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(oom_killed(v2.path()));
        fs::write(v2.path().join("memory.events"), "low 0\noom 0\noom_kill 0\n").unwrap();
        assert!(!oom_killed(v2.path()));
    }
}
