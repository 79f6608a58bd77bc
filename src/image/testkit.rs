//! Hand-built images for tests: layer tars with any member (hostile ones included, which
//! `tar::Builder`'s own path checks would refuse to write), written as an OCI layout or a
//! `docker save` archive with correct digests.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

/// One member of a layer tar.
#[derive(Debug, Clone)]
pub enum Member<'a> {
    File(&'a str, &'a [u8]),
    /// A file with a mode (e.g. setuid 0o4755).
    FileMode(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    CharDevice(&'a str),
    Fifo(&'a str),
}

fn header(kind: tar::EntryType, path: &str, link: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.name = [0; 100];
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        gnu.linkname = [0; 100];
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    h
}

/// An uncompressed layer tar of `members`, in order. Paths and link names are written raw.
pub fn layer_tar(members: &[Member<'_>]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let (h, data): (tar::Header, &[u8]) = match *m {
            Member::File(p, d) => (header(T::Regular, p, "", d.len() as u64, 0o644), d),
            Member::FileMode(p, d, mode) => (header(T::Regular, p, "", d.len() as u64, mode), d),
            Member::Dir(p) => (header(T::Directory, p, "", 0, 0o755), &[]),
            Member::Symlink(p, t) => (header(T::Symlink, p, t, 0, 0o777), &[]),
            Member::HardLink(p, t) => (header(T::Link, p, t, 0, 0o644), &[]),
            Member::CharDevice(p) => (header(T::Char, p, "", 0, 0o644), &[]),
            Member::Fifo(p) => (header(T::Fifo, p, "", 0, 0o644), &[]),
        };
        b.append(&h, data).unwrap_or_else(|e| panic!("append: {e}"));
    }
    b.into_inner().unwrap_or_else(|e| panic!("finish: {e}"))
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap_or_else(|e| panic!("gzip: {e}"));
    enc.finish().unwrap_or_else(|e| panic!("gzip: {e}"))
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The config blob of an image with these uncompressed layers.
pub fn config_json(layers: &[Vec<u8>], entrypoint: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha(l))).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap_or_else(|e| panic!("json: {e}"))
}

/// Writes an OCI image layout into `dir` with these uncompressed layers (gzip-compressed
/// when `gzipped`), annotated with `ref_name` when given. Returns the config's sha256 hex.
pub fn write_layout(
    dir: &Path,
    layers: &[Vec<u8>],
    gzipped: bool,
    ref_name: Option<&str>,
) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let put = |bytes: &[u8]| {
        let hex = sha(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap_or_else(|e| panic!("write: {e}"));
        (hex, bytes.len())
    };
    let config = config_json(layers, &["/bin/proxy"]);
    let (config_hex, config_len) = put(&config);
    let media = if gzipped {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let stored = if gzipped { gzip(l) } else { l.clone() };
            let (hex, len) = put(&stored);
            json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": len})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_hex}"), "size": config_len},
        "layers": layer_descs,
    }))
    .unwrap_or_else(|e| panic!("json: {e}"));
    let (manifest_hex, manifest_len) = put(&manifest);
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_hex}"), "size": manifest_len});
    if let Some(name) = ref_name {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    }
    let index = json!({"schemaVersion": 2, "manifests": [desc]});
    fs::write(dir.join("index.json"), index.to_string()).unwrap_or_else(|e| panic!("write: {e}"));
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("write: {e}"));
    config_hex
}

/// Writes a `docker save` archive (uncompressed layers, `<hex>.tar` files) to `file`, named
/// `repo_tag`. Returns the config's sha256 hex.
pub fn write_docker_archive(file: &Path, layers: &[Vec<u8>], repo_tag: &str) -> String {
    let config = config_json(layers, &["/bin/proxy"]);
    let config_hex = sha(&config);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap_or_else(|e| panic!("append: {e}"));
    };
    let mut names = Vec::new();
    for l in layers {
        let name = format!("{}.tar", sha(l));
        add(&name, l);
        names.push(name);
    }
    add(&format!("{config_hex}.json"), &config);
    let manifest =
        json!([{"Config": format!("{config_hex}.json"), "RepoTags": [repo_tag], "Layers": names}]);
    add("manifest.json", manifest.to_string().as_bytes());
    let bytes = b.into_inner().unwrap_or_else(|e| panic!("finish: {e}"));
    fs::write(file, bytes).unwrap_or_else(|e| panic!("write: {e}"));
    config_hex
}
