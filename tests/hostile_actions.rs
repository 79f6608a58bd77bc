//! Hostile actions against a real `hearthd standalone`: each attack runs as a Python action
//! and is contained (the activation ends with a record, an error where the attack had to be
//! stopped), and the host is unaffected: the server keeps serving, its memory stays bounded,
//! host files and settings are untouched, nothing is left behind after stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// Every attack in one action, chosen by the `attack` parameter; each returns what it
/// observed so that the test can check the wall held (rather than trusting an exit code).
const HOSTILE: &str = r#"
import os, sys, socket, time, errno

def attempt(f):
    try:
        return {"ok": True, "value": f()}
    except BaseException as e:
        return {"ok": False, "error": type(e).__name__ + ": " + str(e)}

def write(path, data="x"):
    def f():
        with open(path, "w") as fh:
            fh.write(data)
        return path
    return attempt(f)

def read(path):
    def f():
        with open(path, "rb") as fh:
            return fh.read(4096).decode("latin-1")
    return attempt(f)

def connect(host, port):
    def f():
        s = socket.create_connection((host, port), timeout=1)
        s.close()
        return "connected"
    return attempt(f)

def libc_call(name, *args):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    rc = getattr(libc, name)(*args)
    if rc == -1:
        return {"ok": False, "error": os.strerror(ctypes.get_errno())}
    return {"ok": True, "value": rc}

def main(a):
    attack = a.get("attack")
    if attack == "fork_bomb":
        n = 0
        for _ in range(100000):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
            except OSError as e:
                return {"forked": n, "stopped_by": str(e)}
        return {"forked": n}
    if attack == "memory_hog":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    if attack == "infinite_loop":
        while True:
            pass
    if attack == "fill_tmp":
        written = 0
        chunk = b"x" * (1024 * 1024)
        try:
            with open("/tmp/fill", "wb") as fh:
                while written < 1024 * 1024 * 1024:
                    fh.write(chunk)
                    fh.flush()
                    written += len(chunk)
        except OSError as e:
            return {"written": written, "stopped_by": str(e)}
        return {"written": written}
    if attack == "read_only_paths":
        return {p: write(p) for p in ["/usr/pwned", "/etc/pwned", "/action/pwned", "/pwned",
                                      "/bin/pwned", "/lib/pwned", a["code_dir"] + "/pwned"]}
    if attack == "host_files":
        out = {p: read(p) for p in ["/etc/shadow", "/etc/passwd", "/root/.bashrc",
                                    a["data_file"], a["other_code"], "/proc/1/environ"]}
        out["listing_state"] = attempt(lambda: os.listdir(a["state_dir"]))
        out["action_dir"] = attempt(lambda: sorted(os.listdir("/action")))
        out["uid"] = os.getuid()
        return out
    if attack == "network":
        return {"controller": connect("127.0.0.1", int(a["port"])),
                "host_ip": connect(a["host_ip"], int(a["port"])),
                "internet": connect("1.1.1.1", 53)}
    if attack == "signals":
        out = {}
        out["host_pid"] = attempt(lambda: os.kill(int(a["host_pid"]), 9))
        visible = []
        for pid in range(2, 4096):
            try:
                os.kill(pid, 0)
                visible.append(pid)
            except OSError:
                pass
        out["visible_pids"] = visible
        out["kill_init"] = attempt(lambda: os.kill(1, 9))
        return out
    if attack == "proc_sys_escape":
        return {
            # "h" only prints help to the kernel log, were the write ever to succeed.
            "sysrq": write("/proc/sysrq-trigger", "h"),
            "hostname": write("/proc/sys/kernel/hostname", "pwned"),
            "core_pattern": write("/proc/sys/kernel/core_pattern", "|/tmp/x"),
            "cgroup_procs": write("/sys/fs/cgroup/memory/cgroup.procs", "1"),
            "cgroup_limit": write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "-1"),
            "pids_max": write("/sys/fs/cgroup/pids/pids.max", "max"),
            "kcore": read("/proc/kcore"),
            "mount": attempt(lambda: os.system("mount -t tmpfs none /mnt 2>&1")),
            "sethostname": attempt(lambda: socket.sethostname("pwned")),
            "unshare_user": libc_call("unshare", 0x10000000),
            "unshare_net": libc_call("unshare", 0x40000000),
            "ptrace_attach": libc_call("ptrace", 16, 1, 0, 0),
            "bpf": libc_call("syscall", 321, 0, 0, 0),
            "keyctl": libc_call("syscall", 250, 0, 0, 0),
            "setuid": attempt(lambda: os.setuid(0)),
        }
    if attack == "log_flood":
        line = "y" * 1000
        for _ in range(50000):
            print(line)
        return {"printed": 50000 * 1001}
    return {"hello": "host"}
"#;

fn result(act: &Value) -> &Value {
    &act["response"]["result"]
}

fn denied(v: &Value, what: &str) {
    assert_eq!(v["ok"], false, "{what} was allowed: {v}");
}

#[test]
fn hostile_actions_are_contained() {
    require_root();
    let mut s = Standalone::start("prewarm = []\nmemory_budget_mb = 1024\n");
    let c = s.client();
    let limits = json!({"timeout": 5000, "memory": 128});
    c.put_action("hostile", "python:3", HOSTILE, Some(limits.clone()));
    c.put_action(
        "victim",
        "python:3",
        "SECRET_CODE = 1\ndef main(a):\n    return {}\n",
        Some(limits),
    );
    let warm = c.invoke("victim", json!({}));
    assert_eq!(warm.status, 200);
    let rss_before = s.daemon().rss_kb();
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let code_dirs: Vec<_> = std::fs::read_dir(s.state_dir().join("containers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    let other_code = code_dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().filter_map(|e| e.ok()))
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p.join("__main__.py")).is_ok_and(|t| t.contains("SECRET_CODE"))
        })
        .map(|p| p.join("__main__.py").to_string_lossy().into_owned())
        .unwrap_or_else(|| s.state_dir().join("containers").to_string_lossy().into_owned());
    let params = json!({
        "port": s.addr.port(),
        "host_ip": "10.0.2.15",
        "host_pid": s.daemon().pid(),
        "data_file": s.data_dir().join("data.mdb"),
        "state_dir": s.state_dir(),
        "code_dir": s.state_dir().join("containers"),
        "other_code": other_code,
    });
    let run = |attack: &str| -> (u16, Value, Duration) {
        let mut p = params.clone();
        p["attack"] = json!(attack);
        let t = Instant::now();
        let r = c.invoke("hostile", p);
        let elapsed = t.elapsed();
        let act = r.json();
        // Every attack ends with a record readable afterwards.
        let id = act["activationId"].as_str().unwrap_or_else(|| panic!("{attack}: {}", r.text()));
        let rec =
            c.record(id, Duration::from_secs(5)).unwrap_or_else(|| panic!("{attack}: no record"));
        assert_eq!(rec["response"]["status"], act["response"]["status"]);
        println!("{attack}: {} in {elapsed:?}: {}", r.status, result(&act));
        (r.status, act, elapsed)
    };
    let mut attacks = 0;

    let (st, act, _) = run("fork_bomb");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    assert!(result(&act)["forked"].as_u64().unwrap() < 64, "{act}");
    assert!(
        result(&act)["stopped_by"].as_str().unwrap().contains("Resource temporarily unavailable"),
        "{act}"
    );
    // Regression: the warm container used to be reused with the bomb's 63 children still in
    // it, its pids limit spent. A run that leaves processes behind retires its container.
    let (_, after, _) = run("signals");
    let visible = result(&after)["visible_pids"].as_array().map_or(usize::MAX, |v| v.len());
    assert_eq!(visible, 0, "after the fork bomb, the next activation sees leftovers: {after}");

    let (st, act, el) = run("memory_hog");
    attacks += 1;
    assert_eq!(st, 502, "{act}");
    assert_eq!(act["response"]["status"], "action developer error");
    assert!(el < Duration::from_secs(5), "the OOM kill should be quick: {el:?}");

    let (st, act, el) = run("infinite_loop");
    attacks += 1;
    assert_eq!(st, 502, "{act}");
    assert!(result(&act)["error"].as_str().unwrap().contains("time"), "{act}");
    assert!(el >= Duration::from_secs(5) && el < Duration::from_secs(9), "{el:?}");

    let (st, act, _) = run("fill_tmp");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    assert!(result(&act)["written"].as_u64().unwrap() <= 64 << 20, "{act}");
    assert!(result(&act)["stopped_by"].as_str().unwrap().contains("No space"), "{act}");

    let (st, act, _) = run("read_only_paths");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    for (p, v) in result(&act).as_object().unwrap() {
        denied(v, p);
    }

    let (st, act, _) = run("host_files");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    let r = result(&act);
    for p in ["/etc/shadow", "/root/.bashrc"] {
        denied(&r[p], p);
    }
    denied(&r[params["data_file"].as_str().unwrap()], "the LMDB file");
    denied(&r[params["other_code"].as_str().unwrap()], "another action's code");
    denied(&r["listing_state"], "the state dir");
    // /etc/passwd of the container is the skeleton's, not the host's.
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    if r["/etc/passwd"]["ok"] == true {
        assert_ne!(
            r["/etc/passwd"]["value"].as_str().unwrap(),
            &host_passwd[..host_passwd.len().min(4096)]
        );
    }
    // pid 1 in the container is the action's own launcher: its environment is the action's.
    let environ = r["/proc/1/environ"]["value"].as_str().unwrap_or_default();
    assert!(
        !environ.contains("HEARTH_LOG") && !environ.contains("CARGO"),
        "host environment leaked: {environ}"
    );
    assert_eq!(r["action_dir"]["ok"], true);
    assert!(!r["action_dir"].to_string().contains("SECRET"), "{}", r["action_dir"]);
    assert_eq!(r["uid"], 65534);

    let (st, act, _) = run("network");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    for k in ["controller", "host_ip", "internet"] {
        denied(&result(&act)[k], k);
    }

    let (st, act, _) = run("signals");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    assert!(result(&act)["visible_pids"].as_array().unwrap().len() < 64, "{act}");
    assert!(s.daemon().running(), "hearthd was killed");

    let (st, act, _) = run("proc_sys_escape");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    for (k, v) in result(&act).as_object().unwrap() {
        match k.as_str() {
            "mount" => assert_ne!(v["value"], 0, "mount succeeded: {v}"),
            _ => denied(v, k),
        }
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_hostname);

    let (st, act, _) = run("log_flood");
    attacks += 1;
    assert_eq!(st, 200, "{act}");
    let logs = act["logs"].as_array().unwrap();
    let bytes: usize = logs.iter().map(|l| l.as_str().unwrap().len()).sum();
    assert!(bytes <= 11 << 20, "log flood kept {bytes} bytes");

    // The host is unaffected: the server serves, the neighbour still runs, memory is bounded.
    let r = c.invoke("victim", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let rss_after = s.daemon().rss_kb();
    println!("hostile: {attacks} attacks contained; hearthd RSS {rss_before} kB -> {rss_after} kB");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "hearthd grew from {rss_before} to {rss_after} kB"
    );
    s.stop();
}
