//! Idle tracking for the controller's idle exit: counts open connections and remembers when
//! the last one ended, so a monitor can tell "nobody has talked to us for N seconds".

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    open: AtomicUsize,
    /// Milliseconds after `epoch` of the last connection's end or start.
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                open: AtomicUsize::new(0),
                last_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Wraps a new connection; the count drops when the wrapper is dropped.
    pub fn track<IO>(&self, io: IO) -> Tracked<IO> {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Tracked { io, activity: self.clone() }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// How long no connection has been open (zero while one is).
    pub fn idle_for(&self) -> Duration {
        if self.open() > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(last)
    }
}

/// A connection counted by [`Activity`].
#[derive(Debug)]
pub struct Tracked<IO> {
    io: IO,
    activity: Activity,
}

impl<IO> Drop for Tracked<IO> {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.inner.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

/// The wrapped connection's address, for the API's authentication throttle.
impl<IO: crate::api::PeerAddr> crate::api::PeerAddr for Tracked<IO> {
    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.io.peer_ip()
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_idles() {
        let a = Activity::new();
        let t = a.track(());
        assert_eq!(a.open(), 1);
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(t);
        assert_eq!(a.open(), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.idle_for() >= Duration::from_millis(15));
    }
}
