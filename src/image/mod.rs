//! The image store (issue 20): OCI and `docker save` images an administrator imports or
//! pulls, each unpacked once into a flattened, read-only root that every container of the
//! image shares, found by any spelling of its names or by its digest.
//!
//! [`archive`] reads the formats and checks every blob's digest, [`unpack`] applies layers
//! under the hardening rules (docs/IMAGES.md, docs/SECURITY.md), [`reference`] normalises
//! names, [`store`] keeps roots, names and the lock. Must never: write outside the store's
//! directory, follow a symlink while unpacking, or fetch anything by itself (only
//! `hearthd admin image pull`, run by an administrator, reaches a registry through [`pull`]).

pub mod archive;
mod error;
pub mod pull;
pub mod reference;
mod source;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testkit;
pub mod unpack;

pub use error::ImageError;
pub use store::{ImageConfig, ImageInfo, ImageStore};

use std::path::{Path, PathBuf};

/// A host's image store: `images/` under its data dir, shared by `hearthd admin image`, the
/// invoker that runs the images and the controller's `GET /api/v1`.
pub fn host_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}
