//! Reading an image from what an administrator hands over: an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/...`), an OCI archive (a tar of such a layout)
//! or a `docker save` archive (`manifest.json` naming the config and the layers).
//!
//! Archives are first extracted into the store's staging directory (regular files and
//! directories only, member paths checked like layer paths), so that every format is read
//! from a directory. Every blob is checked against the digest that names it: the config
//! against the manifest's descriptor (or its file name), each layer as stored against its
//! descriptor, and each layer uncompressed against the config's `rootfs.diff_ids`, which is
//! what a `docker save` archive can be checked by. Layers are checked while they are being
//! unpacked (one read); a mismatch fails the import and the staging root is discarded.
//! Multi-platform indexes resolve to linux/amd64.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::reference::normalize;
use super::unpack::Unpacker;
use super::{ImageConfig, ImageError};
use crate::model::ImageDigest;

/// The largest JSON document (index, manifest, config) read from an image: real ones are a
/// few KB; this keeps a hostile one from filling memory.
const MAX_DOCUMENT: u64 = 4 << 20;
/// The most data read after a layer's end-of-archive marker (tar writers pad to 10 KiB).
const MAX_TRAILER: u64 = 64 << 20;
/// How deep image indexes may nest (an index of indexes is legal; a loop is not).
const MAX_INDEX_DEPTH: usize = 4;
/// The annotation an OCI layout names an image by (a full reference or only a tag).
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's and Docker's annotation with the full name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// One layer, where it is and what it must hash to.
#[derive(Debug, Clone)]
pub struct LayerSource {
    pub path: PathBuf,
    pub compression: Compression,
    /// sha256 hex of the blob as stored, when something names it.
    pub digest: Option<String>,
    /// sha256 hex of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// An image read from a layout or an archive, its blobs not yet unpacked.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// sha256 of the config blob: the image's identity.
    pub digest: ImageDigest,
    pub config: ImageConfig,
    pub layers: Vec<LayerSource>,
    /// The names the image carries (normalised), possibly none.
    pub names: Vec<String>,
}

/// Reads an image from a directory holding an OCI layout or an extracted `docker save`
/// archive (`manifest.json` wins when both are there: its `RepoTags` are full names).
pub fn read_dir(dir: &Path) -> Result<ImageSource, ImageError> {
    if dir.join("manifest.json").is_file() {
        read_docker(dir)
    } else if dir.join("index.json").is_file() {
        read_layout(dir)
    } else {
        Err(ImageError::malformed(
            dir.display().to_string(),
            "neither an OCI image layout (index.json) nor a docker archive (manifest.json)",
        ))
    }
}

/// Extracts the regular files and directories of an archive (an OCI or docker archive) into
/// `into`, refusing member paths that leave it. Symlinks and other members are skipped: the
/// formats reference blobs by path, never through links.
pub fn extract_archive(file: &Path, into: &Path) -> Result<(), ImageError> {
    let what = || file.display().to_string();
    let reader = File::open(file).map_err(ImageError::io("opening", file))?;
    let mut archive = tar::Archive::new(BufReader::new(reader));
    let entries = archive.entries().map_err(|e| ImageError::malformed(what(), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::malformed(what(), e))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = member_path(&name).ok_or_else(|| ImageError::Hostile {
            layer: what(),
            entry: name.clone(),
            reason: "a path that is absolute or leaves the archive".into(),
        })?;
        let path = into.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&path).map_err(ImageError::io("creating", &path))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
                }
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(ImageError::io("creating", &path))?;
                io::copy(&mut entry, &mut out).map_err(ImageError::io("writing", &path))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A relative path naming a file inside an image directory, or `None` when it is absolute,
/// empty or climbs out.
fn member_path(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.iter().collect())
}

/// Reads a file of at most [`MAX_DOCUMENT`] bytes.
fn read_small(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(ImageError::io("opening", path))?;
    let mut buf = Vec::new();
    file.take(MAX_DOCUMENT + 1).read_to_end(&mut buf).map_err(ImageError::io("reading", path))?;
    if buf.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::malformed(path.display().to_string(), "larger than 4 MiB"));
    }
    Ok(buf)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex of a `sha256:<hex>` digest, refused when not that form (it becomes a path).
fn sha256_of(digest: &str, what: &str) -> Result<String, ImageError> {
    ImageDigest::parse_hex(digest)
        .ok()
        .filter(|_| digest.starts_with("sha256:"))
        .map(|d| d.hex())
        .ok_or_else(|| ImageError::malformed(what, format!("{digest:?} is not a sha256 digest")))
}

fn check(what: &str, expected: &str, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// A blob of an OCI layout, read whole (documents only) and checked.
fn layout_blob(dir: &Path, desc: &Descriptor, what: &str) -> Result<Vec<u8>, ImageError> {
    let hex = sha256_of(desc.digest().as_ref(), what)?;
    let bytes = read_small(&dir.join("blobs/sha256").join(&hex))?;
    check(what, &hex, &bytes)?;
    Ok(bytes)
}

fn is_index(media: &MediaType) -> bool {
    match media {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

fn is_amd64(desc: &Descriptor) -> bool {
    desc.platform()
        .as_ref()
        .is_some_and(|p| *p.architecture() == Arch::Amd64 && *p.os() == Os::Linux)
}

/// A name an index entry carries: containerd's full name, or the OCI `ref.name` when it is a
/// full reference rather than a bare tag (a tag alone, like `1`, names no image).
fn names_of(desc: &Descriptor) -> Vec<String> {
    let Some(ann) = desc.annotations() else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(name) = ann.get(CONTAINERD_NAME) {
        out.extend(normalize(name).ok());
    }
    if let Some(name) = ann.get(REF_NAME).filter(|n| n.contains('/') || n.contains(':')) {
        out.extend(normalize(name).ok());
    }
    out
}

/// Reads an OCI image layout directory.
pub fn read_layout(dir: &Path) -> Result<ImageSource, ImageError> {
    let index_path = dir.join("index.json");
    let what = index_path.display().to_string();
    let index: ImageIndex = serde_json::from_slice(&read_small(&index_path)?)
        .map_err(|e| ImageError::malformed(&what, e))?;
    // One image per import: the entries left after dropping other platforms must agree.
    let mut candidates: Vec<&Descriptor> =
        index.manifests().iter().filter(|d| d.platform().is_none() || is_amd64(d)).collect();
    candidates.dedup_by(|a, b| a.digest() == b.digest());
    let names: Vec<String> = candidates.iter().flat_map(|d| names_of(d)).collect();
    let desc = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(ImageError::malformed(&what, "no linux/amd64 image in the index")),
        many => {
            return Err(ImageError::malformed(
                &what,
                format!("{} different images; import takes a layout with one", many.len()),
            ))
        }
    };
    let manifest_desc = pick_manifest(dir, desc, 0)?;
    let manifest_what = format!("manifest {}", manifest_desc.digest());
    let manifest: ImageManifest =
        serde_json::from_slice(&layout_blob(dir, &manifest_desc, &manifest_what)?)
            .map_err(|e| ImageError::malformed(&manifest_what, e))?;
    let config_desc = manifest.config();
    let config_what = format!("config {}", config_desc.digest());
    let config_bytes = layout_blob(dir, config_desc, &config_what)?;
    let (digest, config, diff_ids) = parse_config(&config_bytes, &config_what)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::malformed(
            &manifest_what,
            format!(
                "{} layers but the config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let hex = sha256_of(layer.digest().as_ref(), &manifest_what)?;
        let compression = match layer.media_type() {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::None,
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Compression::Gzip
            }
            MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Compression::Gzip
            }
            MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => {
                Compression::None
            }
            other => {
                return Err(ImageError::UnsupportedLayer {
                    digest: layer.digest().to_string(),
                    media_type: other.to_string(),
                })
            }
        };
        layers.push(LayerSource {
            path: dir.join("blobs/sha256").join(&hex),
            compression,
            digest: Some(hex),
            diff_id,
        });
    }
    Ok(ImageSource { digest, config, layers, names })
}

/// Follows image indexes down to one manifest, choosing linux/amd64.
fn pick_manifest(dir: &Path, desc: Descriptor, depth: usize) -> Result<Descriptor, ImageError> {
    if !is_index(desc.media_type()) {
        return Ok(desc);
    }
    let what = format!("index {}", desc.digest());
    if depth >= MAX_INDEX_DEPTH {
        return Err(ImageError::malformed(what, "image indexes nested too deep"));
    }
    let index: ImageIndex = serde_json::from_slice(&layout_blob(dir, &desc, &what)?)
        .map_err(|e| ImageError::malformed(&what, e))?;
    let chosen = index
        .manifests()
        .iter()
        .find(|d| is_amd64(d))
        .cloned()
        .ok_or_else(|| ImageError::malformed(&what, "no linux/amd64 image"))?;
    pick_manifest(dir, chosen, depth + 1)
}

/// The image's id, its run configuration and its diff_ids (hex) from the config blob.
fn parse_config(
    bytes: &[u8],
    what: &str,
) -> Result<(ImageDigest, ImageConfig, Vec<String>), ImageError> {
    let parsed: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
    if *parsed.os() != Os::Linux || *parsed.architecture() != Arch::Amd64 {
        return Err(ImageError::malformed(
            what,
            format!("an image for {}/{}, not linux/amd64", parsed.os(), parsed.architecture()),
        ));
    }
    let diff_ids = parsed
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| sha256_of(d, what))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = parsed.config().clone().unwrap_or_default();
    let config = ImageConfig {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        user: cfg.user().clone().filter(|u| !u.is_empty()),
    };
    let digest = ImageDigest::from_bytes(Sha256::digest(bytes).into());
    Ok((digest, config, diff_ids))
}

/// One image of a `docker save` manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The sha256 hex a blob's file name states (`<hex>`, `<hex>.tar`, `<hex>.json`,
/// `blobs/sha256/<hex>`), if it states one.
fn digest_in_name(path: &Path) -> Option<String> {
    let stem = path.file_name()?.to_str()?;
    let stem = stem.strip_suffix(".tar").or_else(|| stem.strip_suffix(".json")).unwrap_or(stem);
    ImageDigest::parse_hex(stem).ok().map(|d| d.hex())
}

/// Reads an extracted `docker save` archive.
pub fn read_docker(dir: &Path) -> Result<ImageSource, ImageError> {
    let manifest_path = dir.join("manifest.json");
    let what = manifest_path.display().to_string();
    let entries: Vec<DockerEntry> = serde_json::from_slice(&read_small(&manifest_path)?)
        .map_err(|e| ImageError::malformed(&what, e))?;
    let entry = match entries.as_slice() {
        [one] => one,
        [] => return Err(ImageError::malformed(&what, "no image")),
        many => {
            return Err(ImageError::malformed(
                &what,
                format!("{} images; import takes an archive with one", many.len()),
            ))
        }
    };
    let inside = |name: &str| {
        member_path(name).map(|p| dir.join(p)).ok_or_else(|| {
            ImageError::malformed(&what, format!("{name:?} is not a path inside the archive"))
        })
    };
    let config_path = inside(&entry.config)?;
    let config_bytes = read_small(&config_path)?;
    let config_what = format!("config {}", entry.config);
    if let Some(hex) = digest_in_name(&config_path) {
        check(&config_what, &hex, &config_bytes)?;
    }
    let (digest, config, diff_ids) = parse_config(&config_bytes, &config_what)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(ImageError::malformed(
            &what,
            format!(
                "{} layers but the config lists {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
        let path = inside(name)?;
        layers.push(LayerSource {
            compression: sniff(&path)?,
            digest: digest_in_name(&path),
            path,
            diff_id,
        });
    }
    let names =
        entry.repo_tags.iter().flatten().map(|t| normalize(t)).collect::<Result<Vec<_>, _>>()?;
    Ok(ImageSource { digest, config, layers, names })
}

/// A docker archive's layers carry no media type: gzip is told by its magic bytes.
fn sniff(path: &Path) -> Result<Compression, ImageError> {
    let mut magic = [0u8; 2];
    let mut file = File::open(path).map_err(ImageError::io("opening", path))?;
    let n = file.read(&mut magic).map_err(ImageError::io("reading", path))?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] { Compression::Gzip } else { Compression::None })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new() }
    }

    /// Reads to the end (the padding after a tar's end marker counts), then the digest. What
    /// follows the tar is hashed but never unpacked; it is capped at [`MAX_TRAILER`] so that a
    /// gzip bomb after the end marker cannot keep the import busy.
    fn finish(mut self, what: &Path) -> Result<String, ImageError> {
        let n = io::copy(&mut (&mut self).take(MAX_TRAILER + 1), &mut io::sink())
            .map_err(ImageError::io("reading", what))?;
        if n > MAX_TRAILER {
            return Err(ImageError::malformed(
                what.display().to_string(),
                "more than 64 MiB of data after the layer's end-of-archive marker",
            ));
        }
        Ok(hex(&self.hasher.finalize()))
    }
}

/// Unpacks every layer in order, checking each against its digests as it streams through.
pub fn apply_layers(src: &ImageSource, unpacker: &mut Unpacker) -> Result<(), ImageError> {
    for (i, layer) in src.layers.iter().enumerate() {
        let label = format!("{} (layer {} of {})", layer.path.display(), i + 1, src.layers.len());
        let file =
            File::open(&layer.path).map_err(ImageError::io("opening the layer", &layer.path))?;
        // A layout directory is the administrator's: a blob that is a device (a symlink to
        // /dev/zero) would never end.
        let meta = file.metadata().map_err(ImageError::io("inspecting the layer", &layer.path))?;
        if !meta.is_file() {
            return Err(ImageError::malformed(label, "the layer is not a regular file"));
        }
        let mut stored = Hashing::new(BufReader::new(file));
        let diff = match layer.compression {
            Compression::None => {
                unpacker.apply_layer(&mut stored, &label)?;
                None
            }
            Compression::Gzip => {
                let mut plain = Hashing::new(flate2::read::GzDecoder::new(&mut stored));
                unpacker.apply_layer(&mut plain, &label)?;
                Some(plain.finish(&layer.path)?)
            }
        };
        let stored = stored.finish(&layer.path)?;
        let diff = diff.unwrap_or_else(|| stored.clone());
        let mismatch = |expected: &str, actual: &str| ImageError::DigestMismatch {
            what: label.clone(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        };
        if let Some(expected) = &layer.digest {
            if *expected != stored {
                return Err(mismatch(expected, &stored));
            }
        }
        if layer.diff_id != diff {
            return Err(mismatch(&layer.diff_id, &diff));
        }
    }
    Ok(())
}
