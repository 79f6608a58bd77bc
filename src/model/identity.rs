//! Callers: authentication keys and the identity they resolve to.
//!
//! A key is `uuid:secret` (OpenWhisk's shape). Only a salted SHA-256 of the secret is ever
//! stored; secrets are 64 random alphanumerics, so a fast hash is enough (there is nothing
//! to brute-force that is cheaper than the secret itself).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::EntityName;

/// Length of a key's secret part.
pub const SECRET_LEN: usize = 64;

/// OpenWhisk's well-known standalone guest key. Public: used only by `hearthd standalone`.
pub const GUEST_KEY: &str =
    "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// A key as presented by a client.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    pub uuid: Uuid,
    pub secret: String,
}

/// A malformed key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key is not of the form uuid:secret")]
pub struct KeyFormatError;

impl AuthKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // Rejection sampling keeps the choice uniform: 256 is not a multiple of 62, so bytes
        // of 248 (4 * 62) and above are drawn again.
        let mut secret = String::with_capacity(SECRET_LEN);
        let mut raw = [0u8; SECRET_LEN];
        while secret.len() < SECRET_LEN {
            getrandom::fill(&mut raw)?;
            let fresh = raw
                .iter()
                .filter(|&&b| b < 248)
                .map(|&b| char::from(ALPHABET[usize::from(b % 62)]));
            secret.extend(fresh.take(SECRET_LEN - secret.len()));
        }
        Ok(Self { uuid: Uuid::new_v4(), secret })
    }

    /// Parses `uuid:secret`.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let (u, secret) = s.split_once(':').ok_or(KeyFormatError)?;
        let uuid = Uuid::parse_str(u).map_err(|_| KeyFormatError)?;
        if secret.is_empty() || secret.len() > 1024 {
            return Err(KeyFormatError);
        }
        Ok(Self { uuid, secret: secret.to_owned() })
    }

    /// The salted hash stored for this key.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.uuid, &self.secret)
    }
}

impl fmt::Display for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.secret)
    }
}

impl fmt::Debug for AuthKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({}:***)", self.uuid)
    }
}

/// SHA-256 over the uuid's bytes and the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash(#[serde(with = "hex32")] pub [u8; 32]);

impl SecretHash {
    pub fn of(uuid: &Uuid, secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(uuid.as_bytes());
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// Compares in constant time, so response timing does not leak how much of a guess matched.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(64);
        for x in b {
            out.push_str(&format!("{x:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(serde::de::Error::custom("hash must be 64 hex digits"));
        }
        for (i, c) in s.as_bytes().chunks(2).enumerate() {
            let h = std::str::from_utf8(c).map_err(serde::de::Error::custom)?;
            out[i] = u8::from_str_radix(h, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

/// Who a request acts as: the namespace its key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: EntityName,
    pub uuid: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let k = AuthKey::generate().unwrap();
        assert_eq!(k.secret.len(), SECRET_LEN);
        assert!(k.secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        let p = AuthKey::parse(&k.to_string()).unwrap();
        assert!(p.hash().matches(&k.hash()));
    }

    #[test]
    fn guest_key_parses() {
        let k = AuthKey::parse(GUEST_KEY).unwrap();
        assert_eq!(k.secret.len(), 64);
    }

    #[test]
    fn debug_hides_secret() {
        let k = AuthKey::parse(GUEST_KEY).unwrap();
        assert!(!format!("{k:?}").contains("123zO3"));
    }

    #[test]
    fn hash_serde_round_trip() {
        let h = AuthKey::parse(GUEST_KEY).unwrap().hash();
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<SecretHash>(&s).unwrap(), h);
    }
}
