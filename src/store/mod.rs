//! The LMDB store: one heed environment holding every entity as a typed database.
//!
//! Owns: namespaces, keys (salted hashes only), packages, actions (metadata and code in separate
//! databases so the hot lookup never touches the code), activation records with their listing
//! and retention indexes, and the `keys_generation` counter that invalidates the in-memory auth
//! cache across processes. LMDB's lock file makes the store safe to open from several
//! processes at once (`hearthd admin` while the daemon runs).
//!
//! Must never: hold a transaction across an `.await` (callers run writes on blocking threads),
//! store a secret in clear, or panic on bytes read from disk.

mod actions;
mod activations;
mod alarms;
mod auth_cache;
mod code_source;
mod codec;
mod error;
mod feed;
mod flusher;
#[cfg(feature = "kafka")]
mod kafka;
mod keys;
mod meta;
mod named;
mod namespace_limits;
mod namespaces;
mod packages;
mod pending;
mod record_feed;
mod replica;
mod routes;
mod rules;
mod triggers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

pub use actions::{ActionUpdate, ExecUpdate};
pub use activations::{ActivationQuery, ACTIVATION_LIST_DEFAULT, ACTIVATION_LIST_MAX};
pub use error::StoreError;
pub use feed::{FeedEntry, PublishWaiter};
pub use keys::KeyRecord;
pub use namespaces::NamespaceRecord;
pub use packages::{PackageUpdate, Resolution, BINDING_ANNOTATION};
pub use pending::{UnclaimedRule, STOPPED_MESSAGE};
#[cfg(feature = "kafka")]
pub use record_feed::RecordOutbox;
pub use record_feed::{Materialised, RecordFeedEntry};
pub use replica::Applied;
pub use rules::{RuleUpdate, StatusChange};
pub use triggers::TriggerUpdate;

use auth_cache::AuthCache;
use error::lmdb;

/// A raw-bytes database; records are encoded by [`codec`].
type Db = Database<Bytes, Bytes>;

/// Tuning of the environment.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Size of the memory map. Sparse: the file grows only as data is written, so a large
    /// value costs address space, not disk. 4 GiB holds ~80 maximal actions or millions of
    /// activation records.
    pub map_size: usize,
    /// Readers allowed at once across all processes (LMDB's reader table).
    pub max_readers: u32,
    /// `Some(interval)`: open with `NO_SYNC` (a commit survives a kill -9 of the process at
    /// once) and flush to disk every `interval` and on drop (an OS crash loses at most that
    /// much). `None`: LMDB's default, an fsync per commit.
    pub sync_interval: Option<Duration>,
}

/// How often a `NO_SYNC` environment is flushed: an OS crash (not a process crash) may lose
/// the commits of this window. Each flush is one fsync of the data file, cheap when little
/// changed.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

impl Default for StoreOptions {
    fn default() -> Self {
        Self { map_size: 4 << 30, max_readers: 510, sync_interval: Some(SYNC_INTERVAL) }
    }
}

/// The named databases; adding one means bumping [`MAX_DBS`].
const MAX_DBS: u32 = 20;

pub(crate) struct Dbs {
    pub namespaces: Db,
    pub keys: Db,
    pub actions: Db,
    pub code: Db,
    pub activations: Db,
    pub activations_by_ns: Db,
    pub activations_by_time: Db,
    pub meta: Db,
    /// Activations acknowledged (id returned) and not yet finished: id -> the internal-error
    /// record they end with if the server stops first.
    pub pending: Db,
    /// The entity change feed (outbox): seq (u64 BE) -> entity key (`feed.rs`).
    pub feed: Db,
    /// Entity key -> the last feed seq that wrote it here (`replica.rs` skips stale echoes).
    pub feed_last: Db,
    /// Packages and bindings: `ns/name` -> record (`packages.rs`).
    pub packages: Db,
    /// Committed activation records not yet on the records topic: seq (u64 BE) -> activation
    /// id (`record_feed.rs`; cluster controllers only).
    pub record_feed: Db,
    /// Triggers, rules and alarm schedules: `ns/name` -> record (`named.rs`).
    pub triggers: Db,
    pub rules: Db,
    pub alarms: Db,
    /// API routes: `ns{basepath}` -> record (`routes.rs`).
    pub routes: Db,
}

struct Inner {
    /// Declared first so it is dropped (its thread joined, a last flush done) before `env`.
    _flusher: Option<flusher::Flusher>,
    env: Env<WithoutTls>,
    dbs: Dbs,
    auth_cache: AuthCache,
    path: PathBuf,
    /// Makes entity writes wait for their publication (cluster controllers only).
    publish_waiter: std::sync::OnceLock<Arc<dyn PublishWaiter>>,
    /// Woken after each applied entity record (invokers waiting for a revision).
    applied: tokio::sync::Notify,
    /// Whether committed activation records are fed to the records topic (`record_feed.rs`).
    record_feed: record_feed::RecordFeed,
}

/// A handle on the store; clones share one environment. Send + Sync.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the environment in `dir` and every database in it.
    ///
    /// heed refuses to open one path twice in a process, so a process opens its store once and
    /// shares clones; another process (admin) opens its own handle and LMDB coordinates them.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        let open_err = |source| StoreError::Open { path: dir.to_owned(), source };
        let mut eo = EnvOpenOptions::new().read_txn_without_tls();
        eo.map_size(opts.map_size).max_dbs(MAX_DBS).max_readers(opts.max_readers);
        if opts.sync_interval.is_some() {
            // SAFETY: NO_SYNC only defers the flush of committed pages to the OS; the flusher
            // below flushes them every interval and on drop. What a process crash leaves is
            // consistent (the page cache holds every commit); an OS crash may lose or, per
            // LMDB's documentation, damage the last unflushed commits, the trade made for
            // microsecond commits (docs/SECURITY.md).
            unsafe { eo.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: the environment is only ever modified through LMDB (this process or another
        // hearth process using LMDB's lock file); nothing truncates or rewrites data.mdb, and
        // heed refuses a second open of the same path within this process.
        let env = unsafe { eo.open(dir) }.map_err(open_err)?;
        let mut wtxn = env.write_txn().map_err(open_err)?;
        let mut create = |name: &'static str| -> Result<Db, StoreError> {
            env.create_database(&mut wtxn, Some(name)).map_err(lmdb("create", name))
        };
        let dbs = Dbs {
            namespaces: create("namespaces")?,
            keys: create("keys")?,
            actions: create("actions")?,
            code: create("code")?,
            activations: create("activations")?,
            activations_by_ns: create("activations_by_ns")?,
            activations_by_time: create("activations_by_time")?,
            meta: create("meta")?,
            pending: create("pending")?,
            feed: create("feed")?,
            feed_last: create("feed_last")?,
            packages: create("packages")?,
            record_feed: create("record_feed")?,
            triggers: create("triggers")?,
            rules: create("rules")?,
            alarms: create("alarms")?,
            routes: create("routes")?,
        };
        wtxn.commit().map_err(open_err)?;
        let flusher = match opts.sync_interval {
            Some(every) => Some(
                flusher::Flusher::start(env.clone(), every)
                    .map_err(|source| StoreError::SyncThread { path: dir.to_owned(), source })?,
            ),
            None => None,
        };
        tracing::debug!(path = %dir.display(), sync_interval = ?opts.sync_interval, "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                _flusher: flusher,
                env,
                dbs,
                auth_cache: AuthCache::default(),
                path: dir.to_owned(),
                publish_waiter: std::sync::OnceLock::new(),
                applied: tokio::sync::Notify::new(),
                record_feed: record_feed::RecordFeed::default(),
            }),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Flushes every commit so far to disk (the flusher does this periodically; shutdown calls
    /// it once more).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.inner.env.force_sync().map_err(lmdb("force_sync", "env"))
    }

    pub(crate) fn dbs(&self) -> &Dbs {
        &self.inner.dbs
    }

    pub(crate) fn read_txn(&self) -> Result<heed::RoTxn<'_, WithoutTls>, StoreError> {
        self.inner.env.read_txn().map_err(lmdb("read_txn", "env"))
    }

    pub(crate) fn write_txn(&self) -> Result<heed::RwTxn<'_>, StoreError> {
        self.inner.env.write_txn().map_err(lmdb("write_txn", "env"))
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A store in a fresh temp dir (the dir lives as long as the returned guard).
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), StoreOptions { map_size: 64 << 20, ..Default::default() })
                .unwrap();
        (dir, store)
    }
}
