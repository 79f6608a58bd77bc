//! The syncer: with the environment opened `NO_SYNC`, a commit is a write into the page cache
//! (it survives a kill of the process, not a crash of the OS); this thread flushes the
//! environment to disk every `interval`, and once more when the store is dropped, so an OS
//! crash loses at most the last interval of commits.
//!
//! Why not LMDB's default (an fsync per commit)? Measured on these machines a single-record
//! commit costs milliseconds with the fsync and tens of microseconds without it, and the
//! invoke path now commits a record before every response (see `controller::records`).
//!
//! Owns: the flushing thread of one environment. Must never: outlive the store (heed refuses
//! to reopen a path while a clone of its environment lives, so the thread is joined on drop).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use heed::{Env, WithoutTls};

/// Disk space kept allocated beyond the last page the store uses (see [`Reserve`]). At a few
/// hundred bytes of growth per activation record, 16 MB is minutes of records at full speed,
/// against the syncer's 100 ms between two extensions.
const RESERVE_BYTES: u64 = 16 << 20;

/// Keeps the data file's blocks allocated ahead of the store's growth.
///
/// The store is opened `WRITE_MAP` (commits write into a shared map of the file instead of a
/// `pwrite` per dirty page), and LMDB then truncates the file up to the map size, sparse. A
/// first write into a hole of that file allocates its block at the page fault, and when the
/// disk is full the kernel can only answer that fault with SIGBUS, killing the process, where
/// a `pwrite` would have failed the commit with ENOSPC. Allocating (`fallocate`) a reserve
/// ahead of the last used page moves the "disk full" moment here, where it is logged, while
/// the commits go on into blocks that already exist.
pub(crate) struct Reserve {
    file: File,
    page_size: u64,
    /// Bytes from the start of the file known to be allocated.
    allocated: u64,
    /// The last extension failed (logged once until one succeeds).
    failing: bool,
}

impl Reserve {
    /// Opens the data file of the environment in `dir` and allocates the first reserve.
    pub(crate) fn open(dir: &Path, env: &Env<WithoutTls>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("data.mdb"))?;
        let page_size = u64::from(env.stat().page_size);
        let mut r = Self { file, page_size, allocated: 0, failing: false };
        r.extend(env);
        Ok(r)
    }

    /// Allocates up to [`RESERVE_BYTES`] past the last used page, once half the reserve is
    /// used (one `fallocate` per 8 MB of growth).
    pub(crate) fn extend(&mut self, env: &Env<WithoutTls>) {
        let info = env.info();
        let map_size = u64::try_from(info.map_size).unwrap_or(u64::MAX);
        let used = u64::try_from(info.last_page_number)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .saturating_mul(self.page_size);
        let target = used.saturating_add(RESERVE_BYTES).min(map_size);
        if used.saturating_add(RESERVE_BYTES / 2).min(map_size) <= self.allocated {
            return;
        }
        let (Ok(offset), Ok(len)) =
            (libc::off_t::try_from(self.allocated), libc::off_t::try_from(target - self.allocated))
        else {
            return;
        };
        // SAFETY: fallocate on an fd we own, mode 0 (allocate, never changes the contents).
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            if self.failing {
                tracing::info!(path = %env.path().display(), "disk space for the store is available again");
            }
            self.allocated = target;
            self.failing = false;
        } else if !self.failing {
            let e = std::io::Error::last_os_error();
            tracing::error!(
                path = %env.path().display(),
                error = %e,
                used_bytes = used,
                "cannot allocate disk space ahead of the store: when the disk is full, a commit \
                 into unallocated space kills the process (SIGBUS)"
            );
            self.failing = true;
        }
    }
}

/// The flushing thread; stopped and joined on drop.
pub(crate) struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts flushing `env` every `interval`, extending `reserve` (when given) after each
    /// flush.
    pub(crate) fn start(
        env: Env<WithoutTls>,
        interval: Duration,
        mut reserve: Option<Reserve>,
    ) -> std::io::Result<Self> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("hearth-lmdb-sync".into()).spawn(move || {
            loop {
                let stopping = match rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
                };
                if let Err(e) = env.force_sync() {
                    tracing::error!(error = %e, path = %env.path().display(), "flushing the store to disk failed");
                }
                if let Some(r) = &mut reserve {
                    r.extend(&env);
                }
                if stopping {
                    break;
                }
            }
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the store's sync thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::model::{Activation, ActivationId, ActivationResponse};
    use crate::store::{Store, StoreOptions};

    fn one() -> Activation {
        Activation {
            namespace: "guest".into(),
            name: "a".into(),
            subject: "guest".into(),
            activation_id: ActivationId::generate(),
            start: 1,
            end: 2,
            duration: 1,
            status_code: 0,
            response: ActivationResponse::success(serde_json::json!({"greeting": "hello"})),
            logs: vec!["2024-01-01T00:00:00Z stdout: a line".into()],
            annotations: vec![],
            version: "0.0.1".into(),
            publish: false,
        }
    }

    /// Median cost of a one-record commit (the temp dir must be on a disk for the fsync
    /// figure to mean anything; on the CI machines /tmp is ext4).
    fn median_commit(sync_interval: Option<std::time::Duration>) -> std::time::Duration {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            dir.path(),
            StoreOptions { map_size: 64 << 20, sync_interval, ..Default::default() },
        )
        .unwrap();
        let mut t: Vec<_> = (0..200)
            .map(|_| {
                let a = one();
                let start = Instant::now();
                s.put_activations(std::slice::from_ref(&a)).unwrap();
                start.elapsed()
            })
            .collect();
        t.sort();
        t[t.len() / 2]
    }

    #[test]
    fn write_map_store_keeps_disk_blocks_allocated_ahead() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let map_size = 64 << 20;
        let s = Store::open(dir.path(), StoreOptions { map_size, ..Default::default() }).unwrap();
        let records: Vec<Activation> = (0..500).map(|_| one()).collect();
        s.put_activations(&records).unwrap();
        let meta = std::fs::metadata(dir.path().join("data.mdb")).unwrap();
        // WRITE_MAP: LMDB sized the file to the map, sparse ...
        assert_eq!(meta.len(), map_size as u64);
        // ... and the reserve allocated its blocks well past what the store uses.
        let allocated = meta.blocks() * 512;
        assert!(allocated >= super::RESERVE_BYTES, "{allocated} bytes allocated");
        let ns = crate::model::EntityName::parse("guest").unwrap();
        assert!(s.get_activation(&ns, &records[499].activation_id).unwrap().is_some());
    }

    #[test]
    fn no_sync_commit_is_cheap_and_survives_reopen() {
        let lazy = median_commit(Some(super::super::SYNC_INTERVAL));
        let eager = median_commit(None);
        println!("one-record commit, median of 200: NO_SYNC {lazy:?}, fsync per commit {eager:?}");
        assert!(lazy < std::time::Duration::from_millis(2), "NO_SYNC commit took {lazy:?}");

        // Dropping the store joins the syncer (so the path can be opened again) after a flush.
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { map_size: 64 << 20, ..Default::default() };
        let a = one();
        {
            let s = Store::open(dir.path(), opts.clone()).unwrap();
            s.put_activations(std::slice::from_ref(&a)).unwrap();
            s.sync().unwrap();
        }
        let s = Store::open(dir.path(), opts).unwrap();
        let ns = crate::model::EntityName::parse("guest").unwrap();
        assert_eq!(s.get_activation(&ns, &a.activation_id).unwrap().unwrap(), a);
    }
}
