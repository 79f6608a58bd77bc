//! Where hearth's logs go: the systemd journal with structured fields, or stderr.
//!
//! Owns the process-wide tracing subscriber and the forwarding of the actions' own output
//! lines into the journal. Under systemd (stderr connected to the journal) events are sent
//! natively with fields: a span or event field `activation_id` becomes the journal field
//! `HEARTH_ACTIVATION_ID` (tracing-journald upper-cases field names and puts the prefix
//! before them), so `journalctl HEARTH_ACTION=guest/hello` finds one function's records.
//! Started by hand, the same events are formatted to stderr.
//!
//! Must never decide log levels per call site at runtime (the filter comes from `HEARTH_LOG`
//! or `RUST_LOG`) and never block the caller on the journal (tracing-journald sends one
//! datagram per event and drops it on error).

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Prefix tracing-journald puts before every user field: `activation_id` -> `HEARTH_ACTIVATION_ID`.
pub const FIELD_PREFIX: &str = "HEARTH";

/// Target of the records that carry an action's own output, so filters can single them out
/// (`HEARTH_LOG=info,hearth::action_log=off`).
pub const ACTION_LOG_TARGET: &str = "hearth::action_log";

/// Which sink [`init_tracing`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    Journal,
    Stderr,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("invalid log filter {filter:?} (from {var}): {source}")]
    Filter {
        var: &'static str,
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber: journald when stderr is the journal, else formatted stderr.
/// `default_directive` (e.g. `"hearth=info"`) applies when neither `HEARTH_LOG` nor `RUST_LOG`
/// is set; a malformed variable is an error rather than a silently different log level.
pub fn init_tracing(default_directive: &str) -> Result<LogSink, JournalError> {
    let filter = env_filter(default_directive)?;
    let journal = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(l) => Some(l.with_field_prefix(Some(FIELD_PREFIX.to_owned()))),
            Err(e) => {
                // Journal socket missing although JOURNAL_STREAM says otherwise (a chroot,
                // a container without journald): stderr still reaches someone.
                eprintln!("hearth: journald socket unusable ({e}); logging to stderr");
                None
            }
        }
    } else {
        None
    };
    let sink = if journal.is_some() { LogSink::Journal } else { LogSink::Stderr };
    let stderr = match sink {
        LogSink::Journal => None,
        LogSink::Stderr => Some(std::io::stderr as fn() -> std::io::Stderr),
    };
    // Colours only for a person at a terminal: a log file or a pipe (`make run > log`) gets
    // plain text, and NO_COLOR is honoured.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty());
    subscriber(filter, journal, stderr, ansi).try_init()?;
    Ok(sink)
}

/// The subscriber [`init_tracing`] installs: `filter` over the journal layer and a text layer
/// writing to `text` (each optional), coloured when `ansi`.
///
/// One global filter, the first layer, rather than a filter per sink: per-layer filters leave
/// the registry building every span (a slab slot, its fields, enter/exit/close) before each
/// layer's filter looks at it, a measurable share of the workers' CPU at `warn` under load
/// (BENCHMARKS.md, "Design measurements"). A global
/// filter gives each disabled callsite a cached "never" and sets the max level, so a disabled
/// span or event costs a load and a branch. Both sinks see the same events anyway.
fn subscriber<W>(
    filter: EnvFilter,
    journal: Option<tracing_journald::Layer>,
    text: Option<W>,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let text = text.map(|w| tracing_subscriber::fmt::layer().with_writer(w).with_ansi(ansi));
    tracing_subscriber::registry().with(filter).with(journal).with(text)
}

fn env_filter(default_directive: &str) -> Result<EnvFilter, JournalError> {
    for var in ["HEARTH_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return EnvFilter::try_new(&v).map_err(|source| JournalError::Filter {
                    var,
                    filter: v,
                    source,
                });
            }
        }
    }
    EnvFilter::try_new(default_directive).map_err(|source| JournalError::Filter {
        var: "default",
        filter: default_directive.into(),
        source,
    })
}

/// systemd sets `JOURNAL_STREAM=<dev>:<ino>` for a service whose stderr/stdout is the journal;
/// it is inherited by children whose stderr is something else, so compare it with what our
/// stderr actually is (systemd.exec(5) recommends exactly this check).
pub fn stderr_is_journal() -> bool {
    match std::env::var("JOURNAL_STREAM") {
        Ok(var) => fd_is_stream(std::io::stderr().as_fd(), &var),
        Err(_) => false,
    }
}

/// True when `fd` is the file `JOURNAL_STREAM`'s `dev:ino` names.
fn fd_is_stream(fd: std::os::fd::BorrowedFd<'_>, var: &str) -> bool {
    let Some((dev, ino)) = parse_journal_stream(var) else {
        return false;
    };
    match fd.try_clone_to_owned().map(std::fs::File::from).and_then(|f| f.metadata()) {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

pub(crate) fn parse_journal_stream(v: &str) -> Option<(u64, u64)> {
    let (dev, ino) = v.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Which of the action's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Forwards one line of an action's output as its own journal record: MESSAGE is the line,
/// with HEARTH_ACTIVATION_ID, HEARTH_NAMESPACE, HEARTH_ACTION (`namespace/name`),
/// HEARTH_CONTAINER and HEARTH_STREAM. stderr lines are recorded at WARN so
/// `journalctl -p warning` shows them; stdout at INFO.
pub fn forward_action_log(
    activation_id: &str,
    namespace: &str,
    action: &str,
    container: &str,
    stream: Stream,
    line: &str,
) {
    let line = line.trim_end_matches(['\n', '\r']);
    match stream {
        Stream::Stdout => tracing::info!(
            target: ACTION_LOG_TARGET,
            activation_id,
            namespace,
            action,
            container,
            stream = stream.as_str(),
            "{line}"
        ),
        Stream::Stderr => tracing::warn!(
            target: ACTION_LOG_TARGET,
            activation_id,
            namespace,
            action,
            container,
            stream = stream.as_str(),
            "{line}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_parses_dev_and_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
        assert_eq!(parse_journal_stream(":"), None);
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn forwarded_lines_carry_the_activation_fields() {
        let cap = Capture::default();
        let w = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(sub, || {
            forward_action_log(
                "0123abcd",
                "guest",
                "guest/hello",
                "hearth-c7",
                Stream::Stderr,
                "hello from the action\n",
            );
        });
        let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("WARN"), "{out}");
        assert!(out.contains("hearth::action_log"), "{out}");
        assert!(out.contains("hello from the action"), "{out}");
        for f in [
            "activation_id=\"0123abcd\"",
            "namespace=\"guest\"",
            "action=\"guest/hello\"",
            "container=\"hearth-c7\"",
            "stream=\"stderr\"",
        ] {
            assert!(out.contains(f), "missing {f} in {out}");
        }
    }

    #[test]
    fn disabled_spans_are_not_built() {
        let cap = Capture::default();
        let w = cap.clone();
        let filter = EnvFilter::try_new("warn,hearth::journal_test=debug").unwrap();
        let sub = subscriber(filter, None, Some(move || w.clone()), false);
        tracing::subscriber::with_default(sub, || {
            // Below the filter: never built (a per-layer filter built them all).
            let span = tracing::info_span!("activation", activation_id = "x");
            assert!(span.is_disabled());
            assert!(tracing::debug_span!("run").is_disabled());
            tracing::info!("info line not shown");
            // At or above it: built and written.
            let span = tracing::warn_span!("kept", field = 1);
            assert!(!span.is_disabled());
            span.in_scope(|| tracing::warn!("warn line shown"));
            tracing::debug!(target: "hearth::journal_test", "debug line of an enabled target");
        });
        let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("warn line shown"), "{out}");
        assert!(out.contains("kept"), "{out}");
        assert!(out.contains("debug line of an enabled target"), "{out}");
        assert!(!out.contains("info line not shown"), "{out}");
    }

    #[test]
    fn journal_stream_must_name_this_very_file() {
        let a = tempfile::tempfile().unwrap();
        let b = tempfile::tempfile().unwrap();
        let m = a.metadata().unwrap();
        let var = format!("{}:{}", m.dev(), m.ino());
        assert!(fd_is_stream(a.as_fd(), &var));
        assert!(!fd_is_stream(b.as_fd(), &var));
        assert!(!fd_is_stream(a.as_fd(), "garbage"));
    }
}
