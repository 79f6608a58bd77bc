//! Real runc containers: needs root and runc at /usr/sbin/runc (CI has both). Every test makes
//! its own factory (own runc root, state dir and cgroup parent) and checks at the end that
//! runc lists nothing, no cgroup and no mount is left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::container::{
    cgroup, ActionContainer, ContainerFactory, ContainerSpec, RunError, RuncConfig, RuncContainer,
    RuncFactory,
};
use hearth::launcher::{code, InitSpec, RunSpec};
use hearth::model::Runtime;
use serde_json::{json, Map, Value};

const RUNC: &str = "/usr/sbin/runc";

struct Env {
    factory: RuncFactory,
    root: PathBuf,
    state: tempfile::TempDir,
    parent: String,
    seq: std::sync::atomic::AtomicU32,
}

fn env() -> Env {
    assert!(
        Path::new(RUNC).is_file(),
        "runc is missing at {RUNC}: these tests need Debian's runc package and root"
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests need root to run runc");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let state = tempfile::Builder::new().prefix("hearth-ct-").tempdir().unwrap();
    let root = PathBuf::from(format!("/run/hearth-container-test/{tag}"));
    let parent = format!("hearth/test-{tag}");
    let factory = RuncFactory::new(RuncConfig {
        runc: RUNC.into(),
        root: root.clone(),
        state_dir: state.path().to_owned(),
        cgroup_parent: parent.clone(),
        systemd_cgroup: false,
    })
    .unwrap();
    Env { factory, root, state, parent, seq: Default::default() }
}

impl Env {
    fn spec(&self, runtime: Runtime, memory_mb: u64) -> ContainerSpec {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = self.parent.rsplit('-').next().unwrap().to_owned();
        ContainerSpec { id: format!("t{tag}-{n}"), runtime, memory_mb, network: false }
    }

    /// Creates a container, installs `code` and inits it.
    async fn start(&self, runtime: Runtime, code: &str) -> RuncContainer {
        self.start_with(self.spec(runtime, 256), code.as_bytes(), false).await
    }

    async fn start_with(&self, spec: ContainerSpec, code: &[u8], binary: bool) -> RuncContainer {
        let mut c = self.factory.create(&spec).await.unwrap();
        code::install(c.code_dir(), spec.runtime, code, binary).unwrap();
        let init = InitSpec { action: "guest/test".into(), entry_point: "main".into(), binary };
        c.init(&init).await.unwrap();
        c
    }

    /// Checks that nothing of this factory is left, then removes its dirs.
    async fn finish(self) {
        let listed = self.factory.list().await.unwrap();
        assert!(listed.is_empty(), "runc still lists {listed:?}");
        let leftovers = cgroup::leftover_dirs(&self.parent);
        assert!(leftovers.is_empty(), "cgroups left: {leftovers:?}");
        for sub in ["bundles", "code"] {
            let n = std::fs::read_dir(self.state.path().join(sub)).unwrap().count();
            assert_eq!(n, 0, "{sub} not empty");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let state = self.state.path().to_str().unwrap();
        assert!(!mounts.contains(state), "mounts left under {state}");
    }
}

/// Runs also when a test panicked: deletes this test's containers (by our runc root), its
/// cgroups (under its own parent) and runc root, so a failure leaves nothing behind.
impl Drop for Env {
    fn drop(&mut self) {
        let runc = |args: &[&str]| {
            std::process::Command::new(RUNC).arg("--root").arg(&self.root).args(args).output()
        };
        if let Ok(out) = runc(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = runc(&["delete", "--force", id]);
            }
        }
        for (_, dir) in cgroup::leftover_dirs(&self.parent) {
            let _ = std::fs::remove_dir(dir);
        }
        cgroup::remove_empty_parents(&self.parent);
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir(self.root.parent().unwrap());
    }
}

fn run_spec(params: Value) -> RunSpec {
    let params: Map<String, Value> = match params {
        Value::Object(m) => m,
        _ => panic!("params must be an object"),
    };
    RunSpec {
        params,
        env: vec![
            ("ACTIVATION_ID".into(), "a1b2".into()),
            ("NAMESPACE".into(), "guest".into()),
            ("ACTION_NAME".into(), "/guest/test".into()),
            ("DEADLINE".into(), "123456".into()),
        ],
        timeout: Duration::from_secs(10),
        log_limit: 1024 * 1024,
        result_limit: 1024 * 1024,
    }
}

fn bodies(logs: &[String]) -> Vec<String> {
    logs.iter().map(|l| l.split_once(' ').unwrap().1.to_owned()).collect()
}

const PY_HELLO: &str = r#"
import os, sys
def main(args):
    print("hello stdout")
    print("hello stderr", file=sys.stderr)
    return {"greeting": "Hello, " + args.get("name", "stranger"),
            "aid": os.environ.get("__OW_ACTIVATION_ID"),
            "ns": os.environ.get("__OW_NAMESPACE"),
            "deadline": os.environ.get("__OW_DEADLINE")}
"#;

const JS_HELLO: &str = r#"
function main(args) {
  console.log("hello stdout");
  console.error("hello stderr");
  return Promise.resolve({greeting: "Hello, " + (args.name || "stranger"),
          aid: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE,
          deadline: process.env.__OW_DEADLINE});
}
"#;

async fn hello(runtime: Runtime, code: &str) {
    let env = env();
    let mut c = env.start(runtime, code).await;
    let out = c.run(&run_spec(json!({"name": "Ada"}))).await.unwrap();
    assert_eq!(
        out.result,
        json!({"greeting": "Hello, Ada", "aid": "a1b2", "ns": "guest", "deadline": "123456"})
    );
    let b = bodies(&out.logs);
    assert!(b.contains(&"stdout: hello stdout".to_owned()), "{:?}", out.logs);
    assert!(b.contains(&"stderr: hello stderr".to_owned()), "{:?}", out.logs);
    assert_eq!(out.logs.len(), 2, "{:?}", out.logs);
    let ts = out.logs[0].split_once(' ').unwrap().0;
    assert!(humantime::parse_rfc3339(ts).is_ok() && ts.len() == 27, "{ts}");
    // Stale __OW_ values go away when a run does not set them.
    let mut spec = run_spec(json!({}));
    spec.env.truncate(1);
    let out = c.run(&spec).await.unwrap();
    assert_eq!(out.result["ns"], Value::Null);
    assert_eq!(out.result["greeting"], "Hello, stranger");
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn python_hello_params_env_logs() {
    hello(Runtime::Python, PY_HELLO).await;
}

#[tokio::test]
async fn node_hello_params_env_logs() {
    hello(Runtime::Nodejs, JS_HELLO).await;
}

#[tokio::test]
async fn exceptions_become_error_results() {
    let env = env();
    let mut py =
        env.start(Runtime::Python, "def main(a):\n    raise ValueError('bad input')\n").await;
    let out = py.run(&run_spec(json!({}))).await.unwrap();
    assert_eq!(out.result, json!({"error": "ValueError: bad input"}));
    assert!(out.logs.iter().any(|l| l.contains("stderr: Traceback")), "{:?}", out.logs);
    // The container survives an application error.
    assert!(py.run(&run_spec(json!({}))).await.is_ok());
    let mut js =
        env.start(Runtime::Nodejs, "async function main(a) { throw new TypeError('nope'); }").await;
    let out = js.run(&run_spec(json!({}))).await.unwrap();
    assert_eq!(out.result, json!({"error": "TypeError: nope"}));
    py.destroy().await;
    js.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn init_failure_is_reported() {
    let env = env();
    let spec = env.spec(Runtime::Python, 128);
    let mut c = env.factory.create(&spec).await.unwrap();
    code::install(c.code_dir(), Runtime::Python, b"def main(:\n", false).unwrap();
    let init = InitSpec { action: "guest/x".into(), entry_point: "main".into(), binary: false };
    match c.init(&init).await {
        Err(RunError::InitFailed { message, logs }) => {
            assert!(message.starts_with("SyntaxError"), "{message}");
            assert!(!logs.is_empty());
        }
        other => panic!("{other:?}"),
    }
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn non_dict_result_is_invalid() {
    let env = env();
    let mut py = env.start(Runtime::Python, "def main(a):\n    return [1, 2]\n").await;
    match py.run(&run_spec(json!({}))).await {
        Err(RunError::InvalidResult { snippet, .. }) => assert_eq!(snippet, "[1,2]"),
        other => panic!("{other:?}"),
    }
    let mut js = env.start(Runtime::Nodejs, "function main() { return 42; }").await;
    match js.run(&run_spec(json!({}))).await {
        Err(RunError::InvalidResult { snippet, .. }) => assert_eq!(snippet, "42"),
        other => panic!("{other:?}"),
    }
    py.destroy().await;
    js.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn crash_is_reported() {
    let env = env();
    let mut c = env
        .start(Runtime::Python, "import os\ndef main(a):\n    print('bye')\n    os._exit(3)\n")
        .await;
    match c.run(&run_spec(json!({}))).await {
        Err(RunError::Crashed { logs, .. }) => {
            assert!(bodies(&logs).contains(&"stdout: bye".to_owned()), "{logs:?}")
        }
        other => panic!("{other:?}"),
    }
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn timeout_kills_and_reports() {
    let env = env();
    let mut c = env.start(Runtime::Python, "def main(a):\n    while True:\n        pass\n").await;
    let mut spec = run_spec(json!({}));
    spec.timeout = Duration::from_millis(500);
    let t = Instant::now();
    match c.run(&spec).await {
        Err(RunError::Timeout { limit_ms: 500, .. }) => {}
        other => panic!("{other:?}"),
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "timeout took {took:?}");
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn memory_hog_is_out_of_memory() {
    let env = env();
    let spec = env.spec(Runtime::Python, 128);
    let code = "def main(a):\n    x = b'x' * (400 * 1024 * 1024)\n    return {'n': len(x)}\n";
    let mut c = env.start_with(spec, code.as_bytes(), false).await;
    match c.run(&run_spec(json!({}))).await {
        Err(RunError::OutOfMemory { limit_mb: 128, .. }) => {}
        other => panic!("{other:?}"),
    }
    c.destroy().await;
    env.finish().await;
}

/// The limits a container's cgroups hold: memory, memory + swap, cpu.shares.
fn limits_of(env: &Env, id: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
    let mem = cgroup::memory_dir(&env.parent, id, false);
    (
        cgroup::read_value(&mem.join("memory.limit_in_bytes")),
        cgroup::read_value(&mem.join("memory.memsw.limit_in_bytes")),
        cgroup::read_value(&cgroup::controller_dir(&mem, "cpu").join("cpu.shares")),
    )
}

const MB: u64 = 1024 * 1024;

/// A 256 MB stem cell taken by a 512 MB action: its cgroup holds 512 MB (and the CPU share of
/// a 512 MB container) before the init, and the action runs.
#[tokio::test]
async fn a_stem_cell_resized_to_512_mb_has_that_limit_in_its_cgroup() {
    let env = env();
    let spec = env.spec(Runtime::Python, 256);
    let mut c = env.factory.create(&spec).await.unwrap();
    let (mem, _, shares) = limits_of(&env, &spec.id);
    assert_eq!((mem, shares), (Some(256 * MB), Some(1024)));
    c.resize(512).await.unwrap();
    let (mem, memsw, shares) = limits_of(&env, &spec.id);
    assert_eq!(mem, Some(512 * MB));
    if memsw.is_some() {
        assert_eq!(memsw, Some(512 * MB), "no swap beyond the limit");
    }
    assert_eq!(shares, Some(2048));
    code::install(c.code_dir(), Runtime::Python, PY_HELLO.as_bytes(), false).unwrap();
    let init = InitSpec { action: "guest/test".into(), entry_point: "main".into(), binary: false };
    c.init(&init).await.unwrap();
    let out = c.run(&run_spec(json!({"name": "big"}))).await.unwrap();
    assert_eq!(out.result["greeting"], "Hello, big");
    c.destroy().await;
    env.finish().await;
}

/// A 256 MB stem cell taken by a 128 MB action is held to 128 MB: 200 MB fit the stem cell's
/// size but not the action's, and the run ends out of memory at 128 MB.
#[tokio::test]
async fn a_stem_cell_resized_to_128_mb_is_oom_killed_at_128_mb() {
    let env = env();
    let spec = env.spec(Runtime::Python, 256);
    let mut c = env.factory.create(&spec).await.unwrap();
    c.resize(128).await.unwrap();
    let (mem, memsw, shares) = limits_of(&env, &spec.id);
    assert_eq!(mem, Some(128 * MB));
    if memsw.is_some() {
        assert_eq!(memsw, Some(128 * MB));
    }
    assert_eq!(shares, Some(512));
    let code = "def main(a):\n    x = b'x' * (200 * 1024 * 1024)\n    return {'n': len(x)}\n";
    code::install(c.code_dir(), Runtime::Python, code.as_bytes(), false).unwrap();
    let init = InitSpec { action: "guest/test".into(), entry_point: "main".into(), binary: false };
    c.init(&init).await.unwrap();
    match c.run(&run_spec(json!({}))).await {
        Err(RunError::OutOfMemory { limit_mb: 128, .. }) => {}
        other => panic!("{other:?}"),
    }
    c.destroy().await;
    env.finish().await;
}

/// The same 200 MB fit a 256 MB container: the OOM above is the resize's doing.
#[tokio::test]
async fn two_hundred_mb_fit_an_unresized_256_mb_stem_cell() {
    let env = env();
    let spec = env.spec(Runtime::Python, 256);
    let code = "def main(a):\n    x = b'x' * (200 * 1024 * 1024)\n    return {'n': len(x)}\n";
    let mut c = env.start_with(spec, code.as_bytes(), false).await;
    let out = c.run(&run_spec(json!({}))).await.unwrap();
    assert_eq!(out.result["n"], 200 * 1024 * 1024);
    c.destroy().await;
    env.finish().await;
}

/// A container that already ran an action is not resized (its launcher may hold more than a
/// smaller limit allows); the pool then cold-starts.
#[tokio::test]
async fn only_a_fresh_stem_cell_is_resized() {
    let env = env();
    let mut c = env.start(Runtime::Python, PY_HELLO).await;
    assert!(c.resize(128).await.is_err());
    let (mem, _, _) = limits_of(&env, c.id());
    assert_eq!(mem, Some(256 * MB), "unchanged");
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn log_flood_is_truncated() {
    let env = env();
    let mut c = env
        .start(
            Runtime::Python,
            "def main(a):\n    for i in range(100000):\n        print('x' * 100)\n    return {}\n",
        )
        .await;
    let mut spec = run_spec(json!({}));
    spec.log_limit = 10_000;
    let out = c.run(&spec).await.unwrap();
    assert_eq!(out.logs.len(), 101, "100 lines of 100 bytes, then the note");
    assert!(out.logs[100].ends_with(
        "stderr: Logs were truncated because the total bytes size exceeds the limit of 10000 bytes."
    ));
    // The next run starts with a fresh budget.
    let mut c2 = c;
    let out = c2.run(&spec).await.unwrap();
    assert_eq!(out.logs.len(), 101);
    c2.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn result_too_large() {
    let env = env();
    let mut c =
        env.start(Runtime::Nodejs, "function main() { return {big: 'x'.repeat(2000000)}; }").await;
    match c.run(&run_spec(json!({}))).await {
        Err(RunError::ResultTooLarge { size, limit, .. }) => {
            assert_eq!(limit, 1024 * 1024);
            assert_eq!(size, 2_000_000 + r#"{"big":""}"#.len());
        }
        other => panic!("{other:?}"),
    }
    c.destroy().await;
    env.finish().await;
}

fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn zip_actions() {
    let env = env();
    let py = zip_of(&[
        (
            "__main__.py",
            "from helper import greet\ndef main(a):\n    return {'msg': greet(a['name'])}\n",
        ),
        ("helper.py", "def greet(n):\n    return 'hi ' + n\n"),
    ]);
    let mut p = env.start_with(env.spec(Runtime::Python, 256), &py, true).await;
    assert_eq!(
        p.run(&run_spec(json!({"name": "py"}))).await.unwrap().result,
        json!({"msg": "hi py"})
    );
    let js = zip_of(&[
        ("package.json", r#"{"name": "a", "main": "lib/entry.js"}"#),
        (
            "lib/entry.js",
            "const h = require('./helper');\nexports.main = async (a) => ({msg: h(a.name)});\n",
        ),
        ("lib/helper.js", "module.exports = (n) => 'hi ' + n;\n"),
    ]);
    let mut n = env.start_with(env.spec(Runtime::Nodejs, 256), &js, true).await;
    assert_eq!(
        n.run(&run_spec(json!({"name": "js"}))).await.unwrap().result,
        json!({"msg": "hi js"})
    );
    p.destroy().await;
    n.destroy().await;
    env.finish().await;
}

const PY_PROBE: &str = r#"
import os, socket, subprocess
def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
def write(path):
    with open(path, "w") as f:
        f.write("x")
def connect():
    s = socket.create_connection(("1.1.1.1", 80), timeout=2)
    s.close()
def unshare_userns():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.unshare(0x10000000)
    return "ok" if rc == 0 else os.strerror(ctypes.get_errno())
def main(a):
    return {
        "usr": attempt(lambda: write("/usr/hearth-probe")),
        "action": attempt(lambda: write("/action/probe")),
        "root": attempt(lambda: write("/probe")),
        "tmp": attempt(lambda: write("/tmp/probe")),
        "net": attempt(connect),
        "uid": os.getuid(), "gid": os.getgid(),
        "userns": unshare_userns(),
    }
"#;

#[tokio::test]
async fn isolation() {
    let env = env();
    let mut c = env.start(Runtime::Python, PY_PROBE).await;
    let r = c.run(&run_spec(json!({}))).await.unwrap().result;
    assert_eq!(r["usr"], "OSError", "{r}");
    assert_eq!(r["action"], "OSError", "{r}");
    assert_eq!(r["root"], "OSError", "{r}");
    assert_eq!(r["tmp"], "ok", "{r}");
    assert_ne!(r["net"], "ok", "{r}");
    assert_eq!(r["uid"], 65534);
    assert_eq!(r["gid"], 65534);
    // Seccomp: creating a user namespace needs no capability, so only the filter stops it.
    assert_eq!(r["userns"], "Operation not permitted", "{r}");
    assert!(!Path::new("/usr/hearth-probe").exists());
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let env = env();
    let code = r#"
import os
def main(a):
    pids = []
    err = None
    try:
        for i in range(1000):
            pid = os.fork()
            if pid == 0:
                import time
                time.sleep(30)
                os._exit(0)
            pids.append(pid)
    except OSError as e:
        err = type(e).__name__
    for p in pids:
        os.kill(p, 9)
        os.waitpid(p, 0)
    return {"forked": len(pids), "error": err}
"#;
    let mut c = env.start(Runtime::Python, code).await;
    let r = c.run(&run_spec(json!({}))).await.unwrap().result;
    assert!(r["forked"].as_u64().unwrap() < 64, "{r}");
    assert_eq!(r["error"], "BlockingIOError", "{r}");
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn reclaim_removes_leftovers() {
    let env = env();
    let mut c = env.start(Runtime::Python, PY_HELLO).await;
    c.run(&run_spec(json!({}))).await.unwrap();
    let id = c.id().to_owned();
    // A crashed invoker: the container is forgotten, not destroyed.
    std::mem::forget(c);
    assert_eq!(env.factory.list().await.unwrap(), vec![id.clone()]);
    assert!(cgroup::exists(&env.parent, &id));
    assert_eq!(env.factory.reclaim_leftovers().await.unwrap(), 1);
    assert!(!cgroup::exists(&env.parent, &id));
    env.finish().await;
}

/// Regression: `runc list` failed as a whole on a state directory that was half gone (a killed
/// invoker's `runc delete` still finishing), and the next invoker refused to start.
#[tokio::test]
async fn reclaim_survives_a_half_removed_container() {
    let env = env();
    std::fs::create_dir_all(env.root.join("hearth-gone-1")).unwrap();
    env.factory.reclaim_leftovers().await.expect("a half-removed leftover must not stop the start");
    env.finish().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn warm(runtime: Runtime, code: &str) {
    let env = env();
    let t = Instant::now();
    let spec = env.spec(runtime, 256);
    let mut c = env.factory.create(&spec).await.unwrap();
    let create = t.elapsed();
    code::install(c.code_dir(), runtime, code.as_bytes(), false).unwrap();
    let t = Instant::now();
    c.init(&InitSpec { action: "guest/w".into(), entry_point: "main".into(), binary: false })
        .await
        .unwrap();
    let init = t.elapsed();
    let t = Instant::now();
    let first = c.run(&run_spec(json!({"i": 0}))).await.unwrap();
    let first_run = t.elapsed();
    assert_eq!(first.result, json!({"i": 0}));
    let mut times = Vec::with_capacity(1000);
    for i in 0..1000 {
        let t = Instant::now();
        let out = c.run(&run_spec(json!({"i": i}))).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(out.result, json!({"i": i}));
        assert!(out.logs.is_empty());
    }
    times.sort();
    println!(
        "{runtime:?}: create+start {create:?}, init (interpreter start + load) {init:?}, first run {first_run:?}, warm p50 {:?} p99 {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    c.destroy().await;
    env.finish().await;
}

#[tokio::test]
async fn warm_reuse_python() {
    warm(Runtime::Python, "def main(a):\n    return a\n").await;
}

#[tokio::test]
async fn warm_reuse_node() {
    warm(Runtime::Nodejs, "function main(a) { return a; }").await;
}
