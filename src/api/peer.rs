//! The client's address of a connection, for the per-address authentication throttle.
//!
//! A trait rather than a parameter of the accept loop so that any stream type the daemons
//! hand in (plain TCP, a socket-activated listener's connection, a counted wrapper) says
//! where it comes from; Unix-socket clients have no IP and are throttled by key only.

use std::net::IpAddr;

use tokio::net::{TcpStream, UnixStream};

use crate::systemd::listen::Connection;

/// Where a connection comes from.
pub trait PeerAddr {
    /// The remote IP, when the transport has one.
    fn peer_ip(&self) -> Option<IpAddr>;
}

impl PeerAddr for TcpStream {
    fn peer_ip(&self) -> Option<IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }
}

impl PeerAddr for UnixStream {
    fn peer_ip(&self) -> Option<IpAddr> {
        None
    }
}

impl PeerAddr for Connection {
    fn peer_ip(&self) -> Option<IpAddr> {
        match self {
            Connection::Tcp(s) => s.peer_ip(),
            Connection::Unix(_) => None,
        }
    }
}
