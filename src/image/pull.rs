//! Pulling an image from a registry into an OCI image layout (`hearthd admin image pull`).
//!
//! The registry protocol (the OCI distribution API, Docker Hub's anonymous token dance) is the
//! `oci-client` crate's; this module owns what hearth asks of a pull: one linux/amd64 image,
//! every blob's sha256 checked as it lands, sizes bounded, and a layout on disk that the image
//! store imports exactly as it imports an archive. It never unpacks a layer (the store does) and
//! never keeps a whole layer in memory: layers stream to files.
//!
//! Plain HTTP: `insecure`, or a registry on the loopback (`localhost`, `127.0.0.0/8`, `[::1]`),
//! which docker too treats as insecure by default: a registry on the host itself is reached
//! without TLS, as `docker pull localhost:5000/x` does.

use std::fs::{self, File};
use std::future::{poll_fn, Future};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// A manifest (or index) larger than this is refused: real ones are a few KiB, and the crate
/// reads a manifest whole into memory before we can look at it.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// An image config larger than this is refused (a config is JSON the store parses whole).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// A layer larger than this is refused: bounds the disk one pull can fill.
pub const MAX_LAYER_BYTES: u64 = 8 << 30;
/// The annotation that names the manifest in the layout's index (OCI image layout spec).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Connecting to a registry that does not answer in this time fails the pull.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A registry that sends nothing for this long fails the pull (a stalled layer download).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What a pull failed at; every message names the reference or the blob.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse as an image reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    /// A local file operation on the layout failed.
    #[error("image layout {}: {op}: {source}", path.display())]
    Layout { path: PathBuf, op: &'static str, source: io::Error },
    /// The registry refused or could not be reached.
    #[error("pulling {reference}: {op}: {message}")]
    Registry { reference: String, op: String, message: String },
    /// The registry sent something that is not a usable linux/amd64 container image.
    #[error("pulling {reference}: {reason}")]
    Manifest { reference: String, reason: String },
    /// A blob's content does not hash to its digest.
    #[error("blob {expected}: the content's digest is {actual}")]
    Digest { expected: String, actual: String },
    /// A blob is larger than its descriptor says, or than hearth accepts.
    #[error("blob {digest}: {reason}")]
    Size { digest: String, reason: String },
    /// The runtime that drives the pull could not start.
    #[error("starting the pull's runtime: {0}")]
    Runtime(io::Error),
}

/// Pulls `reference` into `layout`, an empty directory, as an OCI image layout
/// (oci-layout, index.json, blobs/sha256/...) whose index holds one manifest annotated
/// with `org.opencontainers.image.ref.name` = the normalised reference, which it returns.
///
/// Blocking: the admin CLI is synchronous, so the pull runs on a current-thread runtime of its
/// own, on a thread of its own (callable from inside another runtime too). `layout` may be
/// missing (it is created); if the pull fails, what it wrote there is removed.
pub fn pull_into(reference: &str, layout: &Path, insecure: bool) -> Result<String, PullError> {
    let parsed = normalise(reference)?;
    let created = prepare_layout(layout)?;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(PullError::Runtime)?;
                runtime.block_on(pull(&parsed, layout, insecure))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(PullError::Runtime(io::Error::other("the pull's thread panicked")))
            })
    });
    if result.is_err() {
        clear_layout(layout, created);
    }
    result.map(|()| parsed.whole())
}

/// Parses a reference the way docker does: `busybox` is `docker.io/library/busybox:latest`.
pub fn normalise(reference: &str) -> Result<Reference, PullError> {
    let trimmed = reference.trim();
    if trimmed.is_empty() {
        return Err(PullError::Reference {
            reference: reference.to_owned(),
            reason: "it is empty".to_owned(),
        });
    }
    trimmed.parse::<Reference>().map_err(|e| PullError::Reference {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether the registry is reached over plain HTTP: when asked, or when it is on the loopback
/// (docker's default for `localhost` and `127.0.0.0/8`).
pub fn plain_http(reference: &Reference, insecure: bool) -> bool {
    insecure || is_loopback(reference.registry())
}

/// `host[:port]` or `[v6][:port]` names a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Makes sure `layout` is an empty directory; returns whether this call created it.
fn prepare_layout(layout: &Path) -> Result<bool, PullError> {
    let err = |op, source| PullError::Layout { path: layout.to_owned(), op, source };
    match fs::read_dir(layout) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(err(
                    "checking that it is empty",
                    io::Error::new(io::ErrorKind::AlreadyExists, "the directory is not empty"),
                ));
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(layout).map_err(|e| err("creating it", e))?;
            Ok(true)
        }
        Err(e) => Err(err("reading it", e)),
    }
}

/// Removes what a failed pull wrote: the layout was empty (or absent) before.
fn clear_layout(layout: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(layout);
        return;
    }
    if let Ok(entries) = fs::read_dir(layout) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// The media types of manifests we ask the registry for: both image formats and both index
/// formats (an index is resolved to its linux/amd64 manifest).
const ACCEPTED: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

async fn pull(reference: &Reference, layout: &Path, insecure: bool) -> Result<(), PullError> {
    let config = ClientConfig {
        protocol: if plain_http(reference, insecure) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    };
    let client = Client::new(config);
    let name = reference.whole();
    let registry_err = |op: &str, e: oci_client::errors::OciDistributionError| {
        PullError::Registry { reference: name.clone(), op: op.to_owned(), message: chain(&e) }
    };
    let manifest_err = |reason: String| PullError::Manifest { reference: name.clone(), reason };

    let (mut raw, _) = client
        .pull_manifest_raw(reference, &RegistryAuth::Anonymous, ACCEPTED)
        .await
        .map_err(|e| registry_err("fetching the manifest", e))?;
    check_manifest_size(&raw, &name)?;
    if let Some(pinned) = reference.digest() {
        verify_bytes(&raw, pinned)?;
    }
    let mut media_type = media_type_of(&raw).map_err(manifest_err)?;
    if media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE {
        let index: OciImageIndex = serde_json::from_slice(&raw)
            .map_err(|e| manifest_err(format!("the image index does not parse: {e}")))?;
        let entry = linux_amd64(&index.manifests).ok_or_else(|| {
            manifest_err(format!(
                "the image index has no linux/amd64 image (it has {})",
                platforms(&index.manifests)
            ))
        })?;
        check_digest_syntax(&entry.digest)?;
        let by_digest = reference.clone_with_digest(entry.digest.clone());
        raw = client
            .pull_manifest_raw(&by_digest, &RegistryAuth::Anonymous, ACCEPTED)
            .await
            .map_err(|e| registry_err("fetching the linux/amd64 manifest", e))?
            .0;
        check_manifest_size(&raw, &name)?;
        verify_bytes(&raw, &entry.digest)?;
        media_type = media_type_of(&raw).map_err(manifest_err)?;
    }
    if media_type != OCI_IMAGE_MEDIA_TYPE && media_type != IMAGE_MANIFEST_MEDIA_TYPE {
        return Err(manifest_err(format!(
            "the registry sent a {media_type}, not an image manifest"
        )));
    }
    let manifest: OciImageManifest = serde_json::from_slice(&raw)
        .map_err(|e| manifest_err(format!("the image manifest does not parse: {e}")))?;
    if manifest.config.media_type != IMAGE_CONFIG_MEDIA_TYPE
        && manifest.config.media_type != IMAGE_DOCKER_CONFIG_MEDIA_TYPE
    {
        return Err(manifest_err(format!(
            "not a container image: its config is a {}",
            manifest.config.media_type
        )));
    }

    let blobs = layout.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|source| PullError::Layout {
        path: blobs.clone(),
        op: "creating the blobs directory",
        source,
    })?;
    let mut wanted: Vec<(&OciDescriptor, u64)> = vec![(&manifest.config, MAX_CONFIG_BYTES)];
    wanted.extend(manifest.layers.iter().map(|layer| (layer, MAX_LAYER_BYTES)));
    for (descriptor, limit) in wanted {
        let hex = check_digest_syntax(&descriptor.digest)?;
        let target = blobs.join(hex);
        if target.exists() {
            continue; // the same blob twice in one manifest
        }
        let declared = declared_size(descriptor, limit)?;
        let stream = client
            .pull_blob_stream(reference, descriptor)
            .await
            .map_err(|e| registry_err(&format!("fetching blob {}", descriptor.digest), e))?;
        save_blob(stream.stream, &descriptor.digest, declared, &target).await?;
    }

    let manifest_digest = sha256_of(&raw);
    write_file(&blobs.join(&manifest_digest[7..]), &raw)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": media_type,
            "digest": manifest_digest,
            "size": raw.len(),
            "annotations": { REF_NAME_ANNOTATION: name },
        }],
    });
    write_file(&layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write_file(&layout.join("index.json"), index.to_string().as_bytes())
}

fn check_manifest_size(raw: &[u8], reference: &str) -> Result<(), PullError> {
    if raw.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PullError::Manifest {
            reference: reference.to_owned(),
            reason: format!(
                "the manifest is {} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                raw.len()
            ),
        });
    }
    Ok(())
}

/// The manifest's media type: its `mediaType` field, or for an OCI document without one
/// (allowed by the image spec), an index if it lists manifests and an image manifest otherwise.
fn media_type_of(raw: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(raw).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if probe.schema_version != Some(2) {
        return Err(format!(
            "unsupported manifest schema version {:?} (only 2)",
            probe.schema_version
        ));
    }
    Ok(match probe.media_type {
        Some(media_type) => media_type,
        None if probe.manifests.is_some() => OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned(),
        None => OCI_IMAGE_MEDIA_TYPE.to_owned(),
    })
}

fn linux_amd64(entries: &[ImageIndexEntry]) -> Option<&ImageIndexEntry> {
    entries.iter().find(|entry| {
        entry.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    })
}

fn platforms(entries: &[ImageIndexEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .map(|entry| match &entry.platform {
            Some(p) => format!("{}/{}", p.os, p.architecture),
            None => "an entry without a platform".to_owned(),
        })
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The hex part of a `sha256:` digest. Anything else is refused: the hex becomes a file name
/// under blobs/sha256, so it must be exactly 64 lowercase hex digits (no `../`).
fn check_digest_syntax(digest: &str) -> Result<&str, PullError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(PullError::Digest {
            expected: digest.to_owned(),
            actual: "not checked: only sha256 digests of 64 hex digits are accepted".to_owned(),
        })
    }
}

fn declared_size(descriptor: &OciDescriptor, limit: u64) -> Result<u64, PullError> {
    let size = u64::try_from(descriptor.size).map_err(|_| PullError::Size {
        digest: descriptor.digest.clone(),
        reason: format!("the manifest gives it a negative size {}", descriptor.size),
    })?;
    if size > limit {
        return Err(PullError::Size {
            digest: descriptor.digest.clone(),
            reason: format!("{size} bytes is over the limit of {limit}"),
        });
    }
    Ok(size)
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn verify_bytes(bytes: &[u8], expected: &str) -> Result<(), PullError> {
    let actual = sha256_of(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(PullError::Digest { expected: expected.to_owned(), actual })
    }
}

/// Streams a blob into `target`, hashing as it goes: the bytes go to a `.partial` file beside
/// it, which becomes `target` only once the size and the sha256 match the descriptor. More bytes
/// than declared stop the download at once (a registry cannot fill the disk past the bound).
pub(crate) async fn save_blob<S>(
    mut stream: S,
    expected: &str,
    size: u64,
    target: &Path,
) -> Result<(), PullError>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let partial = target.with_extension("partial");
    let result = async {
        let layout_err = |op, source| PullError::Layout { path: partial.clone(), op, source };
        let mut file = File::create(&partial).map_err(|e| layout_err("creating the blob", e))?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        while let Some(chunk) = next(&mut stream).await {
            let chunk = chunk.map_err(|e| PullError::Registry {
                reference: expected.to_owned(),
                op: "reading the blob".to_owned(),
                message: chain(&e),
            })?;
            written += chunk.len() as u64;
            if written > size {
                return Err(PullError::Size {
                    digest: expected.to_owned(),
                    reason: format!("the registry sent more than the declared {size} bytes"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(|e| layout_err("writing the blob", e))?;
        }
        if written != size {
            return Err(PullError::Size {
                digest: expected.to_owned(),
                reason: format!("the registry sent {written} bytes, not the declared {size}"),
            });
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != expected {
            return Err(PullError::Digest { expected: expected.to_owned(), actual });
        }
        file.sync_all().map_err(|e| layout_err("syncing the blob", e))?;
        fs::rename(&partial, target).map_err(|e| layout_err("renaming the blob into place", e))
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn next<S>(stream: &mut S) -> impl Future<Output = Option<S::Item>> + '_
where
    S: Stream + Unpin,
{
    poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PullError> {
    fs::write(path, bytes).map_err(|source| PullError::Layout {
        path: path.to_owned(),
        op: "writing",
        source,
    })
}

/// An error and its causes on one line: reqwest's top-level message ("error sending request")
/// says nothing without its source ("Connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::VecDeque;
    use std::task::{Context, Poll};

    struct Chunks(VecDeque<io::Result<Bytes>>);
    impl Stream for Chunks {
        type Item = io::Result<Bytes>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect())
    }

    fn save(
        parts: &[&'static [u8]],
        digest: &str,
        size: u64,
    ) -> (Result<(), PullError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("blob");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = runtime.block_on(save_blob(chunks(parts), digest, size, &target));
        (result, dir)
    }

    #[test]
    fn references_normalise_as_docker_does() {
        for (given, normalised) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("python:3.11", "docker.io/library/python:3.11"),
            ("openwhisk/action-python-v3.11", "docker.io/openwhisk/action-python-v3.11:latest"),
            ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3"),
            ("127.0.0.1:5000/hearth-test/proxy:1", "127.0.0.1:5000/hearth-test/proxy:1"),
            ("ghcr.io/o/img@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
             "ghcr.io/o/img@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
            (" localhost/x ", "localhost/x:latest"),
        ] {
            assert_eq!(normalise(given).unwrap().whole(), normalised, "{given}");
        }
        for bad in ["", "  ", "a b", "x@sha256:short", "repo/Name:1", "a//b"] {
            match normalise(bad) {
                Err(err) => {
                    assert!(err.to_string().contains("invalid image reference"), "{bad}: {err}")
                }
                Ok(parsed) => panic!("{bad:?} parsed as {}", parsed.whole()),
            }
        }
    }

    #[test]
    fn loopback_registries_are_plain_http_like_dockers_defaults() {
        for (reference, plain) in [
            ("localhost:5000/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.1.2.3/a", true),
            ("registry.example:5000/a", false),
            ("busybox", false),
            ("10.0.0.1:5000/a", false),
        ] {
            assert_eq!(plain_http(&normalise(reference).unwrap(), false), plain, "{reference}");
        }
        assert!(plain_http(&normalise("busybox").unwrap(), true));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("[2001:db8::1]:5000"));
    }

    #[test]
    fn a_blob_whose_content_does_not_match_its_digest_is_refused_and_removed() {
        let wrong = sha256_of(b"something else");
        let (result, dir) = save(&[b"hello ", b"world"], &wrong, 11);
        match result {
            Err(PullError::Digest { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, sha256_of(b"hello world"));
            }
            other => panic!("expected a digest error, got {other:?}"),
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is left behind");
    }

    #[test]
    fn a_blob_that_matches_lands_under_its_name() {
        let digest = sha256_of(b"hello world");
        let (result, dir) = save(&[b"hello ", b"world"], &digest, 11);
        result.unwrap();
        assert_eq!(fs::read(dir.path().join("blob")).unwrap(), b"hello world");
        assert!(!dir.path().join("blob.partial").exists());
    }

    #[test]
    fn a_blob_longer_or_shorter_than_declared_is_refused() {
        let digest = sha256_of(b"hello world");
        let (longer, _dir) = save(&[b"hello ", b"world"], &digest, 6);
        assert!(matches!(longer, Err(PullError::Size { .. })), "{longer:?}");
        let (shorter, _dir) = save(&[b"hello "], &digest, 11);
        assert!(shorter.unwrap_err().to_string().contains("sent 6 bytes, not the declared 11"),);
    }

    #[test]
    fn digests_that_are_not_plain_sha256_are_refused_before_naming_a_file() {
        assert!(check_digest_syntax(&sha256_of(b"x")).is_ok());
        for bad in [
            "sha512:abcd",
            "sha256:../../etc/passwd",
            "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        ] {
            assert!(check_digest_syntax(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_descriptors_and_manifests_are_refused() {
        let layer = OciDescriptor {
            digest: sha256_of(b"x"),
            size: (MAX_LAYER_BYTES + 1) as i64,
            ..Default::default()
        };
        assert!(declared_size(&layer, MAX_LAYER_BYTES)
            .unwrap_err()
            .to_string()
            .contains("over the limit"));
        let negative = OciDescriptor { size: -1, ..layer };
        assert!(declared_size(&negative, MAX_LAYER_BYTES).is_err());
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(check_manifest_size(&big, "r").is_err());
    }

    #[test]
    fn media_types_come_from_the_field_or_the_shape() {
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#).unwrap(),
            IMAGE_MANIFEST_MEDIA_TYPE
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"layers":[]}"#).unwrap(),
            OCI_IMAGE_MEDIA_TYPE
        );
        assert!(media_type_of(br#"{"schemaVersion":1}"#).unwrap_err().contains("schema version"));
    }

    #[test]
    fn a_non_empty_layout_is_refused_and_a_missing_one_is_created() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"").unwrap();
        let err = pull_into("127.0.0.1:1/a:1", dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(dir.path().join("x").exists(), "a refused layout is left alone");
        let missing = dir.path().join("new");
        assert!(prepare_layout(&missing).unwrap());
        assert!(missing.is_dir());
    }
}
