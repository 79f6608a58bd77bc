//! Several hosts over Kafka, as processes: two `hearthd controller --bus` and three
//! `hearthd invoker --bus` (distinct data and state dirs; each controller on its own loopback
//! address) around one real tansu broker (memory storage). Needs root, runc and the broker
//! (`scripts/build-broker.sh`, or `TANSU=path`); fails, never skips, when one is missing.
//!
//! One test, in phases, so the cluster starts once (cold containers cost seconds on 2 cores):
//! entities replicate (namespace and key made with `hearthd admin` on controller 1's data dir,
//! actions created on controller 1 and invoked through controller 2); invokes spread over the
//! invokers and each action stays on its home invoker (the `invoker` annotation); warm invoke
//! latency against the broker's own round trip (printed, not asserted); two controllers
//! updating one action at the same moment, again and again, and every host ending with the
//! same revision and code, whose output both controllers' invokes return; an invoker killed
//! with -9 under load with a record for every accepted activation; a broker restart survived,
//! and a controller and an invoker started afterwards (from empty data dirs) learning the
//! entities written before it (the controllers re-publish them); the controllers counting
//! each other (each schedules 1/n of every invoker's memory); activation records readable and
//! listed alike through both controllers, also after one was replaced by a fresh one with an
//! empty data dir; a namespace's limit override set with `hearthd admin` on controller 1's
//! data dir enforced by controller 2, and cleared the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod broker;
use broker::{p50, Broker};
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::*;

/// The cluster's checks poll every 100 ms: a ping or an entity record takes that order of time.
fn wait<T>(what: &str, within: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, within, Duration::from_millis(100), f)
}
use serde_json::json;

/// How long a silent invoker stays "up" for the controllers here (10 s by default): keeps
/// the kill -9 phase short.
const OFFLINE_AFTER: &str = "2s";

struct Host {
    daemon: Daemon,
    state: Option<PathBuf>,
}

/// Controller `cN` listens on its own loopback address, 127.0.0.(10+N), as a host of its own
/// would (a free port there; the broker stays on 127.0.0.1).
fn start_controller(root: &Path, brokers: &str, id: &str) -> (Host, SocketAddr) {
    let n: u8 = id.trim_start_matches('c').parse().unwrap();
    let host = std::net::Ipv4Addr::new(127, 0, 0, 10 + n);
    let port = std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
    let addr = SocketAddr::from((host, port));
    (start_controller_at(root, brokers, id, addr), addr)
}

/// Controller `id` on `addr`, its data in `<root>/<id>-data`.
fn start_controller_at(root: &Path, brokers: &str, id: &str, addr: SocketAddr) -> Host {
    let conf = root.join(format!("{id}-conf"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("controller.toml"),
        format!("invoker_offline_after = \"{OFFLINE_AFTER}\"\n"),
    )
    .unwrap();
    let args = [
        &"controller" as &dyn AsRef<OsStr>,
        &"--listen",
        &addr.to_string(),
        &"--bus",
        &format!("kafka://{brokers}"),
        &"--id",
        &id,
        &"--data-dir",
        &root.join(format!("{id}-data")),
        &"--config-dir",
        &conf,
    ];
    let daemon = Daemon::spawn(args, &root.join(format!("{id}.log")), listening(addr));
    Host { daemon, state: None }
}

fn start_invoker(root: &Path, brokers: &str, n: u32) -> Host {
    let conf = root.join(format!("i{n}-conf"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("invoker.toml"), "prewarm = []\nmemory_budget_mb = 512\n").unwrap();
    let state = root.join(format!("i{n}-state"));
    let args = [
        &"invoker" as &dyn AsRef<OsStr>,
        &"--bus",
        &format!("kafka://{brokers}"),
        &"--id",
        &n.to_string(),
        &"--data-dir",
        &root.join(format!("i{n}-data")),
        &"--state-dir",
        &state,
        &"--config-dir",
        &conf,
    ];
    let log = root.join(format!("i{n}.log"));
    let daemon = Daemon::spawn(args, &log, ready_once_more(&log));
    Host { daemon, state: Some(state) }
}

/// Ready once the invoker's log says "invoker ready" once more than it does now (the log
/// is appended to by every run of the invoker).
fn ready_once_more(log: &Path) -> impl Fn() -> bool {
    let count = |log: &Path| {
        std::fs::read_to_string(log).unwrap_or_default().matches("invoker ready").count()
    };
    let (log, before) = (log.to_owned(), count(log));
    move || count(&log) > before
}

fn invoker_of(act: &serde_json::Value) -> String {
    annotation(act, "invoker")
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no invoker annotation: {act}"))
        .to_owned()
}

/// The broker's own produce-to-consume round trip, from this synchronous test.
fn broker_round_trips(brokers: &str, n: usize) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(broker::round_trips(brokers, n))
}

/// An action whose output names the update that made it.
fn race_code(tag: &str) -> String {
    format!("def main(a):\n    return {{'v': '{tag}'}}\n")
}

/// The revision and code of `team/<name>` in the store of a running host (LMDB lets this
/// process read it alongside the daemon).
fn held(store: &hearth::store::Store, name: &str) -> Option<(u64, String)> {
    use hearth::model::{EntityName, FullyQualifiedName};
    let fqn = FullyQualifiedName::new(
        EntityName::parse("team").unwrap(),
        EntityName::parse(name).unwrap(),
    );
    let (meta, code) = store.get_action_with_code(&fqn).unwrap()?;
    Some((meta.revision, String::from_utf8(code).unwrap()))
}

/// A name in `team` whose home invoker is `home` once the cluster has `slots` invoker slots.
fn name_with_home(prefix: &str, home: u64, slots: u64) -> String {
    use hearth::balancer::sharding::action_hash;
    use hearth::model::{EntityName, FullyQualifiedName};
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| {
            let fqn = FullyQualifiedName::new(
                EntityName::parse("team").unwrap(),
                EntityName::parse(n).unwrap(),
            );
            action_hash(&fqn) % slots == home
        })
        .unwrap()
}

/// Reads `topic` from its beginning to where it ends now with a plain consumer, handing each
/// message to `f`: what every host was told, in topic order.
fn read_topic(brokers: &str, topic: &str, mut f: impl FnMut(&rdkafka::message::BorrowedMessage)) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let c: BaseConsumer = hearth::bus::kafka::consumer_settings(
        brokers,
        "hearth.test.reader",
        false,
        hearth::bus::kafka::Fetch::Background,
    )
    .set("fetch.message.max.bytes", "60000000")
    .create()
    .unwrap();
    let (_, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(5)).unwrap();
    if high == 0 {
        return;
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "{topic} was not read to {high}");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.unwrap();
        f(&m);
        if m.offset() + 1 >= high {
            return;
        }
    }
}

/// Every (revision, code) the entity topic holds for `key`, in topic order.
fn topic_revisions(brokers: &str, key: &str) -> Vec<(u64, String)> {
    use rdkafka::message::Message;
    let mut out = Vec::new();
    read_topic(brokers, hearth::bus::kafka::ENTITY_TOPIC, |m| {
        if m.key() == Some(key.as_bytes()) {
            // [u32 len][header][u32 len][record][code] (src/store/feed.rs)
            let v = m.payload().unwrap();
            let take = |b: &[u8]| {
                let n = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
                (b[4..4 + n].to_vec(), b[4 + n..].to_vec())
            };
            let (_, rest) = take(v);
            let (record, code) = take(&rest);
            let meta: serde_json::Value = serde_json::from_slice(&record).unwrap();
            out.push((meta["revision"].as_u64().unwrap(), String::from_utf8(code).unwrap()));
        }
    });
    out
}

/// Where `needle` occurs last in `text` (0: nowhere).
fn last_at(text: &str, needle: &str) -> usize {
    text.rfind(needle).map_or(0, |i| i + 1)
}

const ECHO: &str = "def main(a):\n    return {'n': a.get('n', 0)}\n";
const SLOW: &str = "import time\ndef main(a):\n    time.sleep(0.4)\n    return {'i': a.get('i')}\n";

/// The cluster the phases share: a broker, two controllers on hosts of their own, three
/// invokers and a namespace's key. Fields drop in order: the hosts stop before the broker,
/// and the temp dir with their data and logs goes last.
struct Cluster {
    k1: Client,
    k2: Client,
    c1: Host,
    a1: SocketAddr,
    c2: Host,
    a2: SocketAddr,
    invokers: Vec<Host>,
    /// The echo actions the first phase creates.
    names: Vec<String>,
    key: String,
    broker: Broker,
    brokers: String,
    tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts the broker and the hosts, with a namespace and key made offline on controller
    /// 1's data dir (published when it joins).
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let broker = Broker::start();
        let brokers = broker.addr();
        let key = admin_namespace(&root.join("c1-data"), "team");
        let (c1, a1) = start_controller(root, &brokers, "c1");
        let (c2, a2) = start_controller(root, &brokers, "c2");
        let invokers: Vec<Host> = (0..3).map(|n| start_invoker(root, &brokers, n)).collect();
        let (k1, k2) = (Client::new(a1, &key), Client::new(a2, &key));
        let names = (0..6).map(|i| format!("echo{i}")).collect();
        Self { k1, k2, c1, a1, c2, a2, invokers, names, key, broker, brokers, tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }
}

/// Entities: the key reaches controller 2; actions created on 1 are visible on 2. Returns
/// how long the creates took to become visible there.
fn phase_entities(cl: &Cluster) -> Duration {
    wait("the key authenticates on controller 2", Duration::from_secs(15), || {
        (cl.k2.req("GET", "/api/v1/namespaces/_/actions", b"").status == 200).then_some(())
    });
    let t_entities = Instant::now();
    for n in &cl.names {
        cl.k1.put_action(n, "python:3", ECHO, Some(json!({"memory": 128})));
    }
    cl.k1.put_action("slow", "python:3", SLOW, Some(json!({"memory": 128})));
    for n in cl.names.iter().chain(std::iter::once(&"slow".to_string())) {
        wait(&format!("{n} visible on controller 2"), Duration::from_secs(10), || {
            (cl.k2.req("GET", &format!("/api/v1/namespaces/_/actions/{n}"), b"").status == 200)
                .then_some(())
        });
    }
    t_entities.elapsed()
}

fn phase_invokers_up(cl: &Cluster) {
    // Wait until both controllers see the three invokers (their first pings), as OpenWhisk's
    // `GET /invokers` shows them: each learns of a new invoker at its own moment, and until
    // both know all three, an action's home may differ between them.
    let all_up = json!({"invoker0": "up", "invoker1": "up", "invoker2": "up"});
    for (who, k) in [("controller 1", &cl.k1), ("controller 2", &cl.k2)] {
        wait(&format!("{who} sees three invokers up"), Duration::from_secs(30), || {
            (k.get("/invokers").json() == all_up).then_some(())
        });
        assert_eq!(k.get("/invokers/healthy/count").json(), json!(3));
    }
}

/// Packages travel in the entity topic as actions do: a package, an action in it and a
/// binding made on controller 1 are read and run through controller 2, with the merged
/// parameters and the record's path; the whisk.system catalog runs there too.
fn phase_packages(cl: &Cluster) {
    let created = [
        (
            "/api/v1/namespaces/_/packages/tools",
            json!({"parameters": [{"key": "n", "value": "package"}, {"key": "p", "value": 1}]}),
        ),
        (
            "/api/v1/namespaces/_/actions/tools/echo",
            json!({"exec": {"kind": "python:3", "code": "def main(a):\n    return a\n"}, "limits": {"memory": 128}}),
        ),
        (
            "/api/v1/namespaces/_/packages/bound",
            json!({"binding": {"namespace": "team", "name": "tools"}, "parameters": [{"key": "n", "value": "binding"}]}),
        ),
    ];
    for (path, body) in created {
        let r = cl.k1.json("PUT", path, body);
        assert_eq!(r.status, 200, "{path} on controller 1: {}", r.text());
    }
    wait("the binding visible on controller 2", Duration::from_secs(10), || {
        let r = cl.k2.get("/api/v1/namespaces/_/packages/bound");
        (r.status == 200 && r.json()["actions"][0]["name"] == "echo").then_some(())
    });
    let r = cl.k2.json(
        "POST",
        "/api/v1/namespaces/_/actions/tools/echo?blocking=true",
        json!({"q": 1}),
    );
    assert_eq!(r.status, 200, "tools/echo through controller 2: {}", r.text());
    assert_eq!(r.json()["response"]["result"], json!({"n": "package", "p": 1, "q": 1}));
    assert_eq!(annotation(&r.json(), "path"), Some(&json!("team/tools/echo")));
    let r = cl.k2.json("POST", "/api/v1/namespaces/_/actions/bound/echo?blocking=true", json!({}));
    assert_eq!(r.json()["response"]["result"], json!({"n": "binding", "p": 1}), "{}", r.text());
    assert_eq!(annotation(&r.json(), "binding"), Some(&json!("team/bound")));
    let r = cl.k2.json(
        "POST",
        "/api/v1/namespaces/whisk.system/actions/utils/echo?blocking=true&result=true",
        json!({"payload": "hi"}),
    );
    assert_eq!((r.status, r.json()), (200, json!({"payload": "hi"})), "{}", r.text());
    // Deleted on controller 2, gone on controller 1.
    for path in [
        "/api/v1/namespaces/_/packages/bound",
        "/api/v1/namespaces/_/actions/tools/echo",
        "/api/v1/namespaces/_/packages/tools",
    ] {
        assert_eq!(cl.k2.req("DELETE", path, b"").status, 200, "{path}");
    }
    wait("the package deleted on controller 1", Duration::from_secs(10), || {
        (cl.k1.get("/api/v1/namespaces/_/packages/tools").status == 404).then_some(())
    });
    println!("packages: created on controller 1, run and deleted through controller 2");
}

fn phase_spread_and_home(cl: &Cluster) {
    // Spread and home: each action's invokes stay on one invoker; together they use several.
    let mut homes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..3 {
        for (i, n) in cl.names.iter().enumerate() {
            let client = if (round + i) % 2 == 0 { &cl.k1 } else { &cl.k2 };
            let r = client.invoke(n, json!({"n": round}));
            assert_eq!(r.status, 200, "invoke {n}: {}", r.text());
            let act = r.json();
            assert_eq!(act["response"]["result"], json!({"n": round}), "{act}");
            homes.entry(n.clone()).or_default().insert(invoker_of(&act));
        }
    }
    for (n, on) in &homes {
        assert_eq!(on.len(), 1, "{n} ran on {on:?}: not kept on its home invoker");
    }
    let used: BTreeSet<&String> = homes.values().flatten().collect();
    assert!(used.len() >= 2, "6 actions all ran on {used:?}: not spread");
    println!("homes: {homes:?}");
}

fn phase_latency(cl: &Cluster, visible: Duration) {
    // Latency: warm invokes end to end (HTTP -> controller 2 -> Kafka -> invoker -> Kafka ->
    // controller 2) against the broker's own produce -> consume round trip, same run.
    let warm: Vec<Duration> = (0..40)
        .map(|i| {
            let t = Instant::now();
            let r = cl.k2.invoke(&cl.names[1], json!({"n": i}));
            assert_eq!(r.status, 200, "{}", r.text());
            t.elapsed()
        })
        .collect();
    let rtt = broker_round_trips(&cl.brokers, 100);
    let (warm50, rtt50) = (p50(warm), p50(rtt));
    println!(
        "MEASURED warm invoke over Kafka p50 {warm50:?}; broker produce->consume p50 {rtt50:?}; \
         target <= {:?}; entities visible on controller 2 {visible:?} after the creates",
        rtt50 * 2 + Duration::from_millis(1)
    );
}

/// An action that logs a line naming its argument.
const LOGS: &str = "def main(a):\n    print('line', a.get('n'))\n    return {'n': a.get('n')}\n";

/// Activations read through the controller that did not accept them: 200 of them spread over
/// both controllers (every other one non-blocking) are read with their logs and results
/// through both, and lists agree; then controller 1 is killed with -9 and a fresh one (an
/// empty data dir, the same id and address) takes its place, catching up from the records
/// topic before it listens: again every record through both, lists identical.
fn phase_records(cl: &mut Cluster) {
    const N: usize = 200;
    cl.k1.put_action("rec", "python:3", LOGS, Some(json!({"memory": 128})));
    wait("rec invoked through controller 2", Duration::from_secs(20), || {
        (cl.k2.invoke("rec", json!({"n": -1})).status == 200).then_some(())
    });
    let t_load = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (k1, k2) = (Client::new(cl.a1, &cl.key), Client::new(cl.a2, &cl.key));
            std::thread::spawn(move || {
                (t..N)
                    .step_by(4)
                    .map(|i| {
                        let client = if i % 2 == 0 { &k1 } else { &k2 };
                        let blocking = (i / 2) % 2 == 0;
                        let path = format!("/api/v1/namespaces/_/actions/rec?blocking={blocking}");
                        let r = client.json("POST", &path, json!({"n": i}));
                        assert_eq!(r.status, if blocking { 200 } else { 202 }, "{}", r.text());
                        (i, r.json()["activationId"].as_str().unwrap().to_owned())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<(usize, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let accepted = t_load.elapsed();
    let read_all = |who: &str, k: &Client| {
        for (i, id) in &ids {
            let rec = k
                .record(id, Duration::from_secs(30))
                .unwrap_or_else(|| panic!("activation {id} ({i}) not readable through {who}"));
            assert_eq!(rec["response"]["result"], json!({"n": i}), "through {who}: {rec}");
            let logs = rec["logs"].as_array().unwrap();
            let line = format!("line {i}");
            assert!(logs.iter().any(|l| l.as_str().unwrap().ends_with(&line)), "{who}: {rec}");
        }
        // The logs and result routes, on a sample.
        for (i, id) in ids.iter().step_by(20) {
            let logs = k.get(&format!("/api/v1/namespaces/_/activations/{id}/logs")).json();
            assert!(logs["logs"][0].as_str().unwrap().ends_with(&format!("line {i}")), "{logs}");
            let result = k.get(&format!("/api/v1/namespaces/_/activations/{id}/result")).json();
            assert_eq!(result["result"], json!({"n": i}), "{who}: {result}");
        }
    };
    read_all("controller 2", &cl.k2);
    read_all("controller 1", &cl.k1);
    let everywhere = t_load.elapsed();
    let lists = |k: &Client| {
        let ids_of = |path: &str| -> Vec<String> {
            let v = k.get(path).json();
            v.as_array()
                .unwrap_or_else(|| panic!("{path}: {v}"))
                .iter()
                .map(|a| a["activationId"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = ids_of(&format!("/api/v1/namespaces/_/activations?name=rec&limit={N}"));
        let page = ids_of("/api/v1/namespaces/_/activations?name=rec&limit=30&skip=20");
        let count = k.get("/api/v1/namespaces/_/activations?name=rec&count=true").json();
        (all, page, count)
    };
    let (l1, l2) = (lists(&cl.k1), lists(&cl.k2));
    assert_eq!(l1, l2, "lists through controller 1 and controller 2 differ");
    let want: BTreeSet<&String> = ids.iter().map(|(_, id)| id).collect();
    assert_eq!(l1.0.iter().collect::<BTreeSet<_>>(), want, "the newest {N} are this phase's");
    let counted = l1.2["activations"].as_u64().unwrap_or_else(|| panic!("count: {}", l1.2));
    assert!(counted > N as u64, "{counted} counted: this phase's and the first invoke's");

    // Controller 1, which accepted half of them, is lost; a fresh one takes its place.
    cl.c1.daemon.kill9();
    std::fs::remove_dir_all(cl.root().join("c1-data")).unwrap();
    let t_fresh = Instant::now();
    cl.c1 = start_controller_at(cl.root(), &cl.brokers, "c1", cl.a1);
    let ready = t_fresh.elapsed();
    read_all("the fresh controller 1", &cl.k1);
    let fresh_read = t_fresh.elapsed();
    assert_eq!(lists(&cl.k1), l2, "lists through the fresh controller 1 differ");

    // What a record costs: on the topic, and in a controller's store (the fresh one holds
    // only what it materialised, beside the few entities).
    let (mut count, mut bytes) = (0u64, 0u64);
    read_topic(&cl.brokers, hearth::bus::kafka::RECORD_TOPIC, |m| {
        use rdkafka::message::Message;
        count += 1;
        bytes += m.payload().map_or(0, |p| p.len() as u64);
    });
    let mdb = std::fs::metadata(cl.root().join("c1-data").join("data.mdb")).unwrap().len();
    println!(
        "MEASURED records: {N} accepted through both controllers in {accepted:?}, all readable \
         through both {everywhere:?} after the load began; a fresh controller 1 (empty data dir) \
         listened {ready:?} after its start and had read all {N} {fresh_read:?} after it; records \
         topic {count} records, {} bytes per record; the fresh controller's data.mdb {} KB \
         ({} bytes per record held, entities included)",
        bytes / count.max(1),
        mdb / 1024,
        mdb / count.max(1)
    );
}

fn phase_concurrent_updates(cl: &Cluster) {
    // Two controllers update one action at the same moment, round after round, each invoking
    // it at once (warm containers for the revisions in between). Revisions are unique per
    // controller: every host ends with the same revision and code, and an invoke through
    // either controller returns that code's output, never a losing update's from a warm
    // container that shared its revision number.
    cl.k1.put_action("race", "python:3", &race_code("init"), Some(json!({"memory": 128})));
    let t_race = Instant::now();
    let rounds = 4;
    for round in 0..rounds {
        let racers: Vec<_> = [(cl.a1, "c1"), (cl.a2, "c2")]
            .into_iter()
            .map(|(addr, who)| {
                let key = cl.key.clone();
                std::thread::spawn(move || {
                    let c = Client::new(addr, &key);
                    let code = race_code(&format!("{who}-{round}"));
                    c.put_action("race", "python:3", &code, Some(json!({"memory": 128})));
                    // Success, or not run because the other update superseded this one.
                    let r = c.invoke("race", json!({}));
                    (r.status, r.text())
                })
            })
            .collect();
        for r in racers {
            let (status, text) = r.join().unwrap();
            let superseded = status == 500 && text.contains("updated while the activation waited");
            assert!(status == 200 || superseded, "invoke during the race: {status} {text}");
        }
    }
    let stores: Vec<(String, hearth::store::Store)> = ["c1", "c2", "i0", "i1", "i2"]
        .iter()
        .map(|h| {
            let opts = hearth::store::StoreOptions { sync_interval: None, ..Default::default() };
            (
                h.to_string(),
                hearth::store::Store::open(&cl.root().join(format!("{h}-data")), opts).unwrap(),
            )
        })
        .collect();
    let (revision, code) = wait("every host holds the same race", Duration::from_secs(20), || {
        let seen: Vec<(u64, String)> =
            stores.iter().map(|(_, s)| held(s, "race")).collect::<Option<_>>()?;
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0].clone())
    });
    drop(stores);
    // What every host was told: one code per revision number, whatever the interleaving.
    let mut codes: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (rev, code) in topic_revisions(&cl.brokers, "action/team/race") {
        codes.entry(rev).or_default().insert(code);
    }
    for (rev, set) in &codes {
        assert_eq!(set.len(), 1, "revision {rev} names {} different codes: {set:?}", set.len());
    }
    let winner = code.split("'v': '").nth(1).unwrap().split('\'').next().unwrap().to_owned();
    assert!(winner.ends_with(&format!("-{}", rounds - 1)), "{winner} won the last round");
    let version =
        cl.k1.req("GET", "/api/v1/namespaces/_/actions/race", b"").json()["version"].clone();
    let counter = hearth::model::revision::counter(revision);
    assert_eq!(version, json!(format!("0.0.{counter}")), "revision {revision}");
    assert!(counter > rounds, "each round raised the version: {version}");
    for (name, c) in [("c1", &cl.k1), ("c2", &cl.k2), ("c1", &cl.k1), ("c2", &cl.k2)] {
        let r = c.invoke("race", json!({}));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.json()["response"]["result"], json!({"v": winner}), "through {name}");
    }
    println!(
        "MEASURED {rounds} rounds of concurrent updates on both controllers: every host at \
         version {version} ({winner}) {:?} after the first round",
        t_race.elapsed()
    );
}

/// An action that holds its activation for 2 s: keeps invokes in flight.
const HOLD: &str = "import time\ndef main(a):\n    time.sleep(2)\n    return {'i': a.get('i')}\n";

/// Runs `hearthd admin limits ARGS` on `data_dir` (a running controller's: the override goes
/// into its entity feed, which that controller publishes).
fn admin_limits(data_dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(hearthd())
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("limits")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin limits {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Per-namespace limits hold across the cluster (issue 17): an override set with `hearthd
/// admin` on controller 1's data dir reaches controller 2, which refuses the invoke past its
/// share of the limit (two live controllers: `ceil(1.2 * limit) / 2`) with OpenWhisk's 429
/// message naming the limit; cleared on controller 1, controller 2 accepts again.
fn phase_limits(cl: &Cluster) {
    const LIMIT: u32 = 5;
    // controller::admission::share with two controllers: the limit plus OpenWhisk's 20%
    // over-commit, halved.
    let share = ((f64::from(LIMIT) * 1.2).ceil() as u32 / 2).max(1);
    cl.k1.put_action("hold", "python:3", HOLD, Some(json!({"memory": 128})));
    wait("hold visible on controller 2", Duration::from_secs(10), || {
        (cl.k2.get("/api/v1/namespaces/_/actions/hold").status == 200).then_some(())
    });
    let concurrent =
        |k: &Client| k.get("/api/v1/namespaces/_/limits").json()["concurrentInvocations"].clone();
    let default = concurrent(&cl.k2);
    let c1_data = cl.root().join("c1-data");
    let limit = LIMIT.to_string();
    let t_set = Instant::now();
    let set = admin_limits(&c1_data, &["set", "team", "--concurrent-invocations", &limit]);
    assert_eq!(set.trim(), format!(r#"{{"concurrentInvocations":{LIMIT}}}"#));
    let admin_took = t_set.elapsed();
    wait("the override on controller 2", Duration::from_secs(10), || {
        (concurrent(&cl.k2) == json!(LIMIT)).then_some(())
    });
    let lag = t_set.elapsed();
    // Non-blocking invokes of a 2 s action through controller 2: `share` in flight, the next
    // refused at once.
    let invoke = |i: u32| cl.k2.json("POST", "/api/v1/namespaces/_/actions/hold", json!({"i": i}));
    let mut ids = Vec::new();
    for i in 0..share {
        let r = invoke(i);
        assert_eq!(r.status, 202, "invoke {i} of {share} through controller 2: {}", r.text());
        ids.push(r.json()["activationId"].as_str().unwrap().to_owned());
    }
    let r = invoke(share);
    assert_eq!(r.status, 429, "invoke {} past the share {share}: {}", share + 1, r.text());
    assert_eq!(
        r.json()["error"],
        json!(format!(
            "Too many concurrent requests in flight (count: {share}, allowed: {share})."
        )),
        "{}",
        r.text()
    );
    // Cleared on controller 1: controller 2 takes the host's default again, and accepts past
    // the old share while those are still in flight.
    let t_clear = Instant::now();
    admin_limits(&c1_data, &["clear", "team"]);
    wait("the default again on controller 2", Duration::from_secs(10), || {
        (concurrent(&cl.k2) == default).then_some(())
    });
    let cleared = t_clear.elapsed();
    for i in 0..=share {
        let r = invoke(100 + i);
        assert_eq!(r.status, 202, "after the clear, invoke {i}: {}", r.text());
        ids.push(r.json()["activationId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let rec =
            cl.k2.record(id, Duration::from_secs(60)).unwrap_or_else(|| panic!("{id}: no record"));
        assert_eq!(rec["response"]["status"], "success", "{rec}");
    }
    println!(
        "MEASURED a limit override set with hearthd admin on controller 1 ({admin_took:?} for \
         the command) in force on controller 2 {lag:?} after the command started; cleared: \
         {cleared:?}; controller 2 admitted {share} of a limit of {LIMIT} (two controllers) and \
         refused the next"
    );
}

/// Returns the killed invoker's number.
fn phase_invoker_killed(cl: &mut Cluster) -> usize {
    // An invoker killed with -9 under load: every accepted activation ends with a record.
    let slow_home = {
        let r = cl.k1.invoke("slow", json!({"i": -1}));
        assert_eq!(r.status, 200, "{}", r.text());
        invoker_of(&r.json())
    };
    let victim: usize = slow_home.trim_start_matches("invoker").parse().unwrap();
    let mut accepted: Vec<(usize, String)> = Vec::new();
    let t_load = Instant::now();
    let mut killed_at = None;
    for i in 0..30 {
        let (which, client) = if i % 2 == 0 { (1, &cl.k1) } else { (2, &cl.k2) };
        let r = client.json("POST", "/api/v1/namespaces/_/actions/slow", json!({"i": i}));
        match r.status {
            202 => accepted.push((which, r.json()["activationId"].as_str().unwrap().to_owned())),
            429 | 503 => {}
            s => panic!("invoke under load: {s} {}", r.text()),
        }
        if i == 15 {
            cl.invokers[victim].daemon.kill9();
            killed_at = Some(t_load.elapsed());
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let mut failed = 0;
    let mut ok = 0;
    for (which, id) in &accepted {
        let client = if *which == 1 { &cl.k1 } else { &cl.k2 };
        let rec = client
            .record(id, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("accepted activation {id} has no record"));
        match rec["response"]["status"].as_str() {
            Some("success") => ok += 1,
            Some("whisk internal error") => failed += 1,
            other => panic!("{id}: unexpected status {other:?}: {rec}"),
        }
    }
    println!(
        "MEASURED kill -9 of invoker{victim} at {killed_at:?} into the load: {} accepted, {ok} succeeded, \
         {failed} recorded as whisk internal error, 0 lost; all recorded {:?} after the load began",
        accepted.len(),
        t_load.elapsed()
    );
    assert!(accepted.len() >= 20, "too few accepted: {}", accepted.len());
    assert!(ok > 0, "nothing succeeded under load");
    // New work goes to the others.
    let r = cl.k2.invoke("slow", json!({"i": 99}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(invoker_of(&r.json()), slow_home, "work went to the dead invoker");
    victim
}

fn phase_controller_killed(cl: &mut Cluster) {
    // Controller 1 killed with -9 while activations it acknowledged (202) run: their records
    // reach its completion topic while it is away, and it writes them when it is back
    // (resuming where it last committed), not "the server stopped; it may or may not have
    // run" (the placeholder a restart makes of what it cannot know).
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let r = cl.k1.json("POST", "/api/v1/namespaces/_/actions/slow", json!({"i": 200 + i}));
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["activationId"].as_str().unwrap().to_owned()
        })
        .collect();
    cl.c1.daemon.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let t_back = Instant::now();
    cl.c1.daemon.respawn(listening(cl.a1));
    for id in &ids {
        let rec = wait(&format!("{id}'s own record"), Duration::from_secs(30), || {
            cl.k1
                .record(id, Duration::from_secs(5))
                .filter(|r| r["response"]["status"] == "success")
        });
        assert_eq!(rec["response"]["result"]["i"].as_i64().map(|i| i >= 200), Some(true), "{rec}");
    }
    println!(
        "MEASURED {} activations that ended while their controller was killed recorded as they ran, {:?} after its restart",
        ids.len(),
        t_back.elapsed()
    );
}

/// The ticks controller log `text` says it fired for alarm `alarm`.
fn alarm_ticks(text: &str, alarm: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.contains("alarm fired") && l.contains(&format!("alarm={alarm} ")))
        .filter_map(|l| {
            l.split("tick=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// Alarms (issue 13): a 2-second cron schedule created on controller 1 runs for 60 s on both
/// controllers, controller 1 killed with -9 halfway (and back 10 s later): every tick of the
/// window fires once (±1 at the edges: the kill may lose the tick it had claimed), no tick
/// fires on both controllers, and a trigger record exists for each fire.
fn phase_alarms(cl: &mut Cluster) {
    let ann = json!({"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]});
    let r = cl.k1.json("PUT", "/api/v1/namespaces/_/triggers/beat", ann);
    assert_eq!(r.status, 200, "{}", r.text());
    let rule = json!({"trigger": "beat", "action": cl.names[0]});
    let r = cl.k1.json("PUT", "/api/v1/namespaces/_/rules/beat-r", rule);
    assert_eq!(r.status, 200, "{}", r.text());
    wait("the trigger on controller 2", Duration::from_secs(10), || {
        (cl.k2.get("/api/v1/namespaces/_/triggers/beat").status == 200).then_some(())
    });
    let now_ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64
    };
    let feed = |c: &Client, event: &str| {
        let params = json!({"lifecycleEvent": event, "triggerName": "/_/beat", "authKey": cl.key,
                            "cron": "*/2 * * * * *"});
        c.json("POST", "/api/v1/namespaces/whisk.system/actions/alarms/alarm?blocking=true", params)
    };
    let (t0, mono0) = (now_ms(), Instant::now());
    let r = feed(&cl.k1, "CREATE");
    assert_eq!(r.status, 200, "{}", r.text());
    let created = now_ms();
    std::thread::sleep(Duration::from_secs(30));
    cl.c1.daemon.kill9();
    std::thread::sleep(Duration::from_secs(10));
    cl.c1.daemon.respawn(listening(cl.a1));
    let left = Duration::from_millis(60_000u64.saturating_sub(now_ms() - created));
    std::thread::sleep(left);
    let before = now_ms();
    let r = feed(&cl.k2, "DELETE");
    assert_eq!(r.status, 200, "{}", r.text());
    let deleted = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let text = |id: &str| std::fs::read_to_string(cl.root().join(format!("{id}.log"))).unwrap();
    let (f1, f2) = (alarm_ticks(&text("c1"), "team/beat"), alarm_ticks(&text("c2"), "team/beat"));
    let mut all: Vec<u64> = f1.iter().chain(&f2).copied().collect();
    all.sort_unstable();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a tick fired twice: c1 {f1:?}, c2 {f2:?}");
    // The ticks of the window: after the create was stored, up to the delete.
    let (lo, hi) = (t0 / 2000, deleted / 2000);
    let expected = (hi - lo) as usize;
    // A wall clock stepped forward under the test (a paused VM, NTP) skips the ticks of the
    // step, by design (a tick more than 10 s late is skipped, never caught up): those are not
    // expected. Measured as wall time the monotonic clock did not see.
    let stepped_ms = (deleted - t0).saturating_sub(mono0.elapsed().as_millis() as u64);
    let skipped = if stepped_ms > 1000 { stepped_ms.div_ceil(2000) as usize } else { 0 };
    assert!(
        all.len() + 1 + skipped >= expected && all.len() <= expected,
        "{} fires for {expected} ticks (±1 at the edges, {skipped} skipped by a {stepped_ms} ms clock step): c1 {f1:?}, c2 {f2:?}",
        all.len()
    );
    // A trigger record for each fire, readable through either controller.
    let count = |c: &Client| {
        c.get("/api/v1/namespaces/_/activations?name=beat&count=true").json()["activations"]
            .as_u64()
            .unwrap_or(0)
    };
    // Each controller holds every record of the cluster (the records topic): both count all.
    let records = wait("the trigger records on both controllers", Duration::from_secs(20), || {
        let n = (count(&cl.k1), count(&cl.k2));
        (n.0 as usize >= all.len() && n.1 as usize >= all.len()).then_some(n)
    });
    assert_eq!(records, (all.len() as u64, all.len() as u64));
    println!(
        "MEASURED alarm */2 s for {:?} on 2 controllers (c1 killed -9 at 30 s, back at 40 s): {} fires for {expected} ticks (c1 {}, c2 {}), none twice, delete took {} ms",
        Duration::from_millis(deleted - created),
        all.len(),
        f1.len(),
        f2.len(),
        deleted - before
    );
}

fn phase_broker_restart(cl: &mut Cluster) {
    // A broker restart (memory storage: it comes back empty): service resumes by itself.
    cl.broker.stop();
    let r = cl.k2.invoke(&cl.names[2], json!({"n": 1}));
    assert_eq!(r.status, 503, "broker down: {}", r.text());
    println!("broker down: {}", r.text());
    cl.broker.restart();
    let t_back = Instant::now();
    wait("an invoke after the broker restart", Duration::from_secs(40), || {
        (cl.k2.invoke(&cl.names[2], json!({"n": 2})).status == 200).then_some(())
    });
    let back = t_back.elapsed();
    // Entities written after the restart still reach the other controller.
    cl.k2.put_action("after", "python:3", ECHO, Some(json!({"memory": 128})));
    let r = wait("'after' invoked through controller 1", Duration::from_secs(20), || {
        let r = cl.k1.invoke("after", json!({"n": 7}));
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.json()["response"]["result"], json!({"n": 7}));
    println!("MEASURED first successful invoke {back:?} after the broker restarted");
}

/// Returns the new controller and invoker (c3, i3).
fn phase_new_hosts_after_reset(cl: &Cluster, pre: &str, victim: usize) -> (Host, Host) {
    // Hosts started after the broker lost the entity topic still learn what was written
    // before: the controllers noticed the reset and re-published what they hold. A new
    // controller (empty data dir: namespace, key and actions all come from the topic) and a
    // new invoker 3, the home of `pre` among four slots.
    let t_new = Instant::now();
    let (c3, a3) = start_controller(cl.root(), &cl.brokers, "c3");
    let i3 = start_invoker(cl.root(), &cl.brokers, 3);
    let k3 = Client::new(a3, &cl.key);
    // Listening means caught up: the key and the actions written before it started work at
    // once (not after a 401 or a 404 while it reads the entity topic).
    let r = k3.get(&format!("/api/v1/namespaces/_/actions/{pre}"));
    assert_eq!(r.status, 200, "a new controller, as soon as it listens: {}", r.text());
    let seen = k3.get("/invokers").json();
    let live: Vec<String> =
        (0..3).filter(|&n| n != victim).map(|n| format!("invoker{n}")).collect();
    for n in &live {
        assert_eq!(seen[n], "up", "a new controller knows the live invokers at once: {seen}");
    }
    // Until the new controller hears invoker 3, the action's home is an old invoker (which
    // holds it from before): wait for a run on invoker 3 itself.
    let on_new = |c: &Client, n: i32| {
        let r = c.invoke(pre, json!({"n": n}));
        (r.status == 200 && invoker_of(&r.json()) == "invoker3").then(|| r.json())
    };
    let what = format!("{pre} invoked through the new controller on the new invoker");
    let act = wait(&what, Duration::from_secs(30), || on_new(&k3, 3));
    assert_eq!(act["response"]["result"], json!({"n": 3}));
    let what = format!("{pre} invoked through controller 1 on the new invoker");
    let act = wait(&what, Duration::from_secs(10), || on_new(&cl.k1, 4));
    assert_eq!(act["response"]["result"], json!({"n": 4}));
    println!(
        "MEASURED an action created before the broker restart invoked on a new controller and a new invoker {:?} after they started",
        t_new.elapsed()
    );

    for c in ["c1", "c2"] {
        let log = std::fs::read_to_string(cl.root().join(format!("{c}.log"))).unwrap();
        assert!(log.contains("the entity topic was reset"), "{c} did not notice the reset");
    }
    (c3, i3)
}

fn phase_controllers_count(cl: &Cluster, mut c3: Host, mut i3: Host) {
    // The controllers count each other: three now, two again once c3 is silent.
    let c1_log = cl.root().join("c1.log");
    let text = || std::fs::read_to_string(&c1_log).unwrap_or_default();
    wait("controller 1 counts three controllers", Duration::from_secs(10), || {
        (last_at(&text(), "1/3 of every invoker") > 0).then_some(())
    });
    c3.daemon.stop();
    wait("controller 1 counts two again after c3 stopped", Duration::from_secs(15), || {
        let t = text();
        (last_at(&t, "1/2 of every invoker") > last_at(&t, "1/3 of every invoker")).then_some(())
    });
    i3.daemon.stop();
    assert_no_leaks(i3.state.as_ref().unwrap());
}

fn phase_stop(mut cl: Cluster, victim: usize) {
    // The killed invoker rejoins (and reclaims what the kill left); then the broker goes away
    // and everyone stops: cleanly and promptly (a Kafka consumer's close never holds a stop).
    let log = cl.invokers[victim].daemon.log().to_owned();
    cl.invokers[victim].daemon.respawn(ready_once_more(&log));
    cl.broker.stop();
    let t_stop = Instant::now();
    cl.c1.daemon.stop();
    cl.c2.daemon.stop();
    for h in &mut cl.invokers {
        h.daemon.stop();
        assert_no_leaks(h.state.as_ref().unwrap());
    }
    println!("MEASURED five hosts stopped {:?} after the broker went away", t_stop.elapsed());
}

/// Two controllers and three invokers over a real broker, in phases over one cluster (as
/// tests/system.rs does over one booted system): each phase starts from what the previous
/// ones left.
#[test]
fn two_controllers_three_invokers_over_kafka() {
    require_root();
    let t_all = Instant::now();
    let mut cl = Cluster::start();
    let visible = phase_entities(&cl);
    phase_invokers_up(&cl);
    phase_packages(&cl);
    phase_spread_and_home(&cl);
    phase_latency(&cl, visible);
    phase_records(&mut cl);
    phase_concurrent_updates(&cl);
    phase_limits(&cl);
    // Before the broker loses everything: an action whose home will be a new invoker 3.
    let pre = name_with_home("pre", 3, 4);
    cl.k1.put_action(&pre, "python:3", ECHO, Some(json!({"memory": 128})));
    let victim = phase_invoker_killed(&mut cl);
    phase_controller_killed(&mut cl);
    phase_alarms(&mut cl);
    phase_broker_restart(&mut cl);
    let (c3, i3) = phase_new_hosts_after_reset(&cl, &pre, victim);
    phase_controllers_count(&cl, c3, i3);
    phase_stop(cl, victim);
    println!("cluster test took {:?}", t_all.elapsed());
}
