//! Shared by the package tests: building the .deb and .rpm once per test binary (or reusing
//! target/packages when it is fresher than every source that goes into them), and running
//! commands with their output in the failure message.
//!
//! Must never: build packages in a way the operator would not (it runs the same
//! scripts/build-packages.sh as `make packages`), or hide a failed command.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The packages of one build.
#[derive(Debug, Clone)]
pub struct Packages {
    pub version: String,
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn out_dir() -> PathBuf {
    repo().join("target/packages")
}

/// Fails (never skips) when not root: installing packages, rpm --root and nspawn need it, and
/// CI runs as root, so a non-root run must not look like a pass.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the package tests must run as root (they build and install packages); run `sudo -E cargo test --test package`"
    );
}

pub fn cargo_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \"").and_then(|r| r.strip_suffix('"')))
        .expect("a version line in Cargo.toml")
        .to_owned()
}

fn arch() -> String {
    let out = run(Command::new("dpkg").arg("--print-architecture"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The package files of `version` (whether or not they exist).
pub fn package_paths(version: &str) -> Packages {
    let deb = out_dir().join(format!("hearth_{version}_{}.deb", arch()));
    let rpm_arch = match arch().as_str() {
        "amd64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        other => other.to_owned(),
    };
    let rpm = out_dir().join(format!("hearth-{version}-1.{rpm_arch}.rpm"));
    Packages { version: version.to_owned(), deb, rpm }
}

/// Newest modification time among everything the packages are built from.
fn newest_source() -> SystemTime {
    fn walk(p: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(p) else { return };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), newest);
                }
            }
        } else if let Ok(m) = meta.modified() {
            *newest = (*newest).max(m);
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for rel in [
        "src",
        "packaging",
        "config",
        "systemd",
        "docs",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "scripts/build-packages.sh",
    ] {
        walk(&repo().join(rel), &mut newest);
    }
    newest
}

fn fresh(p: &Path, newer_than: SystemTime) -> bool {
    std::fs::metadata(p).and_then(|m| m.modified()).map(|m| m > newer_than).unwrap_or(false)
}

/// Builds (with `make packages`' script) the packages of `version`, unless both exist and are
/// newer than every source. `what` is deb, rpm or all.
pub fn build(version: &str, what: &str) -> Packages {
    // Tests run in parallel threads; two builds at once would share a staging dir.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let pkgs = package_paths(version);
    let newest = newest_source();
    let need = match what {
        "deb" => !fresh(&pkgs.deb, newest),
        "rpm" => !fresh(&pkgs.rpm, newest),
        _ => !fresh(&pkgs.deb, newest) || !fresh(&pkgs.rpm, newest),
    };
    if need {
        let t0 = std::time::Instant::now();
        let mut cmd = Command::new(repo().join("scripts/build-packages.sh"));
        cmd.arg(what).env("HEARTH_PKG_VERSION", version);
        run(&mut cmd);
        eprintln!("built {what} packages of {version} in {:.1}s", t0.elapsed().as_secs_f64());
    } else {
        eprintln!("reusing {} (fresher than the sources)", out_dir().display());
    }
    pkgs
}

/// The packages of the tree's own version, built at most once per test binary.
pub fn packages() -> Packages {
    static ONCE: OnceLock<Packages> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ONCE.get_or_init(|| build(&cargo_version(), "all")).clone()
}

/// Runs a command, panicking with its stdout and stderr when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`run`] and return stdout as text.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}
