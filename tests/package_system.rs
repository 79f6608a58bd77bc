//! The .deb's life cycle on a real Debian with systemd as PID 1 (booted in systemd-nspawn by
//! tests/system/nspawn.sh): `apt-get install ./hearth_*.deb` enables and starts the sockets and
//! creates an admin key; the `hearth` CLI creates and invokes an action with that key; logs
//! reach the journal; an upgrade to a rebuilt package keeps data, keys and the warm container;
//! the packaged daemons, configured with `bus`/`id` and a broker on the machine, run the action
//! over Kafka; remove stops everything; purge removes the data. Root only (CI is root).
//!
//! Three tests, each on its own machines, steps in order (each needs the state the previous
//! left): the package's own life cycle (maintainer scripts, units, key, conffiles, data), the
//! daemons it installs serving actions across an upgrade, and two booted hosts joined over one
//! broker into a cluster (each its own machine, with its own systemd, machined and network
//! namespace, linked by a veth pair), surviving the loss of one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "package/support.rs"]
mod support;
// Only for where the broker binary is cached; this test runs the broker inside its machines.
mod broker;
#[path = "harness/wait.rs"]
#[allow(dead_code)] // wait_until: this test adds its journal to try_wait's timeout
mod wait;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use support::{build, cargo_version, repo, require_root, run};

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
    /// Our own machine names, so these tests never collide with the systemd tests' machine.
    name: &'static str,
}

impl Machine {
    fn boot(name: &'static str) -> Machine {
        let script = repo().join("tests/system/nspawn.sh");
        assert!(
            script.exists(),
            "{} is missing: the package test boots Debian with the systemd tests' harness \
             (branch wt-systemd); merge it first",
            script.display()
        );
        let m = Machine { script, name };
        let t0 = Instant::now();
        run(m.harness().arg("boot"));
        eprintln!("booted {name} in {:.1}s", t0.elapsed().as_secs_f64());
        m
    }

    fn harness(&self) -> Command {
        let mut c = Command::new(&self.script);
        c.env("HEARTH_NSPAWN_NAME", self.name);
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
            "inside {}: `{script}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.name,
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

    /// The host pid of the machine's systemd (its namespaces).
    fn init_pid(&self) -> String {
        let out = run(self.harness().arg("pid"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn state(&self, unit: &str) -> String {
        self.text(&format!("systemctl is-active {unit}"))
    }

    /// A blocking invoke through the REST API, returning the activation record: its
    /// annotations say whether the container was cold (an `initTime`) or warm (none).
    fn invoke_record(&self) -> serde_json::Value {
        self.try_invoke_record().unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`invoke_record`](Self::invoke_record), with a failed request as an error.
    fn try_invoke_record(&self) -> Result<serde_json::Value, String> {
        let out = self.sh("auth=$(sed -n 's/^AUTH=//p' /etc/hearth/admin.key); \
             curl -sS --fail-with-body -u \"$auth\" -X POST -H 'content-type: application/json' \
             -d '{\"name\":\"Grace\"}' \
             'http://127.0.0.1:3233/api/v1/namespaces/_/actions/hello?blocking=true'");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "invoke failed ({}): {body} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_str(&body).map_err(|e| format!("invoke answered {body:?}: {e}"))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.harness().arg("stop").status();
    }
}

/// The Kafka-protocol broker the test cluster runs (scripts/build-broker.sh builds it once).
fn tansu() -> PathBuf {
    let bin = broker::tansu_bin();
    assert!(
        bin.exists(),
        "the Kafka-protocol broker is missing at {}: build it with scripts/build-broker.sh",
        bin.display()
    );
    bin
}

fn is_cold(record: &serde_json::Value) -> bool {
    record["annotations"]
        .as_array()
        .map(|a| a.iter().any(|kv| kv["key"] == "initTime"))
        .unwrap_or(false)
}

/// Both versions: the tree's own and a rebuild of it under a higher version (an upgrade, as a
/// distro rebuild would be).
fn two_versions() -> (support::Packages, support::Packages) {
    let version = cargo_version();
    (build(&version, "deb"), build(&format!("{version}+rebuild1"), "deb"))
}

/// Install: the user, the state dir, the sockets enabled and listening, the services waiting
/// for a first request, and a fresh root-only admin key. Returns the key file's content.
fn install_and_check(m: &Machine, deb: &std::path::Path) -> String {
    m.copy_in(deb, "/root/hearth.deb");
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
    let version = m.ok("hearthd --version");
    assert!(version.contains("with kafka"), "the packaged hearthd lacks the Kafka bus: {version}");
    assert_eq!(m.ok("stat -c '%a %U %G' /var/lib/hearth").trim(), "750 hearth hearth");

    // The key: root-only, a fresh uuid:secret, never a well-known one.
    assert_eq!(m.ok(&format!("stat -c '%a %U %G' {KEY_FILE}")).trim(), "600 root root");
    let key = m.ok(&format!("cat {KEY_FILE}"));
    let auth = key.lines().find_map(|l| l.strip_prefix("AUTH=")).expect("an AUTH= line");
    let (uuid, secret) = auth.split_once(':').expect("uuid:secret");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(secret.len(), 64, "{secret:?}");
    assert_ne!(auth, hearth::model::GUEST_KEY, "the public guest key");
    let namespaces =
        m.ok("runuser -u hearth -- hearthd admin --data-dir /var/lib/hearth namespace list");
    assert!(namespaces.lines().any(|l| l.trim() == "admin"), "{namespaces}");
    key
}

/// What dpkg and the maintainer scripts do, independent of the daemons serving anything.
#[test]
fn deb_install_upgrade_remove_purge_lifecycle() {
    require_root();
    let (first, next) = two_versions();
    let m = Machine::boot("hearth-pkg-life");
    let key = install_and_check(&m, &first.deb);

    // Upgrade: the key and data stay, an edited conffile stays edited, the sockets stay up
    // and the (stopped) services are not started by it.
    m.ok("sed -i 's/^# queue_limit = 256/queue_limit = 100/' /etc/hearth/invoker.toml");
    m.copy_in(&next.deb, "/root/hearth-next.deb");
    m.apt("install /root/hearth-next.deb");
    assert_eq!(m.text("dpkg-query -W -f '${Version}' hearth"), next.version);
    assert_eq!(m.ok(&format!("cat {KEY_FILE}")), key, "the upgrade changed the admin key");
    assert!(
        m.ok("cat /etc/hearth/invoker.toml").contains("\nqueue_limit = 100\n"),
        "conffile edit lost"
    );
    assert!(m
        .ok("runuser -u hearth -- hearthd admin --data-dir /var/lib/hearth namespace list")
        .contains("admin"));
    for sock in ["hearth-controller.socket", "hearth-invoker.socket"] {
        assert_eq!(m.state(sock), "active", "{sock} after upgrade");
    }
    assert_eq!(
        m.state("hearth-controller.service"),
        "inactive",
        "the upgrade started the controller"
    );

    // Remove: every unit stopped, nothing listening; data, key and configs kept.
    m.apt("remove hearth");
    for unit in [
        "hearth-controller.socket",
        "hearth-invoker.socket",
        "hearth-controller.service",
        "hearth-invoker.service",
    ] {
        assert_ne!(m.state(unit), "active", "{unit} still active after remove");
    }
    assert!(!m.ok("ss -Hltn").contains(":3233"), "3233 still listening after remove");
    assert!(
        !m.ok("ss -Hlx").contains("/run/hearth/invoker.sock"),
        "invoker socket left after remove"
    );
    m.ok("test -f /var/lib/hearth/data.mdb && test -f /etc/hearth/admin.key && test -f /etc/hearth/invoker.toml");

    // Purge: data, key, configs and the sockets' enablement gone; the system user stays
    // (Debian policy: a reused uid would own what it left elsewhere).
    m.apt("purge hearth");
    m.ok("! test -e /var/lib/hearth && ! test -e /etc/hearth && ! test -e /run/hearth");
    m.ok("! test -e /etc/systemd/system/sockets.target.wants/hearth-controller.socket");
    m.ok("getent passwd hearth");

    // A fresh install after a purge gets a new key, not the old one back.
    let again = install_and_check(&m, &first.deb);
    assert_ne!(again, key, "a reinstall after purge reused the old key");
}

/// The daemons the package installs serve actions with the generated key, log to the journal,
/// keep a warm container across an upgrade, and stop with everything on remove.
#[test]
fn deb_serves_actions_and_keeps_warm_containers_across_upgrade() {
    require_root();
    let (first, next) = two_versions();
    let m = Machine::boot("hearth-pkg-use");
    install_and_check(&m, &first.deb);

    // The CLI with the generated key; the first request starts the services.
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
        "first invoke (invoker activation + cold container): {:.0} ms",
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

    // Upgrade: the services run the new binary, the action and the warm container survive.
    let invoker_pid = m.text("systemctl show -p MainPID --value hearth-invoker.service");
    m.copy_in(&next.deb, "/root/hearth-next.deb");
    m.apt("install /root/hearth-next.deb");
    assert_ne!(
        m.text("systemctl show -p MainPID --value hearth-invoker.service"),
        invoker_pid,
        "the invoker was not restarted onto the new binary"
    );
    m.ok(&format!("{CLI} action get hello"));
    let after = m.invoke_record();
    assert_eq!(after["response"]["result"]["greeting"], "Hello, Grace!", "{after}");
    assert!(!is_cold(&after), "the warm container did not survive the upgrade: {after}");

    // Several hosts from the packages (docs/KAFKA.md, "From the packages"), here one host of
    // each kind on this machine: a Kafka-protocol broker, `bus` and `id` in /etc/hearth, the
    // invoker enabled as a service (nothing connects to its socket any more). The action
    // created above reaches the invoker over the entity topic and runs there.
    // librdkafka resolves broker addresses with AI_ADDRCONFIG, which fails for every IPv4
    // address (127.0.0.1 included) on a host whose only interface is loopback, as this
    // machine's private network is; a real host has an address, so give this one one.
    m.ok("ip link add hearth-v0 type veth peer name hearth-v1 \
          && ip addr add 10.99.0.1/24 dev hearth-v0 \
          && ip link set hearth-v0 up && ip link set hearth-v1 up");
    m.copy_in(&tansu(), "/usr/local/bin/tansu");
    m.ok("systemd-run --unit=kafka-broker /usr/local/bin/tansu broker \
          --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
          --storage-engine memory://tansu/");
    m.ok("for i in $(seq 200); do ss -Hltn | grep -q ':9092 ' && exit 0; sleep 0.1; done; exit 1");
    for (file, id) in [("invoker", "0"), ("controller", "\"c1\"")] {
        m.ok(&format!(
            "f=/etc/hearth/{file}.toml; {{ printf 'bus = \"kafka://127.0.0.1:9092\"\\nid = {id}\\n'; \
             cat $f; }} > /root/{file}.toml && cat /root/{file}.toml > $f"
        ));
    }
    m.ok("systemctl enable hearth-invoker.service && systemctl restart hearth-invoker.service");
    assert_eq!(m.text("systemctl is-enabled hearth-invoker.service"), "enabled");
    m.ok("systemctl restart hearth-controller.service");
    let t0 = Instant::now();
    // The first ones may be refused while the controller has not heard the invoker's first
    // ping (503 naming the bus), which is what the loop waits out.
    let over_kafka = loop {
        let r = m.try_invoke_record();
        match r {
            Ok(r) if r["response"]["status"] == "success" => break r,
            other => assert!(
                t0.elapsed().as_secs() < 60,
                "no successful invoke over Kafka within 60 s: {other:?}\n{}",
                m.text("journalctl --no-pager -o cat -u hearth-controller.service -u hearth-invoker.service | tail -n 30")
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    eprintln!("first invoke over Kafka after the restart: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(over_kafka["response"]["result"]["greeting"], "Hello, Grace!", "{over_kafka}");
    let ran_on = over_kafka["annotations"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == "invoker"))
        .map(|kv| kv["value"].clone());
    assert_eq!(ran_on, Some("invoker0".into()), "not run by the Kafka invoker: {over_kafka}");
    let invoker_log = m.ok("journalctl --no-pager -o cat -u hearth-invoker.service");
    assert!(invoker_log.contains("serving activations from Kafka"), "{invoker_log}");

    // Remove: daemons, containers and their slice all stopped.
    m.apt("remove hearth");
    for unit in ["hearth-controller.service", "hearth-invoker.service", "hearth.slice"] {
        assert_ne!(m.state(unit), "active", "{unit} still active after remove");
    }
    let procs = m.ok("ps -eo comm=");
    assert!(
        !procs.lines().any(|p| p == "hearthd" || p == "runc" || p.starts_with("python3")),
        "left running after remove:\n{procs}"
    );
}

/// Two booted hosts from the package, one cluster: host A runs the broker, controller c1 and
/// invoker 0; host B runs controller c2 and invoker 1; each in its own machine (its own
/// systemd, machined, network namespace), linked by a veth pair as two hosts on one network.
/// Actions created on A are served through either controller, each on its home invoker on
/// either host (its container registered with that host's machined); every activation reads
/// back, with its result and logs, through the other host's controller; when host B drops off
/// the network, A's controller marks invoker 1 offline and runs B's actions on invoker 0.
#[test]
fn debs_on_two_booted_hosts_form_one_cluster_and_survive_losing_one() {
    require_root();
    let version = cargo_version();
    let pkg = build(&version, "deb");
    let a = Machine::boot("hearth-mh-a");
    let b = Machine::boot("hearth-mh-b");

    // The network between them: a veth pair, one end in each machine's namespace.
    let (ea, eb) = ("hmh-a", "hmh-b");
    let _ = Command::new("ip").args(["link", "del", ea]).output(); // a leftover of a crashed run
    run(Command::new("ip").args(["link", "add", ea, "type", "veth", "peer", "name", eb]));
    run(Command::new("ip").args(["link", "set", ea, "netns", &a.init_pid()]));
    run(Command::new("ip").args(["link", "set", eb, "netns", &b.init_pid()]));
    for (m, dev, ip) in [(&a, ea, "10.98.0.1"), (&b, eb, "10.98.0.2")] {
        m.ok(&format!("ip addr add {ip}/24 dev {dev} && ip link set {dev} up"));
    }

    let t0 = Instant::now();
    for m in [&a, &b] {
        install_and_check(m, &pkg.deb);
    }
    eprintln!("installed on both hosts in {:.1}s", t0.elapsed().as_secs_f64());
    a.copy_in(&tansu(), "/usr/local/bin/tansu");
    a.ok("systemd-run --unit=kafka-broker /usr/local/bin/tansu broker \
          --listener-url tcp://10.98.0.1:9092 --advertised-listener-url tcp://10.98.0.1:9092 \
          --storage-engine memory://tansu/");
    a.ok("for i in $(seq 200); do ss -Hltn | grep -q '10.98.0.1:9092 ' && exit 0; sleep 0.1; done; exit 1");
    for (m, controller, invoker) in [(&a, "c1", "0"), (&b, "c2", "1")] {
        for (file, settings) in [
            ("controller", format!("id = \"{controller}\"\\ninvoker_offline_after = \"3s\"")),
            ("invoker", format!("id = {invoker}")),
        ] {
            m.ok(&format!(
                "f=/etc/hearth/{file}.toml; {{ printf 'bus = \"kafka://10.98.0.1:9092\"\\n{settings}\\n'; \
                 cat $f; }} > /root/{file}.toml && cat /root/{file}.toml > $f"
            ));
        }
        m.ok(
            "systemctl enable hearth-invoker.service && systemctl restart hearth-invoker.service \
              && systemctl restart hearth-controller.service",
        );
    }

    // A's key works on B once B's controller has read the entity topic; both controllers
    // see both invokers up.
    let key = a.ok(&format!("cat {KEY_FILE}"));
    b.ok(&format!("cat > /root/a.key <<'EOF'\n{key}EOF"));
    let hosts = [(&a, KEY_FILE), (&b, "/root/a.key")];
    let both_up = serde_json::json!({"invoker0": "up", "invoker1": "up"});
    let t0 = Instant::now();
    for (m, _) in hosts {
        wait_until(m, "both invokers up", || {
            let seen = m.text("curl -sS http://127.0.0.1:3233/invokers");
            (serde_json::from_str::<serde_json::Value>(&seen).ok() == Some(both_up.clone()))
                .then_some(())
        });
    }
    eprintln!(
        "both controllers see both invokers {:.1}s after the configuration",
        t0.elapsed().as_secs_f64()
    );

    // Six actions created on A; each invoked through both controllers, twice.
    a.ok(&format!("cat > /root/hello.py <<'EOF'\n{HELLO_PY}EOF"));
    let names: Vec<String> = (0..6).map(|i| format!("hello{i}")).collect();
    for n in &names {
        a.ok(&format!("{CLI} action create {n} /root/hello.py"));
    }
    let mut homes = std::collections::BTreeMap::new();
    let mut accepted = Vec::new(); // (index of the accepting host, activation id)
    for round in 0..2 {
        for (at, (m, key_file)) in hosts.into_iter().enumerate() {
            for n in &names {
                let rec = wait_until(m, &format!("{n} invoked (round {round})"), || {
                    invoke_with(m, key_file, n).ok()
                });
                assert_eq!(rec["response"]["result"]["greeting"], "Hello, Grace!", "{rec}");
                let on = invoker_of(&rec);
                let home = homes.entry(n.clone()).or_insert_with(|| on.clone());
                assert_eq!(*home, on, "{n} left its home invoker");
                accepted.push((at, rec["activationId"].as_str().unwrap().to_owned()));
            }
        }
    }
    let used: std::collections::BTreeSet<&String> = homes.values().collect();
    assert_eq!(used.len(), 2, "6 actions all ran on {used:?}");
    eprintln!("homes over two hosts: {homes:?}");

    // Every activation reads back, result and logs, through the other host's controller (the
    // records topic, docs/KAFKA.md), and a list reads the same through both.
    let t0 = Instant::now();
    for (at, id) in &accepted {
        let (m, key_file) = hosts[1 - at];
        let rec = wait_until(m, &format!("activation {id} read through the other host"), || {
            get_with(m, key_file, &format!("activations/{id}")).ok()
        });
        assert_eq!(rec["response"]["result"]["greeting"], "Hello, Grace!", "{rec}");
        let logs = rec["logs"].to_string();
        assert!(logs.contains("hello-log-line for Grace"), "{id} through the other host: {logs}");
    }
    eprintln!(
        "{} activations read through the other host's controller within {:.1}s",
        accepted.len(),
        t0.elapsed().as_secs_f64()
    );
    let ids = |m: &Machine, key_file: &str| {
        get_with(m, key_file, "activations?name=hello0&limit=3").ok().map(|list| {
            let ids: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["activationId"].as_str().map(str::to_owned))
                .collect();
            ids
        })
    };
    let through_a = ids(hosts[0].0, hosts[0].1).unwrap();
    assert_eq!(through_a.len(), 3, "{through_a:?}");
    wait_until(&b, "the same newest 3 activations of hello0 as host A lists", || {
        (ids(hosts[1].0, hosts[1].1)? == through_a).then_some(())
    });
    // Each host's containers are its own machined's machines.
    for (m, invoker) in [(&a, "invoker0"), (&b, "invoker1")] {
        let machines = m.ok("machinectl list --no-legend");
        assert!(machines.contains("hearth-"), "{invoker}'s containers not registered:\n{machines}");
    }

    // Host B drops off the network: A's controller marks invoker 1 offline (3 s without a
    // ping) and runs B's actions on invoker 0.
    b.ok(&format!("ip link set {eb} down"));
    let lost = homes.iter().find(|(_, h)| *h == "invoker1").map(|(n, _)| n.clone()).unwrap();
    let t0 = Instant::now();
    let rec = wait_until(&a, "an action of the lost host running on the other", || {
        invoke_with(&a, KEY_FILE, &lost)
            .ok()
            .filter(|r| r["response"]["status"] == "success" && invoker_of(r) == "invoker0")
    });
    eprintln!("{lost} ran on invoker0 {:.1}s after host B dropped off", t0.elapsed().as_secs_f64());
    assert_eq!(rec["response"]["result"]["greeting"], "Hello, Grace!");
    let seen: serde_json::Value =
        serde_json::from_str(&a.text("curl -sS http://127.0.0.1:3233/invokers")).unwrap();
    assert_eq!(seen, serde_json::json!({"invoker0": "up", "invoker1": "down"}));
}

/// A blocking invoke of `name` through `m`'s controller with the key in `key_file`.
fn invoke_with(m: &Machine, key_file: &str, name: &str) -> Result<serde_json::Value, String> {
    let post = r#"-X POST -H 'content-type: application/json' -d '{"name":"Grace"}'"#;
    api(m, key_file, post, &format!("actions/{name}?blocking=true"))
}

/// A GET of `path` (under the key's namespace) through `m`'s controller.
fn get_with(m: &Machine, key_file: &str, path: &str) -> Result<serde_json::Value, String> {
    api(m, key_file, "", path)
}

/// One request to `/api/v1/namespaces/_/{path}` through `m`'s controller with the key in
/// `key_file`; the JSON body of a 2xx answer, or what went wrong.
fn api(m: &Machine, key_file: &str, args: &str, path: &str) -> Result<serde_json::Value, String> {
    let out = m.sh(&format!(
        "auth=$(sed -n 's/^AUTH=//p' {key_file}); \
         curl -sS --fail-with-body -u \"$auth\" {args} \
         'http://127.0.0.1:3233/api/v1/namespaces/_/{path}'"
    ));
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{path} failed ({}): {body}", out.status));
    }
    serde_json::from_str(&body).map_err(|e| format!("{path} answered {body:?}: {e}"))
}

fn invoker_of(record: &serde_json::Value) -> String {
    record["annotations"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == "invoker"))
        .and_then(|kv| kv["value"].as_str())
        .unwrap_or_else(|| panic!("no invoker annotation: {record}"))
        .to_owned()
}

/// Retries `f` every 250 ms for up to 60 s (the harness's one poll); on failure shows `m`'s
/// hearth journal.
fn wait_until<T>(m: &Machine, what: &str, f: impl FnMut() -> Option<T>) -> T {
    let (within, every) =
        (std::time::Duration::from_secs(60), std::time::Duration::from_millis(250));
    wait::try_wait(within, every, f).unwrap_or_else(|| {
        panic!(
            "{}: {what} not within 60 s\n{}",
            m.name,
            m.text("journalctl --no-pager -o cat -u hearth-controller.service -u hearth-invoker.service | tail -n 40")
        )
    })
}
