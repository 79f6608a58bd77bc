//! Shared by the end-to-end tests: a real `hearthd standalone` process on a free loopback port,
//! with its own data and state directories, stopped with SIGTERM and checked for leaks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const GUEST: &str = hearth::model::GUEST_KEY;

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

/// A running standalone server.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts `hearthd standalone` with `config` written as invoker.toml (pool settings).
    pub fn start(invoker_toml: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("invoker.toml"), invoker_toml).unwrap();
        let mut s =
            Server { addr: ([127, 0, 0, 1], 0).into(), dir, child: None, log: PathBuf::new() };
        s.spawn(&conf);
        s
    }

    fn spawn(&mut self, conf: &Path) {
        let port = free_port();
        self.addr = ([127, 0, 0, 1], port).into();
        self.log = self.dir.path().join(format!("hearthd-{port}.log"));
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hearthd"))
            .args(["standalone", "--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--config-dir")
            .arg(conf)
            .env("HEARTH_LOG", "hearth=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "server did not listen: {}", self.log_text());
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("hearthd exited with {st}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops with SIGTERM (the graceful path) and restarts on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("conf");
        self.spawn(&conf);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait (bounded), then assert nothing was left behind.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill with a pid we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "hearthd exited with {st}: {}", self.log_text());
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hearthd did not stop within 30 s of SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_no_leaks(&self.state_dir());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in stop().
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// No runc container, no mount under the state dir, no container process left.
pub fn assert_no_leaks(state_dir: &Path) {
    let out = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(state_dir.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(listed.is_empty(), "runc containers left behind: {listed}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let prefix = state_dir.to_string_lossy().to_string();
    let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&prefix)).collect();
    assert!(leaked.is_empty(), "mounts left behind: {leaked:?}");
    let parent = hearth::daemon::invoker::cgroup_parent_for(state_dir);
    let memory = Path::new("/sys/fs/cgroup/memory").join(&parent);
    assert!(!memory.exists(), "cgroup parent left behind: {}", memory.display());
    let bundles = state_dir.join("containers/bundles");
    if bundles.exists() {
        let left: Vec<_> = std::fs::read_dir(&bundles).unwrap().collect();
        assert!(left.is_empty(), "bundles left behind: {left:?}");
    }
}

/// A minimal blocking HTTP/1.1 client (one request per connection) for the tests.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String, Vec<(String, String)>) {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(GUEST);
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Basic {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, rest.to_owned(), headers)
}

pub fn json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let b = body.map(|v| v.to_string());
    let (st, text, _) = http(addr, method, path, b.as_deref());
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (st, v)
}

/// Creates (or overwrites) an action from source.
pub fn put_action(
    addr: SocketAddr,
    name: &str,
    kind: &str,
    code: &str,
    limits: Option<serde_json::Value>,
) {
    let mut body = serde_json::json!({"exec": {"kind": kind, "code": code}});
    if let Some(l) = limits {
        body["limits"] = l;
    }
    let (st, v) = json(
        addr,
        "PUT",
        &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"),
        Some(body),
    );
    assert_eq!(st, 200, "create {name}: {v}");
}

/// Blocking invoke; returns (status, activation).
pub fn invoke(addr: SocketAddr, name: &str, params: serde_json::Value) -> (u16, serde_json::Value) {
    json(addr, "POST", &format!("/api/v1/namespaces/_/actions/{name}?blocking=true"), Some(params))
}

pub fn annotation<'a>(act: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    act["annotations"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}
