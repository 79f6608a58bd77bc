//! The OCI bundle of one container: its `config.json`, written by hand with `serde_json`.
//!
//! Root is the shared read-only [`Skeleton`]; the host's runtime paths, the launcher dir and the
//! container's code dir are bind-mounted read-only over it; /tmp is a private size-limited
//! tmpfs. The process runs as nobody with no capabilities, no_new_privileges and the
//! [`seccomp`](super::seccomp) profile, in its own pid/mount/ipc/uts (and, unless granted
//! network, network) namespaces, in a cgroup under the configured parent. This module only
//! describes a container; it never runs one.

use std::path::Path;

use serde_json::{json, Value};

use crate::model::Runtime;
use crate::runtime::kinds;

use super::seccomp;
use super::skeleton::Skeleton;

/// Unprivileged uid/gid of every action process (nobody/nogroup).
pub const ACTION_UID: u32 = 65534;
/// Processes and threads one container may hold. Node alone starts about 11 threads and
/// Python 1; 64 leaves room for an action's own threads and a few subprocesses while a fork
/// bomb stops at once instead of exhausting the host's pid space.
pub const PIDS_LIMIT: i64 = 64;
/// Size of the private /tmp. Its pages are charged to the container's memory cgroup as well,
/// so this bounds disk-like use without granting memory beyond the action's limit.
pub const TMP_SIZE: &str = "size=64m";
/// cpu.shares for a container of this many MB, as OpenWhisk does: proportional to memory,
/// so that a 256 MB action (OpenWhisk's default) gets the kernel's default weight of 1024.
pub fn cpu_shares(memory_mb: u64) -> u64 {
    (memory_mb * 1024 / 256).max(2)
}

/// Open files per process; Node needs a few dozen, actions rarely more than hundreds.
const NOFILE: u64 = 1024;

/// runc's default masked paths (`runc spec`).
const MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
];
/// runc's default read-only paths (`runc spec`), plus /proc/scsi.
const READONLY_PATHS: [&str; 7] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/scsi",
    "/sys/fs/cgroup",
];

/// What one bundle is made of.
#[derive(Debug, Clone, Copy)]
pub struct BundleSpec<'a> {
    pub id: &'a str,
    pub runtime: Runtime,
    pub memory_mb: u64,
    pub network: bool,
    pub skeleton: &'a Skeleton,
    pub launcher_dir: &'a Path,
    pub code_dir: &'a Path,
    /// runc's `cgroupsPath`: `/parent/id`, or `slice:prefix:name` with the systemd driver.
    pub cgroups_path: &'a str,
}

fn bind_ro(source: &Path, destination: &str) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]
    })
}

/// The `config.json` of a container.
pub fn config(spec: &BundleSpec<'_>) -> Value {
    let memory = spec.memory_mb * 1024 * 1024;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", TMP_SIZE]}),
        bind_ro(Path::new("/usr"), "/usr"),
        bind_ro(Path::new("/etc/ssl"), "/etc/ssl"),
    ];
    for dir in &spec.skeleton.bind_dirs {
        mounts.push(bind_ro(&Path::new("/").join(dir), &format!("/{dir}")));
    }
    if spec.network {
        mounts.push(bind_ro(Path::new("/etc/resolv.conf"), "/etc/resolv.conf"));
    }
    mounts.push(bind_ro(spec.launcher_dir, kinds::LAUNCHER_MOUNT));
    mounts.push(bind_ro(spec.code_dir, kinds::CODE_MOUNT));

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
    ];
    if !spec.network {
        namespaces.push(json!({"type": "network"}));
    }
    let empty: [&str; 0] = [];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": ACTION_UID, "gid": ACTION_UID},
            "args": kinds::argv(spec.runtime),
            "env": kinds::env(spec.runtime),
            "cwd": "/tmp",
            "capabilities": {
                "bounding": empty, "effective": empty, "inheritable": empty,
                "permitted": empty, "ambient": empty
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}
            ],
            "noNewPrivileges": true
        },
        "root": {"path": spec.skeleton.root, "readonly": true},
        "hostname": hostname(spec.id),
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": spec.cgroups_path,
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": memory, "swap": memory},
                "pids": {"limit": PIDS_LIMIT},
                "cpu": {"shares": cpu_shares(spec.memory_mb)}
            },
            "seccomp": seccomp::profile(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS
        }
    })
}

/// The uts hostname: the container id, cut to the kernel's 64 bytes.
fn hostname(id: &str) -> &str {
    let mut end = id.len().min(64);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn skeleton() -> Skeleton {
        Skeleton { root: PathBuf::from("/state/rootfs"), bind_dirs: vec![] }
    }

    fn spec<'a>(sk: &'a Skeleton, network: bool) -> BundleSpec<'a> {
        BundleSpec {
            id: "c1",
            runtime: Runtime::Python,
            memory_mb: 128,
            network,
            skeleton: sk,
            launcher_dir: Path::new("/state/launchers"),
            code_dir: Path::new("/state/code/c1"),
            cgroups_path: "/hearth/c1",
        }
    }

    #[test]
    fn isolated_by_default() {
        let sk = skeleton();
        let c = config(&spec(&sk, false));
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(c["process"]["user"]["uid"], 65534);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert!(c["process"]["capabilities"]["bounding"].as_array().unwrap().is_empty());
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 128 * 1024 * 1024);
        assert_eq!(c["linux"]["resources"]["memory"]["swap"], 128 * 1024 * 1024);
        assert_eq!(c["linux"]["resources"]["cpu"]["shares"], 512);
        let mounts = c["mounts"].as_array().unwrap();
        let action = mounts.iter().find(|m| m["destination"] == "/action").unwrap();
        assert_eq!(action["source"], "/state/code/c1");
        assert!(action["options"].as_array().unwrap().iter().any(|o| o == "ro"));
    }

    #[test]
    fn network_grant_drops_the_netns() {
        let sk = skeleton();
        let c = config(&spec(&sk, true));
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
        let mounts = c["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["destination"] == "/etc/resolv.conf"));
    }

    #[test]
    fn shares_follow_memory() {
        assert_eq!(cpu_shares(256), 1024);
        assert_eq!(cpu_shares(512), 2048);
        assert_eq!(hostname(&"x".repeat(80)).len(), 64);
    }
}
