//! Runtime images (issue 20), end to end: the image store (`hearthd admin image import|list|rm`,
//! hostile archives), pulling from a local registry, and image actions run by a real
//! `hearthd`. Every part uses the one test image that tests/images/build.sh builds once per
//! content into $HEARTH_CACHE. Needs root, runc, umoci and skopeo (`make test` installs them);
//! fails loudly otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../harness/mod.rs"]
mod harness;

mod common;
mod pull;
mod run;
mod store;

mod standalone;
