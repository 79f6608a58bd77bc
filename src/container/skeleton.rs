//! The shared root filesystem skeleton: a directory, made once per state dir, that every
//! container uses as its read-only root and on which its bind mounts land.
//!
//! It holds only mount points, the /bin-style symlinks that mirror the host's merged /usr, and
//! a minimal /etc (passwd, group, hosts, localtime). Every mount point a bundle names exists
//! here before any container starts, so runc never creates one (which would race between
//! containers starting together). The skeleton must never hold anything secret or writable.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ContainerError;

/// Top-level paths that Debian 12 makes symlinks into /usr (merged /usr). Mirrored as the same
/// symlinks when the host has them, bind-mounted when the host has real directories.
pub const USR_MERGED: [&str; 6] = ["bin", "lib", "lib64", "sbin", "lib32", "libx32"];

/// Directories in the skeleton that are mount points or must exist in every container.
const DIRS: [&str; 10] =
    ["usr", "proc", "dev", "sys", "tmp", "action", "hearth", "etc", "etc/ssl", "run"];

const PASSWD: &str = "root:x:0:0:root:/root:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Where the skeleton lives and which host paths it mirrors.
#[derive(Debug, Clone)]
pub struct Skeleton {
    pub root: PathBuf,
    /// Host top-level directories that are real directories and must be bind-mounted.
    pub bind_dirs: Vec<&'static str>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.display().to_string();
    move |source| ContainerError::Io { what, path, source }
}

impl Skeleton {
    /// Creates (or completes) the skeleton at `root`. Idempotent: an existing skeleton is
    /// checked and topped up, never rebuilt, so live containers keep their root.
    pub fn prepare(root: &Path) -> Result<Self, ContainerError> {
        fs::create_dir_all(root).map_err(io_err("cannot create", root))?;
        set_mode(root, 0o755)?;
        for dir in DIRS {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("cannot create", &path))?;
            set_mode(&path, 0o755)?;
        }
        // runc gives a tmpfs the mode of the directory it is mounted on, whatever the mount's
        // `mode=` option says, so the mount point itself must be world-writable and sticky.
        set_mode(&root.join("tmp"), 0o1777)?;
        let mut bind_dirs = Vec::new();
        for name in USR_MERGED {
            let host = Path::new("/").join(name);
            let here = root.join(name);
            match fs::read_link(&host) {
                Ok(target) => ensure_symlink(&target, &here)?,
                Err(_) if host.is_dir() => {
                    fs::create_dir_all(&here).map_err(io_err("cannot create", &here))?;
                    bind_dirs.push(name);
                }
                Err(_) => {}
            }
        }
        write_if_changed(&root.join("etc/passwd"), PASSWD)?;
        write_if_changed(&root.join("etc/group"), GROUP)?;
        write_if_changed(&root.join("etc/hosts"), HOSTS)?;
        // A mount point for the host's resolv.conf, used only by containers granted network.
        write_if_changed(&root.join("etc/resolv.conf"), "")?;
        let localtime = root.join("etc/localtime");
        match fs::read_link("/etc/localtime") {
            Ok(target) => ensure_symlink(&target, &localtime)?,
            Err(_) => {
                if let Ok(bytes) = fs::read("/etc/localtime") {
                    if fs::read(&localtime).ok().as_deref() != Some(&bytes[..]) {
                        fs::write(&localtime, bytes).map_err(io_err("cannot write", &localtime))?;
                    }
                }
            }
        }
        Ok(Self { root: root.to_owned(), bind_dirs })
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ContainerError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot set permissions of", path))
}

fn ensure_symlink(target: &Path, link: &Path) -> Result<(), ContainerError> {
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).map_err(io_err("cannot replace", link))?;
    }
    symlink(target, link).map_err(io_err("cannot create symlink", link))
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), ContainerError> {
    if fs::read(path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    fs::write(path, text).map_err(io_err("cannot write", path))?;
    set_mode(path, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_is_idempotent_and_mirrors_usr_merge() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let a = Skeleton::prepare(&root).unwrap();
        let b = Skeleton::prepare(&root).unwrap();
        assert_eq!(a.bind_dirs, b.bind_dirs);
        assert!(root.join("tmp").is_dir() && root.join("action").is_dir());
        assert!(fs::read_to_string(root.join("etc/passwd")).unwrap().contains("65534"));
        if let Ok(target) = fs::read_link("/bin") {
            assert_eq!(fs::read_link(root.join("bin")).unwrap(), target);
        }
    }
}
