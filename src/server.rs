//! The node: builds the store, engine and chat rules from the configuration, accepts
//! connections, serves HTTP and websockets through hyper, and drains on SIGTERM.
//!
//! Drain: `/readyz` turns 503 and new sockets are refused at once; open sockets are closed at
//! the transport level (clients reconnect elsewhere) and HTTP connections finish their request;
//! after at most `CHAT_DRAIN_SECONDS` the write-behind queue is flushed as far as the store
//! allows (the rest stays in the durable queue) and the process exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::attachments::UrlSigner;
use crate::audit::Audit;
use crate::auth::{KeyConfig, Verifier};
use crate::chat::service::{ChatLimits, ChatService};
use crate::config::ServeConfig;
use crate::engine::{memory, redis, Timings};
use crate::http::StaticFiles;
use crate::hub::Hub;
use crate::store::embedded::EmbeddedStore;
use crate::store::mongo::MongoStore;
use crate::store::Store;
use crate::writer::{StoreHealth, Writer};

/// What every request and socket of this node shares.
pub struct AppState {
    pub config: ServeConfig,
    pub node_id: String,
    pub service: Arc<ChatService>,
    pub verifier: Verifier,
    pub hub: Arc<Hub>,
    pub audit: Audit,
    pub metrics: Option<PrometheusHandle>,
    /// True once the node drains: readiness fails, sessions close, upgrades are refused.
    pub drain: watch::Sender<bool>,
    pub store_health: Arc<StoreHealth>,
    /// Bounds open websocket sessions (`CHAT_MAX_CONNECTIONS`).
    pub sessions: Arc<Semaphore>,
    pub web: Option<StaticFiles>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Backend(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// The demo's JWT secret, when `--demo` runs without a configured key: kept in the data dir, or
/// with the Redis engine in Redis, so that every node of the deployment shares it.
async fn demo_secret(config: &ServeConfig) -> Result<Option<Vec<u8>>, StartError> {
    let configured = config.jwt_public_key.is_some() || config.jwt_secret.as_ref().is_some_and(|s| !s.is_empty());
    if !config.demo || configured {
        return Ok(None);
    }
    let secret = match &config.redis_url {
        Some(url) => {
            let key = format!("{}demo-jwt-secret", config.redis.redis_prefix);
            let fresh: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
            let shared = async {
                let client = ::redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                ::redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async::<()>(&mut conn).await?;
                ::redis::cmd("GET").arg(&key).query_async::<String>(&mut conn).await
            };
            tokio::time::timeout(Duration::from_secs(5), shared)
                .await
                .map_err(|_| StartError::Backend("CHAT_REDIS_URL: no answer in time".into()))?
                .map_err(|e| StartError::Backend(format!("CHAT_REDIS_URL: demo secret: {e}")))?
                .into_bytes()
        }
        None => crate::demo::secret(&config.data_dir).map_err(|e| StartError::Config(format!("demo secret: {e}")))?,
    };
    Ok(Some(secret))
}

fn verifier(config: &ServeConfig, demo_secret: Option<&[u8]>) -> Result<Verifier, StartError> {
    let key = if let Some(pem) = &config.jwt_public_key {
        let pem = if pem.trim_start().starts_with("-----BEGIN") {
            pem.clone().into_bytes()
        } else {
            std::fs::read(pem).map_err(|e| StartError::Config(format!("CHAT_JWT_PUBLIC_KEY: {pem}: {e}")))?
        };
        let algorithm = match config.jwt_algorithm.to_ascii_uppercase().as_str() {
            "RS256" => jsonwebtoken::Algorithm::RS256,
            "ES256" => jsonwebtoken::Algorithm::ES256,
            other => {
                return Err(StartError::Config(format!(
                    "CHAT_JWT_ALGORITHM must be RS256 or ES256 with a public key, not {other}"
                )))
            }
        };
        KeyConfig::PublicKey { pem, algorithm }
    } else if let Some(secret) = config.jwt_secret.as_ref().filter(|s| !s.is_empty()) {
        KeyConfig::Secret(secret.clone().into_bytes())
    } else if let Some(secret) = demo_secret {
        KeyConfig::Secret(secret.to_vec())
    } else {
        return Err(StartError::Config("set CHAT_JWT_SECRET (or CHAT_JWT_PUBLIC_KEY), or run with --demo".into()));
    };
    Verifier::new(key, config.jwt_leeway, config.jwt_issuer.as_deref(), config.jwt_audience.as_deref())
        .map_err(StartError::Config)
}

/// The attachment url signer: `CHAT_SIGNING_KEY`, else a key derived from the JWT secret (the demo
/// secret with `--demo`), else (only a public key) a random key for this process.
fn url_signer(config: &ServeConfig, demo_secret: Option<&[u8]>) -> Result<UrlSigner, StartError> {
    let ttl = config.limits.attachment_url_ttl;
    if let Some(key) = config.signing_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(UrlSigner::new(key.as_bytes(), ttl));
    }
    let secret = match (config.jwt_secret.as_ref().filter(|s| !s.is_empty()), demo_secret) {
        (Some(s), _) => s.clone().into_bytes(),
        (None, Some(demo)) => demo.to_vec(),
        (None, None) => {
            // Only a public key: nothing shared to derive from. A random key works on this node
            // until it restarts; several nodes need CHAT_SIGNING_KEY.
            tracing::warn!("CHAT_SIGNING_KEY is unset: attachment urls are signed with a random key valid on this node until it restarts");
            (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect::<String>().into_bytes()
        }
    };
    Ok(UrlSigner::new(&UrlSigner::derive_key(&secret), ttl))
}

/// Runs the node until SIGTERM or SIGINT, then drains.
pub async fn run(config: ServeConfig) -> Result<(), StartError> {
    if config.redis_url.is_some() && config.mongodb_url.is_none() {
        return Err(StartError::Config(
            "CHAT_REDIS_URL needs CHAT_MONGODB_URL: nodes of the Redis engine share one history, and with the \
             embedded store each node would keep its own. Set CHAT_MONGODB_URL, or unset CHAT_REDIS_URL to run one node"
                .into(),
        ));
    }
    let node_id = config.node_id.clone().unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
    let demo_secret = demo_secret(&config).await?;
    let verifier = verifier(&config, demo_secret.as_deref())?;
    let metrics = crate::metrics::install();
    let audit = Audit::open(&node_id, config.audit_log.as_deref())
        .await
        .map_err(|e| StartError::Config(format!("CHAT_AUDIT_LOG: {e}")))?;

    let store: Arc<dyn Store> = match &config.mongodb_url {
        Some(url) => {
            Arc::new(MongoStore::connect(url).await.map_err(|e| StartError::Backend(format!("CHAT_MONGODB_URL: {e}")))?)
        }
        None => Arc::new(EmbeddedStore::open(&config.data_dir).map_err(|e| StartError::Backend(e.to_string()))?),
    };
    if config.demo {
        crate::demo::seed(store.as_ref()).await.map_err(|e| StartError::Backend(format!("seeding demo data: {e}")))?;
    }
    let hub = Hub::new();
    let limits = &config.limits;
    let timings = Timings {
        presence_grace: Duration::from_millis(limits.presence_grace_ms),
        typing_ttl: Duration::from_millis(limits.typing_ttl_ms),
    };
    let engine_limits = memory::MemoryLimits {
        messages_per_second: limits.message_rate,
        message_burst: limits.message_burst,
        idempotency_window: Duration::from_secs(limits.idempotency_hours * 3600),
    };
    let signer = Arc::new(url_signer(&config, demo_secret.as_deref())?);
    let presenter: crate::engine::Presenter = {
        let signer = signer.clone();
        Arc::new(move |m: &mut crate::model::Message| {
            if let Some(a) = m.attachment.as_mut() {
                a.url = signer.url(&a.id);
            }
        })
    };
    let (engine, mut notices) = match &config.redis_url {
        Some(url) => {
            let settings = &config.redis;
            let options = redis::RedisOptions {
                url: url.clone(),
                prefix: settings.redis_prefix.clone(),
                shards: settings.redis_shards,
                recent: settings.redis_recent,
                recent_ttl: Duration::from_secs(u64::from(settings.redis_recent_days) * 86_400),
                pool: settings.redis_pool,
                timeout: Duration::from_millis(settings.redis_timeout_ms),
                node_id: node_id.clone(),
                node_dead_after: Duration::from_secs(settings.node_dead_after),
                idempotency_window: engine_limits.idempotency_window,
                messages_per_second: engine_limits.messages_per_second,
                message_burst: engine_limits.message_burst,
                wait_replicas: settings.redis_wait_replicas,
            };
            redis::start(options, hub.clone(), store.clone(), timings, presenter)
                .await
                .map(|(engine, notices, _tasks)| (engine, notices))
        }
        None => memory::start(&config.data_dir, hub.clone(), store.clone(), timings, engine_limits, presenter),
    }
    .map_err(|e| StartError::Backend(e.to_string()))?;
    let chat_limits = ChatLimits {
        max_content_chars: limits.max_content_chars,
        max_attachment_bytes: limits.max_attachment_bytes,
        attachment_types: limits.attachment_types.iter().map(|t| t.trim().to_owned()).collect(),
        ..ChatLimits::default()
    };
    let service = Arc::new(ChatService::new(store.clone(), engine.clone(), chat_limits, signer));

    let store_health = Arc::new(StoreHealth::default());
    let (stop_writer, writer_stop) = watch::channel(false);
    let writer = Writer {
        log: engine.log.clone(),
        store: store.clone(),
        batch: limits.writer_batch,
        flush_interval: Duration::from_millis(limits.writer_flush_ms),
        health: store_health.clone(),
    };
    let writer_task = tokio::spawn(writer.run(writer_stop));

    let announcer = service.clone();
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            if let Err(e) = announcer.announce(notice).await {
                tracing::warn!(error = %e, "announcing a presence or typing change failed");
            }
        }
    });

    let listener = TcpListener::bind(config.addr).await.map_err(|e| StartError::Listen(config.addr, e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen(config.addr, e))?;
    let (drain, _) = watch::channel(false);
    let max_sessions = limits.max_connections.min(Semaphore::MAX_PERMITS);
    let web = config.web_dir.clone().map(StaticFiles::new);
    let drain_seconds = config.drain_seconds;
    let state = Arc::new(AppState {
        config,
        node_id: node_id.clone(),
        service,
        verifier,
        hub,
        audit,
        metrics,
        drain,
        store_health: store_health.clone(),
        sessions: Arc::new(Semaphore::new(max_sessions)),
        web,
    });

    tracing::info!(node = %node_id, engine = engine.kind, store = store.kind(), "coursechat {} listening on {addr}", env!("CARGO_PKG_VERSION"));
    println!("coursechat listening on {addr}");
    if state.config.demo {
        println!(
            "demo mode: open http://{addr}/ and pick a user, or get a token with: curl -s -X POST http://{addr}/api/dev/token -H 'content-type: application/json' -d '{{\"userId\":\"{}\"}}'",
            crate::demo::ENROLLED[0]
        );
    }

    let (http_close, http_closing) = watch::channel(false);
    let connections = accept_loop(listener, state.clone(), http_closing).await;

    // Drain: refuse, close sockets, wait for them, flush the queue, exit.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(drain_seconds);
    tracing::info!(open_sockets = state.hub.socket_count(), "draining");
    // send_replace: `send` changes nothing when no socket is subscribed, and /readyz must see it.
    state.drain.send_replace(true);
    let all_sessions = max_sessions as u32;
    let _ = tokio::time::timeout_at(deadline.into(), state.sessions.acquire_many(all_sessions)).await;
    // Open HTTP connections keep being served a little longer, so health checks on them see the
    // 503 and requests in flight finish; then they close after their current request.
    tokio::time::sleep_until((started + HTTP_LINGER).min(deadline).into()).await;
    let _ = http_close.send(true);
    let _ = tokio::time::timeout_at(deadline.into(), connections.acquire_many(MAX_HTTP_CONNECTIONS as u32)).await;
    let _ = stop_writer.send(true);
    let _ = writer_task.await;
    let flusher = Writer {
        log: engine.log.clone(),
        store,
        batch: state.config.limits.writer_batch,
        flush_interval: Duration::ZERO,
        health: store_health,
    };
    let flush_deadline = Instant::now().max(deadline) + Duration::from_secs(2);
    let flushed = flusher.flush(flush_deadline).await;
    let left = engine.log.backlog().await.unwrap_or(0);
    tracing::info!(flushed, left_in_queue = left, elapsed_ms = started.elapsed().as_millis() as u64, "drained");
    Ok(())
}

/// HTTP connections open at once (websocket sessions are counted apart, once upgraded).
const MAX_HTTP_CONNECTIONS: usize = 10_000;
/// How long open HTTP connections are still served after SIGTERM (readiness answers 503).
const HTTP_LINGER: Duration = Duration::from_millis(500);

/// Accepts until SIGTERM / SIGINT (then new connections are refused); returns the semaphore
/// whose permits the open HTTP connections hold. Those close once `closing` turns true.
async fn accept_loop(listener: TcpListener, state: Arc<AppState>, closing: watch::Receiver<bool>) -> Arc<Semaphore> {
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
        let state = state.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = {
                let state = state.clone();
                service_fn(move |req| crate::http::handle(state.clone(), req, peer))
            };
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
