//! The one-host, two-process shape: `hearthd controller` dispatching over the invoker's Unix
//! socket to `hearthd invoker`, both on one data directory. Needs root and runc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A daemon killed when dropped, so a failing assertion never leaves it running.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(args: &[&str], dir: &Path, log: &str) -> Spawned {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hearthd"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Spawned(child)
}

fn term(Spawned(child): &mut Spawned) {
    // SAFETY: a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn controller_and_invoker_as_two_processes() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let state = d.join("state");
    let conf = d.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("invoker.toml"), "prewarm = []\n").unwrap();
    let sock = d.join("invoker.sock");
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    // A namespace and key for the packaged shape (no guest key outside standalone).
    let out = Command::new(env!("CARGO_BIN_EXE_hearthd"))
        .args(["admin", "--data-dir"])
        .arg(&data)
        .args(["namespace", "create", "team"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hearth::model::AuthKey::parse(&key).is_ok(), "admin printed a key: {key:?}");

    let mut controller = spawn(
        &[
            "controller",
            "--listen",
            &addr.to_string(),
            "--data-dir",
            data.to_str().unwrap(),
            "--invoker-socket",
            sock.to_str().unwrap(),
            "--config-dir",
            conf.to_str().unwrap(),
        ],
        d,
        "controller.log",
    );
    while std::net::TcpStream::connect(addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Before the invoker runs, invokes are refused clearly (503), nothing recorded.
    let hearth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .env("HEARTH_APIHOST", format!("http://{addr}"))
            .env("HEARTH_AUTH", &key)
            .env("HEARTH_CONFIG", d.join("none"))
            .output()
            .unwrap()
    };
    let py = d.join("a.py");
    std::fs::write(&py, "def main(a):\n    return {'split': a.get('x', 0) + 1}\n").unwrap();
    assert!(hearth(&["action", "create", "a", py.to_str().unwrap()]).status.success());
    let refused = hearth(&["action", "invoke", "a", "-r"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("503") || err.contains("invoker"), "{err}");

    let start_invoker = |log: &str| {
        spawn(
            &[
                "invoker",
                "--socket",
                sock.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--config-dir",
                conf.to_str().unwrap(),
            ],
            d,
            log,
        )
    };
    let mut invoker = start_invoker("invoker.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "invoker socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    for x in 0..3 {
        let out = hearth(&["action", "invoke", "a", "-p", "x", &x.to_string(), "-r"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, json!({"split": x + 1}));
    }
    // Invoker restarts: the controller reconnects by itself.
    term(&mut invoker);
    let mut invoker = start_invoker("invoker2.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = hearth(&["action", "invoke", "a", "-r"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no invoke after the invoker restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    term(&mut invoker);
    term(&mut controller);
    assert_no_leaks(&state);
}
