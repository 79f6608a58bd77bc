//! The entities of hearth and their validation: names, limits, kinds, actions, activations,
//! identities. Pure data: nothing here does I/O, so every other module can depend on it.

mod action;
mod activation;
mod alarm;
mod exec;
mod hash;
mod identity;
mod image;
mod limits;
mod name;
mod namespace_limits;
mod package;
mod route;
mod rule;
mod trigger;

pub use action::{revision, ActionMeta, KeyValue};
pub use activation::{
    now_millis, Activation, ActivationId, ActivationIdError, ActivationResponse, ActivationStatus,
    SUPERSEDED,
};
pub use alarm::{AlarmFeed, AlarmProgress, AlarmSpec};
pub use exec::{
    amend_exec_annotation, check_image, ActionExec, ExecMeta, ImageError, Kind, KindError, Runtime,
    SequenceExec, BLACKBOX, MALFORMED_COMPONENT, NATIVE_IMAGE, SEQUENCE,
};
pub use hash::fnv1a;
pub use identity::{AuthKey, Identity, KeyFormatError, SecretHash, GUEST_KEY, SECRET_LEN};
pub use image::{ImageDigest, ImageDigestError};
pub use limits::*;
pub use name::{EntityName, FullyQualifiedName, NameError, MAX_NAME_LEN};
pub use namespace_limits::{NamespaceLimits, SEQUENCE_MAX_LENGTH_DEFAULT};
pub use package::{merge_parameters, Binding, PackageMeta, RESERVED_PACKAGE_NAMES};
pub use route::{
    normalize_path, normalize_verb, path_matches, path_parameters, ApiMeta, Operation, RouteAction,
    RouteError,
};
pub use rule::{EntityPath, RuleMeta, RuleStatus};
pub use trigger::{ReducedRule, TriggerMeta};
