//! Listening sockets: taken from systemd socket activation, or bound by hand.
//!
//! Owns the choice between an inherited socket and binding `--listen ADDR`, and the tokio
//! listener types the servers accept on. A daemon started by its `.socket` unit gets the socket
//! systemd already listens on (connections queued before the daemon was up are not lost); a
//! daemon started by hand binds the address it was given.
//!
//! Must never take an fd-store entry for a socket (those are matched by their own name prefix in
//! [`super::fdstore`]), and never unlink a path that is not a socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::fds::{InheritedFds, UNKNOWN_NAME};

/// Errors from taking or binding a listener. Each carries the fd name and the address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("listen address {input:?} is neither host:port nor a Unix socket path (/path or unix:/path)")]
    BadAddress { input: String },
    #[error("systemd passed {count} sockets named {name:?}; hearth serves exactly one per name")]
    Ambiguous { name: String, count: usize },
    #[error("inherited socket {name:?} (fd index {index}) is unusable: {source}")]
    Inherited { name: String, index: usize, source: io::Error },
    #[error("binding {addr} failed: {source}")]
    Bind { addr: ListenAddr, source: io::Error },
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
}

/// Where to listen when not socket-activated: `host:port` or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = ListenError;

    /// `127.0.0.1:3233`, `[::1]:3233`, `/run/hearth/invoker.sock` or `unix:/run/x.sock`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ListenError::BadAddress { input: s.into() });
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(s.into()));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| ListenError::BadAddress { input: s.into() })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A listening socket, TCP or Unix, ready for `accept`.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection; implements tokio's `AsyncRead + AsyncWrite`, so hyper-util's
/// `TokioIo` wraps it directly whatever the socket family.
#[derive(Debug)]
pub enum Connection {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Accepts the next connection. TCP connections get `TCP_NODELAY`: hearth's replies are
    /// small and latency-bound, and Nagle would hold the last segment back.
    pub async fn accept(&self) -> io::Result<Connection> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Connection::Tcp(s))
            }
            Listener::Unix(l) => Ok(Connection::Unix(l.accept().await?.0)),
        }
    }

    /// The bound address, for logs and for tests that listened on port 0.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l) => {
                let a = l.local_addr()?;
                Ok(ListenAddr::Unix(a.as_pathname().map(Path::to_path_buf).unwrap_or_default()))
            }
        }
    }
}

/// Where a listener came from, for the startup log line and `STATUS=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Passed by systemd (socket activation).
    Activated,
    /// Bound by this process from `--listen`.
    Bound,
}

/// Takes the inherited socket named `name` or, when there is none, binds `fallback`.
///
/// Matching: an fd whose `LISTEN_FDNAMES` entry equals `name` (set by `FileDescriptorName=`)
/// wins. When none has that name, a single unnamed socket (named "unknown" or after its
/// `.socket` unit, systemd's defaults) of a listening stream type is taken, so a unit written
/// without `FileDescriptorName=` still works. fd-store entries never match: their names carry
/// the fd store's own prefix. Must be called inside a tokio runtime.
pub fn take_or_bind(
    inherited: &mut InheritedFds,
    name: &str,
    fallback: &ListenAddr,
) -> Result<(Listener, Origin), ListenError> {
    let named = inherited.untaken_where(|n| n == name);
    if named.len() > 1 {
        return Err(ListenError::Ambiguous { name: name.into(), count: named.len() });
    }
    let strict = !named.is_empty();
    let candidates = if strict { named } else { inherited.untaken_where(is_default_socket_name) };
    for index in candidates {
        let fd_name = inherited.name(index).unwrap_or(UNKNOWN_NAME).to_owned();
        if let Some(l) = take_stream_listener(inherited, index, &fd_name, strict)? {
            tracing::info!(fd_name = %fd_name, addr = %display_addr(&l), "socket-activated listener");
            return Ok((l, Origin::Activated));
        }
    }
    let l = bind(fallback)?;
    tracing::info!(fd_name = name, addr = %fallback, "bound listener (not socket-activated)");
    Ok((l, Origin::Bound))
}

fn display_addr(l: &Listener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("<{e}>"))
}

/// systemd's names for an fd when the unit sets no `FileDescriptorName=`.
fn is_default_socket_name(n: &str) -> bool {
    n == UNKNOWN_NAME || n.ends_with(".socket")
}

fn take_stream_listener(
    inherited: &mut InheritedFds,
    index: usize,
    name: &str,
    strict: bool,
) -> Result<Option<Listener>, ListenError> {
    let err = |source| ListenError::Inherited { name: name.into(), index, source };
    // listenfd validates the family and type and leaves a mismatching fd in place, so a
    // wrong guess at TCP costs nothing.
    if let Ok(Some(std_l)) = inherited.take_tcp(index) {
        std_l.set_nonblocking(true).map_err(err)?;
        return Ok(Some(Listener::Tcp(TcpListener::from_std(std_l).map_err(err)?)));
    }
    match inherited.take_unix(index) {
        Ok(Some(std_l)) => {
            std_l.set_nonblocking(true).map_err(err)?;
            Ok(Some(Listener::Unix(UnixListener::from_std(std_l).map_err(err)?)))
        }
        Ok(None) => Ok(None),
        // Named as our socket but neither a TCP nor a Unix stream socket: the unit is
        // misconfigured (ListenDatagram=, a FIFO, ...). Say so rather than silently binding.
        Err(e) if strict => Err(err(e)),
        // Merely unnamed (systemd's default name) and not a stream socket: not ours to judge.
        Err(_) => Ok(None),
    }
}

/// Binds `addr` by hand. A stale Unix socket file (left by a killed process) is replaced; any
/// other file at that path is refused.
pub fn bind(addr: &ListenAddr) -> Result<Listener, ListenError> {
    let bind_err = |source| ListenError::Bind { addr: addr.clone(), source };
    match addr {
        ListenAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(bind_err)?;
            l.set_nonblocking(true).map_err(bind_err)?;
            Ok(Listener::Tcp(TcpListener::from_std(l).map_err(bind_err)?))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path)?;
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(bind_err)?;
                }
            }
            Ok(Listener::Unix(UnixListener::bind(path).map_err(bind_err)?))
        }
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), ListenError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|source| ListenError::Bind { addr: ListenAddr::Unix(path.into()), source }),
        Ok(_) => Err(ListenError::NotASocket { path: path.into() }),
        Err(_) => Ok(()),
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_flush(cx),
            Connection::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Connection::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tcp(s) => s.is_write_vectored(),
            Connection::Unix(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "127.0.0.1:3233".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:3233".parse().unwrap())
        );
        assert_eq!(
            "[::1]:80".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            "/run/hearth/invoker.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/hearth/invoker.sock".into())
        );
        assert_eq!(
            "unix:rel.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("rel.sock".into())
        );
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert_eq!(ListenAddr::Unix("/x".into()).to_string(), "unix:/x".to_string());
    }

    #[test]
    fn default_socket_names() {
        assert!(is_default_socket_name("unknown"));
        assert!(is_default_socket_name("hearth-controller.socket"));
        assert!(!is_default_socket_name("http"));
        assert!(!is_default_socket_name("hearth-store.c1.0"));
    }

    #[tokio::test]
    async fn not_activated_binds_tcp_port_zero_and_echoes() {
        let mut none = InheritedFds::empty();
        let (l, origin) = take_or_bind(&mut none, "http", &"127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(origin, Origin::Bound);
        let ListenAddr::Tcp(addr) = l.local_addr().unwrap() else {
            panic!("expected tcp");
        };
        assert_ne!(addr.port(), 0);
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            b
        });
        let mut c = l.accept().await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        c.write_all(&b).await.unwrap();
        assert_eq!(&client.await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn unix_bind_replaces_a_stale_socket_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/invoker.sock");
        let addr = ListenAddr::Unix(path.clone());
        let first = bind(&addr).unwrap();
        drop(first); // leaves the socket file behind, like a killed daemon
        assert!(path.exists());
        let l = bind(&addr).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        let client = tokio::spawn({
            let path = path.clone();
            async move { UnixStream::connect(path).await.unwrap() }
        });
        let conn = l.accept().await.unwrap();
        assert!(matches!(conn, Connection::Unix(_)));
        client.await.unwrap();

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = bind(&ListenAddr::Unix(file.clone())).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }
}
