//! The log collector of one container: a reader task per stream (stdout, stderr) turns lines
//! into `<RFC 3339 with microseconds> <stream>: text` entries of the current activation,
//! enforces the activation's log limit, and counts the launcher's end-of-activation sentinels.
//!
//! The host reads the reply on fd 3 and then [`LogCollector::wait_end`]s for both sentinels
//! (written before the reply), so an activation's logs are exactly the lines between the
//! previous sentinels and this one's. Everything here is per line on the warm path: one lock,
//! one timestamp, one allocation. It never blocks the launcher: lines past the limit are read
//! and dropped, not left in the pipe.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::runtime::protocol::SENTINEL;

/// A line longer than this is cut into several log entries, so that output without newlines
/// cannot grow the reader's buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// One of the two log streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug)]
struct LogState {
    lines: Vec<String>,
    bytes: usize,
    limit: usize,
    truncated: bool,
    sentinels: [u64; 2],
    eof: [bool; 2],
}

/// The shared log state of one container.
#[derive(Debug)]
pub struct LogCollector {
    state: Mutex<LogState>,
    changed: Notify,
}

/// The note that ends truncated logs, OpenWhisk's wording.
pub fn truncation_note(limit: usize) -> String {
    format!("Logs were truncated because the total bytes size exceeds the limit of {limit} bytes.")
}

impl LogCollector {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(LogState {
                lines: Vec::new(),
                bytes: 0,
                limit,
                truncated: false,
                sentinels: [0, 0],
                eof: [false, false],
            }),
            changed: Notify::new(),
        })
    }

    /// A poisoned lock only means a reader task panicked mid-push; the state is still usable.
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the byte limit for the activation that starts now.
    pub fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
    }

    fn push(&self, stream: Stream, raw: &[u8]) {
        let (text, sentinel) = match raw.strip_suffix(SENTINEL.as_bytes()) {
            Some(before) => (before, true),
            None => (raw, false),
        };
        let mut state = self.lock();
        if !text.is_empty() || !sentinel {
            if state.truncated {
                // dropped: the note was already written
            } else if state.bytes + text.len() > state.limit {
                state.truncated = true;
                let note = truncation_note(state.limit);
                let entry = format!(
                    "{} stderr: {note}",
                    humantime::format_rfc3339_micros(SystemTime::now())
                );
                state.lines.push(entry);
            } else {
                state.bytes += text.len();
                let entry = format!(
                    "{} {}: {}",
                    humantime::format_rfc3339_micros(SystemTime::now()),
                    stream.name(),
                    String::from_utf8_lossy(text)
                );
                state.lines.push(entry);
            }
        }
        if sentinel {
            state.sentinels[stream as usize] += 1;
            drop(state);
            self.changed.notify_waiters();
        }
    }

    fn eof(&self, stream: Stream) {
        self.lock().eof[stream as usize] = true;
        self.changed.notify_waiters();
    }

    /// Whether both streams have ended (the container's processes are all gone).
    pub fn closed(&self) -> bool {
        let s = self.lock();
        s.eof[0] && s.eof[1]
    }

    /// Waits until each stream has shown `exchanges` sentinels in total or ended, at most
    /// `max`. Returns false when it gave up waiting.
    pub async fn wait_end(&self, exchanges: u64, max: Duration) -> bool {
        let done = |s: &LogState| (0..2).all(|i| s.sentinels[i] >= exchanges || s.eof[i]);
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if done(&self.lock()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(max, wait).await.is_ok()
    }

    /// Takes the lines collected so far and starts a new activation's count.
    pub fn take(&self) -> Vec<String> {
        let mut s = self.lock();
        s.bytes = 0;
        s.truncated = false;
        std::mem::take(&mut s.lines)
    }
}

/// Reads `pipe` line by line into `collector` until end of file.
pub fn spawn_reader<R>(collector: Arc<LogCollector>, stream: Stream, mut pipe: R) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = match pipe.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(stream = stream.name(), error = %e, "log pipe read failed");
                    break;
                }
            };
            let mut rest = &chunk[..n];
            while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
                if line.is_empty() {
                    collector.push(stream, &rest[..pos]);
                } else {
                    line.extend_from_slice(&rest[..pos]);
                    collector.push(stream, &line);
                    line.clear();
                }
                rest = &rest[pos + 1..];
            }
            line.extend_from_slice(rest);
            while line.len() >= MAX_LINE_BYTES {
                collector.push(stream, &line[..MAX_LINE_BYTES]);
                line.drain(..MAX_LINE_BYTES);
            }
        }
        if !line.is_empty() {
            collector.push(stream, &line);
        }
        collector.eof(stream);
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn body(entry: &str) -> &str {
        entry.split_once(' ').unwrap().1
    }

    #[tokio::test]
    async fn lines_sentinels_and_limits() {
        let logs = LogCollector::new(1000);
        let (mut w_out, r_out) = tokio::io::duplex(1 << 16);
        let (mut w_err, r_err) = tokio::io::duplex(1 << 16);
        let a = spawn_reader(logs.clone(), Stream::Stdout, r_out);
        let b = spawn_reader(logs.clone(), Stream::Stderr, r_err);
        w_out.write_all(b"hello\npartial").await.unwrap();
        w_out.write_all(format!(" line{SENTINEL}\n").as_bytes()).await.unwrap();
        w_err.write_all(format!("oops\n{SENTINEL}\n").as_bytes()).await.unwrap();
        assert!(logs.wait_end(1, Duration::from_secs(5)).await);
        let lines = logs.take();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(body(&lines[0]), "stdout: hello");
        assert!(lines.iter().any(|l| body(l) == "stdout: partial line"));
        assert!(lines.iter().any(|l| body(l) == "stderr: oops"));
        // RFC 3339 with microseconds: 2024-01-01T00:00:00.000000Z
        let ts = lines[0].split_once(' ').unwrap().0;
        assert_eq!(ts.len(), 27, "{ts}");
        assert!(ts.ends_with('Z'));

        logs.set_limit(10);
        w_out.write_all(format!("12345\n67890\nabc\n{SENTINEL}\n").as_bytes()).await.unwrap();
        w_err.write_all(format!("{SENTINEL}\n").as_bytes()).await.unwrap();
        assert!(logs.wait_end(2, Duration::from_secs(5)).await);
        let lines = logs.take();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(body(&lines[2]), format!("stderr: {}", truncation_note(10)));

        assert!(!logs.wait_end(3, Duration::from_millis(20)).await);
        drop(w_out);
        drop(w_err);
        assert!(logs.wait_end(3, Duration::from_secs(5)).await);
        assert!(logs.closed());
        a.await.unwrap();
        b.await.unwrap();
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let logs = LogCollector::new(usize::MAX);
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let task = spawn_reader(logs.clone(), Stream::Stdout, r);
        w.write_all(&vec![b'a'; MAX_LINE_BYTES * 2 + 5]).await.unwrap();
        drop(w);
        task.await.unwrap();
        let lines = logs.take();
        assert_eq!(lines.len(), 3);
    }
}
