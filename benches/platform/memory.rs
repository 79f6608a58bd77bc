//! Memory: the standalone daemon's RSS idle and with the warm containers the start phases
//! left, and the host-side cost of one warm container per runtime.

use std::path::Path;

use crate::daemon::Daemon;
use crate::procfs;
use crate::report::{Row, Unit};

/// Standalone RSS idle and with the warm containers the start phases left, and the host-side
/// cost of one warm container per runtime: its memory cgroup's usage plus its share of the
/// daemon's RSS growth.
///
/// Only the anonymous part of the RSS growth is charged to the containers: the file-backed
/// part is the LMDB map's pages, which grow with the activation records written, not with the
/// containers kept.
pub fn rows(
    b: &Daemon,
    state: &Path,
    idle: procfs::RssParts,
    idle_rss_a: f64,
) -> anyhow::Result<Vec<Row>> {
    let containers = procfs::platform_containers(&state.join("containers"));
    let rss = procfs::rss_mb(b.pid)?;
    let parts = procfs::rss_parts(b.pid)?;
    let idle_rss = idle.anon_mb + idle.file_mb;
    let warm: Vec<_> = containers.iter().filter(|c| c.code.is_some()).collect();
    let growth_each = if warm.is_empty() {
        0.0
    } else {
        (parts.anon_mb - idle.anon_mb).max(0.0) / warm.len() as f64
    };
    let mut rows = vec![
        Row::value("standalone RSS idle (2 stem cells)", Unit::Mb, idle_rss_a),
        Row::value(format!("standalone RSS with {} warm containers", warm.len()), Unit::Mb, rss)
            .note(format!(
                "idle {idle_rss:.1} MB (anonymous {:.1}) before the start phases; now anonymous {:.1} MB + file-backed {:.1} MB: {growth_each:.3} MB anonymous per warm container",
                idle.anon_mb, parts.anon_mb, parts.file_mb
            )),
    ];
    for rt in ["python", "nodejs"] {
        let mut usage = Vec::new();
        let mut anon = Vec::new();
        for c in warm.iter().filter(|c| c.runtime == rt) {
            let m = procfs::cgroup_memory(&memory_parent(&c.id), &c.id)?;
            usage.push(m.usage_mb);
            anon.push(m.rss_mb);
        }
        if usage.is_empty() {
            continue;
        }
        let n = usage.len() as f64;
        let mean = usage.iter().sum::<f64>() / n;
        let anon_mean = anon.iter().sum::<f64>() / n;
        rows.push(
            Row::value(format!("host cost per warm {rt} container"), Unit::Mb, mean + growth_each)
                .note(format!(
                    "{} containers: cgroup usage {mean:.1} MB (anon rss {anon_mean:.1} MB) + daemon anonymous RSS growth {growth_each:.3} MB",
                    usage.len()
                )),
        );
    }
    Ok(rows)
}

/// The cgroup parent (relative to the memory hierarchy) that holds container `id`: the daemon
/// derives a private `hearth/<hash of its state dir>` parent, so it is looked up rather than
/// assumed; `hearth` itself when no child holds it (the error then names that path).
fn memory_parent(id: &str) -> String {
    let base = std::path::Path::new("/sys/fs/cgroup/memory/hearth");
    std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .find(|e| e.path().join(id).is_dir())
        .map(|e| format!("hearth/{}", e.file_name().to_string_lossy()))
        .unwrap_or_else(|| "hearth".to_owned())
}
