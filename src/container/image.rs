//! The seam between the container driver and a host's image store: what an image action's
//! container is made of ([`ImageRoot`]) and where it comes from ([`ImageSource`]).
//!
//! The invoker resolves an action's `exec.image` to an [`ImageRoot`] on its own host when it
//! admits the activation (a name to a digest) and when it starts a stem cell of an image (a
//! digest to its root); the runc driver only reads what it is given. The image store (the
//! daemon's `ImageStore`) implements [`ImageSource`]; tests implement it over an unpacked
//! OCI layout. Nothing here reads a registry or unpacks a layer.

use std::path::PathBuf;

use crate::model::ImageDigest;

/// One unpacked image as a container is made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    pub digest: ImageDigest,
    /// The unpacked root filesystem, shared read-only by every container of the image.
    pub rootfs: PathBuf,
    /// The process: the image's Entrypoint followed by its Cmd.
    pub args: Vec<String>,
    /// The image's `Env` (`NAME=value`); the driver adds `PATH` when absent.
    pub env: Vec<String>,
    /// The image's `WorkingDir`; empty means `/`.
    pub working_dir: String,
}

/// Finds images on this host. `Err` is a store that cannot answer (an I/O error, a corrupt
/// index), `Ok(None)` an image that is not there.
pub trait ImageSource: Send + Sync + 'static {
    /// The image a name (`repo:tag`, `host/repo:tag`, `repo@sha256:...`) points at now.
    fn resolve(&self, name: &str) -> Result<Option<ImageRoot>, String>;

    /// The image with this digest, if it is still there.
    fn get(&self, digest: &ImageDigest) -> Result<Option<ImageRoot>, String>;
}

/// OpenWhisk's message for an image it cannot get (`Messages.imagePullError`), followed by how
/// a hearth administrator makes it available: invokers never pull on their own.
pub fn missing_image_message(name: &str) -> String {
    format!(
        "Failed to pull container image '{name}'. (hearth runs only images in its invoker's \
         image store: an administrator adds it with `hearthd admin image pull {name}` or \
         `hearthd admin image import FILE`.)"
    )
}

/// The image source a container factory was given, set once when the daemon wires the
/// image store in; empty until then (every image is then missing).
#[derive(Default)]
pub(crate) struct SourceCell(std::sync::OnceLock<std::sync::Arc<dyn ImageSource>>);

impl SourceCell {
    /// Sets the source; false when one was set already (the first stays).
    pub fn set(&self, source: std::sync::Arc<dyn ImageSource>) -> bool {
        self.0.set(source).is_ok()
    }

    pub fn get(&self) -> Option<&std::sync::Arc<dyn ImageSource>> {
        self.0.get()
    }
}

impl std::fmt::Debug for SourceCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SourceCell").field(&self.0.get().is_some()).finish()
    }
}
