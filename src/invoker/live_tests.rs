//! Unit tests of the invoker's systemd-facing behaviour with a scripted container that can be
//! handed over: live restore (recorded once warm, detached on a restart, destroyed and
//! forgotten on a stop, restored warm), machined removals of idle containers, and log
//! forwarding. The real thing (runc, the fd store, machined) runs in tests/system.rs.

use std::os::fd::OwnedFd;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::logsink::{ActionLogBatch, LogForwarder, LogWriter};
use super::record::tests::message;
use super::restore::{FdKeeper, LiveRestore};
use super::{CodeError, CodeSource, Invoker, InvokerConfig, Restored, StartOptions, StopPolicy};
use crate::model::{FullyQualifiedName, Runtime};
use crate::testing::container::{installer, FakeFactory, World};
use crate::testing::eventually;

/// What the fd store was told, in order: `keep c 4`, `forget c 4`.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn has(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l == s)
    }
    fn count(&self, prefix: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).count()
    }
}

struct AnyCode;

impl CodeSource for AnyCode {
    fn with_code(
        &self,
        _: &FullyQualifiedName,
        _: u64,
        install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
    ) -> Result<(), CodeError> {
        install(b"code")
    }
}

struct Keeper(Arc<Log>);

impl FdKeeper for Keeper {
    fn keep(&self, c: &str, fds: &[OwnedFd]) -> Result<(), String> {
        self.0.push(format!("keep {c} {}", fds.len()));
        Ok(())
    }
    fn forget(&self, c: &str, n: usize) {
        self.0.push(format!("forget {c} {n}"));
    }
}

struct Setup {
    invoker: Arc<Invoker<FakeFactory>>,
    /// The fd store's side.
    log: Arc<Log>,
    /// The containers' side.
    world: Arc<World>,
    _dir: tempfile::TempDir,
    _trigger: crate::shutdown::ShutdownTrigger,
}

async fn setup(keep_on_stop: bool, restored: Vec<&str>, forwarder: Option<LogForwarder>) -> Setup {
    let log = Arc::new(Log::default());
    let world = Arc::new(World::default());
    world.handoff.store(true, Ordering::SeqCst);
    let factory = FakeFactory { world: world.clone() };
    let dir = tempfile::tempdir().unwrap();
    let live = Arc::new(
        LiveRestore::new(&dir.path().join("restore"), Arc::new(Keeper(log.clone()))).unwrap(),
    );
    let policy: StopPolicy = Arc::new(move || Box::pin(async move { keep_on_stop }));
    let restored = restored
        .into_iter()
        .map(|id| Restored {
            container: factory.restored(id),
            runtime: Runtime::Python,
            memory_mb: 256,
            key: super::state::tests::key("hello", 4),
        })
        .collect();
    let options = StartOptions {
        restored,
        live_restore: Some(live),
        stop_policy: Some(policy),
        log_forwarder: forwarder,
    };
    let (trigger, signal) = crate::shutdown::channel();
    let config = InvokerConfig { memory_budget_mb: 1024, prewarm: vec![], ..Default::default() };
    let invoker = Invoker::start_with(
        config,
        factory,
        Arc::new(AnyCode),
        installer(world.clone()),
        signal,
        options,
    )
    .await
    .unwrap();
    Setup { invoker, log, world, _dir: dir, _trigger: trigger }
}

async fn invoke(s: &Setup) -> crate::model::Activation {
    s.invoker.submit(message("hello", 4)).unwrap().await.unwrap()
}

#[tokio::test]
async fn warm_container_is_stored_once_and_detached_on_restart() {
    let s = setup(true, vec![], None).await;
    let first = invoke(&s).await;
    let id = first.response.result["container"].as_str().unwrap().to_owned();
    eventually("stored", || s.log.has(&format!("keep {id} 4"))).await;
    let second = invoke(&s).await;
    assert!(second.annotation("initTime").is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(s.log.count("keep "), 1, "stored once, not per run");
    s.invoker.shutdown().await;
    assert_eq!(*s.world.detached.lock().unwrap(), vec![id]);
    assert!(s.world.destroyed.lock().unwrap().is_empty());
    assert_eq!(s.log.count("forget "), 0, "a restart keeps the store");
}

#[tokio::test]
async fn final_stop_destroys_and_forgets() {
    let s = setup(false, vec![], None).await;
    let id = invoke(&s).await.response.result["container"].as_str().unwrap().to_owned();
    eventually("stored", || s.log.has(&format!("keep {id} 4"))).await;
    s.invoker.shutdown().await;
    assert!(s.world.was_destroyed(&id));
    assert!(s.log.has(&format!("forget {id} 4")));
    assert!(s.world.detached.lock().unwrap().is_empty());
}

#[tokio::test]
async fn restored_container_serves_warm_and_removal_drops_it() {
    let s = setup(false, vec!["hearth-old-1"], None).await;
    assert_eq!(s.invoker.stats().warm_idle, 1);
    let a = invoke(&s).await;
    assert_eq!(a.response.result["container"], "hearth-old-1");
    assert!(a.annotation("initTime").is_none(), "restored containers are warm");
    assert_eq!(s.world.created_count(), 0);
    assert_eq!(s.log.count("keep "), 0, "already stored by the previous invoker");

    assert!(!s.invoker.container_removed("someone-else").await);
    assert!(s.invoker.container_removed("hearth-old-1").await);
    assert!(s.world.was_destroyed("hearth-old-1"));
    assert!(s.log.has("forget hearth-old-1 4"));
    let st = s.invoker.stats();
    assert_eq!((st.warm_idle, st.memory_in_use_mb), (0, 0));
    assert!(!s.invoker.container_removed("hearth-old-1").await, "already gone");
}

#[tokio::test]
async fn action_output_is_forwarded_after_the_record() {
    let seen: Arc<Mutex<Vec<ActionLogBatch>>> = Arc::default();
    let sink = seen.clone();
    let writer: LogWriter =
        Arc::new(move |b: &ActionLogBatch| sink.lock().unwrap().push(b.clone()));
    let s = setup(false, vec![], Some(LogForwarder::spawn(writer, 8))).await;
    let a = invoke(&s).await;
    eventually("forwarded", || !seen.lock().unwrap().is_empty()).await;
    let b = seen.lock().unwrap()[0].clone();
    assert_eq!(b.activation_id, a.activation_id.to_string());
    assert_eq!(b.action, "guest/hello");
    assert_eq!(b.namespace, "guest");
    assert_eq!(b.container, a.response.result["container"].as_str().unwrap());
    assert_eq!(b.lines, a.logs);
}
