//! Tenant fairness (issue 17): namespace B's warm invoke while namespace A floods the same
//! `hearthd standalone`, beside B's warm invoke alone, in the same run.
//!
//! A (the guest namespace) floods with [`FLOOD_CLIENTS`] concurrent blocking invokes of its
//! own 200 ms sleep action at 256 MB: more than the default pool's budget holds containers
//! (2048 MB / 256 MB = 8), so most of A's activations wait in the invoker's fair queue, and
//! more than the controller's default concurrent-invocations limit (100), so the rest are
//! refused with 429 before dispatch. A refused client waits [`REFUSED_BACKOFF`] and connects again (hearthd closes the connection after a 429) before it tries
//! again, as a client that honours a 429 does, so the flood is A's admitted work and not a
//! spin on refusals. B is a namespace made with `hearthd admin namespace create` on the running
//! server; its action is a python no-op at 256 MB, invoked back to back on one keep-alive
//! connection.
//!
//! The phases alternate, "B alone" (A's clients paused and every one of A's activations
//! finished) and "B under flood", so that the machine's other load hits both alike. Each phase
//! starts with a few unmeasured invokes of B. Each sample is a blocking invoke returning the
//! whole activation, so that the row can say why it took what it took: whether it was a cold
//! start (`initTime`) and how long it waited for a container (`waitTime`).
//!
//! A's clients run on a thread and tokio runtime of their own, so that B's measuring client is
//! never delayed behind A's responses in the harness itself: what B sees is the server's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth::model::{Runtime, GUEST_KEY};
use serde_json::{json, Value};

use crate::daemon;
use crate::http::Client;
use crate::procfs::CpuUse;
use crate::report::Row;
use crate::stats::{Samples, Summary};
use crate::workspace::Workspace;
use crate::{api, Plan, Progress};

/// A's concurrent clients: past the default concurrent-invocations limit (100), and far past
/// the 8 containers of 256 MB the default budget holds.
const FLOOD_CLIENTS: usize = 128;
/// How long A's action runs.
const SLEEP_MS: u64 = 200;
/// How long a refused client of A waits before its next invoke.
const REFUSED_BACKOFF: Duration = Duration::from_millis(100);
/// Both actions' memory (the stem cells' size).
const MEMORY_MB: u64 = 256;
/// Namespace B, made with `hearthd admin`.
const NAMESPACE_B: &str = "bench-tenant-b";
/// After A's clients start, before B's samples: time for the pool to fill with A's containers
/// and A's queue to form.
const FLOOD_RAMP: Duration = Duration::from_secs(1);
/// Longest A's flood may take to drain once paused (a queue of ~100 x 200 ms on 8 containers
/// is ~2.5 s).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// After the drain, before B alone: the pool's background work (the prewarm filler evicting
/// idle containers to refill its stem cells, teardowns) settles.
const SETTLE: Duration = Duration::from_millis(500);
/// Unmeasured invokes of B at the start of each phase.
const PHASE_WARMUP: usize = 5;

/// Rounds (each a "B alone" and a "B under flood" phase), samples of B per phase and the
/// longest a phase may last (under flood a sample may be a cold start).
fn shape(plan: &Plan) -> (usize, usize, Duration) {
    if plan.quick {
        (2, 100, Duration::from_secs(3))
    } else {
        (4, 400, Duration::from_secs(8))
    }
}

/// The fairness rows: B under A's flood beside B alone.
pub async fn run(
    ws: &Arc<Workspace>,
    data_dir: &Path,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let cfg = daemon::config_dir(ws, "config-fairness", &crate::invoker_toml(2048))?;
    let (d, addr, state) =
        crate::start_standalone(ws, "fairness", data_dir, &cfg, progress).await?;
    let phase = async {
        progress.phase(&format!("fairness: hearthd admin namespace create {NAMESPACE_B}"));
        let key_b = create_namespace(data_dir, NAMESPACE_B)?;
        let mut a = Client::connect(addr, Some(GUEST_KEY)).await.context("connecting as A")?;
        let mut b = Client::connect(addr, Some(&key_b)).await.context("connecting as B")?;
        let sleepy = format!(
            "import time\ndef main(args):\n    time.sleep({})\n    return {{'a': True}}\n",
            SLEEP_MS as f64 / 1000.0
        );
        put(&mut a, "bench-fair-a", &sleepy).await?;
        put(&mut b, "bench-fair-b", "def main(args):\n    return {'b': True}\n").await?;
        let flood = Flood::start(addr)?;
        let measured = measure(d.pid, &mut b, &flood, plan, progress).await;
        let counts = flood.stop();
        anyhow::Ok((measured?, counts))
    }
    .await;
    let stop = daemon::stop_row(ws, d, &state, plan).await?;
    let (m, counts) = phase?;
    let alone = m.alone.samples.summary();
    let flooded = m.flooded.samples.summary();
    if alone.n == 0 || flooded.n == 0 {
        bail!("fairness: no samples of B ({} alone, {} under flood)", alone.n, flooded.n);
    }
    let main = Row::latency("warm invoke of namespace B while A floods", &flooded)
        .floor("B alone", alone.p50_us / 1000.0);
    let ratio = main.ratio;
    let note = format!(
        "A: {FLOOD_CLIENTS} clients of a {SLEEP_MS} ms sleep action at {MEMORY_MB} MB (pool 2048 MB: 8 containers; \
         controller limit 100 concurrent), a refused client connects again after {REFUSED_BACKOFF:?} (a 429 closes its connection); A got (all phases, {:.1} s of B's samples under flood) \
         {} x 200, {} x 202, {} x 429, {} other{}{}. B under flood: {}; B alone: {}. hearthd CPU {:.0}% under flood, {:.0}% alone",
        m.flooded.wall.as_secs_f64(),
        counts.ok,
        counts.accepted,
        counts.refused,
        counts.other,
        if counts.refusal.is_empty() { String::new() } else { format!(" (429: {:?})", counts.refusal) },
        if counts.error.is_empty() { String::new() } else { format!(" (other: {})", counts.error) },
        m.flooded.describe(),
        m.alone.describe(),
        m.flooded.cpu_percent(),
        m.alone.cpu_percent(),
    );
    Ok(vec![
        main.target("<= 1.5x B alone (issue 17)", ratio <= 1.5).note(note),
        Row::latency("  namespace B alone (A paused and drained), same run", &alone),
        Row::latency("  B's waitTime under flood (record annotation)", &m.flooded.wait_summary()),
        stop,
    ])
}

/// `hearthd admin --data-dir DATA namespace create NAME` on the running server; returns the
/// key it printed.
fn create_namespace(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let key = daemon::admin(data_dir, &["namespace", "create", name])?;
    hearth::model::AuthKey::parse(&key)
        .map_err(|e| anyhow::anyhow!("hearthd admin printed {key:?}, not a key: {e}"))?;
    Ok(key)
}

async fn put(c: &mut Client, name: &str, code: &str) -> anyhow::Result<()> {
    api::put_action(c, name, Runtime::Python, code, MEMORY_MB).await
}

/// What one kind of phase measured over all rounds.
#[derive(Default)]
struct Phase {
    samples: Samples,
    /// `waitTime` of each sample, in ms as the record has it.
    wait_ms: Vec<f64>,
    /// Samples that were cold starts (the record has `initTime`).
    cold: usize,
    wall: Duration,
    cpu: Duration,
}

impl Phase {
    fn describe(&self) -> String {
        let w = self.wait_summary();
        format!(
            "{} samples, {} cold starts, waitTime p50 {:.0} ms p99 {:.0} ms",
            self.samples.summary().n,
            self.cold,
            w.p50_us / 1000.0,
            w.p99_us / 1000.0
        )
    }

    /// `waitTime` percentiles, in µs so that the row shows them in ms.
    fn wait_summary(&self) -> Summary {
        Summary::of(self.wait_ms.iter().map(|ms| ms * 1000.0).collect())
    }

    fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

struct Measured {
    alone: Phase,
    flooded: Phase,
}

/// The alternating phases.
async fn measure(
    pid: i32,
    b: &mut Client,
    flood: &Flood,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Measured> {
    let (rounds, per_phase, longest) = shape(plan);
    let mut m = Measured { alone: Phase::default(), flooded: Phase::default() };
    for round in 0..rounds {
        // B alone: A paused, all of A's activations answered, the pool settled.
        flood.pause();
        flood.drained(DRAIN_TIMEOUT).await?;
        tokio::time::sleep(SETTLE).await;
        progress.step("fairness: B alone", round, rounds);
        sample_phase(pid, b, &mut m.alone, per_phase, longest).await?;
        // B under flood.
        flood.resume();
        tokio::time::sleep(FLOOD_RAMP).await;
        progress.step("fairness: B while A floods", round, rounds);
        sample_phase(pid, b, &mut m.flooded, per_phase, longest).await?;
    }
    flood.pause();
    Ok(m)
}

async fn sample_phase(
    pid: i32,
    b: &mut Client,
    phase: &mut Phase,
    n: usize,
    longest: Duration,
) -> anyhow::Result<()> {
    for _ in 0..PHASE_WARMUP {
        invoke_b(b).await?;
    }
    let cpu_before = CpuUse::of(pid)?;
    let t = Instant::now();
    for _ in 0..n {
        let (took, act) = invoke_b(b).await?;
        phase.samples.push(took);
        let annotation = |key: &str| {
            act["annotations"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == key))
                .map(|kv| kv["value"].clone())
        };
        if let Some(w) = annotation("waitTime").and_then(|w| w.as_f64()) {
            phase.wait_ms.push(w);
        }
        if annotation("initTime").is_some() {
            phase.cold += 1;
        }
        if t.elapsed() >= longest {
            break;
        }
    }
    phase.wall += t.elapsed();
    let cpu_after = CpuUse::of(pid)?;
    phase.cpu +=
        (cpu_after.user + cpu_after.system).saturating_sub(cpu_before.user + cpu_before.system);
    Ok(())
}

/// One blocking invoke of B's action; the activation it returned.
async fn invoke_b(b: &mut Client) -> anyhow::Result<(Duration, Value)> {
    let path = "/api/v1/namespaces/_/actions/bench-fair-b?blocking=true";
    let (status, resp, took) = b.request("POST", path, b"{}").await?;
    if status != 200 {
        bail!("B's invoke answered {status}: {}", String::from_utf8_lossy(&resp));
    }
    let act: Value = serde_json::from_slice(&resp).context("B's activation is not JSON")?;
    if act["response"]["result"] != json!({"b": true}) {
        bail!("B's activation did not return its result: {act}");
    }
    Ok((took, act))
}

/// How A's invokes were answered.
#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    accepted: u64,
    refused: u64,
    other: u64,
    /// One 429 body, to show which limit refused it.
    refusal: String,
    /// The first other answer or error.
    error: String,
}

#[derive(Default)]
struct FloodState {
    on: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    ok: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    refusal: Mutex<String>,
    error: Mutex<String>,
}

/// A's clients, on a thread of their own (see the module doc).
struct Flood {
    state: Arc<FloodState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Starts A's clients, paused.
    fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let state = Arc::new(FloodState::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the flood's tokio runtime")?;
        let s = state.clone();
        let thread = std::thread::Builder::new()
            .name("bench-flood".into())
            .spawn(move || {
                rt.block_on(async move {
                    let clients: Vec<_> =
                        (0..FLOOD_CLIENTS).map(|_| tokio::spawn(client(addr, s.clone()))).collect();
                    for c in clients {
                        let _ = c.await;
                    }
                })
            })
            .context("starting the flood's thread")?;
        Ok(Self { state, thread: Some(thread) })
    }

    fn pause(&self) {
        self.state.on.store(false, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.state.on.store(true, Ordering::SeqCst);
    }

    /// Waits until none of A's invokes is in flight.
    async fn drained(&self, timeout: Duration) -> anyhow::Result<()> {
        // A client that saw the flood on just before the pause has yet to count its invoke.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let deadline = Instant::now() + timeout;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                bail!(
                    "A's flood did not drain within {timeout:?}: {} invokes in flight",
                    self.state.in_flight.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the clients (each finishes its invoke in flight) and returns the counts.
    fn stop(mut self) -> Counts {
        self.shutdown();
        let s = &self.state;
        let text = |m: &Mutex<String>| m.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Counts {
            ok: s.ok.load(Ordering::SeqCst),
            accepted: s.accepted.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            other: s.other.load(Ordering::SeqCst),
            refusal: text(&s.refusal),
            error: text(&s.error),
        }
    }

    fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flood {
    /// Also on an error of the measuring side: the clients end before the daemon is stopped.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One of A's clients: back-to-back blocking invokes on its own connection while the flood is
/// on, until stopped. A 429 leaves the request's body unread, so hearthd closes the connection
/// after it (issue 17: no client may reuse a socket with an unread body behind it): the client
/// waits [`REFUSED_BACKOFF`] and connects again, as OpenWhisk's clients do. A connection that
/// fails otherwise is counted and made again after the same pause.
async fn client(addr: SocketAddr, s: Arc<FloodState>) {
    let record = |m: &Mutex<String>, text: String| {
        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            *m = text;
        }
    };
    let path = "/api/v1/namespaces/_/actions/bench-fair-a?blocking=true&result=true";
    let mut conn: Option<Client> = None;
    while !s.stop.load(Ordering::SeqCst) {
        if !s.on.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr, Some(GUEST_KEY)).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    s.other.fetch_add(1, Ordering::SeqCst);
                    record(&s.error, format!("connecting: {e:#}"));
                    tokio::time::sleep(REFUSED_BACKOFF).await;
                    continue;
                }
            },
        };
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        let r = c.request("POST", path, b"{}").await;
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok((200, _, _)) => {
                s.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok((202, _, _)) => {
                s.accepted.fetch_add(1, Ordering::SeqCst);
            }
            Ok((429, body, _)) => {
                s.refused.fetch_add(1, Ordering::SeqCst);
                let msg = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                record(&s.refusal, msg);
                conn = None;
                tokio::time::sleep(REFUSED_BACKOFF).await;
            }
            Ok((status, body, _)) => {
                s.other.fetch_add(1, Ordering::SeqCst);
                record(&s.error, format!("{status} {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => {
                s.other.fetch_add(1, Ordering::SeqCst);
                record(&s.error, format!("{e:#}"));
                conn = None;
                tokio::time::sleep(REFUSED_BACKOFF).await;
            }
        }
    }
}
