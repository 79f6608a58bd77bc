//! The image store through the real `hearthd admin image`: both archive formats and the
//! layout of the test image, a hostile archive, and `rm` with an action using the image.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hearth::image::testkit::{layer_tar, write_docker_archive, Member as M};
use hearth::model::{EntityName, FullyQualifiedName, Kind};
use hearth::store::{ActionUpdate, ExecUpdate, Store, StoreOptions};

use super::common::{admin, ok, test_image, TEST_IMAGE};

fn import(data: &Path, name: &str, file: &Path) -> String {
    let out = ok(admin(data, &["import", name, file.to_str().unwrap()]));
    out.split_whitespace().next().unwrap().to_owned()
}

fn root_of(data: &Path, digest: &str) -> PathBuf {
    data.join("images/roots").join(digest.strip_prefix("sha256:").unwrap()).join("rootfs")
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// How many layers a docker archive's one image has.
fn docker_layers(archive: &Path) -> usize {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("manifest.json") {
            let manifest: serde_json::Value = serde_json::from_reader(entry).unwrap();
            return manifest[0]["Layers"].as_array().unwrap().len();
        }
    }
    panic!("no manifest.json in {}", archive.display())
}

#[test]
fn both_archive_formats_import_as_one_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let image = test_image();
    assert_eq!(docker_layers(&image.join("image.docker.tar")), 2, "the whiteout spans layers");
    let digest = import(data, "-", &image.join("image.docker.tar"));
    assert_eq!(import(data, "-", &image.join("image.oci.tar")), digest, "same config, same id");
    assert_eq!(import(data, "hearth-test/layout:1", &image.join("oci")), digest);

    let table = ok(admin(data, &["list"]));
    let short = &digest[7..19];
    let line = table.lines().find(|l| l.starts_with(short)).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(&format!("docker.io/{TEST_IMAGE}")), "{table}");
    assert!(line.contains("docker.io/hearth-test/layout:1"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(admin(data, &["list", "--json"]))).unwrap();
    assert_eq!(json[0]["digest"], digest.as_str());

    let root = root_of(data, &digest);
    let python = root.join("usr/bin/python3.11");
    assert!(python.is_file());
    assert!(!root.join("etc/hearth-removed").exists(), "the whiteout applied");
    let (a, b) =
        (python.metadata().unwrap(), root.join("usr/bin/python3-link").metadata().unwrap());
    assert_eq!((b.ino(), b.nlink()), (a.ino(), 2), "python3-link is a hard link");
    let loader = std::fs::read_link(root.join("usr/lib64/ld-linux-x86-64.so.2")).unwrap();
    assert!(loader.is_absolute(), "the loader's absolute link is kept: {}", loader.display());
    assert!(is_empty(&data.join("images/staging")));
}

#[test]
fn a_hostile_archive_is_refused_with_nothing_outside_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let outside =
        std::env::temp_dir().join(format!("hearth-hostile-{}", uuid::Uuid::new_v4().simple()));
    let target = outside.display().to_string();
    let cases: Vec<(&str, Vec<M<'_>>)> = vec![
        ("symlink then through it", vec![M::Symlink("l", &target), M::File("l/owned", b"x")]),
        ("dot-dot", vec![M::File("../../escape", b"x")]),
        ("device", vec![M::CharDevice("dev/evil")]),
        ("hard link out", vec![M::HardLink("passwd", "/etc/passwd")]),
    ];
    for (what, members) in cases {
        let archive = tmp.path().join("evil.tar");
        write_docker_archive(&archive, &[layer_tar(&members)], "evil/image:1");
        let out = admin(&data, &["import", "-", archive.to_str().unwrap()]);
        assert!(!out.status.success(), "{what}: imported");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused"), "{what}: {err}");
        assert!(!outside.exists(), "{what}: wrote outside");
        assert!(!tmp.path().join("escape").exists() && !data.join("escape").exists(), "{what}");
        assert!(is_empty(&data.join("images/staging")), "{what}: staging left");
        assert!(is_empty(&data.join("images/roots")), "{what}: a root left");
        std::fs::remove_file(&archive).unwrap();
    }
}

#[test]
fn rm_is_refused_while_an_action_uses_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let digest = import(data, TEST_IMAGE, &test_image().join("image.docker.tar"));
    let fqn = FullyQualifiedName::new(
        EntityName::parse("guest").unwrap(),
        EntityName::parse("proxied").unwrap(),
    );
    {
        let store = Store::open(data, StoreOptions::default()).unwrap();
        store.create_namespace(&fqn.namespace).unwrap();
        let exec = ExecUpdate {
            kind: Kind::parse("blackbox").unwrap(),
            main: None,
            binary: false,
            // Another spelling of the same name: rm compares resolved images.
            image: Some(format!("docker.io/{TEST_IMAGE}")),
            code: Vec::new(),
        };
        store
            .put_action(&fqn, ActionUpdate { exec: Some(exec), ..Default::default() }, false)
            .unwrap();
    }
    let out = admin(data, &["rm", TEST_IMAGE]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guest/proxied"), "{err}");
    assert!(root_of(data, &digest).is_dir());
    let out = admin(data, &["rm", &digest]);
    assert!(!out.status.success(), "by digest too");

    Store::open(data, StoreOptions::default()).unwrap().delete_action(&fqn).unwrap();
    ok(admin(data, &["rm", TEST_IMAGE]));
    assert!(!root_of(data, &digest).exists(), "the last name gone, the root goes");
    assert_eq!(ok(admin(data, &["list"])).lines().count(), 1, "only the header");
}
