//! [`RuncFactory`]: makes action containers with runc, and reclaims what an earlier invoker
//! left behind.
//!
//! Layout under the state dir: `rootfs/` (the shared [`Skeleton`]), `launchers/` (written at
//! start-up), `bundles/<id>/` (config.json, runc.log) and `code/<id>/` (the action's code,
//! mounted at /action; for an image container its code as one file, read back for the
//! proxy's /init). Image containers' roots come from the image source the daemon sets
//! ([`RuncFactory::set_image_source`]). runc keeps its own state under a root of ours, so `runc --root R list`
//! shows exactly hearth's containers. With systemd's cgroup driver each container is its own
//! scope in a slice and, when machined is given, a registered machine (registered by a
//! spawned task after `runc run --detach`, never on the warm path); [`RuncFactory::note_scope_stopping`]
//! tells a running container that its scope is being stopped from outside, and [`RuncFactory::adopt`] takes over a
//! container an earlier invoker left running (live restore). This module never decides which
//! container to make or when to destroy or keep one; the invoker's pool does.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::unix::pipe;

use crate::launcher::install;
use crate::systemd::machined::Machined;

use super::bundle::{self, BundleSpec};
use super::cgroup;
use super::image::{ImageRoot, ImageSource, SourceCell};
use super::instance::{RuncContainer, INIT_TIMEOUT};
use super::logs::LogPipes;
use super::proxy::Proxy;
use super::runc_cli::{self, ChildStdio, Runc};
use super::skeleton::Skeleton;
use super::{ContainerError, ContainerFactory, ContainerSpec};

/// Longest container id accepted: it becomes a path component, a cgroup name and a hostname.
pub const MAX_ID_LEN: usize = 64;

/// Where runc and the containers' files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncConfig {
    /// The runc binary.
    pub runc: PathBuf,
    /// runc's `--root`: ours alone, so that everything listed there is a hearth container.
    pub root: PathBuf,
    /// Bundles, code dirs, the rootfs skeleton and the launchers.
    pub state_dir: PathBuf,
    /// The cgroup parent: a path like `hearth` with cgroupfs, a slice with systemd.
    pub cgroup_parent: String,
    /// Use runc's systemd cgroup driver (`--systemd-cgroup`).
    pub systemd_cgroup: bool,
}

impl Default for RuncConfig {
    fn default() -> Self {
        Self {
            runc: PathBuf::from("/usr/sbin/runc"),
            root: PathBuf::from("/run/hearth/runc"),
            state_dir: PathBuf::from("/run/hearth/containers"),
            cgroup_parent: "hearth".to_owned(),
            systemd_cgroup: false,
        }
    }
}

/// What every container of one factory shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: RuncConfig,
    pub runc: Runc,
    pub skeleton: Skeleton,
    pub launcher_dir: PathBuf,
    pub bundles: PathBuf,
    pub code: PathBuf,
    /// systemd-machined, when there is a system bus: containers are registered at create.
    pub machined: Option<Machined>,
    /// Where image containers' roots come from (the host's image store).
    pub images: SourceCell,
    /// Containers taken over from an earlier invoker (live restore): never reclaimed.
    keep: Mutex<HashSet<String>>,
    /// Live containers whose scope went `deactivating` (stopped while its processes ran:
    /// `machinectl terminate`, `systemctl stop`), so that a run ending on a closed pipe can
    /// say why. A container whose process exits by itself never is.
    stop_jobs: Mutex<HashSet<String>>,
    stop_jobs_changed: tokio::sync::Notify,
}

impl Shared {
    /// Whether the scope of `id` was seen being stopped while it was ours.
    pub fn stop_requested(&self, id: &str) -> bool {
        self.stop_jobs.lock().unwrap_or_else(PoisonError::into_inner).contains(id)
    }

    /// Waits up to `max` for `id`'s scope to be seen stopping. systemd announces the state
    /// change after it sent the kill, so the signal usually trails the pipe's end of file by
    /// a few milliseconds.
    pub async fn wait_stop_requested(&self, id: &str, max: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.stop_jobs_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.stop_requested(id) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(max, wait).await.is_ok()
    }

    /// Forgets a container that is gone for good.
    pub fn forget(&self, id: &str) {
        self.stop_jobs.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

/// Makes runc containers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RuncFactory {
    shared: Arc<Shared>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.display().to_string();
    move |source| ContainerError::Io { what, path, source }
}

fn make_dir(path: &Path, mode: u32) -> Result<(), ContainerError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_err("cannot create", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot set permissions of", path))
}

/// Ids become paths, cgroup names and hostnames: only a conservative alphabet passes.
fn check_id(id: &str) -> Result<(), ContainerError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ContainerError::Other(format!(
            "container id {id:?} must be 1..={MAX_ID_LEN} of [A-Za-z0-9_.-], not starting with '.'"
        )))
    }
}

impl RuncFactory {
    /// Prepares the state dir (skeleton, launchers, bundle and code dirs) and runc's root.
    /// Does not touch leftovers: call [`ContainerFactory::reclaim_leftovers`] for that.
    pub fn new(config: RuncConfig) -> Result<Self, ContainerError> {
        Self::with_machined(config, None)
    }

    /// As [`RuncFactory::new`], registering every container with `machined` (class
    /// container, service hearth) right after it started. Use with `systemd_cgroup` so each
    /// container is its own scope, which is what machined attaches the machine to.
    pub fn with_machined(
        config: RuncConfig,
        machined: Option<Machined>,
    ) -> Result<Self, ContainerError> {
        if !config.runc.is_file() {
            return Err(ContainerError::Other(format!(
                "runc not found at {} (install Debian's runc package)",
                config.runc.display()
            )));
        }
        make_dir(&config.state_dir, 0o711)?;
        make_dir(&config.root, 0o700)?;
        let skeleton = Skeleton::prepare(&config.state_dir.join("rootfs"))?;
        let launcher_dir = config.state_dir.join("launchers");
        install::install_all(&launcher_dir).map_err(|e| ContainerError::Io {
            what: "cannot install launcher",
            path: e.path.display().to_string(),
            source: e.source,
        })?;
        let bundles = config.state_dir.join("bundles");
        let code = config.state_dir.join("code");
        make_dir(&bundles, 0o700)?;
        // Traversable by the container's uid: its code dir is bind-mounted from here.
        make_dir(&code, 0o711)?;
        let runc = Runc {
            bin: config.runc.clone(),
            root: config.root.clone(),
            systemd_cgroup: config.systemd_cgroup,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                runc,
                skeleton,
                launcher_dir,
                bundles,
                code,
                machined,
                images: SourceCell::default(),
                keep: Mutex::new(HashSet::new()),
                stop_jobs: Mutex::new(HashSet::new()),
                stop_jobs_changed: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Gives the factory the host's image store, where image containers' roots come from
    /// (the daemon passes its `ImageStore`). Set once; returns false when one was set already.
    pub fn set_image_source(&self, source: Arc<dyn ImageSource>) -> bool {
        self.shared.images.set(source)
    }

    /// The root of image `digest` on this host, or why there is none.
    fn image_root(&self, digest: &crate::model::ImageDigest) -> Result<ImageRoot, ContainerError> {
        let source = self.shared.images.get().ok_or_else(|| {
            ContainerError::Other(format!("image {digest}: this invoker has no image store"))
        })?;
        match source.get(digest) {
            Ok(Some(root)) => Ok(root),
            Ok(None) => Err(ContainerError::Other(format!(
                "image {digest} is not in this host's image store (removed?)"
            ))),
            Err(e) => Err(ContainerError::Other(format!("image {digest}: {e}"))),
        }
    }

    /// Whether containers are registered with machined.
    pub fn registers_machines(&self) -> bool {
        self.shared.machined.is_some()
    }

    /// systemd is stopping the scope of container `id` (see `Machined::scope_stops`). Only
    /// live containers of ours are noted (their bundle exists); our own deletes are noted
    /// too, harmlessly: nothing runs in them any more.
    pub fn note_scope_stopping(&self, id: &str) -> bool {
        if check_id(id).is_err() || !self.shared.bundles.join(id).is_dir() {
            return false;
        }
        self.shared.stop_jobs.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned());
        self.shared.stop_jobs_changed.notify_waiters();
        true
    }

    /// Takes over a container an earlier invoker started (live restore) from its four pipe
    /// ends as stored: stdin (write end), stdout, stderr and the reply pipe (read ends). It
    /// must still run under runc, with its bundle and code dir in place; it is then kept out
    /// of [`ContainerFactory::reclaim_leftovers`].
    pub async fn adopt(
        &self,
        spec: &ContainerSpec,
        fds: [OwnedFd; 4],
    ) -> Result<RuncContainer, ContainerError> {
        check_id(&spec.id)?;
        let shared = &self.shared;
        let bundle_dir = shared.bundles.join(&spec.id);
        let code_dir = shared.code.join(&spec.id);
        if !bundle_dir.is_dir() || !code_dir.is_dir() {
            return Err(ContainerError::Other(format!(
                "container {} has no bundle or code dir under {}",
                spec.id,
                shared.config.state_dir.display()
            )));
        }
        let status = shared.runc.status(&spec.id).await?;
        if status != "running" {
            return Err(ContainerError::Other(format!("container {} is {status}", spec.id)));
        }
        let pipe_err = |e| ContainerError::Io {
            what: "cannot adopt pipe of",
            path: spec.id.clone(),
            source: e,
        };
        let [stdin, stdout, stderr, reply] = fds;
        let stdin = pipe::Sender::from_owned_fd(stdin).map_err(pipe_err)?;
        let reply = pipe::Receiver::from_owned_fd(reply).map_err(pipe_err)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout).map_err(pipe_err)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr).map_err(pipe_err)?;
        let logs = LogPipes::new(stdout, stderr, usize::MAX);
        shared.keep.lock().unwrap_or_else(PoisonError::into_inner).insert(spec.id.clone());
        tracing::info!(container = %spec.id, "adopted a warm container from the previous invoker");
        Ok(RuncContainer::new(
            spec,
            Arc::clone(shared),
            code_dir,
            bundle_dir,
            stdin,
            BufReader::with_capacity(64 * 1024, reply),
            logs,
        ))
    }

    pub fn config(&self) -> &RuncConfig {
        &self.shared.config
    }

    /// Ids of the containers runc knows under our root (for checks and the status output).
    pub async fn list(&self) -> Result<Vec<String>, ContainerError> {
        self.shared.runc.list().await
    }

    async fn create_inner(
        &self,
        spec: &ContainerSpec,
        bundle_dir: &Path,
        code_dir: &Path,
    ) -> Result<RuncContainer, ContainerError> {
        let shared = &self.shared;
        make_dir(bundle_dir, 0o700)?;
        make_dir(code_dir, 0o755)?;
        let cgroups_path = cgroup::cgroups_path(
            &shared.config.cgroup_parent,
            &spec.id,
            shared.config.systemd_cgroup,
        );
        let bundle_spec = BundleSpec {
            id: &spec.id,
            runtime: spec.runtime,
            memory_mb: spec.memory_mb,
            network: spec.network,
            skeleton: &shared.skeleton,
            launcher_dir: &shared.launcher_dir,
            code_dir,
            cgroups_path: &cgroups_path,
        };
        let image = match &spec.runtime {
            crate::model::Runtime::Image(digest) => Some(self.image_root(digest)?),
            _ => None,
        };
        let mut config = match &image {
            Some(root) => {
                if spec.network {
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::warn!(
                            "the invoker grants actions network, but image containers get only \
                             their loopback (a network for image containers is later work)"
                        )
                    });
                }
                bundle::image_config(&bundle_spec, root)
            }
            None => bundle::config(&bundle_spec),
        };
        if shared.config.systemd_cgroup {
            // Properties of the container's scope, passed by runc's systemd driver. The
            // launcher is PID 1 of its pid namespace and has no SIGTERM handler, so the
            // kernel drops a SIGTERM sent to it: `machinectl terminate` (a stop of the scope)
            // would wait out the stop timeout. The launcher holds nothing worth a graceful
            // stop, so the scope is stopped with SIGKILL.
            config["annotations"] = serde_json::json!({
                "org.systemd.property.KillSignal": "9",
                "org.systemd.property.TimeoutStopUSec": "uint64 5000000",
            });
        }
        let config_path = bundle_dir.join("config.json");
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| ContainerError::Other(format!("config.json of {}: {e}", spec.id)))?;
        tokio::fs::write(&config_path, bytes)
            .await
            .map_err(io_err("cannot write", &config_path))?;

        let pipe_err = |e| ContainerError::Io {
            what: "cannot create pipe for",
            path: spec.id.clone(),
            source: e,
        };
        let (stdin_r, stdin_w) = runc_cli::pipe().map_err(pipe_err)?;
        let (stdout_r, stdout_w) = runc_cli::pipe().map_err(pipe_err)?;
        let (stderr_r, stderr_w) = runc_cli::pipe().map_err(pipe_err)?;
        let (reply_r, reply_w) = runc_cli::pipe().map_err(pipe_err)?;
        let stdin = pipe::Sender::from_owned_fd(stdin_w).map_err(pipe_err)?;
        let reply = pipe::Receiver::from_owned_fd(reply_r).map_err(pipe_err)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout_r).map_err(pipe_err)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr_r).map_err(pipe_err)?;

        let stdio =
            ChildStdio { stdin: stdin_r, stdout: stdout_w, stderr: stderr_w, reply: reply_w };
        shared.runc.run_detached(&spec.id, bundle_dir, stdio).await?;
        // From here on runc knows the container: a failure must delete it.
        let logs = LogPipes::new(stdout, stderr, usize::MAX);
        let mut container = RuncContainer::new(
            spec,
            Arc::clone(shared),
            code_dir.to_owned(),
            bundle_dir.to_owned(),
            stdin,
            BufReader::with_capacity(64 * 1024, reply),
            logs,
        );
        let root = image.as_ref().map_or(&shared.skeleton.root, |i| &i.rootfs);
        if image.is_some() {
            // Started means waiting for /init: the proxy listens and is connected.
            let connected = match read_pid(bundle_dir).await {
                Ok(pid) => Proxy::connect(&spec.id, pid, INIT_TIMEOUT)
                    .await
                    .map_err(|e| ContainerError::Other(e.to_string())),
                Err(e) => Err(e),
            };
            match connected {
                Ok(proxy) => container.set_proxy(proxy),
                Err(e) => {
                    container.destroy_now().await;
                    return Err(e);
                }
            }
        }
        if let Some(machined) = &shared.machined {
            spawn_register(machined.clone(), root, &spec.id, bundle_dir);
        }
        Ok(container)
    }
}

impl ContainerFactory for RuncFactory {
    type Container = RuncContainer;

    fn resolve_image(&self, name: &str) -> Result<Option<ImageRoot>, String> {
        match self.shared.images.get() {
            Some(source) => source.resolve(name),
            None => Ok(None),
        }
    }

    #[tracing::instrument(name = "container.create", skip_all, fields(id = %spec.id, runtime = spec.runtime.as_str(), memory_mb = spec.memory_mb))]
    async fn create(&self, spec: &ContainerSpec) -> Result<RuncContainer, ContainerError> {
        check_id(&spec.id)?;
        let started = std::time::Instant::now();
        let bundle_dir = self.shared.bundles.join(&spec.id);
        let code_dir = self.shared.code.join(&spec.id);
        if bundle_dir.exists() || code_dir.exists() {
            return Err(ContainerError::Other(format!("container {} already exists", spec.id)));
        }
        match self.create_inner(spec, &bundle_dir, &code_dir).await {
            Ok(c) => {
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "container started"
                );
                Ok(c)
            }
            Err(e) => {
                // runc run may have failed half-way; delete is a no-op when it knows nothing.
                if let Err(del) = self.shared.runc.delete_force(&spec.id).await {
                    tracing::debug!(error = %del, "delete after failed create");
                }
                remove_dir_logged(&bundle_dir).await;
                remove_dir_logged(&code_dir).await;
                tracing::warn!(error = %e, "container create failed");
                Err(e)
            }
        }
    }

    #[tracing::instrument(name = "container.reclaim", skip_all)]
    async fn reclaim_leftovers(&self) -> Result<usize, ContainerError> {
        let shared = &self.shared;
        let ids = shared.runc.list().await?;
        let keep = shared.keep.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut reclaimed = 0;
        for id in ids.iter().filter(|id| !keep.contains(*id)) {
            match shared.runc.delete_force(id).await {
                Ok(()) => reclaimed += 1,
                Err(e) => tracing::warn!(%id, error = %e, "cannot delete leftover container"),
            }
        }
        unmount_under(&shared.config.state_dir);
        for dir in [&shared.bundles, &shared.code] {
            let mut entries = tokio::fs::read_dir(dir).await.map_err(io_err("cannot list", dir))?;
            while let Ok(Some(entry)) = entries.next_entry().await {
                if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                    remove_dir_logged(&entry.path()).await;
                }
            }
        }
        if shared.config.systemd_cgroup {
            // Scopes whose container runc no longer knows: kill what is left in them; systemd
            // removes an empty scope by itself.
            for (id, dir) in cgroup::leftover_scopes(&shared.config.cgroup_parent) {
                if keep.contains(&id) {
                    continue;
                }
                if let Err(e) = cgroup::remove_leftover(&dir).await {
                    tracing::debug!(%id, path = %dir.display(), error = %e, "leftover scope not removed yet");
                }
            }
        } else {
            for (id, dir) in cgroup::leftover_dirs(&shared.config.cgroup_parent) {
                if let Err(e) = cgroup::remove_leftover(&dir).await {
                    tracing::warn!(%id, path = %dir.display(), error = %e, "cannot remove leftover cgroup");
                }
            }
            cgroup::remove_empty_parents(&shared.config.cgroup_parent);
        }
        tracing::info!(reclaimed, "leftover containers reclaimed");
        Ok(reclaimed)
    }
}

/// Registers a started container with machined off the create path: the leader is the init
/// pid runc wrote into the bundle, the root the shared rootfs. A failure only costs the
/// `machinectl` view of this container, so it is logged, not returned.
fn spawn_register(machined: Machined, root: &Path, id: &str, bundle_dir: &Path) {
    let id = id.to_owned();
    let pid_file = bundle_dir.join(runc_cli::PID_FILE);
    let root = root.to_owned();
    tokio::spawn(async move {
        let pid = match tokio::fs::read_to_string(&pid_file).await {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(pid) => pid,
                Err(e) => {
                    tracing::warn!(container = %id, path = %pid_file.display(), error = %e, "bad init pid file");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(container = %id, path = %pid_file.display(), error = %e, "no init pid file");
                return;
            }
        };
        let started = std::time::Instant::now();
        match machined.register(&id, pid, &root).await {
            Ok(()) => tracing::debug!(
                container = %id,
                leader = pid,
                elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "registered with machined"
            ),
            Err(e) => tracing::warn!(container = %id, error = %e, "machine registration failed"),
        }
    });
}

/// The host pid of a started container's first process, which runc wrote into the bundle.
async fn read_pid(bundle_dir: &Path) -> Result<u32, ContainerError> {
    let path = bundle_dir.join(runc_cli::PID_FILE);
    let text = tokio::fs::read_to_string(&path).await.map_err(io_err("cannot read", &path))?;
    text.trim().parse::<u32>().map_err(|e| {
        ContainerError::Other(format!("bad pid {:?} in {}: {e}", text.trim(), path.display()))
    })
}

pub(crate) async fn remove_dir_logged(path: &Path) {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove"),
    }
}

impl RuncConfig {
    /// After the pool stopped for good: removes runc's root and the state dir (bundles, code
    /// dirs, the rootfs skeleton), so that a stopped invoker leaves no directory it made.
    /// Kept, and `false` returned, while any container is left in runc's root (live restore
    /// handed them on) or anything is mounted below either: a recursive removal must never
    /// reach into a mount.
    pub fn release_dirs(&self) -> bool {
        let busy = std::fs::read_dir(&self.root)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if busy {
            tracing::debug!(root = %self.root.display(), "containers remain; state kept");
            return false;
        }
        let mounted = |dir: &Path| {
            std::fs::read_to_string("/proc/self/mountinfo").map_or(true, |info| {
                info.lines()
                    .filter_map(|l| l.split(' ').nth(4))
                    .any(|p| Path::new(&unescape_mountinfo(p)).starts_with(dir))
            })
        };
        if mounted(&self.root) || mounted(&self.state_dir) {
            tracing::warn!(state_dir = %self.state_dir.display(), "something is mounted below the state dir; kept");
            return false;
        }
        for dir in [&self.root, &self.state_dir] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove");
                    return false;
                }
            }
        }
        true
    }
}

/// Lazily unmounts every mount point at or below `dir`, deepest first. runc mounts inside the
/// container's own mount namespace, so normally there is nothing; this is for a crash in the
/// middle of a mount propagation mishap, and never touches anything outside `dir`.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: umount2 with a valid NUL-terminated path we own and a constant flag.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(path = %point.display(), error = %e, "cannot unmount leftover");
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("hearth-python-1").is_ok());
        assert!(check_id("a.b_c").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("../x").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
        assert!(check_id("a/b").is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
