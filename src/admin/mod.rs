//! `hearthd admin`: namespace and key administration straight on the LMDB store.
//!
//! Works while a daemon runs on the same data dir: LMDB's lock file serialises writers across
//! processes, and every key or namespace change bumps `keys_generation`, which the daemon's
//! auth cache checks on every request, so a revoked key stops working at once.
//!
//! In a cluster (a controller started with `--bus` turned the data dir's entity feed on), every
//! write here (namespaces, keys, limit overrides) is queued in that feed in its own
//! transaction; the controller running on the data dir publishes it (it polls the feed every
//! 250 ms) and every other host applies it from the entity topic (docs/KAFKA.md). As an
//! entity write through the API, the command returns after the broker's acknowledgement:
//! it waits (at most [`PUBLISH_WAIT`]) until the controller removed the write's feed entries,
//! which it does only once the broker took them. This process has no producer of its own, so
//! when no controller publishes in time (it is stopped) the write stays committed and queued,
//! the command says so on stderr and still succeeds: what it printed (a new key's secret,
//! shown only once) must not be lost to an error.
//! Must never: print a secret other than the one just created, or go through the HTTP API.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use uuid::Uuid;

use crate::model::{EntityName, NamespaceLimits};

pub mod image;

use crate::store::{Store, StoreOptions};
pub use image::ImageCommand;

/// The administration commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AdminCommand {
    /// Create, list or delete namespaces.
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Create, list or revoke keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Set, show or clear a namespace's limits; a running server applies them to its next
    /// request, and in a cluster every controller does once the entity topic brings them.
    Limits {
        #[command(subcommand)]
        command: LimitsCommand,
    },
    /// Import, pull, list or remove runtime images (the image store in `<data-dir>/images`).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum LimitsCommand {
    /// Override some of a namespace's limits (the others keep their current value).
    Set {
        namespace: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the namespace's override as JSON (`{}`: the host's defaults hold).
    Get { namespace: String },
    /// Remove the namespace's override: the host's defaults hold again.
    Clear { namespace: String },
}

/// The limits `limits set` can change; 0 shuts the namespace out of that resource.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LimitArgs {
    /// Invocations accepted per minute.
    #[arg(long)]
    pub invocations_per_minute: Option<u32>,
    /// Activations in flight at once.
    #[arg(long)]
    pub concurrent_invocations: Option<u32>,
    /// Trigger fires accepted per minute.
    #[arg(long)]
    pub fires_per_minute: Option<u32>,
    /// Actions in one sequence at most.
    #[arg(long)]
    pub sequence_max_length: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace and print its first key (`uuid:secret`) on stdout.
    Create { name: String },
    /// List the namespaces, one per line.
    List,
    /// Delete a namespace with its keys, actions and activation records.
    Delete { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum KeyCommand {
    /// Create another key for a namespace and print it (`uuid:secret`) on stdout.
    Create { namespace: String },
    /// List the key uuids of a namespace (secrets are never stored, so never shown).
    List { namespace: String },
    /// Revoke a key by its uuid; it stops authenticating at once.
    Revoke { uuid: String },
}

/// How long a write waits for the controller on the data dir to publish it: as long as the
/// controller's own entity writes wait for the broker (`bus::kafka::PUBLISH_WAIT`).
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How often the wait looks at the feed (a read transaction: cheap).
const PUBLISH_POLL: Duration = Duration::from_millis(20);

/// Runs one command on the store in `data_dir`, printing results on stdout and, when its
/// writes were not published in time, a warning on stderr.
pub fn run(cmd: AdminCommand, data_dir: &Path) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    run_to(cmd, data_dir, &mut out, &mut err)
}

/// [`run`] with the output going to `out` and the warning to `warn` (tests read them back).
pub fn run_to(
    cmd: AdminCommand,
    data_dir: &Path,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> anyhow::Result<()> {
    let store = Store::open(data_dir, StoreOptions::default())
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let before = store.feed_position()?;
    execute(&store, cmd, out)?;
    out.flush()?;
    if let Some(why) = await_publication(&store, before, PUBLISH_WAIT)? {
        writeln!(warn, "hearthd admin: {why}")?;
    }
    Ok(())
}

/// Waits until the feed entries written since position `before` are published (the
/// controller on this data dir removes them once the broker acknowledged them). `None`: nothing
/// to wait for (no feed, no write) or published; `Some(why)` when `bound` passed first.
pub fn await_publication(
    store: &Store,
    before: Option<u64>,
    bound: Duration,
) -> anyhow::Result<Option<String>> {
    let Some(written) = store.feed_position()? else { return Ok(None) };
    if before == Some(written) {
        return Ok(None);
    }
    let deadline = Instant::now() + bound;
    while !store.feed_published_through(written)? {
        if Instant::now() >= deadline {
            return Ok(Some(format!(
                "stored in {} but not yet published to the cluster: no controller running on \
                 this data directory took it within {} s; it is published when one runs",
                store.path().display(),
                bound.as_secs()
            )));
        }
        std::thread::sleep(PUBLISH_POLL);
    }
    Ok(None)
}

fn ns(name: &str) -> anyhow::Result<EntityName> {
    EntityName::parse(name).with_context(|| format!("invalid namespace name {name:?}"))
}

/// Runs one command on an open store.
pub fn execute(store: &Store, cmd: AdminCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Namespace { command } => match command {
            NamespaceCommand::Create { name } => {
                let key = store.create_namespace(&ns(&name)?)?;
                writeln!(out, "{key}")?;
            }
            NamespaceCommand::List => {
                for rec in store.list_namespaces()? {
                    writeln!(out, "{}", rec.name)?;
                }
            }
            NamespaceCommand::Delete { name } => {
                if !store.delete_namespace(&ns(&name)?)? {
                    anyhow::bail!("namespace {name} does not exist");
                }
            }
        },
        AdminCommand::Key { command } => match command {
            KeyCommand::Create { namespace } => {
                let key = store.create_key(&ns(&namespace)?)?;
                writeln!(out, "{key}")?;
            }
            KeyCommand::List { namespace } => {
                for rec in store.list_keys(&ns(&namespace)?)? {
                    writeln!(out, "{}", rec.uuid)?;
                }
            }
            KeyCommand::Revoke { uuid } => {
                let uuid = Uuid::parse_str(&uuid)
                    .with_context(|| format!("{uuid:?} is not a key uuid"))?;
                store.revoke_key(&uuid)?;
            }
        },
        AdminCommand::Limits { command } => match command {
            LimitsCommand::Set { namespace, limits } => {
                let patch = NamespaceLimits {
                    invocations_per_minute: limits.invocations_per_minute,
                    concurrent_invocations: limits.concurrent_invocations,
                    fires_per_minute: limits.fires_per_minute,
                    sequence_max_length: limits.sequence_max_length,
                };
                anyhow::ensure!(!patch.is_empty(), "name at least one limit to set (see --help)");
                let now = store.set_namespace_limits(&ns(&namespace)?, patch)?;
                writeln!(out, "{}", serde_json::to_string(&now)?)?;
            }
            LimitsCommand::Get { namespace } => {
                let ns = ns(&namespace)?;
                anyhow::ensure!(
                    store.get_namespace(&ns)?.is_some(),
                    "namespace {namespace} does not exist"
                );
                writeln!(out, "{}", serde_json::to_string(&store.namespace_limits(&ns)?)?)?;
            }
            LimitsCommand::Clear { namespace } => {
                store.clear_namespace_limits(&ns(&namespace)?)?;
            }
        },
        AdminCommand::Image { command } => image::execute(store, command, out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AdminCommand,
    }

    fn parse(args: &[&str]) -> AdminCommand {
        Cli::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).unwrap().cmd
    }

    #[test]
    fn limits_set_get_clear() {
        let (_dir, store) = crate::store::test_util::temp_store();
        let mut out = Vec::new();
        execute(&store, parse(&["namespace", "create", "team"]), &mut out).unwrap();
        assert!(execute(&store, parse(&["limits", "set", "team"]), &mut out).is_err(), "nothing");
        let mut out = Vec::new();
        let set = ["limits", "set", "team", "--concurrent-invocations", "5"];
        execute(&store, parse(&set), &mut out).unwrap();
        execute(
            &store,
            parse(&["limits", "set", "team", "--invocations-per-minute", "60"]),
            &mut out,
        )
        .unwrap();
        let mut out = Vec::new();
        execute(&store, parse(&["limits", "get", "team"]), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().trim(),
            r#"{"invocationsPerMinute":60,"concurrentInvocations":5}"#
        );
        let mut out = Vec::new();
        execute(&store, parse(&["limits", "clear", "team"]), &mut out).unwrap();
        execute(&store, parse(&["limits", "get", "team"]), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "{}");
        assert!(execute(&store, parse(&["limits", "get", "nobody"]), &mut Vec::new()).is_err());
    }

    /// With the feed on, a write waits for the publisher on the data dir (here a thread that
    /// drains the feed as the controller's would after the broker's acknowledgement); without
    /// one it says so once the bound passes, and the write stays committed and queued.
    #[test]
    fn writes_wait_for_their_publication_when_the_feed_is_on() {
        let (_dir, store) = crate::store::test_util::temp_store();
        let mut out = Vec::new();
        execute(&store, parse(&["namespace", "create", "team"]), &mut out).unwrap();
        let before = store.feed_position().unwrap();
        assert_eq!(before, None, "no feed: nothing to wait for");
        assert_eq!(await_publication(&store, before, Duration::ZERO).unwrap(), None);

        store.enable_entity_feed("c1").unwrap();
        let before = store.feed_position().unwrap();
        let set = ["limits", "set", "team", "--concurrent-invocations", "2"];
        execute(&store, parse(&set), &mut Vec::new()).unwrap();
        let publisher = {
            let store = store.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let last = store.feed_pending(100).unwrap().last().unwrap().seq;
                store.feed_done(last).unwrap();
            })
        };
        let t = Instant::now();
        let waited = await_publication(&store, before, Duration::from_secs(5)).unwrap();
        assert_eq!(waited, None);
        assert!(t.elapsed() >= Duration::from_millis(100), "returned before the publication");
        publisher.join().unwrap();
        let unchanged = store.feed_position().unwrap();
        assert_eq!(await_publication(&store, unchanged, Duration::ZERO).unwrap(), None, "a read");

        let before = store.feed_position().unwrap();
        execute(&store, parse(&["limits", "clear", "team"]), &mut Vec::new()).unwrap();
        let why = await_publication(&store, before, Duration::from_millis(50)).unwrap().unwrap();
        assert!(why.contains("not yet published") && why.contains("when one runs"), "{why}");
        assert!(store.namespace_limits(&ns("team").unwrap()).unwrap().is_empty(), "committed");
        assert!(store.feed_pending(10).unwrap().iter().any(|e| e.key == "limits/team"), "queued");
    }

    #[test]
    fn namespace_and_key_lifecycle() {
        let (_dir, store) = crate::store::test_util::temp_store();
        let mut out = Vec::new();
        execute(&store, parse(&["namespace", "create", "team"]), &mut out).unwrap();
        let first = String::from_utf8(out.clone()).unwrap().trim().to_owned();
        assert!(store.authenticate(&first).unwrap().is_some());
        assert!(execute(&store, parse(&["namespace", "create", "team"]), &mut out).is_err());
        assert!(execute(&store, parse(&["namespace", "create", "../x"]), &mut out).is_err());

        let mut out = Vec::new();
        execute(&store, parse(&["key", "create", "team"]), &mut out).unwrap();
        let second = String::from_utf8(out).unwrap().trim().to_owned();
        let mut out = Vec::new();
        execute(&store, parse(&["key", "list", "team"]), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);

        let uuid = first.split(':').next().unwrap();
        execute(&store, parse(&["key", "revoke", uuid]), &mut Vec::new()).unwrap();
        assert!(store.authenticate(&first).unwrap().is_none());
        assert!(store.authenticate(&second).unwrap().is_some());

        let mut out = Vec::new();
        execute(&store, parse(&["namespace", "list"]), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "team\n");
        execute(&store, parse(&["namespace", "delete", "team"]), &mut Vec::new()).unwrap();
        assert!(store.authenticate(&second).unwrap().is_none());
        assert!(execute(&store, parse(&["namespace", "delete", "team"]), &mut Vec::new()).is_err());
        assert!(execute(&store, parse(&["key", "create", "team"]), &mut Vec::new()).is_err());
    }
}
