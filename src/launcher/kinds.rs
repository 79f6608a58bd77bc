//! Per-runtime facts: the interpreter inside the container, its arguments and environment.
//!
//! The interpreters are the host's own (bind-mounted read-only from /usr), so a kind is only a
//! command line here; nothing in this file starts a process.

use crate::model::Runtime;

use super::install;

/// Where the launcher dir is mounted inside every container.
pub const LAUNCHER_MOUNT: &str = "/hearth";
/// Where the action's code dir is mounted inside every container.
pub const CODE_MOUNT: &str = "/action";

/// The host's Python. Debian's, not whatever `python3` resolves to on an operator's PATH,
/// because the container only sees /usr.
pub const PYTHON: &str = "/usr/bin/python3";
/// The host's Node.js.
pub const NODE: &str = "/usr/bin/node";

/// The command line that starts a runtime's launcher inside the container.
///
/// Python runs with `-B` because /action is read-only and writing bytecode would fail on every
/// import anyway, and with `-S`: `site`'s work (mostly running the `.pth` files of every
/// site-packages dir) was a visible part of each cold start (BENCHMARKS.md, "Design
/// measurements"). The launcher puts the site-packages
/// dirs back on `sys.path` itself (without running `.pth` files), so actions still import
/// from the distribution's packages.
///
/// A native action's launcher is a compiled program (the `hearth-native` binary, installed as
/// `/hearth/native`), started with no arguments: it only spawns the action's `exec` per run and
/// relays its output, and an interpreter's start would be most of a native cold start's
/// overhead (OpenWhisk's action proxy was Python; its newer action loop is compiled too).
///
/// An image runs its own entrypoint (the container driver takes it from the image's config),
/// so it has no launcher command line here: empty.
pub fn argv(runtime: Runtime) -> Vec<String> {
    let Some(file) = install::file_name(runtime) else { return Vec::new() };
    let launcher = format!("{LAUNCHER_MOUNT}/{file}");
    match runtime {
        Runtime::Python => vec![PYTHON.to_owned(), "-B".to_owned(), "-S".to_owned(), launcher],
        Runtime::Native => vec![launcher],
        Runtime::Nodejs => vec![NODE.to_owned(), launcher],
        Runtime::Image(_) => Vec::new(),
    }
}

/// The environment of the launcher process. `__OW_*` values are set by the launcher per run.
pub fn env(runtime: Runtime) -> Vec<String> {
    let mut env = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
        "HOME=/tmp".to_owned(),
        "LANG=C.UTF-8".to_owned(),
    ];
    match runtime {
        Runtime::Python => env.push("PYTHONDONTWRITEBYTECODE=1".to_owned()),
        Runtime::Nodejs => env.push("NODE_ENV=production".to_owned()),
        // The native launcher needs nothing; the exec inherits this environment (plus the
        // run's `__OW_*`), as the action proxy's. An image's own environment is the container
        // driver's (the image's config, then these).
        Runtime::Native | Runtime::Image(_) => {}
    }
    env
}

/// The file name the single-source code of an action is written to in the code dir, where the
/// launcher looks for it. For a native action it is also the file a zip must hold: OpenWhisk's
/// action proxy runs `/action/exec`.
pub fn source_file(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Python => "__main__.py",
        Runtime::Nodejs => "index.js",
        Runtime::Native => NATIVE_EXEC,
        // An image action's code as stored, read back by the container driver for the
        // proxy's /init (runtime::code::install).
        Runtime::Image(_) => IMAGE_CODE,
    }
}

/// The file an image action's code is kept in, in its container's code dir on the host.
pub const IMAGE_CODE: &str = "code";

/// The executable a native action runs, at the top of its code dir.
pub const NATIVE_EXEC: &str = "exec";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_points_at_the_mounted_launcher() {
        assert_eq!(argv(Runtime::Python), ["/usr/bin/python3", "-B", "-S", "/hearth/python.py"]);
        assert_eq!(argv(Runtime::Nodejs), ["/usr/bin/node", "/hearth/node.js"]);
        assert!(env(Runtime::Python).iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(argv(Runtime::Native), ["/hearth/native"]);
        assert!(!env(Runtime::Native).iter().any(|e| e.starts_with("PYTHON")));
    }
}
