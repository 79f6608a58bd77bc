//! A warm invoke of a 3-action sequence beside the 3 single warm invokes of its actions, in
//! one run: what the controller's orchestration (the sequence's admission, resolving its
//! components, its runner task, one record per component plus its own) costs beyond running
//! the same three actions one request at a time.
//!
//! Interleaved sample by sample on one keep-alive connection, alternating which goes first,
//! so machine noise lands on both alike; each floor sample is the sum of the three single
//! invokes of that round. The actions are distinct (three warm containers, as in a real
//! sequence) and the same containers serve both sides.

use std::net::SocketAddr;

use anyhow::bail;
use hearth::model::Runtime;
use serde_json::json;

use crate::report::Row;
use crate::stats::Samples;
use crate::{api, Plan, Progress};

/// How much slower than its three actions invoked one by one a sequence may be (issue 13).
const BOUND: f64 = 1.2;

const ACTIONS: [&str; 3] = ["bench-seq-a", "bench-seq-b", "bench-seq-c"];
const SEQUENCE: &str = "bench-seq";

pub async fn run(
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let runtime = Runtime::Python;
    let mut client = api::connect(platform).await?;
    for name in ACTIONS {
        api::put_action(&mut client, name, runtime, &api::noop_code(runtime, name), 256).await?;
    }
    let components: Vec<String> = ACTIONS.iter().map(|a| format!("/_/{a}")).collect();
    let body = json!({"exec": {"kind": "sequence", "components": components}});
    let path = format!("/api/v1/namespaces/_/actions/{SEQUENCE}?overwrite=true");
    let (status, resp, _) = client.request("PUT", &path, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT sequence: {status} {}", String::from_utf8_lossy(&resp));
    }
    for _ in 0..plan.warm_warmup {
        api::invoke(&mut client, SEQUENCE).await?;
        for name in ACTIONS {
            api::invoke(&mut client, name).await?;
        }
    }
    let (mut seq, mut three) =
        (Samples::with_capacity(plan.warm_n), Samples::with_capacity(plan.warm_n));
    for i in 0..plan.warm_n {
        progress.step("warm invoke of a 3-action sequence", i, plan.warm_n);
        let first = i % 2 == 0;
        if first {
            seq.push(api::invoke(&mut client, SEQUENCE).await?);
        }
        let mut sum = std::time::Duration::ZERO;
        for name in ACTIONS {
            sum += api::invoke(&mut client, name).await?;
        }
        three.push(sum);
        if !first {
            seq.push(api::invoke(&mut client, SEQUENCE).await?);
        }
    }
    Row::against(
        "warm invoke of a 3-action python sequence",
        &seq.summary(),
        "its 3 actions invoked one by one",
        &three.summary(),
        "  the 3 single warm invokes, summed",
        BOUND,
        "the 3 invokes",
    )
}
