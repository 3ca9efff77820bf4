//! A benchmark peer for coursechat: the slice of the wire contract that `coursechat-load` drives
//! (the admin API, `POST /api/chats`, Socket.IO CONNECT / `join_chat` / `send_message` /
//! `message_received`), on socketioxide + axum as socketioxide's docs set them up, with every
//! check coursechat makes on that path, and everything in memory.
//!
//!   CHAT_JWT_SECRET=... peer-socketioxide [--port 8080] [--host 127.0.0.1]
//!   CHAT_JWT_SECRET=... REDIS_URL=redis://127.0.0.1:6379 peer-socketioxide --port 8081   (one node of many)
//!
//! With `REDIS_URL` this is one node of a cluster: the state lives in Redis (`cluster.rs`, keys
//! under `PEER_REDIS_PREFIX`, default `peer:`; `PEER_RECENT` messages per chat for join's missed,
//! default 1000) and Socket.IO's fan-out between nodes is `socketioxide-redis`'s adapter.
//!
//! Prints `listening on <addr>` when ready; SIGTERM or Ctrl-C stops it.

mod auth;
mod chat;
mod cluster;
mod error;
mod http;
mod sockets;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

use crate::auth::{Caller, Verifier};
use crate::chat::{ChatService, Course, Enrollment, Limits, User};
use crate::cluster::RedisChatService;
use crate::error::ChatError;

/// The state every REST and Socket.IO handler shares.
pub struct Shared {
    pub chats: Chats,
    pub verifier: Verifier,
}

/// The chat rules over this process's memory, or (cluster mode) over Redis.
pub enum Chats {
    Memory(ChatService),
    Redis(RedisChatService),
}

/// The calls whose answers are the same in both modes; the socket and REST layers match on the
/// mode for the others (their answers hold messages, kept differently by each).
impl Chats {
    pub async fn sign_in(&self, caller: &Caller) -> Result<(), ChatError> {
        match self {
            Chats::Memory(c) => {
                c.sign_in(caller);
                Ok(())
            }
            Chats::Redis(c) => c.sign_in(caller).await,
        }
    }

    pub async fn put_user(&self, caller: &Caller, user: User) -> Result<User, ChatError> {
        match self {
            Chats::Memory(c) => c.put_user(caller, user),
            Chats::Redis(c) => c.put_user(caller, user).await,
        }
    }

    pub async fn put_course(&self, caller: &Caller, course: Course) -> Result<Course, ChatError> {
        match self {
            Chats::Memory(c) => c.put_course(caller, course),
            Chats::Redis(c) => c.put_course(caller, course).await,
        }
    }

    pub async fn put_enrollment(
        &self,
        caller: &Caller,
        user_id: &str,
        course_id: &str,
    ) -> Result<Enrollment, ChatError> {
        match self {
            Chats::Memory(c) => c.put_enrollment(caller, user_id, course_id),
            Chats::Redis(c) => c.put_enrollment(caller, user_id, course_id).await,
        }
    }
}

pub type App = Arc<Shared>;

/// Frames queued for one socket (coursechat's CHAT_SOCKET_QUEUE default); past it socketioxide
/// refuses the emit for that socket.
const SOCKET_QUEUE: usize = 256;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("peer-socketioxide: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let (host, port) = address()?;
    let secret = std::env::var("CHAT_JWT_SECRET").ok().filter(|s| !s.is_empty()).ok_or("set CHAT_JWT_SECRET")?;
    // The same settings, with the same defaults, as coursechat.
    let limits = Limits {
        max_content_chars: setting("CHAT_MAX_CONTENT_CHARS", 4000)?,
        message_rate: setting("CHAT_MESSAGE_RATE", NonZeroU32::new(10).ok_or("rate")?)?,
        message_burst: setting("CHAT_MESSAGE_BURST", NonZeroU32::new(20).ok_or("burst")?)?,
    };
    let max_frame: usize = setting("CHAT_MAX_FRAME_BYTES", 65536)?;
    let verifier = Verifier::new(secret.as_bytes(), setting("CHAT_JWT_LEEWAY", 5)?);
    let builder = |app: &App| {
        SocketIo::builder()
            .max_buffer_size(SOCKET_QUEUE)
            .max_payload(max_frame as u64)
            .ws_max_message_size(max_frame)
            .with_state(app.clone())
    };

    let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        let app: App = Arc::new(Shared { chats: Chats::Memory(ChatService::new(limits)), verifier });
        let forget = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                if let Chats::Memory(chats) = &forget.chats {
                    chats.forget_idle_budgets();
                }
            }
        });
        let (layer, io) = builder(&app).build_layer();
        sockets::attach(&io);
        return serve(app, layer, io, max_frame, &host, port, "").await;
    };

    // Cluster mode. Two clients: the adapter's (RESP3, which socketioxide-redis needs for its
    // pub/sub) and the state's (a reconnecting multiplexed connection).
    let state = redis::Client::open(url.as_str()).map_err(|e| format!("REDIS_URL: {e}"))?;
    let pubsub_url = if url.contains("protocol=") {
        url.clone()
    } else {
        format!("{url}{}protocol=resp3", if url.contains('?') { '&' } else { '?' })
    };
    let pubsub = redis::Client::open(pubsub_url).map_err(|e| format!("REDIS_URL: {e}"))?;
    let prefix = std::env::var("PEER_REDIS_PREFIX").unwrap_or_else(|_| "peer:".into());
    let chats = RedisChatService::connect(state, prefix, setting("PEER_RECENT", 1000)?, limits).await?;
    let app: App = Arc::new(Shared { chats: Chats::Redis(chats), verifier });
    let adapter = RedisAdapterCtr::new_with_redis(&pubsub).await.map_err(|e| format!("redis adapter: {e}"))?;
    let builder: SocketIoBuilder<RedisAdapter<_>> = builder(&app).with_adapter::<RedisAdapter<_>>(adapter);
    let (layer, io) = builder.build_layer();
    sockets::attach(&io).await.map_err(|e| format!("redis adapter: {e}"))?;
    serve(app, layer, io, max_frame, &host, port, ", redis cluster mode").await
}

async fn serve<A: Adapter>(
    app: App,
    layer: SocketIoLayer<A>,
    io: SocketIo<A>,
    max_frame: usize,
    host: &str,
    port: u16,
    mode: &str,
) -> Result<(), String> {
    let router = http::router(app, io).layer(DefaultBodyLimit::max(max_frame)).layer(layer);
    let listener = tokio::net::TcpListener::bind((host, port)).await.map_err(|e| format!("bind {host}:{port}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("peer-socketioxide{mode} listening on {local}");
    axum::serve(listener, router).with_graceful_shutdown(stopped()).await.map_err(|e| format!("serve: {e}"))
}

/// `--port` / `PORT` (default 8080) and `--host` / `HOST` (default 127.0.0.1).
fn address() -> Result<(String, u16), String> {
    let mut host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let mut port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value,
            "--host" => host = value,
            other => return Err(format!("unknown flag {other} (use --port N, --host ADDR)")),
        }
    }
    let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok((host, port))
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}: bad value {v:?}")),
        Err(_) => Ok(default),
    }
}

async fn stopped() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
