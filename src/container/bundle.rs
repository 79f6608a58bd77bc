//! The OCI bundle of one container: its `config.json`, written by hand with `serde_json`.
//!
//! Root is the shared read-only [`Skeleton`]; the host's runtime paths, the launcher dir and the
//! container's code dir are bind-mounted read-only over it; /tmp is a private size-limited
//! tmpfs. The process runs as nobody with no capabilities, no_new_privileges and the
//! [`seccomp`](super::seccomp) profile, in its own pid/mount/ipc/uts (and, unless granted
//! network, network) namespaces, in a cgroup under the configured parent. An image container
//! ([`image_config`]) has the image's root and process instead, and always its own network
//! namespace. This module only describes a container; it never runs one.

use std::path::Path;

use serde_json::{json, Value};

use crate::launcher::kinds;
use crate::model::Runtime;

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

/// The kernel file systems every container gets, and its private /tmp.
fn system_mounts() -> Vec<Value> {
    vec![
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
    ]
}

/// The `config.json` of a container.
pub fn config(spec: &BundleSpec<'_>) -> Value {
    let mut mounts = system_mounts();
    mounts.push(bind_ro(Path::new("/usr"), "/usr"));
    mounts.push(bind_ro(Path::new("/etc/ssl"), "/etc/ssl"));
    for dir in &spec.skeleton.bind_dirs {
        mounts.push(bind_ro(&Path::new("/").join(dir), &format!("/{dir}")));
    }
    if spec.network {
        mounts.push(bind_ro(Path::new("/etc/resolv.conf"), "/etc/resolv.conf"));
    }
    mounts.push(bind_ro(spec.launcher_dir, kinds::LAUNCHER_MOUNT));
    mounts.push(bind_ro(spec.code_dir, kinds::CODE_MOUNT));

    let process = Process {
        args: kinds::argv(spec.runtime),
        env: kinds::env(spec.runtime),
        cwd: "/tmp".to_owned(),
    };
    assemble(spec, spec.skeleton.root.as_path(), process, mounts, !spec.network)
}

/// The process of a container.
struct Process {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
}

/// Size of the private tmpfs at the directory an image's action proxy writes the action into
/// (OpenWhisk's proxies unpack a zip action there): charged to the memory cgroup like /tmp.
pub const ACTION_DIR_SIZE: &str = "size=128m";

/// Where OpenWhisk's action proxies write the action they are given: the Go actionloop
/// proxy of openwhisk-runtime-go and the Python actionproxy of openwhisk-runtime-docker both
/// use `/action` (their working dir is below it).
pub const PROXY_ACTION_DIR: &str = "/action";

/// The `config.json` of an image container. The root is the image's unpacked root, shared
/// read-only by every container of the image; the process is the image's Entrypoint++Cmd
/// with its Env (plus PATH if it has none) and WorkingDir, under the same user, capabilities,
/// seccomp, cgroup limits and namespaces as every container, and always with its own network
/// namespace (loopback only), whatever `spec.network` says: a network for image containers is
/// later work, and sharing the host's would put the proxy's port 8080 on the host.
///
/// runc creates a missing mount point (and a missing cwd) in the root before making it
/// read-only, which would write into the shared image root. So a mount is made only where
/// its directory exists in the image (the image store creates /proc, /dev, /sys and /tmp
/// when it unpacks), and a WorkingDir that does not exist falls back to `/`. The private
/// writable places are tmpfs mounts: /tmp and the proxy's action dir ([`PROXY_ACTION_DIR`]).
pub fn image_config(spec: &BundleSpec<'_>, image: &super::image::ImageRoot) -> Value {
    let exists = |dest: &str| {
        let inside = image.rootfs.join(dest.trim_start_matches('/'));
        std::fs::symlink_metadata(inside).is_ok_and(|m| m.is_dir())
    };
    let mut mounts: Vec<Value> = system_mounts()
        .into_iter()
        .filter(|m| {
            let dest = m["destination"].as_str().unwrap_or("/");
            // /dev's sub-mounts are made inside /dev's own tmpfs: they need only /dev.
            let top = if dest.starts_with("/dev/") { "/dev" } else { dest };
            exists(top)
        })
        .collect();
    if exists(PROXY_ACTION_DIR) {
        // Owned by the action's user: runc gives a tmpfs the mode of the directory it covers
        // (0755 root in the images), so a mode option alone would leave it unwritable.
        let owner = format!("uid={ACTION_UID}");
        let group = format!("gid={ACTION_UID}");
        mounts.push(json!({"destination": PROXY_ACTION_DIR, "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=755", owner, group, ACTION_DIR_SIZE]}));
    }
    let mut env = image.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
    }
    let cwd = if image.working_dir.is_empty() || !exists(&image.working_dir) {
        "/".to_owned()
    } else {
        image.working_dir.clone()
    };
    let process = Process { args: image.args.clone(), env, cwd };
    assemble(spec, &image.rootfs, process, mounts, true)
}

/// The parts every container shares around its root, process and mounts.
fn assemble(
    spec: &BundleSpec<'_>,
    root: &Path,
    process: Process,
    mounts: Vec<Value>,
    own_network: bool,
) -> Value {
    let memory = spec.memory_mb * 1024 * 1024;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
    ];
    if own_network {
        namespaces.push(json!({"type": "network"}));
    }
    let empty: [&str; 0] = [];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": ACTION_UID, "gid": ACTION_UID},
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
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
        "root": {"path": root, "readonly": true},
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
    fn an_image_container_mounts_only_where_the_image_has_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proc", "dev", "action", "work"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let image = crate::container::image::ImageRoot {
            digest: crate::model::ImageDigest::from_bytes([1; 32]),
            rootfs: dir.path().to_owned(),
            args: vec!["/proxy".into()],
            env: vec!["A=1".into()],
            working_dir: "/work".into(),
        };
        let sk = skeleton();
        let c = image_config(&spec(&sk, true), &image);
        let dests: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/action"]);
        assert_eq!(c["root"]["path"], dir.path().to_str().unwrap());
        assert_eq!(c["process"]["args"], json!(["/proxy"]));
        assert_eq!(c["process"]["cwd"], "/work");
        assert_eq!(c["process"]["user"]["uid"], 65534);
        assert!(c["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=")));
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter().any(|n| n["type"] == "network"),
            "own netns even when network is granted"
        );
        let missing =
            crate::container::image::ImageRoot { working_dir: "/nowhere".into(), ..image };
        assert_eq!(image_config(&spec(&sk, false), &missing)["process"]["cwd"], "/");
    }

    #[test]
    fn shares_follow_memory() {
        assert_eq!(cpu_shares(256), 1024);
        assert_eq!(cpu_shares(512), 2048);
        assert_eq!(hostname(&"x".repeat(80)).len(), 64);
    }
}
