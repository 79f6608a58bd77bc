//! `hearthd admin`: namespace and key administration straight on the LMDB store.
//!
//! Works while a daemon runs on the same data dir: LMDB's lock file serialises writers across
//! processes, and every key or namespace change bumps `keys_generation`, which the daemon's
//! auth cache checks on every request, so a revoked key stops working at once.
//!
//! In a cluster (a controller started with `--bus` turned the data dir's entity feed on), every
//! write here (namespaces, keys, limit overrides) is queued in that feed in its own
//! transaction, and returns after the local commit: the controller running on the data dir
//! publishes it within its feed poll (250 ms), and every other host applies it from the
//! entity topic (docs/KAFKA.md). This process installs no publish waiter, as it has no
//! producer of its own; a write made while that controller is down is published when it runs.
//! Must never: print a secret other than the one just created, or go through the HTTP API.

use std::io::Write;
use std::path::Path;

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

/// Runs one command on the store in `data_dir`, printing results on stdout.
pub fn run(cmd: AdminCommand, data_dir: &Path) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(cmd, data_dir, &mut out)
}

/// [`run`] with the output going to `out` (tests read it back).
pub fn run_to(cmd: AdminCommand, data_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = Store::open(data_dir, StoreOptions::default())
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    execute(&store, cmd, out)
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
