//! Exercises hearth::systemd::machined against a real systemd-machined (tests/system.rs runs it
//! inside the booted system as a transient service and reads its stdout from the journal).
//!
//! Starts two `sleep` processes, each in its own scope (as runc --systemd-cgroup does for a
//! container), registers them as machines `hearth-probe-a` and `hearth-probe-b`, terminates
//! `b` itself through [`Machined::terminate`], then waits for someone else (the test's
//! `machinectl terminate hearth-probe-a`) to remove `a`, printing each MachineRemoved it sees.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::systemd::machined::Machined;

async fn sleeper_in_scope(unit: &str) -> anyhow::Result<(tokio::process::Child, u32)> {
    // systemd-run --scope moves itself into the new scope and then execs sleep, so the child
    // pid is the sleep's, in its own scope, once its comm reads "sleep".
    let child = tokio::process::Command::new("systemd-run")
        .args(["--quiet", "--scope", "--unit", unit, "--", "sleep", "600"])
        .kill_on_drop(true)
        .spawn()
        .context("spawning systemd-run --scope")?;
    let pid = child.id().context("child pid")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            return Ok((child, pid));
        }
        if Instant::now() > deadline {
            bail!("{unit}: sleep did not start (comm {comm:?})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let m = Machined::connect().await.context("no system bus")?;
    let mut removed = m.removed().await?;
    let (_a, pid_a) = sleeper_in_scope("hearth-probe-a-sleep.scope").await?;
    let (_b, pid_b) = sleeper_in_scope("hearth-probe-b-sleep.scope").await?;
    let t = Instant::now();
    m.register("hearth-probe-a", pid_a, std::path::Path::new("/")).await?;
    println!("registered hearth-probe-a leader {pid_a} in {} us", t.elapsed().as_micros());
    m.register("hearth-probe-b", pid_b, std::path::Path::new("/")).await?;
    println!("registered hearth-probe-b leader {pid_b}");
    m.terminate("hearth-probe-b").await?;
    println!("terminate requested hearth-probe-b");
    let mut seen_a = false;
    let mut seen_b = false;
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    while !(seen_a && seen_b) {
        tokio::select! {
            _ = &mut deadline => bail!("timed out waiting for MachineRemoved (a {seen_a}, b {seen_b})"),
            name = removed.next() => {
                let Some(name) = name else { bail!("bus closed") };
                println!("removed {name}");
                seen_a |= name == "hearth-probe-a";
                seen_b |= name == "hearth-probe-b";
            }
        }
    }
    println!("probe done");
    Ok(())
}
