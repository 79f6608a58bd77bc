//! What every part of the images test shares: the test image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::harness;

/// The name the test image carries in its archives.
pub const TEST_IMAGE: &str = "hearth-test/proxy:1";

/// The folder tests/images/build.sh prints: `oci/` (an OCI layout, tag `1`),
/// `image.oci.tar`, `image.docker.tar`. Built once per content, then cached.
pub fn test_image() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh");
        let out = Command::new(&script).output().expect("run tests/images/build.sh");
        assert!(
            out.status.success(),
            "tests/images/build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// `hearthd admin --data-dir DATA image ARGS...`.
pub fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(harness::hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .arg("image")
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a command that must have succeeded (its stderr in the panic otherwise).
pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_test_image_is_built_in_every_format() {
    let dir = test_image();
    for part in ["oci/index.json", "image.oci.tar", "image.docker.tar"] {
        assert!(dir.join(part).is_file(), "{} missing", dir.join(part).display());
    }
}
