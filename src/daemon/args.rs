//! The `hearthd` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::admin::AdminCommand;

/// `hearthd --version`: the version and the optional parts built in, so that an operator can
/// tell whether this binary can join hosts over Kafka before configuring `bus`.
#[cfg(feature = "kafka")]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (with kafka)");
#[cfg(not(feature = "kafka"))]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (without kafka)");

/// hearth's daemons: the REST controller, the container invoker, or both in one process.
#[derive(Debug, Parser)]
#[command(name = "hearthd", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Log filter in tracing's EnvFilter syntax (e.g. `info`, `hearth=debug`)
    #[arg(long, global = true, env = "HEARTH_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Controller and invoker in one process, for one machine (default 127.0.0.1:3233)
    Standalone(StandaloneArgs),
    /// The REST API; dispatches to the invoker's socket
    Controller(ControllerArgs),
    /// The container pool, serving the controller on a Unix socket
    Invoker(InvokerArgs),
    /// Administer namespaces and keys, directly on the data directory (also while running)
    Admin {
        /// The data directory (default: as the daemons)
        #[arg(long, value_name = "DIR", env = "HEARTH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Write man pages and shell completions (used by packaging)
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long, value_name = "DIR")]
        man: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        completions: Option<PathBuf>,
    },
}

/// Settings shared by the daemons; each overrides its config file.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// Where LMDB keeps entities and activations
    #[arg(long, value_name = "DIR", env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory holding controller.toml and invoker.toml (default /etc/hearth for the
    /// controller and invoker; none for standalone)
    #[arg(long, value_name = "DIR", env = "HEARTH_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StandaloneArgs {
    /// Address of the REST API
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Where the invoker keeps container bundles and runc's state
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ControllerArgs {
    /// Address of the REST API, when not socket-activated
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The invoker's socket
    #[arg(long, value_name = "PATH")]
    pub invoker_socket: Option<PathBuf>,
    /// Exit after this long without requests (socket activation starts it again); e.g. `5m`
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_exit: Option<std::time::Duration>,
    /// Several hosts: dispatch to invokers over Kafka (`kafka://HOST:PORT[,HOST:PORT]`)
    /// instead of the invoker's Unix socket
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// This controller's id in the cluster (with --bus): names its completion topic
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct InvokerArgs {
    /// The socket the controller connects to, when not socket-activated
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Where container bundles and runc's state live
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Several hosts: take activations from Kafka (`kafka://HOST:PORT[,HOST:PORT]`) instead
    /// of serving a Unix socket
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// This invoker's number in the cluster (with --bus): names its activation topic
    #[arg(long, value_name = "N")]
    pub id: Option<u32>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn parses_standalone() {
        let cli = Cli::try_parse_from([
            "hearthd",
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        match cli.command {
            Command::Standalone(a) => {
                assert_eq!(a.listen.unwrap().port(), 0);
                assert_eq!(a.common.data_dir.unwrap(), PathBuf::from("/tmp/x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_cluster_flags() {
        let cli = Cli::try_parse_from([
            "hearthd",
            "invoker",
            "--bus",
            "kafka://127.0.0.1:9092",
            "--id",
            "2",
        ])
        .unwrap();
        match cli.command {
            Command::Invoker(a) => {
                assert_eq!(a.bus.as_deref(), Some("kafka://127.0.0.1:9092"));
                assert_eq!(a.id, Some(2));
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["hearthd", "controller", "--bus", "kafka://h:1", "--id", "c1"])
                .unwrap();
        match cli.command {
            Command::Controller(a) => assert_eq!(a.id.as_deref(), Some("c1")),
            other => panic!("{other:?}"),
        }
    }
}
