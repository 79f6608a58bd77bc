//! The `hearth` command-line client, wsk-like: actions, packages, activations, namespaces,
//! properties.
//!
//! This file owns the command tree (clap derive) and the one place where errors become a
//! line on stderr and an exit code ([`run`]); the exit codes are documented in [`error`].
//! Each resource's commands live in their own file and print through [`output`]; all
//! network traffic goes through [`http::Client`]. Nothing here may start a server, touch the
//! store or depend on the controller: the client knows the server only by its REST API.

pub mod action;
pub mod activation;
pub mod api;
pub mod config;
pub mod error;
pub mod http;
pub mod namespace;
pub mod output;
pub mod package;
pub mod params;
pub mod poll;
pub mod property;
pub mod rule;
pub mod trigger;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

pub use error::{
    CliError, EXIT_ACTION_FAILED, EXIT_ERROR, EXIT_NETWORK, EXIT_OK, EXIT_PENDING, EXIT_SERVER,
    EXIT_USAGE,
};
use output::Output;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "Command-line client for hearth, a serverless function platform in the OpenWhisk model",
    after_help = "Configuration: --apihost/--auth, else HEARTH_APIHOST/HEARTH_AUTH, else APIHOST=/AUTH= lines in $HEARTH_CONFIG or ~/.hearth/config (or OpenWhisk's $WSK_CONFIG_FILE or ~/.wskprops when neither exists), else http://127.0.0.1:3233 with the standalone guest key.\n\nExit codes: 0 ok, 1 error (local or 4xx), 2 action failed, 3 server unreachable, 4 server error (5xx), 5 blocking invoke still running, 64 usage."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Resource,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// API host, e.g. http://127.0.0.1:3233 [env: HEARTH_APIHOST]
    #[arg(long, global = true, value_name = "URL")]
    pub apihost: Option<String>,
    /// Authorization key, uuid:secret [env: HEARTH_AUTH]
    #[arg(short = 'u', long, global = true, value_name = "KEY")]
    pub auth: Option<String>,
    /// Print the server's JSON instead of human-readable text
    #[arg(long, global = true)]
    pub json: bool,
    /// Log each request (method, path, status, time) to stderr
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Seconds to wait for the server's answer (blocking invokes wait up to 60 s)
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 70,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
}

/// The resources, as in wsk.
#[derive(Debug, Subcommand)]
pub enum Resource {
    /// Work with actions
    Action {
        #[command(subcommand)]
        command: ActionCommand,
    },
    /// Work with API routes (wsk api)
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Work with packages: sets of actions with shared parameters, bindings, shared packages
    Package {
        #[command(subcommand)]
        command: PackageCommand,
    },
    /// Work with triggers: named events that rules connect to actions; --feed for alarms
    Trigger {
        #[command(subcommand)]
        command: trigger::TriggerCommand,
    },
    /// Work with rules: when a trigger fires, run an action
    Rule {
        #[command(subcommand)]
        command: rule::RuleCommand,
    },
    /// Work with activations
    Activation {
        #[command(subcommand)]
        command: ActivationCommand,
    },
    /// Work with namespaces
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Show the client's settings
    Property {
        #[command(subcommand)]
        command: PropertyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Create an action from a .py, .js or .zip file
    Create {
        /// Action name: name, package/name, or /namespace/[package/]name
        name: String,
        /// The code: .py (python:3), .js (nodejs:20), or .zip (needs --kind); none with --sequence
        #[arg(required_unless_present = "sequence", conflicts_with = "sequence")]
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Update an action (or create it); omitted settings keep their values
    Update {
        name: String,
        /// New code; without it the code is kept
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show an action
    Get {
        name: String,
        /// Include the code (`--code false` leaves it out)
        #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
        code: bool,
        /// Print the action's web URL only
        #[arg(long, short = 'r')]
        url: bool,
    },
    /// List actions: the namespace's, or a package's
    List {
        /// A package (package, /namespace/package), or /namespace
        scope: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete an action
    Delete { name: String },
    /// Invoke an action
    Invoke(InvokeArgs),
}

/// Settings of an action for create and update.
#[derive(Debug, Args, Default)]
pub struct SpecArgs {
    /// Runtime kind: python:3, nodejs:20, ... (default: from the file extension)
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// FILE is a native executable, as wsk's --native: a zip holding `exec`, a script (sent
    /// as text), or a compiled program (zipped as `exec`)
    #[arg(long, conflicts_with = "kind")]
    pub native: bool,
    /// Run the action in this image (OpenWhisk's action-proxy contract), as wsk's --docker;
    /// FILE, if given, is the code the image's proxy gets at init
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["kind", "native"])]
    pub docker: Option<String>,
    /// Entry point function (default: main)
    #[arg(long, value_name = "NAME")]
    pub main: Option<String>,
    /// Memory limit in MB (128..512)
    #[arg(short = 'm', long, value_name = "MB")]
    pub memory: Option<u64>,
    /// Timeout in milliseconds (100..300000)
    #[arg(short = 't', long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// Log size limit in MB (0..10)
    #[arg(short = 'l', long, value_name = "MB")]
    pub logsize: Option<u64>,
    /// Activations one container runs at once (1..500; nodejs kinds only), as wsk's
    /// --concurrency
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<u64>,
    #[command(flatten)]
    pub params: ParamArgs,
    /// Annotation (the value is JSON if it parses, else a string)
    #[arg(short = 'a', long = "annotation", num_args = 2, value_names = ["KEY", "VALUE"],
          action = ArgAction::Append, allow_hyphen_values = true)]
    pub annotation: Vec<String>,
    /// Annotations from a JSON object file
    #[arg(short = 'A', long = "annotation-file", value_name = "FILE")]
    pub annotation_file: Option<PathBuf>,
    /// Make it a sequence of these actions, run in order (comma-separated; each name,
    /// package/name or /namespace/[package/]name)
    #[arg(long, value_name = "ACTIONS", value_delimiter = ',', conflicts_with_all = ["kind", "native", "main"])]
    pub sequence: Vec<String>,
    /// Make it a web action: true|yes, raw (raw HTTP), false|no (web-export, raw-http, final)
    #[arg(long, value_name = "true|raw|false")]
    pub web: Option<String>,
}

/// `hearth api`: routes from a base path, relative path and verb to web actions.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Map BASE_PATH API_PATH VERB to a web action
    Create {
        basepath: String,
        relpath: String,
        verb: String,
        action: String,
        /// The API's name (the base path when not given)
        #[arg(short = 'n', long)]
        apiname: Option<String>,
        /// The web extension the action answers with: json, http, html, svg, text
        #[arg(long, default_value = "json")]
        response_type: String,
    },
    /// Show an API (by base path or name) as swagger
    Get { api: String },
    /// List APIs and their operations
    List { api: Option<String>, relpath: Option<String>, verb: Option<String> },
    /// Delete an API, a path of it, or one verb of a path
    Delete { api: String, relpath: Option<String>, verb: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Create a package
    Create {
        /// Package name, or /namespace/name
        name: String,
        #[command(flatten)]
        spec: PackageSpec,
    },
    /// Update a package (or create it); omitted settings keep their values
    Update {
        name: String,
        #[command(flatten)]
        spec: PackageSpec,
    },
    /// Bind a package: a package of yours that reaches another's actions with your parameters
    Bind {
        /// The package to bind: name, or /namespace/name of a shared package
        package: String,
        /// The binding's name
        name: String,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        annotations: AnnotationArgs,
    },
    /// Show a package and the actions it holds
    Get {
        name: String,
        /// Only the package's name and its actions
        #[arg(short = 's', long)]
        summary: bool,
    },
    /// List packages: your namespace's, or another namespace's shared ones (/whisk.system)
    List {
        /// A namespace: /name (default: yours)
        namespace: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a package (it must hold no actions)
    Delete { name: String },
}

/// Settings of a package for create and update.
#[derive(Debug, Args, Default)]
pub struct PackageSpec {
    #[command(flatten)]
    pub params: ParamArgs,
    #[command(flatten)]
    pub annotations: AnnotationArgs,
    /// Share the package with every namespace (yes or no)
    #[arg(long, value_name = "yes|no")]
    pub shared: Option<String>,
}

/// `-a KEY VALUE` and `-A file`, for packages.
#[derive(Debug, Args, Default)]
pub struct AnnotationArgs {
    /// Annotation (the value is JSON if it parses, else a string)
    #[arg(short = 'a', long = "annotation", num_args = 2, value_names = ["KEY", "VALUE"],
          action = ArgAction::Append, allow_hyphen_values = true)]
    pub annotation: Vec<String>,
    /// Annotations from a JSON object file
    #[arg(short = 'A', long = "annotation-file", value_name = "FILE")]
    pub annotation_file: Option<PathBuf>,
}

/// `-p KEY VALUE` and `-P file`, shared by create, update and invoke.
#[derive(Debug, Args, Default)]
pub struct ParamArgs {
    /// Parameter (the value is JSON if it parses, else a string)
    #[arg(short = 'p', long = "param", num_args = 2, value_names = ["KEY", "VALUE"],
          action = ArgAction::Append, allow_hyphen_values = true)]
    pub param: Vec<String>,
    /// Parameters from a JSON object file (-p values override it)
    #[arg(short = 'P', long = "param-file", value_name = "FILE")]
    pub param_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    pub name: String,
    #[command(flatten)]
    pub params: ParamArgs,
    /// Wait for the result (up to the server's 60 s)
    #[arg(short = 'b', long)]
    pub blocking: bool,
    /// Print only the result (implies --blocking)
    #[arg(short = 'r', long)]
    pub result: bool,
}

/// Pagination, with OpenWhisk's default of 30 and maximum of 200.
#[derive(Debug, Args, Clone, Copy)]
pub struct PageArgs {
    /// How many to list (1..200)
    #[arg(short = 'l', long, default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// How many to skip
    #[arg(short = 's', long, default_value_t = 0)]
    pub skip: u32,
}

#[derive(Debug, Subcommand)]
pub enum ActivationCommand {
    /// List activations, newest first
    List {
        /// Only activations of this action
        name: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        /// Only activations started at or after: epoch ms, RFC 3339, or a duration ago (10m)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only activations started before: epoch ms, RFC 3339, or a duration ago
        #[arg(long, value_name = "TIME")]
        upto: Option<String>,
    },
    /// Show an activation
    Get { id: String },
    /// Show an activation's logs
    Logs { id: String },
    /// Show an activation's result
    Result { id: String },
    /// Print new activations' logs as they arrive
    Poll {
        /// Only activations of this action
        name: Option<String>,
        /// Stop after this many seconds (default: until interrupted)
        #[arg(long = "exit", value_name = "SECONDS")]
        exit: Option<u64>,
        /// Milliseconds between polls
        #[arg(long, value_name = "MS", default_value_t = 1000, hide = true,
              value_parser = clap::value_parser!(u64).range(50..))]
        interval: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// List the namespaces the key can use
    List,
}

#[derive(Debug, Subcommand)]
pub enum PropertyCommand {
    /// Show the API host and key in use (the secret is masked) and where each came from
    Get,
}

/// The clap command, for generating man pages and shell completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs one command line and returns the process's exit code. Errors are printed here, once,
/// as `error: <one line>` on stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.global.verbose {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(output::stderr_color())
            .with_env_filter(tracing_subscriber::EnvFilter::new("hearth=debug"))
            .try_init();
    }
    let output = Output { json: cli.global.json, color: output::stdout_color() };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = execute(cli, output, &mut out);
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`hearth action list | head -1`) is the reader's choice, not news.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            eprintln!("{}", output::error_line(output::stderr_color(), &e.to_string()));
            e.to_exit_code()
        }
    }
}

/// Runs a parsed command, printing results to `out`.
pub fn execute(cli: Cli, output: Output, out: &mut dyn Write) -> Result<(), CliError> {
    let inputs = config::Inputs::from_process(cli.global.apihost, cli.global.auth)?;
    // property get reports what it can even when no key is configured.
    if let Resource::Property { command: PropertyCommand::Get } = cli.command {
        return property::get(&inputs, output, out);
    }
    let config = config::resolve(&inputs)?;
    let client = http::Client::new(&config, Duration::from_secs(cli.global.request_timeout))?;
    match cli.command {
        Resource::Action { command } => action::run(&client, output, command, out),
        Resource::Package { command } => package::run(&client, output, command, out),
        Resource::Trigger { command } => trigger::run(&client, output, command, out),
        Resource::Rule { command } => rule::run(&client, output, command, out),
        Resource::Activation { command } => activation::run(&client, output, command, out),
        Resource::Api { command } => api::run(&client, output, command, out),
        Resource::Namespace { command: NamespaceCommand::List } => {
            namespace::list(&client, output, out)
        }
        Resource::Property { command: PropertyCommand::Get } => property::get(&inputs, output, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hearth").chain(args.iter().copied()))
    }

    #[test]
    fn command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn action_create_with_everything() {
        let cli = parse(&[
            "action",
            "create",
            "hello",
            "hello.py",
            "--kind",
            "python:3",
            "--main",
            "run",
            "-m",
            "128",
            "--timeout",
            "5000",
            "--logsize",
            "1",
            "-p",
            "name",
            "Ada",
            "-p",
            "n",
            "-5",
            "-P",
            "p.json",
            "-a",
            "description",
            "hi",
            "--web",
            "false",
            "--json",
        ])
        .unwrap();
        assert!(cli.global.json);
        let Resource::Action { command: ActionCommand::Create { name, file, spec } } = cli.command
        else {
            panic!("not action create");
        };
        assert_eq!((name.as_str(), file), ("hello", Some(PathBuf::from("hello.py"))));
        assert_eq!(spec.kind.as_deref(), Some("python:3"));
        assert_eq!(spec.main.as_deref(), Some("run"));
        assert_eq!((spec.memory, spec.timeout, spec.logsize), (Some(128), Some(5000), Some(1)));
        assert_eq!(spec.params.param, ["name", "Ada", "n", "-5"]);
        assert_eq!(spec.params.param_file, Some(PathBuf::from("p.json")));
        assert_eq!(spec.annotation, ["description", "hi"]);
        assert_eq!(spec.web.as_deref(), Some("false"));
    }

    #[test]
    fn create_needs_a_file_update_does_not() {
        assert!(parse(&["action", "create", "hello"]).is_err());
        let cli = parse(&["action", "update", "hello", "-p", "a", "1"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Action { command: ActionCommand::Update { file: None, .. } }
        ));
    }

    #[test]
    fn invoke_flags() {
        let cli = parse(&["action", "invoke", "hello", "-r", "-p", "k", "{\"a\":1}"]).unwrap();
        let Resource::Action { command: ActionCommand::Invoke(a) } = cli.command else {
            panic!("not invoke");
        };
        assert!(a.result && !a.blocking);
        assert_eq!(a.params.param, ["k", "{\"a\":1}"]);
        let cli = parse(&["action", "invoke", "hello", "--blocking"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Action { command: ActionCommand::Invoke(InvokeArgs { blocking: true, .. }) }
        ));
    }

    #[test]
    fn get_code_false_and_list_paging() {
        let cli = parse(&["action", "get", "x", "--code", "false"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Action { command: ActionCommand::Get { code: false, .. } }
        ));
        let cli = parse(&["action", "list", "--limit", "5", "--skip", "10"]).unwrap();
        let Resource::Action { command: ActionCommand::List { scope: None, page: p } } =
            cli.command
        else {
            panic!("not list");
        };
        assert_eq!((p.limit, p.skip), (5, 10));
        let cli = parse(&["action", "list", "utils"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Action { command: ActionCommand::List { scope: Some(_), .. } }
        ));
        assert!(parse(&["action", "list", "--limit", "201"]).is_err());
        assert!(parse(&["action", "list", "--limit", "0"]).is_err());
    }

    #[test]
    fn package_commands() {
        let cli =
            parse(&["package", "create", "p", "-p", "a", "1", "-a", "d", "x", "--shared", "yes"])
                .unwrap();
        let Resource::Package { command: PackageCommand::Create { name, spec } } = cli.command
        else {
            panic!("not package create");
        };
        assert_eq!((name.as_str(), spec.shared.as_deref()), ("p", Some("yes")));
        assert_eq!((spec.params.param.len(), spec.annotations.annotation.len()), (2, 2));
        let cli = parse(&["package", "bind", "/whisk.system/utils", "mine", "-p", "k", "v"]);
        assert!(matches!(
            cli.unwrap().command,
            Resource::Package { command: PackageCommand::Bind { .. } }
        ));
        let cli = parse(&["package", "list", "/whisk.system", "-l", "5"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Package { command: PackageCommand::List { namespace: Some(_), .. } }
        ));
        for sub in [&["get", "p"][..], &["delete", "p"], &["update", "p"], &["get", "p", "-s"]] {
            assert!(parse(&[&["package"][..], sub].concat()).is_ok(), "{sub:?}");
        }
    }

    #[test]
    fn activation_commands() {
        let cli =
            parse(&["activation", "list", "hello", "--since", "10m", "--upto", "5", "-l", "3"])
                .unwrap();
        let Resource::Activation { command: ActivationCommand::List { name, page, since, upto } } =
            cli.command
        else {
            panic!("not activation list");
        };
        assert_eq!(name.as_deref(), Some("hello"));
        assert_eq!((page.limit, since.as_deref(), upto.as_deref()), (3, Some("10m"), Some("5")));
        let cli = parse(&["activation", "poll", "--exit", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Resource::Activation {
                command: ActivationCommand::Poll { exit: Some(3), interval: 1000, .. }
            }
        ));
        for sub in ["get", "logs", "result"] {
            assert!(parse(&["activation", sub, "0123"]).is_ok(), "{sub}");
            assert!(parse(&["activation", sub]).is_err(), "{sub}");
        }
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["namespace", "list", "--apihost", "http://h:1", "-u", "k:s"]).unwrap();
        assert_eq!(cli.global.apihost.as_deref(), Some("http://h:1"));
        assert_eq!(cli.global.auth.as_deref(), Some("k:s"));
        assert_eq!(cli.global.request_timeout, 70);
        assert!(parse(&["property", "get", "--request-timeout", "0"]).is_err());
    }

    #[test]
    fn usage_errors_exit_64_and_help_exits_0() {
        assert_eq!(run(["hearth", "action", "frobnicate"]), ExitCode::from(EXIT_USAGE));
        assert_eq!(run(["hearth", "--version"]), ExitCode::SUCCESS);
    }
}
