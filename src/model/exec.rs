//! What an action runs: its kind (runtime) and how to enter it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A runtime family hearth ships a launcher for. Aliases (`python:3`, `python:default`,
/// `nodejs:20`, `nodejs:default`) all resolve to the host's interpreter of that family;
/// `blackbox` with OpenWhisk's skeleton image is [`Runtime::Native`]: an executable of the
/// action's own, run by hearth's launcher in hearth's skeleton (no image is pulled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Python,
    Nodejs,
    Native,
}

impl Runtime {
    pub fn as_str(&self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Nodejs => "nodejs",
            Runtime::Native => "native",
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

/// An `exec.image` that hearth cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the image {0:?} is not supported yet: hearth runs blackbox actions only as native \
     executables ({NATIVE_IMAGE}, as `wsk action create --native` sends); other images need \
     OCI image support, which is not there yet"
)]
pub struct ImageError(pub String);

/// Checks an exec's `image` against its kind. A blackbox action must name OpenWhisk's skeleton
/// (any tag, with or without the `docker.io/` registry) or nothing, which means the skeleton.
/// The other kinds run the host's interpreters: an image sent with them is ignored, as
/// OpenWhisk ignores it for a code kind.
pub fn check_image(kind: &Kind, image: Option<&str>) -> Result<(), ImageError> {
    let Some(image) = image.filter(|_| kind.runtime() == Runtime::Native) else {
        return Ok(());
    };
    let name = image.strip_prefix("docker.io/").unwrap_or(image);
    let name = name.split_once(':').map_or(name, |(name, _tag)| name);
    if name == NATIVE_IMAGE {
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
}

impl ExecMeta {
    /// The function the launcher calls.
    pub fn entry_point(&self) -> &str {
        self.main.as_deref().unwrap_or("main")
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
    fn blackbox_runs_only_the_skeleton() {
        let bb = Kind::parse("blackbox").unwrap();
        assert_eq!(bb.runtime(), Runtime::Native);
        assert_eq!(check_image(&bb, None), Ok(()));
        assert_eq!(check_image(&bb, Some("openwhisk/dockerskeleton")), Ok(()));
        assert_eq!(check_image(&bb, Some("openwhisk/dockerskeleton:nightly")), Ok(()));
        assert_eq!(check_image(&bb, Some("docker.io/openwhisk/dockerskeleton:1.14")), Ok(()));
        let err = check_image(&bb, Some("openwhisk/python3action")).unwrap_err();
        assert!(err.to_string().contains("not supported yet"), "{err}");
        let py = Kind::parse("python:3").unwrap();
        assert_eq!(check_image(&py, Some("openwhisk/python3action")), Ok(()));
        assert_eq!(check_image(&py, None), Ok(()));
    }
}
