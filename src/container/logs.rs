//! The log pipes of one container: stdout and stderr lines become
//! `<RFC 3339 with microseconds> <stream>: text` entries of the current activation, the
//! activation's log limit is enforced, and the launcher's end-of-activation sentinels are
//! counted.
//!
//! The pipes are read by the run's own task, not by reader tasks of their own: the launcher
//! writes both sentinels before its reply, so once the reply has arrived the activation's
//! logs are already in the pipes and [`LogPipes::wait_end`] takes them with non-blocking reads,
//! without a wake-up. A reader task per stream woke on every run only to see its sentinel and
//! then woke the run's task (two task wake-ups and often a thread switch per warm invoke).
//! While a run is in progress nothing reads the pipes until [`LOG_WATCH_AFTER`] has passed
//! without a reply; from then on the exchange drains them as data arrives
//! ([`LogPipes::poll_pump`]), so a launcher writing more than a pipe buffer of logs is never
//! left blocked.
//!
//! Per line on the warm path: one timestamp, one allocation. Lines past the limit are read
//! and dropped, not left in the pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::net::unix::pipe;

use crate::launcher::protocol::SENTINEL;

/// A line longer than this is cut into several log entries, so that output without newlines
/// cannot grow the buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// How long an exchange waits for the reply before it starts draining the log pipes too. A
/// warm run replies in tens of microseconds; a run that writes more than a pipe buffer
/// (64 KB) of logs blocks its launcher until they are drained, and waits this long once.
pub const LOG_WATCH_AFTER: Duration = Duration::from_millis(1);

/// Reads per stream in one poll before yielding, so a log flood cannot hold the worker.
const READS_PER_POLL: usize = 16;

/// One of the two log streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
}

/// The note that ends truncated logs, OpenWhisk's wording.
pub fn truncation_note(limit: usize) -> String {
    format!("Logs were truncated because the total bytes size exceeds the limit of {limit} bytes.")
}

/// One log entry as the records hold it: `<RFC 3339 with microseconds> <stream>: text`.
pub fn entry(stream: Stream, text: &[u8]) -> String {
    format!(
        "{} {}: {}",
        humantime::format_rfc3339_micros(SystemTime::now()),
        stream.name(),
        String::from_utf8_lossy(text)
    )
}

/// The log lines of one run of a shared container ([`super::mux`]), with its own limit: the
/// demultiplexer pushes each run's lines into its own buffer.
#[derive(Debug, Default)]
pub struct RunLogs {
    pub lines: Vec<String>,
    bytes: usize,
    limit: usize,
    truncated: bool,
}

impl RunLogs {
    pub fn new(limit: usize) -> Self {
        Self { lines: Vec::new(), bytes: 0, limit, truncated: false }
    }

    /// Adds one line, or the truncation note once the limit is passed (later lines are
    /// dropped), as a sequential run's logs do.
    pub fn push(&mut self, stream: Stream, text: &[u8]) {
        if self.truncated {
            return;
        }
        if self.bytes + text.len() > self.limit {
            self.truncated = true;
            self.lines.push(entry(Stream::Stderr, truncation_note(self.limit).as_bytes()));
            return;
        }
        self.bytes += text.len();
        self.lines.push(entry(stream, text));
    }
}

/// What has been collected from both streams.
#[derive(Debug)]
struct LogState {
    lines: Vec<String>,
    bytes: usize,
    limit: usize,
    truncated: bool,
    sentinels: [u64; 2],
    eof: [bool; 2],
}

impl LogState {
    fn push(&mut self, stream: Stream, raw: &[u8]) {
        let (text, sentinel) = match raw.strip_suffix(SENTINEL.as_bytes()) {
            Some(before) => (before, true),
            None => (raw, false),
        };
        if !text.is_empty() || !sentinel {
            if self.truncated {
                // dropped: the note was already written
            } else if self.bytes + text.len() > self.limit {
                self.truncated = true;
                let note = truncation_note(self.limit);
                let entry = format!(
                    "{} stderr: {note}",
                    humantime::format_rfc3339_micros(SystemTime::now())
                );
                self.lines.push(entry);
            } else {
                self.bytes += text.len();
                let entry = format!(
                    "{} {}: {}",
                    humantime::format_rfc3339_micros(SystemTime::now()),
                    stream.name(),
                    String::from_utf8_lossy(text)
                );
                self.lines.push(entry);
            }
        }
        if sentinel {
            self.sentinels[stream as usize] += 1;
        }
    }

    fn done(&self, exchanges: u64) -> bool {
        (0..2).all(|i| self.sentinels[i] >= exchanges || self.eof[i])
    }
}

/// The stdout and stderr pipes of one container and what was read from them.
#[derive(Debug)]
pub struct LogPipes {
    pipes: [pipe::Receiver; 2],
    /// The unfinished last line of each stream.
    partial: [Vec<u8>; 2],
    state: LogState,
    /// Read buffer, allocated at the first read.
    chunk: Vec<u8>,
}

impl LogPipes {
    pub fn new(stdout: pipe::Receiver, stderr: pipe::Receiver, limit: usize) -> Self {
        Self {
            pipes: [stdout, stderr],
            partial: [Vec::new(), Vec::new()],
            state: LogState {
                lines: Vec::new(),
                bytes: 0,
                limit,
                truncated: false,
                sentinels: [0, 0],
                eof: [false, false],
            },
            chunk: Vec::new(),
        }
    }

    /// The read ends, for live restore's copies.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.pipes[0].as_fd(), self.pipes[1].as_fd()]
    }

    /// Sets the byte limit for the activation that starts now.
    pub fn set_limit(&mut self, limit: usize) {
        self.state.limit = limit;
    }

    /// Whether both streams have ended (the container's processes are all gone).
    pub fn closed(&self) -> bool {
        self.state.eof[0] && self.state.eof[1]
    }

    /// Turns `n` freshly read bytes of `stream` (in `self.chunk`) into lines.
    fn ingest(&mut self, stream: Stream, n: usize) {
        let i = stream as usize;
        let (chunk, line, state) = (&self.chunk, &mut self.partial[i], &mut self.state);
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if line.is_empty() {
                state.push(stream, &rest[..pos]);
            } else {
                line.extend_from_slice(&rest[..pos]);
                state.push(stream, line);
                line.clear();
            }
            rest = &rest[pos + 1..];
        }
        line.extend_from_slice(rest);
        while line.len() >= MAX_LINE_BYTES {
            state.push(stream, &line[..MAX_LINE_BYTES]);
            line.drain(..MAX_LINE_BYTES);
        }
    }

    /// The stream ended (or broke): its unfinished line is kept as a last entry.
    fn end(&mut self, stream: Stream) {
        let i = stream as usize;
        if !self.partial[i].is_empty() {
            let line = std::mem::take(&mut self.partial[i]);
            self.state.push(stream, &line);
        }
        self.state.eof[i] = true;
    }

    /// Reads what `stream` holds now, at most [`READS_PER_POLL`] times, registering the
    /// stream's readiness with `cx` when it runs dry (so the task wakes when more comes).
    /// Returns false when it stopped at the read cap with data possibly left.
    ///
    /// Through `AsyncRead::poll_read` rather than `try_read`: after a short read tokio
    /// considers the pipe drained, so the next poll registers without another `read`.
    fn read_available(&mut self, stream: Stream, cx: &mut Context<'_>) -> bool {
        use tokio::io::AsyncRead;
        let i = stream as usize;
        for _ in 0..READS_PER_POLL {
            if self.state.eof[i] {
                return true;
            }
            if self.chunk.is_empty() {
                self.chunk = vec![0u8; READ_CHUNK];
            }
            let mut buf = tokio::io::ReadBuf::new(&mut self.chunk);
            match std::pin::Pin::new(&mut self.pipes[i]).poll_read(cx, &mut buf) {
                Poll::Pending => return true,
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        self.end(stream);
                    } else {
                        self.ingest(stream, n);
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    tracing::debug!(stream = stream.name(), error = %e, "log pipe read failed");
                    self.end(stream);
                }
            }
        }
        false
    }

    /// Drains both pipes as data arrives; never ready by itself (a run's exchange polls it
    /// beside the reply). Yields after [`READS_PER_POLL`] reads of a stream.
    pub fn poll_pump(&mut self, cx: &mut Context<'_>) {
        let mut capped = false;
        for stream in Stream::BOTH {
            capped |= !self.read_available(stream, cx);
        }
        if capped {
            cx.waker().wake_by_ref();
        }
    }

    /// Waits until each stream has shown `exchanges` sentinels in total or ended, at most
    /// `max`. Returns false when it gave up waiting. After a reply the sentinels are already
    /// in the pipes (and their readiness was seen by the I/O driver no later than the
    /// reply's), so this normally returns at its first poll.
    pub async fn wait_end(&mut self, exchanges: u64, max: Duration) -> bool {
        if self.state.done(exchanges) {
            return true;
        }
        let wait = std::future::poll_fn(|cx| {
            self.poll_pump(cx);
            if self.state.done(exchanges) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(max, wait).await.is_ok()
    }

    /// Reads what the pipes hold now without waiting for anything: for an exchange after
    /// which no sentinels come (an action proxy's /init).
    pub async fn drain(&mut self) {
        std::future::poll_fn(|cx| {
            self.poll_pump(cx);
            Poll::Ready(())
        })
        .await;
    }

    /// Takes the lines collected so far and starts a new activation's count.
    pub fn take(&mut self) -> Vec<String> {
        self.state.bytes = 0;
        self.state.truncated = false;
        std::mem::take(&mut self.state.lines)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn body(entry: &str) -> &str {
        entry.split_once(' ').unwrap().1
    }

    fn pipes(limit: usize) -> (pipe::Sender, pipe::Sender, LogPipes) {
        let (w_out, r_out) = pipe::pipe().unwrap();
        let (w_err, r_err) = pipe::pipe().unwrap();
        (w_out, w_err, LogPipes::new(r_out, r_err, limit))
    }

    #[tokio::test]
    async fn lines_sentinels_and_limits() {
        let (mut w_out, mut w_err, mut logs) = pipes(1000);
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
    }

    #[tokio::test]
    async fn a_sentinel_written_later_wakes_the_wait() {
        let (mut w_out, mut w_err, mut logs) = pipes(usize::MAX);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            w_out.write_all(format!("late\n{SENTINEL}\n").as_bytes()).await.unwrap();
            w_err.write_all(format!("{SENTINEL}\n").as_bytes()).await.unwrap();
            (w_out, w_err)
        });
        assert!(logs.wait_end(1, Duration::from_secs(5)).await);
        let lines = logs.take();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(body(&lines[0]), "stdout: late");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn more_than_a_pipe_buffer_is_drained_while_waiting() {
        // 1 MB through a 64 KB pipe: the writer finishes only if the wait drains as it goes.
        let (mut w_out, mut w_err, mut logs) = pipes(usize::MAX);
        let writer = tokio::spawn(async move {
            let line = format!("{}\n", "x".repeat(1023));
            for _ in 0..1024 {
                w_out.write_all(line.as_bytes()).await.unwrap();
            }
            w_out.write_all(format!("{SENTINEL}\n").as_bytes()).await.unwrap();
            w_err.write_all(format!("{SENTINEL}\n").as_bytes()).await.unwrap();
            (w_out, w_err)
        });
        assert!(logs.wait_end(1, Duration::from_secs(10)).await);
        assert_eq!(logs.take().len(), 1024);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let (mut w, w_err, mut logs) = pipes(usize::MAX);
        let writer = tokio::spawn(async move {
            w.write_all(&vec![b'a'; MAX_LINE_BYTES * 2 + 5]).await.unwrap();
        });
        drop(w_err);
        assert!(logs.wait_end(u64::MAX, Duration::from_secs(5)).await);
        writer.await.unwrap();
        assert!(logs.closed());
        assert_eq!(logs.take().len(), 3);
    }
}
