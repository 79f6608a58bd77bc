//! The file descriptors systemd hands a service at start (`LISTEN_FDS`, `LISTEN_FDNAMES`).
//!
//! Owns the one parse of that environment: both the socket-activation listeners
//! ([`super::listen`]) and the fds kept in systemd's fd store ([`super::fdstore`]) arrive in the
//! same list, told apart only by their names. Taking them from the environment twice would
//! double-own the descriptors, so the daemon takes an [`InheritedFds`] once and hands it to both.
//!
//! Must never close or wrap a descriptor it was not passed (indices outside `LISTEN_FDS`), and
//! never leave `LISTEN_*` in the environment, where children (runc, the actions) would inherit
//! claims to fds that are not theirs.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use listenfd::ListenFd;

/// The name systemd gives an fd when `LISTEN_FDNAMES` is absent (see sd_listen_fds_with_names(3)).
pub const UNKNOWN_NAME: &str = "unknown";

/// The descriptors passed to this process, each with its name, not yet taken.
pub struct InheritedFds {
    fds: ListenFd,
    names: Vec<String>,
    taken: Vec<bool>,
}

impl std::fmt::Debug for InheritedFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InheritedFds")
            .field("names", &self.names)
            .field("taken", &self.taken)
            .finish()
    }
}

impl InheritedFds {
    /// Takes `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` from the environment and removes them.
    ///
    /// Call it once, first thing in `main`, before the tokio runtime (or any other thread)
    /// starts: removing environment variables races with concurrent `getenv` in other threads.
    /// When the variables are absent or meant for another pid (`LISTEN_PID` mismatch), the result
    /// is empty and every `take_*` falls back to binding.
    pub fn take_from_env() -> Self {
        let names_var = std::env::var("LISTEN_FDNAMES").ok();
        // listenfd checks LISTEN_PID and removes LISTEN_PID and LISTEN_FDS itself.
        let fds = ListenFd::from_env();
        std::env::remove_var("LISTEN_FDNAMES");
        std::env::remove_var("LISTEN_FDS_FIRST_FD");
        let names = parse_fdnames(names_var.as_deref(), fds.len());
        if names_var.is_some() && names.len() != fds.len() {
            tracing::warn!(
                listen_fds = fds.len(),
                listen_fdnames = names_var.as_deref().unwrap_or(""),
                "LISTEN_FDNAMES does not match LISTEN_FDS; unmatched fds are named \"unknown\""
            );
        }
        let names = pad_names(names, fds.len());
        let taken = vec![false; names.len()];
        tracing::debug!(count = names.len(), names = ?names, "inherited fds from systemd");
        InheritedFds { fds, names, taken }
    }

    /// Nothing inherited: for tests and for callers that must not use socket activation.
    pub fn empty() -> Self {
        InheritedFds { fds: ListenFd::empty(), names: Vec::new(), taken: Vec::new() }
    }

    /// How many fds were passed in (taken or not).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when systemd passed nothing (not socket-activated, nothing in the fd store).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Names of the fds not yet taken, in `LISTEN_FDS` order.
    pub fn remaining_names(&self) -> Vec<&str> {
        self.names.iter().zip(&self.taken).filter(|(_, t)| !**t).map(|(n, _)| n.as_str()).collect()
    }

    pub(crate) fn name(&self, idx: usize) -> Option<&str> {
        self.names.get(idx).map(String::as_str)
    }

    /// Indices of untaken fds whose name satisfies `pred`.
    pub(crate) fn untaken_where(&self, pred: impl Fn(&str) -> bool) -> Vec<usize> {
        (0..self.names.len()).filter(|&i| !self.taken[i] && pred(&self.names[i])).collect()
    }

    /// The fd at `idx` as a TCP listener, if it is a TCP stream socket (else left in place).
    pub(crate) fn take_tcp(&mut self, idx: usize) -> std::io::Result<Option<TcpListener>> {
        let got = self.fds.take_tcp_listener(idx)?;
        if got.is_some() {
            self.taken[idx] = true;
        }
        Ok(got)
    }

    /// The fd at `idx` as a Unix stream listener, if it is one (else left in place).
    pub(crate) fn take_unix(&mut self, idx: usize) -> std::io::Result<Option<UnixListener>> {
        let got = self.fds.take_unix_listener(idx)?;
        if got.is_some() {
            self.taken[idx] = true;
        }
        Ok(got)
    }

    /// The fd at `idx`, whatever it is (a pipe from the fd store, ...).
    pub(crate) fn take_owned(&mut self, idx: usize) -> std::io::Result<Option<OwnedFd>> {
        let Some(raw) = self.fds.take_raw_fd(idx)? else {
            return Ok(None);
        };
        self.taken[idx] = true;
        set_cloexec(raw)?;
        // SAFETY: `raw` is one of the LISTEN_FDS descriptors systemd passed to this process;
        // ListenFd hands each index out at most once, so nothing else owns it.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Closes every fd nobody took, logging their names: an fd systemd passed that hearth does
    /// not understand (a stale fd-store entry, a socket from an edited unit) must not leak into
    /// children, and an operator wants to hear about it.
    pub fn close_untaken(&mut self) {
        for idx in 0..self.names.len() {
            if self.taken[idx] {
                continue;
            }
            let name = self.names[idx].clone();
            match self.take_owned(idx) {
                Ok(Some(fd)) => {
                    tracing::warn!(fd_name = %name, "closing an inherited fd nobody claimed");
                    drop(fd);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(fd_name = %name, error = %e, "inherited fd unusable"),
            }
        }
    }
}

fn set_cloexec(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and set the descriptor flags of an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Splits `LISTEN_FDNAMES` (colon-separated). Absent means every fd is "unknown".
pub(crate) fn parse_fdnames(var: Option<&str>, count: usize) -> Vec<String> {
    match var {
        None => vec![UNKNOWN_NAME.to_owned(); count],
        Some("") if count == 0 => Vec::new(),
        Some(v) => v.split(':').map(str::to_owned).collect(),
    }
}

/// Makes the name list exactly `count` long: extra names are dropped, missing ones "unknown",
/// so a malformed variable costs names, never descriptors.
fn pad_names(mut names: Vec<String>, count: usize) -> Vec<String> {
    names.truncate(count);
    while names.len() < count {
        names.push(UNKNOWN_NAME.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdnames_absent_are_unknown() {
        assert_eq!(parse_fdnames(None, 2), vec!["unknown", "unknown"]);
    }

    #[test]
    fn fdnames_split_on_colons_and_keep_empty_names() {
        assert_eq!(
            parse_fdnames(Some("http:hearth-store.c1.0:"), 3),
            vec!["http", "hearth-store.c1.0", ""]
        );
        assert!(parse_fdnames(Some(""), 0).is_empty());
    }

    #[test]
    fn names_are_padded_or_truncated_to_the_fd_count() {
        assert_eq!(pad_names(vec!["a".into()], 3), vec!["a", "unknown", "unknown"]);
        assert_eq!(pad_names(vec!["a".into(), "b".into()], 1), vec!["a"]);
    }

    #[test]
    fn empty_takes_nothing() {
        let mut fds = InheritedFds::empty();
        assert!(fds.is_empty());
        assert!(fds.untaken_where(|_| true).is_empty());
        assert!(fds.take_owned(0).unwrap().is_none());
        fds.close_untaken();
    }
}
