//! Record encoding: JSON for entities (readable with `mdb_dump`, schema-tolerant), fixed-width
//! big-endian integers inside keys so that byte order is time order.
//!
//! Decoding never panics: a record that does not decode is a [`StoreError::Corrupt`] naming the
//! database and the key, so one bad record fails one request, not the daemon.

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;

pub(crate) fn encode<T: Serialize>(
    db: &'static str,
    key: &[u8],
    v: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Encode { db, key: show_key(key), source })
}

pub(crate) fn decode<T: DeserializeOwned>(
    db: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        db,
        key: show_key(key),
        message: e.to_string(),
    })
}

/// The record under `key` in `db`, decoded; `None` when there is none.
pub(crate) fn get<T: DeserializeOwned>(
    db: &super::Db,
    name: &'static str,
    txn: &heed::RoTxn,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match db.get(txn, key.as_bytes()).map_err(super::error::lmdb("get", name))? {
        Some(v) => Ok(Some(decode(name, key.as_bytes(), v)?)),
        None => Ok(None),
    }
}

/// A cursor over `(key, value)` records, borrowing the transaction.
pub(crate) type Records<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;

/// The records of `db` whose key starts with `prefix` (all of them for an empty prefix, which
/// LMDB's prefix cursor refuses).
pub(crate) fn scan<'t>(
    db: &super::Db,
    txn: &'t heed::RoTxn,
    name: &'static str,
    prefix: &str,
) -> Result<Records<'t>, StoreError> {
    Ok(if prefix.is_empty() {
        Box::new(db.iter(txn).map_err(super::error::lmdb("iter", name))?)
    } else {
        Box::new(
            db.prefix_iter(txn, prefix.as_bytes())
                .map_err(super::error::lmdb("prefix_iter", name))?,
        )
    })
}

/// Reads a big-endian u64 from the first 8 bytes of `bytes`.
pub(crate) fn be_u64(db: &'static str, key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes).ok_or_else(
        || StoreError::Corrupt {
            db,
            key: show_key(key),
            message: format!("expected at least 8 bytes, found {}", bytes.len()),
        },
    )
}

/// A key for error messages: text when it is text, hex otherwise.
pub(crate) fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.contains('\0') => s.to_owned(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bytes_are_errors_naming_the_key() {
        let err = decode::<serde_json::Value>("actions", b"guest/x", b"{not json").unwrap_err();
        assert!(err.to_string().contains("guest/x"), "{err}");
        assert!(be_u64("code", b"k", b"abc").is_err());
        assert_eq!(be_u64("code", b"k", &7u64.to_be_bytes()).unwrap(), 7);
        assert_eq!(show_key(&[0, 1]), "0001");
    }
}
