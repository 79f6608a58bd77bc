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
