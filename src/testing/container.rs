//! A scripted, in-memory container factory: the pool's tests (unit and integration) drive it
//! instead of runc. Each run's behaviour comes from its parameters (`sleep_ms`, `outcome`),
//! each init's from the installed code (`broken` fails), and a shared [`World`] records every
//! create, init, run, destroy and detach so tests can assert on the pool's decisions (reuse,
//! eviction, leaks, concurrency, live restore).

// Test support: a poisoned lock or a bad script should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::container::{
    ActionContainer, ContainerError, ContainerFactory, ContainerSpec, RunError, RunOutput,
    SharedHandle, SharedRuns,
};
use crate::launcher::{InitSpec, RunSpec};
use crate::model::Runtime;

/// The pool's code installer, as [`installer`] makes it (the same type as
/// `invoker::CodeInstaller`, spelled out: this kit sits below the invoker).
pub type Installer = Arc<dyn Fn(&Path, Runtime, &[u8], bool) -> std::io::Result<()> + Send + Sync>;

/// Everything the fake containers did.
#[derive(Debug, Default)]
pub struct World {
    pub created: Mutex<Vec<ContainerSpec>>,
    pub live: Mutex<HashSet<String>>,
    pub destroyed: Mutex<Vec<String>>,
    pub inits: Mutex<HashMap<String, usize>>,
    pub runs: Mutex<HashMap<String, usize>>,
    /// Runs going on right now, per container.
    running: Mutex<HashMap<String, usize>>,
    /// The most runs ever seen at once in one container.
    pub max_per_container: AtomicUsize,
    /// The most containers ever alive at once.
    pub max_live: AtomicUsize,
    /// Code written by the installer, per code dir.
    pub installed: Mutex<HashMap<PathBuf, Vec<u8>>>,
    /// Containers let go of for a later invoker (live restore), in order.
    pub detached: Mutex<Vec<String>>,
    /// Whether containers can be handed over (four descriptors each, as runc's are); off, the
    /// pool never stores them for a later invoker.
    pub handoff: AtomicBool,
    pub fail_create: AtomicBool,
    /// Every resize asked for, in order: (container, new memory limit in MB).
    pub resizes: Mutex<Vec<(String, u64)>>,
    /// Resizes fail (as the kernel refuses a limit below what a container already uses).
    pub fail_resize: AtomicBool,
    /// Destroys that began, in order (they may be held, see `hold_destroys`).
    pub destroys_started: Mutex<Vec<String>>,
    /// While set, every destroy waits at its start until `release_destroys`.
    pub destroys_held: AtomicBool,
    destroy_gate: tokio::sync::Notify,
    pub create_delay_ms: AtomicUsize,
    pub leftovers: AtomicUsize,
    /// Inits in concurrent mode, per container, with the concurrency asked.
    pub shared_inits: Mutex<HashMap<String, u64>>,
}

impl World {
    pub fn live_count(&self) -> usize {
        self.live.lock().unwrap().len()
    }
    pub fn created_count(&self) -> usize {
        self.created.lock().unwrap().len()
    }
    pub fn created_ids(&self) -> Vec<String> {
        self.created.lock().unwrap().iter().map(|s| s.id.clone()).collect()
    }
    pub fn is_live(&self, id: &str) -> bool {
        self.live.lock().unwrap().contains(id)
    }
    pub fn destroy_started(&self, id: &str) -> bool {
        self.destroys_started.lock().unwrap().iter().any(|d| d == id)
    }
    /// Destroys from now on wait until [`World::release_destroys`].
    pub fn hold_destroys(&self) {
        self.destroys_held.store(true, Ordering::SeqCst);
    }
    pub fn release_destroys(&self) {
        self.destroys_held.store(false, Ordering::SeqCst);
        self.destroy_gate.notify_waiters();
    }
    pub fn was_destroyed(&self, id: &str) -> bool {
        self.destroyed.lock().unwrap().iter().any(|d| d == id)
    }
}

/// Makes [`FakeContainer`]s and records what they do in its [`World`].
#[derive(Debug, Clone)]
pub struct FakeFactory {
    pub world: Arc<World>,
}

impl FakeFactory {
    /// A container an earlier invoker left running, as live restore hands it back.
    pub fn restored(&self, id: &str) -> FakeContainer {
        self.world.live.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned());
        FakeContainer {
            id: id.to_owned(),
            dir: PathBuf::from(format!("/fake/{id}")),
            world: self.world.clone(),
            shared_dead: None,
        }
    }
}

#[derive(Debug)]
pub struct FakeContainer {
    id: String,
    dir: PathBuf,
    world: Arc<World>,
    /// Set once shared: whether its shared handle saw it die.
    shared_dead: Option<Arc<AtomicBool>>,
}

impl ContainerFactory for FakeFactory {
    type Container = FakeContainer;

    async fn create(&self, spec: &ContainerSpec) -> Result<FakeContainer, ContainerError> {
        let delay = self.world.create_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        if self.world.fail_create.load(Ordering::SeqCst) {
            return Err(ContainerError::Runc {
                verb: "create",
                id: spec.id.clone(),
                message: "scripted failure".into(),
            });
        }
        self.world.created.lock().unwrap().push(spec.clone());
        let live = {
            let mut live = self.world.live.lock().unwrap();
            assert!(live.insert(spec.id.clone()), "duplicate container id {}", spec.id);
            live.len()
        };
        self.world.max_live.fetch_max(live, Ordering::SeqCst);
        Ok(FakeContainer {
            id: spec.id.clone(),
            dir: PathBuf::from(format!("/fake/{}", spec.id)),
            world: self.world.clone(),
            shared_dead: None,
        })
    }

    async fn reclaim_leftovers(&self) -> Result<usize, ContainerError> {
        Ok(self.world.leftovers.swap(0, Ordering::SeqCst))
    }
}

impl ActionContainer for FakeContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn code_dir(&self) -> &Path {
        &self.dir
    }

    async fn init(&mut self, _init: &InitSpec) -> Result<(), RunError> {
        *self.world.inits.lock().unwrap().entry(self.id.clone()).or_default() += 1;
        let code = self.world.installed.lock().unwrap().get(&self.dir).cloned();
        match code.as_deref() {
            None => Err(RunError::Internal(format!("{}: no code installed", self.id))),
            Some(b"broken") => Err(RunError::InitFailed {
                message: "SyntaxError: scripted".into(),
                logs: vec!["init log".into()],
            }),
            Some(_) => Ok(()),
        }
    }

    /// Shares the container when `concurrency` is above 1: its runs then go through a
    /// [`FakeShared`], concurrently, counted in the same `running` and `runs` tallies.
    async fn init_shared(
        &mut self,
        init: &InitSpec,
        concurrency: u64,
    ) -> Result<Option<SharedHandle>, RunError> {
        self.init(init).await?;
        if concurrency <= 1 {
            return Ok(None);
        }
        self.world.shared_inits.lock().unwrap().insert(self.id.clone(), concurrency);
        let shared = FakeShared {
            id: self.id.clone(),
            world: self.world.clone(),
            dead: Arc::new(AtomicBool::new(false)),
        };
        self.shared_dead = Some(shared.dead.clone());
        Ok(Some(Arc::new(shared)))
    }

    fn is_usable(&self) -> bool {
        self.shared_dead.as_ref().map_or(true, |d| !d.load(Ordering::SeqCst))
    }

    async fn run(&mut self, run: &RunSpec) -> Result<RunOutput, RunError> {
        counted_run(&self.world, &self.id, run).await
    }

    async fn resize(&mut self, memory_mb: u64) -> Result<(), ContainerError> {
        self.world.resizes.lock().unwrap().push((self.id.clone(), memory_mb));
        if self.world.fail_resize.load(Ordering::SeqCst) {
            return Err(ContainerError::Other(format!(
                "{}: scripted refusal of {memory_mb} MB (device or resource busy)",
                self.id
            )));
        }
        Ok(())
    }

    async fn destroy(self) {
        self.world.destroys_started.lock().unwrap().push(self.id.clone());
        loop {
            let released = self.world.destroy_gate.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.world.destroys_held.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        self.world.live.lock().unwrap().remove(&self.id);
        self.world.destroyed.lock().unwrap().push(self.id.clone());
    }

    fn handoff(&self) -> Option<Vec<OwnedFd>> {
        if !self.world.handoff.load(Ordering::SeqCst) {
            return None;
        }
        let null = || std::fs::File::open("/dev/null").map(OwnedFd::from);
        (0..4).map(|_| null().ok()).collect()
    }

    async fn detach(self) {
        self.world.live.lock().unwrap().remove(&self.id);
        self.world.detached.lock().unwrap().push(self.id.clone());
    }
}

/// The shared handle of a fake container in concurrent mode. A run that crashes, runs out
/// of memory or times out kills the container for every run after it (as the runc driver
/// does).
#[derive(Debug)]
pub struct FakeShared {
    id: String,
    world: Arc<World>,
    dead: Arc<AtomicBool>,
}

impl SharedRuns for FakeShared {
    fn run<'a>(
        &'a self,
        run: &'a RunSpec,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RunOutput, RunError>> + Send + 'a>>
    {
        Box::pin(async move {
            if self.dead.load(Ordering::SeqCst) {
                return Err(RunError::Internal(format!("container {} is dead", self.id)));
            }
            let out = counted_run(&self.world, &self.id, run).await;
            if matches!(
                out,
                Err(RunError::Crashed { .. }
                    | RunError::OutOfMemory { .. }
                    | RunError::Timeout { .. })
            ) {
                self.dead.store(true, Ordering::SeqCst);
            }
            out
        })
    }

    fn is_usable(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }
}

/// One run, tallied in the world (runs, and runs at once per container).
async fn counted_run(world: &World, id: &str, run: &RunSpec) -> Result<RunOutput, RunError> {
    {
        let mut running = world.running.lock().unwrap();
        let n = running.entry(id.to_owned()).or_default();
        *n += 1;
        world.max_per_container.fetch_max(*n, Ordering::SeqCst);
    }
    *world.runs.lock().unwrap().entry(id.to_owned()).or_default() += 1;
    let out = behave(id, run).await;
    *world.running.lock().unwrap().entry(id.to_owned()).or_default() -= 1;
    out
}

async fn behave(id: &str, run: &RunSpec) -> Result<RunOutput, RunError> {
    let logs = vec![format!("run in {id}")];
    let sleep = run.params.get("sleep_ms").and_then(Value::as_u64).unwrap_or(0);
    if sleep > 0 {
        let wait = Duration::from_millis(sleep);
        if tokio::time::timeout(run.timeout, tokio::time::sleep(wait)).await.is_err() {
            let limit_ms = u64::try_from(run.timeout.as_millis()).unwrap();
            return Err(RunError::Timeout { limit_ms, logs });
        }
    }
    let outcome = run.params.get("outcome").and_then(Value::as_str).unwrap_or("ok");
    let env: serde_json::Map<String, Value> =
        run.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    match outcome {
        "ok" => Ok(RunOutput {
            result: json!({"container": id, "params": run.params, "env": env}),
            logs,
        }),
        "error" => Ok(RunOutput { result: json!({"error": "scripted application error"}), logs }),
        "crash" => Err(RunError::Crashed { detail: "exit status 139".into(), logs }),
        "oom" => Err(RunError::OutOfMemory { limit_mb: 256, logs }),
        "invalid" => Err(RunError::InvalidResult { snippet: "42".into(), logs }),
        "internal" => Err(RunError::Internal("pipe closed".into())),
        other => panic!("unknown scripted outcome {other}"),
    }
}

/// An installer that records the code per directory in the world.
pub fn installer(world: Arc<World>) -> Installer {
    Arc::new(move |dir, _runtime, code, _binary| {
        world.installed.lock().unwrap().insert(dir.to_path_buf(), code.to_vec());
        Ok(())
    })
}
