//! The flusher: with the environment opened `NO_SYNC`, a commit is a write into the page cache
//! (it survives a kill of the process, not a crash of the OS); this thread flushes the
//! environment to disk every `interval`, and once more when the store is dropped, so an OS
//! crash loses at most the last interval of commits.
//!
//! Why not LMDB's default (an fsync per commit)? A single-record commit costs orders of
//! magnitude more with the fsync than without it (BENCHMARKS.md, "Design measurements"), and
//! the invoke path commits a record before every response (see `controller::records`).
//!
//! Owns: the flushing thread of one environment. Must never: outlive the store (heed refuses
//! to reopen a path while a clone of its environment lives, so the thread is joined on drop).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use heed::{Env, WithoutTls};

/// The flushing thread; stopped and joined on drop.
pub(crate) struct Flusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(env: Env<WithoutTls>, interval: Duration) -> std::io::Result<Self> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("hearth-lmdb-sync".into()).spawn(move || {
            loop {
                let stopping = match rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
                };
                let started = Instant::now();
                if let Err(e) = env.force_sync() {
                    tracing::error!(error = %e, path = %env.path().display(), "flushing the store to disk failed");
                }
                // How long each flush takes (`HEARTH_LOG=hearth::store::flusher=debug`): a
                // flush runs beside the commits, so its length is what to look at first when
                // a warm invoke slows down after a write burst (BENCHMARKS.md, issue 16).
                let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tracing::debug!(took_us, "store flushed");
                if stopping {
                    break;
                }
            }
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Flusher {
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

    use crate::model::{Activation, ActivationResponse};
    use crate::store::{Store, StoreOptions};

    fn one() -> Activation {
        Activation {
            response: ActivationResponse::success(serde_json::json!({"greeting": "hello"})),
            logs: vec!["2024-01-01T00:00:00Z stdout: a line".into()],
            annotations: vec![],
            ..crate::testing::activation("guest", "a", 1)
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
    fn no_sync_commit_is_cheap_and_survives_reopen() {
        let lazy = median_commit(Some(super::super::SYNC_INTERVAL));
        let eager = median_commit(None);
        println!("one-record commit, median of 200: NO_SYNC {lazy:?}, fsync per commit {eager:?}");
        assert!(lazy < std::time::Duration::from_millis(2), "NO_SYNC commit took {lazy:?}");

        // Dropping the store joins the flusher (so the path can be opened again) after a flush.
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
