//! Runtimes users bring (issue 15), end to end through a real `hearthd standalone`: native
//! executables in OpenWhisk's dockerskeleton contract (a shell script and a C program built
//! here), a Python zip with a `virtualenv` folder and a Node zip with `node_modules`, built at
//! test time from real PyPI and npm packages (tests/deps/build.sh, cached under
//! $HEARTH_CACHE). Each runs cold, prewarmed and warm, and reports from inside its container
//! that the isolation still holds (read-only code dir, loopback only, unprivileged, seccomp).
//! Needs root and runc (CI runs as root); fails loudly otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use harness::*;
use serde_json::{json, Value};
use zip::write::SimpleFileOptions;

/// OpenWhisk's action-proxy messages (actionproxy.py), which native actions must report.
const NO_BINARY: &str = "The action failed to generate or locate a binary. See logs for details.";
const NOT_A_DICT: &str = "The action did not return a dictionary or array.";

/// How long a stem cell may take to appear on a loaded machine; a bound on a wait, not a
/// measurement.
const PREWARM_WAIT: Duration = Duration::from_secs(90);

/// A native action as a shell script: logs on both streams, counts its runs in the
/// container's private /tmp (so a warm run shows it is the same container, run again), and
/// reports what it sees of its sandbox. Parameters arrive in $1 and on stdin.
const SCRIPT: &str = r#"#!/bin/sh
echo "log line from the script"
echo "stderr line from the script" >&2
runs=$(cat /tmp/runs 2>/dev/null || echo 0)
runs=$((runs + 1))
echo "$runs" > /tmp/runs
input=$(cat)
if touch /action/probe 2>/dev/null; then code=writable; else code=read-only; fi
nets=$(ls /sys/class/net | tr '\n' ' ')
status() { grep "^$1:" /proc/self/status | cut -f2; }
printf '{"args": %s, "arglen": %s, "stdinlen": %s, "runs": %s, "code": "%s", "nets": "%s", "uid": %s, "seccomp": "%s", "capeff": "%s", "nnp": "%s", "cwd": "%s", "activation": "%s", "host": "%s"}\n' \
  "${1:-null}" "${#1}" "${#input}" "$runs" "$code" "$nets" "$(id -u)" "$(status Seccomp)" \
  "$(status CapEff)" "$(status NoNewPrivs)" "$(pwd)" "$__OW_ACTIVATION_ID" \
  "$(cat /proc/sys/kernel/hostname)"
"#;

/// A native action in C, compiled here with the host's gcc.
const C_SOURCE: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    printf("log line from C\n");
    fprintf(stderr, "stderr line from C\n");
    printf("{\"args\": %s, \"argc\": %d, \"uid\": %d, \"host\": \"%s\"}\n",
           argc > 1 ? argv[1] : "null", argc, (int)getuid(), host);
    return 0;
}
"#;

/// The Python action of the virtualenv zip: a pure module (six) and a C extension
/// (markupsafe's _speedups) from the zip's virtualenv, with what it sees of its sandbox.
const PY_MAIN: &str = r#"
import os
import six
import markupsafe
import markupsafe._speedups as speedups

def main(args):
    try:
        open("/action/written", "w").close()
        code = "writable"
    except OSError as e:
        code = "read-only" if e.errno == 30 else repr(e)
    return {
        "name": args.get("name"),
        "six": six.__file__,
        "escaped": str(markupsafe.escape("<a>")),
        "escape_from": markupsafe.escape.__module__,
        "speedups": speedups.__file__,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "activated_by": os.environ.get("ACTIVATED_BY"),
        "code": code,
        "nets": sorted(os.listdir("/sys/class/net")),
        "uid": os.getuid(),
        "host": os.uname().nodename,
    }
"#;

/// A virtualenv's own activation script, as the `virtualenv` tool writes one (OpenWhisk's
/// runtime runs it when the folder has it); it marks that it ran.
const ACTIVATE_THIS: &str = r#"
import os, site, sys
base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["VIRTUAL_ENV"] = base
os.environ["ACTIVATED_BY"] = "activate_this.py"
before = list(sys.path)
site.addsitedir(os.path.join(base, "lib", "python%d.%d" % sys.version_info[:2], "site-packages"))
sys.path[:] = [p for p in sys.path if p not in before] + before
"#;

/// The Node action of the node_modules zip.
const JS_MAIN: &str = r#"
const fs = require('fs');
const ms = require('ms');
exports.main = function (params) {
  let code;
  try { fs.writeFileSync('/action/written', 'x'); code = 'writable'; }
  catch (e) { code = e.code === 'EROFS' ? 'read-only' : String(e); }
  return {
    name: params.name,
    two_hours: ms('2h'),
    resolved: require.resolve('ms'),
    code,
    nets: fs.readdirSync('/sys/class/net').sort(),
    uid: process.getuid(),
    host: require('os').hostname(),
  };
};
"#;

/// A zip of `(name, bytes, unix mode)` entries.
fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Adds the tree at `dir` under `prefix` to `w`. Symbolic links (a venv's bin/python) are
/// left out: hearth refuses them in zips, and the container runs the host's interpreter.
fn add_tree(w: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, dir: &Path, prefix: &str) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            w.add_directory(name.as_str(), SimpleFileOptions::default()).unwrap();
            add_tree(w, &e.path(), &name);
        } else {
            w.start_file(name.as_str(), SimpleFileOptions::default().unix_permissions(0o644))
                .unwrap();
            w.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

/// A zip of `files` at the top plus `tree` under the folder `folder`.
fn zip_with_tree(files: &[(&str, &str)], folder: &str, tree: &Path) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        w.start_file(*name, SimpleFileOptions::default().unix_permissions(0o644)).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.add_directory(folder, SimpleFileOptions::default()).unwrap();
    add_tree(&mut w, tree, folder);
    w.finish().unwrap().into_inner()
}

/// PUTs an action with `exec` and optional limits; returns the response.
fn put(c: &Client, name: &str, exec: Value, limits: Option<Value>) -> Resp {
    let mut body = json!({ "exec": exec });
    if let Some(l) = limits {
        body["limits"] = l;
    }
    c.json("PUT", &format!("/api/v1/namespaces/_/actions/{name}?overwrite=true"), body)
}

/// `exec` for a zip, as wsk sends it for `--native` when `kind` is blackbox.
fn zip_exec(kind: &str, zip: &[u8]) -> Value {
    let code = base64::engine::general_purpose::STANDARD.encode(zip);
    let mut exec = json!({ "kind": kind, "code": code, "binary": true });
    if kind == "blackbox" {
        exec["image"] = json!("openwhisk/dockerskeleton");
    }
    exec
}

fn put_ok(c: &Client, name: &str, exec: Value, memory: u64) {
    let r = put(c, name, exec, Some(json!({ "memory": memory })));
    assert_eq!(r.status, 200, "create {name}: {}", r.text());
}

fn logs(act: &Value) -> Vec<String> {
    act["logs"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect()
}

/// Invokes `name` and returns the activation, asserting it succeeded and whether it was a
/// start (initTime) or a warm run.
fn invoke_ok(c: &Client, name: &str, params: Value, start: bool) -> Value {
    let r = c.invoke(name, params);
    let act = r.json();
    assert_eq!(r.status, 200, "{name}: {act}");
    assert_eq!(act["response"]["status"], "success", "{name}: {act}");
    assert_eq!(annotation(&act, "initTime").is_some(), start, "{name}: initTime? {act}");
    act
}

/// The ids of the stem cells of `runtime` created so far, from the invoker's debug log
/// (`prewarmed container=ID runtime="python" ...`).
fn stem_cell_ids(s: &Standalone, runtime: &str) -> Vec<String> {
    let quoted = format!("runtime=\"{runtime}\"");
    s.log_text()
        .lines()
        .filter(|l| l.contains(" prewarmed container=") && l.contains(&quoted))
        .filter_map(|l| l.split(" container=").nth(1)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The memory limits (bytes) of the live containers, read on the host from their cgroups.
fn container_memory_limits(s: &Standalone) -> Vec<u64> {
    container_cgroups(&s.state_dir())
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "memory"))
        .filter_map(|p| std::fs::read_to_string(p.join("memory.limit_in_bytes")).ok())
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

/// Compiles [`C_SOURCE`] with the host's gcc into `dir/exec`: static when the host has a
/// static libc, else linked against the host's libc (mounted read-only in the container).
fn compile_c(dir: &Path) -> (PathBuf, &'static str) {
    let src = dir.join("exec.c");
    std::fs::write(&src, C_SOURCE).unwrap();
    let exe = dir.join("exec");
    for (flags, how) in [(&["-static"][..], "static"), (&[][..], "dynamic")] {
        let out = Command::new("gcc")
            .args(flags)
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(&src)
            .stderr(Stdio::piped())
            .output()
            .expect("gcc is needed to build the native test action (scripts/install-deps.sh)");
        if out.status.success() {
            return (exe, how);
        }
        eprintln!("gcc {flags:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    panic!("gcc could not build {}", src.display());
}

/// Runs the `hearth` CLI against `s` with the guest key; its stdout, asserting success.
fn cli(s: &Standalone, home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_CONFIG", home.join("hearth-config"))
        .env("HEARTH_APIHOST", s.url())
        .env("HEARTH_AUTH", GUEST)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hearth {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The sandbox a native action reports from inside: the action's own uid 65534, no
/// capabilities, no_new_privileges, seccomp filtering, loopback only, read-only code dir.
fn assert_isolated(r: &Value) {
    assert_eq!(r["uid"], 65534, "{r}");
    assert_eq!(r["code"], "read-only", "{r}");
    assert_eq!(r["nets"], "lo ", "{r}");
    assert_eq!(r["seccomp"], "2", "{r}");
    assert_eq!(r["capeff"], "0000000000000000", "{r}");
    assert_eq!(r["nnp"], "1", "{r}");
}

/// Native actions: a shell script (zipped, and sent as text as wsk sends a script) and a C
/// program (zipped); cold, prewarmed and warm; parameters in argv[1] and on stdin, and on
/// stdin only past MAX_ARG_STRLEN; logs from stdout (all lines but the last) and stderr; the
/// sandbox as for every kind; cgroup limits from the action's memory.
#[test]
fn native_actions_cold_prewarm_warm_isolated() {
    require_root();
    let mut s = Standalone::start_logging(
        "memory_budget_mb = 4096\nprewarm = [{kind = \"blackbox\", memory_mb = 128, count = 1}]\n",
        "hearth=debug",
    );
    let c = s.client();

    // The info route lists the native runtime next to the interpreters.
    let info = Client::anonymous(s.addr).get("/api/v1").json();
    let bb = &info["runtimes"]["blackbox"][0];
    assert_eq!(bb["kind"], "blackbox", "{info}");
    assert_eq!(bb["image"], "openwhisk/dockerskeleton", "{info}");
    assert!(info["runtimes"]["python"].is_array() && info["runtimes"]["nodejs"].is_array());

    // Cold: 256 MB has no stem cell.
    let script_zip = zip_of(&[("exec", SCRIPT.as_bytes(), 0o755), ("data.txt", b"x", 0o644)]);
    put_ok(&c, "script", zip_exec("blackbox", &script_zip), 256);
    let got = c.get("/api/v1/namespaces/_/actions/script?code=false").json();
    assert_eq!(got["exec"]["kind"], "blackbox", "{got}");
    assert_eq!(got["exec"]["image"], "openwhisk/dockerskeleton", "{got}");
    assert_eq!(got["exec"]["binary"], true, "{got}");

    let act = invoke_ok(&c, "script", json!({"name": "Ada"}), true);
    let r = &act["response"]["result"];
    assert_eq!(r["args"], json!({"name": "Ada"}), "{act}");
    assert_eq!(r["arglen"], r["stdinlen"], "the same JSON in argv[1] and on stdin: {act}");
    assert_eq!(r["runs"], 1, "{act}");
    assert_eq!(r["cwd"], "/action", "{act}");
    assert_eq!(r["activation"], act["activationId"], "{act}");
    assert_isolated(r);
    assert_eq!(annotation(&act, "kind").unwrap(), "blackbox");
    let l = logs(&act);
    assert!(l.iter().any(|l| l.ends_with("stdout: log line from the script")), "{l:?}");
    assert!(l.iter().any(|l| l.ends_with("stderr: stderr line from the script")), "{l:?}");
    assert!(!l.iter().any(|l| l.contains("\"args\"")), "the result line is not a log: {l:?}");
    // The container's cgroup carries the action's memory limit.
    assert!(container_memory_limits(&s).contains(&(256 * 1024 * 1024)), "no 256 MB cgroup");

    // Warm: the same container (its /tmp kept the count) runs the exec again.
    let cold_host = r["host"].clone();
    let act = invoke_ok(&c, "script", json!({"name": "Bob"}), false);
    assert_eq!(act["response"]["result"]["runs"], 2, "{act}");
    assert_eq!(act["response"]["result"]["host"], cold_host, "the same container: {act}");
    assert_eq!(act["response"]["result"]["args"]["name"], "Bob", "{act}");
    assert!(logs(&act).iter().any(|l| l.ends_with("stdout: log line from the script")));

    // Parameters past MAX_ARG_STRLEN come on stdin only, as in OpenWhisk's action proxy.
    let big = "x".repeat(200_000);
    let act = invoke_ok(&c, "script", json!({ "big": big }), false);
    let r = &act["response"]["result"];
    assert_eq!(r["arglen"], 0, "{act}");
    assert!(r["stdinlen"].as_u64().unwrap() > 200_000, "{act}");

    // A script sent as text (what `wsk action create --native script.sh` sends).
    put_ok(
        &c,
        "script-text",
        json!({"kind": "blackbox", "image": "openwhisk/dockerskeleton",
                                     "code": SCRIPT, "binary": false}),
        256,
    );
    let act = invoke_ok(&c, "script-text", json!({"name": "Text"}), true);
    assert_eq!(act["response"]["result"]["args"]["name"], "Text", "{act}");
    assert_isolated(&act["response"]["result"]);

    // A C program from a zip, on the prewarmed stem cell (128 MB): the refill that follows
    // shows the stem cell was taken.
    let dir = tempfile::tempdir().unwrap();
    let (exe, how) = compile_c(dir.path());
    eprintln!("the C action is linked {how}");
    let c_zip = zip_of(&[("exec", &std::fs::read(&exe).unwrap(), 0o755)]);
    put_ok(&c, "c-prog", zip_exec("blackbox", &c_zip), 128);
    s.wait_stem_cells(1, PREWARM_WAIT);
    let stem = stem_cell_ids(&s, "native");
    let act = invoke_ok(&c, "c-prog", json!({"name": "C"}), true);
    let r = &act["response"]["result"];
    // The uts hostname is the container id: this ran in the stem cell.
    assert!(stem.iter().any(|id| r["host"] == id.as_str()), "{act} not in {stem:?}");
    assert_eq!(r["args"], json!({"name": "C"}), "{act}");
    assert_eq!(r["argc"], 2, "{act}");
    assert_eq!(r["uid"], 65534, "{act}");
    let l = logs(&act);
    assert!(l.iter().any(|l| l.ends_with("stdout: log line from C")), "{l:?}");
    assert!(l.iter().any(|l| l.ends_with("stderr: stderr line from C")), "{l:?}");
    let host = r["host"].clone();
    let act = invoke_ok(&c, "c-prog", json!({"name": "again"}), false);
    assert_eq!(act["response"]["result"]["args"]["name"], "again", "{act}");
    assert_eq!(act["response"]["result"]["host"], host, "the same container: {act}");

    // The CLI's --native, as wsk's: the compiled program (zipped as exec by the CLI) and the
    // script (sent as text).
    let script = dir.path().join("script.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    for (name, file) in [("c-cli", &exe), ("script-cli", &script)] {
        let file = file.to_str().unwrap();
        let out = cli(&s, dir.path(), &["action", "create", name, file, "--native"]);
        assert!(out.contains(&format!("created action {name}")), "{out}");
        let out = cli(&s, dir.path(), &["action", "invoke", name, "-p", "name", "Cli", "--result"]);
        let result: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(result["args"], json!({"name": "Cli"}), "{out}");
        assert_eq!(result["uid"], 65534, "{out}");
    }

    s.stop();
}

/// How native actions fail, in OpenWhisk's words: no `exec` in the zip, a last line that is
/// not JSON (with a non-zero exit), no output at all; an `{"error"}` result is an application
/// error; images other than the skeleton are refused at create.
#[test]
fn native_errors_are_openwhisk_developer_errors() {
    require_root();
    let mut s = Standalone::start("memory_budget_mb = 2048\n");
    let c = s.client();

    let developer_error = |name: &str, message: &str| -> Value {
        let r = c.invoke(name, json!({}));
        let act = r.json();
        assert_eq!(r.status, 502, "{name}: {act}");
        assert_eq!(act["response"]["status"], "action developer error", "{name}: {act}");
        assert_eq!(act["response"]["result"], json!({ "error": message }), "{name}: {act}");
        act
    };

    let no_exec = zip_of(&[("run.sh", b"#!/bin/sh\necho '{}'\n", 0o755)]);
    put_ok(&c, "no-exec", zip_exec("blackbox", &no_exec), 128);
    let act = developer_error("no-exec", NO_BINARY);
    assert!(logs(&act).iter().any(|l| l.contains("no file named exec")), "{act}");

    let script = "#!/bin/sh\necho 'partial output'\necho 'not json'\nexit 3\n";
    put_ok(
        &c,
        "not-json",
        zip_exec("blackbox", &zip_of(&[("exec", script.as_bytes(), 0o755)])),
        128,
    );
    let act = developer_error("not-json", NOT_A_DICT);
    let l = logs(&act);
    for want in ["stdout: partial output", "stdout: not json", "exec exited with status 3"] {
        assert!(l.iter().any(|l| l.contains(want)), "{want:?} in {l:?}");
    }
    // The launcher stays in step: the same container answers the next run the same way.
    let act = developer_error("not-json", NOT_A_DICT);
    assert!(annotation(&act, "initTime").is_none(), "kept warm after the error: {act}");

    let silent = zip_of(&[("exec", b"#!/bin/sh\nexit 0\n", 0o755)]);
    put_ok(&c, "silent", zip_exec("blackbox", &silent), 128);
    developer_error("silent", NOT_A_DICT);

    // OpenWhisk's proxy passes arrays; hearth's results are objects, as for every kind.
    let array = zip_of(&[("exec", b"#!/bin/sh\necho '[1, 2]'\n", 0o755)]);
    put_ok(&c, "array", zip_exec("blackbox", &array), 128);
    developer_error("array", "The action did not return a dictionary and returned [1,2].");

    let app = zip_of(&[("exec", b"#!/bin/sh\necho '{\"error\": \"no luck\"}'\n", 0o755)]);
    put_ok(&c, "app-error", zip_exec("blackbox", &app), 128);
    let r = c.invoke("app-error", json!({}));
    let act = r.json();
    assert_eq!(r.status, 502, "{act}");
    assert_eq!(act["response"]["status"], "application error", "{act}");
    assert_eq!(act["response"]["result"]["error"], "no luck", "{act}");

    // The same limits as every kind: past its timeout the container is killed.
    let slow = zip_of(&[("exec", b"#!/bin/sh\necho started >&2\nsleep 60\necho '{}'\n", 0o755)]);
    let r = put(&c, "slow", zip_exec("blackbox", &slow), Some(json!({"timeout": 1000})));
    assert_eq!(r.status, 200, "{}", r.text());
    let act = developer_error("slow", "The action exceeded its time limit of 1000 milliseconds.");
    assert!(logs(&act).iter().any(|l| l.ends_with("stderr: started")), "{act}");

    let mut exec = zip_exec("blackbox", &silent);
    // Other images are image actions (tests/images/run.rs); what is no image reference is refused.
    exec["image"] = json!("not an image");
    let r = put(&c, "image", exec, None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("not an image reference"), "{}", r.text());
    let r = c.get("/api/v1/namespaces/_/actions/image");
    assert_eq!(r.status, 404, "a refused image creates nothing: {}", r.text());

    s.stop();
}

/// The cached dependency trees: (the virtualenv folder, the node_modules folder).
fn dependency_trees() -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deps/build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/deps/build.sh");
    assert!(out.status.success(), "building the dependency trees failed (see above)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(PathBuf::from);
    let (venv, modules) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(venv.join("lib").is_dir() && modules.join("ms").is_dir(), "{text}");
    (venv, modules)
}

/// Dependencies in zips: a Python zip with a `virtualenv` folder (a pure module and a C
/// extension) and a Node zip with `node_modules`, each prewarmed, warm and cold. The packages
/// load from the read-only code mount, and the sandbox is unchanged.
#[test]
fn python_virtualenv_and_node_modules_cold_prewarm_warm() {
    require_root();
    let (venv, modules) = dependency_trees();
    let mut s = Standalone::start_logging(
        "memory_budget_mb = 4096\nprewarm = [{kind = \"python:3\", memory_mb = 128, count = 1}, \
         {kind = \"nodejs:20\", memory_mb = 128, count = 1}]\n",
        "hearth=debug",
    );
    let c = s.client();

    let py_zip = zip_with_tree(&[("__main__.py", PY_MAIN)], "virtualenv", &venv);
    let js_zip = zip_with_tree(
        &[("package.json", r#"{"name": "deps", "main": "main.js"}"#), ("main.js", JS_MAIN)],
        "node_modules",
        &modules,
    );
    // 128 MB takes the stem cell; 256 MB starts cold.
    for (name, mb) in [("py-prewarm", 128), ("py-cold", 256)] {
        put_ok(&c, name, zip_exec("python:3", &py_zip), mb);
    }
    for (name, mb) in [("js-prewarm", 128), ("js-cold", 256)] {
        put_ok(&c, name, zip_exec("nodejs:20", &js_zip), mb);
    }

    let check_py = |act: &Value, name: &str| {
        let r = &act["response"]["result"];
        assert_eq!(r["name"], name, "{act}");
        assert!(r["six"].as_str().unwrap().starts_with("/action/virtualenv/lib/"), "{act}");
        assert_eq!(r["escaped"], "&lt;a&gt;", "{act}");
        assert_eq!(r["escape_from"], "markupsafe._speedups", "the C extension: {act}");
        let so = r["speedups"].as_str().unwrap();
        assert!(so.starts_with("/action/virtualenv/lib/") && so.ends_with(".so"), "{act}");
        assert_eq!(r["virtual_env"], "/action/virtualenv", "{act}");
        assert_eq!(r["code"], "read-only", "{act}");
        assert_eq!(r["nets"], json!(["lo"]), "{act}");
        assert_eq!(r["uid"], 65534, "{act}");
    };
    // A virtualenv with bin/activate_this.py is activated by it, as in OpenWhisk.
    let zip = zip_with_tree(
        &[("__main__.py", PY_MAIN), ("virtualenv/bin/activate_this.py", ACTIVATE_THIS)],
        "virtualenv",
        &venv,
    );
    put_ok(&c, "py-activate", zip_exec("python:3", &zip), 256);
    let act = invoke_ok(&c, "py-activate", json!({"name": "activate"}), true);
    check_py(&act, "activate");
    assert_eq!(act["response"]["result"]["activated_by"], "activate_this.py", "{act}");

    let check_js = |act: &Value, name: &str| {
        let r = &act["response"]["result"];
        assert_eq!(r["name"], name, "{act}");
        assert_eq!(r["two_hours"], 7_200_000, "{act}");
        assert_eq!(r["resolved"], "/action/node_modules/ms/index.js", "{act}");
        assert_eq!(r["code"], "read-only", "{act}");
        assert_eq!(r["nets"], json!(["lo"]), "{act}");
        assert_eq!(r["uid"], 65534, "{act}");
    };

    // Both stem cells (python and node, 128 MB) idle in the pool.
    s.wait_stem_cells(2, PREWARM_WAIT);
    for (runtime, prefix) in [("python", "py"), ("nodejs", "js")] {
        let check = |act: &Value, name: &str| {
            if prefix == "py" {
                check_py(act, name)
            } else {
                check_js(act, name)
            }
            act["response"]["result"]["host"].as_str().unwrap().to_owned()
        };
        // Prewarmed: the run's container (its uts hostname is the container id) is a stem
        // cell of this runtime; then warm in the same container.
        let stem = stem_cell_ids(&s, runtime);
        let name = format!("{prefix}-prewarm");
        let host = check(&invoke_ok(&c, &name, json!({"name": "prewarmed"}), true), "prewarmed");
        assert!(stem.contains(&host), "{name} ran in {host}, not a stem cell of {stem:?}");
        assert_eq!(check(&invoke_ok(&c, &name, json!({"name": "warm"}), false), "warm"), host);
        // Cold (256 MB has no stem cell), then warm in the same container.
        let name = format!("{prefix}-cold");
        let host = check(&invoke_ok(&c, &name, json!({"name": "cold"}), true), "cold");
        assert!(!stem_cell_ids(&s, runtime).contains(&host), "{name} started cold: {host}");
        assert_eq!(check(&invoke_ok(&c, &name, json!({"name": "warm"}), false), "warm"), host);
    }

    s.stop();
}
