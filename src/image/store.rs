//! `ImageStore`: the images of one host, in `<data-dir>/images` (0700, owned by the daemon's
//! user, root):
//!
//! ```text
//! images.lock            flock held by every change (import, rm, staging cleanup)
//! index.json             {"names": {"docker.io/org/app:1": "sha256:..."}}: the only record
//!                        of names, rewritten by write-temp + rename
//! roots/<hex>/rootfs     the flattened root, shared read-only by the image's containers
//! roots/<hex>/image.json digest, run configuration, size, import time
//! staging/               imports in progress; emptied at open when no change holds the lock
//! ```
//!
//! A change takes the lock for its whole length, so two admin commands never interleave;
//! readers (the daemon) take no lock and still never see a half state: a root is unpacked in
//! staging and renamed into `roots/` before `index.json` names it, and on removal the name
//! goes from `index.json` before the root is renamed back into staging and deleted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::{apply_layers, extract_archive, read_dir, ImageSource};
use super::reference::normalize;
use super::unpack::{UnpackLimits, Unpacker};
use super::ImageError;
use crate::model::{now_millis, ImageDigest};

const LOCK: &str = "images.lock";
const INDEX: &str = "index.json";
const ROOTS: &str = "roots";
const STAGING: &str = "staging";
const ROOTFS: &str = "rootfs";
const IMAGE_JSON: &str = "image.json";

/// What a container of the image runs, from the image's config (`config.Entrypoint` etc.).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` lines.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub digest: ImageDigest,
    /// Its names, normalised (`docker.io/library/python:3`), sorted; may be empty when a name
    /// was moved to another image by a later import.
    pub names: Vec<String>,
    /// The flattened root file system (`roots/<hex>/rootfs`).
    pub root: PathBuf,
    pub config: ImageConfig,
    /// Bytes of regular-file content in the root.
    pub size_bytes: u64,
    pub imported_at_ms: u64,
}

/// `roots/<hex>/image.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ImageRecord {
    digest: ImageDigest,
    config: ImageConfig,
    size_bytes: u64,
    imported_at_ms: u64,
}

/// `index.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    names: BTreeMap<String, ImageDigest>,
}

/// The image store on one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    limits: UnpackLimits,
}

/// A directory in staging, removed when dropped (an import that failed or finished).
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove staging");
            }
        }
    }
}

impl ImageStore {
    /// Opens (creating) the store in `dir`, which must be this user's alone; empties staging
    /// unless another process is in the middle of a change.
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        Self::open_with(dir, UnpackLimits::default())
    }

    /// The store in `dir` for reading only (the daemon's `GET /api/v1`): creates, cleans and
    /// locks nothing; `None` when no image was ever imported there.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, ImageError> {
        match fs::symlink_metadata(dir.join(ROOTS)) {
            Ok(m) if m.is_dir() => {
                Ok(Some(Self { dir: dir.to_owned(), limits: UnpackLimits::default() }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("inspecting", dir.join(ROOTS))(e)),
        }
    }

    /// [`open`](Self::open) with other unpack limits (tests).
    pub fn open_with(dir: &Path, limits: UnpackLimits) -> Result<Self, ImageError> {
        fs::create_dir_all(dir).map_err(ImageError::io("creating the image store", dir))?;
        let meta = fs::symlink_metadata(dir).map_err(ImageError::io("inspecting", dir))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            return Err(ImageError::Io {
                op: "opening the image store",
                path: dir.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("not a directory owned by uid {me}"),
                ),
            });
        }
        fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(ImageError::io("setting the mode of", dir))?;
        for sub in [ROOTS, STAGING] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(ImageError::io("creating", &path))?;
        }
        let store = Self { dir: dir.to_owned(), limits };
        let lock = store.lock_file()?;
        match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => store.clean_staging()?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(ImageError::io("locking", dir.join(LOCK))(e)),
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_file(&self) -> Result<File, ImageError> {
        let path = self.dir.join(LOCK);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("opening", &path))
    }

    /// Takes the store's lock (blocking); released when the file is dropped.
    fn lock(&self) -> Result<File, ImageError> {
        let file = self.lock_file()?;
        flock(&file, libc::LOCK_EX).map_err(ImageError::io("locking", self.dir.join(LOCK)))?;
        Ok(file)
    }

    fn clean_staging(&self) -> Result<(), ImageError> {
        let staging = self.dir.join(STAGING);
        for entry in fs::read_dir(&staging).map_err(ImageError::io("listing", &staging))? {
            let path = entry.map_err(ImageError::io("listing", &staging))?.path();
            let meta = fs::symlink_metadata(&path).map_err(ImageError::io("inspecting", &path))?;
            if meta.is_dir() {
                fs::remove_dir_all(&path).map_err(ImageError::io("removing", &path))?;
            } else {
                fs::remove_file(&path).map_err(ImageError::io("removing", &path))?;
            }
        }
        Ok(())
    }

    fn new_staging(&self) -> Result<Staging, ImageError> {
        let path = self.dir.join(STAGING).join(uuid::Uuid::new_v4().simple().to_string());
        fs::create_dir(&path).map_err(ImageError::io("creating", &path))?;
        Ok(Staging(path))
    }

    fn image_dir(&self, digest: &ImageDigest) -> PathBuf {
        self.dir.join(ROOTS).join(digest.hex())
    }

    /// Imports an OCI archive or a `docker save` archive. `name`, when given, is the image's
    /// name in place of the names the archive carries; without it the archive's names are
    /// used, and an archive without any is refused.
    pub fn import_archive(&self, file: &Path, name: Option<&str>) -> Result<ImageInfo, ImageError> {
        let name = name.map(normalize).transpose()?;
        let _lock = self.lock()?;
        let work = self.new_staging()?;
        let extracted = work.0.join("archive");
        fs::create_dir(&extracted).map_err(ImageError::io("creating", &extracted))?;
        extract_archive(file, &extracted)?;
        let src = read_dir(&extracted)?;
        self.install(src, name, &file.display().to_string(), &work)
    }

    /// Imports an OCI image layout directory (or an extracted `docker save` archive); `name`
    /// as for [`import_archive`](Self::import_archive). The directory is only read.
    pub fn import_layout(&self, dir: &Path, name: Option<&str>) -> Result<ImageInfo, ImageError> {
        let name = name.map(normalize).transpose()?;
        let _lock = self.lock()?;
        let work = self.new_staging()?;
        let src = read_dir(dir)?;
        self.install(src, name, &dir.display().to_string(), &work)
    }

    /// Unpacks `src` unless its root is already there, then points its names at it. Called
    /// with the lock held.
    fn install(
        &self,
        src: ImageSource,
        name: Option<String>,
        what: &str,
        work: &Staging,
    ) -> Result<ImageInfo, ImageError> {
        let mut names = match name {
            Some(name) => vec![name],
            None => src.names.clone(),
        };
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(ImageError::NoName(what.to_owned()));
        }
        let target = self.image_dir(&src.digest);
        if !target.join(IMAGE_JSON).is_file() {
            let image = work.0.join("image");
            fs::create_dir(&image).map_err(ImageError::io("creating", &image))?;
            let mut unpacker = Unpacker::new(&image.join(ROOTFS), self.limits)?;
            apply_layers(&src, &mut unpacker)?;
            add_mount_points(&image.join(ROOTFS))?;
            let record = ImageRecord {
                digest: src.digest,
                config: src.config.clone(),
                size_bytes: unpacker.bytes(),
                imported_at_ms: now_millis(),
            };
            write_json(&image.join(IMAGE_JSON), &record)?;
            fs::set_permissions(&image, Permissions::from_mode(0o755))
                .map_err(ImageError::io("setting the mode of", &image))?;
            // A root left by a crash between rename and index is complete (it was renamed
            // whole): only a directory without image.json is a leftover to replace.
            if target.exists() {
                fs::remove_dir_all(&target).map_err(ImageError::io("removing", &target))?;
            }
            fs::rename(&image, &target).map_err(ImageError::io("moving into place", &target))?;
            tracing::info!(digest = %src.digest, bytes = record.size_bytes, "image unpacked");
        }
        let mut index = self.read_index()?;
        for name in names {
            index.names.insert(name, src.digest);
        }
        self.write_index(&index)?;
        self.get(&src.digest)?.ok_or_else(|| ImageError::NotFound(src.digest.to_string()))
    }

    /// Every image, sorted by first name (nameless ones last, by digest).
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let roots = self.dir.join(ROOTS);
        let index = self.read_index()?;
        let mut out = Vec::new();
        for entry in fs::read_dir(&roots).map_err(ImageError::io("listing", &roots))? {
            let entry = entry.map_err(ImageError::io("listing", &roots))?;
            let Some(digest) =
                entry.file_name().to_str().and_then(|n| ImageDigest::parse_hex(n).ok())
            else {
                continue;
            };
            if let Some(info) = self.info(&digest, &index)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| {
            (a.names.is_empty(), a.names.first(), a.digest).cmp(&(
                b.names.is_empty(),
                b.names.first(),
                b.digest,
            ))
        });
        Ok(out)
    }

    /// By any spelling of a name, or by `sha256:<hex>`.
    pub fn resolve(&self, name_or_digest: &str) -> Result<Option<ImageInfo>, ImageError> {
        if name_or_digest.starts_with("sha256:") {
            let digest = name_or_digest.parse::<ImageDigest>().map_err(|e| {
                ImageError::BadName { name: name_or_digest.to_owned(), reason: e.to_string() }
            })?;
            return self.get(&digest);
        }
        let name = normalize(name_or_digest)?;
        let index = self.read_index()?;
        match index.names.get(&name) {
            Some(digest) => self.info(digest, &index),
            None => Ok(None),
        }
    }

    pub fn get(&self, digest: &ImageDigest) -> Result<Option<ImageInfo>, ImageError> {
        self.info(digest, &self.read_index()?)
    }

    fn info(&self, digest: &ImageDigest, index: &Index) -> Result<Option<ImageInfo>, ImageError> {
        let dir = self.image_dir(digest);
        let path = dir.join(IMAGE_JSON);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("reading", &path)(e)),
        };
        let record: ImageRecord = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let names =
            index.names.iter().filter(|(_, d)| *d == digest).map(|(n, _)| n.clone()).collect();
        Ok(Some(ImageInfo {
            digest: *digest,
            names,
            root: dir.join(ROOTFS),
            config: record.config,
            size_bytes: record.size_bytes,
            imported_at_ms: record.imported_at_ms,
        }))
    }

    /// Removes a name, or by digest the image with all its names. The root is deleted when no
    /// name is left. `in_use` returns the actions that still use this image; non-empty ->
    /// refused, nothing changed. Returns the image as it was before.
    pub fn remove(
        &self,
        name_or_digest: &str,
        in_use: &dyn Fn(&ImageInfo) -> Vec<String>,
    ) -> Result<ImageInfo, ImageError> {
        let _lock = self.lock()?;
        let info = self
            .resolve(name_or_digest)?
            .ok_or_else(|| ImageError::NotFound(name_or_digest.to_owned()))?;
        let actions = in_use(&info);
        if !actions.is_empty() {
            let image = info.names.first().cloned().unwrap_or_else(|| info.digest.to_string());
            return Err(ImageError::InUse { image, actions });
        }
        let mut index = self.read_index()?;
        if name_or_digest.starts_with("sha256:") {
            index.names.retain(|_, d| *d != info.digest);
        } else {
            index.names.remove(&normalize(name_or_digest)?);
        }
        self.write_index(&index)?;
        if !index.names.values().any(|d| *d == info.digest) {
            let dir = self.image_dir(&info.digest);
            let trash = self.new_staging()?;
            let moved = trash.0.join("removed");
            fs::rename(&dir, &moved).map_err(ImageError::io("moving out of roots", &dir))?;
            fs::remove_dir_all(&moved).map_err(ImageError::io("removing", &moved))?;
            tracing::info!(digest = %info.digest, "image removed");
        }
        Ok(info)
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.dir.join(INDEX);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Corrupt { path, reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io("reading", path)(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        write_json(&self.dir.join(INDEX), index)
    }
}

/// flock(2) on the store's lock file (the crate's MSRV predates `File::lock`). The lock goes
/// with the open file description, so it is released when the file is closed.
fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`).
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The directories a container's mounts land on (/proc, /dev, /sys, /tmp), created in the
/// root when the image has none: the root is shared and read-only once in place, and runc
/// would otherwise create them in it at every start (writing into the shared root, racing
/// between containers). Images built by `docker build` often lack them: Docker makes them in
/// each container's writable layer. An entry of that name that is not a directory (a symlink,
/// a file) is left alone and the container simply goes without that mount.
fn add_mount_points(root: &Path) -> Result<(), ImageError> {
    for (dir, mode) in [("proc", 0o555), ("dev", 0o755), ("sys", 0o555), ("tmp", 0o1777)] {
        let path = root.join(dir);
        match fs::create_dir(&path) {
            Ok(()) => fs::set_permissions(&path, Permissions::from_mode(mode))
                .map_err(ImageError::io("setting the mode of", &path))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io("creating", &path)(e)),
        }
    }
    Ok(())
}

/// Writes JSON through a temporary file and a rename, so a reader sees the old or the new.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ImageError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ImageError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    let mut file = File::create(&tmp).map_err(ImageError::io("creating", &tmp))?;
    file.write_all(&bytes).map_err(ImageError::io("writing", &tmp))?;
    file.sync_all().map_err(ImageError::io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(ImageError::io("renaming into place", path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use sha2::Digest as _;

    use super::*;
    use crate::image::testkit::{layer_tar, write_docker_archive, write_layout, Member as M};

    fn two_layers() -> Vec<Vec<u8>> {
        vec![
            layer_tar(&[M::Dir("etc/"), M::File("etc/removed", b"r"), M::File("bin/proxy", b"p")]),
            layer_tar(&[
                M::File("etc/.wh.removed", b""),
                M::HardLink("bin/proxy-link", "bin/proxy"),
            ]),
        ]
    }

    fn staging_is_empty(store: &ImageStore) -> bool {
        fs::read_dir(store.dir().join(STAGING)).unwrap().next().is_none()
    }

    #[test]
    fn imports_gzip_layout_and_docker_archive_as_one_image() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("images")).unwrap();
        let layout = tmp.path().join("layout");
        let hex = write_layout(&layout, &two_layers(), true, Some("org/app:1"));
        let info = store.import_layout(&layout, None).unwrap();
        assert_eq!(info.digest.hex(), hex);
        assert_eq!(info.names, ["docker.io/org/app:1"]);
        assert_eq!(info.config.entrypoint, ["/bin/proxy"]);
        assert!(info.root.join("bin/proxy").is_file());
        assert!(!info.root.join("etc/removed").exists());
        assert_eq!(fs::metadata(info.root.join("bin/proxy-link")).unwrap().nlink(), 2);
        assert_eq!(fs::metadata(store.dir()).unwrap().mode() & 0o777, 0o700);
        let before = fs::metadata(info.root.join("bin/proxy")).unwrap().ino();

        // The same image from a docker archive: same digest, a name added, no second unpack.
        let archive = tmp.path().join("image.tar");
        write_docker_archive(&archive, &two_layers(), "localhost:5000/app:2");
        let again = store.import_archive(&archive, None).unwrap();
        assert_eq!(again.digest, info.digest);
        assert_eq!(again.names, ["docker.io/org/app:1", "localhost:5000/app:2"]);
        assert_eq!(fs::metadata(again.root.join("bin/proxy")).unwrap().ino(), before);
        assert!(staging_is_empty(&store));

        // Any spelling resolves; the digest too.
        for name in
            ["org/app:1", "docker.io/org/app:1", "localhost:5000/app:2", &info.digest.to_string()]
        {
            assert_eq!(store.resolve(name).unwrap().unwrap().digest, info.digest, "{name}");
        }
        assert!(store.resolve("org/app:2").unwrap().is_none());
        assert_eq!(store.list().unwrap().len(), 1);

        // A name given at import replaces the archive's.
        let named = store.import_layout(&layout, Some("other")).unwrap();
        assert!(named.names.contains(&"docker.io/library/other:latest".to_owned()));
    }

    #[test]
    fn concurrent_imports_serialise_on_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images");
        let layout = tmp.path().join("layout");
        write_layout(&layout, &two_layers(), true, None);
        // Separate handles, as two admin processes would have.
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (dir, layout) = (dir.clone(), layout.clone());
                std::thread::spawn(move || {
                    let store = ImageStore::open(&dir).unwrap();
                    store.import_layout(&layout, Some(&format!("app:{i}"))).unwrap().digest
                })
            })
            .collect();
        let digests: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(digests.windows(2).all(|w| w[0] == w[1]));
        let store = ImageStore::open(&dir).unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].names.len(), 4, "{:?}", list[0].names);
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn refusals_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("images")).unwrap();
        // No name anywhere.
        let layout = tmp.path().join("nameless");
        write_layout(&layout, &two_layers(), false, Some("1"));
        assert!(matches!(store.import_layout(&layout, None), Err(ImageError::NoName(_))));
        // A hostile layer.
        let outside = tmp.path().join("outside");
        let target = outside.display().to_string();
        let evil = vec![layer_tar(&[M::Symlink("l", &target), M::File("l/owned", b"x")])];
        let layout = tmp.path().join("evil");
        write_layout(&layout, &evil, true, None);
        let err = store.import_layout(&layout, Some("evil")).unwrap_err();
        assert!(matches!(err, ImageError::Hostile { .. }), "{err}");
        assert!(!outside.exists());
        // A layer whose bytes are not what its digest says.
        let layout = tmp.path().join("tampered");
        write_layout(&layout, &two_layers(), false, Some("org/t:1"));
        let manifest_layer = two_layers()[0].clone();
        let hex: String =
            sha2::Sha256::digest(&manifest_layer).iter().map(|b| format!("{b:02x}")).collect();
        let mut bytes = manifest_layer;
        let at = bytes.len() - 1100;
        bytes[at] ^= 1;
        fs::write(layout.join("blobs/sha256").join(hex), bytes).unwrap();
        let err = store.import_layout(&layout, None).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        // A layout whose layer blob is a device (it would never end).
        let layout = tmp.path().join("device");
        write_layout(&layout, &two_layers(), false, Some("org/d:1"));
        let layer_hex: String =
            sha2::Sha256::digest(&two_layers()[0]).iter().map(|b| format!("{b:02x}")).collect();
        let blob = layout.join("blobs/sha256").join(layer_hex);
        fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
        let err = store.import_layout(&layout, None).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Nothing was stored, staging is empty.
        assert!(store.list().unwrap().is_empty());
        assert!(staging_is_empty(&store));
        assert_eq!(fs::read_dir(store.dir().join(ROOTS)).unwrap().count(), 0);
    }

    #[test]
    fn remove_by_name_then_by_digest_and_in_use_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("images")).unwrap();
        let layout = tmp.path().join("layout");
        write_layout(&layout, &two_layers(), false, None);
        store.import_layout(&layout, Some("a:1")).unwrap();
        let info = store.import_layout(&layout, Some("b:1")).unwrap();
        let used = |_: &ImageInfo| vec!["guest/hello".to_owned()];
        let err = store.remove("a:1", &used).unwrap_err();
        assert!(err.to_string().contains("guest/hello"), "{err}");
        let unused = |_: &ImageInfo| Vec::new();
        store.remove("a:1", &unused).unwrap();
        assert!(info.root.is_dir(), "b:1 still names it");
        assert!(store.resolve("a:1").unwrap().is_none());
        store.import_layout(&layout, Some("c:1")).unwrap();
        store.remove(&info.digest.to_string(), &unused).unwrap();
        assert!(!info.root.exists());
        assert!(store.list().unwrap().is_empty());
        assert!(store.resolve("c:1").unwrap().is_none());
        assert!(matches!(store.remove("b:1", &unused), Err(ImageError::NotFound(_))));
        assert!(staging_is_empty(&store));
    }
}
