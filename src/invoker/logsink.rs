//! Forwarding the actions' own output lines somewhere else than the record (the journal,
//! under systemd), off the critical path.
//!
//! Owns the bounded hand-off: the activation task offers one batch per activation after its
//! record went out; a single forwarder task writes the lines. When the forwarder falls behind
//! and the channel is full, the batch is dropped and counted, never waited for: an activation
//! must not slow down because the journal is slow. It never decides where lines go; the daemon
//! passes the writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Batches waiting for the forwarder. One batch is one activation's lines, so this is about a
/// second of a busy invoker's activations; past it the journal is the bottleneck anyway.
pub const FORWARD_QUEUE: usize = 1024;

/// One activation's output, as recorded (`<RFC 3339> stdout: text` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLogBatch {
    pub activation_id: String,
    pub namespace: String,
    /// `namespace/name`.
    pub action: String,
    pub container: String,
    pub lines: Vec<String>,
}

/// Which stream a recorded line came from, and its text without the timestamp.
pub fn split_line(line: &str) -> Option<(bool, &str)> {
    let (_ts, rest) = line.split_once(' ')?;
    if let Some(text) = rest.strip_prefix("stdout: ") {
        Some((false, text))
    } else {
        rest.strip_prefix("stderr: ").map(|text| (true, text))
    }
}

/// Writes one batch (called on the forwarder task, one batch at a time).
pub type LogWriter = Arc<dyn Fn(&ActionLogBatch) + Send + Sync>;

/// The sending side: cheap to clone.
#[derive(Debug, Clone)]
pub struct LogForwarder {
    tx: mpsc::Sender<ActionLogBatch>,
    dropped: Arc<AtomicU64>,
}

impl LogForwarder {
    /// Starts the forwarder task on the current runtime; it ends when every sender is gone.
    pub fn spawn(writer: LogWriter, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<ActionLogBatch>(capacity.max(1));
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                writer(&batch);
            }
        });
        Self { tx, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Offers a batch; drops it (counted) when the forwarder is behind.
    pub fn offer(&self, batch: ActionLogBatch) {
        if batch.lines.is_empty() {
            return;
        }
        if self.tx.try_send(batch).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "action log forwarder is behind; batches dropped");
            }
        }
    }

    /// Batches dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn batch(n: usize) -> ActionLogBatch {
        ActionLogBatch {
            activation_id: format!("a{n}"),
            namespace: "guest".into(),
            action: "guest/hello".into(),
            container: "hearth-1".into(),
            lines: vec![format!("2024-01-01T00:00:00.000000Z stdout: line {n}")],
        }
    }

    #[test]
    fn lines_split_into_stream_and_text() {
        assert_eq!(split_line("2024-01-01T00:00:00Z stdout: hi there"), Some((false, "hi there")));
        assert_eq!(split_line("2024-01-01T00:00:00Z stderr: oops"), Some((true, "oops")));
        assert_eq!(split_line("garbage"), None);
    }

    #[tokio::test]
    async fn batches_arrive_in_order_and_overflow_is_counted() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(std::sync::Barrier::new(1));
        let s2 = seen.clone();
        let writer: LogWriter = Arc::new(move |b: &ActionLogBatch| {
            let _ = &gate;
            s2.lock().unwrap().push(b.activation_id.clone());
        });
        let fwd = LogForwarder::spawn(writer, 2);
        // The forwarder task has not run yet (current-thread runtime): 2 fit, the rest drop.
        for n in 0..5 {
            fwd.offer(batch(n));
        }
        assert_eq!(fwd.dropped(), 3);
        for _ in 0..100 {
            if seen.lock().unwrap().len() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(*seen.lock().unwrap(), ["a0", "a1"]);
    }
}
