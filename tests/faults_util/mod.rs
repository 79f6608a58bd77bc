//! Shared by the fault, abuse and hostile-action tests: daemons started as real processes
//! (standalone, controller, invoker) that can be killed with SIGKILL, and a small HTTP client
//! that reports connection errors instead of panicking (the server may die mid-request).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const GUEST: &str = hearth::model::GUEST_KEY;

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

/// One hearthd process.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub what: String,
}

impl Daemon {
    /// Spawns `hearthd ARGS`, logging to `log`, and waits until `ready` holds.
    pub fn spawn(args: &[&std::ffi::OsStr], log: &Path, ready: impl Fn() -> bool) -> Daemon {
        Self::spawn_logging(args, log, "hearth=info", ready)
    }

    /// [`spawn`](Self::spawn) with a log filter.
    pub fn spawn_logging(
        args: &[&std::ffi::OsStr],
        log: &Path,
        filter: &str,
        ready: impl Fn() -> bool,
    ) -> Daemon {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(hearthd())
            .args(args)
            .env("HEARTH_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            log: log.to_owned(),
            what: args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(Instant::now() < deadline, "{} never became ready: {}", d.what, d.log_text());
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {st}: {}", d.what, d.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
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

    /// SIGTERM and a bounded wait; asserts a clean exit.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        // SAFETY: as in kill9.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "{} exited with {st}: {}", self.what, self.log_text());
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{} did not stop within 30 s: {}", self.what, self.log_text());
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
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in kill9.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

pub fn listening(addr: SocketAddr) -> impl Fn() -> bool {
    move || TcpStream::connect(addr).is_ok()
}

/// A standalone server's directories and address; the process comes and goes.
pub struct Standalone {
    pub log_filter: String,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub daemon: Option<Daemon>,
}

impl Standalone {
    pub fn start(invoker_toml: &str) -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/invoker.toml"), invoker_toml).unwrap();
        let mut s = Standalone {
            log_filter: "hearth=info".into(),
            dir,
            addr: ([127, 0, 0, 1], 0).into(),
            daemon: None,
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

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("hearthd.log")
    }

    /// (Re)starts the process on the same directories and a fresh port.
    pub fn launch(&mut self) {
        self.addr = ([127, 0, 0, 1], free_port()).into();
        let listen = self.addr.to_string();
        let (data, state, conf) = (self.data_dir(), self.state_dir(), self.dir.path().join("conf"));
        let args: Vec<&std::ffi::OsStr> = vec![
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
            Some(Daemon::spawn_logging(&args, &self.log(), &self.log_filter, listening(self.addr)));
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, GUEST)
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
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

    pub fn req(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.try_req(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn json(&self, method: &str, path: &str, body: serde_json::Value) -> Resp {
        self.req(method, path, body.to_string().as_bytes())
    }

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

    pub fn invoke(&self, name: &str, params: serde_json::Value) -> Resp {
        self.json("POST", &format!("/api/v1/namespaces/_/actions/{name}?blocking=true"), params)
    }

    /// The record of `id`, polling up to `wait` for it to appear.
    pub fn record(&self, id: &str, wait: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            let r = self.req("GET", &format!("/api/v1/namespaces/_/activations/{id}"), b"");
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

/// runc containers under a state dir.
pub fn runc_containers(state_dir: &Path) -> Vec<String> {
    let out = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(state_dir.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

/// The cgroup parent the daemon derives from a (non-default) state dir.
pub fn cgroup_parent(state_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state_dir.to_path_buf().hash(&mut h);
    format!("hearth/{:08x}", h.finish() & 0xffff_ffff)
}

/// Container cgroup dirs under the state dir's parent, in every hierarchy.
pub fn container_cgroups(state_dir: &Path) -> Vec<PathBuf> {
    let parent = cgroup_parent(state_dir);
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().filter_map(|e| e.ok()) {
        let p = e.path().join(&parent);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for c in rd.filter_map(|c| c.ok()) {
                if c.file_type().is_ok_and(|t| t.is_dir()) {
                    found.push(c.path());
                }
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

/// After a clean stop: no container, mount or container cgroup left.
pub fn assert_clean(state_dir: &Path) {
    assert_eq!(runc_containers(state_dir), Vec::<String>::new(), "runc containers left");
    assert_eq!(mounts_under(state_dir), Vec::<String>::new(), "mounts left");
    assert_eq!(container_cgroups(state_dir), Vec::<PathBuf>::new(), "cgroups left");
}
