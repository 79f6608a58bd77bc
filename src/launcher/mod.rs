//! The launchers: the in-container side of an action. Which interpreter runs a kind
//! ([`kinds`]), the launchers hearth ships and where they are installed ([`install`]), the action-loop protocol spoken
//! with them over pipes ([`protocol`]), what it carries ([`InitSpec`], [`RunSpec`]) and how an
//! action's code lands in a container's code dir ([`code`]).
//!
//! This module owns the contract between the host and the launcher, and nothing about how a
//! container is made: it must never spawn processes or touch runc; [`crate::container`] does.

pub mod code;
pub mod install;
pub mod kinds;
pub mod protocol;
mod spec;

pub use spec::{InitSpec, RunSpec};
