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

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: i32) -> anyhow::Result<std::time::Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).context("stat field");
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(std::time::Duration::from_micros(total * 1_000_000 / hz))
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
