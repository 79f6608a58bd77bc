//! Containers that run one action each: the trait the invoker's pool drives, and its runc
//! implementation.
//!
//! The trait is the OS boundary (as in youki): the pool's logic is unit-tested against a fake
//! factory without root, and the integration tests run the real runc. Nothing here knows about
//! HTTP, LMDB or activation records; a container takes an init and runs, and reports what
//! happened in typed outcomes that the invoker turns into records.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub mod bundle;
pub mod cgroup;
pub mod image;
mod instance;
pub mod logs;
mod mux;
pub mod proxy;
mod runc;
pub mod runc_cli;
pub mod seccomp;
pub mod skeleton;

pub use instance::RuncContainer;
pub use mux::SharedMux;
pub use runc::{RuncConfig, RuncFactory};

use serde_json::Value;

use crate::launcher::{InitSpec, RunSpec};
use crate::model::Runtime;

/// What a container is created for. Prewarmed containers are created before the action is
/// known, so nothing action-specific is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique among live containers; also the runc id and the machine name.
    pub id: String,
    pub runtime: Runtime,
    /// cgroup memory limit in MB (the action's memory limit).
    pub memory_mb: u64,
    /// Whether the container may reach the network (otherwise loopback only).
    pub network: bool,
}

/// A run that returned a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// What `main` returned (an object). An `error` field makes it an application error.
    pub result: Value,
    /// Timestamped lines, `<RFC 3339> stdout: text` / `<RFC 3339> stderr: text`.
    pub logs: Vec<String>,
}

/// A run that ended without a usable result. Every variant carries the logs collected so far.
/// After `InvalidResult`, `ResultTooLarge` and a run's `Developer` the launcher is alive and in step (it replied
/// with one line), so the container may be kept; after any other variant it must be destroyed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("The action exceeded its time limit of {limit_ms} milliseconds.")]
    Timeout { limit_ms: u64, logs: Vec<String> },
    #[error("The action exhausted its memory limit of {limit_mb} MB and was killed.")]
    OutOfMemory { limit_mb: u64, logs: Vec<String> },
    #[error("The action did not return a dictionary and returned {snippet}.")]
    InvalidResult { snippet: String, logs: Vec<String> },
    #[error("The action produced a result of {size} bytes, more than the limit of {limit} bytes.")]
    ResultTooLarge { size: usize, limit: usize, logs: Vec<String> },
    #[error("The action's process exited unexpectedly ({detail}).")]
    Crashed { detail: String, logs: Vec<String> },
    #[error("The action failed to initialize: {message}")]
    InitFailed { message: String, logs: Vec<String> },
    /// The launcher reported a developer error in OpenWhisk's words (the native launcher's
    /// action-proxy messages). After a run the launcher is in step, so the container may be
    /// kept; after an init it holds no action and must go.
    #[error("{message}")]
    Developer { message: String, logs: Vec<String> },
    #[error("internal error in the container driver: {0}")]
    Internal(String),
}

/// A container could not be created or driven.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("runc {verb} {id} failed: {message}")]
    Runc { verb: &'static str, id: String, message: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// A container whose launcher runs several activations at once (an action with
/// `limits.concurrency` above 1), driven through a handle every activation in it holds:
/// runs go in concurrently and each gets its own outcome and its own logs. After a run that
/// failed for all (a timeout kills the container, OpenWhisk's rule), [`SharedRuns::is_usable`]
/// turns false and every run in flight ends.
pub trait SharedRuns: Send + Sync + std::fmt::Debug + 'static {
    /// Runs one activation beside the others in flight.
    fn run<'a>(
        &'a self,
        run: &'a RunSpec,
    ) -> Pin<Box<dyn Future<Output = Result<RunOutput, RunError>> + Send + 'a>>;

    /// Whether the container can take more runs.
    fn is_usable(&self) -> bool;

    /// The init's log lines, once: for the record of the activation that initialised the
    /// container (a sequential container hands them to its first run instead).
    fn take_init_logs(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A shared container's handle, cloned by every activation that runs in it.
pub type SharedHandle = Arc<dyn SharedRuns>;

/// One started container with its launcher waiting on its pipes.
pub trait ActionContainer: Send + Sync + 'static {
    fn id(&self) -> &str;

    /// Host directory bind-mounted read-only at `/action` inside the container; the invoker
    /// installs the action's code here before [`ActionContainer::init`].
    fn code_dir(&self) -> &Path;

    /// Loads the action into the launcher. Called once per container.
    fn init(
        &mut self,
        init: &InitSpec,
    ) -> impl std::future::Future<Output = Result<(), RunError>> + Send;

    /// Loads the action for up to `concurrency` activations at once. Returns the handle they
    /// run through, or None when the driver runs one at a time (the default: a plain init,
    /// and the caller runs through [`ActionContainer::run`] one activation at a time). After
    /// a handle was given, [`ActionContainer::run`] is not used any more.
    fn init_shared(
        &mut self,
        init: &InitSpec,
        concurrency: u64,
    ) -> impl std::future::Future<Output = Result<Option<SharedHandle>, RunError>> + Send {
        let _ = concurrency;
        let done = self.init(init);
        async move { done.await.map(|()| None) }
    }

    /// Runs one activation and collects its logs.
    fn run(
        &mut self,
        run: &RunSpec,
    ) -> impl std::future::Future<Output = Result<RunOutput, RunError>> + Send;

    /// Gives the container a new memory limit (and the CPU share derived from it, as at
    /// create): a stem cell started for one size takes the limit of the action that takes
    /// it. Called before the init, while the launcher holds little memory. On an error the
    /// limits are as before or the container is to be destroyed (the pool does the latter);
    /// a driver that cannot resize says so with an error, and the pool cold-starts instead.
    fn resize(
        &mut self,
        memory_mb: u64,
    ) -> impl std::future::Future<Output = Result<(), ContainerError>> + Send {
        let id = self.id().to_owned();
        std::future::ready(Err(ContainerError::Other(format!(
            "container {id}: this driver cannot change a container's memory limit to {memory_mb} MB"
        ))))
    }

    /// Whether the container can take another run. The pool keeps a container after a run
    /// only when its own rules and this agree (a driver may know its pipes are out of step).
    fn is_usable(&self) -> bool {
        true
    }

    /// Kills and removes the container and everything it held (cgroup, bundle, code dir).
    /// Never fails: what cannot be removed is logged, and reclaimed by the next start's cleanup.
    fn destroy(self) -> impl std::future::Future<Output = ()> + Send;

    /// Copies of the descriptors a later invoker needs to take this container over (live
    /// restore through systemd's fd store); None when the driver cannot hand it over.
    fn handoff(&self) -> Option<Vec<OwnedFd>> {
        None
    }

    /// Lets go of the container without stopping it, because a later invoker takes it over
    /// from the descriptors [`ActionContainer::handoff`] gave. Drivers that cannot hand over
    /// destroy it.
    fn detach(self) -> impl std::future::Future<Output = ()> + Send
    where
        Self: Sized,
    {
        self.destroy()
    }
}

/// Makes containers. One per invoker.
pub trait ContainerFactory: Send + Sync + 'static {
    type Container: ActionContainer;

    /// Creates and starts a container whose launcher waits for an init.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl std::future::Future<Output = Result<Self::Container, ContainerError>> + Send;

    /// The image a name points at on this host now (an image action's `exec.image`), from
    /// the image source the factory was given. Drivers without images know none.
    fn resolve_image(&self, name: &str) -> Result<Option<image::ImageRoot>, String> {
        let _ = name;
        Ok(None)
    }

    /// Removes every container, bundle, cgroup and mount that an earlier run of this invoker
    /// left behind (after a crash). Returns how many containers were reclaimed.
    fn reclaim_leftovers(
        &self,
    ) -> impl std::future::Future<Output = Result<usize, ContainerError>> + Send;
}
