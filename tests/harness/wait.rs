//! The one poll of the tests that drive processes (hearthd, a booted system, a broker): they
//! act on their own time, so a test retries a check until it holds or a bound runs out.
//! Shared by tests/harness and, through `#[path]`, by the system and package tests, which do
//! not use the rest of the harness. (In-process tests use `hearth::testing::eventually`.)

use std::time::{Duration, Instant};

/// Retries `f` every `every` until it returns Some, for up to `within`; None when the bound
/// ran out, so the caller can fail with its own context (a daemon's journal).
pub fn try_wait<T>(
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// As [`try_wait`], failing the test with `what` when the bound runs out.
pub fn wait_until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    f: impl FnMut() -> Option<T>,
) -> T {
    try_wait(within, every, f).unwrap_or_else(|| panic!("{what}: not within {within:?}"))
}
