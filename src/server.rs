//! The listener: accepts connections, serves HTTP and websocket upgrades through hyper (routing
//! is [`crate::http`]), and on SIGTERM or SIGINT drains the node.
//!
//! Drain: `/readyz` turns 503 and new sockets are refused at once; open sockets are closed at
//! the transport level (clients reconnect elsewhere) and HTTP connections finish their request;
//! after at most `CHAT_DRAIN_SECONDS` the write-behind queue is flushed as far as the store
//! allows (the rest stays in the durable queue) and the process exits 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::ServeConfig;
use crate::node::{Node, StartError};

/// Starts the node, serves it until SIGTERM or SIGINT, then drains.
pub async fn run(config: ServeConfig) -> Result<(), StartError> {
    let bind = config.addr;
    let drain_seconds = config.drain_seconds;
    let node = Node::start(config).await?;
    let listener = TcpListener::bind(bind).await.map_err(|e| StartError::Listen(bind, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen(bind, e))?;
    tracing::info!(node = %node.id, engine = node.engine.kind, store = node.store.kind(), "coursechat {} listening on {addr}", env!("CARGO_PKG_VERSION"));
    println!("coursechat listening on {addr}");
    if node.config.demo {
        println!(
            "demo mode: open http://{addr}/ and pick a user, or get a token with: curl -s -X POST http://{addr}/api/dev/token -H 'content-type: application/json' -d '{{\"userId\":\"{}\"}}'",
            crate::demo::ENROLLED[0]
        );
    }

    let (http_close, http_closing) = watch::channel(false);
    let connections = accept_loop(listener, node.clone(), http_closing).await;

    // Drain: refuse, close sockets, wait for them, let HTTP finish, flush the queue, exit.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(drain_seconds);
    tracing::info!(open_sockets = node.hub.socket_count(), "draining");
    node.drain_sessions(deadline).await;
    // Open HTTP connections keep being served a little longer, so health checks on them see the
    // 503 and requests in flight finish; then they close after their current request.
    tokio::time::sleep_until((started + HTTP_LINGER).min(deadline).into()).await;
    let _ = http_close.send(true);
    let _ = tokio::time::timeout_at(deadline.into(), connections.acquire_many(MAX_HTTP_CONNECTIONS as u32)).await;
    node.finish(deadline).await;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

/// HTTP connections open at once (websocket sessions are counted apart, once upgraded).
const MAX_HTTP_CONNECTIONS: usize = 10_000;
/// How long open HTTP connections are still served after SIGTERM (readiness answers 503).
const HTTP_LINGER: Duration = Duration::from_millis(500);

/// Accepts until SIGTERM / SIGINT (then new connections are refused); returns the semaphore
/// whose permits the open HTTP connections hold. Those close once `closing` turns true.
async fn accept_loop(listener: TcpListener, node: Arc<Node>, closing: watch::Receiver<bool>) -> Arc<Semaphore> {
    let connections = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return connections;
        }
    };
    loop {
        let permit = tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| crate::http::handle(node.clone(), req, peer));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive(true)
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "http connection ended");
                    }
                }
                _ = crate::shutdown::flagged(&mut closing) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections
}
