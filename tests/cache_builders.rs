//! The cached artefacts the tests share (the booted tests' Debian root, the OpenWhisk client's
//! node_modules, the broker) are built by one process while the others wait: three processes
//! asking at once on an empty cache all succeed with one build. Before scripts/lib/cache.sh,
//! three tests booting machines on a fresh machine ran debootstrap into one directory at once
//! and removed each other's work (two of three failed).
//!
//! The Debian root and the client are built into the `HEARTH_CACHE` the suite uses, so on a
//! fresh machine (or with `HEARTH_CACHE=$(mktemp -d)`) this test is their first builder and
//! proves the concurrent path for real; on a used cache it proves that waiting costs nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` three times at once (with `HEARTH_CACHE=cache` when given) and returns the
/// outputs.
fn three_at_once(cache: Option<&Path>, cmd: &[&str]) -> Vec<Output> {
    let children: Vec<_> = (0..3)
        .map(|_| {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if let Some(cache) = cache {
                c.env("HEARTH_CACHE", cache);
            }
            c.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_all_succeeded(what: &str, outs: &[Output]) {
    for (i, o) in outs.iter().enumerate() {
        assert!(
            o.status.success(),
            "{what}: process {i} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    let first = text(&outs[0].stdout);
    assert!(
        outs.iter().all(|o| text(&o.stdout) == first),
        "{what}: the three disagree on the path"
    );
}

/// The lock itself, with a builder that takes a second and counts its runs, on an empty cache.
#[test]
fn one_builder_the_others_wait() {
    let cache = tempfile::tempdir().unwrap();
    let script = cache.path().join("build-thing.sh");
    std::fs::write(
        &script,
        format!(
            r#"set -euo pipefail
. {lib}
ready() {{ [ -f "$HEARTH_CACHE/thing/done" ]; }}
build() {{
    echo built >>"$HEARTH_CACHE/builds"
    mkdir -p "$HEARTH_CACHE/thing.building"
    sleep 1
    touch "$HEARTH_CACHE/thing.building/done"
    rm -rf "$HEARTH_CACHE/thing"
    mv "$HEARTH_CACHE/thing.building" "$HEARTH_CACHE/thing"
}}
cache_build thing ready build
echo "$HEARTH_CACHE/thing"
"#,
            lib = repo().join("scripts/lib/cache.sh").display()
        ),
    )
    .unwrap();
    let outs = three_at_once(Some(cache.path()), &["bash", script.to_str().unwrap()]);
    assert_all_succeeded("a counted builder", &outs);
    let builds = std::fs::read_to_string(cache.path().join("builds")).unwrap();
    assert_eq!(builds.lines().count(), 1, "built more than once: {builds:?}");
    assert!(cache.path().join("thing/done").exists());
}

/// A failing step says which step failed, with the tail of its log, and fails the build;
/// nothing half-built is left for the next run to take as finished.
#[test]
fn a_failed_step_names_itself_with_its_log() {
    let cache = tempfile::tempdir().unwrap();
    let script = format!(
        r#"set -euo pipefail
. {lib}
ready() {{ [ -d "$HEARTH_CACHE/thing" ]; }}
build() {{
    mkdir -p "$HEARTH_CACHE/thing.building"
    step "$HEARTH_CACHE/thing.log" "fetching the thing" sh -c 'echo first line; echo the real reason; exit 7'
    mv "$HEARTH_CACHE/thing.building" "$HEARTH_CACHE/thing"
}}
cache_build thing ready build
"#,
        lib = repo().join("scripts/lib/cache.sh").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("HEARTH_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("step failed: fetching the thing (exit 7)"), "{err}");
    assert!(err.contains("the real reason"), "{err}");
    assert!(!cache.path().join("thing").exists());
}

/// The booted tests' Debian root, as tests/package_system.rs's three tests ask for it at once.
#[test]
fn the_debian_root_is_built_once() {
    harness::require_root();
    let nspawn = repo().join("tests/system/nspawn.sh");
    let outs = three_at_once(None, &[nspawn.to_str().unwrap(), "rootfs"]);
    assert_all_succeeded("nspawn.sh rootfs", &outs);
    let builds: usize =
        outs.iter().map(|o| text(&o.stderr).matches("debootstrap bookworm into").count()).sum();
    assert!(builds <= 1, "debootstrap ran {builds} times");
    let root = PathBuf::from(text(&outs[0].stdout).trim());
    assert!(root.join(".hearth-stamp").exists(), "{} has no stamp", root.display());
    assert!(root.join("usr/bin/python3").exists() && root.join("usr/sbin/runc").exists());
}

/// OpenWhisk's JavaScript client, as the client tests of several test binaries ask for it.
#[test]
fn the_openwhisk_client_is_installed_once() {
    let install = repo().join("tests/clients/install.sh");
    let outs = three_at_once(None, &[install.to_str().unwrap()]);
    assert_all_succeeded("tests/clients/install.sh", &outs);
    let modules = PathBuf::from(text(&outs[0].stdout).trim());
    assert!(modules.join("openwhisk/package.json").exists(), "{}", modules.display());
}
