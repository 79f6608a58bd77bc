//! Applying an image's layers, in order, into one flattened root file system.
//!
//! The layers come from archives an administrator hands to `hearthd admin image import`, so
//! they are treated as hostile. The rules, each refusing the whole image with the entry named:
//! - member paths are relative and stay inside the root after `.` and `..` are applied
//!   lexically (`/abs`, `../x` and `a/../../x` are refused);
//! - no write ever goes through a symlink: every parent of an entry is checked component by
//!   component with `symlink_metadata` (never followed), so a symlink `l -> /etc` followed by
//!   `l/passwd` is refused. The root being unpacked lives in the store's private staging
//!   directory (0700, root-owned) and this process is its only writer, so a component checked
//!   here cannot be swapped for a symlink before the write that follows;
//! - symlinks themselves are created verbatim, absolute targets included: they are resolved
//!   inside the container (by the kernel, under the container's root), never by this code;
//! - hard links must name an entry already in the root (a file or a symlink, never a
//!   directory), reached without symlinks;
//! - character and block devices, fifos and other special members are refused: an image has
//!   no business carrying them, the container runtime provides /dev;
//! - the total size of regular files and the number of entries are capped ([`UnpackLimits`]).
//!
//! Ownership comes from the tar headers (this runs as root). Modes are kept except the setuid
//! and setgid bits, which are dropped: an image cannot hand its processes a privilege
//! elevation on the host's file system. Extended attributes (file capabilities included) are
//! not applied, for the same reason. Whiteouts follow the OCI layer spec: `.wh.NAME` removes
//! NAME from the lower layers, `.wh..wh..opq` empties its directory of lower-layer content.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use super::ImageError;

/// The whiteout prefix of the OCI layer spec.
const WHITEOUT: &str = ".wh.";
/// The opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";
/// Mode bits kept from a tar header: permissions and the sticky bit, not setuid/setgid.
const MODE_KEPT: u32 = 0o1777;

/// Caps on what one image may unpack to, so that a hostile archive cannot fill the disk or
/// the inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total bytes of regular-file content over all layers.
    pub max_bytes: u64,
    /// Entries over all layers (files, directories, links, whiteouts).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    /// 8 GiB and a million entries: far above a runtime image (OpenWhisk's Java image unpacks
    /// to about 500 MB and 20,000 files), far below what fills a host.
    fn default() -> Self {
        Self { max_bytes: 8 << 30, max_entries: 1_000_000 }
    }
}

/// Applies layers in order into one root directory.
#[derive(Debug)]
pub struct Unpacker {
    root: PathBuf,
    limits: UnpackLimits,
    bytes: u64,
    entries: u64,
}

/// The context of one entry, for errors.
struct At<'a> {
    layer: &'a str,
    entry: String,
}

impl At<'_> {
    fn refuse(&self, reason: impl Into<String>) -> ImageError {
        ImageError::Hostile {
            layer: self.layer.to_owned(),
            entry: self.entry.clone(),
            reason: reason.into(),
        }
    }
}

impl Unpacker {
    /// An unpacker into `root`, which is created (0755) if missing.
    pub fn new(root: &Path, limits: UnpackLimits) -> Result<Self, ImageError> {
        match fs::create_dir(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io("creating the root", root)(e)),
        }
        fs::set_permissions(root, Permissions::from_mode(0o755))
            .map_err(ImageError::io("setting the mode of", root))?;
        Ok(Self { root: root.to_owned(), limits, bytes: 0, entries: 0 })
    }

    /// Bytes of regular-file content written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Applies one uncompressed layer tar; `layer` names it in errors. On error the root is
    /// left half-applied: the caller discards it (it is in staging).
    pub fn apply_layer(&mut self, tar: impl Read, layer: &str) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(tar);
        let read_err = |e: io::Error| ImageError::malformed(format!("layer {layer}"), e);
        // Paths written by this layer: an opaque marker removes lower-layer content only.
        let mut written: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw = entry.path_bytes().into_owned();
            let at = At { layer, entry: String::from_utf8_lossy(&raw).into_owned() };
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(at.refuse(format!(
                    "more than {} entries in the image",
                    self.limits.max_entries
                )));
            }
            let rel = normalize(&raw, &at)?;
            self.apply_entry(&mut entry, &rel, &at, &mut written)?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        at: &At<'_>,
        written: &mut HashSet<PathBuf>,
    ) -> Result<(), ImageError> {
        let kind = entry.header().entry_type();
        let Some(name) = rel.file_name() else {
            // The root itself (`./`): its mode and owner stay the store's.
            return if kind.is_dir() { Ok(()) } else { Err(at.refuse("names the root")) };
        };
        let name = name.to_string_lossy();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if name == OPAQUE {
            if let Some(dir) = self.parent_dir(parent_rel, at, false, written)? {
                clear_lower(&dir, parent_rel, written)?;
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(at.refuse("a whiteout of nothing"));
            }
            if let Some(dir) = self.parent_dir(parent_rel, at, false, written)? {
                remove_any(&dir.join(hidden))?;
            }
            return Ok(());
        }
        let dir = self
            .parent_dir(parent_rel, at, true, written)?
            .ok_or_else(|| at.refuse("parent directory missing"))?;
        let path = dir.join(rel.file_name().unwrap_or_default());
        let header = entry.header();
        let mode = header.mode().map_err(|e| at.refuse(format!("bad mode: {e}")))? & MODE_KEPT;
        let uid = id(header.uid(), at)?;
        let gid = id(header.gid(), at)?;
        let mtime = header.mtime().unwrap_or(0);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                if self.bytes.saturating_add(size) > self.limits.max_bytes {
                    return Err(at.refuse(format!(
                        "the image unpacks to more than {} bytes",
                        self.limits.max_bytes
                    )));
                }
                remove_any(&path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(ImageError::io("creating", &path))?;
                let copied = io::copy(&mut entry.take(size), &mut file)
                    .map_err(ImageError::io("writing", &path))?;
                if copied != size {
                    return Err(ImageError::malformed(
                        format!("layer {}", at.layer),
                        format!("entry {:?} is truncated", at.entry),
                    ));
                }
                self.bytes += copied;
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(ImageError::io("changing the owner of", &path))?;
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(ImageError::io("setting the mode of", &path))?;
                file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
                    .map_err(ImageError::io("setting the time of", &path))?;
            }
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        make_dir(&path)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&path)?,
                    Err(e) => return Err(ImageError::io("inspecting", &path)(e)),
                }
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(ImageError::io("changing the owner of", &path))?;
                fs::set_permissions(&path, Permissions::from_mode(mode))
                    .map_err(ImageError::io("setting the mode of", &path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| at.refuse("a symlink without a target"))?
                    .into_owned();
                remove_any(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(ImageError::io("creating the symlink", &path))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(ImageError::io("changing the owner of", &path))?;
            }
            EntryType::Link => {
                let raw = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| at.refuse("a hard link without a target"))?
                    .into_owned();
                let target_rel = normalize(&raw, at)
                    .map_err(|_| at.refuse("hard link target outside the root"))?;
                let target_name =
                    target_rel.file_name().ok_or_else(|| at.refuse("hard link to the root"))?;
                let target_dir = self
                    .parent_dir(target_rel.parent().unwrap_or(Path::new("")), at, false, written)?
                    .ok_or_else(|| at.refuse("hard link target missing"))?;
                let target = target_dir.join(target_name);
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => return Err(at.refuse("hard link to a directory")),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(at.refuse("hard link target missing"))
                    }
                    Err(e) => return Err(ImageError::io("inspecting", &target)(e)),
                }
                if target == path {
                    return Err(at.refuse("hard link to itself"));
                }
                remove_any(&path)?;
                fs::hard_link(&target, &path)
                    .map_err(ImageError::io("creating the hard link", &path))?;
            }
            EntryType::Char | EntryType::Block => {
                return Err(at.refuse("a device node (the container runtime provides /dev)"))
            }
            EntryType::Fifo => return Err(at.refuse("a fifo")),
            other => return Err(at.refuse(format!("unsupported entry type {other:?}"))),
        }
        written.insert(rel.to_owned());
        Ok(())
    }

    /// The directory `rel` under the root, reached without following any symlink. Missing
    /// components are created (0755, root) when `create`, else `None` is returned.
    fn parent_dir(
        &self,
        rel: &Path,
        at: &At<'_>,
        create: bool,
        written: &mut HashSet<PathBuf>,
    ) -> Result<Option<PathBuf>, ImageError> {
        let mut path = self.root.clone();
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            path.push(comp);
            sofar.push(comp);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(at.refuse(format!(
                        "its parent {} is a symlink (writes never follow symlinks)",
                        sofar.display()
                    )))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(
                        at.refuse(format!("its parent {} is not a directory", sofar.display()))
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    make_dir(&path)?;
                    written.insert(sofar.clone());
                }
                Err(e) => return Err(ImageError::io("inspecting", &path)(e)),
            }
        }
        Ok(Some(path))
    }
}

/// A member path as a relative path inside the root: `.` dropped, `..` applied lexically
/// (no component is a symlink, see [`Unpacker::parent_dir`], so lexical is exact), and
/// refused when absolute or when it climbs above the root.
fn normalize(raw: &[u8], at: &At<'_>) -> Result<PathBuf, ImageError> {
    if raw.first() == Some(&b'/') {
        return Err(at.refuse("an absolute path"));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(at.refuse("a path that leaves the root"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.iter().map(|p| OsStr::from_bytes(p)).collect())
}

fn id(value: io::Result<u64>, at: &At<'_>) -> Result<u32, ImageError> {
    value
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| at.refuse("a uid or gid that is not a 32-bit number"))
}

fn make_dir(path: &Path) -> Result<(), ImageError> {
    fs::create_dir(path).map_err(ImageError::io("creating the directory", path))?;
    fs::set_permissions(path, Permissions::from_mode(0o755))
        .map_err(ImageError::io("setting the mode of", path))
}

/// Removes whatever is at `path` (a directory with its content), never following a symlink;
/// nothing there is fine.
fn remove_any(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(ImageError::io("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(ImageError::io("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("inspecting", path)(e)),
    }
}

/// An opaque directory: removes its lower-layer content, keeping what this layer wrote
/// (entries may come before the marker in the tar).
fn clear_lower(dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> Result<(), ImageError> {
    for child in fs::read_dir(dir).map_err(ImageError::io("listing", dir))? {
        let child = child.map_err(ImageError::io("listing", dir))?;
        let child_rel = rel.join(child.file_name());
        let path = child.path();
        if written.contains(&child_rel) {
            let is_dir =
                fs::symlink_metadata(&path).map_err(ImageError::io("inspecting", &path))?.is_dir();
            if is_dir {
                clear_lower(&path, &child_rel, written)?;
            }
        } else {
            remove_any(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::image::testkit::{layer_tar, Member as M};

    /// A root under a fresh temp dir; the temp dir's other content shows any escape.
    fn unpack(layers: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf, Result<(), ImageError>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("staging/root");
        fs::create_dir_all(tmp.path().join("staging")).unwrap();
        let mut u = Unpacker::new(&root, UnpackLimits::default()).unwrap();
        let mut res = Ok(());
        for (i, l) in layers.iter().enumerate() {
            res = u.apply_layer(&l[..], &format!("layer{i}"));
            if res.is_err() {
                break;
            }
        }
        (tmp, root, res)
    }

    fn refused(err: Result<(), ImageError>, what: &str) -> String {
        match err {
            Err(e @ ImageError::Hostile { .. }) => e.to_string(),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }

    /// Everything under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn hostile_members_are_refused_and_nothing_lands_outside() {
        let unique = format!("hearth-unpack-{}", uuid::Uuid::new_v4().simple());
        let outside = std::env::temp_dir().join(&unique);
        let outside_s = outside.display().to_string();
        let cases: Vec<(&str, Vec<M<'_>>)> = vec![
            ("../escape", vec![M::File("../escape", b"x")]),
            ("/abs/path", vec![M::File("/abs/path", b"x")]),
            ("a/../../x", vec![M::Dir("a/"), M::File("a/../../x", b"x")]),
            (
                "symlink out then through",
                vec![M::Symlink("l", &outside_s), M::File("l/file", b"x")],
            ),
            ("relative symlink up", vec![M::Symlink("l", "../../.."), M::File("l/x", b"x")]),
            ("symlink dir then dir", vec![M::Symlink("l", "/tmp"), M::Dir("l/sub/")]),
            ("hard link to /etc/passwd", vec![M::HardLink("p", "/etc/passwd")]),
            ("hard link to ../x", vec![M::HardLink("p", "../x")]),
            ("hard link to a missing file", vec![M::HardLink("p", "nothing")]),
            (
                "hard link through a symlink",
                vec![M::Symlink("l", "/etc"), M::HardLink("p", "l/passwd")],
            ),
            ("char device", vec![M::CharDevice("dev/null")]),
            ("fifo", vec![M::Fifo("pipe")]),
        ];
        for (what, members) in cases {
            let (tmp, root, res) = unpack(&[layer_tar(&members)]);
            let msg = refused(res, what);
            assert!(!msg.is_empty());
            assert!(!outside.exists(), "{what}: wrote {}", outside.display());
            assert!(
                !tmp.path().join("escape").exists() && !tmp.path().join("x").exists(),
                "{what}"
            );
            // Only the staging dir with the (to be discarded) root exists beside it.
            assert_eq!(
                tree(tmp.path()).iter().filter(|p| !p.starts_with("staging")).count(),
                0,
                "{what}"
            );
            assert!(root.is_dir());
        }
    }

    #[test]
    fn symlinks_are_kept_verbatim_and_setuid_dropped() {
        let layer = layer_tar(&[
            M::Dir("usr/lib/"),
            M::File("usr/lib/ld.so", b"loader"),
            M::Symlink("usr/lib64", "/usr/lib"),
            M::Symlink("lib", "usr/lib"),
            M::FileMode("usr/bin/su", b"su", 0o4755),
            M::FileMode("tmp-sticky", b"", 0o1777),
        ]);
        let (_tmp, root, res) = unpack(&[layer]);
        res.unwrap();
        assert_eq!(fs::read_link(root.join("usr/lib64")).unwrap(), Path::new("/usr/lib"));
        assert_eq!(fs::read_link(root.join("lib")).unwrap(), Path::new("usr/lib"));
        assert_eq!(fs::metadata(root.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(fs::metadata(root.join("tmp-sticky")).unwrap().mode() & 0o7777, 0o1777);
    }

    #[test]
    fn whiteouts_opaque_dirs_and_hard_links_across_layers() {
        let lower = layer_tar(&[
            M::Dir("etc/"),
            M::File("etc/keep", b"k"),
            M::File("etc/gone", b"g"),
            M::Dir("etc/gonedir/"),
            M::File("etc/gonedir/f", b"f"),
            M::Dir("opq/"),
            M::File("opq/old", b"o"),
            M::Dir("opq/sub/"),
            M::File("opq/sub/old", b"o"),
            M::File("bin/tool", b"tool"),
        ]);
        let upper = layer_tar(&[
            M::File("etc/.wh.gone", b""),
            M::File("etc/.wh.gonedir", b""),
            M::File("opq/new", b"n"),
            M::File("opq/.wh..wh..opq", b""),
            M::HardLink("bin/tool-link", "bin/tool"),
            M::File("etc/keep", b"replaced"),
        ]);
        let (_tmp, root, res) = unpack(&[lower, upper]);
        res.unwrap();
        assert_eq!(
            tree(&root),
            ["bin", "bin/tool", "bin/tool-link", "etc", "etc/keep", "opq", "opq/new",]
        );
        assert_eq!(fs::read(root.join("etc/keep")).unwrap(), b"replaced");
        let a = fs::metadata(root.join("bin/tool")).unwrap();
        let b = fs::metadata(root.join("bin/tool-link")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    }

    #[test]
    fn size_and_entry_caps_refuse() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = layer_tar(&[M::File("a", &[0u8; 100]), M::File("b", &[0u8; 100])]);
        let limits = UnpackLimits { max_bytes: 150, max_entries: 10 };
        let mut u = Unpacker::new(&tmp.path().join("r1"), limits).unwrap();
        assert!(refused(u.apply_layer(&layer[..], "l"), "size").contains("more than 150 bytes"));
        let limits = UnpackLimits { max_bytes: 1000, max_entries: 1 };
        let mut u = Unpacker::new(&tmp.path().join("r2"), limits).unwrap();
        assert!(refused(u.apply_layer(&layer[..], "l"), "entries").contains("more than 1 entries"));
    }
}
