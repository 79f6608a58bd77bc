//! Whether this service is being restarted or stopped: asked by the invoker when SIGTERM
//! arrives, to keep its warm containers across a restart (live restore) and destroy them on a
//! final stop.
//!
//! Owns one question to the service manager over the system bus: the job queued for our own
//! unit. `systemctl restart` (and `try-restart`, as an upgrade's maintainer script runs it)
//! queues a job of type `restart` that stays `restart` while the old process stops; a stop
//! queues `stop`. The unit's name comes from our own cgroup (`/proc/self/cgroup`), so nothing
//! needs configuring. Must never block a shutdown on the bus: every failure answers "not a
//! restart", which is the safe side (containers are destroyed as without live restore).

use std::time::Duration;

use zbus::OwnedObjectPath;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// The most a shutdown waits for the answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The `.service` unit this process runs in, from its cgroup path (v1 `name=systemd` line or
/// the v2 `0::` line).
pub fn own_unit() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_from_cgroup(&text)
}

pub(crate) fn unit_from_cgroup(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.contains(":name=systemd:"))
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))?;
    let path = line.splitn(3, ':').nth(2)?;
    path.split('/').rev().find(|c| c.ends_with(".service")).map(str::to_owned)
}

/// True when systemd has a `restart` job for our unit. False when not under systemd, without
/// a bus, on any error, or after [`ASK_TIMEOUT`].
pub async fn restart_pending() -> bool {
    let Some(unit) = own_unit() else { return false };
    match tokio::time::timeout(ASK_TIMEOUT, job_type(&unit)).await {
        Ok(Ok(Some(kind))) => {
            tracing::info!(%unit, job = %kind, "service manager job for our unit");
            kind == "restart"
        }
        Ok(Ok(None)) => false,
        Ok(Err(e)) => {
            tracing::warn!(%unit, error = %e, "cannot ask systemd for our unit's job; treating as a stop");
            false
        }
        Err(_) => {
            tracing::warn!(%unit, "systemd did not answer in time; treating as a stop");
            false
        }
    }
}

/// (id, unit, type, state, job path, unit path), as `ListJobs` returns them.
type JobRow = (u32, String, String, String, OwnedObjectPath, OwnedObjectPath);

async fn job_type(unit: &str) -> zbus::Result<Option<String>> {
    let conn = zbus::connection::Builder::system().build().await?;
    let reply = conn.call_method(Some(DEST), PATH, Some(MANAGER), "ListJobs", &()).await?;
    let jobs: Vec<JobRow> = reply.body().deserialize()?;
    Ok(jobs.into_iter().find(|j| j.1 == unit).map(|j| j.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_v1_and_v2_cgroup_files() {
        let v1 = "12:memory:/system.slice/hearth-invoker.service\n\
                  1:name=systemd:/system.slice/hearth-invoker.service\n0::/\n";
        assert_eq!(unit_from_cgroup(v1).as_deref(), Some("hearth-invoker.service"));
        let v2 = "0::/system.slice/hearth-invoker.service\n";
        assert_eq!(unit_from_cgroup(v2).as_deref(), Some("hearth-invoker.service"));
        assert_eq!(unit_from_cgroup("0::/user.slice/session-1.scope\n"), None);
    }
}
