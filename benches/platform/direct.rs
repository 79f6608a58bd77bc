//! The floors that need containers but no platform: action containers made and driven
//! directly through the library's runc driver (the warm and throughput floors), and a bare
//! `runc run` of an equivalent bundle whose process exits at once (the cold floor).
//!
//! Everything here lives under the harness's own runc root, state dir and cgroup parent, so
//! the workspace sweep can remove exactly it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::container::bundle::{self, BundleSpec};
use hearth::container::skeleton::Skeleton;
use hearth::container::{
    cgroup, ActionContainer, ContainerFactory, ContainerSpec, RuncConfig, RuncContainer,
    RuncFactory,
};
use hearth::launcher::{code, InitSpec, RunSpec};
use hearth::model::Runtime;
use serde_json::{json, Map, Value};

use crate::workspace::{Workspace, RUNC};

#[derive(Debug)]
pub struct Direct {
    factory: RuncFactory,
    root: PathBuf,
    state: PathBuf,
    parent: String,
    seq: AtomicU32,
    tag: String,
}

impl Direct {
    pub fn new(ws: &Arc<Workspace>) -> anyhow::Result<Self> {
        let root = ws.run_path("direct-runc");
        let state = ws.run_path("direct-state");
        let parent = format!("hearth-bench-{}", ws.tag);
        ws.track_runc_root(&root, &parent, true);
        let factory = RuncFactory::new(RuncConfig {
            runc: RUNC.into(),
            root: root.clone(),
            state_dir: state.clone(),
            cgroup_parent: parent.clone(),
            systemd_cgroup: false,
        })
        .context("setting up the harness's own runc factory")?;
        Ok(Self { factory, root, state, parent, seq: AtomicU32::new(0), tag: ws.tag.clone() })
    }

    fn next_id(&self) -> String {
        format!("hb{}-{}", self.tag, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// A started, initialised container running `code`.
    pub async fn start(
        &self,
        runtime: Runtime,
        memory_mb: u64,
        code: &str,
    ) -> anyhow::Result<RuncContainer> {
        self.start_code(runtime, memory_mb, code.as_bytes(), false).await
    }

    /// As [`Direct::start`], with the code as the action stores it: text, or a zip when
    /// `binary` (a native action's `exec` in a zip, issue 15).
    pub async fn start_code(
        &self,
        runtime: Runtime,
        memory_mb: u64,
        code: &[u8],
        binary: bool,
    ) -> anyhow::Result<RuncContainer> {
        let spec = ContainerSpec { id: self.next_id(), runtime, memory_mb, network: false };
        let mut c = self.factory.create(&spec).await.context("creating a direct container")?;
        let init = InitSpec { action: "guest/floor".into(), entry_point: "main".into(), binary };
        let installed = code::install(c.code_dir(), runtime, code, binary);
        if let Err(e) = installed {
            c.destroy().await;
            return Err(e).context("installing code into a direct container");
        }
        if let Err(e) = c.init(&init).await {
            c.destroy().await;
            return Err(e).context("initialising a direct container");
        }
        Ok(c)
    }

    /// A started container whose launcher waits for its init: a stem cell, as the pool's
    /// prewarm filler makes.
    pub async fn stem_cell(
        &self,
        runtime: Runtime,
        memory_mb: u64,
    ) -> anyhow::Result<RuncContainer> {
        let spec = ContainerSpec { id: self.next_id(), runtime, memory_mb, network: false };
        self.factory.create(&spec).await.context("creating a direct stem cell")
    }

    /// What a prewarmed start leaves to do, done directly: install the code, init, first run.
    pub async fn specialise(
        c: &mut RuncContainer,
        runtime: Runtime,
        code: &str,
    ) -> anyhow::Result<Duration> {
        Self::specialise_code(c, runtime, code.as_bytes(), false, &run_spec()).await
    }

    /// As [`Direct::specialise`], with the code as stored (a zip when `binary`) and the first
    /// run's `spec`.
    pub async fn specialise_code(
        c: &mut RuncContainer,
        runtime: Runtime,
        code: &[u8],
        binary: bool,
        spec: &RunSpec,
    ) -> anyhow::Result<Duration> {
        let t = Instant::now();
        code::install(c.code_dir(), runtime, code, binary)
            .context("installing code into a direct stem cell")?;
        let init = InitSpec { action: "guest/floor".into(), entry_point: "main".into(), binary };
        c.init(&init).await.context("initialising a direct stem cell")?;
        c.run(spec).await.context("the first run on a direct stem cell")?;
        Ok(t.elapsed())
    }

    /// A bundle like the driver's for `runtime`, whose process is `/usr/bin/true`: the same
    /// root, mounts, namespaces, seccomp profile and cgroup limits, and nothing to start.
    pub fn bare_bundle(&self, runtime: Runtime, memory_mb: u64) -> anyhow::Result<BareBundle> {
        let id = self.next_id();
        let skeleton = Skeleton::prepare(&self.state.join("rootfs")).context("the skeleton")?;
        let dir = self.state.join(format!("bare-{id}"));
        let code_dir = dir.join("code");
        std::fs::create_dir_all(&code_dir)
            .with_context(|| format!("creating {}", code_dir.display()))?;
        let launcher_dir = self.state.join("launchers");
        let cgroups_path = cgroup::cgroups_path(&self.parent, "ID", false);
        let mut config = bundle::config(&BundleSpec {
            id: &id,
            runtime,
            memory_mb,
            network: false,
            skeleton: &skeleton,
            launcher_dir: &launcher_dir,
            code_dir: &code_dir,
            cgroups_path: &cgroups_path,
        });
        config["process"]["args"] = json!(["/usr/bin/true"]);
        Ok(BareBundle { dir, config, parent: self.parent.clone(), root: self.root.clone() })
    }
}

/// A bundle for `runc run`; each run gets a fresh id (and cgroup), as a cold start does.
#[derive(Debug)]
pub struct BareBundle {
    dir: PathBuf,
    config: Value,
    parent: String,
    root: PathBuf,
}

impl BareBundle {
    /// The dir mounted read-only at `/action` in the bundle's containers.
    pub fn code_dir(&self) -> PathBuf {
        self.dir.join("code")
    }

    /// Runs `args` as the container's process instead of `/usr/bin/true` (a native action's
    /// `exec` installed in [`BareBundle::code_dir`], issue 15).
    pub fn set_process(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    /// One `runc run` (create, start, wait, delete) of a process that exits at once.
    pub async fn run_once(&mut self, id: &str) -> anyhow::Result<Duration> {
        self.run_capture(id).await.map(|(took, _)| took)
    }

    /// As [`BareBundle::run_once`], returning the process's stdout too.
    pub async fn run_capture(&mut self, id: &str) -> anyhow::Result<(Duration, Vec<u8>)> {
        self.config["linux"]["cgroupsPath"] = json!(cgroup::cgroups_path(&self.parent, id, false));
        self.config["hostname"] = json!(id);
        let path = self.dir.join("config.json");
        let bytes = serde_json::to_vec(&self.config)?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let t = Instant::now();
        let out = tokio::process::Command::new(RUNC)
            .arg("--root")
            .arg(&self.root)
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(id)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running runc run")?;
        let took = t.elapsed();
        if !out.status.success() {
            bail!(
                "runc run {id} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((took, out.stdout))
    }
}

/// The RunSpec the floor containers get: empty params and the same `__OW_*` values the
/// invoker sets.
pub fn run_spec() -> RunSpec {
    RunSpec {
        params: Map::new(),
        env: vec![
            ("ACTIVATION_ID".into(), "0123456789abcdef0123456789abcdef".into()),
            ("NAMESPACE".into(), "guest".into()),
            ("ACTION_NAME".into(), "/guest/floor".into()),
            ("DEADLINE".into(), "9999999999999".into()),
            ("API_HOST".into(), "http://127.0.0.1:3233".into()),
        ],
        timeout: Duration::from_secs(60),
        log_limit: 10 * 1024 * 1024,
        result_limit: 1024 * 1024,
    }
}

/// One run on a warm container; errors if the action did not return its object.
pub async fn run_once(c: &mut RuncContainer, spec: &RunSpec) -> anyhow::Result<Duration> {
    let t = Instant::now();
    c.run(spec).await.context("a direct run")?;
    Ok(t.elapsed())
}

/// The host's own interpreter start, outside any container (`python3 -c pass`, `node -e 0`),
/// with the same binaries and the same environment the containers run with. The environment
/// matters: a host shell's `NODE_EXTRA_CA_CERTS` alone makes node parse the CA bundle at start
/// (about +30 ms here), which the container's node never does.
pub async fn interpreter_start(runtime: Runtime) -> anyhow::Result<Duration> {
    let (bin, args): (&str, &[&str]) = match runtime {
        Runtime::Python => (hearth::launcher::kinds::PYTHON, &["-c", "pass"]),
        Runtime::Nodejs => (hearth::launcher::kinds::NODE, &["-e", "0"]),
        Runtime::Native => anyhow::bail!("the native launcher is compiled: no interpreter"),
        Runtime::Image(_) => anyhow::bail!("an image brings its own interpreter"),
    };
    let t = Instant::now();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear();
    for kv in hearth::launcher::kinds::env(runtime) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let status = cmd
        .args(args)
        .current_dir("/tmp")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("starting {bin}"))?;
    let took = t.elapsed();
    if !status.success() {
        bail!("{bin} {args:?} failed: {status}");
    }
    Ok(took)
}
