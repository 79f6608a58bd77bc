//! The .deb's life cycle on a real Debian with systemd as PID 1 (booted in systemd-nspawn by
//! tests/system/nspawn.sh): `apt-get install ./hearth_*.deb` enables and starts the sockets and
//! creates an admin key; the `hearth` CLI creates and invokes an action with that key; logs
//! reach the journal; an upgrade to a rebuilt package keeps data, keys and the warm container;
//! remove stops everything; purge removes the data. Root only (CI is root).
//!
//! One test, steps in order: each step needs the state the previous one left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "package/support.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use support::{build, cargo_version, repo, require_root, run};

/// Our own machine name, so this test never collides with the systemd tests' machine.
const MACHINE: &str = "hearth-pkg";
const KEY_FILE: &str = "/etc/hearth/admin.key";
const CLI: &str = "HEARTH_CONFIG=/etc/hearth/admin.key hearth";

const HELLO_PY: &str = r#"def main(args):
    name = args.get("name", "stranger")
    print("hello-log-line for " + name)
    return {"greeting": "Hello, " + name + "!"}
"#;

/// The booted Debian; powered off and removed (by the harness, by pid and path) on drop, also
/// when a step panics.
struct Machine {
    script: PathBuf,
}

impl Machine {
    fn boot() -> Machine {
        let script = repo().join("tests/system/nspawn.sh");
        assert!(
            script.exists(),
            "{} is missing: the package test boots Debian with the systemd tests' harness \
             (branch wt-systemd); merge it first",
            script.display()
        );
        let m = Machine { script };
        let t0 = Instant::now();
        run(m.harness().arg("boot"));
        eprintln!("booted {MACHINE} in {:.1}s", t0.elapsed().as_secs_f64());
        m
    }

    fn harness(&self) -> Command {
        let mut c = Command::new(&self.script);
        c.env("HEARTH_NSPAWN_NAME", MACHINE);
        c
    }

    /// Runs a shell script inside; returns the output whatever the exit status.
    fn sh(&self, script: &str) -> Output {
        self.harness().args(["exec", "sh", "-c", script]).output().unwrap()
    }

    /// Runs a shell script inside and returns its stdout; panics with both streams on failure.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "inside {MACHINE}: `{script}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn text(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.sh(script).stdout).trim().to_owned()
    }

    fn copy_in(&self, host: &std::path::Path, inside: &str) {
        run(self.harness().arg("cp").arg(host).arg(inside));
    }

    fn apt(&self, args: &str) -> String {
        let t0 = Instant::now();
        let out = self.ok(&format!("DEBIAN_FRONTEND=noninteractive apt-get -y {args} 2>&1"));
        eprintln!("apt-get {args}: {:.1}s\n{out}", t0.elapsed().as_secs_f64());
        out
    }

    fn state(&self, unit: &str) -> String {
        self.text(&format!("systemctl is-active {unit}"))
    }

    /// A blocking invoke through the REST API, returning the activation record: its
    /// annotations say whether the container was cold (an `initTime`) or warm (none).
    fn invoke_record(&self) -> serde_json::Value {
        let body = self.ok("auth=$(sed -n 's/^AUTH=//p' /etc/hearth/admin.key); \
             curl -sS --fail-with-body -u \"$auth\" -X POST -H 'content-type: application/json' \
             -d '{\"name\":\"Grace\"}' \
             'http://127.0.0.1:3233/api/v1/namespaces/_/actions/hello?blocking=true'");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("invoke answered {body:?}: {e}"))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.harness().arg("stop").status();
    }
}

fn is_cold(record: &serde_json::Value) -> bool {
    record["annotations"]
        .as_array()
        .map(|a| a.iter().any(|kv| kv["key"] == "initTime"))
        .unwrap_or(false)
}

#[test]
fn deb_install_use_upgrade_remove_purge_in_booted_systemd() {
    require_root();
    let version = cargo_version();
    let first = build(&version, "deb");
    // The "upgrade": the same source rebuilt under a higher version, as a distro rebuild would be.
    let next = build(&format!("{version}+rebuild1"), "deb");
    let m = Machine::boot();

    // Install: the sockets are enabled and listening, the services wait for a first request.
    m.copy_in(&first.deb, "/root/hearth.deb");
    let out = m.apt("install /root/hearth.deb");
    assert!(out.contains(KEY_FILE), "the install does not say where the admin key is:\n{out}");
    for sock in ["hearth-controller.socket", "hearth-invoker.socket"] {
        assert_eq!(m.text(&format!("systemctl is-enabled {sock}")), "enabled", "{sock}");
        assert_eq!(m.state(sock), "active", "{sock}");
    }
    for svc in ["hearth-controller.service", "hearth-invoker.service"] {
        assert_eq!(m.state(svc), "inactive", "{svc} started at install; only its socket should be");
    }
    let tcp = m.ok("ss -Hltn");
    assert!(tcp.contains(":3233"), "nothing listens on 3233:\n{tcp}");
    let unix = m.ok("ss -Hlx");
    assert!(unix.contains("/run/hearth/invoker.sock"), "no invoker socket:\n{unix}");
    assert!(m.ok("getent passwd hearth").contains("/var/lib/hearth"));

    // The key: root-only, a fresh uuid:secret, never a well-known one.
    assert_eq!(m.ok(&format!("stat -c '%a %U %G' {KEY_FILE}")).trim(), "600 root root");
    let key_before = m.ok(&format!("cat {KEY_FILE}"));
    let auth = key_before.lines().find_map(|l| l.strip_prefix("AUTH=")).expect("an AUTH= line");
    let (uuid, secret) = auth.split_once(':').expect("uuid:secret");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(secret.len(), 64, "{secret:?}");
    assert!(!auth.starts_with("23bc46b1-71f6-4ed5-8c54-816aa4f8c502"), "the public guest key");
    let namespaces =
        m.ok("runuser -u hearth -- hearthd admin --data-dir /var/lib/hearth namespace list");
    assert!(namespaces.lines().any(|l| l.trim() == "admin"), "{namespaces}");

    // Use: the CLI with the generated key; the first request starts the services.
    m.ok(&format!("cat > /root/hello.py <<'EOF'\n{HELLO_PY}EOF"));
    let t0 = Instant::now();
    m.ok(&format!("{CLI} action create hello /root/hello.py"));
    eprintln!(
        "first request (socket activation of the controller): {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    let result = m.ok(&format!("{CLI} action invoke hello -p name Ada --result"));
    eprintln!(
        "first invoke (invoker activation + container): {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert!(result.contains("Hello, Ada!"), "{result}");
    assert_eq!(m.state("hearth-controller.service"), "active");
    assert_eq!(m.state("hearth-invoker.service"), "active");
    let warm = m.invoke_record();
    assert_eq!(warm["response"]["result"]["greeting"], "Hello, Grace!", "{warm}");
    assert!(!is_cold(&warm), "the second invoke was not warm: {warm}");

    // Logs in the journal: the daemons' own, and the action's output under its field.
    let daemon_log =
        m.ok("journalctl --no-pager -o cat -u hearth-controller.service -u hearth-invoker.service");
    assert!(!daemon_log.trim().is_empty(), "no daemon logs in the journal");
    let action_log = m.ok("journalctl --no-pager -o cat HEARTH_ACTION=admin/hello");
    assert!(
        action_log.contains("hello-log-line for Ada"),
        "action output not in the journal:\n{action_log}"
    );

    // Upgrade: data, keys and the warm container survive; the services run the new binary.
    let invoker_pid = m.text("systemctl show -p MainPID --value hearth-invoker.service");
    m.copy_in(&next.deb, "/root/hearth-next.deb");
    m.apt("install /root/hearth-next.deb");
    assert_eq!(m.text("dpkg-query -W -f '${Version}' hearth"), next.version);
    assert_eq!(m.ok(&format!("cat {KEY_FILE}")), key_before, "the upgrade changed the admin key");
    assert_ne!(
        m.text("systemctl show -p MainPID --value hearth-invoker.service"),
        invoker_pid,
        "the invoker was not restarted onto the new binary"
    );
    m.ok(&format!("{CLI} action get hello"));
    let after = m.invoke_record();
    assert_eq!(after["response"]["result"]["greeting"], "Hello, Grace!", "{after}");
    assert!(!is_cold(&after), "the warm container did not survive the upgrade: {after}");

    // Remove: every unit stopped, nothing listening, no hearth process left; data kept.
    m.apt("remove hearth");
    for unit in [
        "hearth-controller.socket",
        "hearth-invoker.socket",
        "hearth-controller.service",
        "hearth-invoker.service",
        "hearth.slice",
    ] {
        assert_ne!(m.state(unit), "active", "{unit} still active after remove");
    }
    assert!(!m.ok("ss -Hltn").contains(":3233"), "3233 still listening after remove");
    let procs = m.ok("ps -eo comm=");
    assert!(!procs.lines().any(|p| p == "hearthd" || p == "runc"), "left running:\n{procs}");
    m.ok("test -d /var/lib/hearth && test -f /etc/hearth/admin.key");

    // Purge: data, key and config gone; the system user stays (Debian policy).
    m.apt("purge hearth");
    m.ok("! test -e /var/lib/hearth && ! test -e /etc/hearth && ! test -e /run/hearth");
    m.ok("getent passwd hearth");
}
