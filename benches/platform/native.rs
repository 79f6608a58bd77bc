//! Native actions (issue 15): cold, prewarmed and warm invokes of what `wsk action create
//! --native` sends (`exec: {kind: "blackbox", image: "openwhisk/dockerskeleton", code: <zip
//! with an executable exec>, binary: true}`), each beside its floor in the same run.
//!
//! The action is a small shell script (`exec`, in a zip) that answers `{"ok": true, "n": N}`
//! from the `n` of its argument using only the shell's builtins; every sample sends its own
//! `n` and checks it comes back, so a sample is never counted for a run that did not happen.
//!
//! Floors, from containers the harness makes itself (never hearth's pool):
//! - cold and prewarmed: a bare `runc run` of the driver's own bundle for the native kind
//!   (`bundle::config`: the same root, mounts, namespaces, seccomp and cgroup limits) whose
//!   process is the action's `exec` with the parameters as its argument: a container start
//!   plus the executable's start, what no native start can avoid (hearth's native launcher,
//!   `hearth-native`, is compiled: its own start is a fraction of a millisecond);
//! - warm: one run of the same zip on a container the harness drives itself through the
//!   library's runc driver (the native launcher spawning `exec`), plus one loopback HTTP round
//!   trip to a trivial hyper server, as the python and nodejs warm floors.
//!
//! The default prewarm plan has no native stem cell (python and nodejs only), so the
//! prewarmed and warm instance adds one (`[[prewarm]] kind = "blackbox"`); the cold instance
//! has no stem cells at all. Samples alternate with their floor's so that load on the shared
//! machine hits both alike.

use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use hearth::container::ActionContainer;
use hearth::model::{Runtime, BLACKBOX, NATIVE_IMAGE};
use serde_json::{json, Value};

use crate::daemon::{self, Daemon};
use crate::direct::{self, Direct};
use crate::http::Client;
use crate::report::Row;
use crate::stats::Samples;
use crate::workspace::Workspace;
use crate::{api, Plan, Progress};

/// The actions' memory, and the native stem cell's.
const MEMORY_MB: u64 = 256;
/// How the prewarm filler names a native stem cell's runtime in its `prewarmed` event
/// (`Runtime::Native.as_str()`).
const PREWARM_RUNTIME: &str = "native";
/// Pause before each sample so the previous one's background work (log flush, record write,
/// a refill) is not measured with it (as in starts.rs).
const SETTLE: Duration = Duration::from_millis(150);
/// Longest a refill may take before the harness calls the pool stuck.
const REFILL_TIMEOUT: Duration = Duration::from_secs(30);
/// The `n` the floors' runs get (the platform's samples send their own).
const FLOOR_N: u64 = 7;

/// The action's `exec`: `{"ok": true, "n": N}` from the `n` of its JSON argument, with shell
/// builtins only (no process besides the shell itself). `TAG` becomes the action's name, so
/// that each action's code differs.
const EXEC: &str = r#"#!/bin/sh
# TAG
n=${1#*\"n\":}
[ "$n" = "$1" ] && n=0
n=${n%\}}
echo "{\"ok\": true, \"n\": $n}"
"#;

/// The invoker config of the prewarmed and warm instance: one native stem cell, which the
/// default plan (python and nodejs) does not have.
fn invoker_toml_native() -> String {
    format!(
        "memory_budget_mb = 32768\nqueue_limit = 1024\n\n\
         [[prewarm]]\nkind = \"{BLACKBOX}\"\nmemory_mb = {MEMORY_MB}\ncount = 1\n"
    )
}

/// A zip holding `exec` (mode 0755), as `wsk action create --native` sends a zip.
fn exec_zip(tag: &str) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    w.start_file("exec", options).context("zipping exec")?;
    w.write_all(EXEC.replace("TAG", tag).as_bytes()).context("zipping exec")?;
    Ok(w.finish().context("zipping exec")?.into_inner())
}

/// All native rows: the floors measured here, hearth on two instances of its own (one
/// without stem cells for cold starts, one with a native stem cell for prewarmed and warm).
pub async fn run(
    ws: &Arc<Workspace>,
    data_dir: &Path,
    direct: &Direct,
    trivial: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    progress.phase("native: the floor's bundle");
    let mut bare = BareExec::new(direct)?;
    // One unmeasured round of each, so that page-cache misses are not in the floor.
    bare.once().await?;
    let mut rows = Vec::new();

    // Cold: no stem cells; each sample is a fresh action, alternated with a bare start.
    let cfg = daemon::config_dir(ws, "config-native-cold", &crate::invoker_toml_cold(32768))?;
    let (d, addr, state) =
        crate::start_standalone_with(ws, "native-cold", data_dir, &cfg, &[], progress).await?;
    let phase = async {
        let mut c = api::connect(addr).await?;
        let (mut took, mut floor) = (Samples::default(), Samples::default());
        for i in 0..plan.starts_n {
            progress.step("cold native", i, plan.starts_n);
            let name = format!("bench-native-cold-{i}");
            put_native(&mut c, &name).await?;
            tokio::time::sleep(SETTLE).await;
            took.push(invoke_n(&mut c, &name, i as u64).await?);
            tokio::time::sleep(SETTLE).await;
            floor.push(bare.once().await?);
        }
        anyhow::Ok((took, floor))
    }
    .await;
    let stop = daemon::stop_row(ws, d, &state, plan).await?;
    let (cold, mut floor) = phase?;

    // Prewarmed, then warm: a native stem cell.
    let cfg = daemon::config_dir(ws, "config-native", &invoker_toml_native())?;
    let (d, addr, state) =
        crate::start_standalone_with(ws, "native", data_dir, &cfg, &[PREWARM_RUNTIME], progress)
            .await?;
    let phase = async {
        let mut c = api::connect(addr).await?;
        let pre = prewarmed(&d, &mut c, direct, &mut bare, plan, progress).await?;
        let warm = warm(&mut c, direct, trivial, plan, progress).await?;
        anyhow::Ok((pre, warm))
    }
    .await;
    let stop_pre = daemon::stop_row(ws, d, &state, plan).await?;
    let ((pre, refill, specialise, floor_pre), warm) = phase?;

    // The cold floor's samples from both instances: the same bare run either way.
    for s in floor_pre {
        floor.push(s);
    }
    let f = floor.summary();
    let floor_p50 = f.p50_us / 1000.0;
    let floor_label = "runc run + exec start";
    let main = Row::latency("cold start native", &cold.summary()).floor(floor_label, floor_p50);
    let ratio = main.ratio;
    rows.push(
        main.target("<= 1.2x floor (issue 15, as the other kinds' cold starts)", ratio <= 1.2)
            .note(
            "a zip with a #!/bin/sh exec, no stem cells; the launcher is hearth-native (compiled)",
        ),
    );
    rows.push(Row::latency(
        "  floor: bare runc run of the native bundle, process /action/exec '{\"n\": 7}'",
        &f,
    ));
    rows.push(stop);
    let main = Row::latency("prewarmed start native", &pre.summary()).floor(floor_label, floor_p50);
    let ratio = main.ratio;
    rows.push(
        main.target("< floor (issue 15: container and launcher already up)", ratio < 1.0).note(
            "the bench's config adds a native stem cell ([[prewarm]] kind = \"blackbox\", 256 MB): the default plan has none",
        ),
    );
    rows.push(Row::latency(
        "  direct native stem cell: install the zip + init + first run",
        &specialise.summary(),
    ));
    rows.push(Row::latency("  prewarm refill native (request to ready)", &refill.summary()));
    let (platform, run, http, floor) = warm;
    let main = Row::latency("warm invoke native", &platform.summary())
        .floor("direct run + loopback HTTP", floor.summary().p50_us / 1000.0);
    let ratio = main.ratio;
    rows.push(main.target("<= 1.5x floor (issue 15, as issue 3's warm rows)", ratio <= 1.5));
    rows.push(Row::latency(
        "  floor: direct container run native (the launcher spawns exec)",
        &run.summary(),
    ));
    rows.push(Row::latency("  floor: loopback HTTP (native run)", &http.summary()));
    rows.push(stop_pre);
    Ok(rows)
}

/// The cold and prewarmed floor: a bare `runc run` of the native bundle whose process is the
/// action's `exec` (from the same zip, installed in the bundle's code dir) with `{"n": 7}` as
/// its argument; each run a fresh id and cgroup, as a cold start.
struct BareExec {
    bundle: direct::BareBundle,
    seq: usize,
}

impl BareExec {
    fn new(direct: &Direct) -> anyhow::Result<Self> {
        let mut bundle = direct.bare_bundle(Runtime::Native, MEMORY_MB)?;
        hearth::launcher::code::install(
            &bundle.code_dir(),
            Runtime::Native,
            &exec_zip("floor")?,
            true,
        )
        .context("installing exec into the floor's bundle")?;
        let arg = json!({ "n": FLOOR_N }).to_string();
        bundle.set_process(&["/action/exec", &arg]);
        Ok(Self { bundle, seq: 0 })
    }

    /// One run, checked: the exec's stdout must be its answer.
    async fn once(&mut self) -> anyhow::Result<Duration> {
        self.seq += 1;
        let (took, out) = self.bundle.run_capture(&format!("bare-native-{}", self.seq)).await?;
        check_result(&String::from_utf8_lossy(&out), FLOOR_N)
            .context("the floor's exec in a bare runc run")?;
        Ok(took)
    }
}

/// Prewarmed starts, each beside a bare floor run and a direct stem cell's specialisation:
/// (platform, refill, direct specialisation, floor) samples.
async fn prewarmed(
    d: &Daemon,
    c: &mut Client,
    direct: &Direct,
    bare: &mut BareExec,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<(Samples, Samples, Samples, Vec<Duration>)> {
    let (mut took, mut refill, mut specialise, mut floor) =
        (Samples::default(), Samples::default(), Samples::default(), Vec::new());
    let mut spec = direct::run_spec();
    spec.params.insert("n".into(), json!(FLOOR_N));
    for i in 0..plan.starts_n {
        progress.step("prewarmed native", i, plan.starts_n);
        // What a prewarmed start leaves to do, on a stem cell of our own.
        let mut stem = direct.stem_cell(Runtime::Native, MEMORY_MB).await?;
        tokio::time::sleep(SETTLE).await;
        let zip = exec_zip(&format!("floor-stem-{i}"))?;
        let s = Direct::specialise_code(&mut stem, Runtime::Native, &zip, true, &spec).await;
        stem.destroy().await;
        specialise.push(s?);

        let name = format!("bench-native-pre-{i}");
        put_native(c, &name).await?;
        tokio::time::sleep(SETTLE).await;
        let t = Instant::now();
        took.push(invoke_n(c, &name, i as u64).await?);
        // The refill event proves the request took the stem cell (a cold start would not
        // trigger one) and is the moment the next sample may start.
        let (seen, _) = d
            .log
            .wait_for(t, REFILL_TIMEOUT, "native prewarm refill", |l| {
                daemon::is_prewarmed(l, PREWARM_RUNTIME)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}; {}", d.context()))?;
        refill.push(seen - t);
        tokio::time::sleep(SETTLE).await;
        floor.push(bare.once().await?);
    }
    Ok((took, refill, specialise, floor))
}

/// Warm invokes interleaved with their floor (a direct run of the same zip, then a loopback
/// HTTP round trip): (platform, direct run, HTTP, floor = run + HTTP) samples.
async fn warm(
    c: &mut Client,
    direct: &Direct,
    trivial: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<(Samples, Samples, Samples, Samples)> {
    let name = "bench-native-warm";
    put_native(c, name).await?;
    let mut http =
        Client::connect(trivial, None).await.context("connecting to the trivial server")?;
    let zip = exec_zip("floor-warm")?;
    let mut container = direct.start_code(Runtime::Native, MEMORY_MB, &zip, true).await?;
    let mut spec = direct::run_spec();
    spec.params.insert("n".into(), json!(FLOOR_N));
    let result = async {
        for i in 0..plan.warm_warmup {
            invoke_n(c, name, i as u64).await?;
            direct::run_once(&mut container, &spec).await?;
            http.request("GET", "/", b"").await?;
        }
        let n = plan.warm_n;
        let (mut platform, mut run, mut rt, mut floor) = (
            Samples::with_capacity(n),
            Samples::with_capacity(n),
            Samples::with_capacity(n),
            Samples::with_capacity(n),
        );
        for i in 0..n {
            progress.step("warm native", i, n);
            platform.push(invoke_n(c, name, i as u64).await?);
            let t = Instant::now();
            let out = container.run(&spec).await.context("a direct native run")?;
            let d = t.elapsed();
            if out.result["n"] != json!(FLOOR_N) {
                bail!("the direct native run answered {}", out.result);
            }
            let (_, _, h) = http.request("GET", "/", b"").await?;
            run.push(d);
            rt.push(h);
            floor.push(d + h);
        }
        anyhow::Ok((platform, run, rt, floor))
    }
    .await;
    container.destroy().await;
    result
}

/// PUT a native action as `wsk action create NAME --native` sends it: the zip base64-encoded.
async fn put_native(c: &mut Client, name: &str) -> anyhow::Result<()> {
    let code = base64::engine::general_purpose::STANDARD.encode(exec_zip(name)?);
    let body = json!({
        "exec": {"kind": BLACKBOX, "image": NATIVE_IMAGE, "code": code, "binary": true},
        "limits": {"memory": MEMORY_MB},
    });
    let path = format!("/api/v1/namespaces/_/actions/{name}?overwrite=true");
    let (status, resp, _) = c.request("PUT", &path, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT native action {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(())
}

/// A blocking invoke with result=true and `{"n": n}`; only a 200 whose result carries the
/// same `n` counts.
async fn invoke_n(c: &mut Client, name: &str, n: u64) -> anyhow::Result<Duration> {
    let path = format!("/api/v1/namespaces/_/actions/{name}?blocking=true&result=true");
    let body = json!({ "n": n }).to_string();
    let (status, resp, took) = c.request("POST", &path, body.as_bytes()).await?;
    let text = String::from_utf8_lossy(&resp);
    if status != 200 {
        bail!("invoke {name}: {status} {text}");
    }
    check_result(&text, n).with_context(|| format!("invoke {name}"))?;
    Ok(took)
}

/// `text` (the last line of it, as the native contract reads stdout) is `{"ok": true, "n": n}`.
fn check_result(text: &str, n: u64) -> anyhow::Result<()> {
    let last = text.trim_end().lines().last().unwrap_or("");
    let v: Value =
        serde_json::from_str(last).with_context(|| format!("the result {last:?} is not JSON"))?;
    if v["ok"] != json!(true) || v["n"] != json!(n) {
        bail!("expected {{\"ok\": true, \"n\": {n}}}, got {v}");
    }
    Ok(())
}
