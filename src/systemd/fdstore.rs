//! Keeping descriptors in systemd's fd store across a restart of the daemon (live restore).
//!
//! Owns the naming of fd-store entries and their round trip: `FDSTORE=1` + `FDNAME=` to hand
//! fds to the service manager, `FDSTOREREMOVE=1` to drop them, and at the next start picking
//! them back out of `LISTEN_FDS` by name. The invoker stores each warm container's pipes under
//! the container's name, so a restarted invoker finds its containers still warm.
//!
//! Why one fd per datagram, each named `hearth-store.<entry>.<index>`: systemd does not keep
//! the order of the fd store (fds of one name can come back in any order), so the index in
//! the name is what restores "this is stdin, this is the result pipe". The prefix keeps stored
//! fds apart from socket-activation fds, which arrive in the same list (`FileDescriptorName=`
//! values of our sockets never start with it).
//!
//! Must never take a socket-activation fd, and never store an fd under a name systemd would
//! reject (it drops those silently, which would lose a container on restart).
//!
//! Two systemd behaviours to know: the unit needs `FileDescriptorStoreMax=` > 0, and systemd
//! deduplicates identical open files in the store (the same pipe end stored twice is kept
//! once), so store distinct descriptors only. The store survives `systemctl restart` and a
//! crash-restart, and is emptied (fds closed) when the unit stops for good.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use sd_notify::NotifyState;

use super::fds::InheritedFds;
use super::notify::{Notifier, NotifyError};

/// Prefix of every fd-store name hearth uses.
pub const PREFIX: &str = "hearth-store.";

/// systemd's limit on an fd name (FDNAME_MAX), the prefix and index included.
const FDNAME_MAX: usize = 255;

/// Entries never hold more descriptors than this (a container has four pipes).
pub const MAX_FDS_PER_ENTRY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum FdStoreError {
    #[error("fd-store entry name {name:?} is invalid: {why}")]
    BadName { name: String, why: &'static str },
    #[error("fd-store entry {name:?}: {count} fds, at most {MAX_FDS_PER_ENTRY} per entry")]
    TooMany { name: String, count: usize },
    #[error("fd-store entry {name:?}: {source}")]
    Notify {
        name: String,
        #[source]
        source: NotifyError,
    },
    #[error("fd-store entry {name:?}: fd {index} is unusable: {source}")]
    Take {
        name: String,
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// One entry taken back from the store: its name and its fds in the order they were stored.
/// An index missing from the sequence (systemd dropped or deduplicated one) is `None`, so the
/// caller can tell an incomplete entry from a complete one.
#[derive(Debug)]
pub struct StoredEntry {
    pub name: String,
    pub fds: Vec<Option<OwnedFd>>,
}

impl StoredEntry {
    /// All fds, if none is missing.
    pub fn into_complete(self) -> Option<Vec<OwnedFd>> {
        self.fds.into_iter().collect()
    }
}

/// Checks an entry name: systemd accepts printable ASCII without ':' (the LISTEN_FDNAMES
/// separator) up to 255 bytes; hearth also reserves '.' as the index separator.
pub fn validate_name(name: &str) -> Result<(), FdStoreError> {
    let bad = |why| Err(FdStoreError::BadName { name: name.into(), why });
    if name.is_empty() {
        return bad("empty");
    }
    if PREFIX.len() + name.len() + 3 > FDNAME_MAX {
        return bad("too long for systemd's 255-byte fd name");
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("only printable ASCII without spaces is allowed");
    }
    if name.contains(':') {
        return bad("':' separates LISTEN_FDNAMES");
    }
    if name.contains('.') {
        return bad("'.' separates the fd index");
    }
    Ok(())
}

fn fd_name(name: &str, index: usize) -> String {
    format!("{PREFIX}{name}.{index}")
}

/// Splits `hearth-store.<name>.<index>`; None for any other fd name.
pub(crate) fn parse_fd_name(fd_name: &str) -> Option<(&str, usize)> {
    let rest = fd_name.strip_prefix(PREFIX)?;
    let (name, index) = rest.rsplit_once('.')?;
    let index: usize = index.parse().ok()?;
    if name.is_empty() || index >= MAX_FDS_PER_ENTRY {
        return None;
    }
    Some((name, index))
}

/// Hands `fds` to the service manager under `name`. No-op without a notify socket.
///
/// systemd watches stored fds and closes one on EPOLLHUP/EPOLLERR. For a container's pipes
/// that is what we want: when the container dies its pipe ends hang up and its entry falls
/// out of the store by itself. Storing again under the same name first needs [`remove_fds`]:
/// systemd would keep both.
pub fn store_fds<F: AsFd>(notifier: &Notifier, name: &str, fds: &[F]) -> Result<(), FdStoreError> {
    store(notifier, name, fds, true)
}

/// Like [`store_fds`], but asks systemd not to poll them (`FDPOLL=0`): for fds that hang up
/// by design while stored (a pipe whose writer has exited but whose buffered bytes matter).
pub fn store_fds_unpolled<F: AsFd>(
    notifier: &Notifier,
    name: &str,
    fds: &[F],
) -> Result<(), FdStoreError> {
    store(notifier, name, fds, false)
}

fn store<F: AsFd>(
    notifier: &Notifier,
    name: &str,
    fds: &[F],
    poll: bool,
) -> Result<(), FdStoreError> {
    validate_name(name)?;
    if fds.len() > MAX_FDS_PER_ENTRY {
        return Err(FdStoreError::TooMany { name: name.into(), count: fds.len() });
    }
    for (index, fd) in fds.iter().enumerate() {
        let fdname = fd_name(name, index);
        let mut states = vec![NotifyState::FdStore, NotifyState::FdName(&fdname)];
        if !poll {
            states.push(NotifyState::Custom("FDPOLL=0"));
        }
        notifier
            .send(&states, &[fd.as_fd()])
            .map_err(|source| FdStoreError::Notify { name: name.into(), source })?;
    }
    tracing::debug!(entry = name, count = fds.len(), poll, "stored fds with systemd");
    Ok(())
}

/// Drops the entry `name` (which held `count` fds) from the store, closing systemd's copies.
/// Removing a name that is not stored is harmless.
pub fn remove_fds(notifier: &Notifier, name: &str, count: usize) -> Result<(), FdStoreError> {
    validate_name(name)?;
    for index in 0..count.min(MAX_FDS_PER_ENTRY) {
        let fdname = fd_name(name, index);
        notifier
            .send(&[NotifyState::FdStoreRemove, NotifyState::FdName(&fdname)], &[])
            .map_err(|source| FdStoreError::Notify { name: name.into(), source })?;
    }
    tracing::debug!(entry = name, count, "removed fds from systemd's store");
    Ok(())
}

/// Takes every stored entry out of the inherited fds, grouped by entry name and ordered by
/// the index they were stored with. Socket-activation fds are left for
/// [`super::listen::take_or_bind`].
pub fn take_stored(inherited: &mut InheritedFds) -> Result<Vec<StoredEntry>, FdStoreError> {
    let indices = inherited.untaken_where(|n| parse_fd_name(n).is_some());
    let mut groups: BTreeMap<String, Vec<Option<OwnedFd>>> = BTreeMap::new();
    for idx in indices {
        let Some((name, slot)) = inherited
            .name(idx)
            .and_then(|n| parse_fd_name(n).map(|(name, slot)| (name.to_owned(), slot)))
        else {
            continue;
        };
        let fd = inherited.take_owned(idx).map_err(|source| FdStoreError::Take {
            name: name.clone(),
            index: slot,
            source,
        })?;
        let Some(fd) = fd else { continue };
        let fds = groups.entry(name).or_default();
        if fds.len() <= slot {
            fds.resize_with(slot + 1, || None);
        }
        fds[slot] = Some(fd);
    }
    let entries: Vec<StoredEntry> =
        groups.into_iter().map(|(name, fds)| StoredEntry { name, fds }).collect();
    tracing::info!(entries = entries.len(), "took stored fds back from systemd");
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::notify::tests::FakeManager;
    use std::io::{Read, Write};

    #[test]
    fn names_round_trip_and_foreign_names_do_not_parse() {
        assert_eq!(fd_name("ct-guest-hello-7", 3), "hearth-store.ct-guest-hello-7.3");
        assert_eq!(parse_fd_name("hearth-store.ct-guest-hello-7.3"), Some(("ct-guest-hello-7", 3)));
        for foreign in [
            "http",
            "unknown",
            "hearth-invoker.socket",
            "hearth-store.",
            "hearth-store.x",
            "hearth-store..1",
            "hearth-store.x.y",
            "hearth-store.x.99",
        ] {
            assert_eq!(parse_fd_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn rejects_names_systemd_would_drop() {
        for bad in ["", "a:b", "a b", "a.b", "é", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("ct-guest-hello-7").unwrap();
    }

    /// Receives one datagram with its SCM_RIGHTS fds.
    fn recv_with_fds(m: &FakeManager) -> (String, Vec<OwnedFd>) {
        use sendfd::RecvWithFd;
        use std::os::fd::FromRawFd;
        let mut buf = vec![0u8; 4096];
        let mut fds = [0; 8];
        let (n, k) = m.sock.recv_with_fd(&mut buf, &mut fds).unwrap();
        let owned = fds[..k]
            .iter()
            // SAFETY: the kernel just installed these descriptors in this process for us.
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        (String::from_utf8(buf[..n].to_vec()).unwrap(), owned)
    }

    #[test]
    fn store_sends_one_named_fd_per_datagram_and_remove_names_them() {
        let m = FakeManager::new();
        let n = Notifier::to_socket(&m.path, None);
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r2, _w2) = std::os::unix::net::UnixStream::pair().unwrap();
        store_fds(&n, "ct1", &[r.as_fd(), r2.as_fd()]).unwrap();
        let (msg, fds) = recv_with_fds(&m);
        assert_eq!(msg, "FDSTORE=1\nFDNAME=hearth-store.ct1.0\n");
        assert_eq!(fds.len(), 1);
        let (msg, fds2) = recv_with_fds(&m);
        assert_eq!(msg, "FDSTORE=1\nFDNAME=hearth-store.ct1.1\n");
        assert_eq!(fds2.len(), 1);
        // The received fd is the same pipe: bytes written to `w` come out of it.
        let mut w = w;
        w.write_all(b"hi").unwrap();
        drop(w);
        let mut got = String::new();
        std::fs::File::from(fds.into_iter().next().unwrap()).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");

        store_fds_unpolled(&n, "ct2", &[r2.as_fd()]).unwrap();
        let (msg, _) = recv_with_fds(&m);
        assert_eq!(msg, "FDSTORE=1\nFDNAME=hearth-store.ct2.0\nFDPOLL=0\n");

        remove_fds(&n, "ct1", 2).unwrap();
        assert_eq!(m.recv(), "FDSTOREREMOVE=1\nFDNAME=hearth-store.ct1.0\n");
        assert_eq!(m.recv(), "FDSTOREREMOVE=1\nFDNAME=hearth-store.ct1.1\n");
    }

    #[test]
    fn store_without_manager_is_a_no_op_but_still_validates() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        let n = Notifier::disabled();
        store_fds(&n, "ct1", &[r.as_fd()]).unwrap();
        assert!(store_fds(&n, "bad:name", &[r.as_fd()]).is_err());
        let many: Vec<_> = (0..MAX_FDS_PER_ENTRY + 1).map(|_| r.as_fd()).collect();
        assert!(matches!(store_fds(&n, "ct1", &many), Err(FdStoreError::TooMany { .. })));
    }

    #[test]
    fn take_stored_from_nothing_is_empty() {
        let mut none = InheritedFds::empty();
        assert!(take_stored(&mut none).unwrap().is_empty());
    }

    #[test]
    fn incomplete_entries_are_visible() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = StoredEntry { name: "ct".into(), fds: vec![Some(OwnedFd::from(r)), None] };
        assert!(e.into_complete().is_none());
    }
}
