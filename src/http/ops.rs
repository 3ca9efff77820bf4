//! Liveness, readiness and metrics.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::{json, ApiResult, Ctx};

pub async fn healthz(_ctx: &mut Ctx) -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    engine: &'static str,
    store: &'static str,
    node: String,
}

/// 503 when this node cannot take sends safely (draining, or its durable queue is unreachable);
/// 200 with `store:"degraded"` while only the store fails (sends still work).
pub async fn readyz(ctx: &mut Ctx) -> ApiResult {
    let node = &ctx.node;
    let draining = node.is_draining();
    let engine_ok = node.engine.log.ping().await.is_ok();
    // Bounded: a store that does not answer is reported, not waited for.
    let store_ping = tokio::time::timeout(std::time::Duration::from_secs(1), node.store.ping()).await;
    let store_ok = !node.store_health.is_degraded() && matches!(store_ping, Ok(Ok(())));
    let ready = engine_ok && !draining;
    let body = Readiness {
        status: if draining {
            "draining"
        } else if ready {
            "ok"
        } else {
            "unavailable"
        },
        engine: if engine_ok { "ok" } else { "unavailable" },
        store: if store_ok { "ok" } else { "degraded" },
        node: node.id.clone(),
    };
    json(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

pub async fn metrics(ctx: &mut Ctx) -> ApiResult {
    metrics::gauge!("coursechat_sockets").set(ctx.node.hub.socket_count() as f64);
    // The backlog as of this scrape (the log sets the gauge); bounded, so a scrape never hangs.
    let backlog = ctx.node.engine.log.backlog();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), backlog).await;
    let text = ctx.node.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default())
}
