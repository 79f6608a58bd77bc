//! The one harness of the tests that run real `hearthd` processes (standalone, split, faults,
//! fuzz, hostile, cluster): a [`Daemon`] (any hearthd process, stopped with SIGTERM or killed
//! with SIGKILL), a [`Standalone`] server and the two-process [`Split`] shape built on it, a
//! small blocking HTTP [`Client`] that reports connection errors instead of panicking (the
//! server may die mid-request), and [`assert_no_leaks`], the one check that a stopped invoker
//! left nothing behind.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod wait;
#[allow(unused_imports)] // not every test that includes the harness polls
pub use wait::{try_wait, wait_until};

pub const GUEST: &str = hearth::model::GUEST_KEY;

/// How long a daemon may take to become ready, or to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(30);

/// How many of its last log lines a daemon prints when it is dropped by a failing test.
const LOG_TAIL: usize = 40;

/// Fails the test loudly when it cannot do what it claims to test.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test runs real runc containers and needs root (CI runs as root)");
    assert!(Path::new("/usr/sbin/runc").exists(), "runc is missing: run scripts/install-deps.sh");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A pseudo-random number from the clock and a counter: enough to pick kill moments and
/// fuzz choices without a dependency.
pub fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ N.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// The hearthd binary: this build's, or `HEARTH_TEST_HEARTHD` to measure another build with
/// the same test (the latency figure before/after a change).
pub fn hearthd() -> PathBuf {
    std::env::var_os("HEARTH_TEST_HEARTHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hearthd")))
}

/// Creates namespace `name` with `hearthd admin` on `data_dir` and returns its key (the
/// packaged shapes have no guest key).
pub fn admin_namespace(data_dir: &Path, name: &str) -> String {
    let out = Command::new(hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["namespace", "create", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hearth::model::AuthKey::parse(&key).is_ok(), "admin printed a key: {key:?}");
    key
}

/// Ready once something accepts TCP connections on `addr`.
pub fn listening(addr: SocketAddr) -> impl Fn() -> bool {
    move || TcpStream::connect(addr).is_ok()
}

/// Ready once something accepts connections on the Unix socket `path` (a socket file left by
/// a killed process does not count).
pub fn listening_unix(path: &Path) -> impl Fn() -> bool {
    let path = path.to_owned();
    move || std::os::unix::net::UnixStream::connect(&path).is_ok()
}

/// One hearthd process. Dropping it stops the process (SIGTERM, then SIGKILL if it hangs), so
/// a failing assertion never leaves a daemon running.
pub struct Daemon {
    child: Option<Child>,
    args: Vec<OsString>,
    log: PathBuf,
    filter: String,
    what: String,
}

impl Daemon {
    /// Spawns `hearthd ARGS` logging at info to `log` (appended), and waits until `ready`.
    pub fn spawn<S: AsRef<OsStr>>(
        args: impl IntoIterator<Item = S>,
        log: &Path,
        ready: impl Fn() -> bool,
    ) -> Daemon {
        Self::spawn_logging(args, log, "hearth=info", ready)
    }

    /// [`spawn`](Self::spawn) with a log filter (`HEARTH_LOG`).
    pub fn spawn_logging<S: AsRef<OsStr>>(
        args: impl IntoIterator<Item = S>,
        log: &Path,
        filter: &str,
        ready: impl Fn() -> bool,
    ) -> Daemon {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let what = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let mut d =
            Daemon { child: None, args, log: log.to_owned(), filter: filter.to_owned(), what };
        d.respawn(ready);
        d
    }

    /// Starts the process again with the same arguments and log (after [`kill9`](Self::kill9)
    /// or [`stop`](Self::stop)), and waits until `ready`.
    pub fn respawn(&mut self, ready: impl Fn() -> bool) {
        assert!(self.child.is_none(), "{} is still running", self.what);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(hearthd())
            .args(&self.args)
            .env("HEARTH_LOG", &self.filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{} never became ready: {}",
                self.what,
                self.log_text()
            );
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {st}: {}", self.what, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Whether the process is still running (not exited, not stopped or killed by the test).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with a pid we spawned and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGTERM (the graceful path) and a bounded wait; asserts a clean exit.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        // SAFETY: as in kill9.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "{} exited with {st}: {}", self.what, self.log_text());
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not stop within {PATIENCE:?} of SIGTERM: {}",
                    self.what,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process in kB (VmRSS).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Daemon {
    /// SIGTERM first, so that the daemon removes its containers even when a test failed;
    /// SIGKILL if it has not exited within [`PATIENCE`], so that a failing test never hangs.
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        if std::thread::panicking() {
            // What a failed test needs to be understood from CI's output alone.
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL).collect();
            eprintln!("--- last {} lines of {} ({}):", tail.len(), self.log.display(), self.what);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        // SAFETY: as in kill9.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A `hearthd standalone` server: its directories (data, state, conf) outlive the process,
/// which comes and goes on a fresh loopback port at each start.
pub struct Standalone {
    // Declared first so that it drops (stops the process) before the directories go.
    daemon: Option<Daemon>,
    pub addr: SocketAddr,
    filter: String,
    dir: tempfile::TempDir,
}

impl Standalone {
    /// Starts `hearthd standalone` with `invoker_toml` as its invoker.toml (pool settings).
    pub fn start(invoker_toml: &str) -> Standalone {
        Self::start_logging(invoker_toml, "hearth=info")
    }

    /// [`start`](Self::start) with a log filter (`HEARTH_LOG`).
    pub fn start_logging(invoker_toml: &str, filter: &str) -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/invoker.toml"), invoker_toml).unwrap();
        let mut s = Standalone {
            daemon: None,
            addr: ([127, 0, 0, 1], 0).into(),
            filter: filter.to_owned(),
            dir,
        };
        s.launch();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The one log of every run of this server, appended.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("hearthd.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A gauge of /metrics, `series` being its name and labels as printed (e.g.
    /// `hearth_queue_depth`, `hearth_containers{state="warm_busy"}`); 0 when absent.
    pub fn gauge(&self, series: &str) -> u64 {
        let text = Client::anonymous(self.addr).get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `holds` is true of the server's gauges (see [`Standalone::gauge`]); panics
    /// naming `what`, with the log, after `within`.
    pub fn wait_gauges(&self, what: &str, within: Duration, holds: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !holds(self) {
            assert!(Instant::now() < deadline, "no {what} after {within:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` stem cells are idle (started, not only created) in the pool; panics
    /// with the log after `within`.
    pub fn wait_stem_cells(&self, n: u64, within: Duration) {
        self.wait_gauges(&format!("{n} stem cells"), within, |s| {
            s.gauge("hearth_containers{state=\"prewarmed\"}") >= n
        });
    }

    /// A client with the guest key (standalone creates the guest namespace).
    pub fn client(&self) -> Client {
        Client::new(self.addr, GUEST)
    }

    /// The running process.
    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the server is not running")
    }

    /// (Re)starts the process on the same directories and a fresh port. The previous process
    /// must have been stopped or killed: two on one state dir would reclaim each other's
    /// containers.
    pub fn launch(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            assert!(!d.running(), "launch while hearthd still runs");
        }
        self.addr = ([127, 0, 0, 1], free_port()).into();
        let listen = self.addr.to_string();
        let (data, state, conf) = (self.data_dir(), self.state_dir(), self.dir.path().join("conf"));
        let args: [&OsStr; 9] = [
            "standalone".as_ref(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
            "--config-dir".as_ref(),
            conf.as_os_str(),
        ];
        self.daemon =
            Some(Daemon::spawn_logging(args, &self.log(), &self.filter, listening(self.addr)));
    }

    /// SIGTERM, a clean exit, and nothing left behind ([`assert_no_leaks`]).
    pub fn stop(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            d.stop();
        }
        assert_no_leaks(&self.state_dir());
    }

    /// [`stop`](Self::stop) (checked) and [`launch`](Self::launch).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

/// The one-host, two-process shape: `hearthd controller` dispatching over the invoker's Unix
/// socket to `hearthd invoker`, both on one data directory. The processes are the test's
/// [`Daemon`]s, to stop or kill one at a time.
pub struct Split {
    dir: tempfile::TempDir,
}

impl Split {
    /// The directories, with `invoker_toml` as the invoker's pool settings.
    pub fn new(invoker_toml: &str) -> Split {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/invoker.toml"), invoker_toml).unwrap();
        Split { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("invoker.sock")
    }

    /// `hearthd invoker` on the socket, ready once it accepts connections there.
    pub fn start_invoker(&self) -> Daemon {
        let (sock, data, state, conf) =
            (self.socket(), self.data_dir(), self.state_dir(), self.dir.path().join("conf"));
        let args: [&OsStr; 9] = [
            "invoker".as_ref(),
            "--socket".as_ref(),
            sock.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
            "--config-dir".as_ref(),
            conf.as_os_str(),
        ];
        Daemon::spawn(args, &self.dir.path().join("invoker.log"), listening_unix(&sock))
    }

    /// `hearthd controller` on a fresh loopback port, ready once it listens there (whether or
    /// not the invoker runs).
    pub fn start_controller(&self) -> (Daemon, SocketAddr) {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let listen = addr.to_string();
        let (sock, data, conf) = (self.socket(), self.data_dir(), self.dir.path().join("conf"));
        let args: [&OsStr; 9] = [
            "controller".as_ref(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--invoker-socket".as_ref(),
            sock.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--config-dir".as_ref(),
            conf.as_os_str(),
        ];
        (Daemon::spawn(args, &self.dir.path().join("controller.log"), listening(addr)), addr)
    }
}

/// A response: status, body, lower-cased headers.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    /// The body as JSON, or as a JSON string when it is not JSON (so assertions can print it).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// HTTP/1.1, one request per connection, basic auth with `key` (`uuid:secret`).
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub auth: Option<String>,
    pub timeout: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr, key: &str) -> Client {
        use base64::Engine;
        Client {
            addr,
            auth: Some(base64::engine::general_purpose::STANDARD.encode(key)),
            timeout: Duration::from_secs(90),
        }
    }

    pub fn anonymous(addr: SocketAddr) -> Client {
        Client { addr, auth: None, timeout: Duration::from_secs(90) }
    }

    /// Sends the request; an I/O error (the server died, reset the connection) is returned.
    pub fn try_req(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Resp> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.addr,
            body.len()
        );
        if let Some(a) = &self.auth {
            head.push_str(&format!("authorization: Basic {a}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.raw(&raw)
    }

    /// Sends raw bytes as the request and parses what comes back.
    pub fn raw(&self, request: &[u8]) -> std::io::Result<Resp> {
        self.raw_with(request, false)
    }

    /// Sends raw bytes, then (with `eof`) half-closes, so that a server waiting for the rest
    /// of a partial request sees the end now rather than after its header timeout.
    pub fn raw_with(&self, request: &[u8], eof: bool) -> std::io::Result<Resp> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.write_all(request)?;
        if eof {
            s.shutdown(std::net::Shutdown::Write)?;
        }
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        parse(&out)
    }

    /// [`try_req`](Self::try_req), panicking on an I/O error.
    pub fn req(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.try_req(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, b"")
    }

    pub fn json(&self, method: &str, path: &str, body: serde_json::Value) -> Resp {
        self.req(method, path, body.to_string().as_bytes())
    }

    /// Creates (or overwrites) an action from source; asserts it was stored.
    pub fn put_action(
        &self,
        name: &str,
        kind: &str,
        code: &str,
        limits: Option<serde_json::Value>,
    ) {
        let mut body = serde_json::json!({"exec": {"kind": kind, "code": code}});
        if let Some(l) = limits {
            body["limits"] = l;
        }
        let r =
            self.json("PUT", &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"), body);
        assert_eq!(r.status, 200, "create {name}: {}", r.text());
    }

    /// Blocking invoke; the body is the activation.
    pub fn invoke(&self, name: &str, params: serde_json::Value) -> Resp {
        self.json("POST", &format!("/api/v1/namespaces/_/actions/{name}?blocking=true"), params)
    }

    /// The record of `id`, polling up to `wait` for it to appear.
    pub fn record(&self, id: &str, wait: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            let r = self.get(&format!("/api/v1/namespaces/_/activations/{id}"));
            if r.status == 200 {
                return Some(r.json());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn parse(out: &[u8]) -> std::io::Result<Resp> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP response");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Resp { status, body: out[split + 4..].to_vec(), headers })
}

/// Runs the `hearth` CLI against `url` (no config file: the guest key): its exit code,
/// stdout and stderr.
pub fn hearth_cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_APIHOST", url)
        .env("HEARTH_CONFIG", "/nonexistent/hearth-test-config")
        .output()
        .unwrap_or_else(|e| panic!("running hearth {args:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The value of annotation `key` of an activation.
/// Runs OpenWhisk's own JavaScript client script `script` (in tests/clients) against `url`
/// with `auth`, and returns its stdout; panics with its output when it fails. The client's
/// node_modules are installed once per lock file into `HEARTH_CACHE` (tests/clients/install.sh)
/// and reached through NODE_PATH, so the source tree stays clean and parallel tests share one
/// install.
pub fn openwhisk_client(script: &str, url: &str, auth: &str) -> String {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let install = Command::new(clients.join("install.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/clients/install.sh");
    assert!(install.status.success(), "installing OpenWhisk's JavaScript client failed");
    let modules = String::from_utf8_lossy(&install.stdout).trim().to_owned();
    let out = Command::new("node")
        .arg(script)
        .current_dir(&clients)
        .env("NODE_PATH", &modules)
        .env("HEARTH_APIHOST", url)
        .env("HEARTH_AUTH", auth)
        .output()
        .expect("node is needed for the OpenWhisk client test (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "openwhisk client {script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn annotation<'a>(act: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    act["annotations"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

/// runc containers under a state dir (none when runc's root is gone: `runc list` would make
/// it again).
pub fn runc_containers(state_dir: &Path) -> Vec<String> {
    if !state_dir.join("runc").exists() {
        return Vec::new();
    }
    let out = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(state_dir.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

/// The cgroup parent's dir in every hierarchy where it exists.
fn cgroup_parent_dirs(state_dir: &Path) -> Vec<PathBuf> {
    let parent = hearth::daemon::invoker::cgroup_parent_for(state_dir);
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(&parent))
        .filter(|p| p.is_dir())
        .collect()
}

/// Container cgroup dirs under the state dir's cgroup parent, in every hierarchy.
pub fn container_cgroups(state_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for p in cgroup_parent_dirs(state_dir) {
        for c in std::fs::read_dir(&p).unwrap().filter_map(|c| c.ok()) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(c.path());
            }
        }
    }
    found
}

/// Mounts whose path lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&prefix))
        .map(str::to_owned)
        .collect()
}

/// After a clean stop of the invoker using `state_dir`: no runc container, no mount under the
/// state dir, no container cgroup, not even the (per state dir) cgroup parent, in any
/// hierarchy, no bundle, and not the state dir itself.
pub fn assert_no_leaks(state_dir: &Path) {
    assert_eq!(runc_containers(state_dir), Vec::<String>::new(), "runc containers left behind");
    assert_eq!(mounts_under(state_dir), Vec::<String>::new(), "mounts left behind");
    assert_eq!(container_cgroups(state_dir), Vec::<PathBuf>::new(), "container cgroups left");
    assert_eq!(cgroup_parent_dirs(state_dir), Vec::<PathBuf>::new(), "cgroup parent left behind");
    let bundles = state_dir.join("containers/bundles");
    if bundles.exists() {
        let left: Vec<_> = std::fs::read_dir(&bundles).unwrap().collect();
        assert!(left.is_empty(), "bundles left behind: {left:?}");
    }
    if state_dir.exists() {
        let left = Command::new("find").arg(state_dir).output().unwrap();
        panic!(
            "the state dir {} is left behind:\n{}",
            state_dir.display(),
            String::from_utf8_lossy(&left.stdout)
        );
    }
}
