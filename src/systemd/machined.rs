//! systemd-machined over D-Bus: action containers as registered machines.
//!
//! Owns the calls to `org.freedesktop.machine1.Manager` (RegisterMachine, TerminateMachine)
//! and the `MachineRemoved` signal stream, plus the naming that ties a runc container to its
//! systemd scope. With this, `machinectl list` shows the warm containers, `machinectl
//! terminate` stops one, and the invoker hears about it.
//!
//! Why RegisterMachine and not CreateMachine: runc (with `--systemd-cgroup`) already put the
//! container in its own scope with MemoryMax/TasksMax/CPU set from the action's limits;
//! RegisterMachine attaches the machine to the leader's existing unit, so there is one scope
//! per container and its limits come from one place.
//!
//! Must never make the bus a hard dependency: with no system bus (standalone on a bare machine)
//! [`Machined::connect`] returns None after logging once, and the invoker runs unregistered.
//! zbus is used without its proxy macros (lean build); the method signatures are spelled out
//! below against machined's D-Bus API.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedVariant;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath};

const DEST: &str = "org.freedesktop.machine1";
const PATH: &str = "/org/freedesktop/machine1";
const MANAGER: &str = "org.freedesktop.machine1.Manager";
const SYSTEMD_DEST: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const SYSTEMD_MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const UNIT_PATH_NAMESPACE: &str = "/org/freedesktop/systemd1/unit";

/// The `service` string machines are registered with (`machinectl status` shows it).
pub const SERVICE: &str = "hearth";
/// Machines are containers (as opposed to "vm").
pub const CLASS: &str = "container";
/// The slice every action container's scope goes in (shipped as systemd/hearth.slice), so
/// `systemctl status hearth.slice` lists them all and slice-wide limits can be set.
pub const ACTION_SLICE: &str = "hearth.slice";
/// runc's systemd driver names a container's scope `<prefix>-<name>.scope`.
pub const SCOPE_PREFIX: &str = "hearth";

/// How many MachineRemoved signals may wait unread before zbus drops the oldest. Terminations
/// come one per container; this is far above the pool size a host runs.
const REMOVED_QUEUE: usize = 1024;

static NO_BUS_LOGGED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum MachinedError {
    #[error("machine name {name:?} is invalid: {why}")]
    BadName { name: String, why: &'static str },
    #[error("root directory {path} must be absolute (or empty)")]
    BadRoot { path: String },
    #[error("RegisterMachine({name}, leader {leader}) failed: {source}")]
    Register {
        name: String,
        leader: u32,
        #[source]
        source: zbus::Error,
    },
    #[error("TerminateMachine({name}) failed: {source}")]
    Terminate {
        name: String,
        #[source]
        source: zbus::Error,
    },
    #[error("subscribing to MachineRemoved failed: {0}")]
    Subscribe(#[source] zbus::Error),
    #[error("SetUnitProperties({unit}) failed: {source}")]
    SetProperties {
        unit: String,
        #[source]
        source: zbus::Error,
    },
}

/// A connection to systemd-machined on the system bus. Cheap to clone (one shared connection).
#[derive(Debug, Clone)]
pub struct Machined {
    conn: Connection,
}

impl Machined {
    /// Connects to the system bus. None when there is none (no D-Bus daemon, no socket): logged
    /// once per process at INFO, since running without registration is a supported mode.
    pub async fn connect() -> Option<Machined> {
        Self::connect_with(zbus::connection::Builder::system()).await
    }

    /// Connects to the bus at a D-Bus address (`unix:path=...`) instead of the system bus:
    /// for tests and for hosts with an unusual bus location. None, logged once, on failure.
    pub async fn connect_address(address: &str) -> Option<Machined> {
        Self::connect_with(zbus::connection::Builder::address(address)).await
    }

    async fn connect_with(builder: zbus::connection::Builder<'_>) -> Option<Machined> {
        match builder.build().await {
            Ok(conn) => Some(Machined { conn }),
            Err(e) => {
                if !NO_BUS_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "no system bus; containers will not be registered with systemd-machined");
                }
                None
            }
        }
    }

    /// Registers the process `leader` (the container's init, already in its own scope) as the
    /// machine `name`, class container, service hearth. `root` is shown by `machinectl status`.
    #[tracing::instrument(level = "debug", skip(self, root), fields(container = name))]
    pub async fn register(
        &self,
        name: &str,
        leader: u32,
        root: &Path,
    ) -> Result<(), MachinedError> {
        validate_machine_name(name)?;
        let root = root.to_str().unwrap_or_default();
        if !root.is_empty() && !root.starts_with('/') {
            return Err(MachinedError::BadRoot { path: root.into() });
        }
        // RegisterMachine(s name, ay id, s service, s class, u leader, s root_directory);
        // an empty id lets machined leave it unset.
        let id: &[u8] = &[];
        self.conn
            .call_method(
                Some(DEST),
                PATH,
                Some(MANAGER),
                "RegisterMachine",
                &(name, id, SERVICE, CLASS, leader, root),
            )
            .await
            .map_err(|source| MachinedError::Register { name: name.into(), leader, source })?;
        tracing::debug!(container = name, leader, "registered machine");
        Ok(())
    }

    /// Terminates the machine `name`: machined stops its scope, killing the container.
    #[tracing::instrument(level = "debug", skip(self), fields(container = name))]
    pub async fn terminate(&self, name: &str) -> Result<(), MachinedError> {
        validate_machine_name(name)?;
        self.conn
            .call_method(Some(DEST), PATH, Some(MANAGER), "TerminateMachine", &(name,))
            .await
            .map_err(|source| MachinedError::Terminate { name: name.into(), source })?;
        Ok(())
    }

    /// Sets a container scope's memory limit and CPU share as runtime properties of its unit
    /// (`SetUnitProperties`, runtime=true: gone with the scope), so that systemd applies them
    /// to the cgroup and keeps them there. The names are the ones runc's systemd driver used
    /// when it created the scope: `MemoryLimit` and `CPUShares` on cgroup v1, `MemoryMax` and
    /// `CPUWeight` on v2. `cpu` is in the unit of the version: shares on v1, weight on v2.
    #[tracing::instrument(level = "debug", skip(self), fields(unit))]
    pub async fn set_scope_limits(
        &self,
        unit: &str,
        cgroup_v1: bool,
        memory_bytes: u64,
        cpu: u64,
    ) -> Result<(), MachinedError> {
        use zbus::Variant as Value;
        let props: Vec<(&str, Value<'_>)> = if cgroup_v1 {
            vec![("MemoryLimit", Value::U64(memory_bytes)), ("CPUShares", Value::U64(cpu))]
        } else {
            vec![("MemoryMax", Value::U64(memory_bytes)), ("CPUWeight", Value::U64(cpu))]
        };
        self.conn
            .call_method(
                Some(SYSTEMD_DEST),
                SYSTEMD_PATH,
                Some(SYSTEMD_MANAGER),
                "SetUnitProperties",
                &(unit, true, props),
            )
            .await
            .map_err(|source| MachinedError::SetProperties { unit: unit.into(), source })?;
        Ok(())
    }

    /// Subscribes to systemd's unit `PropertiesChanged` and yields the containers whose
    /// scope (`hearth-<id>.scope`) went `deactivating`: stopped while its processes still ran
    /// (`machinectl terminate`, `systemctl stop` of the scope, or our own `runc delete`). A
    /// container whose process exits by itself never passes through `deactivating` (its empty
    /// scope goes straight to `inactive`, and machined's stop job comes after), which is how a
    /// termination from outside is told apart from a crash. Subscribe before registering.
    pub async fn scope_stops(&self) -> Result<ScopeStopStream, MachinedError> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(SYSTEMD_DEST)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace(UNIT_PATH_NAMESPACE)
            .arg(0, UNIT_INTERFACE)
            .build()
            .map_err(MachinedError::Subscribe)?;
        let stream =
            MessageStream::for_match_rule(rule, &self.conn, NonZeroUsize::new(REMOVED_QUEUE))
                .await
                .map_err(MachinedError::Subscribe)?;
        // systemd emits unit change signals only while some client is subscribed.
        self.conn
            .call_method(Some(SYSTEMD_DEST), SYSTEMD_PATH, Some(SYSTEMD_MANAGER), "Subscribe", &())
            .await
            .map_err(MachinedError::Subscribe)?;
        Ok(ScopeStopStream { inner: stream })
    }

    /// Subscribes to `MachineRemoved`. Subscribe before registering, so no removal between the
    /// two is missed. Every machine on the host is reported (not only hearth's); the invoker
    /// matches names against its own containers.
    pub async fn removed(&self) -> Result<MachineRemovedStream, MachinedError> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DEST)
            .path(PATH)
            .interface(MANAGER)
            .member("MachineRemoved")
            .build()
            .map_err(MachinedError::Subscribe)?;
        let stream =
            MessageStream::for_match_rule(rule, &self.conn, NonZeroUsize::new(REMOVED_QUEUE))
                .await
                .map_err(MachinedError::Subscribe)?;
        Ok(MachineRemovedStream { inner: stream })
    }
}

/// Containers whose scope went `deactivating` (see [`Machined::scope_stops`]).
#[derive(Debug)]
pub struct ScopeStopStream {
    inner: MessageStream,
}

impl ScopeStopStream {
    /// The next container id whose scope is being stopped; None when the bus closed. Other
    /// units and other property changes are skipped.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            let msg = std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_next(cx)).await?;
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            let Some(unit) = header.path().and_then(|p| unit_of_path(p.as_str())) else {
                continue;
            };
            let Some(container) = container_of_scope(&unit) else { continue };
            // PropertiesChanged(s interface, a{sv} changed, as invalidated)
            type Changed = (String, HashMap<String, OwnedVariant>, Vec<String>);
            let Ok((_iface, changed, _)) = msg.body().deserialize::<Changed>() else {
                continue;
            };
            let deactivating = changed
                .get("ActiveState")
                .and_then(|v| String::try_from(&**v).ok())
                .is_some_and(|state| state == "deactivating");
            if deactivating {
                return Some(container.to_owned());
            }
        }
    }
}

/// A unit's name from its object path: the last component with systemd's bus escaping
/// (`_xx` is the byte 0xxx) undone. None for any other path.
pub fn unit_of_path(path: &str) -> Option<String> {
    let escaped = path.strip_prefix(UNIT_PATH_NAMESPACE)?.strip_prefix('/')?;
    let b = escaped.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The container of a `hearth-<id>.scope` unit name.
pub fn container_of_scope(unit: &str) -> Option<&str> {
    unit.strip_prefix(SCOPE_PREFIX)?.strip_prefix('-')?.strip_suffix(".scope")
}

/// The names of machines as machined removes them (terminated, or their scope ended).
#[derive(Debug)]
pub struct MachineRemovedStream {
    inner: MessageStream,
}

impl MachineRemovedStream {
    /// The next removed machine's name; None when the bus connection closed. Malformed signals
    /// are skipped (logged), never fatal.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            let msg = std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_next(cx)).await?;
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "bad message on the MachineRemoved stream");
                    continue;
                }
            };
            match msg.body().deserialize::<(String, OwnedObjectPath)>() {
                Ok((name, _path)) => return Some(name),
                Err(e) => tracing::warn!(error = %e, "MachineRemoved with an unexpected body"),
            }
        }
    }
}

/// machined accepts hostname-like names: 1..=64 of ASCII letters, digits, '-', '_' and '.',
/// not starting or ending with '.' or '-'. Checked here so a bad name is a clear error rather
/// than a D-Bus InvalidArgs.
pub fn validate_machine_name(name: &str) -> Result<(), MachinedError> {
    let bad = |why| Err(MachinedError::BadName { name: name.into(), why });
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    if name.starts_with(['.', '-']) || name.ends_with(['.', '-']) || name.contains("..") {
        return bad("must not start or end with '.' or '-', nor contain '..'");
    }
    Ok(())
}

/// runc's `cgroupsPath` for the systemd driver (`slice:prefix:name`): the container runs in the
/// transient unit `hearth-<name>.scope` inside `hearth.slice`.
pub fn runc_cgroups_path(container: &str) -> String {
    format!("{ACTION_SLICE}:{SCOPE_PREFIX}:{container}")
}

/// The scope unit runc creates for `container` with [`runc_cgroups_path`].
pub fn scope_unit(container: &str) -> String {
    format!("{SCOPE_PREFIX}-{container}.scope")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        for ok in ["hearth-guest-hello-1", "c_1", "a.b", "x"] {
            validate_machine_name(ok).unwrap();
        }
        for bad in ["", "-a", "a-", ".a", "a..b", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_machine_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cgroups_path_and_scope() {
        assert_eq!(runc_cgroups_path("c7"), "hearth.slice:hearth:c7");
        assert_eq!(scope_unit("c7"), "hearth-c7.scope");
        assert_eq!(container_of_scope("hearth-hearth-1a-2.scope"), Some("hearth-1a-2"));
        assert_eq!(container_of_scope("other.scope"), None);
        assert_eq!(
            unit_of_path("/org/freedesktop/systemd1/unit/hearth_2dhearth_2d1a_2d2_2escope")
                .as_deref(),
            Some("hearth-hearth-1a-2.scope")
        );
        assert_eq!(unit_of_path("/org/freedesktop/systemd1/unit/bad_2"), None);
        assert_eq!(unit_of_path("/org/freedesktop/machine1"), None);
        assert_eq!(container_of_scope("hearth-x.service"), None);
    }

    #[tokio::test]
    async fn connect_without_a_bus_is_none_not_an_error() {
        // A bus address that cannot exist, as on a bare machine without D-Bus.
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix:path={}", dir.path().join("no-bus").display());
        assert!(Machined::connect_address(&addr).await.is_none());
        assert!(NO_BUS_LOGGED.load(Ordering::Relaxed));
    }
}
