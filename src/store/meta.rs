//! Store-wide counters. `keys_generation` is bumped in the same write transaction as every
//! change to keys or namespaces, so a reader that sees an unchanged generation knows every key
//! it cached is still valid, whichever process made the change.

use heed::{RoTxn, RwTxn};

use super::codec::be_u64;
use super::error::lmdb;
use super::{Store, StoreError};

const KEYS_GENERATION: &[u8] = b"keys_generation";

impl Store {
    pub(crate) fn keys_generation_in(&self, rtxn: &RoTxn) -> Result<u64, StoreError> {
        match self.dbs().meta.get(rtxn, KEYS_GENERATION).map_err(lmdb("get", "meta"))? {
            Some(b) => be_u64("meta", KEYS_GENERATION, b),
            None => Ok(0),
        }
    }

    /// Bumps the generation inside the caller's write transaction.
    pub(crate) fn bump_keys_generation(&self, wtxn: &mut RwTxn) -> Result<u64, StoreError> {
        let next = self.keys_generation_in(wtxn)?.wrapping_add(1);
        self.dbs()
            .meta
            .put(wtxn, KEYS_GENERATION, &next.to_be_bytes())
            .map_err(lmdb("put", "meta"))?;
        Ok(next)
    }

    /// The current generation (one read transaction).
    pub fn keys_generation(&self) -> Result<u64, StoreError> {
        let rtxn = self.read_txn()?;
        self.keys_generation_in(&rtxn)
    }
}
