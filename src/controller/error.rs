//! The controller's error type: what went wrong, in terms the API maps to a status code.

use crate::store::StoreError;

/// Why a controller operation failed. Each variant corresponds to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Malformed input (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not touch that namespace (403). The message never says whether it exists.
    #[error("the supplied authentication is not authorized to access '{0}'")]
    Forbidden(String),
    /// The entity does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The entity exists and overwrite was not asked for (409).
    #[error("{0}")]
    Conflict(String),
    /// An input over a size limit (413); the message names the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The invoker refused: queue full (429).
    #[error("{0}")]
    Overloaded(String),
    /// The namespace is over one of its limits (429); the message names the limit.
    #[error("{0}")]
    Throttled(String),
    /// No invoker can take work (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(StoreError),
    /// Anything else on our side (500).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ControllerError {
    /// Expected store outcomes become client errors; the rest stay internal.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ActionExists(_)
            | StoreError::NamespaceExists(_)
            | StoreError::PackageExists(_)
            | StoreError::PackageCannotBecomeBinding(_)
            | StoreError::PackageNotEmpty { .. }
            | StoreError::TriggerExists(_)
            | StoreError::RuleExists(_)
            | StoreError::Conformance(_) => Self::Conflict(e.to_string()),
            StoreError::ActionNotFound(_)
            | StoreError::KeyNotFound(_)
            | StoreError::PackageNotFound(_) => Self::NotFound(e.to_string()),
            StoreError::NotAllowedOnBinding(_)
            | StoreError::TriggerNotFound(_)
            | StoreError::RuleIncomplete(_) => Self::Invalid(e.to_string()),
            StoreError::RuleTriggerMissing(_) => Self::NotFound(e.to_string()),
            StoreError::NamespaceNotFound(ns) => Self::Forbidden(ns),
            // Stored here, not yet on the other hosts (the broker is down): retryable.
            StoreError::NotReplicated { .. } => Self::Unavailable(e.to_string()),
            StoreError::MissingExec(_) | StoreError::InvalidLimits { .. } => {
                Self::Invalid(e.to_string())
            }
            other => Self::Store(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write stored locally but not replicated (broker down) is a retryable 503, not a 500.
    #[test]
    fn not_replicated_is_unavailable() {
        let e = ControllerError::from(StoreError::NotReplicated {
            entity: "guest/a".into(),
            reason: "broker down".into(),
        });
        assert!(matches!(e, ControllerError::Unavailable(_)), "{e:?}");
    }
}
