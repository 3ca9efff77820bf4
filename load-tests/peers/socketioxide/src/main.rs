//! A benchmark peer for coursechat: the slice of the wire contract that `coursechat-load` drives
//! (the admin API, `POST /api/chats`, Socket.IO CONNECT / `join_chat` / `send_message` /
//! `message_received`), on socketioxide + axum as socketioxide's docs set them up, with every
//! check coursechat makes on that path, and everything in memory.
//!
//!   CHAT_JWT_SECRET=... peer-socketioxide [--port 8080] [--host 127.0.0.1]
//!
//! Prints `listening on <addr>` when ready; SIGTERM or Ctrl-C stops it.

mod auth;
mod chat;
mod error;
mod http;
mod sockets;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use socketioxide::SocketIo;

use crate::auth::Verifier;
use crate::chat::{ChatService, Limits};

/// The state every REST and Socket.IO handler shares.
pub struct Shared {
    pub chats: ChatService,
    pub verifier: Verifier,
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
    let app: App = Arc::new(Shared {
        chats: ChatService::new(limits),
        verifier: Verifier::new(secret.as_bytes(), setting("CHAT_JWT_LEEWAY", 5)?),
    });

    let (layer, io) = SocketIo::builder()
        .max_buffer_size(SOCKET_QUEUE)
        .max_payload(max_frame as u64)
        .ws_max_message_size(max_frame)
        .with_state(app.clone())
        .build_layer();
    sockets::attach(&io);
    let router = http::router(app.clone(), io).layer(DefaultBodyLimit::max(max_frame)).layer(layer);

    let forget = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            forget.chats.forget_idle_budgets();
        }
    });

    let listener =
        tokio::net::TcpListener::bind((host.as_str(), port)).await.map_err(|e| format!("bind {host}:{port}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("peer-socketioxide listening on {local}");
    axum::serve(listener, router)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| format!("serve: {e}"))
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
