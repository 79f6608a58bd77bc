//! The report: one row per measurement beside its floor and target, printed as a table and
//! written as JSON (for tracking across runs).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::stats::Summary;

/// What a row's numbers are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Ms,
    PerSec,
    Mb,
    Kb,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        if v.is_nan() {
            return "-".into();
        }
        match self {
            Unit::Ms if v < 10.0 => format!("{v:.3} ms"),
            Unit::Ms => format!("{v:.1} ms"),
            Unit::PerSec => format!("{v:.0}/s"),
            Unit::Mb => format!("{v:.1} MB"),
            Unit::Kb => format!("{v:.2} KB"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: Unit,
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The floor's p50 measured in the same run (NaN: this row has no floor).
    pub floor_p50: f64,
    pub floor_label: String,
    /// p50 / floor p50.
    pub ratio: f64,
    /// The target in words, empty when there is none.
    pub target: String,
    pub met: Option<bool>,
    /// Anything else worth keeping (container counts, totals).
    pub note: String,
}

impl Row {
    /// `metric` against another path of the same run (`floor`, interleaved with it), held to
    /// `bound` times the floor's p50, with the floor's own row under it.
    pub fn against(
        metric: &str,
        platform: &Summary,
        floor_label: &str,
        floor: &Summary,
        floor_metric: &str,
        bound: f64,
        bound_text: &str,
    ) -> anyhow::Result<Vec<Row>> {
        if floor.n == 0 {
            anyhow::bail!("{metric}: no samples of {floor_label}");
        }
        let main = Row::latency(metric, platform).floor(floor_label, floor.p50_us / 1000.0);
        let ratio = main.ratio;
        Ok(vec![
            main.target(format!("<= {bound}x {bound_text}"), ratio <= bound),
            Row::latency(floor_metric, floor),
        ])
    }

    /// A latency row (samples in µs from [`Summary`], shown in ms).
    pub fn latency(metric: impl Into<String>, s: &Summary) -> Self {
        Self {
            metric: metric.into(),
            unit: Unit::Ms,
            n: s.n,
            p50: s.p50_us / 1000.0,
            p90: s.p90_us / 1000.0,
            p99: s.p99_us / 1000.0,
            floor_p50: f64::NAN,
            floor_label: String::new(),
            ratio: f64::NAN,
            target: String::new(),
            met: None,
            note: String::new(),
        }
    }

    /// A single value (memory) with no spread.
    pub fn value(metric: impl Into<String>, unit: Unit, v: f64) -> Self {
        Self {
            metric: metric.into(),
            unit,
            n: 1,
            p50: v,
            p90: f64::NAN,
            p99: f64::NAN,
            floor_p50: f64::NAN,
            floor_label: String::new(),
            ratio: f64::NAN,
            target: String::new(),
            met: None,
            note: String::new(),
        }
    }

    /// Sets the floor (in the row's unit) and the ratio p50 / floor.
    pub fn floor(mut self, label: impl Into<String>, floor_p50: f64) -> Self {
        self.floor_label = label.into();
        self.floor_p50 = floor_p50;
        self.ratio = self.p50 / floor_p50;
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        let text = text.into();
        self.target =
            if self.target.is_empty() { text } else { format!("{}; {text}", self.target) };
        self.met = Some(self.met.unwrap_or(true) && met);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub started_unix: u64,
    pub elapsed_s: f64,
    pub machine: Machine,
    pub rows: Vec<Row>,
}

/// What the numbers were measured on.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory_mb: u64,
    pub kernel: String,
    pub runc: String,
    pub python: String,
    pub node: String,
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let first_line = |cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd)
                .args(args)
                .output()
                .map(|o| {
                    let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                    String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
                })
                .unwrap_or_default()
        };
        Self {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu,
            memory_mb,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            runc: first_line(crate::workspace::RUNC, &["--version"]),
            python: first_line(hearth::launcher::kinds::PYTHON, &["--version"]),
            node: first_line(hearth::launcher::kinds::NODE, &["--version"]),
            load_before: loadavg(),
            load_after: String::new(),
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Report {
    pub fn table(&self) -> String {
        let head = ["metric", "p50", "p90", "p99", "floor p50", "ratio", "target", "result"];
        let mut cells: Vec<[String; 8]> = Vec::new();
        for r in &self.rows {
            let floor = if r.floor_p50.is_nan() { "-".to_owned() } else { r.unit.fmt(r.floor_p50) };
            let ratio = if r.ratio.is_nan() { "-".to_owned() } else { format!("{:.2}x", r.ratio) };
            let result = match r.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            cells.push([
                r.metric.clone(),
                r.unit.fmt(r.p50),
                r.unit.fmt(r.p90),
                r.unit.fmt(r.p99),
                floor,
                ratio,
                r.target.clone(),
                result.to_owned(),
            ]);
        }
        let mut widths = head.map(str::len);
        for c in &cells {
            for (w, s) in widths.iter_mut().zip(c.iter()) {
                *w = (*w).max(s.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, c: &[String]| {
            for (i, (s, w)) in c.iter().zip(widths.iter()).enumerate() {
                let pad = w - s.chars().count();
                if i == 0 || i >= 6 {
                    let _ = write!(out, "{s}{} ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{}{s} ", " ".repeat(pad));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, &head.map(str::to_owned));
        let total: usize = widths.iter().sum::<usize>() + widths.len() - 1;
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for c in &cells {
            line(&mut out, c);
        }
        let notes: Vec<_> = self.rows.iter().filter(|r| !r.note.is_empty()).collect();
        if !notes.is_empty() {
            out.push('\n');
            for r in notes {
                let _ = writeln!(out, "{}: {}", r.metric, r.note);
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}
