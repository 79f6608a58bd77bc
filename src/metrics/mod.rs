//! Prometheus metrics (`GET /metrics` on the controller), kept with the `prometheus-client`
//! crate rather than hand-formatted text.
//!
//! Owns the registry and what is measured: activations by kind and status, end-to-end, wait
//! and init latency histograms, and — where the invoker lives in the same process — containers
//! by state and the queue depth, read from the pool at scrape time.
//! Must never: block or allocate much on the request path; observing an activation is a few
//! atomic adds.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::invoker::PoolStats;
use crate::model::Activation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActivationLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Latency buckets in seconds: 100 µs .. ~52 s, doubling. Warm invokes land in the first few,
/// cold starts around 50-200 ms, timeouts at the top.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 20)
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

type PoolProvider = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    activations: Family<ActivationLabels, Counter>,
    end_to_end: Family<KindLabel, Histogram, fn() -> Histogram>,
    wait: Histogram,
    init: Histogram,
    containers: Family<StateLabel, Gauge>,
    queued: Gauge,
    memory_in_use: Gauge,
    pool: std::sync::OnceLock<PoolProvider>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hearth");
        let activations = Family::<ActivationLabels, Counter>::default();
        registry.register(
            "activations",
            "Activations that ended, by kind and status",
            activations.clone(),
        );
        let end_to_end =
            Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "activation_duration_seconds",
            "From the controller receiving the invoke to the record, by kind",
            end_to_end.clone(),
        );
        let wait = histogram();
        registry.register(
            "activation_wait_seconds",
            "Time an activation waited before its container ran it",
            wait.clone(),
        );
        let init = histogram();
        registry.register(
            "activation_init_seconds",
            "Init time of cold and prewarmed starts",
            init.clone(),
        );
        let containers = Family::<StateLabel, Gauge>::default();
        registry.register(
            "containers",
            "Containers by state (standalone only: the pool is in this process)",
            containers.clone(),
        );
        let queued = Gauge::default();
        registry.register("queue_depth", "Activations waiting for memory", queued.clone());
        let memory_in_use = Gauge::default();
        registry.register(
            "container_memory_reserved_megabytes",
            "Memory limits of live containers",
            memory_in_use.clone(),
        );
        Self {
            registry,
            activations,
            end_to_end,
            wait,
            init,
            containers,
            queued,
            memory_in_use,
            pool: std::sync::OnceLock::new(),
        }
    }

    /// Lets scrapes read the pool's counts (standalone, where the pool is in this process).
    pub fn set_pool_provider(&self, provider: impl Fn() -> PoolStats + Send + Sync + 'static) {
        let _ = self.pool.set(Arc::new(provider));
    }

    /// Records one finished activation; `elapsed` is the controller's end-to-end time.
    pub fn observe(&self, act: &Activation, elapsed: Duration) {
        let kind = act.annotation("kind").and_then(|v| v.as_str()).unwrap_or("unknown").to_owned();
        self.activations
            .get_or_create(&ActivationLabels {
                kind: kind.clone(),
                status: act.response.status.as_str().to_owned(),
            })
            .inc();
        self.end_to_end.get_or_create(&KindLabel { kind }).observe(elapsed.as_secs_f64());
        if let Some(ms) = act.annotation("waitTime").and_then(|v| v.as_u64()) {
            self.wait.observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = act.annotation("initTime").and_then(|v| v.as_u64()) {
            self.init.observe(ms as f64 / 1000.0);
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus scrapes).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        if let Some(pool) = self.pool.get() {
            let s = pool();
            let set = |state, n: usize| {
                self.containers
                    .get_or_create(&StateLabel { state })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            set("warm_idle", s.warm_idle);
            set("warm_busy", s.warm_busy);
            set("prewarmed", s.prewarmed);
            set("starting", s.starting);
            set("destroying", s.destroying);
            self.queued.set(i64::try_from(s.queued).unwrap_or(i64::MAX));
            self.memory_in_use.set(i64::try_from(s.memory_in_use_mb).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    fn record(kind: &str, init: Option<u64>) -> Activation {
        let mut annotations = vec![KeyValue::new("kind", kind), KeyValue::new("waitTime", 3)];
        if let Some(i) = init {
            annotations.push(KeyValue::new("initTime", i));
        }
        Activation { annotations, ..crate::testing::activation("guest", "a", 0) }
    }

    #[test]
    fn counts_and_histograms_are_exposed() {
        let m = Metrics::new();
        m.observe(&record("python:3", Some(40)), Duration::from_millis(45));
        m.observe(&record("python:3", None), Duration::from_micros(400));
        m.set_pool_provider(|| PoolStats { warm_idle: 2, queued: 1, ..Default::default() });
        let text = m.encode().unwrap();
        assert!(
            text.contains("hearth_activations_total{kind=\"python:3\",status=\"success\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hearth_activation_duration_seconds_count{kind=\"python:3\"} 2"),
            "{text}"
        );
        assert!(text.contains("hearth_activation_init_seconds_count 1"), "{text}");
        assert!(text.contains("hearth_containers{state=\"warm_idle\"} 2"), "{text}");
        assert!(text.contains("hearth_queue_depth 1"), "{text}");
    }
}
