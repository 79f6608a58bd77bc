//! The launchers hearth ships, embedded in the binary and written once at start-up into a
//! launcher dir that every container mounts read-only at [`super::kinds::LAUNCHER_MOUNT`].
//!
//! Embedding keeps the launcher and the host's protocol code of one build together: a
//! package upgrade can never pair a new host with an old launcher.

use std::path::{Path, PathBuf};

use crate::model::Runtime;

const PYTHON_LAUNCHER: &str = include_str!("launchers/python.py");
const NODE_LAUNCHER: &str = include_str!("launchers/node.js");
const NATIVE_LAUNCHER: &str = include_str!("launchers/native.py");

/// Writing the launcher dir failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write launcher {path}: {source}")]
pub struct LauncherError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The launcher's file name in the launcher dir.
pub fn file_name(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Python => "python.py",
        Runtime::Nodejs => "node.js",
        Runtime::Native => "native.py",
    }
}

/// The launcher's source.
pub fn source(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Python => PYTHON_LAUNCHER,
        Runtime::Nodejs => NODE_LAUNCHER,
        Runtime::Native => NATIVE_LAUNCHER,
    }
}

/// Writes every launcher into `dir` (created if missing), world-readable because the
/// containers run as an unprivileged uid. Rewrites them each time so an upgrade takes effect.
pub fn install_all(dir: &Path) -> Result<(), LauncherError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| LauncherError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err(dir))?;
    for runtime in [Runtime::Python, Runtime::Nodejs, Runtime::Native] {
        let path = dir.join(file_name(runtime));
        std::fs::write(&path, source(runtime)).map_err(err(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_every_launcher() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("launchers");
        install_all(&target).unwrap();
        let py = std::fs::read_to_string(target.join("python.py")).unwrap();
        assert!(py.contains(super::super::protocol::SENTINEL));
        let js = std::fs::read_to_string(target.join("node.js")).unwrap();
        assert!(js.contains(super::super::protocol::SENTINEL));
        let native = std::fs::read_to_string(target.join("native.py")).unwrap();
        assert!(native.contains(super::super::protocol::SENTINEL));
    }
}
