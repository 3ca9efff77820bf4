//! One socket: the Engine.IO handshake and heartbeat, the Socket.IO CONNECT with its token
//! ([`connect`]), the client's events ([`dispatch`]), the bounded write queue and the token's
//! expiry, over the websocket [`transport`].
//!
//! One task per socket, one timer. The task selects over: the node's drain notice, the next
//! websocket frame, the hub's handle (frames queued, or a close asked for: a slow consumer), and
//! the timer (next ping, pong deadline, CONNECT deadline or token expiry, whichever is first).
//! What runs rarely (the timer's handler, websocket pongs, a write waiting on a full socket
//! buffer) is boxed, so an idle socket's task stays small. Frames for an idle socket are
//! written through by the hub; the session brackets its own writes so the two never interleave.
//! Every packet the session writes is encoded by [`crate::protocol`] (through
//! [`crate::events`] for Socket.IO ones).
//!
//! A second transport (HTTP long-polling) would feed the same packets in and drain the same
//! write queue.

mod connect;
mod dispatch;
mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use tokio::time::{sleep_until, Instant};

use crate::auth::Caller;
use crate::error::{ErrorBody, ErrorCode};
use crate::events::{disconnect, error_event};
use crate::hub::SocketHandle;
use crate::node::Node;
use crate::protocol::websocket::Opcode;
use crate::protocol::{EioPacket, OpenPacket, SioHeader, SioKind};
use transport::{End, Incoming, Transport};

/// The state of one authenticated socket.
struct Connected {
    caller: Caller,
    handle: Arc<SocketHandle>,
    /// When the token expires (the socket is then told and disconnected).
    expires_at: Instant,
}

struct Session {
    node: Arc<Node>,
    peer: SocketAddr,
    socket_id: u64,
    transport: Transport,
    /// Frames taken from the hub's queue for this socket, being written (swapped with that
    /// queue, so the two deques are reused).
    writing: VecDeque<Bytes>,
    connected: Option<Connected>,
    /// When the last ping went out and whether its pong is still due.
    ping_sent_at: Instant,
    awaiting_pong: bool,
    connect_deadline: Instant,
    /// What one read yielded, handled in order (kept to reuse its allocation).
    incoming: Vec<Incoming>,
}

enum Flow {
    Continue,
    End(End),
}

/// Serves one upgraded websocket until it closes.
pub async fn run(upgraded: Upgraded, node: Arc<Node>, peer: SocketAddr) {
    let socket_id: u64 = rand::random();
    let limits = &node.config.limits;
    let transport = match Transport::from_upgraded(upgraded, limits.max_frame_bytes, limits.ping_timeout()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%peer, error = e, "cannot serve this websocket");
            return;
        }
    };
    let now = Instant::now();
    let mut session = Session {
        connect_deadline: now + std::time::Duration::from_millis(limits.connect_timeout_ms),
        transport,
        node,
        peer,
        socket_id,
        writing: VecDeque::new(),
        connected: None,
        ping_sent_at: now,
        awaiting_pong: false,
        incoming: Vec::new(),
    };
    metrics::gauge!("coursechat_connections").increment(1.0);
    let end = session.serve().await;
    Box::pin(session.finish(end)).await;
    metrics::gauge!("coursechat_connections").decrement(1.0);
}

impl Session {
    async fn serve(&mut self) -> End {
        let open = {
            let sid = format!("{:016x}", self.socket_id);
            let limits = &self.node.config.limits;
            OpenPacket {
                sid: &sid,
                upgrades: [],
                ping_interval: limits.ping_interval_ms,
                ping_timeout: limits.ping_timeout_ms,
                max_payload: limits.max_frame_bytes,
            }
            .encode()
        };
        if self.transport.write(&open).await.is_err() {
            return End::TransportError;
        }
        drop(open);
        self.ping_sent_at = Instant::now();
        if self.transport.has_buffered() {
            if let Flow::End(end) = self.on_readable().await {
                return end;
            }
        }
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            timer.as_mut().reset(self.next_deadline());
            // Made before the flag is read: a drain that starts after the read still wakes it.
            let drain = self.node.draining.notified();
            if self.node.is_draining() {
                return End::Drain;
            }
            let queued = async {
                match &self.connected {
                    Some(c) => c.handle.frames_ready().await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                biased;
                _ = drain => Flow::End(End::Drain),
                ready = self.transport.readable() => match ready {
                    Ok(()) => self.on_readable().await,
                    Err(_) => Flow::End(End::TransportError),
                },
                _ = queued => match &self.connected {
                    Some(c) if c.handle.close_requested() => Flow::End(End::SlowConsumer),
                    _ => self.flush().await,
                },
                // Boxed: it runs once a ping interval, and inline it would size every task.
                _ = &mut timer => Box::pin(self.on_timer()).await,
            };
            if let Flow::End(end) = flow {
                return end;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let limits = &self.node.config.limits;
        let ping = if self.awaiting_pong {
            self.ping_sent_at + limits.ping_timeout()
        } else {
            self.ping_sent_at + limits.ping_interval()
        };
        match &self.connected {
            Some(c) => ping.min(c.expires_at),
            None => ping.min(self.connect_deadline),
        }
    }

    /// The heartbeat (ping, then the pong deadline), the CONNECT deadline and the token's expiry.
    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if let Some(c) = &self.connected {
            if c.expires_at <= now {
                let body = ErrorBody::new(ErrorCode::TokenExpired, "the token has expired");
                let _ = self.write(&error_event(&body, None)).await;
                let _ = self.write(&disconnect()).await;
                return Flow::End(End::TokenExpired);
            }
        } else if self.connect_deadline <= now {
            return Flow::End(End::ConnectTimeout);
        }
        let limits = &self.node.config.limits;
        if self.awaiting_pong {
            if self.ping_sent_at + limits.ping_timeout() <= now {
                return Flow::End(End::PingTimeout);
            }
        } else if self.ping_sent_at + limits.ping_interval() <= now {
            self.awaiting_pong = true;
            self.ping_sent_at = now;
            return self.send(&EioPacket::Ping(b"").encode()).await;
        }
        Flow::Continue
    }

    /// Writes every frame the hub queued for this socket, back to back.
    async fn flush(&mut self) -> Flow {
        let Some(c) = &self.connected else { return Flow::Continue };
        let rest = c.handle.begin_write(Some(&mut self.writing));
        let written = write_after(&mut self.transport, rest, Opcode::Text, self.writing.make_contiguous()).await;
        c.handle.end_write();
        self.writing.clear();
        if self.writing.capacity() > 64 {
            self.writing = VecDeque::new(); // a burst is over: give its room back
        }
        match written {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End(self.transport.failure()),
        }
    }

    /// What the socket has to read: messages in order, pings answered.
    async fn on_readable(&mut self) -> Flow {
        let mut incoming = std::mem::take(&mut self.incoming);
        self.transport.read_available(&mut incoming);
        let mut flow = Flow::Continue;
        for item in incoming.drain(..) {
            flow = match item {
                // Boxed: the whole event path (rules, engine, store) would otherwise be inline in
                // every socket's task, idle or not, which is most of its size.
                Incoming::Text(text) => Box::pin(self.on_packet(text)).await,
                // Boxed too (clients rarely send websocket pings; Engine.IO has its own).
                Incoming::Ping(payload) => match Box::pin(self.write_own(Opcode::Pong, &[&payload])).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::End(self.transport.failure()),
                },
                Incoming::End(end) => Flow::End(end),
            };
            if matches!(flow, Flow::End(_)) {
                break;
            }
        }
        incoming.clear();
        self.incoming = incoming;
        flow
    }

    async fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.write_own(Opcode::Text, &[frame]).await
    }

    /// Writes frames of the session's own; once connected, the hub writes nothing through
    /// meanwhile, and what it wrote through in part is finished first.
    async fn write_own<B: AsRef<[u8]>>(&mut self, opcode: Opcode, frames: &[B]) -> std::io::Result<()> {
        let Some(c) = &self.connected else { return self.transport.write_frames(opcode, frames).await };
        let rest = c.handle.begin_write(None);
        let written = write_after(&mut self.transport, rest, opcode, frames).await;
        c.handle.end_write();
        written
    }

    /// Writes a frame; a failed write ends the session.
    async fn send(&mut self, frame: &[u8]) -> Flow {
        match self.write(frame).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End(self.transport.failure()),
        }
    }

    /// One Engine.IO packet.
    async fn on_packet(&mut self, mut payload: BytesMut) -> Flow {
        let packet = match EioPacket::decode(&payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "bad Engine.IO packet");
                return Flow::End(End::ProtocolError);
            }
        };
        match packet {
            EioPacket::Pong(_) => {
                self.awaiting_pong = false;
                Flow::Continue
            }
            EioPacket::Ping(data) => {
                let pong = EioPacket::Pong(data).encode();
                self.send(&pong).await
            }
            EioPacket::Close => Flow::End(End::ClientClosed),
            EioPacket::Upgrade | EioPacket::Noop => Flow::Continue,
            EioPacket::Open(_) => Flow::End(End::ProtocolError),
            // The Socket.IO packet is everything after the Engine.IO type byte.
            EioPacket::Message(_) => self.on_socketio(&mut payload[1..]).await,
        }
    }

    /// One Socket.IO packet.
    async fn on_socketio(&mut self, packet: &mut [u8]) -> Flow {
        let header = match SioHeader::decode(packet) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "bad Socket.IO packet");
                return Flow::End(End::ProtocolError);
            }
        };
        let data = &mut packet[header.data_offset..];
        if header.namespace.is_some() && header.kind != SioKind::Connect {
            return Flow::Continue; // packets of a namespace that was refused
        }
        match header.kind {
            SioKind::Connect => self.on_connect(header.namespace.as_deref(), data).await,
            SioKind::Disconnect => Flow::End(End::ClientClosed),
            SioKind::Event if self.connected.is_some() => {
                self.on_event(header.ack_id, data).await;
                Flow::Continue
            }
            SioKind::BinaryEvent if self.connected.is_some() => {
                let body = ErrorBody::new(ErrorCode::InvalidPayload, "binary payloads are not supported");
                self.reply_error(header.ack_id, &body, None).await;
                Flow::Continue
            }
            // Acks from the client (the server asks for none), and anything before CONNECT.
            _ => Flow::Continue,
        }
    }

    /// Leaves the node (hub, bus, presence), and closes the transport.
    async fn finish(&mut self, end: End) {
        metrics::counter!("coursechat_disconnects_total", "reason" => end.as_str()).increment(1);
        if let Some(c) = self.connected.take() {
            // Nothing is written through from here on; a frame written through in part is
            // finished, so the close frame follows whole frames.
            c.handle.detach();
            if let Some(rest) = c.handle.begin_write(None) {
                let _ = self.transport.write_raw(&rest).await;
            }
            self.node.disconnect(&c.handle).await;
            self.node.audit.record("socket_disconnect", Some(&c.caller.user_id), None, end.as_str(), Some(self.peer));
        }
        self.transport.close(end).await;
    }
}

/// Writes the rest of a frame the hub wrote through in part, if any, then `frames`.
async fn write_after<B: AsRef<[u8]>>(
    transport: &mut Transport,
    rest: Option<Bytes>,
    opcode: Opcode,
    frames: &[B],
) -> std::io::Result<()> {
    if let Some(rest) = rest {
        transport.write_raw(&rest).await?;
    }
    transport.write_frames(opcode, frames).await
}
