//! `GET /invokers` and `GET /invokers/healthy/count`: the invokers this controller schedules
//! to and their health, as OpenWhisk's controller answers them (`{"invoker0": "up", ...}`;
//! states `up`, `unhealthy`, `down`). Operators and deployment scripts poll them to know when
//! a controller can take work. No authentication, as in OpenWhisk: names and states only.

use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::response::{json, Body};
use crate::balancer::Health;
use crate::dispatch::InvokerView;

/// OpenWhisk's word for each state (its `Offline` is shown as `down`).
fn state(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Unhealthy => "unhealthy",
        Health::Offline => "down",
    }
}

/// `GET /invokers`: every invoker slot by name, in id order.
pub fn list(invokers: &[InvokerView]) -> Response<Body> {
    let map: Map<String, Value> =
        invokers.iter().map(|v| (v.id.to_string(), Value::from(state(v.health)))).collect();
    json(StatusCode::OK, &map)
}

/// `GET /invokers/healthy/count`: how many invokers take work now.
pub fn healthy_count(invokers: &[InvokerView]) -> Response<Body> {
    let n = invokers.iter().filter(|v| v.health == Health::Up).count();
    json(StatusCode::OK, &n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::InvokerId;
    use http_body_util::BodyExt;

    async fn body(r: Response<Body>) -> Value {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn openwhisk_names_and_states() {
        let views = [
            InvokerView::up(0),
            InvokerView { id: InvokerId(1), health: Health::Offline },
            InvokerView { id: InvokerId(2), health: Health::Unhealthy },
            InvokerView::up(3),
        ];
        assert_eq!(
            body(list(&views)).await,
            serde_json::json!({"invoker0": "up", "invoker1": "down", "invoker2": "unhealthy", "invoker3": "up"})
        );
        assert_eq!(body(healthy_count(&views)).await, serde_json::json!(2));
        assert_eq!(body(list(&[])).await, serde_json::json!({}));
    }
}
