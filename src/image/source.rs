//! The image store as the container driver's [`ImageSource`]: what an invoker resolves an
//! action's `exec.image` through, on its own host.

use crate::container::image::{ImageRoot, ImageSource};
use crate::model::ImageDigest;

use super::{ImageInfo, ImageStore};

impl ImageSource for ImageStore {
    fn resolve(&self, name: &str) -> Result<Option<ImageRoot>, String> {
        ImageStore::resolve(self, name).map(|found| found.map(root)).map_err(|e| e.to_string())
    }

    fn get(&self, digest: &ImageDigest) -> Result<Option<ImageRoot>, String> {
        ImageStore::get(self, digest).map(|found| found.map(root)).map_err(|e| e.to_string())
    }
}

/// A container's view of an image: the process is Entrypoint followed by Cmd, as Docker
/// runs an image when nothing overrides either.
fn root(info: ImageInfo) -> ImageRoot {
    let config = info.config;
    let mut args = config.entrypoint;
    args.extend(config.cmd);
    ImageRoot {
        digest: info.digest,
        rootfs: info.root,
        args,
        env: config.env,
        working_dir: config.working_dir.unwrap_or_default(),
    }
}
