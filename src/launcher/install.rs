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

/// The runtimes hearth ships a launcher for (an image brings its own action proxy).
pub const LAUNCHED: [Runtime; 3] = [Runtime::Python, Runtime::Nodejs, Runtime::Native];

/// The launcher's file name in the launcher dir; None for an image, which has no launcher.
pub fn file_name(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Python => Some("python.py"),
        Runtime::Nodejs => Some("node.js"),
        Runtime::Native => Some("native.py"),
        Runtime::Image(_) => None,
    }
}

/// The launcher's source; None for an image.
pub fn source(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Python => Some(PYTHON_LAUNCHER),
        Runtime::Nodejs => Some(NODE_LAUNCHER),
        Runtime::Native => Some(NATIVE_LAUNCHER),
        Runtime::Image(_) => None,
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
    for runtime in LAUNCHED {
        let (Some(name), Some(text)) = (file_name(runtime), source(runtime)) else { continue };
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(err(&path))?;
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
