//! One container's life in the pool: `Starting -> Prewarmed -> Warm(idle/busy) -> Destroying`.
//!
//! A [`Slot`] owns its container, so whoever holds the slot is the only one who can drive it:
//! that is how per-container concurrency 1 is enforced (a busy slot is owned by the activation
//! task, never by the pool). A container shared by an action with `limits.concurrency` above 1
//! is the exception: its busy slot stays in the pool (`serving`), and the activations in it
//! hold clones of its [`SharedHandle`], kept here so that it outlives idle periods. Each verb checks the current state and refuses an illegal
//! transition with a typed [`StateError`] rather than panicking: a pool bug then ends one
//! activation with an internal error instead of taking the invoker down.
//! This module never locks, spawns or talks to the pool.

use std::fmt;
use std::time::Instant;

use crate::container::{ActionContainer, SharedHandle};
use crate::model::{FullyQualifiedName, Runtime};

/// What a warm container is initialized with: an action at one revision. A container is never
/// reused across revisions, because its launcher holds the old code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WarmKey {
    pub action: FullyQualifiedName,
    pub revision: u64,
}

impl fmt::Display for WarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.action, self.revision)
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created, its launcher waiting for an init; not yet handed to anyone.
    Starting,
    /// A stem cell: started for a kind and memory size, no action yet.
    Prewarmed,
    /// Initialized for one action; waiting for its next activation.
    WarmIdle,
    /// Running an activation (or its init).
    WarmBusy,
    /// Being killed and removed.
    Destroying,
}

/// A transition the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {id}: cannot {verb} in state {from:?}")]
pub struct StateError {
    pub id: String,
    pub verb: &'static str,
    pub from: State,
}

/// A container with the pool's bookkeeping about it.
#[derive(Debug)]
pub struct Slot<C> {
    container: C,
    state: State,
    runtime: Runtime,
    memory_mb: u64,
    warm: Option<WarmKey>,
    last_used: Instant,
    /// Its pipes are in the fd store (live restore): forget them when it is destroyed.
    stored: bool,
    /// Initialized in concurrent mode: the handle its runs go through.
    shared: Option<SharedHandle>,
}

impl<C: ActionContainer> Slot<C> {
    /// A freshly created container.
    pub fn starting(container: C, runtime: Runtime, memory_mb: u64) -> Self {
        Self {
            container,
            state: State::Starting,
            runtime,
            memory_mb,
            warm: None,
            last_used: Instant::now(),
            stored: false,
            shared: None,
        }
    }

    /// A warm container taken over from an earlier invoker (live restore): idle, initialized
    /// with `key`, its pipes already stored.
    pub fn restored(container: C, runtime: Runtime, memory_mb: u64, key: WarmKey) -> Self {
        Self {
            container,
            state: State::WarmIdle,
            runtime,
            memory_mb,
            warm: Some(key),
            last_used: Instant::now(),
            stored: true,
            shared: None,
        }
    }

    /// The handle of a container initialized in concurrent mode.
    pub fn shared(&self) -> Option<&SharedHandle> {
        self.shared.as_ref()
    }

    /// Notes that the container was initialized in concurrent mode.
    pub fn set_shared(&mut self, handle: SharedHandle) {
        self.shared = Some(handle);
    }

    /// Whether its pipes are in the fd store.
    pub fn is_stored(&self) -> bool {
        self.stored
    }

    /// Notes that its pipes went to the fd store.
    pub fn mark_stored(&mut self) {
        self.stored = true;
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    pub fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    /// The container took a new memory limit (a stem cell resized for the action taking it).
    pub fn set_memory_mb(&mut self, memory_mb: u64) {
        self.memory_mb = memory_mb;
    }

    /// The action this container was initialized with, if any.
    pub fn warm_key(&self) -> Option<&WarmKey> {
        self.warm.as_ref()
    }

    /// When it last finished an activation (or was created).
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    pub fn container_mut(&mut self) -> &mut C {
        &mut self.container
    }

    pub fn container(&self) -> &C {
        &self.container
    }

    fn refuse(&self, verb: &'static str) -> StateError {
        StateError { id: self.id().to_owned(), verb, from: self.state }
    }

    /// `Starting -> Prewarmed`: the filler parks a new stem cell.
    pub fn park_prewarmed(&mut self) -> Result<(), StateError> {
        match self.state {
            State::Starting => {
                self.state = State::Prewarmed;
                Ok(())
            }
            _ => Err(self.refuse("park as prewarmed")),
        }
    }

    /// `Starting | Prewarmed | WarmIdle(same key) -> WarmBusy`. Returns whether the container
    /// still needs the action's code and an init (true for cold and prewarmed containers).
    pub fn claim(&mut self, key: &WarmKey) -> Result<bool, StateError> {
        match self.state {
            State::Starting | State::Prewarmed => {
                self.warm = Some(key.clone());
                self.state = State::WarmBusy;
                Ok(true)
            }
            State::WarmIdle if self.warm.as_ref() == Some(key) => {
                self.state = State::WarmBusy;
                Ok(false)
            }
            _ => Err(self.refuse("claim for an activation")),
        }
    }

    /// `WarmBusy -> WarmIdle`, after a run that left the process usable.
    pub fn release(&mut self) -> Result<(), StateError> {
        match self.state {
            State::WarmBusy => {
                self.state = State::WarmIdle;
                self.last_used = Instant::now();
                Ok(())
            }
            _ => Err(self.refuse("release to idle")),
        }
    }

    /// `any -> Destroying`, then kills and removes the container. Consuming the slot makes a
    /// second destroy impossible.
    pub async fn destroy(mut self) {
        tracing::debug!(container = self.id(), from = ?self.state, "destroying container");
        self.state = State::Destroying;
        self.container.destroy().await;
    }

    /// Lets go of an idle container whose pipes are stored, leaving it running for the next
    /// invoker (live restore on restart).
    pub async fn detach(self) {
        tracing::debug!(container = self.id(), "leaving container for the next invoker");
        self.container.detach().await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::container::{RunError, RunOutput};
    use crate::launcher::{InitSpec, RunSpec};
    use crate::model::EntityName;

    /// A container that does nothing: enough for state and placement logic.
    #[derive(Debug)]
    pub(crate) struct Inert {
        pub id: String,
        pub dir: PathBuf,
    }

    impl Inert {
        pub(crate) fn new(id: &str) -> Self {
            Self { id: id.to_owned(), dir: PathBuf::from("/nonexistent") }
        }
    }

    impl ActionContainer for Inert {
        fn id(&self) -> &str {
            &self.id
        }
        fn code_dir(&self) -> &Path {
            &self.dir
        }
        async fn init(&mut self, _: &InitSpec) -> Result<(), RunError> {
            Ok(())
        }
        async fn run(&mut self, _: &RunSpec) -> Result<RunOutput, RunError> {
            Ok(RunOutput { result: serde_json::json!({}), logs: vec![] })
        }
        async fn destroy(self) {}
    }

    pub(crate) fn key(name: &str, revision: u64) -> WarmKey {
        WarmKey {
            action: FullyQualifiedName::new(
                EntityName::parse("guest").unwrap(),
                EntityName::parse(name).unwrap(),
            ),
            revision,
        }
    }

    #[test]
    fn cold_container_claims_with_init_then_cycles() {
        let mut s = Slot::starting(Inert::new("c1"), Runtime::Python, 256);
        assert_eq!(s.claim(&key("a", 1)), Ok(true));
        assert_eq!(s.state(), State::WarmBusy);
        s.release().unwrap();
        assert_eq!(s.state(), State::WarmIdle);
        assert_eq!(s.claim(&key("a", 1)), Ok(false));
        assert_eq!(s.warm_key(), Some(&key("a", 1)));
    }

    #[test]
    fn prewarmed_container_needs_init() {
        let mut s = Slot::starting(Inert::new("c2"), Runtime::Nodejs, 128);
        s.park_prewarmed().unwrap();
        assert_eq!(s.state(), State::Prewarmed);
        assert_eq!(s.claim(&key("b", 3)), Ok(true));
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let mut s = Slot::starting(Inert::new("c3"), Runtime::Python, 256);
        let err = s.release().unwrap_err();
        assert_eq!(err.from, State::Starting);
        assert!(err.to_string().contains("c3"));
        s.claim(&key("a", 1)).unwrap();
        assert!(s.park_prewarmed().is_err());
        assert!(s.claim(&key("a", 1)).is_err(), "busy containers are not claimed twice");
        s.release().unwrap();
        assert!(s.claim(&key("a", 2)).is_err(), "no reuse across revisions");
        assert!(s.claim(&key("other", 1)).is_err(), "no reuse across actions");
    }

    #[tokio::test]
    async fn destroy_consumes() {
        let s = Slot::starting(Inert::new("c4"), Runtime::Python, 256);
        s.destroy().await;
    }
}
