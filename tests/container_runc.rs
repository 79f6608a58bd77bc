//! Real runc containers: needs root and runc at /usr/sbin/runc (CI has both). Every test makes
//! its own factory (own runc root, state dir and cgroup parent) and checks at the end that
//! runc lists nothing, no cgroup and no mount is left.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::container::{
    cgroup, ActionContainer, ContainerFactory, ContainerSpec, InitSpec, RunError, RunSpec,
    RuncConfig, RuncContainer, RuncFactory,
};
use hearth::model::Runtime;
use hearth::runtime::code;
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
    let root = PathBuf::from(format!("/run/hearth-test/{tag}"));
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
        cgroup::remove_empty_parents(&self.parent);
        let _ = std::fs::remove_dir_all(&self.root);
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
