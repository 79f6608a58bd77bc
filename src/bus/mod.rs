//! The seam between the controller and the invoker: how the [`crate::dispatch`] contract
//! travels between processes and hosts.
//!
//! The in-process bus (standalone) is no bus at all: the controller calls the invoker's
//! [`Dispatcher`](crate::dispatch::Dispatcher) directly. The Unix-socket bus (`unix`) and the
//! Kafka bus (`kafka`, feature `kafka`) carry the same messages between processes and hosts.

pub mod frame;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod unix;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::Activation;

/// Takes *unclaimed* records: those of activations no request waits for any more, which a
/// controller acknowledged before it restarted and which ended while it was away. The daemon
/// points it at the controller's record writer (`RecordWriter::submit_unclaimed`), which
/// writes them over the pending stub or the placeholder the restart left, never over a real
/// record.
pub type Unclaimed = Arc<dyn Fn(Activation) + Send + Sync>;

/// How many unclaimed records a sink holds until one is installed: as many as an invoker
/// holds for a controller's next connection (`bus::unix::server`). Past that the oldest go
/// (their activations keep the placeholder record), with a warning.
const HELD_UNTIL_INSTALLED: usize = 4096;

/// Where a dispatcher hands the records nobody waits for: installed once by the daemon
/// (`on_unclaimed` of each bus). Until then they are held, not dropped: a bus starts
/// receiving before the controller (and the record writer that takes them) exists, and a
/// cluster controller reads its completion topic while it catches up with the cluster.
#[derive(Default)]
pub struct UnclaimedSink(Mutex<SinkState>);

#[derive(Default)]
enum SinkState {
    #[default]
    Empty,
    Holding(VecDeque<Activation>),
    Installed(Unclaimed),
}

impl std::fmt::Debug for UnclaimedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &*self.state() {
            SinkState::Installed(_) => "UnclaimedSink(installed)",
            SinkState::Empty | SinkState::Holding(_) => "UnclaimedSink(none)",
        })
    }
}

impl UnclaimedSink {
    fn state(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `sink` and hands it what was held meanwhile, in arrival order; a second call
    /// is ignored (and logged).
    pub fn install(&self, sink: Unclaimed) {
        let held = {
            let mut st = self.state();
            if let SinkState::Installed(_) = &*st {
                tracing::warn!("an unclaimed-record sink was already installed; keeping the first");
                return;
            }
            match std::mem::replace(&mut *st, SinkState::Installed(sink.clone())) {
                SinkState::Holding(held) => held,
                SinkState::Empty | SinkState::Installed(_) => VecDeque::new(),
            }
        };
        for record in held {
            sink(record);
        }
    }

    /// Hands over a record of an activation no request waits for (held until a sink is
    /// installed).
    pub fn hand(&self, record: Activation) {
        tracing::debug!(activation = %record.activation_id, "a record nobody waits for");
        let sink = {
            let mut st = self.state();
            match &mut *st {
                SinkState::Installed(f) => f.clone(),
                SinkState::Holding(held) => {
                    if held.len() == HELD_UNTIL_INSTALLED {
                        if let Some(old) = held.pop_front() {
                            tracing::warn!(activation = %old.activation_id, "too many unclaimed records before the record writer started: the oldest keeps its placeholder");
                        }
                    }
                    held.push_back(record);
                    return;
                }
                SinkState::Empty => {
                    *st = SinkState::Holding(VecDeque::from([record]));
                    return;
                }
            }
        };
        sink(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records handed before the sink exists reach it at install, in order, then the rest
    /// directly; a second sink is ignored.
    #[test]
    fn records_before_the_install_are_held_not_dropped() {
        let sink = UnclaimedSink::default();
        let recs: Vec<Activation> =
            (0..3).map(|i| crate::testing::activation("guest", "a", i)).collect();
        sink.hand(recs[0].clone());
        sink.hand(recs[1].clone());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        sink.install(Arc::new(move |r: Activation| g.lock().unwrap().push(r.activation_id)));
        sink.hand(recs[2].clone());
        let other = Arc::new(Mutex::new(0));
        let o = other.clone();
        sink.install(Arc::new(move |_| *o.lock().unwrap() += 1));
        sink.hand(recs[0].clone());
        let ids: Vec<_> = recs.iter().map(|r| r.activation_id).collect();
        assert_eq!(*got.lock().unwrap(), [ids[0], ids[1], ids[2], ids[0]]);
        assert_eq!(*other.lock().unwrap(), 0, "the first sink stays");
        assert_eq!(format!("{sink:?}"), "UnclaimedSink(installed)");
    }
}
