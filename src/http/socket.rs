//! `GET /socket.io/?EIO=4&transport=websocket`: checks, then the websocket upgrade, then a
//! session task. Only the websocket transport is served; a polling request gets 400.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use super::{ApiError, Body};
use crate::error::ErrorCode;
use crate::node::Node;

pub fn upgrade(node: Arc<Node>, mut req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query().map(super::parse_query).unwrap_or_default();
    if query.get("transport").map(String::as_str) != Some("websocket") {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "only the websocket transport is served: connect with transports: ['websocket']",
        ));
    }
    if query.get("EIO").map(String::as_str) != Some("4") {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "unsupported Engine.IO protocol version; EIO=4 is served",
        ));
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if !node.config.origin_allowed(origin) {
            node.audit.record("socket_refused", None, None, "forbidden_origin", Some(peer));
            return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
        }
    }
    if node.is_draining() {
        return Err(ApiError::new(ErrorCode::Unavailable, "this node is draining"));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "expected a websocket upgrade request"));
    }
    let Some(permit) = node.sessions.clone().try_acquire_owned().ok() else {
        return Err(ApiError::new(ErrorCode::Unavailable, "this node is at its connection limit"));
    };
    let (response, upgraded) = fastwebsockets::upgrade::upgrade(&mut req)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, e.to_string()))?;
    tokio::spawn(async move {
        let _permit = permit;
        match upgraded.await {
            Ok(ws) => crate::session::run(ws.into_inner().into_inner(), node, peer).await,
            Err(e) => tracing::debug!(%peer, error = %e, "websocket upgrade failed"),
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Body::default()))
}
