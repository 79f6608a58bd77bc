//! The daemons' configuration files: `controller.toml` and `invoker.toml` under the config
//! directory (`/etc/hearth` when packaged). Every setting is optional; flags override files,
//! files override defaults. Unknown keys are errors, so a typo is reported, not ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::invoker::InvokerConfig;
use crate::model::NamespaceLimits;

/// Where packaged installs keep their configuration.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/hearth";
/// Where packaged installs keep their data (systemd's StateDirectory=hearth).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/hearth";
/// The invoker's socket on one host.
pub const INVOKER_SOCKET: &str = "/run/hearth/invoker.sock";
/// The invoker's runtime state (bundles, runc's root).
pub const INVOKER_STATE_DIR: &str = "/run/hearth";
/// The REST API's address unless configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3233";

/// `controller.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub invoker_socket: Option<PathBuf>,
    /// Longest a blocking invoke waits before 202 (OpenWhisk: 60 s).
    #[serde(deserialize_with = "opt_duration")]
    pub max_blocking_wait: Option<Duration>,
    /// Added to the action's timeout for the blocking wait.
    #[serde(deserialize_with = "opt_duration")]
    pub wait_margin: Option<Duration>,
    /// Activation records older than this are deleted.
    #[serde(deserialize_with = "opt_duration")]
    pub retention: Option<Duration>,
    /// How often retention runs.
    #[serde(deserialize_with = "opt_duration")]
    pub retention_interval: Option<Duration>,
    /// Exit after this long without requests (0 or absent: never).
    #[serde(deserialize_with = "opt_duration")]
    pub idle_exit: Option<Duration>,
    /// Several hosts: `kafka://HOST:PORT[,HOST:PORT]` (absent: the invoker's Unix socket).
    pub bus: Option<String>,
    /// This controller's id in the cluster (with `bus`).
    pub id: Option<String>,
    /// With `bus`: an invoker silent for this long is offline and its in-flight activations
    /// are recorded as failed (default 10 s); a controller silent this long no longer counts
    /// among those sharing every invoker's memory.
    #[serde(deserialize_with = "opt_duration")]
    pub invoker_offline_after: Option<Duration>,
    /// `[limits]`: every namespace's limits unless overridden for it (`hearthd admin limits`).
    pub limits: LimitsFile,
}

/// The `[limits]` table of controller.toml; an absent key keeps the built-in default
/// ([`NamespaceLimits::SINGLE_OWNER`]).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsFile {
    pub invocations_per_minute: Option<u32>,
    pub concurrent_invocations: Option<u32>,
    pub fires_per_minute: Option<u32>,
    pub sequence_max_length: Option<u32>,
}

impl LimitsFile {
    /// The file's values over `defaults`.
    pub fn over(self, defaults: NamespaceLimits) -> NamespaceLimits {
        NamespaceLimits {
            invocations_per_minute: self.invocations_per_minute,
            concurrent_invocations: self.concurrent_invocations,
            fires_per_minute: self.fires_per_minute,
            sequence_max_length: self.sequence_max_length,
        }
        .over(defaults)
    }
}

/// `invoker.toml`: the process's own settings and, in the same flat table, the pool's
/// ([`InvokerConfig`]: memory budget, prewarm plan, idle and queue limits).
#[derive(Debug, Clone, Default)]
pub struct InvokerFile {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// The runc binary.
    pub runc: Option<PathBuf>,
    /// Several hosts: `kafka://HOST:PORT[,HOST:PORT]` (absent: serve the Unix socket).
    pub bus: Option<String>,
    /// This invoker's number in the cluster (with `bus`).
    pub id: Option<u32>,
    pub pool: InvokerConfig,
}

/// The process's own keys of `invoker.toml`; everything else belongs to the pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct InvokerOwn {
    data_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    runc: Option<PathBuf>,
    bus: Option<String>,
    id: Option<u32>,
}

impl<'de> Deserialize<'de> for InvokerFile {
    /// Splits the flat table: the daemon's keys first, the rest must be the pool's (whose
    /// `deny_unknown_fields` still reports a typo).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let mut own = toml::Table::new();
        for key in ["data_dir", "socket", "state_dir", "runc", "bus", "id"] {
            if let Some(v) = table.remove(key) {
                own.insert(key.to_owned(), v);
            }
        }
        let own = InvokerOwn::deserialize(toml::Value::Table(own)).map_err(D::Error::custom)?;
        let pool =
            InvokerConfig::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(Self {
            data_dir: own.data_dir,
            socket: own.socket,
            state_dir: own.state_dir,
            runc: own.runc,
            bus: own.bus,
            id: own.id,
            pool,
        })
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// Reads `dir/name` into `T`; a missing file gives the defaults.
pub fn load<T: Default + serde::de::DeserializeOwned>(
    dir: Option<&Path>,
    name: &str,
) -> Result<T, ConfigFileError> {
    let Some(dir) = dir else { return Ok(T::default()) };
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(source) => {
            return Err(ConfigFileError::Read { path: path.display().to_string(), source })
        }
    };
    toml::from_str(&text).map_err(|e| ConfigFileError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::invoker::config::duration(d).map(Some)
}

/// The data directory when none is configured: `$STATE_DIRECTORY` under systemd, else the
/// system one for root, else a per-user one.
pub fn default_data_dir(standalone: bool) -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        let first = dir.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    if standalone {
        if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(d).join("hearth");
        }
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(".local/share/hearth");
        }
    }
    PathBuf::from(SYSTEM_DATA_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_table_overrides_the_defaults_it_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("controller.toml"),
            "[limits]\nconcurrent_invocations = 7\n",
        )
        .unwrap();
        let c: ControllerFile = load(Some(dir.path()), "controller.toml").unwrap();
        let l = c.limits.over(NamespaceLimits::SINGLE_OWNER);
        assert_eq!(l.concurrent_invocations, Some(7));
        assert_eq!(l.invocations_per_minute, NamespaceLimits::SINGLE_OWNER.invocations_per_minute);
        std::fs::write(dir.path().join("controller.toml"), "[limits]\nconcurent = 7\n").unwrap();
        assert!(load::<ControllerFile>(Some(dir.path()), "controller.toml").is_err(), "typo");
    }

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let c: ControllerFile = load(Some(dir.path()), "controller.toml").unwrap();
        assert!(c.listen.is_none());
    }

    #[test]
    fn parses_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("controller.toml"),
            "listen = \"0.0.0.0:3233\"\nidle_exit = \"5m\"\nmax_blocking_wait = 30000\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("invoker.toml"),
            "runc = \"/usr/bin/runc\"\nmemory_budget_mb = 1024\nidle_timeout = \"1m\"\n",
        )
        .unwrap();
        let c: ControllerFile = load(Some(dir.path()), "controller.toml").unwrap();
        assert_eq!(c.idle_exit, Some(Duration::from_secs(300)));
        assert_eq!(c.max_blocking_wait, Some(Duration::from_secs(30)));
        let i: InvokerFile = load(Some(dir.path()), "invoker.toml").unwrap();
        assert_eq!(i.pool.memory_budget_mb, 1024);
        assert_eq!(i.pool.idle_timeout, Duration::from_secs(60));
        std::fs::write(
            dir.path().join("invoker.toml"),
            "bus = \"kafka://10.0.0.1:9092\"\nid = 3\nmemory_budget_mb = 1024\n",
        )
        .unwrap();
        let i: InvokerFile = load(Some(dir.path()), "invoker.toml").unwrap();
        assert_eq!((i.bus.as_deref(), i.id), (Some("kafka://10.0.0.1:9092"), Some(3)));
    }

    #[test]
    fn shipped_config_files_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let _: ControllerFile = load(Some(&dir), "controller.toml").unwrap();
        let i: InvokerFile = load(Some(&dir), "invoker.toml").unwrap();
        assert_eq!(i.pool, InvokerConfig::default());
    }

    #[test]
    fn invoker_typos_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("invoker.toml"), "memroy_budget_mb = 1\n").unwrap();
        let e = load::<InvokerFile>(Some(dir.path()), "invoker.toml").unwrap_err();
        assert!(e.to_string().contains("memroy_budget_mb"), "{e}");
    }

    #[test]
    fn typos_are_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("controller.toml"), "lisen = \"x\"\n").unwrap();
        let e = load::<ControllerFile>(Some(dir.path()), "controller.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("controller.toml") && msg.contains("lisen"), "{msg}");
    }
}
