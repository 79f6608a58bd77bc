//! Latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// A set of latencies, summarised as p50/p90/p99 in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

/// What a row of the report shows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn summary(&self) -> Summary {
        Summary::of(self.0.iter().map(|d| d.as_secs_f64() * 1e6).collect())
    }
}

impl Summary {
    /// Percentiles (nearest rank) of any values; the fields keep their `_us` names, but for
    /// rates they hold whatever unit the values are in.
    pub fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
            v[idx.min(v.len() - 1)]
        };
        let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        Summary { n: v.len(), p50_us: pct(0.5), p90_us: pct(0.9), p99_us: pct(0.99), mean_us: mean }
    }
}

/// Checks run by `cargo test` (see `selftest`): bench targets do not get the test harness.
pub fn selftest() {
    let mut s = Samples::default();
    for i in 1..=100 {
        s.push(Duration::from_micros(i));
    }
    let m = s.summary();
    assert_eq!(m.n, 100);
    assert!((m.p50_us - 50.0).abs() <= 1.0, "p50 {}", m.p50_us);
    assert!((m.p99_us - 99.0).abs() <= 1.0, "p99 {}", m.p99_us);
    assert!(Samples::default().summary().p50_us.is_nan());
    let m = Summary::of(vec![30.0, 10.0, 20.0]);
    assert_eq!((m.n, m.p50_us, m.p99_us, m.mean_us), (3, 20.0, 30.0, 20.0));
}
