//! Image actions (issue 20): cold, prewarmed and warm invokes of a `blackbox` action whose
//! image (tests/images/build.sh's test image, entrypoint the action proxy on port 8080) was
//! imported with `hearthd admin image import`, each beside its floor in the same run.
//!
//! Floors, from a runc bundle of our own over `umoci unpack` of the same image (never hearth's
//! image store):
//! - cold and prewarmed: a bare `runc run -d` of the root with the image's entrypoint until the
//!   proxy's port answers, plus one /init and one /run round trip (what a cold start cannot
//!   avoid; a prewarmed start should beat it by the container and proxy start);
//! - warm: one /run round trip to the proxy in its container, on a kept connection, from a
//!   thread that entered the container's network namespace with setns (as hearth reaches it).
//!
//! Cold and warm samples alternate with their floor's, so that load on the shared machine hits
//! both alike.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::model::Runtime;
use serde_json::json;

use crate::daemon;
use crate::report::Row;
use crate::stats::Samples;
use crate::workspace::Workspace;
use crate::{api, Plan, Progress};

/// The test image's name, as imported and as the actions name it.
pub const IMAGE: &str = "hearth-test/proxy:1";
/// How the prewarm filler names the runtime of an image stem cell in its `prewarmed` event
/// (`Runtime::Image(..).as_str()`); the instance prewarms one image only, so it is this one.
const PREWARM_RUNTIME: &str = "image";
/// The action's memory, and the image stem cell's.
const MEMORY_MB: u64 = 256;
/// The proxy's port (OpenWhisk's action-proxy contract).
const PROXY_PORT: u16 = 8080;
/// Longest the floor waits for the proxy's port.
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// The runc binary the floors use, as the invoker does.
const RUNC: &str = "runc";
/// The floor containers' cgroup parent, ours alone.
const CGROUP_PARENT: &str = "hearth-bench-image";
/// Pause before each sample (see starts.rs).
const SETTLE: Duration = Duration::from_millis(150);
const REFILL_TIMEOUT: Duration = Duration::from_secs(30);

/// The invoker config of the prewarmed/warm instance: one stem cell of the image (issue 20's
/// `[[prewarm]] image`), no built-in kinds.
fn invoker_toml_image() -> String {
    format!(
        "memory_budget_mb = 32768\nqueue_limit = 1024\n\n\
         [[prewarm]]\nimage = \"{IMAGE}\"\nmemory_mb = {MEMORY_MB}\ncount = 1\n"
    )
}

/// All image rows: floors measured here, hearth on two instances of its own (one without stem
/// cells for cold starts, one with the image's stem cell for prewarmed and warm invokes).
pub async fn run(
    ws: &Arc<Workspace>,
    data_dir: &Path,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    progress.phase("image: building the test image and the floor's bundle");
    let image_dir = test_image()?;
    let floor = Floor::new(ws, &image_dir)?;
    progress.phase(&format!("image: hearthd admin image import {IMAGE}"));
    if let Err(e) = import(data_dir, &image_dir) {
        // Without the image store no hearth row can run; the floors still tell what they
        // will be measured against, and the failed row says why the rest is missing.
        let mut rows = floors_alone(&floor, plan, progress).await?;
        rows.push(
            Row::value("image actions through hearth", crate::report::Unit::Ms, f64::NAN)
                .target("the image imports", false)
                .note(format!("{e:#}")),
        );
        return Ok(rows);
    }
    let mut rows = Vec::new();

    // Cold: no stem cells; each sample is a fresh action, alternated with a bare start.
    let cfg_cold = daemon::config_dir(ws, "config-image-cold", &crate::invoker_toml_cold(32768))?;
    let (cold, addr, state) =
        crate::start_standalone_with(ws, "image-cold", data_dir, &cfg_cold, &[], progress).await?;
    let phase = async {
        let mut c = api::connect(addr).await?;
        floor.start_once("floor-cold-warmup").await?; // page cache, unmeasured
        let (mut took, mut bare) = (Samples::default(), Samples::default());
        for i in 0..plan.starts_n {
            progress.step("cold image", i, plan.starts_n);
            let name = format!("bench-image-cold-{i}");
            put_image_action(&mut c, &name).await?;
            tokio::time::sleep(SETTLE).await;
            took.push(api::invoke(&mut c, &name).await?);
            tokio::time::sleep(SETTLE).await;
            bare.push(floor.start_once(&format!("floor-cold-{i}")).await?);
        }
        anyhow::Ok((took, bare))
    }
    .await;
    let stop_cold = daemon::stop_row(ws, cold, &state, plan).await?;
    let (cold_took, bare) = phase?;
    let bare = bare.summary();
    progress.phase(&format!(
        "image floor: runc run + proxy start + /init + /run p50 {:.1} ms",
        bare.p50_us / 1000.0
    ));
    let bare_label = "runc run + proxy start + init + run";
    let main = Row::latency("cold start image", &cold_took.summary())
        .floor(bare_label, bare.p50_us / 1000.0);
    let ratio = main.ratio;
    rows.push(main.target("<= 1.2x floor", ratio <= 1.2));
    rows.push(Row::latency(
        "  floor: bare runc run of the image root until the proxy answers, + /init + /run",
        &bare,
    ));
    rows.push(stop_cold);

    // Prewarmed and warm: the image's stem cell.
    let cfg = daemon::config_dir(ws, "config-image", &invoker_toml_image())?;
    let (d, addr, state) =
        crate::start_standalone_with(ws, "image", data_dir, &cfg, &[PREWARM_RUNTIME], progress)
            .await?;
    let phase = async {
        let mut c = api::connect(addr).await?;
        let (mut took, mut refill) = (Samples::default(), Samples::default());
        for i in 0..plan.starts_n {
            progress.step("prewarmed image", i, plan.starts_n);
            let name = format!("bench-image-pre-{i}");
            put_image_action(&mut c, &name).await?;
            tokio::time::sleep(SETTLE).await;
            let t = Instant::now();
            took.push(api::invoke(&mut c, &name).await?);
            let (seen, _) = d
                .log
                .wait_for(t, REFILL_TIMEOUT, "image prewarm refill", |l| {
                    daemon::is_prewarmed(l, PREWARM_RUNTIME)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}; {}", d.context()))?;
            refill.push(seen - t);
        }

        let name = "bench-image-warm";
        put_image_action(&mut c, name).await?;
        let mut proxy = floor.start_warm("floor-warm").await?;
        for _ in 0..plan.warm_warmup {
            api::invoke(&mut c, name).await?;
            proxy.run().await?;
        }
        let (mut warm, mut direct) = (Samples::default(), Samples::default());
        for i in 0..plan.warm_n {
            if i % 100 == 0 {
                progress.step("warm image", i, plan.warm_n);
            }
            warm.push(api::invoke(&mut c, name).await?);
            direct.push(proxy.run().await?);
        }
        proxy.stop().await;
        anyhow::Ok((took, refill, warm, direct))
    }
    .await;
    let stop = daemon::stop_row(ws, d, &state, plan).await?;
    let (pre, refill, warm, direct) = phase?;
    let direct = direct.summary();
    progress.phase(&format!(
        "image floor: direct /run round trip in the container's netns p50 {:.3} ms",
        direct.p50_us / 1000.0
    ));
    let main = Row::latency("prewarmed start image", &pre.summary())
        .floor(bare_label, bare.p50_us / 1000.0);
    let ratio = main.ratio;
    rows.push(
        main.target("< floor (container and proxy already up)", ratio < 1.0)
            .note("the image's stem cell: only /init and /run remain"),
    );
    rows.push(Row::latency("  prewarm refill image (request to ready)", &refill.summary()));
    let direct_p50 = direct.p50_us / 1000.0;
    let main = Row::latency("warm invoke image", &warm.summary())
        .floor("direct /run to the proxy", direct_p50);
    let p50 = main.p50;
    rows.push(main.target("<= direct /run + 5 ms", p50 <= direct_p50 + 5.0));
    rows.push(Row::latency(
        "  floor: /run round trip to the proxy from its network namespace (kept connection)",
        &direct,
    ));
    rows.push(stop);
    Ok(rows)
}

/// The floors without hearth beside them (when the image could not be imported).
async fn floors_alone(floor: &Floor, plan: &Plan, progress: &Progress) -> anyhow::Result<Vec<Row>> {
    floor.start_once("floor-cold-warmup").await?;
    let mut bare = Samples::default();
    for i in 0..plan.starts_n {
        progress.step("image floor: bare start", i, plan.starts_n);
        tokio::time::sleep(SETTLE).await;
        bare.push(floor.start_once(&format!("floor-cold-{i}")).await?);
    }
    let mut proxy = floor.start_warm("floor-warm").await?;
    let mut direct = Samples::default();
    let result = async {
        for _ in 0..plan.warm_warmup {
            proxy.run().await?;
        }
        for _ in 0..plan.warm_n {
            direct.push(proxy.run().await?);
        }
        anyhow::Ok(())
    }
    .await;
    proxy.stop().await;
    result?;
    Ok(vec![
        Row::latency(
            "  floor: bare runc run of the image root until the proxy answers, + /init + /run",
            &bare.summary(),
        ),
        Row::latency(
            "  floor: /run round trip to the proxy from its network namespace (kept connection)",
            &direct.summary(),
        ),
    ])
}

/// The test image's folder (tests/images/build.sh: built once per content, cached).
fn test_image() -> anyhow::Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh");
    let out =
        Command::new(&script).output().with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `hearthd admin --data-dir DATA image import IMAGE <dir>/image.oci.tar`, as an operator does.
fn import(data_dir: &Path, image_dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let archive = image_dir.join("image.oci.tar");
    let archive = archive.to_str().context("the image archive's path is not UTF-8")?;
    daemon::admin(data_dir, &["image", "import", IMAGE, archive])?;
    Ok(())
}

/// PUT a blackbox action of the image whose code the proxy takes in /init.
async fn put_image_action(c: &mut crate::http::Client, name: &str) -> anyhow::Result<()> {
    let body = json!({
        "exec": {"kind": "blackbox", "image": IMAGE, "code": api::noop_code(Runtime::Python, name)},
        "limits": {"memory": MEMORY_MB},
    });
    let path = format!("/api/v1/namespaces/_/actions/{name}?overwrite=true");
    let (status, resp, _) = c.request("PUT", &path, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT image action {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(())
}

/// The floor's runc bundle: `umoci unpack` of the test image, its runtime config kept but for
/// what a detached run and our cgroup parent need.
struct Floor {
    bundle: PathBuf,
    root: PathBuf,
    config: serde_json::Value,
}

impl Floor {
    fn new(ws: &Arc<Workspace>, image_dir: &Path) -> anyhow::Result<Self> {
        let bundle = ws.path("image-bundle");
        let out = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:1", image_dir.join("oci").display()))
            .arg(&bundle)
            .output()
            .context("running umoci unpack")?;
        if !out.status.success() {
            bail!("umoci unpack: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let path = bundle.join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        config["process"]["terminal"] = json!(false);
        // A network namespace of its own, loopback only (runc brings lo up), as hearth's.
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .context("the unpacked config has no linux.namespaces")?;
        if !namespaces.iter().any(|n| n["type"] == "network") {
            namespaces.push(json!({"type": "network"}));
        }
        let root = ws.run_path("runc-image");
        ws.track_runc_root(&root, CGROUP_PARENT, true);
        Ok(Self { bundle, root, config })
    }

    /// Starts a container of the image detached and returns its pid, once runc returns.
    fn runc_run(&self, id: &str) -> anyhow::Result<i32> {
        let mut config = self.config.clone();
        config["linux"]["cgroupsPath"] = json!(format!("/{CGROUP_PARENT}/{id}"));
        fs::write(self.bundle.join("config.json"), config.to_string())?;
        let pid_file = self.bundle.join(format!("{id}.pid"));
        let status = Command::new(RUNC)
            .arg("--root")
            .arg(&self.root)
            .args(["run", "--detach", "--bundle"])
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running runc run")?;
        if !status.success() {
            bail!("runc run {id}: {status}");
        }
        let pid = fs::read_to_string(&pid_file)?.trim().parse()?;
        let _ = fs::remove_file(&pid_file);
        Ok(pid)
    }

    fn delete(&self, id: &str) {
        let _ = Command::new(RUNC)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", id])
            .output();
    }

    /// One cold floor sample: runc run, the proxy's port answering, /init, /run; then delete.
    async fn start_once(&self, id: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let result = async {
            let pid = self.runc_run(id)?;
            let mut proxy = Proxy::enter(pid).await?;
            proxy.init(id).await?;
            proxy.run().await?;
            let took = t.elapsed();
            proxy.stop().await;
            anyhow::Ok(took)
        }
        .await;
        self.delete(id);
        result.with_context(|| format!("image floor {id}"))
    }

    /// A started and initialised proxy for warm round trips; [`Proxy::stop`] then delete.
    async fn start_warm(&self, id: &str) -> anyhow::Result<WarmProxy<'_>> {
        let result = async {
            let pid = self.runc_run(id)?;
            let mut proxy = Proxy::enter(pid).await?;
            proxy.init(id).await?;
            anyhow::Ok(proxy)
        }
        .await;
        match result {
            Ok(proxy) => Ok(WarmProxy { floor: self, id: id.to_owned(), proxy }),
            Err(e) => {
                self.delete(id);
                Err(e.context(format!("image floor {id}")))
            }
        }
    }
}

struct WarmProxy<'a> {
    floor: &'a Floor,
    id: String,
    proxy: Proxy,
}

impl WarmProxy<'_> {
    async fn run(&mut self) -> anyhow::Result<Duration> {
        self.proxy.run().await
    }

    async fn stop(self) {
        self.proxy.stop().await;
        self.floor.delete(&self.id);
    }
}

/// A thread inside a container's network namespace holding one connection to its proxy; the
/// async side sends it requests and awaits the replies.
struct Proxy {
    requests: mpsc::Sender<Request>,
    thread: std::thread::JoinHandle<()>,
}

type Request = (Vec<u8>, tokio::sync::oneshot::Sender<io::Result<Duration>>);

impl Proxy {
    /// Enters `pid`'s network namespace on a new thread and connects to the proxy, retrying
    /// until its port answers.
    async fn enter(pid: i32) -> anyhow::Result<Self> {
        let (requests, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
        let thread = std::thread::spawn(move || {
            let stream = match connect_in_netns(pid) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            serve(stream, rx);
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self { requests, thread }),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("connecting to the proxy")),
            Err(_) => bail!("the proxy's thread ended"),
        }
    }

    async fn post(&mut self, path: &str, body: serde_json::Value) -> anyhow::Result<Duration> {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests
            .send((request.into_bytes(), tx))
            .map_err(|_| anyhow::anyhow!("the proxy's thread ended"))?;
        Ok(rx.await.map_err(|_| anyhow::anyhow!("the proxy's thread ended"))??)
    }

    async fn init(&mut self, tag: &str) -> anyhow::Result<Duration> {
        self.post(
            "/init",
            json!({"value": {"name": tag, "main": "main", "code": api::noop_code(Runtime::Python, tag), "binary": false}}),
        )
        .await
        .context("POST /init")
    }

    async fn run(&mut self) -> anyhow::Result<Duration> {
        self.post("/run", json!({"value": {}, "activation_id": "0", "action_name": "floor"}))
            .await
            .context("POST /run")
    }

    async fn stop(self) {
        drop(self.requests);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// Joins `pid`'s network namespace (this thread only) and connects to the proxy's port there.
fn connect_in_netns(pid: i32) -> io::Result<TcpStream> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace; the
    // thread is ours and does nothing else afterwards but talk to the proxy.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], PROXY_PORT));
    let deadline = Instant::now() + PROXY_START_TIMEOUT;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_micros(500)),
        }
    }
}

/// Sends each request on the kept connection and times the round trip to the end of the reply.
fn serve(stream: TcpStream, rx: mpsc::Receiver<Request>) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    for (request, reply) in rx {
        let t = Instant::now();
        let result =
            writer.write_all(&request).and_then(|()| read_reply(&mut reader)).map(|()| t.elapsed());
        let _ = reply.send(result);
    }
}

/// Reads one HTTP/1.1 reply with a Content-Length body; a status other than 200 is an error.
fn read_reply(reader: &mut BufReader<TcpStream>) -> io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let ok = line.split_whitespace().nth(1) == Some("200");
    let status = line.trim().to_owned();
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the proxy closed"));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length =
                    value.trim().parse().map_err(|_| io::Error::other("bad Content-Length"))?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the proxy answered {status}: {}",
            String::from_utf8_lossy(&body)
        )))
    }
}
