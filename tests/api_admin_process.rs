//! Administration from another process while the store is open: the test re-executes itself
//! as a child (`child-admin DIR ARGS...`) that opens its own LMDB handle on the same data dir
//! and runs `hearth::admin` there, as `hearthd admin` would next to a running daemon. The
//! parent's cached authentication must follow at once, as must the limit overrides, which the
//! child also queues in the entity feed once it is on. (harness = false: the binary is both.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hearth::admin::AdminCommand;
use hearth::store::{Store, StoreOptions};

#[derive(Parser)]
struct ChildCli {
    #[command(subcommand)]
    cmd: AdminCommand,
}

fn admin_in_child(dir: &Path, args: &[&str]) -> String {
    let (out, err) = admin_in_child_with_stderr(dir, args);
    assert_eq!(err, "", "the child warned");
    out
}

/// Runs the child; returns its stdout and stderr (a warning when its write was not published).
fn admin_in_child_with_stderr(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("child-admin")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Stands in for the controller's publisher on the data dir: drains the entity feed (as it
/// does after the broker's acknowledgement) every 20 ms and keeps what it took.
struct Drainer {
    stop: Arc<AtomicBool>,
    taken: Arc<Mutex<Vec<(String, bool)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    fn start(store: &Store) -> Drainer {
        let (stop, taken) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (s, st, tk) = (store.clone(), stop.clone(), taken.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let entries = s.feed_pending(100).unwrap();
                if let Some(last) = entries.last() {
                    let mut taken = tk.lock().unwrap();
                    taken.extend(entries.iter().map(|e| (e.key.clone(), e.value.is_some())));
                    s.feed_done(last.seq).unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Drainer { stop, taken, thread: Some(thread) }
    }

    /// What it took for `key` since the last call.
    fn take(&self, key: &str) -> Vec<(String, bool)> {
        let mut taken = self.taken.lock().unwrap();
        let mine = taken.iter().filter(|(k, _)| k == key).cloned().collect();
        taken.clear();
        mine
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child-admin") {
        let dir = Path::new(&args[2]);
        let cli = ChildCli::try_parse_from(
            std::iter::once("admin").chain(args[3..].iter().map(String::as_str)),
        )
        .unwrap();
        hearth::admin::run(cli.cmd, dir).unwrap();
        return;
    }
    // The libtest protocol is not spoken here; ignore its flags (--list etc.) and run once.
    if args.iter().any(|a| a == "--list") {
        println!("revoke_from_another_process: test");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();

    let key = admin_in_child(dir.path(), &["namespace", "create", "team"]).trim().to_owned();
    let header = key.clone();
    let id = store
        .authenticate(&header)
        .unwrap()
        .expect("a key created by another process authenticates");
    assert_eq!(id.namespace.as_str(), "team");
    assert!(store.authenticate(&header).unwrap().is_some(), "cached");

    let second = admin_in_child(dir.path(), &["key", "create", "team"]).trim().to_owned();
    assert!(store.authenticate(&second).unwrap().is_some());

    let uuid = key.split(':').next().unwrap();
    admin_in_child(dir.path(), &["key", "revoke", uuid]);
    assert!(
        store.authenticate(&header).unwrap().is_none(),
        "revoked in another process, cached here: refused at once"
    );
    assert!(store.authenticate(&second).unwrap().is_some());

    assert_eq!(admin_in_child(dir.path(), &["namespace", "list"]), "team\n");

    // Limits set in another process apply here at once (read from the memory map on every
    // invoke). With the entity feed on (a cluster controller's data dir), the child queues
    // each change, and returns once this process's stand-in publisher has taken it; a
    // namespace delete queues the override's tombstone.
    let ns = hearth::model::EntityName::parse("team").unwrap();
    store.enable_entity_feed("c1").unwrap();
    let publisher = Drainer::start(&store);
    let limits = "limits/team";
    let t = Instant::now();
    let set =
        admin_in_child(dir.path(), &["limits", "set", "team", "--concurrent-invocations", "3"]);
    let took = t.elapsed();
    assert_eq!(set.trim(), r#"{"concurrentInvocations":3}"#);
    assert_eq!(store.namespace_limits(&ns).unwrap().concurrent_invocations, Some(3));
    assert_eq!(publisher.take(limits), [(limits.to_owned(), true)], "published before the return");
    assert_eq!(admin_in_child(dir.path(), &["limits", "get", "team"]).trim(), set.trim());
    admin_in_child(dir.path(), &["limits", "clear", "team"]);
    assert!(store.namespace_limits(&ns).unwrap().is_empty());
    assert_eq!(publisher.take(limits), [(limits.to_owned(), false)], "a tombstone");
    admin_in_child(dir.path(), &["limits", "set", "team", "--fires-per-minute", "9"]);
    publisher.take(limits);
    admin_in_child(dir.path(), &["namespace", "delete", "team"]);
    assert!(store.authenticate(&second).unwrap().is_none());
    assert!(store.list_namespaces().unwrap().is_empty());
    assert!(store.namespace_limits(&ns).unwrap().is_empty());
    assert_eq!(publisher.take(limits), [(limits.to_owned(), false)], "deleted with it");
    println!("limits set from another process, published and answered in {took:?}");

    // No publisher on the data dir (its controller is stopped): the write is committed and
    // queued, and the command says so after the bound, without failing.
    publisher.stop();
    let t = Instant::now();
    let (key, warning) = admin_in_child_with_stderr(dir.path(), &["namespace", "create", "later"]);
    let waited = t.elapsed();
    let key = key.trim();
    assert!(hearth::model::AuthKey::parse(key).is_ok(), "the key is printed: {key:?}");
    assert!(warning.contains("not yet published"), "{warning}");
    assert!(waited >= hearth::admin::PUBLISH_WAIT, "returned after {waited:?}");
    assert!(store.authenticate(key).unwrap().is_some(), "committed");
    let queued = store.feed_pending(100).unwrap();
    assert!(queued.iter().any(|e| e.key == "namespace/later"), "queued: {queued:?}");
    println!("test revoke_from_another_process ... ok");
}
