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

#[path = "harness/wait.rs"]
#[allow(dead_code)] // wait_until: this test adds its journal to try_wait's timeout
mod wait;

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

/// Polls `f` every 50 ms (the harness's one poll); on timeout fails with the daemons' journal.
fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    if wait::try_wait(timeout, Duration::from_millis(50), || f().then_some(())).is_none() {
        // The daemons' own account, when they ran: what the failure message needs.
        let (_, log) = sh_try(
            "journalctl --no-pager -o short-monotonic -u hearth-invoker -u hearth-controller \
             | tail -n 40",
        );
        panic!("timed out waiting for {what}\n--- daemon journal (tail) ---\n{log}");
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
    // The native actions' launcher, where the packages put it: without it hearthd refuses to
    // write its launcher dir, and so to start.
    sh("mkdir -p /usr/libexec/hearth");
    let native = env!("CARGO_BIN_EXE_hearth-native");
    install(Path::new(native), "/usr/libexec/hearth/hearth-native", "755");
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
    // Recorded in docs/SYSTEMD.md; a loosened unit shows up here.
    assert!(invoker <= 4.8, "invoker exposure {invoker} > 4.8");
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

/// The daemon phases' shared facts: the key `hearthd admin` made, numbers measured.
#[derive(Default)]
struct Daemons {
    /// The admin key; a secret, so kept out of the printed numbers.
    key: String,
    first_invoke_ms: f64,
    warm_invoke_ms: f64,
    node_first_ms: f64,
    after_idle_exit_ms: f64,
    after_restart_ms: f64,
    terminate_noticed_ms: f64,
    oom_ms: f64,
    after_crash_ms: f64,
    crash_ms: f64,
}

impl std::fmt::Debug for Daemons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemons")
            .field("first_invoke_ms (controller+invoker start, cold python)", &self.first_invoke_ms)
            .field("warm_invoke_ms", &self.warm_invoke_ms)
            .field("node_first_ms (cold node)", &self.node_first_ms)
            .field(
                "after_idle_exit_ms (controller start, warm container)",
                &self.after_idle_exit_ms,
            )
            .field("after_restart_ms (warm, restored container)", &self.after_restart_ms)
            .field("terminate_noticed_ms", &self.terminate_noticed_ms)
            .field("oom_ms", &self.oom_ms)
            .field("after_crash_ms (warm, restored after SIGKILL)", &self.after_crash_ms)
            .field("crash_ms (cold, os._exit in the action)", &self.crash_ms)
            .finish()
    }
}

/// The `hearth` CLI inside, pointed at the socket-activated controller with the admin key.
fn cli(d: &Daemons, args: &str) -> String {
    sh(&format!(
        "HEARTH_APIHOST=http://127.0.0.1:3233 HEARTH_AUTH={} /usr/bin/hearth {args}",
        d.key
    ))
}

/// One blocking invoke through curl; (milliseconds, HTTP code, body). curl's time_total is
/// measured inside, so nsenter's own cost is not counted.
fn curl_invoke(d: &Daemons, action: &str, query: &str) -> (f64, String, String) {
    let out = sh(&format!(
        "curl -s -o /tmp/body -w '%{{http_code}} %{{time_total}}' -u {} -X POST \
         -H 'content-type: application/json' -d '{{\"name\":\"Ada\"}}' \
         'http://127.0.0.1:3233/api/v1/namespaces/_/actions/{action}?blocking=true{query}'; \
         echo; cat /tmp/body",
        d.key
    ));
    let mut lines = out.splitn(2, '\n');
    let head = lines.next().unwrap_or_default().to_owned();
    let body = lines.next().unwrap_or_default().to_owned();
    let (code, secs) = head.split_once(' ').unwrap_or(("?", "0"));
    (secs.trim().parse::<f64>().unwrap_or(0.0) * 1000.0, code.to_owned(), body)
}

/// hearth's machines in `machinectl list`.
fn machines() -> Vec<String> {
    sh("machinectl list --no-pager --no-legend")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("hearth-") && !m.starts_with("hearth-probe"))
        .map(str::to_owned)
        .collect()
}

const HELLO_PY: &str = "def main(args):\n    print('hello line from', args.get('name', '?'))\n    return {'greeting': 'Hello ' + args.get('name', '?')}\n";
const HELLO_JS: &str = "function main(args) {\n  console.log('node line from ' + (args.name || '?'));\n  return { greeting: 'Hi ' + (args.name || '?') };\n}\n";
const SLOW_PY: &str = "import time\ndef main(args):\n    print('slow started', flush=True)\n    time.sleep(30)\n    return {'done': True}\n";

fn write_inside(path: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, text).unwrap();
    install(&f, path, "644");
}

fn phase_daemons_install(d: &mut Daemons) {
    install(Path::new(env!("CARGO_BIN_EXE_hearth")), "/usr/bin/hearth", "755");
    // Short idle times so reaping and idle exit happen within the test; a 2 s watchdog so
    // its timestamp visibly moves.
    sh("mkdir -p /etc/hearth");
    write_inside(
        "/etc/hearth/invoker.toml",
        "prewarm = []\nidle_timeout = \"8s\"\nreap_interval = \"1s\"\nmemory_budget_mb = 2048\n",
    );
    write_inside("/etc/hearth/controller.toml", "idle_exit = \"4s\"\n");
    for unit in ["hearth-controller.service", "hearth-invoker.service"] {
        sh(&format!(
            "mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nWatchdogSec=2s\\n\
             Environment=HEARTH_LOG=hearth=info,hearth::daemon=debug,hearth::container=debug\\n' \
             > /etc/systemd/system/{unit}.d/test.conf"
        ));
    }
    sh("systemctl daemon-reload");
    // The admin key, made by the controller's own user so LMDB's files belong to it.
    d.key = sh("runuser -u hearth -- /usr/sbin/hearthd admin --data-dir /var/lib/hearth \
                namespace create guest")
    .trim()
    .to_owned();
    assert!(d.key.contains(':'), "admin printed no key: {:?}", d.key);
    sh("systemctl enable --now hearth-controller.socket hearth-invoker.socket");
    assert_eq!(
        sh_try("systemctl is-active hearth-controller.socket hearth-invoker.socket").1,
        "active\nactive"
    );
    assert_eq!(
        sh_try("systemctl is-active hearth-controller.service hearth-invoker.service").1,
        "inactive\ninactive",
        "services must not run before the first request"
    );
    let listening = sh("ss -ltnxH");
    assert!(listening.contains(":3233"), "{listening}");
    assert!(listening.contains("/run/hearth/invoker.sock"), "{listening}");
}

fn phase_daemons_invoke(d: &mut Daemons) {
    write_inside("/root/hello.py", HELLO_PY);
    write_inside("/root/hello.js", HELLO_JS);
    write_inside("/root/slow.py", SLOW_PY);
    cli(d, "action create hello /root/hello.py");
    let (ms, code, body) = curl_invoke(d, "hello", "&result=true");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("Hello Ada"), "{body}");
    d.first_invoke_ms = ms;
    let out = cli(d, "action invoke hello -p name Ada --result");
    assert!(out.contains("Hello Ada"), "{out}");
    let (ms, code, body) = curl_invoke(d, "hello", "&result=true");
    assert_eq!(code, "200", "{body}");
    d.warm_invoke_ms = ms;
    cli(d, "action create hellojs /root/hello.js");
    let (ms, code, body) = curl_invoke(d, "hellojs", "&result=true");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("Hi Ada"), "{body}");
    d.node_first_ms = ms;
    for unit in ["hearth-controller.service", "hearth-invoker.service"] {
        assert_eq!(unit_prop(unit, "ActiveState"), "active", "{unit}");
        let status = sh(&format!("systemctl status --no-pager {unit} || true"));
        assert!(status.contains("Status: \""), "{unit}: no STATUS= in\n{status}");
    }
    wait_until("invoker STATUS with warm containers", Duration::from_secs(5), || {
        unit_prop("hearth-invoker.service", "StatusText").contains("2 warm")
    });
    println!("invoker status: {}", unit_prop("hearth-invoker.service", "StatusText"));
    println!("controller status: {}", unit_prop("hearth-controller.service", "StatusText"));
}

fn phase_daemons_journal() {
    wait_until("the action's line in the journal", Duration::from_secs(5), || {
        sh_try("journalctl --no-pager -o cat HEARTH_ACTION=guest/hello")
            .1
            .contains("hello line from Ada")
    });
    let fields =
        sh("journalctl --no-pager -o export HEARTH_ACTION=guest/hellojs HEARTH_STREAM=stdout \
                     | grep -a -E '^(MESSAGE|HEARTH_[A-Z_]+)='");
    for f in ["MESSAGE=node line from Ada", "HEARTH_NAMESPACE=guest", "HEARTH_CONTAINER=hearth-"] {
        assert!(fields.contains(f), "missing {f} in:\n{fields}");
    }
    assert!(fields.contains("HEARTH_ACTIVATION_ID="), "{fields}");
}

fn phase_daemons_watchdog() {
    for unit in ["hearth-controller.service", "hearth-invoker.service"] {
        assert_eq!(unit_prop(unit, "WatchdogUSec"), "2s", "{unit}");
        let w1 = unit_prop(unit, "WatchdogTimestampMonotonic");
        std::thread::sleep(Duration::from_millis(1500));
        let w2 = unit_prop(unit, "WatchdogTimestampMonotonic");
        assert_ne!(w1, w2, "{unit}: watchdog timestamp did not move");
    }
}

fn phase_daemons_machines_and_reaping() {
    let m = machines();
    assert_eq!(m.len(), 2, "two warm containers (python, node) as machines: {m:?}");
    let status = sh(&format!("machinectl status --no-pager {} || true", m[0]));
    assert!(status.contains("Service: hearth; class container"), "{status}");
    let scope = format!("hearth-{}.scope", m[0]);
    assert!(status.contains(&format!("Unit: {scope}")), "{status}");
    assert_eq!(unit_prop(&scope, "Slice"), "hearth.slice");
    // Limits from the action (256 MB default) on the scope runc made.
    let mem = sh(&format!(
        "cat /sys/fs/cgroup/memory/hearth.slice/{scope}/memory.limit_in_bytes 2>/dev/null \
         || systemctl show -P MemoryMax {scope}"
    ));
    assert_eq!(mem.trim(), (256u64 * 1024 * 1024).to_string(), "memory limit of {scope}");
    wait_until("reaping after idle_timeout", Duration::from_secs(20), || {
        machines().is_empty() && sh("ls /run/hearth/runc").trim().is_empty()
    });
}

fn phase_daemons_terminate(d: &mut Daemons) {
    // Idle container terminated from outside: dropped from the pool.
    let (_, code, _) = curl_invoke(d, "hello", "&result=true");
    assert_eq!(code, "200");
    let m = machines();
    assert_eq!(m.len(), 1, "{m:?}");
    sh(&format!("machinectl terminate {}", m[0]));
    wait_until("idle container dropped from the pool", Duration::from_secs(5), || {
        unit_prop("hearth-invoker.service", "StatusText").starts_with("0 warm")
            && sh("ls /run/hearth/runc").trim().is_empty()
    });
    // Busy container terminated: its activation ends with a recorded error, not a hang.
    cli(d, "action create slow /root/slow.py --timeout 60000");
    sh("(curl -s -u KEY -X POST 'http://127.0.0.1:3233/api/v1/namespaces/_/actions/slow?blocking=true' \
        > /tmp/slow.json; echo done >> /tmp/slow.done) >/dev/null 2>&1 &"
        .replace("KEY", &d.key)
        .as_str());
    let mut busy = Vec::new();
    wait_until("the slow action running", Duration::from_secs(10), || {
        busy = machines();
        busy.len() == 1
    });
    // The output reaches the journal only with the record, so give the init and the start of
    // the run a moment (python starts in about 15 ms) before pulling the plug.
    std::thread::sleep(Duration::from_millis(1000));
    let t = Instant::now();
    sh(&format!("machinectl terminate {}", busy[0]));
    wait_until("the slow activation's response", Duration::from_secs(10), || {
        sh_try("test -s /tmp/slow.done").0
    });
    d.terminate_noticed_ms = t.elapsed().as_secs_f64() * 1000.0;
    let body = sh("cat /tmp/slow.json");
    assert!(body.contains("action developer error"), "{body}");
    assert!(body.contains("terminated from outside"), "{body}");
    wait_until("no machines left", Duration::from_secs(5), || machines().is_empty());
}

fn phase_daemons_oom(d: &mut Daemons) {
    // The memory limit is the scope's (systemd driver); the OOM kill is read from its cgroup.
    write_inside(
        "/root/hog.py",
        "def main(args):\n    x = bytearray(400 * 1024 * 1024)\n    return {'n': len(x)}\n",
    );
    cli(d, "action create hog /root/hog.py --memory 128");
    let (ms, code, body) = curl_invoke(d, "hog", "");
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("exhausted its memory limit of 128 MB"), "{body}");
    d.oom_ms = ms;
    wait_until("the OOM-killed container gone", Duration::from_secs(10), || machines().is_empty());
    // A process that exits by itself is a crash, not a termination from outside: its scope
    // ends without a stop job.
    write_inside("/root/crash.py", "import os\ndef main(args):\n    os._exit(3)\n");
    cli(d, "action create crash /root/crash.py");
    let (ms, code, body) = curl_invoke(d, "crash", "");
    d.crash_ms = ms;
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("exited unexpectedly"), "{body}");
    assert!(!body.contains("terminated from outside"), "a crash is not a termination: {body}");
    wait_until("the crashed container gone", Duration::from_secs(10), || machines().is_empty());
}

fn phase_daemons_idle_exit(d: &mut Daemons) {
    // A warm container first, so the number below is the controller's re-activation alone.
    let (_, code, _) = curl_invoke(d, "hello", "&result=true");
    assert_eq!(code, "200");
    wait_until("controller idle exit", Duration::from_secs(20), || {
        sh_try("systemctl is-active hearth-controller.service").1 == "inactive"
    });
    assert_eq!(sh_try("systemctl is-active hearth-controller.socket").1, "active");
    assert_eq!(unit_prop("hearth-controller.service", "Result"), "success");
    let (ms, code, body) = curl_invoke(d, "hello", "");
    assert_eq!(code, "200", "first request after idle exit: {body}");
    assert!(!body.contains("initTime"), "the container should still be warm: {body}");
    d.after_idle_exit_ms = ms;
}

fn phase_daemons_live_restore(d: &mut Daemons) {
    let (_, code, _) = curl_invoke(d, "hello", "&result=true");
    assert_eq!(code, "200");
    let before = machines();
    assert_eq!(before.len(), 1, "{before:?}");
    wait_until("the container's pipes in the fd store", Duration::from_secs(5), || {
        unit_prop("hearth-invoker.service", "NFileDescriptorStore") == "4"
    });
    let pid1 = unit_prop("hearth-invoker.service", "MainPID");
    sh("systemctl restart hearth-invoker.service");
    let pid2 = unit_prop("hearth-invoker.service", "MainPID");
    assert_ne!(pid1, pid2, "the invoker restarted");
    assert_eq!(machines(), before, "the warm container survived the restart");
    // Workaround, reported to the bus owner: src/bus/unix.rs keeps using a connection whose
    // reader already saw the old invoker hang up (`is_open` only looks at the writer), so
    // the first dispatch after an invoker restart waits out its 20 s admission timeout and
    // answers 503. A fresh controller connects anew; the check below is about the invoker.
    sh("systemctl restart hearth-controller.service");
    let (ms, code, body) = curl_invoke(d, "hello", "");
    assert_eq!(
        code,
        "200",
        "{body}\n{}",
        sh("journalctl --no-pager -o short-monotonic -u hearth-invoker -u hearth-controller \
            | tail -n 40")
    );
    assert!(body.contains("Hello Ada"), "{body}");
    assert!(!body.contains("initTime"), "first invoke after restart was cold: {body}");
    d.after_restart_ms = ms;

    // A crash (SIGKILL; Restart=on-failure) keeps the fd store too: still warm after it.
    let pid3 = unit_prop("hearth-invoker.service", "MainPID");
    sh("systemctl kill -s SIGKILL hearth-invoker.service");
    wait_until("the invoker restarted after the crash", Duration::from_secs(10), || {
        let pid = unit_prop("hearth-invoker.service", "MainPID");
        pid != pid3 && pid != "0" && unit_prop("hearth-invoker.service", "ActiveState") == "active"
    });
    assert_eq!(machines(), before, "the warm container survived the crash");
    sh("systemctl restart hearth-controller.service"); // the bus workaround, as above
    let (ms, code, body) = curl_invoke(d, "hello", "");
    assert_eq!(code, "200", "{body}");
    assert!(!body.contains("initTime"), "first invoke after the crash was cold: {body}");
    d.after_crash_ms = ms;

    // A final stop destroys the containers.
    sh("systemctl stop hearth-invoker.service");
    wait_until("containers gone after a final stop", Duration::from_secs(10), || {
        machines().is_empty()
    });
    assert_eq!(unit_prop("hearth-invoker.service", "NFileDescriptorStore"), "0");
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

    let mut d = Daemons::default();
    phase_daemons_install(&mut d);
    phase_daemons_invoke(&mut d);
    phase_daemons_journal();
    phase_daemons_watchdog();
    phase_daemons_machines_and_reaping();
    phase_daemons_terminate(&mut d);
    phase_daemons_oom(&mut d);
    phase_daemons_idle_exit(&mut d);
    phase_daemons_live_restore(&mut d);
    println!("daemons: {d:?}");
}
