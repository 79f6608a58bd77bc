//! Helpers for the pool's unit tests (`mod.rs`, `shared.rs`, `filler.rs`).

use super::{Admission, Need, Placement, PoolState};
use crate::dispatch::DispatchError;
use crate::invoker::config::PrewarmConfig;
use crate::invoker::state::tests::{key, Inert};
use crate::invoker::state::Slot;
use crate::model::{EntityName, FullyQualifiedName, Kind, Runtime};

pub(super) fn need(name: &str, rev: u64, mb: u64) -> Need {
    Need {
        key: key(name, rev),
        runtime: Runtime::Python,
        memory_mb: mb,
        tenant: EntityName::parse("guest").unwrap(),
        concurrency: 1,
    }
}

pub(super) fn placed<C>(a: Result<Admission<C>, DispatchError>) -> Placement<C> {
    match a.unwrap() {
        Admission::Placed(p) => p,
        Admission::Queued(_) => panic!("queued"),
    }
}

/// A prewarm plan of one 256 MB python stem cell.
pub(super) fn python_plan() -> Vec<PrewarmConfig> {
    vec![PrewarmConfig {
        kind: Kind::parse("python:3").unwrap(),
        memory_mb: 256,
        count: 1,
        image: None,
        digest: None,
    }]
}

/// Runs a cold placement to the point where its container is idle and warm.
pub(super) fn make_warm(pool: &mut PoolState<Inert>, id: &str, n: &Need) {
    let p = placed(pool.admit(n.clone()));
    assert!(matches!(p, Placement::Cold { .. }));
    pool.cold_created();
    let mut slot = Slot::starting(Inert::new(id), n.runtime, n.memory_mb);
    slot.claim(&n.key).unwrap();
    slot.release().unwrap();
    assert!(pool.put_back(slot).is_empty());
    pool.finish();
}

pub(super) fn stem_cell(pool: &mut PoolState<Inert>, id: &str, mb: u64) {
    assert!(pool.budget.try_reserve(mb));
    let mut slot = Slot::starting(Inert::new(id), Runtime::Python, mb);
    slot.park_prewarmed().unwrap();
    pool.prewarmed.push(slot);
}

/// Another namespace's action, billed to that namespace.
pub(super) fn need_of(ns: &str, name: &str, mb: u64) -> Need {
    let ns = EntityName::parse(ns).unwrap();
    let mut n = need(name, 1, mb);
    n.key.action = FullyQualifiedName::new(ns.clone(), EntityName::parse(name).unwrap());
    n.tenant = ns;
    n
}
