//! What an action runs: its kind (runtime) and how to enter it, or the actions of a sequence.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EntityName, FullyQualifiedName, ImageDigest, KeyValue};

/// A runtime family hearth ships a launcher for. Aliases (`python:3`, `python:default`,
/// `nodejs:20`, `nodejs:default`) all resolve to the host's interpreter of that family;
/// `blackbox` with OpenWhisk's skeleton image is [`Runtime::Native`]: an executable of the
/// action's own, run by hearth's launcher in hearth's skeleton (no image is pulled).
/// [`Runtime::Image`] is a `blackbox` action with an image of its own, as the invoker's host
/// resolved its name: every pool key (warm containers, stem cells per runtime and memory)
/// then works per image, and the runtime stays `Copy`. A [`Kind`] never resolves to it: only
/// the invoker knows the digest behind a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Python,
    Nodejs,
    Native,
    /// An OCI image whose entrypoint is OpenWhisk's action proxy (`/init`, `/run` on 8080).
    Image(ImageDigest),
}

impl Runtime {
    /// A short label (metrics, logs): every image is `image`, so labels stay few.
    pub fn as_str(&self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Nodejs => "nodejs",
            Runtime::Native => "native",
            Runtime::Image(_) => "image",
        }
    }

    /// The image this runtime runs, if it is one.
    pub fn image(&self) -> Option<&ImageDigest> {
        match self {
            Runtime::Image(d) => Some(d),
            _ => None,
        }
    }
}

/// An unknown `kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kind {0:?} is not supported (use python:3, python:default, nodejs, nodejs:20, nodejs:default or blackbox)")]
pub struct KindError(pub String);

/// The kind string as the user wrote it plus the runtime it resolves to. The string is kept
/// so that the action reads back as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kind {
    name: String,
    runtime: Runtime,
}

impl Kind {
    /// Resolves a kind string to a runtime. `python:default` and `nodejs:default` become the
    /// concrete kind they stand for (`python:3`, `nodejs:20`), as OpenWhisk stores them, so an
    /// action reads back with the kind it really runs.
    pub fn parse(s: &str) -> Result<Self, KindError> {
        let s = match s {
            "python:default" => "python:3",
            "nodejs:default" => "nodejs:20",
            other => other,
        };
        let runtime = match s {
            "python" | "python:3" | "python:default" | "python:3.11" => Runtime::Python,
            "nodejs" | "nodejs:default" | "nodejs:20" | "nodejs:18" | "nodejs:22" => {
                Runtime::Nodejs
            }
            BLACKBOX => Runtime::Native,
            _ => return Err(KindError(s.to_owned())),
        };
        Ok(Self { name: s.to_owned(), runtime })
    }

    /// Guesses the kind from a file name, as `wsk action create` does.
    pub fn from_file_name(file: &str) -> Option<Self> {
        let ext = file.rsplit('.').next()?;
        match ext {
            "py" => Kind::parse("python:3").ok(),
            "js" => Kind::parse("nodejs:20").ok(),
            _ => None,
        }
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Kind::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The kind OpenWhisk gives actions that run in an image of their own (`wsk action create
/// --native` or `--docker`).
pub const BLACKBOX: &str = "blackbox";

/// The image `wsk action create --native` names: OpenWhisk's skeleton whose action proxy runs
/// the zip's `exec`. hearth honours the contract in its own skeleton and never pulls it.
pub const NATIVE_IMAGE: &str = "openwhisk/dockerskeleton";

/// Longest image reference accepted (Docker's limit for a full reference is 255 for the name
/// plus the tag or digest; a little more leaves room for a registry host and port).
pub const MAX_IMAGE_REF: usize = 512;

/// An `exec.image` that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the image {0:?} is not an image reference (1 to {MAX_IMAGE_REF} printable characters \
     without spaces, like repo:tag, host/repo:tag or repo@sha256:...)"
)]
pub struct ImageError(pub String);

/// Checks an exec's `image` against its kind. A blackbox action may name OpenWhisk's skeleton
/// or nothing (a native action) or any other image reference (an image action, run from the
/// invoker host's image store; whether the image is there is known only when it runs, as in
/// OpenWhisk, where a missing image fails the activation, not the create). The other kinds
/// run the host's interpreters: an image sent with them is ignored, as OpenWhisk ignores it
/// for a code kind.
pub fn check_image(kind: &Kind, image: Option<&str>) -> Result<(), ImageError> {
    let Some(image) = image.filter(|_| kind.runtime() == Runtime::Native) else {
        return Ok(());
    };
    let ok = !image.is_empty()
        && image.len() <= MAX_IMAGE_REF
        && image.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ImageError(image.to_owned()))
    }
}

/// The exec of a stored action without its code: what the hot path and the invoker need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMeta {
    pub kind: Kind,
    /// The entry point; `main` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    /// True when the code is a zip archive (sent base64-encoded over the API).
    #[serde(default)]
    pub binary: bool,
    /// The image a `blackbox` action runs, as the creator named it (`repo:tag`, a registry
    /// host first if any, or `name@sha256:...`); None for the built-in kinds and for native
    /// actions, which run in hearth's skeleton. Resolved to an [`ImageDigest`] by the
    /// invoker's host, in its image store.
    ///
    /// [`ImageDigest`]: super::ImageDigest
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl ExecMeta {
    /// The function the launcher calls.
    pub fn entry_point(&self) -> &str {
        self.main.as_deref().unwrap_or("main")
    }

    /// The image this action runs in, when it is an image action: a `blackbox` kind with an
    /// image other than OpenWhisk's skeleton. None for native actions and the code kinds.
    pub fn run_image(&self) -> Option<&str> {
        self.image
            .as_deref()
            .filter(|i| self.kind.runtime() == Runtime::Native && !Self::is_native_image(i))
    }

    /// Whether `image` names OpenWhisk's skeleton (any tag, with or without the `docker.io/`
    /// registry), which hearth runs as a native action in its own skeleton.
    pub fn is_native_image(image: &str) -> bool {
        let name = image.strip_prefix("docker.io/").unwrap_or(image);
        let name = name.split_once(':').map_or(name, |(name, _tag)| name);
        name == NATIVE_IMAGE
    }
}

/// OpenWhisk's kind of a sequence action (`Exec.SEQUENCE`).
pub const SEQUENCE: &str = "sequence";

/// OpenWhisk's message for a component path that names no namespace
/// (`Messages.malformedFullyQualifiedEntityName`).
pub const MALFORMED_COMPONENT: &str = "The fully qualified name of the entity must contain at least the namespace and the name of the entity.";

/// A sequence's components, each a fully qualified action path. Stored and shown as OpenWhisk
/// writes them (`/ns/name`, `/ns/pkg/name`); a component may name a binding, which is resolved
/// when the sequence runs, as any invoke through a binding is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceExec {
    pub components: Vec<FullyQualifiedName>,
}

impl SequenceExec {
    /// Reads the `components` of a create or update as OpenWhisk's `EntityPath` does: `/`
    /// separated, empty segments ignored (so the leading slash is optional), two or three
    /// segments (namespace, optional package, name), each a valid entity name; `_` as the
    /// namespace is the creator's (`caller`), as OpenWhisk resolves it before storing.
    pub fn parse(components: &[String], caller: &EntityName) -> Result<Self, String> {
        let components =
            components.iter().map(|c| parse_component(c, caller)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { components })
    }

    /// The components as OpenWhisk shows them: with a leading slash.
    pub fn paths(&self) -> Vec<String> {
        self.components.iter().map(|c| format!("/{c}")).collect()
    }
}

fn parse_component(path: &str, caller: &EntityName) -> Result<FullyQualifiedName, String> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let names = parts
        .iter()
        .map(|p| EntityName::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("path contains invalid parts {path:?}"))?;
    let resolve = |ns: &EntityName| if ns.as_str() == "_" { caller.clone() } else { ns.clone() };
    match names.as_slice() {
        [ns, name] => Ok(FullyQualifiedName::new(resolve(ns), name.clone())),
        [ns, pkg, name] => {
            Ok(FullyQualifiedName::in_package(resolve(ns), pkg.clone(), name.clone()))
        }
        _ => Err(MALFORMED_COMPONENT.to_owned()),
    }
}

/// What a stored action runs: code in a runtime (what the invoker gets, [`ExecMeta`]) or a
/// sequence of other actions, which never reaches an invoker: the controller runs it
/// (controller/sequence.rs). Stored in the JSON shape OpenWhisk gives each (`kind`, `main`,
/// `binary`; `kind: sequence` with `components`), so actions stored before sequences existed
/// read back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionExec {
    Code(ExecMeta),
    Sequence(SequenceExec),
}

impl ActionExec {
    /// The kind as OpenWhisk names it (`sequence` for a sequence).
    pub fn kind(&self) -> &str {
        match self {
            ActionExec::Code(e) => e.kind.as_str(),
            ActionExec::Sequence(_) => SEQUENCE,
        }
    }

    /// The code exec, if this action runs code.
    pub fn code(&self) -> Option<&ExecMeta> {
        match self {
            ActionExec::Code(e) => Some(e),
            ActionExec::Sequence(_) => None,
        }
    }
}

/// The stored and wire shape of [`ActionExec`].
#[derive(Serialize, Deserialize)]
struct RawExec {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    main: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    components: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

impl Serialize for ActionExec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ActionExec::Code(e) => e.serialize(s),
            ActionExec::Sequence(seq) => RawExec {
                kind: SEQUENCE.to_owned(),
                main: None,
                binary: None,
                components: Some(seq.paths()),
                image: None,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ActionExec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawExec::deserialize(d)?;
        if raw.kind == SEQUENCE {
            let components = raw.components.unwrap_or_default();
            // Stored components are fully qualified: no `_` to resolve.
            let none = EntityName::parse("_").map_err(serde::de::Error::custom)?;
            let seq = SequenceExec::parse(&components, &none).map_err(serde::de::Error::custom)?;
            return Ok(ActionExec::Sequence(seq));
        }
        let kind = Kind::parse(&raw.kind).map_err(serde::de::Error::custom)?;
        let binary = raw.binary.unwrap_or(false);
        Ok(ActionExec::Code(ExecMeta { kind, main: raw.main, binary, image: raw.image }))
    }
}

/// Sets OpenWhisk's `exec` annotation of a sequence (`exec: sequence`, over any value the
/// creator gave), and drops it from an action that stopped being one. Code actions keep
/// hearth's annotations as they were written (OpenWhisk's annotation of their kind is not
/// added: the catalog compares stored annotations, and clients read `exec.kind`).
pub fn amend_exec_annotation(annotations: &mut Vec<KeyValue>, exec: &ActionExec) {
    annotations.retain(|kv| !(kv.key == "exec" && kv.value == SEQUENCE));
    if matches!(exec, ActionExec::Sequence(_)) {
        annotations.retain(|kv| kv.key != "exec");
        annotations.push(KeyValue::new("exec", SEQUENCE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve() {
        assert_eq!(Kind::parse("python:3").unwrap().runtime(), Runtime::Python);
        assert_eq!(Kind::parse("nodejs:default").unwrap().runtime(), Runtime::Nodejs);
        assert!(Kind::parse("java:8").is_err());
        assert_eq!(Kind::parse("nodejs").unwrap().as_str(), "nodejs");
        assert_eq!(Kind::parse("nodejs:default").unwrap().as_str(), "nodejs:20");
        assert_eq!(Kind::parse("python:default").unwrap().as_str(), "python:3");
    }

    #[test]
    fn kind_from_file() {
        assert_eq!(Kind::from_file_name("a.py").unwrap().runtime(), Runtime::Python);
        assert_eq!(Kind::from_file_name("dir/a.js").unwrap().runtime(), Runtime::Nodejs);
        assert!(Kind::from_file_name("a.rb").is_none());
    }

    #[test]
    fn blackbox_runs_the_skeleton_natively_and_other_images_as_images() {
        let bb = Kind::parse("blackbox").unwrap();
        assert_eq!(bb.runtime(), Runtime::Native);
        assert_eq!(check_image(&bb, None), Ok(()));
        assert_eq!(check_image(&bb, Some("openwhisk/dockerskeleton")), Ok(()));
        assert_eq!(check_image(&bb, Some("openwhisk/dockerskeleton:nightly")), Ok(()));
        assert_eq!(check_image(&bb, Some("docker.io/openwhisk/dockerskeleton:1.14")), Ok(()));
        assert_eq!(check_image(&bb, Some("openwhisk/python3action")), Ok(()));
        assert!(check_image(&bb, Some("")).is_err());
        assert!(check_image(&bb, Some("a b")).is_err());
        let image = |i: &str| ExecMeta {
            kind: bb.clone(),
            main: None,
            binary: false,
            image: Some(i.to_owned()),
        };
        assert_eq!(image("hearth-test/proxy:1").run_image(), Some("hearth-test/proxy:1"));
        assert_eq!(image("openwhisk/dockerskeleton:1.14").run_image(), None);
        let py = Kind::parse("python:3").unwrap();
        assert_eq!(check_image(&py, Some("openwhisk/python3action")), Ok(()));
        assert_eq!(check_image(&py, None), Ok(()));
    }

    #[test]
    fn components_parse_as_openwhisk_paths() {
        let guest = EntityName::parse("guest").unwrap();
        let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let seq =
            SequenceExec::parse(&paths(&["/_/a", "/whisk.system/utils/echo", "other/b"]), &guest)
                .unwrap();
        assert_eq!(seq.paths(), ["/guest/a", "/whisk.system/utils/echo", "/other/b"]);
        assert_eq!(SequenceExec::parse(&paths(&["a"]), &guest).unwrap_err(), MALFORMED_COMPONENT);
        assert_eq!(SequenceExec::parse(&paths(&["/a"]), &guest).unwrap_err(), MALFORMED_COMPONENT);
        assert_eq!(
            SequenceExec::parse(&paths(&["/a/b/c/d"]), &guest).unwrap_err(),
            MALFORMED_COMPONENT
        );
        let bad = SequenceExec::parse(&paths(&["/guest/-x"]), &guest).unwrap_err();
        assert!(bad.contains("invalid parts"), "{bad}");
        assert!(SequenceExec::parse(&[], &guest).unwrap().components.is_empty());
    }

    #[test]
    fn exec_round_trips_in_openwhisks_shapes() {
        let code: ActionExec =
            serde_json::from_str(r#"{"kind":"python:3","binary":false}"#).unwrap();
        assert_eq!(code.kind(), "python:3");
        assert_eq!(serde_json::to_string(&code).unwrap(), r#"{"kind":"python:3","binary":false}"#);
        let seq: ActionExec =
            serde_json::from_str(r#"{"kind":"sequence","components":["/guest/p/a","/guest/b"]}"#)
                .unwrap();
        assert_eq!(seq.kind(), SEQUENCE);
        assert!(seq.code().is_none());
        let v = serde_json::to_value(&seq).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind":"sequence","components":["/guest/p/a","/guest/b"]})
        );
    }

    #[test]
    fn the_exec_annotation_follows_the_kind() {
        let seq = ActionExec::Sequence(SequenceExec { components: vec![] });
        let mut ann = vec![KeyValue::new("exec", "nodejs"), KeyValue::new("x", 1)];
        amend_exec_annotation(&mut ann, &seq);
        assert_eq!(ann, [KeyValue::new("x", 1), KeyValue::new("exec", SEQUENCE)]);
        let code = ActionExec::Code(ExecMeta {
            kind: Kind::parse("python:3").unwrap(),
            main: None,
            binary: false,
            image: None,
        });
        amend_exec_annotation(&mut ann, &code);
        assert_eq!(ann, [KeyValue::new("x", 1)]);
    }
}
