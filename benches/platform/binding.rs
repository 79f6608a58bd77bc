//! A warm invoke through a package binding beside the same action invoked directly, in one
//! run: what resolving `binding/action` (two extra memory-map lookups and a parameter merge)
//! costs on the critical path.
//!
//! The two are interleaved sample by sample on one keep-alive connection, so machine noise
//! lands on both alike; both reach the same warm container (one action, one revision).

use std::net::SocketAddr;

use hearth::model::Runtime;
use serde_json::json;

use crate::report::Row;
use crate::stats::Samples;
use crate::{api, Plan, Progress};

/// How much slower than direct the binding may be (the team lead's bound).
const BOUND: f64 = 1.05;

pub async fn run(
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut client = api::connect(platform).await?;
    let package = json!({"parameters": [{"key": "greeting", "value": "package"}]});
    api::put_package(&mut client, "bench-pkg", &package).await?;
    let binding = json!({
        "binding": {"namespace": "_", "name": "bench-pkg"},
        "parameters": [{"key": "greeting", "value": "binding"}],
    });
    api::put_package(&mut client, "bench-bind", &binding).await?;
    let runtime = Runtime::Python;
    let code = api::noop_code(runtime, "bench-binding");
    api::put_action(&mut client, "bench-pkg/noop", runtime, &code, 256).await?;
    for _ in 0..plan.warm_warmup {
        api::invoke(&mut client, "bench-pkg/noop").await?;
        api::invoke(&mut client, "bench-bind/noop").await?;
    }
    let (mut direct, mut bound) =
        (Samples::with_capacity(plan.warm_n), Samples::with_capacity(plan.warm_n));
    for i in 0..plan.warm_n {
        progress.step("warm invoke through a binding", i, plan.warm_n);
        // Alternate which goes first, so neither always follows the other.
        if i % 2 == 0 {
            direct.push(api::invoke(&mut client, "bench-pkg/noop").await?);
            bound.push(api::invoke(&mut client, "bench-bind/noop").await?);
        } else {
            bound.push(api::invoke(&mut client, "bench-bind/noop").await?);
            direct.push(api::invoke(&mut client, "bench-pkg/noop").await?);
        }
    }
    let (direct, bound) = (direct.summary(), bound.summary());
    Row::against(
        "warm invoke python through a binding",
        &bound,
        "the same action invoked directly",
        &direct,
        "  the same action, direct (pkg/action)",
        BOUND,
        "direct",
    )
}
