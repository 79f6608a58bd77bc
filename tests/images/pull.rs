//! Pulling from a registry: Debian's `docker-registry` on a free loopback port, filled with the
//! test image by `skopeo copy`, pulled by `hearth::image::pull::pull_into` into a layout that
//! is checked blob by blob. The harness piece ([`Registry`], [`pull_test_image`]) is what the
//! import and run parts reuse to get a pulled layout.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth::image::pull::{pull_into, REF_NAME_ANNOTATION};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::common::{test_image, TEST_IMAGE};
use crate::harness::free_port;

/// The repository and tag the test image has in the registry: its own name.
pub const REGISTRY_REPO: &str = TEST_IMAGE;

/// A running `docker-registry` with the test image pushed; killed, and its storage removed,
/// on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub host: String,
    _dir: TempDir,
}

impl Registry {
    /// Starts an empty registry (filesystem storage in a temp dir, no auth) and waits until
    /// `GET /v2/` answers.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {host}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/docker-registry (scripts/install-deps.sh installs it)");
        let mut registry = Registry { child, host, _dir: dir };
        registry.wait_ready();
        registry
    }

    /// Starts a registry holding the test image as `REGISTRY_REPO`.
    pub fn with_test_image() -> Registry {
        let registry = Registry::start();
        let source = format!("oci:{}:1", test_image().join("oci").display());
        let dest = format!("docker://{}/{REGISTRY_REPO}", registry.host);
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", &source, &dest])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {source} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        registry
    }

    /// The test image's reference in this registry.
    pub fn reference(&self) -> String {
        format!("{}/{REGISTRY_REPO}", self.host)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited at start: {status}");
            }
            if get_v2(&self.host).is_some_and(|line| line.contains(" 200")) {
                return;
            }
            assert!(Instant::now() < deadline, "docker-registry never answered GET /v2/");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status line of `GET /v2/`, or None while nothing listens.
fn get_v2(host: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.lines().next().map(str::to_owned)
}

/// Pulls the test image from `registry` into a fresh temp dir; the layout is `<dir>/layout`.
pub fn pull_test_image(registry: &Registry) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let name = pull_into(&registry.reference(), &layout_of(&dir), false).unwrap();
    assert_eq!(name, registry.reference());
    dir
}

/// Where [`pull_test_image`] put the layout.
pub fn layout_of(dir: &TempDir) -> PathBuf {
    dir.path().join("layout")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Reads the blob `digest` from the layout and checks that its content hashes to it.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&bytes)), hex, "blob {digest}");
    bytes
}

#[test]
fn an_image_pulled_from_a_registry_is_a_valid_layout_with_every_digest_right() {
    let registry = Registry::with_test_image();
    let dir = pull_test_image(&registry);
    let layout = layout_of(&dir);

    assert_eq!(json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(entry["annotations"][REF_NAME_ANNOTATION], registry.reference());
    let manifest_bytes = blob(&layout, entry["digest"].as_str().unwrap());
    assert_eq!(entry["size"], manifest_bytes.len());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();

    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(&layout, config_digest)).unwrap();
    assert_eq!(config["config"]["Entrypoint"][1], "/proxy.py");
    let layers = manifest["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for layer in layers {
        let bytes = blob(&layout, layer["digest"].as_str().unwrap());
        assert_eq!(layer["size"], bytes.len());
    }
    // The same image as the one pushed: the source layout's config digest.
    let source = json(&test_image().join("oci/index.json"));
    let source_manifest = source["manifests"][0]["digest"].as_str().unwrap();
    let source_manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            test_image()
                .join("oci/blobs/sha256")
                .join(source_manifest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(source_manifest["config"]["digest"], config_digest);
    let digests = |m: &serde_json::Value| -> Vec<serde_json::Value> {
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].clone()).collect()
    };
    assert_eq!(digests(&manifest), digests(&source_manifest), "the same layers");
    // No partial downloads left behind.
    for file in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let name = file.unwrap().file_name();
        assert!(!name.to_string_lossy().ends_with(".partial"), "{name:?}");
    }
}

#[test]
fn a_missing_tag_is_a_clear_error_and_leaves_nothing() {
    let registry = Registry::with_test_image();
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/hearth-test/proxy:no-such-tag", registry.host);
    let err = pull_into(&reference, dir.path(), false).unwrap_err().to_string();
    eprintln!("missing tag: {err}");
    assert!(err.contains(&reference), "{err}");
    assert!(err.contains("fetching the manifest"), "{err}");
    assert!(err.to_lowercase().contains("manifest unknown"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "the layout stays empty");
}

#[test]
fn a_registry_that_is_down_is_a_clear_error() {
    let registry = Registry::start();
    let host = registry.host.clone();
    drop(registry);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{host}/hearth-test/proxy:1");
    let err = pull_into(&reference, &dir.path().join("layout"), false).unwrap_err().to_string();
    eprintln!("registry down: {err}");
    assert!(err.contains(&reference), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!dir.path().join("layout").exists(), "the layout it created is removed");
}

/// Pushes the test image again under `tag`, converted by skopeo with `extra` arguments.
fn push_as(registry: &Registry, source: &str, tag: &str, extra: &[&str]) -> String {
    let reference = format!("{}/hearth-test/proxy:{tag}", registry.host);
    let out = Command::new("skopeo")
        .arg("copy")
        .args(extra)
        .args(["--dest-tls-verify=false", source, &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy to {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// The pulled layout's manifest entry and manifest.
fn pulled_manifest(layout: &Path) -> (serde_json::Value, serde_json::Value) {
    let index = json(&layout.join("index.json"));
    let entry = index["manifests"][0].clone();
    let manifest =
        serde_json::from_slice(&blob(layout, entry["digest"].as_str().unwrap())).unwrap();
    (entry, manifest)
}

#[test]
fn a_docker_schema_2_manifest_is_pulled_and_kept_as_it_came() {
    let registry = Registry::start();
    let source = format!("oci:{}:1", test_image().join("oci").display());
    let reference = push_as(&registry, &source, "v2s2", &["--format", "v2s2"]);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(pull_into(&reference, dir.path(), false).unwrap(), reference);
    let (entry, manifest) = pulled_manifest(dir.path());
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    assert_eq!(entry["mediaType"], docker);
    assert_eq!(manifest["mediaType"], docker);
    blob(dir.path(), manifest["config"]["digest"].as_str().unwrap());
    for layer in manifest["layers"].as_array().unwrap() {
        blob(dir.path(), layer["digest"].as_str().unwrap());
    }
}

#[test]
fn from_a_multi_platform_index_the_linux_amd64_image_is_taken() {
    // A copy of the test image's layout with an image index in front: an "arm64" entry first
    // (the image as docker schema 2, another manifest the registry holds), amd64 second.
    let registry = Registry::start();
    let source = format!("oci:{}:1", test_image().join("oci").display());
    push_as(&registry, &source, "1", &[]);
    let other = push_as(&registry, &source, "other", &["--format", "v2s2"]);
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{other}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other_digest = format!("sha256:{:x}", Sha256::digest(&out.stdout));
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let out =
        Command::new("cp").arg("-a").arg(test_image().join("oci")).arg(&layout).output().unwrap();
    assert!(out.status.success());
    let index = json(&layout.join("index.json"));
    let image = index["manifests"][0].clone();
    let arm = serde_json::json!({
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": other_digest,
        "size": out_len(&other),
        "platform": {"os": "linux", "architecture": "arm64"},
    });
    let mut amd = image.clone();
    amd["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    amd.as_object_mut().unwrap().remove("annotations");
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, amd],
    })
    .to_string();
    let digest = format!("{:x}", Sha256::digest(multi.as_bytes()));
    fs::write(layout.join("blobs/sha256").join(&digest), &multi).unwrap();
    let mut top = index.clone();
    top["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{digest}"),
        "size": multi.len(),
        "annotations": {REF_NAME_ANNOTATION: "multi"},
    }]);
    fs::write(layout.join("index.json"), top.to_string()).unwrap();
    // Both manifests are in the registry already: push the index alone.
    let reference = push_as(
        &registry,
        &format!("oci:{}:multi", layout.display()),
        "multi",
        &["--multi-arch", "index-only"],
    );
    let dir = tempfile::tempdir().unwrap();
    pull_into(&reference, dir.path(), false).unwrap();
    let (entry, _) = pulled_manifest(dir.path());
    assert_eq!(entry["digest"], image["digest"], "the amd64 manifest, not the index");
    assert_ne!(entry["digest"], other_digest);
}

/// The size of the manifest `reference` names in the registry.
fn out_len(reference: &str) -> usize {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    out.stdout.len()
}

/// `hearthd admin image pull` from the registry (plain HTTP to 127.0.0.1, as Docker does for a
/// loopback registry) stores the same image, by digest, as the archive `import` of it, and
/// lists it under the registry's name.
#[test]
fn admin_pull_stores_the_image_the_archive_import_stores() {
    let registry = Registry::with_test_image();
    let data = tempfile::tempdir().unwrap();
    let pulled =
        crate::common::ok(crate::common::admin(data.path(), &["pull", &registry.reference()]));
    let imported = crate::common::ok(crate::common::admin(
        data.path(),
        &["import", TEST_IMAGE, test_image().join("image.oci.tar").to_str().unwrap()],
    ));
    let digest = |out: &str| out.split_whitespace().next().unwrap_or_default().to_owned();
    assert!(digest(&pulled).starts_with("sha256:"), "{pulled}");
    assert_eq!(digest(&pulled), digest(&imported), "pull: {pulled}\nimport: {imported}");
    let list = crate::common::ok(crate::common::admin(data.path(), &["list"]));
    assert!(list.contains(&registry.reference()), "{list}");
    // Nothing of the pull is left beside the store.
    let leftovers: Vec<_> = fs::read_dir(data.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".image-pull"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
