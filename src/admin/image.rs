//! `hearthd admin image`: importing, pulling, listing and removing the host's runtime images
//! (the image store in `<data-dir>/images`, see docs/IMAGES.md).
//!
//! Only an administrator on the host adds images: the daemon never imports or pulls by
//! itself. Must never: remove an image an action still names, or leave a pull's download
//! behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::image::{ImageInfo, ImageStore};
use crate::model::ImageDigest;
use crate::store::Store;

/// What `NAME` means "keep the archive's own names" on `import`.
pub const KEEP_NAMES: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ImageCommand {
    /// Import an image archive or layout directory as NAME (`-`: keep the archive's names).
    ///
    /// FILE is an OCI archive, a `docker save` archive or an OCI layout directory. NAME names
    /// the image in place of the names the archive carries; `-` keeps the archive's names
    /// (RepoTags, or an OCI `ref.name` that is a full reference). Prints the digest and names.
    Import { name: String, file: PathBuf },
    /// Pull an image from a registry (linux/amd64) and import it under its reference.
    Pull {
        reference: String,
        /// Talk plain HTTP to the registry (a local test registry).
        #[arg(long)]
        insecure: bool,
    },
    /// List the images: short digest, names, unpacked size.
    List {
        /// Print JSON (every field, full digests) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a name, or by `sha256:<hex>` the image; refused while an action uses it.
    ///
    /// The image's root is deleted with its last name.
    Rm { image: String },
}

/// Runs one image command; `store` is the data dir's entity store (for the in-use check).
pub fn execute(store: &Store, cmd: ImageCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = crate::image::host_dir(store.path());
    let images = ImageStore::open(&dir)
        .with_context(|| format!("opening the image store in {}", dir.display()))?;
    match cmd {
        ImageCommand::Import { name, file } => {
            let name = (name != KEEP_NAMES).then_some(name.as_str());
            let info = if file.is_dir() {
                images.import_layout(&file, name)
            } else {
                images.import_archive(&file, name)
            }
            .with_context(|| format!("importing {}", file.display()))?;
            writeln!(out, "{} {}", info.digest, info.names.join(" "))?;
        }
        ImageCommand::Pull { reference, insecure } => {
            let download = PullDir::new(store.path())?;
            let name = crate::image::pull::pull_into(&reference, &download.0, insecure)
                .with_context(|| format!("pulling {reference}"))?;
            let info = images
                .import_layout(&download.0, Some(&name))
                .with_context(|| format!("importing the pulled {name}"))?;
            writeln!(out, "{} {}", info.digest, info.names.join(" "))?;
        }
        ImageCommand::List { json } => {
            let list = images.list()?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                write_table(&list, out)?;
            }
        }
        ImageCommand::Rm { image } => {
            let users = users_by_digest(store, &images)?;
            let info = images
                .remove(&image, &|info: &ImageInfo| {
                    users
                        .iter()
                        .filter(|(d, _)| *d == info.digest)
                        .map(|(_, a)| a.clone())
                        .collect()
                })
                .with_context(|| format!("removing image {image}"))?;
            writeln!(out, "{}", info.digest)?;
        }
    }
    Ok(())
}

/// Every action that names an image in the store, with that image's digest. An action naming
/// an image the store does not hold uses nothing here.
fn users_by_digest(
    store: &Store,
    images: &ImageStore,
) -> anyhow::Result<Vec<(ImageDigest, String)>> {
    let mut out = Vec::new();
    for (fqn, image) in store.actions_with_image().context("listing the actions")? {
        // A name that does not parse cannot resolve to a stored image.
        if let Ok(Some(info)) = images.resolve(&image) {
            out.push((info.digest, fqn.to_string()));
        }
    }
    Ok(out)
}

fn write_table(list: &[ImageInfo], out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "{:<14}{:>10}  NAMES", "DIGEST", "SIZE")?;
    for info in list {
        let names = if info.names.is_empty() { "<none>".to_owned() } else { info.names.join(", ") };
        let mb = info.size_bytes as f64 / (1024.0 * 1024.0);
        writeln!(out, "{:<14}{:>8.1}MB  {names}", info.digest.short(), mb)?;
    }
    Ok(())
}

/// A pull's download directory beside the store (not in its staging, which an opening store
/// empties), removed when dropped.
struct PullDir(PathBuf);

impl PullDir {
    fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(format!(".image-pull-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PullDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a pull's download");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testkit::{layer_tar, write_docker_archive, Member as M};
    use crate::model::{EntityName, FullyQualifiedName, Kind};
    use crate::store::{ActionUpdate, ExecUpdate};

    #[test]
    fn import_list_rm_with_an_action_using_the_image() {
        let (dir, store) = crate::store::test_util::temp_store();
        let archive = dir.path().join("img.tar");
        write_docker_archive(&archive, &[layer_tar(&[M::File("proxy", b"p")])], "org/img:1");
        let mut out = Vec::new();
        let import = ImageCommand::Import { name: KEEP_NAMES.into(), file: archive };
        execute(&store, import, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("docker.io/org/img:1"));
        let mut out = Vec::new();
        execute(&store, ImageCommand::List { json: false }, &mut out).unwrap();
        let table = String::from_utf8_lossy(&out).into_owned();
        assert!(table.lines().nth(1).is_some_and(|l| l.contains("docker.io/org/img:1")), "{table}");

        let ns = EntityName::parse("guest").unwrap();
        store.create_namespace(&ns).unwrap();
        let fqn = FullyQualifiedName::new(ns, EntityName::parse("uses").unwrap());
        let exec = ExecUpdate {
            kind: Kind::parse("blackbox").unwrap(),
            main: None,
            binary: false,
            image: Some("docker.io/org/img:1".into()),
            code: Vec::new(),
        };
        store
            .put_action(&fqn, ActionUpdate { exec: Some(exec), ..Default::default() }, false)
            .unwrap();
        let err = execute(&store, ImageCommand::Rm { image: "org/img:1".into() }, &mut Vec::new())
            .unwrap_err();
        assert!(format!("{err:#}").contains("guest/uses"), "{err:#}");
        store.delete_action(&fqn).unwrap();
        execute(&store, ImageCommand::Rm { image: "org/img:1".into() }, &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        execute(&store, ImageCommand::List { json: true }, &mut out).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            serde_json::json!([])
        );
    }
}
