//! A tansu broker (a real Kafka-protocol broker) owned by one test, on a free loopback port with
//! memory storage; killed by pid when dropped, and by the kernel if the test dies first.
//! Shared by tests/kafka.rs (the bus) and tests/cluster.rs (hearthd processes).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The broker binary: `TANSU` when set (the Makefile passes what scripts/build-broker.sh
/// printed), else where that script caches it under `HEARTH_CACHE` (scripts/lib/cache.sh).
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU") {
        return bin.into();
    }
    let cache = std::env::var_os("HEARTH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/hearth-test".into());
    cache.join("tansu/bin/tansu")
}

pub struct Broker {
    port: u16,
    bin: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        let bin = tansu_bin();
        assert!(
            bin.exists(),
            "the Kafka-protocol broker is missing at {}: build it with scripts/build-broker.sh \
             (or set TANSU to its path)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker.log");
        let mut b = Broker { port, bin, log, child: None, _dir: dir };
        b.restart();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port: with memory storage it comes back empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"]);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it makes the
        // kernel kill the broker if this test dies without running Drop (a crash, a timeout).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < until, "broker not listening; log: {}", self.log.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The median.
pub fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The broker's own produce-to-consume round trip with the bus's settings, `n` times: the
/// floor the bus's latency is compared with.
pub async fn round_trips(brokers: &str, n: usize) -> Vec<Duration> {
    hearth::bus::kafka::probe::round_trips(brokers, "hearth.test.rtt", n, 20).await.unwrap()
}
