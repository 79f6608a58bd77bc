//! Glue to the host's service manager: socket activation, sd_notify, the journal,
//! systemd-machined and the fd store.
//!
//! Owns everything hearth says to or takes from systemd, one concern per file:
//! [`fds`] (the fds passed at start), [`listen`] (listeners: activated or bound), [`notify`]
//! (READY/STATUS/STOPPING/WATCHDOG), [`journal`] (tracing to journald or stderr, action log
//! forwarding), [`machined`] (containers as machines), [`fdstore`] (live restore).
//! Every piece degrades to a no-op or a fallback when systemd is absent: hearth must run the
//! same when started by hand, in a test, or as `hearthd standalone` on a bare machine.
//! Must never hold policy (which containers to keep, when to exit): that belongs to the
//! daemons; this module only carries their decisions to systemd and back.
//!
//! # How the daemons call it (src/bin/hearthd.rs)
//!
//! ```no_run
//! use hearth::systemd::{fdstore, journal, listen, notify, machined};
//! # fn main() -> anyhow::Result<()> {
//! // 1. Before the tokio runtime exists (these remove LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*
//! //    from the environment so runc and the actions never inherit them; removing
//! //    environment variables is only sound while the process has one thread).
//! let mut inherited = hearth::systemd::InheritedFds::take_from_env();
//! let notifier = notify::Notifier::take_from_env();
//! journal::init_tracing("hearth=info")?; // journald under systemd, stderr otherwise
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async move {
//!     let (trigger, shutdown) = hearth::shutdown::channel();
//!     // 2. Listeners: the socket named by FileDescriptorName= (http for the controller,
//!     //    invoker for the invoker), else bind the --listen address.
//!     let fallback: listen::ListenAddr = "127.0.0.1:3233".parse()?;
//!     let (listener, _origin) = listen::take_or_bind(&mut inherited, "http", &fallback)?;
//!     // 3. Invoker only: warm containers kept across the restart.
//!     let stored: Vec<fdstore::StoredEntry> = fdstore::take_stored(&mut inherited)?;
//!     inherited.close_untaken();
//!     //    ... and machined, when there is a bus:
//!     let machined: Option<machined::Machined> = machined::Machined::connect().await;
//!     # let _ = (stored, machined);
//!     // 4. Open the store, build the server, THEN:
//!     notifier.ready()?;
//!     let _wd = notify::spawn_watchdog(notifier.clone(), shutdown.clone());
//!     let _st = notify::StatusReporter::spawn(
//!         notifier.clone(),
//!         std::time::Duration::from_secs(2),
//!         shutdown.clone(),
//!         || notify::format_figures(&[("warm", 0), ("in flight", 0)]),
//!     );
//!     // 5. On SIGTERM: notifier.stopping("draining"), trigger.fire(), drain (bounded).
//!     # let _ = (listener, trigger);
//!     Ok::<_, anyhow::Error>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Invoker fd store, per warm container: `fdstore::store_fds(&notifier, name, &[stdin,
//! stdout, stderr, result])` once it is warm, `fdstore::remove_fds(&notifier, name, 4)`
//! when it is reaped. Action output: `journal::forward_action_log(activation_id, namespace,
//! "namespace/action", container, journal::Stream::Stdout, line)`. Containers:
//! `machined::runc_cgroups_path(container)` as runc's cgroupsPath (with --systemd-cgroup),
//! then `machined.register(container, init_pid, bundle_rootfs)`, and a task reading
//! `machined.removed().await?.next().await` to notice `machinectl terminate`.

pub mod fds;
pub mod fdstore;
pub mod journal;
pub mod listen;
pub mod machined;
pub mod notify;
pub mod unit_job;

pub use fds::InheritedFds;
