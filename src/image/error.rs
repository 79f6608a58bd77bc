//! The image store's one error type: every variant names what it was working on (the path,
//! the archive entry, the image), so that an administrator reading `hearthd admin image`'s
//! message knows which file or which member of an archive to look at.

use std::path::PathBuf;

/// Why an image could not be read, unpacked, stored, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An archive member that would write outside the root, follow a symlink, create a device
    /// or otherwise break the store's rules. The whole image is refused.
    #[error("refused layer {layer}, entry {entry:?}: {reason}")]
    Hostile { layer: String, entry: String, reason: String },
    /// The archive or layout is not a well-formed image (a missing or malformed document).
    #[error("{what}: {reason}")]
    Malformed { what: String, reason: String },
    /// A blob whose content is not what its digest says.
    #[error("{what}: digest mismatch, expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    /// A layer compressed in a way hearth does not read (zstd) or of an unknown media type.
    #[error("layer {digest}: media type {media_type:?} is not supported (tar and tar+gzip are)")]
    UnsupportedLayer { digest: String, media_type: String },
    /// Text that is not an image reference.
    #[error("{name:?} is not an image name: {reason}")]
    BadName { name: String, reason: String },
    /// An import that would leave the image without any name.
    #[error("{0} carries no image name: give one (hearthd admin image import NAME FILE)")]
    NoName(String),
    /// No image by that name or digest.
    #[error("no image {0:?} in the image store")]
    NotFound(String),
    /// A removal refused because actions still use the image.
    #[error("image {image} is used by {}: delete or update them first", actions.join(", "))]
    InUse { image: String, actions: Vec<String> },
    /// A store document (index.json, image.json) that does not parse.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl ImageError {
    /// A closure for `map_err` that wraps an io::Error with the operation and the path.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Malformed { what: what.into(), reason: reason.to_string() }
    }
}
