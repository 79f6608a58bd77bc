//! The identity of a container image: what an action's `exec.image` resolves to on a host.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An image's id: the sha256 of its config blob, as Docker and the OCI image spec name an
/// image (`sha256:<64 hex digits>`). The same image pulled from a registry or imported from
/// an archive of either format has the same id, because its config is the same bytes; names
/// (`repo:tag`) point at ids. Copy and 32 bytes, so it can be part of a pool key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageDigest([u8; 32]);

/// Text that is not `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an image digest (sha256: and 64 lowercase hexadecimal digits)")]
pub struct ImageDigestError(pub String);

impl ImageDigest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the `sha256:` prefix (a directory name in the image store).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, as `docker images` shows an id.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }

    /// Reads 64 lowercase hex digits, with or without the `sha256:` prefix.
    pub fn parse_hex(s: &str) -> Result<Self, ImageDigestError> {
        let err = || ImageDigestError(s.to_owned());
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| err())?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

impl FromStr for ImageDigest {
    type Err = ImageDigestError;

    /// Only the full form, `sha256:<hex>`: a bare hex string could also be an image name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.starts_with("sha256:") {
            return Err(ImageDigestError(s.to_owned()));
        }
        Self::parse_hex(s)
    }
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ImageDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_text() {
        let text = format!("sha256:{}", "ab".repeat(32));
        let d: ImageDigest = text.parse().unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(d.short(), "abababababab");
        assert_eq!(serde_json::from_str::<ImageDigest>(&format!("{text:?}")).unwrap(), d);
        assert_eq!(ImageDigest::parse_hex(&"ab".repeat(32)).unwrap(), d);
        assert!("ab".repeat(32).parse::<ImageDigest>().is_err());
        assert!(format!("sha256:{}", "AB".repeat(32)).parse::<ImageDigest>().is_err());
        assert!("sha256:abc".parse::<ImageDigest>().is_err());
    }
}
