//! The controller's own overhead per request on the warm path: authentication (cached) plus the
//! action metadata lookup, against a floor of a bare LMDB read transaction and `get` of the
//! same bytes. Run with `cargo bench --bench controller` (or in the debug profile with
//! `cargo test --bench controller`, whose numbers are pessimistic).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness fails loudly

use std::time::Instant;

use base64::Engine;
use heed::types::Bytes;
use heed::{Database, EnvOpenOptions};

use hearth::model::{AuthKey, EntityName, FullyQualifiedName, Kind, GUEST_KEY};
use hearth::store::{ActionUpdate, ExecUpdate, Store, StoreOptions};

const WARMUP: usize = 20_000;
const ITERS: usize = 200_000;

struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

/// Times `f` once per iteration, in microseconds.
fn measure(mut f: impl FnMut()) -> Stats {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<u64> = Vec::with_capacity(ITERS);
    for _ in 0..ITERS {
        let t = Instant::now();
        f();
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0;
    Stats { p50: at(0.5), p99: at(0.99), mean }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("store"),
        StoreOptions { map_size: 256 << 20, ..Default::default() },
    )
    .unwrap();
    let ns = EntityName::parse("guest").unwrap();
    let key = AuthKey::parse(GUEST_KEY).unwrap();
    store.ensure_namespace_with_key(&ns, &key).unwrap();
    let fqn = FullyQualifiedName::new(ns.clone(), EntityName::parse("hello").unwrap());
    let update = ActionUpdate {
        exec: Some(ExecUpdate {
            kind: Kind::parse("python:3").unwrap(),
            main: None,
            binary: false,
            image: None,
            // Realistic code size; it must not matter, as the lookup never touches it.
            code: vec![b'#'; 64 * 1024],
        }),
        parameters: Some(vec![hearth::model::KeyValue::new("greeting", "hello")]),
        ..Default::default()
    };
    let meta = store.put_action(&fqn, update, false).unwrap();
    let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(GUEST_KEY));

    // The floor: a separate environment holding the same metadata bytes under the same key.
    let floor_dir = dir.path().join("floor");
    std::fs::create_dir_all(&floor_dir).unwrap();
    let mut eo = EnvOpenOptions::new().read_txn_without_tls();
    eo.map_size(16 << 20).max_dbs(1);
    // SAFETY: a private environment in a fresh temp dir, opened once, modified only here.
    let env = unsafe { eo.open(&floor_dir) }.unwrap();
    let mut wtxn = env.write_txn().unwrap();
    let db: Database<Bytes, Bytes> = env.create_database(&mut wtxn, Some("actions")).unwrap();
    let meta_bytes = serde_json::to_vec(&meta).unwrap();
    db.put(&mut wtxn, fqn.key().as_bytes(), &meta_bytes).unwrap();
    wtxn.commit().unwrap();
    let raw_key = fqn.key();

    assert!(store.authenticate(&header).unwrap().is_some());
    let rows = [
        (
            "floor: LMDB read txn + get",
            measure(|| {
                let rtxn = env.read_txn().unwrap();
                std::hint::black_box(db.get(&rtxn, raw_key.as_bytes()).unwrap());
            }),
        ),
        (
            "auth (cached)",
            measure(|| {
                std::hint::black_box(store.authenticate(&header).unwrap());
            }),
        ),
        (
            "action meta lookup",
            measure(|| {
                std::hint::black_box(store.get_action(&fqn).unwrap());
            }),
        ),
        (
            "auth + action lookup (per request)",
            measure(|| {
                let id = store.authenticate(&header).unwrap().unwrap();
                let f = FullyQualifiedName::new(id.namespace, fqn.name.clone());
                std::hint::black_box(store.get_action(&f).unwrap());
            }),
        ),
    ];
    println!(
        "\ncontroller hot path, {ITERS} iterations each (metadata {} bytes, code {} KiB)",
        meta_bytes.len(),
        meta.code_size / 1024
    );
    println!("{:<38} {:>9} {:>9} {:>9}", "operation", "p50 us", "p99 us", "mean us");
    for (name, s) in &rows {
        println!("{name:<38} {:>9.2} {:>9.2} {:>9.2}", s.p50, s.p99, s.mean);
    }
}
