//! Pulling an image from a registry into an OCI image layout. A placeholder in this branch:
//! engineer B's `pull.rs` (the registry client) replaces this file at the merge, with the
//! same signature.

use std::path::Path;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub String);

/// Pulls `reference` into the empty directory `layout` as an OCI image layout whose index
/// holds one manifest annotated with `org.opencontainers.image.ref.name` = the normalised
/// reference, which it returns.
pub fn pull_into(reference: &str, layout: &Path, insecure: bool) -> Result<String, PullError> {
    let _ = (layout, insecure);
    Err(PullError(format!(
        "cannot pull {reference}: pulling from a registry is not built in this branch"
    )))
}
