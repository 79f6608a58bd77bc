//! System test: hearth's systemd glue inside a real, booted systemd (Debian bookworm in
//! systemd-nspawn, driven by tests/system/nspawn.sh; systemd is not PID 1 on the build hosts).
//!
//! Root only; fails (does not skip) when not root, since CI runs as root and a skipped system
//! test would hide a regression. Phases run in order in one booted system; each phase is a
//! function so the daemon checks (hearthd controller/invoker) are added the same way once the
//! daemons exist. The booted system, its cgroups and mounts are removed on exit, pass or fail.
//!
//! Run alone: `cargo test --test system -- --nocapture` (prints the measured numbers).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NAME: &str = "hearth-systest";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("tests/system/nspawn.sh")
}

fn nspawn(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .env("HEARTH_NSPAWN_NAME", NAME)
        .output()
        .expect("running tests/system/nspawn.sh")
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a shell command inside the booted system; panics with its output when it fails.
fn sh(cmd: &str) -> String {
    ok(nspawn(&["exec", "sh", "-c", cmd]), cmd)
}

/// Runs a shell command inside; returns (success, stdout) without judging.
fn sh_try(cmd: &str) -> (bool, String) {
    let out = nspawn(&["exec", "sh", "-c", cmd]);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn install(host: &Path, inside: &str, mode: &str) {
    ok(nspawn(&["cp", host.to_str().unwrap(), inside]), &format!("cp {}", host.display()));
    sh(&format!("chmod {mode} {inside}"));
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops and cleans the booted system however the test ends.
struct Booted;

impl Drop for Booted {
    fn drop(&mut self) {
        let out = nspawn(&["stop"]);
        if !out.status.success() {
            eprintln!("nspawn.sh stop failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The example binaries the phases install: built here because `cargo test --test system`
/// does not build examples by itself.
fn build_examples() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["build", "--example", "socket_echo", "--example", "machined_probe"])
        .output()
        .expect("running cargo build --examples");
    ok(out, "cargo build --example socket_echo --example machined_probe");
    // The test binary lives in target/debug/deps; examples in target/debug/examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

#[derive(Debug, Default)]
struct Numbers {
    boot_s: f64,
    first_connection_ms: f64,
    warm_roundtrip_ms: f64,
    after_idle_exit_ms: f64,
    register_us: String,
}

/// Connects to the echo socket inside, sends one line, returns the reply and milliseconds
/// from connect to reply (measured inside, so nsenter's cost is not counted).
fn echo_roundtrip(line: &str) -> (String, f64) {
    let py = format!(
        "import socket,time\n\
         t=time.perf_counter()\n\
         s=socket.create_connection(('127.0.0.1',7070))\n\
         s.sendall(b'{line}\\n')\n\
         r=b''\n\
         while not r.endswith(b'\\n'):\n    r+=s.recv(100)\n\
         print((time.perf_counter()-t)*1000)\n\
         print(r.decode().strip())\n"
    );
    let out = sh(&format!("python3 -c \"{py}\""));
    let mut lines = out.lines();
    let ms: f64 = lines.next().unwrap().parse().unwrap();
    (lines.next().unwrap_or("").to_owned(), ms)
}

fn unit_prop(unit: &str, prop: &str) -> String {
    sh(&format!("systemctl show -P {prop} {unit}")).trim().to_owned()
}

fn phase_units_verify() {
    let units = repo().join("systemd");
    for f in [
        "hearth-controller.socket",
        "hearth-controller.service",
        "hearth-invoker.socket",
        "hearth-invoker.service",
        "hearth.slice",
    ] {
        install(&units.join(f), &format!("/etc/systemd/system/{f}"), "644");
    }
    install(&units.join("sysusers.d/hearth.conf"), "/usr/lib/sysusers.d/hearth.conf", "644");
    install(&units.join("tmpfiles.d/hearth.conf"), "/usr/lib/tmpfiles.d/hearth.conf", "644");
    install(Path::new(env!("CARGO_BIN_EXE_hearthd")), "/usr/sbin/hearthd", "755");
    sh("systemd-sysusers && systemd-tmpfiles --create /usr/lib/tmpfiles.d/hearth.conf");
    sh("systemctl daemon-reload");
    sh("cd /etc/systemd/system && systemd-analyze verify hearth-controller.socket \
        hearth-controller.service hearth-invoker.socket hearth-invoker.service hearth.slice");
    let exposure = |unit: &str| -> f64 {
        let out = sh(&format!("systemd-analyze security --no-pager {unit} | tail -n 1"));
        let num = out
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no exposure in {out:?}"));
        num.parse().unwrap()
    };
    let controller = exposure("hearth-controller.service");
    let invoker = exposure("hearth-invoker.service");
    println!("systemd-analyze security: controller {controller}, invoker {invoker}");
    assert!(controller <= 3.0, "controller exposure {controller} > 3.0");
    // Sockets listen, with the ownership the controller (User=hearth) needs.
    sh("systemctl start hearth-controller.socket hearth-invoker.socket");
    sh("systemctl is-active hearth-controller.socket hearth-invoker.socket");
    let perms = sh("stat -c '%a %U %G' /run/hearth/invoker.sock");
    assert_eq!(perms.trim(), "660 root hearth");
    sh("systemctl stop hearth-controller.socket hearth-invoker.socket");
}

fn phase_socket_activation(n: &mut Numbers, examples: &Path) {
    install(&examples.join("socket_echo"), "/usr/local/bin/socket_echo", "755");
    let units = repo().join("tests/system/units");
    for f in ["hearth-echo.socket", "hearth-echo.service"] {
        install(&units.join(f), &format!("/etc/systemd/system/{f}"), "644");
    }
    sh("systemctl daemon-reload && systemctl start hearth-echo.socket");
    assert_eq!(sh_try("systemctl is-active hearth-echo.socket").1, "active");
    assert_eq!(
        sh_try("systemctl is-active hearth-echo.service").1,
        "inactive",
        "service must not run before the first connection"
    );
    let (reply, ms) = echo_roundtrip("hello socket activation");
    assert_eq!(reply, "hello socket activation");
    n.first_connection_ms = ms;
    let (_, warm) = echo_roundtrip("again");
    n.warm_roundtrip_ms = warm;
    assert_eq!(sh_try("systemctl is-active hearth-echo.service").1, "active");

    // READY=1 made the start complete (Type=notify); STATUS= shows live figures.
    wait_until("STATUS with 2 connections", Duration::from_secs(5), || {
        unit_prop("hearth-echo.service", "StatusText").contains("connections 2")
    });
    let status = sh("systemctl status --no-pager hearth-echo.service || true");
    assert!(status.contains("Status: \"echo generation 1, activated, connections 2\""), "{status}");

    // WATCHDOG=1: WatchdogSec=4s, pings every 2 s; the timestamp moves.
    let w1 = unit_prop("hearth-echo.service", "WatchdogTimestampMonotonic");
    std::thread::sleep(Duration::from_millis(2500));
    let w2 = unit_prop("hearth-echo.service", "WatchdogTimestampMonotonic");
    assert_ne!(w1, w2, "watchdog timestamp did not move");
    assert_eq!(unit_prop("hearth-echo.service", "WatchdogUSec"), "4s");
}

fn phase_journal_fields() {
    // Both the span fields (on the service's own event) and the forwarded action line.
    wait_until("journal records", Duration::from_secs(5), || {
        sh_try("journalctl --no-pager -o cat HEARTH_ACTION=guest/echo MESSAGE='hello socket activation'")
            .1
            .contains("hello socket activation")
    });
    let fields = sh("journalctl --no-pager -o export HEARTH_ACTIVATION_ID=echo0001 \
         HEARTH_STREAM=stdout | grep -a -E '^(MESSAGE|HEARTH_[A-Z_]+)='");
    for f in [
        "MESSAGE=hello socket activation",
        "HEARTH_ACTIVATION_ID=echo0001",
        "HEARTH_NAMESPACE=guest",
        "HEARTH_ACTION=guest/echo",
        "HEARTH_CONTAINER=echo-c1",
        "HEARTH_STREAM=stdout",
    ] {
        assert!(fields.contains(f), "missing {f} in:\n{fields}");
    }
}

fn phase_fdstore_restart() {
    // The stored fd carries the generation across a restart: 1 -> 2.
    sh("systemctl restart hearth-echo.service");
    wait_until("generation 2", Duration::from_secs(5), || {
        unit_prop("hearth-echo.service", "StatusText").contains("echo generation 2")
    });
    assert_eq!(
        unit_prop("hearth-echo.service", "NFileDescriptorStore"),
        "1",
        "exactly one stored fd (the old one removed, the new one stored)"
    );
    // The socket fd was taken by name, not confused with the stored one.
    let (reply, _) = echo_roundtrip("after restart");
    assert_eq!(reply, "after restart");
}

fn phase_idle_exit(n: &mut Numbers) {
    sh("mkdir -p /etc/systemd/system/hearth-echo.service.d && \
        printf '[Service]\\nEnvironment=ECHO_IDLE_EXIT_SECS=1\\n' \
        > /etc/systemd/system/hearth-echo.service.d/idle.conf && systemctl daemon-reload \
        && systemctl restart hearth-echo.service");
    wait_until("idle exit", Duration::from_secs(10), || {
        sh_try("systemctl is-active hearth-echo.service").1 == "inactive"
    });
    assert_eq!(sh_try("systemctl is-active hearth-echo.socket").1, "active");
    let result = unit_prop("hearth-echo.service", "Result");
    assert_eq!(result, "success", "idle exit is a clean exit");
    let (reply, ms) = echo_roundtrip("wake up");
    assert_eq!(reply, "wake up", "first request after idle exit is served");
    n.after_idle_exit_ms = ms;
    assert_eq!(sh_try("systemctl is-active hearth-echo.service").1, "active");
    sh("rm -r /etc/systemd/system/hearth-echo.service.d && systemctl daemon-reload");
    sh("systemctl stop hearth-echo.socket hearth-echo.service");
}

fn phase_machined(n: &mut Numbers, examples: &Path) {
    install(&examples.join("machined_probe"), "/usr/local/bin/machined_probe", "755");
    let log = || sh("journalctl --no-pager -o cat -u hearth-machined-probe.service");
    sh("systemd-run --quiet --unit=hearth-machined-probe --property=Type=exec \
        /usr/local/bin/machined_probe");
    wait_until("probe registration", Duration::from_secs(20), || {
        log().contains("terminate requested hearth-probe-b")
    });
    let list = sh("machinectl list --no-pager --no-legend");
    assert!(
        list.contains("hearth-probe-a") && list.contains("container") && list.contains("hearth"),
        "machinectl list: {list}"
    );
    sh("machinectl terminate hearth-probe-a");
    wait_until("probe saw both removals", Duration::from_secs(20), || log().contains("probe done"));
    let l = log();
    assert!(l.contains("removed hearth-probe-a"), "{l}");
    assert!(l.contains("removed hearth-probe-b"), "{l}");
    let list = sh("machinectl list --no-pager --no-legend");
    assert!(!list.contains("hearth-probe"), "machines left: {list}");
    n.register_us = l
        .lines()
        .find(|x| x.starts_with("registered hearth-probe-a"))
        .and_then(|x| x.split(" in ").nth(1))
        .unwrap_or("?")
        .to_owned();
}

#[test]
fn booted_systemd() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/system.rs boots systemd in systemd-nspawn and needs root (CI runs as root); \
         run it as root or exclude it with `cargo test --lib`"
    );
    let examples = build_examples();
    let _ = nspawn(&["stop"]); // a crashed earlier run's leftovers
    let mut n = Numbers::default();
    let t = Instant::now();
    let _booted = Booted; // cleans up even when the boot itself fails half-way
    ok(nspawn(&["boot"]), "nspawn.sh boot");
    let total_boot = t.elapsed();
    n.boot_s = ok(nspawn(&["boot-seconds"]), "boot-seconds").trim().parse().unwrap();
    println!(
        "boot: systemd up {:.2}s after nspawn start ({:.2}s incl. rootfs check)",
        n.boot_s,
        total_boot.as_secs_f64()
    );

    phase_units_verify();
    phase_socket_activation(&mut n, &examples);
    phase_journal_fields();
    phase_fdstore_restart();
    phase_idle_exit(&mut n);
    phase_machined(&mut n, &examples);
    println!("numbers: {n:?}");
}
