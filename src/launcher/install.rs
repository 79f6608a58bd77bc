//! The launchers hearth ships, written at start-up into a launcher dir that every container
//! mounts read-only at [`super::kinds::LAUNCHER_MOUNT`].
//!
//! The Python and Node launchers are scripts embedded in the binary; the native launcher is a
//! compiled program of its own (the `hearth-native` binary target, src/bin/hearth-native.rs),
//! copied from beside the running executable or from the packages' libexec dir. Both ways keep
//! the launcher and the host's protocol code of one build together: a package upgrade can never
//! pair a new host with an old launcher.

use std::io;
use std::path::{Path, PathBuf};

use crate::model::Runtime;

const PYTHON_LAUNCHER: &str = include_str!("launchers/python.py");
const NODE_LAUNCHER: &str = include_str!("launchers/node.js");

/// The native launcher's binary as cargo builds it and the packages install it.
pub const NATIVE_BINARY: &str = "hearth-native";
/// Where the packages install [`NATIVE_BINARY`] (beside nothing else: it is no command).
pub const NATIVE_LIBEXEC: &str = "/usr/libexec/hearth";
/// The launcher that an earlier hearth wrote for native actions, removed on install.
const OLD_NATIVE_SCRIPT: &str = "native.py";

/// Writing the launcher dir failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write launcher {path}: {source}")]
pub struct LauncherError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The runtimes hearth ships a launcher for (an image brings its own action proxy).
pub const LAUNCHED: [Runtime; 3] = [Runtime::Python, Runtime::Nodejs, Runtime::Native];

/// The launcher's file name in the launcher dir; None for an image, which has no launcher.
pub fn file_name(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Python => Some("python.py"),
        Runtime::Nodejs => Some("node.js"),
        Runtime::Native => Some("native"),
        Runtime::Image(_) => None,
    }
}

/// A script launcher's source; None for the native launcher (a binary, see
/// [`native_binary`]) and for an image.
pub fn source(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Python => Some(PYTHON_LAUNCHER),
        Runtime::Nodejs => Some(NODE_LAUNCHER),
        Runtime::Native | Runtime::Image(_) => None,
    }
}

/// Where the built native launcher is: beside the running executable (target/debug or
/// target/release, also for tests and benches, which run from their `deps` subdir), else in
/// [`NATIVE_LIBEXEC`]. The error names every place looked at.
pub fn native_binary() -> Result<PathBuf, io::Error> {
    let exe = std::env::current_exe().ok();
    locate_native(exe.as_deref(), Path::new(NATIVE_LIBEXEC))
}

/// [`native_binary`] for a given executable path and libexec dir.
fn locate_native(exe: Option<&Path>, libexec: &Path) -> Result<PathBuf, io::Error> {
    let mut candidates = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        candidates.push(dir.join(NATIVE_BINARY));
        // cargo's test and bench executables live in target/<profile>/deps.
        if dir.file_name().is_some_and(|name| name == "deps") {
            if let Some(profile) = dir.parent() {
                candidates.push(profile.join(NATIVE_BINARY));
            }
        }
    }
    candidates.push(libexec.join(NATIVE_BINARY));
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let places: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "the native launcher is at none of {} (build it with `cargo build --bins`, or \
             install the package)",
            places.join(", ")
        ),
    ))
}

/// Writes every launcher into `dir` (created if missing), world-readable because the
/// containers run as an unprivileged uid. Rewrites them each time so an upgrade takes effect.
/// Fails, naming where it looked, when the native launcher's binary cannot be found: a
/// launcher dir without it would fail every native action.
pub fn install_all(dir: &Path) -> Result<(), LauncherError> {
    let native = native_binary().map_err(|source| LauncherError {
        path: dir.join(file_name(Runtime::Native).unwrap_or(NATIVE_BINARY)),
        source,
    })?;
    install_with(dir, &native)
}

/// [`install_all`] with the native launcher copied from `native`.
pub fn install_with(dir: &Path, native: &Path) -> Result<(), LauncherError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| LauncherError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err(dir))?;
    for runtime in LAUNCHED {
        let Some(name) = file_name(runtime) else { continue };
        let path = dir.join(name);
        match source(runtime) {
            Some(text) => {
                std::fs::write(&path, text).map_err(err(&path))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .map_err(err(&path))?;
            }
            None => copy_executable(native, &path)?,
        }
    }
    match std::fs::remove_file(dir.join(OLD_NATIVE_SCRIPT)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(&dir.join(OLD_NATIVE_SCRIPT))(e)),
        _ => Ok(()),
    }
}

/// Copies the binary `from` to `to` (mode 0755) through a temporary file and a rename: warm
/// containers kept across a restart may be running the old `to`, which the kernel refuses to
/// open for writing (ETXTBSY), while a rename replaces it under them.
fn copy_executable(from: &Path, to: &Path) -> Result<(), LauncherError> {
    use std::os::unix::fs::PermissionsExt;
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::copy(from, &tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot copy {}: {e}", from.display())))
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&tmp, to));
    result.map_err(|source| {
        // Best effort: the temporary file is ours and useless now.
        let _ = std::fs::remove_file(&tmp);
        LauncherError { path: to.to_owned(), source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn installs_every_launcher() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("built-native");
        std::fs::write(&binary, b"\x7fELF stand-in").unwrap();
        let target = dir.path().join("launchers");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("native.py"), "old").unwrap();
        // Twice: the second install replaces what the first wrote.
        install_with(&target, &binary).unwrap();
        install_with(&target, &binary).unwrap();
        let py = std::fs::read_to_string(target.join("python.py")).unwrap();
        assert!(py.contains(super::super::protocol::SENTINEL));
        let js = std::fs::read_to_string(target.join("node.js")).unwrap();
        assert!(js.contains(super::super::protocol::SENTINEL));
        let native = target.join("native");
        assert_eq!(std::fs::read(&native).unwrap(), b"\x7fELF stand-in");
        assert_eq!(std::fs::metadata(&native).unwrap().permissions().mode() & 0o7777, 0o755);
        let left: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 3, "no temp file and no old native.py: {left:?}");
    }

    #[test]
    fn a_missing_native_binary_is_an_error_and_installs_nothing_native() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("launchers");
        let err = install_with(&target, &dir.path().join("absent")).unwrap_err();
        assert_eq!(err.path, target.join("native"));
        assert!(err.source.to_string().contains("absent"), "{err}");
        assert!(!target.join("native").exists());
    }

    #[test]
    fn the_native_binary_is_found_beside_the_executable_then_in_libexec() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("target/debug");
        let deps = profile.join("deps");
        let libexec = dir.path().join("libexec");
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        let exe = profile.join("hearthd");
        let test_exe = deps.join("runtimes-0123");

        let err = locate_native(Some(&exe), &libexec).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let text = err.to_string();
        assert!(text.contains(&profile.join(NATIVE_BINARY).display().to_string()), "{text}");
        assert!(text.contains(&libexec.join(NATIVE_BINARY).display().to_string()), "{text}");

        std::fs::write(libexec.join(NATIVE_BINARY), "").unwrap();
        assert_eq!(locate_native(Some(&exe), &libexec).unwrap(), libexec.join(NATIVE_BINARY));
        assert_eq!(locate_native(None, &libexec).unwrap(), libexec.join(NATIVE_BINARY));

        std::fs::write(profile.join(NATIVE_BINARY), "").unwrap();
        assert_eq!(locate_native(Some(&exe), &libexec).unwrap(), profile.join(NATIVE_BINARY));
        assert_eq!(locate_native(Some(&test_exe), &libexec).unwrap(), profile.join(NATIVE_BINARY));
    }
}
