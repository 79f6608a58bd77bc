//! Telling the service manager about our state: sd_notify(3) READY, STATUS, STOPPING, WATCHDOG.
//!
//! Owns the notify socket address and the two periodic tasks (watchdog keep-alive, live status
//! line). Messages are formatted by the `sd-notify` crate's `NotifyState`; the socket address is
//! captured once into a [`Notifier`] value instead of being re-read from the environment on
//! every call, so the variable can be removed before children (runc honours `NOTIFY_SOCKET`
//! and would try to forward the container's readiness) inherit it, and tests can point a
//! notifier at their own socket without touching process-global state.
//!
//! Must never fail the daemon: with no `NOTIFY_SOCKET` every call is a no-op, and a send error
//! is returned to the caller to log, never a panic.

use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;

/// A notification that could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("sd_notify {what:?} to {socket} failed: {source}")]
pub struct NotifyError {
    pub what: String,
    pub socket: String,
    #[source]
    pub source: io::Error,
}

/// Where notifications go, and the watchdog interval systemd asked for. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<NotifyAddr>,
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifyAddr {
    Path(PathBuf),
    /// `@name`: a Linux abstract socket (systemd uses these inside some containers).
    Abstract(Vec<u8>),
}

impl NotifyAddr {
    fn parse(v: OsString) -> Option<Self> {
        use std::os::unix::ffi::OsStringExt;
        let bytes = v.into_vec();
        match bytes.first() {
            None => None,
            Some(b'@') => Some(NotifyAddr::Abstract(bytes[1..].to_vec())),
            Some(b'/') => Some(NotifyAddr::Path(PathBuf::from(OsString::from_vec(bytes)))),
            // sd_notify(3) accepts only absolute paths and abstract names (vsock is not ours).
            Some(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            NotifyAddr::Path(p) => p.display().to_string(),
            NotifyAddr::Abstract(n) => format!("@{}", String::from_utf8_lossy(n)),
        }
    }

    fn connect(&self) -> io::Result<UnixDatagram> {
        let sock = UnixDatagram::unbound()?;
        match self {
            NotifyAddr::Path(p) => sock.connect(p)?,
            NotifyAddr::Abstract(n) => sock.connect_addr(&SocketAddr::from_abstract_name(n)?)?,
        }
        Ok(sock)
    }
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, then removes them from the
    /// environment so no child inherits them. Call it before the tokio runtime starts (removing
    /// environment variables races with `getenv` in other threads).
    pub fn take_from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(NotifyAddr::parse);
        let watchdog = sd_notify::watchdog_enabled();
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(var);
        }
        Notifier { socket, watchdog }
    }

    /// A notifier that sends nothing (not under systemd; most tests).
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// A notifier sending to `socket`, with an optional watchdog interval: for tests.
    pub fn to_socket(socket: impl Into<PathBuf>, watchdog: Option<Duration>) -> Self {
        Notifier { socket: Some(NotifyAddr::Path(socket.into())), watchdog }
    }

    /// True when there is a service manager listening (`NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `WatchdogSec=` of the unit, when set for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// READY=1: send only once listeners are bound and the store is open, because systemd
    /// starts dependent units (and `systemctl start` returns) on it.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Ready], &[])
    }

    /// READY=1 with a first STATUS= line in the same datagram.
    pub fn ready_with_status(&self, status: &str) -> Result<(), NotifyError> {
        let status = one_line(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)], &[])
    }

    /// STATUS=: the free-form line `systemctl status` shows.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        let status = one_line(status);
        self.send(&[NotifyState::Status(&status)], &[])
    }

    /// STOPPING=1, plus the reason as STATUS=, when the drain begins.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        let status = one_line(status);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)], &[])
    }

    /// WATCHDOG=1: the keep-alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Watchdog], &[])
    }

    /// EXTEND_TIMEOUT_USEC=: asks for more time during a long start or drain.
    pub fn extend_timeout(&self, by: Duration) -> Result<(), NotifyError> {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)], &[])
    }

    /// Sends one datagram carrying `states` (newline-separated) and `fds` (SCM_RIGHTS).
    pub(crate) fn send(
        &self,
        states: &[NotifyState<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), NotifyError> {
        let Some(addr) = &self.socket else {
            return Ok(());
        };
        let msg = format_message(states);
        let err = |source| NotifyError {
            what: msg.trim_end().replace('\n', " "),
            socket: addr.describe(),
            source,
        };
        let sock = addr.connect().map_err(err)?;
        let sent = if fds.is_empty() {
            sock.send(msg.as_bytes()).map_err(err)?
        } else {
            use sendfd::SendWithFd;
            use std::os::fd::AsRawFd;
            let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
            sock.send_with_fd(msg.as_bytes(), &raw).map_err(err)?
        };
        if sent != msg.len() {
            return Err(err(io::Error::new(io::ErrorKind::WriteZero, "short datagram")));
        }
        tracing::trace!(message = %msg.trim_end(), "sd_notify");
        Ok(())
    }
}

/// The datagram body: one `KEY=VALUE` per line, as sd_notify(3) expects.
pub(crate) fn format_message(states: &[NotifyState<'_>]) -> String {
    let mut msg = String::new();
    for s in states {
        msg.push_str(&s.to_string());
        msg.push('\n');
    }
    msg
}

/// STATUS= is one line: a newline would start a new (bogus) assignment in the datagram.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Starts the watchdog keep-alive: WATCHDOG=1 every half of `WatchdogSec=` (the margin
/// sd_watchdog_enabled(3) recommends), until `shutdown` fires. None when the unit has no
/// watchdog or there is no notify socket.
///
/// The keep-alive runs on the same runtime as the work it vouches for, so a wedged runtime
/// (all workers blocked) stops the pings and systemd restarts the daemon: that is the point.
pub fn spawn_watchdog(notifier: Notifier, mut shutdown: Shutdown) -> Option<JoinHandle<()>> {
    let interval = notifier.watchdog_interval()? / 2;
    if !notifier.is_enabled() || interval.is_zero() {
        return None;
    }
    tracing::info!(interval_ms = interval.as_millis() as u64, "watchdog keep-alive on");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    if let Err(e) = notifier.watchdog() {
                        tracing::warn!(error = %e, "watchdog keep-alive not delivered");
                    }
                }
            }
        }
    }))
}

/// Periodically publishes a live status line (`STATUS=`) computed by a closure.
#[derive(Debug)]
pub struct StatusReporter;

impl StatusReporter {
    /// Calls `figures` every `period` and sends its result as STATUS= when it changed since
    /// the last send (PID 1 parses every datagram; an unchanged line is not worth it). Stops
    /// when `shutdown` fires. None without a notify socket, so the closure never runs in vain.
    ///
    /// `figures` runs on the runtime: keep it to reading counters (atomics, a short lock).
    pub fn spawn<F>(
        notifier: Notifier,
        period: Duration,
        mut shutdown: Shutdown,
        figures: F,
    ) -> Option<JoinHandle<()>>
    where
        F: Fn() -> String + Send + 'static,
    {
        if !notifier.is_enabled() || period.is_zero() {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut last = String::new();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tick.tick() => {
                        let line = one_line(&figures());
                        if line != last {
                            if let Err(e) = notifier.status(&line) {
                                tracing::debug!(error = %e, "status not delivered");
                            }
                            last = line;
                        }
                    }
                }
            }
        }))
    }
}

/// Formats named figures the way hearth's status lines read: `warm 3, prewarmed 2, in flight 0`.
pub fn format_figures(figures: &[(&str, u64)]) -> String {
    figures.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A fake service manager: a bound datagram socket in a temp dir.
    pub(crate) struct FakeManager {
        pub(crate) sock: UnixDatagram,
        pub(crate) path: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl FakeManager {
        pub(crate) fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            FakeManager { sock, path, _dir: dir }
        }

        pub(crate) fn recv(&self) -> String {
            let mut buf = vec![0u8; 4096];
            let n = self.sock.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }

        pub(crate) fn nothing_pending(&self) -> bool {
            self.sock.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 16];
            let r = self.sock.recv(&mut buf);
            self.sock.set_nonblocking(false).unwrap();
            matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }

    #[test]
    fn sends_the_exact_messages() {
        let m = FakeManager::new();
        let n = Notifier::to_socket(&m.path, None);
        n.ready().unwrap();
        assert_eq!(m.recv(), "READY=1\n");
        n.status("warm 1\nprewarmed 2").unwrap();
        assert_eq!(m.recv(), "STATUS=warm 1 prewarmed 2\n");
        n.ready_with_status("up").unwrap();
        assert_eq!(m.recv(), "READY=1\nSTATUS=up\n");
        n.stopping("draining 3 activations").unwrap();
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=draining 3 activations\n");
        n.watchdog().unwrap();
        assert_eq!(m.recv(), "WATCHDOG=1\n");
        n.extend_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(m.recv(), "EXTEND_TIMEOUT_USEC=2000000\n");
    }

    #[test]
    fn disabled_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.status("x").unwrap();
        n.stopping("x").unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_with_context() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::to_socket(dir.path().join("gone"), None);
        let e = n.ready().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("READY=1") && text.contains("gone"), "{text}");
    }

    #[test]
    fn notify_socket_addresses() {
        assert_eq!(
            NotifyAddr::parse("/run/systemd/notify".into()),
            Some(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            NotifyAddr::parse("@/org/x".into()),
            Some(NotifyAddr::Abstract(b"/org/x".to_vec()))
        );
        assert_eq!(NotifyAddr::parse("relative".into()), None);
        assert_eq!(NotifyAddr::parse("".into()), None);
    }

    #[test]
    fn abstract_socket_delivery() {
        let name = format!("hearth-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier { socket: NotifyAddr::parse(format!("@{name}").into()), watchdog: None };
        n.ready().unwrap();
        let mut buf = [0u8; 64];
        let k = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\n");
    }

    #[test]
    fn figures_format() {
        assert_eq!(
            format_figures(&[("warm", 3), ("prewarmed", 2), ("in flight", 0)]),
            "warm 3, prewarmed 2, in flight 0"
        );
        assert_eq!(format_figures(&[]), "");
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_pings_at_half_the_interval_until_shutdown() {
        let m = FakeManager::new();
        let n = Notifier::to_socket(&m.path, Some(Duration::from_secs(10)));
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = spawn_watchdog(n, shutdown).unwrap();
        // First tick is immediate, then every 5 s of (paused, auto-advanced) time.
        tokio::time::sleep(Duration::from_millis(12_500)).await;
        trigger.fire();
        task.await.unwrap();
        for _ in 0..3 {
            assert_eq!(m.recv(), "WATCHDOG=1\n");
        }
        assert!(m.nothing_pending());
    }

    #[tokio::test]
    async fn no_watchdog_without_interval_or_socket() {
        let (_t, s) = crate::shutdown::channel();
        assert!(spawn_watchdog(Notifier::disabled(), s.clone()).is_none());
        let m = FakeManager::new();
        assert!(spawn_watchdog(Notifier::to_socket(&m.path, None), s).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn status_reporter_sends_only_changes() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let m = FakeManager::new();
        let n = Notifier::to_socket(&m.path, None);
        let warm = Arc::new(AtomicU64::new(1));
        let (trigger, shutdown) = crate::shutdown::channel();
        let w = warm.clone();
        let task = StatusReporter::spawn(n, Duration::from_secs(1), shutdown, move || {
            format_figures(&[("warm", w.load(Ordering::Relaxed))])
        })
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await; // three ticks, same figures
        warm.store(4, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.fire();
        task.await.unwrap();
        assert_eq!(m.recv(), "STATUS=warm 1\n");
        assert_eq!(m.recv(), "STATUS=warm 4\n");
        assert!(m.nothing_pending());
    }
}
