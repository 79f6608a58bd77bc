//! hearth: a serverless function platform for Linux hosts in the Apache OpenWhisk model.
//!
//! The path of one activation reads top to bottom through the modules:
//! [`api`] (HTTP, auth) -> [`controller`] (entities, invoke orchestration) -> [`bus`] (the seam
//! to the invoker) -> [`invoker`] (the container pool) -> [`container`] (runc) and [`launcher`]
//! (the in-container launchers and their protocol); with several invokers, [`balancer`]
//! chooses one. [`store`] keeps entities in LMDB and
//! [`model`] defines them. [`systemd`] is the glue to the host's service manager and [`cli`]
//! the `hearth` client.

pub mod admin;
pub mod alarms;
pub mod api;
pub mod balancer;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod container;
pub mod controller;
pub mod daemon;
pub mod dispatch;
pub mod docgen;
pub mod image;
pub mod invoker;
pub mod launcher;
pub mod metrics;
pub mod model;
pub mod shutdown;
pub mod store;
pub mod systemd;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
