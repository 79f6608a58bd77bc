//! Administration from another process while the store is open: the test re-executes itself
//! as a child (`child-admin DIR ARGS...`) that opens its own LMDB handle on the same data dir
//! and runs `hearth::admin` there, as `hearthd admin` would next to a running daemon. The
//! parent's cached authentication must follow at once, as must the limit overrides, which the
//! child also queues in the entity feed once it is on. (harness = false: the binary is both.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use clap::Parser;
use hearth::admin::AdminCommand;
use hearth::store::{Store, StoreOptions};

#[derive(Parser)]
struct ChildCli {
    #[command(subcommand)]
    cmd: AdminCommand,
}

fn admin_in_child(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("child-admin")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
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
    // invoke); with the entity feed on (a cluster controller's data dir), the child queues
    // each change for the publisher of this process, and a namespace delete the override's
    // tombstone.
    let ns = hearth::model::EntityName::parse("team").unwrap();
    store.enable_entity_feed("c1").unwrap();
    let queued = store.feed_pending(100).unwrap();
    store.feed_done(queued.last().unwrap().seq).unwrap();
    let set =
        admin_in_child(dir.path(), &["limits", "set", "team", "--concurrent-invocations", "3"]);
    assert_eq!(set.trim(), r#"{"concurrentInvocations":3}"#);
    assert_eq!(store.namespace_limits(&ns).unwrap().concurrent_invocations, Some(3));
    let limits_feed = |store: &Store| -> Vec<(String, bool)> {
        let entries = store.feed_pending(100).unwrap();
        if let Some(last) = entries.last() {
            store.feed_done(last.seq).unwrap();
        }
        entries
            .into_iter()
            .filter(|e| e.key == "limits/team")
            .map(|e| (e.key, e.value.is_some()))
            .collect()
    };
    assert_eq!(limits_feed(&store), [("limits/team".to_owned(), true)], "queued with its value");
    assert_eq!(admin_in_child(dir.path(), &["limits", "get", "team"]).trim(), set.trim());
    admin_in_child(dir.path(), &["limits", "clear", "team"]);
    assert!(store.namespace_limits(&ns).unwrap().is_empty());
    assert_eq!(limits_feed(&store), [("limits/team".to_owned(), false)], "a tombstone");
    admin_in_child(dir.path(), &["limits", "set", "team", "--fires-per-minute", "9"]);
    limits_feed(&store);

    admin_in_child(dir.path(), &["namespace", "delete", "team"]);
    assert!(store.authenticate(&second).unwrap().is_none());
    assert!(store.list_namespaces().unwrap().is_empty());
    assert!(store.namespace_limits(&ns).unwrap().is_empty());
    assert_eq!(limits_feed(&store), [("limits/team".to_owned(), false)], "deleted with it");
    println!("test revoke_from_another_process ... ok");
}
