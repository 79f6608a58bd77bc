//! Installing an action's code into a container's code dir (mounted read-only at /action).
//!
//! A single source file goes where the launcher looks for it; a zip is unpacked with every
//! entry confined to the dir (no `..`, no absolute paths, no symlinks) and bounded in count and
//! unpacked size, because the archive is user input and the dir is on the host's disk. This
//! module never follows a path out of `dir` and never trusts a size that the archive declares.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::Runtime;

use super::kinds;

/// Unpacked bytes one zip action may occupy on the host. OpenWhisk caps the archive at 48 MB;
/// a well-compressed archive may unpack to a few times that, a zip bomb to far more.
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Entries one zip action may hold: node_modules trees of real actions stay well below.
pub const MAX_ENTRIES: usize = 20_000;

/// Installing code into a code dir failed (the invoker's `InstallError` wraps this as `Install`).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("the action's zip is invalid: {0}")]
    BadZip(String),
    #[error("the action's zip entry {name:?} is not allowed: {why}")]
    BadEntry { name: String, why: &'static str },
    #[error("the action's zip unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the action's zip has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the code of a {0} action is not valid UTF-8 text")]
    NotText(&'static str),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { what, path, source }
}

/// Writes `code` into `dir` (which must exist and be empty): a single source file, or the
/// contents of a zip when `binary`. Everything is made world-readable because the container
/// runs as an unprivileged uid.
///
/// A native action's `exec` is made executable whatever the zip says: OpenWhisk's skeleton
/// unpacks over an executable stub, so a zip made without Unix modes (or a script sent as
/// text) runs there, and must run here too.
pub fn install(
    dir: &Path,
    runtime: Runtime,
    code: &[u8],
    binary: bool,
) -> Result<(), InstallError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err("cannot set permissions of", dir))?;
    if matches!(runtime, Runtime::Image(_)) {
        // An image's action proxy gets the code as it was stored (text, or the zip itself,
        // base64-encoded) in its /init and unpacks it itself: written as one file, never
        // unpacked on the host. The code dir is not mounted into an image container.
        write_new(&dir.join(kinds::source_file(runtime)), 0o600, &mut Cursor::new(code), u64::MAX)?;
        return Ok(());
    }
    let executable = (runtime == Runtime::Native).then_some(kinds::NATIVE_EXEC);
    if binary {
        unzip(dir, code, executable)
    } else {
        if std::str::from_utf8(code).is_err() {
            return Err(InstallError::NotText(runtime.as_str()));
        }
        let name = kinds::source_file(runtime);
        let mode = if executable == Some(name) { 0o755 } else { 0o644 };
        write_new(&dir.join(name), mode, &mut Cursor::new(code), u64::MAX)?;
        Ok(())
    }
}

/// Creates `path` (never following or replacing an existing file) and copies at most `limit`
/// bytes into it; returns the bytes written, or `TooLarge` past the limit.
fn write_new(path: &Path, mode: u32, from: &mut dyn Read, limit: u64) -> Result<u64, InstallError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err("cannot create", path))?;
    let written = io::copy(&mut from.take(limit.saturating_add(1)), &mut file)
        .map_err(io_err("cannot write", path))?;
    if written > limit {
        return Err(InstallError::TooLarge { limit: MAX_UNPACKED_BYTES });
    }
    file.flush().map_err(io_err("cannot write", path))?;
    // The umask may have narrowed the mode given at creation.
    set_mode(&file, path, mode)?;
    Ok(written)
}

fn set_mode(file: &File, path: &Path, mode: u32) -> Result<(), InstallError> {
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot set permissions of", path))
}

/// Unpacks `code` into `dir`; `executable` names a top-level file made executable whatever
/// its mode in the archive.
fn unzip(dir: &Path, code: &[u8], executable: Option<&str>) -> Result<(), InstallError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(code)).map_err(|e| InstallError::BadZip(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(InstallError::TooManyEntries { limit: MAX_ENTRIES });
    }
    let mut budget = MAX_UNPACKED_BYTES;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| InstallError::BadZip(e.to_string()))?;
        let name = entry.name().to_owned();
        let Some(relative) = entry.enclosed_name() else {
            return Err(InstallError::BadEntry { name, why: "its path leaves the archive" });
        };
        if entry.is_symlink() {
            return Err(InstallError::BadEntry { name, why: "symbolic links are not supported" });
        }
        let target = dir.join(&relative);
        if entry.is_dir() {
            create_dirs(dir, &relative)?;
            continue;
        }
        if let Some(parent) = relative.parent() {
            create_dirs(dir, parent)?;
        }
        let forced = executable.is_some_and(|name| relative == Path::new(name));
        let mode =
            if forced || entry.unix_mode().is_some_and(|m| m & 0o111 != 0) { 0o755 } else { 0o644 };
        match write_new(&target, mode, &mut entry, budget) {
            Ok(n) => budget -= n,
            Err(InstallError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                return Err(InstallError::BadEntry {
                    name,
                    why: "it appears twice in the archive",
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `relative` under `dir` one component at a time with mode 0755, refusing to step
/// through anything that is not a real directory (a symlink planted by an earlier entry).
fn create_dirs(dir: &Path, relative: &Path) -> Result<(), InstallError> {
    let mut path = dir.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(InstallError::BadEntry {
                    name: relative.display().to_string(),
                    why: "a file and a directory share its path",
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io_err("cannot create", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("cannot set permissions of", &path))?;
            }
            Err(e) => return Err(InstallError::Io { what: "cannot inspect", path, source: e }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, SimpleFileOptions::default()).unwrap();
            } else {
                w.start_file(*name, SimpleFileOptions::default()).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn single_source_goes_where_the_launcher_looks() {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), Runtime::Python, b"def main(a): return a", false).unwrap();
        let path = dir.path().join("__main__.py");
        assert_eq!(fs::read(&path).unwrap(), b"def main(a): return a");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), Runtime::Nodejs, b"function main(){}", false).unwrap();
        assert!(dir.path().join("index.js").exists());
        assert!(matches!(
            install(tempfile::tempdir().unwrap().path(), Runtime::Nodejs, b"\xff\xfe", false),
            Err(InstallError::NotText("nodejs"))
        ));
    }

    #[test]
    fn zip_unpacks_with_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let code = zip_of(&[
            ("__main__.py", b"from helper import x\n"),
            ("pkg/", b""),
            ("pkg/helper.py", b"x = 1\n"),
            ("deep/er/file.txt", b"hi"),
        ]);
        install(dir.path(), Runtime::Python, &code, true).unwrap();
        assert_eq!(fs::read(dir.path().join("pkg/helper.py")).unwrap(), b"x = 1\n");
        assert_eq!(fs::read(dir.path().join("deep/er/file.txt")).unwrap(), b"hi");
    }

    #[test]
    fn zip_traversal_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("code");
        fs::create_dir(&dir).unwrap();
        let code = zip_of(&[("../escape.py", b"x")]);
        let err = install(&dir, Runtime::Python, &code, true).unwrap_err();
        assert!(matches!(err, InstallError::BadEntry { .. }), "{err}");
        assert!(!outer.path().join("escape.py").exists());
        let code = zip_of(&[("/etc/abs.py", b"x")]);
        // An absolute name is either refused or confined to the dir; never written outside.
        let _ = install(&dir, Runtime::Python, &code, true);
        assert!(!Path::new("/etc/abs.py").exists());
    }

    #[test]
    fn zip_symlinks_are_refused() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("link", "/etc/passwd", SimpleFileOptions::default()).unwrap();
        let code = w.finish().unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let err = install(dir.path(), Runtime::Python, &code, true).unwrap_err();
        assert!(matches!(
            err,
            InstallError::BadEntry { why: "symbolic links are not supported", .. }
        ));
    }

    #[test]
    fn native_exec_is_executable_from_text_or_zip() {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), Runtime::Native, b"#!/bin/sh\necho '{}'\n", false).unwrap();
        let mode = fs::metadata(dir.path().join("exec")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // A zip written without Unix modes: `exec` still runs, its neighbours stay plain.
        let dir = tempfile::tempdir().unwrap();
        let code = zip_of(&[("exec", b"\x7fELF"), ("data.txt", b"x"), ("sub/exec", b"y")]);
        install(dir.path(), Runtime::Native, &code, true).unwrap();
        let mode = |p: &str| fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("exec"), 0o755);
        assert_eq!(mode("data.txt"), 0o644);
        assert_eq!(mode("sub/exec"), 0o644);
        // Python's zips are not touched.
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), Runtime::Python, &zip_of(&[("exec", b"x")]), true).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("exec")).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn garbage_is_a_bad_zip() {
        let dir = tempfile::tempdir().unwrap();
        let err = install(dir.path(), Runtime::Nodejs, b"not a zip", true).unwrap_err();
        assert!(matches!(err, InstallError::BadZip(_)));
    }

    #[test]
    fn size_is_bounded_by_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut big = io::repeat(b'a');
        let err = write_new(&path, 0o644, &mut big, 1000).unwrap_err();
        assert!(matches!(err, InstallError::TooLarge { .. }));
    }
}
