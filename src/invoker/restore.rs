//! Live restore: what a restarted invoker needs to take its warm containers back.
//!
//! Owns the per-container metadata file (`<dir>/<container>.json`: the action, its revision,
//! runtime and memory) and the pairing of it with the container's pipes, which the daemon
//! keeps in systemd's fd store through an [`FdKeeper`]. A container is recorded once, when it
//! first goes warm, after its record was sent (off the critical path), and forgotten when it
//! is destroyed. At the next start [`LiveRestore::pair`] matches stored pipes with metadata;
//! anything without both is not restored (and is reclaimed as a leftover).
//! It never decides whether to keep containers on a stop; the invoker's stop policy does.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::WarmKey;
use crate::model::{EntityName, FullyQualifiedName, Runtime};

/// Pipes per container: stdin, stdout, stderr, the reply pipe.
pub const FDS_PER_CONTAINER: usize = 4;

/// Where descriptors survive the process (systemd's fd store in production).
pub trait FdKeeper: Send + Sync + 'static {
    fn keep(&self, container: &str, fds: &[OwnedFd]) -> Result<(), String>;
    fn forget(&self, container: &str, count: usize);
}

/// The metadata file of one warm container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmRecord {
    pub container: String,
    pub namespace: String,
    /// The package of the action (absent for one outside any package, and in records kept
    /// before packages existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub name: String,
    pub revision: u64,
    pub runtime: Runtime,
    pub memory_mb: u64,
}

impl WarmRecord {
    pub fn new(container: &str, key: &WarmKey, runtime: Runtime, memory_mb: u64) -> Self {
        Self {
            container: container.to_owned(),
            namespace: key.action.namespace.to_string(),
            package: key.action.package.as_ref().map(ToString::to_string),
            name: key.action.name.to_string(),
            revision: key.revision,
            runtime,
            memory_mb,
        }
    }

    pub fn key(&self) -> Option<WarmKey> {
        let namespace = EntityName::parse(&self.namespace).ok()?;
        let name = EntityName::parse(&self.name).ok()?;
        let action = match &self.package {
            Some(p) => FullyQualifiedName::in_package(namespace, EntityName::parse(p).ok()?, name),
            None => FullyQualifiedName::new(namespace, name),
        };
        Some(WarmKey { action, revision: self.revision })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot create the live-restore dir {path}: {source}")]
    Dir { path: String, source: std::io::Error },
}

/// The metadata dir plus the keeper of the pipes.
pub struct LiveRestore {
    dir: PathBuf,
    keeper: Arc<dyn FdKeeper>,
}

impl std::fmt::Debug for LiveRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRestore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl LiveRestore {
    pub fn new(dir: &Path, keeper: Arc<dyn FdKeeper>) -> Result<Self, RestoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| RestoreError::Dir { path: dir.display().to_string(), source })?;
        Ok(Self { dir: dir.to_owned(), keeper })
    }

    fn file(&self, container: &str) -> PathBuf {
        self.dir.join(format!("{container}.json"))
    }

    /// Records a warm container: metadata first, then the pipes, so a stored entry always has
    /// its file. Blocking (a small file write): run it off the async threads.
    pub fn kept(&self, record: &WarmRecord, fds: &[OwnedFd]) {
        let path = self.file(&record.container);
        let written = serde_json::to_vec(record)
            .map_err(|e| e.to_string())
            .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(container = %record.container, path = %path.display(), error = %e, "cannot write live-restore metadata");
            return;
        }
        if let Err(e) = self.keeper.keep(&record.container, fds) {
            tracing::warn!(container = %record.container, error = %e, "cannot keep the pipes for live restore");
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Forgets a container that was destroyed.
    pub fn forget(&self, container: &str) {
        self.keeper.forget(container, FDS_PER_CONTAINER);
        match std::fs::remove_file(self.file(container)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(container, error = %e, "cannot remove live-restore metadata"),
        }
    }

    /// Pairs stored pipes with their metadata. Entries without a readable file, or with a
    /// missing pipe, are forgotten (their pipes close; the container is reclaimed as a
    /// leftover). Metadata files without pipes are removed.
    pub fn pair(
        &self,
        stored: Vec<(String, Option<Vec<OwnedFd>>)>,
    ) -> Vec<(WarmRecord, [OwnedFd; FDS_PER_CONTAINER])> {
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (name, fds) in stored {
            names.insert(name.clone());
            let record = std::fs::read(self.file(&name))
                .ok()
                .and_then(|b| serde_json::from_slice::<WarmRecord>(&b).ok())
                .filter(|r| r.container == name && r.key().is_some());
            let fds: Option<[OwnedFd; FDS_PER_CONTAINER]> = fds.and_then(|v| v.try_into().ok());
            match (record, fds) {
                (Some(r), Some(f)) => out.push((r, f)),
                _ => {
                    tracing::warn!(container = %name, "stored container is incomplete; not restored");
                    self.forget(&name);
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.filter_map(|e| e.ok()) {
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(name) = file.strip_suffix(".json") else { continue };
                if !names.contains(name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl FdKeeper for Recorder {
        fn keep(&self, c: &str, fds: &[OwnedFd]) -> Result<(), String> {
            self.0.lock().unwrap().push(format!("keep {c} {}", fds.len()));
            Ok(())
        }
        fn forget(&self, c: &str, n: usize) {
            self.0.lock().unwrap().push(format!("forget {c} {n}"));
        }
    }

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect()
    }

    #[test]
    fn kept_then_paired_and_incomplete_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        let lr = LiveRestore::new(dir.path(), rec.clone()).unwrap();
        let key = crate::invoker::state::tests::key("hello", 3);
        let r = WarmRecord::new("hearth-1", &key, Runtime::Python, 256);
        lr.kept(&r, &fds(4));
        lr.kept(&WarmRecord::new("hearth-2", &key, Runtime::Nodejs, 128), &fds(4));
        std::fs::write(dir.path().join("hearth-9.json"), "{}").unwrap();
        let paired = lr.pair(vec![
            ("hearth-1".into(), Some(fds(4))),
            ("hearth-2".into(), Some(fds(3))),
            ("hearth-3".into(), Some(fds(4))),
        ]);
        assert_eq!(paired.len(), 1);
        assert_eq!(paired[0].0, r);
        assert_eq!(paired[0].0.key(), Some(key));
        let log = rec.0.lock().unwrap().clone();
        assert!(log.contains(&"keep hearth-1 4".to_owned()), "{log:?}");
        assert!(log.contains(&"forget hearth-2 4".to_owned()), "{log:?}");
        assert!(log.contains(&"forget hearth-3 4".to_owned()), "{log:?}");
        assert!(dir.path().join("hearth-1.json").exists());
        assert!(!dir.path().join("hearth-2.json").exists());
        assert!(!dir.path().join("hearth-9.json").exists());
        lr.forget("hearth-1");
        assert!(!dir.path().join("hearth-1.json").exists());
    }

    #[test]
    fn a_packaged_action_keeps_its_package_across_a_restore() {
        let n = |s: &str| EntityName::parse(s).unwrap();
        let action = FullyQualifiedName::in_package(n("guest"), n("utils"), n("echo"));
        let key = WarmKey { action, revision: 7 };
        let r = WarmRecord::new("hearth-1", &key, Runtime::Python, 256);
        let back: WarmRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.key(), Some(key));
        let old: WarmRecord = serde_json::from_str(
            r#"{"container":"c","namespace":"guest","name":"a","revision":1,"runtime":"python","memory_mb":256}"#,
        )
        .unwrap();
        assert_eq!(old.key().unwrap().action.key(), "guest/a", "records before packages");
    }
}
