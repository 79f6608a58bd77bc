//! The progress line on stderr: on a terminal one line rewritten in place (at most every
//! 100 ms, so drawing it costs nothing measurable); otherwise one line per phase.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    start: Instant,
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn new() -> Self {
        Self { start: Instant::now(), tty: std::io::stderr().is_terminal(), last: Mutex::new(None) }
    }

    /// A new phase: always shown.
    pub fn phase(&self, what: &str) {
        self.draw(what, true);
    }

    /// A step inside a phase: shown on a terminal, throttled.
    pub fn step(&self, what: &str, i: usize, n: usize) {
        if self.tty {
            self.draw(&format!("{what} {i}/{n}"), false);
        }
    }

    fn draw(&self, text: &str, force: bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !force && last.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        *last = Some(now);
        let secs = self.start.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K[{secs:6.1}s] {text}");
        } else {
            let _ = writeln!(err, "[{secs:6.1}s] {text}");
        }
        let _ = err.flush();
    }

    /// Clears the progress line before the table is printed.
    pub fn done(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
