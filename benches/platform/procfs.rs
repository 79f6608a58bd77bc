//! What the kernel says about memory: a process's resident set, a container's memory cgroup,
//! and which of the platform's containers hold which action (read from the invoker's state
//! dir: `bundles/<id>/config.json` and `code/<id>/`).

use std::path::Path;

use anyhow::Context;

/// A process's VmRSS in MB.
pub fn rss_mb(pid: i32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb as f64 / 1024.0)
}

/// A process's resident set split by kind, in MB: anonymous (heap, stacks) and file-backed
/// (binary, libraries and the LMDB memory map: pages of the data file it touched).
#[derive(Debug, Clone, Copy)]
pub struct RssParts {
    pub anon_mb: f64,
    pub file_mb: f64,
}

pub fn rss_parts(pid: i32) -> anyhow::Result<RssParts> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb as f64 / 1024.0)
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(RssParts { anon_mb: field("RssAnon:")?, file_mb: field("RssFile:")? + field("RssShmem:")? })
}

/// What a process has cost so far: CPU time split into user and kernel, and context switches
/// summed over its threads. Under load most of hearthd's CPU is kernel time spent switching
/// between threads and processes, so the split and the switches say where a change can help.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub user: std::time::Duration,
    pub system: std::time::Duration,
    /// Voluntary and involuntary, over all threads alive at the reading.
    pub switches: u64,
}

impl CpuUse {
    /// Reads `pid`'s counters now.
    pub fn of(pid: i32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/stat");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name may hold spaces and parentheses: fields count after the last ')'.
        let rest = text.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).context("stat field");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let time = |t: u64| std::time::Duration::from_micros(t * 1_000_000 / hz);
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
        let (user, system) = (time(ticks(11)?), time(ticks(12)?));
        let mut switches = 0;
        let tasks = format!("/proc/{pid}/task");
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            // A thread that ended between the listing and the read has nothing more to add.
            let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else { continue };
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(Self { user, system, switches })
    }

    /// What was spent since `before`, per one of `n` operations: (user µs, system µs,
    /// switches). Threads that ended in between take their switches with them, so a count
    /// can only be low, never high.
    pub fn per_op_since(&self, before: &Self, n: f64) -> (f64, f64, f64) {
        let n = n.max(1.0);
        let us = |a: std::time::Duration, b: std::time::Duration| {
            a.saturating_sub(b).as_secs_f64() * 1e6 / n
        };
        (
            us(self.user, before.user),
            us(self.system, before.system),
            self.switches.saturating_sub(before.switches) as f64 / n,
        )
    }
}

/// A container's memory cgroup (v1): `memory.usage_in_bytes` and the `rss` of `memory.stat`,
/// in MB.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CgroupMemory {
    pub usage_mb: f64,
    pub rss_mb: f64,
}

pub fn cgroup_memory(parent: &str, id: &str) -> anyhow::Result<CgroupMemory> {
    let dir = Path::new("/sys/fs/cgroup/memory").join(parent).join(id);
    let usage = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
        .with_context(|| format!("reading {}/memory.usage_in_bytes", dir.display()))?;
    let usage: u64 = usage.trim().parse().context("memory.usage_in_bytes")?;
    let stat = std::fs::read_to_string(dir.join("memory.stat"))
        .with_context(|| format!("reading {}/memory.stat", dir.display()))?;
    let rss = stat
        .lines()
        .find_map(|l| l.strip_prefix("rss "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(CgroupMemory { usage_mb: usage as f64 / 1048576.0, rss_mb: rss as f64 / 1048576.0 })
}

/// One of the platform's containers as its state dir describes it.
#[derive(Debug, Clone)]
pub struct PlatformContainer {
    pub id: String,
    /// `python` or `nodejs`, from the launcher command line.
    pub runtime: &'static str,
    /// The installed action source, when an action was loaded (None: a prewarmed stem cell).
    pub code: Option<String>,
}

/// The containers under a runc driver state dir (`<state>/containers` for hearthd).
pub fn platform_containers(containers_dir: &Path) -> Vec<PlatformContainer> {
    let Ok(rd) = std::fs::read_dir(containers_dir.join("bundles")) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in rd.filter_map(Result::ok) {
        let id = entry.file_name().to_string_lossy().into_owned();
        let config = std::fs::read_to_string(entry.path().join("config.json")).unwrap_or_default();
        let runtime = if config.contains("/usr/bin/node") { "nodejs" } else { "python" };
        let code_dir = containers_dir.join("code").join(&id);
        let code = ["__main__.py", "index.js"]
            .iter()
            .find_map(|f| std::fs::read_to_string(code_dir.join(f)).ok());
        out.push(PlatformContainer { id, runtime, code });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
