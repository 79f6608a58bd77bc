//! OCI images for blackbox actions (issue 20). This tree holds only the registry pull; the
//! image store beside it is merged in from its own branch.

pub mod pull;
