//! Running image actions (issue 20): the test image's action proxy driven by the real runc
//! factory and the invoker's pool. Cold, prewarmed and warm runs, each run's logs apart,
//! OpenWhisk's outcomes (a non-dict result, an exception, an application error, an init
//! error, a timeout, an unknown image), the container's isolation (loopback only, uid 65534,
//! a read-only root with /action and /tmp writable), and nothing left after destroy.
//!
//! The image source here is a test-only one over `umoci unpack` of the test image (the
//! image store's `ImageSource` takes its place in the daemon).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hearth::container::image::{ImageRoot, ImageSource};
use hearth::container::{
    cgroup, ActionContainer, ContainerFactory, ContainerSpec, RunError, RuncConfig, RuncFactory,
};
use hearth::dispatch::ActivationMessage;
use hearth::invoker::{CodeError, CodeSource, Invoker, InvokerConfig, PoolEvent, PrewarmConfig};
use hearth::launcher::{code, InitSpec, RunSpec};
use hearth::model::{
    now_millis, ActionLimits, Activation, ActivationId, ActivationStatus, EntityName, ExecMeta,
    FullyQualifiedName, ImageDigest, Kind, Runtime,
};
use serde_json::{json, Map, Value};

use super::common::{test_image, TEST_IMAGE};

const RUNC: &str = "/usr/sbin/runc";

/// The test image unpacked once per test process, as the image store would hand it out.
struct Unpacked {
    _dir: tempfile::TempDir,
    root: ImageRoot,
}

fn unpacked() -> &'static Unpacked {
    static IMAGE: OnceLock<Unpacked> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let oci = test_image().join("oci");
        let dir = tempfile::Builder::new().prefix("hearth-img-").tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let out = std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:1", oci.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
        let rootfs = bundle.join("rootfs");
        // The mount points the image store makes when it unpacks (bundle::image_config mounts
        // only where they exist, so the shared root is never written by runc).
        for d in ["proc", "dev", "sys"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
        };
        let root = ImageRoot {
            digest: config_digest(&oci),
            rootfs,
            args: strings(&config["process"]["args"]),
            env: strings(&config["process"]["env"]),
            working_dir: config["process"]["cwd"].as_str().unwrap_or("/").to_owned(),
        };
        Unpacked { _dir: dir, root }
    })
}

/// The image id: the digest of its config blob (index -> manifest -> config).
fn config_digest(oci: &Path) -> ImageDigest {
    let blob = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(oci.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["config"]["digest"].as_str().unwrap().parse().unwrap()
}

/// Knows the test image under [`TEST_IMAGE`], and nothing else.
struct TestImages;

impl ImageSource for TestImages {
    fn resolve(&self, name: &str) -> Result<Option<ImageRoot>, String> {
        Ok((name == TEST_IMAGE).then(|| unpacked().root.clone()))
    }

    fn get(&self, digest: &ImageDigest) -> Result<Option<ImageRoot>, String> {
        Ok((*digest == unpacked().root.digest).then(|| unpacked().root.clone()))
    }
}

/// One factory with its own runc root, state dir and cgroup parent; checks for leftovers.
struct Env {
    factory: RuncFactory,
    root: PathBuf,
    state: tempfile::TempDir,
    parent: String,
    tag: String,
}

fn env() -> Env {
    env_with(Some(Arc::new(TestImages)))
}

/// A factory with `images` as its image source (None: the test sets its own).
fn env_with(images: Option<Arc<dyn ImageSource>>) -> Env {
    super::harness::require_root();
    assert!(Path::new(RUNC).is_file(), "runc is missing at {RUNC}");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let state = tempfile::Builder::new().prefix("hearth-imgrun-").tempdir().unwrap();
    let root = PathBuf::from(format!("/run/hearth-image-test/{tag}"));
    let parent = format!("hearth/imgtest-{tag}");
    let factory = RuncFactory::new(RuncConfig {
        runc: RUNC.into(),
        root: root.clone(),
        state_dir: state.path().to_owned(),
        cgroup_parent: parent.clone(),
        systemd_cgroup: false,
    })
    .unwrap();
    if let Some(images) = images {
        assert!(factory.set_image_source(images));
    }
    Env { factory, root, state, parent, tag }
}

impl Env {
    fn spec(&self, n: u32) -> ContainerSpec {
        ContainerSpec {
            id: format!("i{}-{n}", self.tag),
            runtime: Runtime::Image(unpacked().root.digest),
            memory_mb: 128,
            network: true,
        }
    }

    /// Nothing of this factory is left: no runc container, cgroup, bundle, code dir or mount.
    async fn assert_no_leaks(&self) {
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
        let rootfs = unpacked().root.rootfs.to_str().unwrap().to_owned();
        assert!(!mounts.contains(&rootfs), "mounts left on the image root");
    }
}

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

/// The action every test runs: `op` picks what it does; it logs its `n` on both streams.
const ACTION: &str = r#"
import os, socket, sys, time

def main(args):
    n = args.get("n")
    print("out %s" % n)
    print("err %s" % n, file=sys.stderr)
    op = args.get("op")
    if op == "raise":
        raise RuntimeError("kaput")
    if op == "list":
        return [1, 2]
    if op == "string":
        return "just text"
    if op == "apperror":
        return {"error": "app says no"}
    if op == "sleep":
        time.sleep(30)
    if op == "probe":
        out = {"uid": os.getuid(), "gid": os.getgid()}
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=3).close()
            out["net"] = "connected"
        except OSError as e:
            out["net"] = e.errno
        for path in ["/usr/x", "/action/x", "/tmp/x"]:
            try:
                with open(path, "w") as f:
                    f.write("x")
                out[path] = "ok"
            except OSError as e:
                out[path] = e.errno
        return out
    return {"n": n, "activation": os.environ.get("__OW_ACTIVATION_ID")}
"#;

fn run_spec(params: Value, timeout: Duration) -> RunSpec {
    let Value::Object(params) = params else { panic!("params must be an object") };
    RunSpec {
        params,
        env: vec![("ACTIVATION_ID".into(), "act-1".into()), ("NAMESPACE".into(), "guest".into())],
        timeout,
        log_limit: 64 * 1024,
        result_limit: 1024 * 1024,
    }
}

fn init_spec() -> InitSpec {
    InitSpec { action: "guest/img".into(), entry_point: "main".into(), binary: false }
}

fn logs_text(logs: &[String]) -> String {
    logs.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_container_runs_the_proxy_cold_and_warm_isolated_and_leaves_nothing() {
    let env = env();
    let spec = env.spec(1);
    let mut c = env.factory.create(&spec).await.unwrap();
    code::install(c.code_dir(), spec.runtime, ACTION.as_bytes(), false).unwrap();
    c.init(&init_spec()).await.unwrap();
    assert!(c.handoff().is_none(), "image containers are not handed over");

    let first = c.run(&run_spec(json!({"n": 1}), Duration::from_secs(10))).await.unwrap();
    assert_eq!(first.result, json!({"n": 1, "activation": "act-1"}));
    let text = logs_text(&first.logs);
    assert!(text.contains("stdout: out 1") && text.contains("stderr: err 1"), "{text}");
    assert!(!text.contains("XXX_THE_END"), "sentinels are not logs: {text}");

    // Warm: the same container, its own logs only.
    let second = c.run(&run_spec(json!({"n": 2}), Duration::from_secs(10))).await.unwrap();
    assert_eq!(second.result["n"], 2);
    let text = logs_text(&second.logs);
    assert!(text.contains("out 2") && !text.contains("out 1"), "{text}");

    // An application error is a result; the proxy's refusals are developer errors.
    let app = c.run(&run_spec(json!({"op": "apperror"}), Duration::from_secs(10))).await.unwrap();
    assert_eq!(app.result, json!({"error": "app says no"}));

    let probe = c.run(&run_spec(json!({"op": "probe"}), Duration::from_secs(10))).await.unwrap();
    let r = probe.result;
    assert_eq!((r["uid"].clone(), r["gid"].clone()), (json!(65534), json!(65534)), "{r}");
    assert_eq!(r["net"], json!(libc::ENETUNREACH), "loopback only even with network granted: {r}");
    assert_eq!(r["/usr/x"], json!(libc::EROFS), "{r}");
    assert_eq!(r["/action/x"], "ok", "{r}");
    assert_eq!(r["/tmp/x"], "ok", "{r}");

    let not_dict = c.run(&run_spec(json!({"op": "string"}), Duration::from_secs(10))).await;
    match not_dict {
        Err(RunError::Developer { message, logs }) => {
            assert_eq!(message, "The action did not return a dictionary.");
            assert!(logs_text(&logs).contains("out None"));
        }
        other => panic!("expected a developer error, got {other:?}"),
    }
    assert!(!c.is_usable(), "a developer error retires an image container, as in OpenWhisk");
    c.destroy().await;

    // An exception: the proxy's 502 with its message, and the traceback in the logs.
    let mut c = env.factory.create(&env.spec(2)).await.unwrap();
    code::install(c.code_dir(), env.spec(2).runtime, ACTION.as_bytes(), false).unwrap();
    c.init(&init_spec()).await.unwrap();
    match c.run(&run_spec(json!({"op": "raise"}), Duration::from_secs(10))).await {
        Err(RunError::Developer { message, logs }) => {
            assert_eq!(message, "An error has occurred: kaput");
            assert!(logs_text(&logs).contains("RuntimeError"), "{logs:?}");
        }
        other => panic!("expected a developer error, got {other:?}"),
    }
    c.destroy().await;

    // A timeout kills the container.
    let mut c = env.factory.create(&env.spec(3)).await.unwrap();
    code::install(c.code_dir(), env.spec(3).runtime, ACTION.as_bytes(), false).unwrap();
    c.init(&init_spec()).await.unwrap();
    match c.run(&run_spec(json!({"op": "sleep", "n": 3}), Duration::from_millis(500))).await {
        Err(RunError::Timeout { limit_ms, logs }) => {
            assert_eq!(limit_ms, 500);
            // stderr is unbuffered; stdout's buffer dies with the killed process.
            assert!(logs_text(&logs).contains("stderr: err 3"), "{logs:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The kill is sent before the run returns; the process dies on the kernel's time (on a
    // loaded machine `runc state` can still see it running for a moment).
    let id = env.spec(3).id;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = env.factory.list().await.unwrap();
        let state = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&env.root)
            .args(["state", &id])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&state.stdout).into_owned();
        if !listed.contains(&id) || state.contains("stopped") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timed-out container still runs 10 s later: {listed:?} {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.destroy().await;

    // An init error: the proxy's message, as a developer error.
    let mut c = env.factory.create(&env.spec(4)).await.unwrap();
    code::install(c.code_dir(), env.spec(4).runtime, b"def main(:\n", false).unwrap();
    match c.init(&init_spec()).await {
        Err(RunError::Developer { message, logs }) => {
            assert!(message.starts_with("The action failed to initialize: "), "{message}");
            assert!(logs_text(&logs).contains("SyntaxError"), "{logs:?}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    c.destroy().await;

    // A zip action: the proxy gets it base64-encoded with binary: true and unpacks it into
    // its /action tmpfs.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("__main__.py", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, b"def main(args):\n    return {'zipped': True}\n").unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let mut c = env.factory.create(&env.spec(5)).await.unwrap();
    code::install(c.code_dir(), env.spec(5).runtime, &archive, true).unwrap();
    let init = InitSpec { binary: true, ..init_spec() };
    c.init(&init).await.unwrap();
    let out = c.run(&run_spec(json!({}), Duration::from_secs(10))).await.unwrap();
    assert_eq!(out.result, json!({"zipped": true}));
    c.destroy().await;

    env.assert_no_leaks().await;
}

/// Code for the pool, by action name.
#[derive(Default)]
struct Code(Mutex<HashMap<String, Vec<u8>>>);

impl CodeSource for Code {
    fn with_code(
        &self,
        action: &FullyQualifiedName,
        _revision: u64,
        install: &mut dyn FnMut(&[u8]) -> Result<(), CodeError>,
    ) -> Result<(), CodeError> {
        let code = self.0.lock().unwrap().get(&action.key()).cloned();
        match code {
            Some(code) => install(&code),
            None => Err(CodeError::NotFound(action.key())),
        }
    }
}

fn message(name: &str, image: &str, params: Value) -> ActivationMessage {
    let Value::Object(params) = params else { panic!("params must be an object") };
    ActivationMessage {
        activation_id: ActivationId::generate(),
        action: FullyQualifiedName::new(
            EntityName::parse("guest").unwrap(),
            EntityName::parse(name).unwrap(),
        ),
        revision: 1,
        version: "0.0.1".into(),
        exec: ExecMeta {
            kind: Kind::parse("blackbox").unwrap(),
            main: None,
            binary: false,
            image: Some(image.to_owned()),
        },
        limits: ActionLimits { memory: 128, ..ActionLimits::default() },
        subject: EntityName::parse("guest").unwrap(),
        params: Map::from_iter(params),
        received_at_ms: now_millis(),
        publish: false,
        cause: None,
        annotations: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_image_actions_prewarmed_warm_and_refuses_unknown_images() {
    let env = env();
    let code = Arc::new(Code::default());
    for name in ["a", "b"] {
        code.0.lock().unwrap().insert(format!("guest/{name}"), ACTION.as_bytes().to_vec());
    }
    code.0.lock().unwrap().insert("guest/bad".into(), b"def main(:\n".to_vec());
    let config = InvokerConfig {
        memory_budget_mb: 1024,
        prewarm: vec![PrewarmConfig {
            digest: None,
            ..serde_json::from_value(json!({"image": TEST_IMAGE, "memory_mb": 128, "count": 1}))
                .unwrap()
        }],
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let installer: hearth::invoker::CodeInstaller = Arc::new(|dir, runtime, bytes, binary| {
        code::install(dir, runtime, bytes, binary).map_err(std::io::Error::other)
    });
    let (trigger, signal) = hearth::shutdown::channel();
    let invoker =
        Invoker::start(config, env.factory.clone(), code.clone(), installer, signal).await.unwrap();
    let mut events = invoker.events();
    hearth::testing::eventually("an image stem cell", || invoker.stats().prewarmed == 1).await;

    let invoke = |msg: ActivationMessage| {
        let invoker = invoker.clone();
        async move { invoker.submit(msg).unwrap().await.unwrap() }
    };
    let first: Activation = invoke(message("a", TEST_IMAGE, json!({"n": 1}))).await;
    assert_eq!(first.response.status, ActivationStatus::Success, "{first:?}");
    assert_eq!(first.response.result["n"], 1);
    assert!(first.logs.iter().any(|l| l.ends_with("stdout: out 1")), "{:?}", first.logs);
    let placed = loop {
        match events.recv().await.unwrap() {
            PoolEvent::Placed { start, .. } => break start,
            _ => continue,
        }
    };
    assert_eq!(placed, hearth::invoker::Start::Prewarmed, "the stem cell of the image is taken");

    let warm = invoke(message("a", TEST_IMAGE, json!({"n": 2}))).await;
    assert_eq!(warm.response.status, ActivationStatus::Success, "{warm:?}");
    assert!(warm.annotation("initTime").is_none(), "warm run has no init");
    assert!(!warm.logs.iter().any(|l| l.contains("out 1")), "{:?}", warm.logs);

    let app = invoke(message("b", TEST_IMAGE, json!({"op": "apperror"}))).await;
    assert_eq!(app.response.status, ActivationStatus::ApplicationError, "{app:?}");

    let bad = invoke(message("bad", TEST_IMAGE, json!({}))).await;
    assert_eq!(bad.response.status, ActivationStatus::DeveloperError, "{bad:?}");
    let text = bad.response.result["error"].as_str().unwrap();
    assert!(text.starts_with("The action failed to initialize: "), "{text}");
    assert!(bad.logs.iter().any(|l| l.contains("SyntaxError")), "{:?}", bad.logs);

    let missing = invoke(message("a", "nowhere/none:1", json!({}))).await;
    assert_eq!(missing.response.status, ActivationStatus::DeveloperError, "{missing:?}");
    let text = missing.response.result["error"].as_str().unwrap();
    assert!(text.starts_with("Failed to pull container image 'nowhere/none:1'."), "{text}");
    assert!(text.contains("hearthd admin image"), "{text}");

    trigger.fire();
    invoker.shutdown().await;
    env.assert_no_leaks().await;
}

/// The test image under [`TEST_IMAGE`] with a digest the test changes: `None` is the image
/// removed, another digest the image imported again.
struct Switchable(Mutex<Option<ImageDigest>>);

impl ImageSource for Switchable {
    fn resolve(&self, name: &str) -> Result<Option<ImageRoot>, String> {
        let current = *self.0.lock().unwrap();
        Ok(current
            .filter(|_| name == TEST_IMAGE)
            .map(|digest| ImageRoot { digest, ..unpacked().root.clone() }))
    }

    fn get(&self, digest: &ImageDigest) -> Result<Option<ImageRoot>, String> {
        let current = *self.0.lock().unwrap();
        Ok((current == Some(*digest))
            .then(|| ImageRoot { digest: *digest, ..unpacked().root.clone() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_runs_use_the_resolved_image_and_cold_starts_see_removal_and_reimport() {
    let env = env_with(None);
    let images = Arc::new(Switchable(Mutex::new(Some(unpacked().root.digest))));
    assert!(env.factory.set_image_source(images.clone()));
    let code = Arc::new(Code::default());
    for name in ["a", "b", "c"] {
        code.0.lock().unwrap().insert(format!("guest/{name}"), ACTION.as_bytes().to_vec());
    }
    let config = InvokerConfig {
        memory_budget_mb: 1024,
        prewarm: vec![],
        drain_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let installer: hearth::invoker::CodeInstaller = Arc::new(|dir, runtime, bytes, binary| {
        code::install(dir, runtime, bytes, binary).map_err(std::io::Error::other)
    });
    let (trigger, signal) = hearth::shutdown::channel();
    let invoker =
        Invoker::start(config, env.factory.clone(), code.clone(), installer, signal).await.unwrap();
    let mut events = invoker.events();
    let invoke = |msg: ActivationMessage| {
        let invoker = invoker.clone();
        async move { invoker.submit(msg).unwrap().await.unwrap() }
    };
    let ok = |a: &Activation| assert_eq!(a.response.status, ActivationStatus::Success, "{a:?}");

    ok(&invoke(message("a", TEST_IMAGE, json!({"n": 1}))).await);
    // Removed: the warm container of `a` still runs; a cold start of `b` cannot.
    *images.0.lock().unwrap() = None;
    ok(&invoke(message("a", TEST_IMAGE, json!({"n": 2}))).await);
    let gone = invoke(message("b", TEST_IMAGE, json!({}))).await;
    assert_eq!(gone.response.status, ActivationStatus::DeveloperError, "{gone:?}");
    assert!(gone.response.result["error"].as_str().unwrap().starts_with("Failed to pull"));
    // Imported again (another digest): the next cold start runs it.
    let again = ImageDigest::from_bytes([0x5a; 32]);
    *images.0.lock().unwrap() = Some(again);
    ok(&invoke(message("c", TEST_IMAGE, json!({"n": 3}))).await);
    let mut runtimes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let PoolEvent::Created { runtime, .. } = event {
            runtimes.push(runtime);
        }
    }
    assert_eq!(runtimes, [Runtime::Image(unpacked().root.digest), Runtime::Image(again)]);

    trigger.fire();
    invoker.shutdown().await;
    env.assert_no_leaks().await;
}
