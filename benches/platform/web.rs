//! A warm web action invoke (`GET /api/v1/web/guest/default/{action}.json`, no key) beside the
//! same action's authenticated blocking invoke, in one run: what the web path adds on the
//! critical path (the export check, the `__ow_*` context, the anonymous throttle, the `.json`
//! transcoding) over a keyed invoke.
//!
//! Each side has its own keep-alive connection (the web one without a key); the two are
//! interleaved sample by sample with alternating order, and both reach the same warm
//! container (one action, one revision).

use std::net::SocketAddr;

use anyhow::{bail, Context};
use hearth::model::Runtime;
use serde_json::json;

use crate::http::Client;
use crate::report::Row;
use crate::stats::Samples;
use crate::{api, Plan, Progress};

/// How much slower than the keyed invoke the web invoke may be (issue 14).
const BOUND: f64 = 1.1;

const ACTION: &str = "bench-web";

async fn web_invoke(c: &mut Client) -> anyhow::Result<std::time::Duration> {
    let path = format!("/api/v1/web/guest/default/{ACTION}.json");
    let (status, resp, took) = c.request("GET", &path, b"").await?;
    if status != 200 {
        bail!("web invoke {ACTION}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(took)
}

pub async fn run(
    platform: SocketAddr,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut keyed = api::connect(platform).await?;
    let mut web = Client::connect(platform, None).await.context("connecting without a key")?;
    let runtime = Runtime::Python;
    let body = json!({
        "exec": {"kind": api::kind(runtime), "code": api::noop_code(runtime, ACTION)},
        "annotations": [{"key": "web-export", "value": true}],
    });
    let put = format!("/api/v1/namespaces/_/actions/{ACTION}?overwrite=true");
    let (status, resp, _) = keyed.request("PUT", &put, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT {ACTION}: {status} {}", String::from_utf8_lossy(&resp));
    }
    for _ in 0..plan.warm_warmup {
        api::invoke(&mut keyed, ACTION).await?;
        web_invoke(&mut web).await?;
    }
    let (mut direct, mut anonymous) =
        (Samples::with_capacity(plan.warm_n), Samples::with_capacity(plan.warm_n));
    for i in 0..plan.warm_n {
        progress.step("warm web action invoke", i, plan.warm_n);
        if i % 2 == 0 {
            direct.push(api::invoke(&mut keyed, ACTION).await?);
            anonymous.push(web_invoke(&mut web).await?);
        } else {
            anonymous.push(web_invoke(&mut web).await?);
            direct.push(api::invoke(&mut keyed, ACTION).await?);
        }
    }
    let (direct, anonymous) = (direct.summary(), anonymous.summary());
    if direct.n == 0 {
        bail!("no keyed samples");
    }
    let main = Row::latency("warm web action invoke python (.json, no key)", &anonymous)
        .floor("the same action, keyed blocking invoke", direct.p50_us / 1000.0);
    let ratio = main.ratio;
    Ok(vec![
        main.target(format!("<= {BOUND}x keyed"), ratio <= BOUND),
        Row::latency("  the same action, keyed blocking invoke", &direct),
    ])
}
