//! The few OpenWhisk REST calls the harness makes, over one keep-alive [`Client`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hearth::model::{Runtime, GUEST_KEY};
use serde_json::json;

use crate::http::Client;

/// The kind names the default prewarm plan uses.
pub fn kind(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Python => "python:3",
        Runtime::Nodejs => "nodejs:20",
        Runtime::Native | Runtime::Image(_) => hearth::model::BLACKBOX,
    }
}

/// A no-op action that returns an empty object; `tag` goes into a comment so that the harness
/// can tell which containers hold which action (the code is in each container's code dir).
pub fn noop_code(runtime: Runtime, tag: &str) -> String {
    match runtime {
        // The test image's proxy runs Python code.
        Runtime::Python | Runtime::Image(_) => {
            format!("# {tag}\ndef main(args):\n    return {{}}\n")
        }
        Runtime::Nodejs => format!("// {tag}\nfunction main(args) {{ return {{}}; }}\n"),
        Runtime::Native => format!("#!/bin/sh\n# {tag}\necho '{{}}'\n"),
    }
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
    Client::connect(addr, Some(GUEST_KEY)).await.with_context(|| format!("connecting to {addr}"))
}

/// PUT an action (overwriting).
pub async fn put_action(
    c: &mut Client,
    name: &str,
    runtime: Runtime,
    code: &str,
    memory_mb: u64,
) -> anyhow::Result<()> {
    let body = json!({
        "exec": {"kind": kind(runtime), "code": code},
        "limits": {"memory": memory_mb},
    });
    put_action_json(c, name, &body).await
}

/// PUT an action with a body of the caller's (limits, annotations), overwriting.
pub async fn put_action_json(
    c: &mut Client,
    name: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/_/actions/{name}?overwrite=true");
    let (status, resp, _) = c.request("PUT", &path, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT action {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(())
}

/// PUT a package or binding (overwriting).
pub async fn put_package(
    c: &mut Client,
    name: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/_/packages/{name}?overwrite=true");
    let (status, resp, _) = c.request("PUT", &path, body.to_string().as_bytes()).await?;
    if status != 200 {
        bail!("PUT package {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(())
}

/// A blocking invoke with result=true; only a 200 counts.
pub async fn invoke(c: &mut Client, name: &str) -> anyhow::Result<Duration> {
    let path = format!("/api/v1/namespaces/_/actions/{name}?blocking=true&result=true");
    let (status, resp, took) = c.request("POST", &path, b"{}").await?;
    if status != 200 {
        bail!("invoke {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(took)
}

/// GET an action (auth + lookup, no invoker).
pub async fn get_action(c: &mut Client, name: &str) -> anyhow::Result<Duration> {
    let path = format!("/api/v1/namespaces/_/actions/{name}");
    let (status, resp, took) = c.request("GET", &path, b"").await?;
    if status != 200 {
        bail!("GET action {name}: {status} {}", String::from_utf8_lossy(&resp));
    }
    Ok(took)
}
