//! One socket: the Engine.IO handshake and heartbeat, the Socket.IO CONNECT with its token, the
//! event loop, the bounded write queue and the token's expiry.
//!
//! One task per socket, one timer. The task selects over: the next websocket frame, the write
//! queue, the timer (next ping, pong deadline, CONNECT deadline or token expiry, whichever is
//! first), the hub's slow-consumer signal and the node's drain signal. fastwebsockets'
//! `read_frame` is not cancel-safe (its issues #64, #113), so it is never raced and dropped: the
//! read runs in a future that owns the read half and lives across loop turns until it yields a
//! frame; only then is the next one made.
//!
//! The transport is the websocket; a second transport (HTTP long-polling) would feed the same
//! [`Session`] packets and drain the same write queue.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::auth::{AuthError, Caller, Identity};
use crate::chat::service::Draft;
use crate::chat::ChatError;
use crate::engine::Topic;
use crate::error::{ErrorBody, ErrorCode};
use crate::events::{ack_err, ack_ok, connect_error, connect_error_in, decode_client_event, error_event, ClientEvent};
use crate::hub::SocketHandle;
use crate::protocol::{EioPacket, OpenPacket, SioHeader, SioKind};
use crate::server::AppState;

type Stream = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Stream>>;
type Writer = WebSocketWrite<WriteHalf<Stream>>;
type ReadResult = Result<(OpCode, bool, BytesMut), WebSocketError>;
type ReadFuture = Pin<Box<dyn Future<Output = (Reader, ReadResult)> + Send>>;

/// Most chats one socket may have joined at once (bounds the session's room list).
const MAX_JOINED_CHATS: usize = 1024;

/// Reads one frame. Owning the read half makes this future safe to keep across `select!` turns.
fn read_next(mut reader: Reader) -> ReadFuture {
    Box::pin(async move {
        // Automatic close and pong replies are off, so the read half never needs to write.
        let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        let result = reader.read_frame(&mut no_obligations).await.map(|frame| {
            let payload = match frame.payload {
                Payload::Bytes(b) => b,
                other => BytesMut::from(&other[..]),
            };
            (frame.opcode, frame.fin, payload)
        });
        (reader, result)
    })
}

/// Why a session ended (for logs, metrics and the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    PingTimeout,
    ConnectTimeout,
    ConnectRefused,
    TokenExpired,
    SlowConsumer,
    Drain,
    ProtocolError,
    TransportError,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::PingTimeout => "ping_timeout",
            End::ConnectTimeout => "connect_timeout",
            End::ConnectRefused => "connect_refused",
            End::TokenExpired => "token_expired",
            End::SlowConsumer => "slow_consumer",
            End::Drain => "drain",
            End::ProtocolError => "protocol_error",
            End::TransportError => "transport_error",
        }
    }
}

/// Per-socket typing allowance: a token bucket of `rate` tokens refilled per second.
struct TypingBudget {
    tokens: f32,
    last: StdInstant,
}

impl TypingBudget {
    fn take(&mut self, rate: u32) -> bool {
        let now = StdInstant::now();
        let rate = rate.max(1) as f32;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f32() * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state of one authenticated socket.
struct Connected {
    caller: Caller,
    handle: Arc<SocketHandle>,
    /// When the token expires (the socket is then told and disconnected).
    expires_at: Instant,
    /// Chats this socket joined: it leaves their rooms when it closes.
    rooms: Vec<String>,
    typing: TypingBudget,
}

struct Session {
    state: Arc<AppState>,
    peer: SocketAddr,
    socket_id: u64,
    writer: Writer,
    outbound: mpsc::Receiver<Bytes>,
    outbound_tx: Option<mpsc::Sender<Bytes>>,
    connected: Option<Connected>,
    /// When the last ping went out and whether its pong is still due.
    ping_sent_at: Instant,
    awaiting_pong: bool,
    connect_deadline: Instant,
    /// A fragmented message being reassembled (bounded by the frame limit).
    partial: Option<(OpCode, BytesMut)>,
    /// A write did not complete within the ping timeout.
    stalled: bool,
}

enum Flow {
    Continue,
    End(End),
}

/// Serves one upgraded websocket until it closes.
pub async fn run(ws: WebSocket<Stream>, state: Arc<AppState>, peer: SocketAddr) {
    let socket_id: u64 = rand::random();
    let (mut reader, writer) = ws.split(tokio::io::split);
    reader.set_auto_close(false);
    reader.set_auto_pong(false);
    reader.set_max_message_size(state.config.limits.max_frame_bytes + 1);
    let (outbound_tx, outbound) = mpsc::channel(state.config.limits.socket_queue.max(1));
    let now = Instant::now();
    let mut session = Session {
        connect_deadline: now + std::time::Duration::from_millis(state.config.limits.connect_timeout_ms),
        state,
        peer,
        socket_id,
        writer,
        outbound,
        outbound_tx: Some(outbound_tx),
        connected: None,
        ping_sent_at: now,
        awaiting_pong: false,
        partial: None,
        stalled: false,
    };
    metrics::gauge!("coursechat_connections").increment(1.0);
    let end = session.serve(reader).await;
    session.finish(end).await;
    metrics::gauge!("coursechat_connections").decrement(1.0);
}

impl Session {
    async fn serve(&mut self, reader: Reader) -> End {
        let sid = format!("{:016x}", self.socket_id);
        let limits = &self.state.config.limits;
        let open = OpenPacket {
            sid: &sid,
            upgrades: [],
            ping_interval: limits.ping_interval_ms,
            ping_timeout: limits.ping_timeout_ms,
            max_payload: limits.max_frame_bytes,
        };
        if self.write(open.encode().into()).await.is_err() {
            return End::TransportError;
        }
        self.ping_sent_at = Instant::now();
        let mut drain = self.state.drain.subscribe();
        let mut read = read_next(reader);
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            timer.as_mut().reset(self.next_deadline());
            let slow = async {
                match &self.connected {
                    Some(c) => c.handle.close_requested().await,
                    None => std::future::pending().await,
                }
            };
            let flow = tokio::select! {
                biased;
                _ = crate::shutdown::flagged(&mut drain) => Flow::End(End::Drain),
                _ = slow => Flow::End(End::SlowConsumer),
                (reader, result) = &mut read => {
                    read = read_next(reader);
                    match result {
                        Ok((opcode, fin, payload)) => self.on_frame(opcode, fin, payload).await,
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, error = %e, "websocket read ended");
                            Flow::End(if matches!(e, WebSocketError::FrameTooLarge) { End::ProtocolError } else { End::TransportError })
                        }
                    }
                }
                Some(frame) = self.outbound.recv() => self.flush(frame).await,
                _ = &mut timer => self.on_timer().await,
            };
            if let Flow::End(end) = flow {
                return end;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let limits = &self.state.config.limits;
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

    async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if let Some(c) = &self.connected {
            if c.expires_at <= now {
                let body = ErrorBody::new(ErrorCode::TokenExpired, "the token has expired");
                let _ = self.write(error_event(&body, None)).await;
                let _ = self.write(Bytes::from_static(b"41")).await;
                return Flow::End(End::TokenExpired);
            }
        } else if self.connect_deadline <= now {
            return Flow::End(End::ConnectTimeout);
        }
        let limits = &self.state.config.limits;
        if self.awaiting_pong {
            if self.ping_sent_at + limits.ping_timeout() <= now {
                return Flow::End(End::PingTimeout);
            }
        } else if self.ping_sent_at + limits.ping_interval() <= now {
            self.awaiting_pong = true;
            self.ping_sent_at = now;
            if self.write(Bytes::from_static(b"2")).await.is_err() {
                return self.write_failed();
            }
        }
        Flow::Continue
    }

    /// Writes a queued frame and whatever else is already queued behind it.
    async fn flush(&mut self, first: Bytes) -> Flow {
        if self.write(first).await.is_err() {
            return self.write_failed();
        }
        for _ in 0..64 {
            match self.outbound.try_recv() {
                Ok(frame) => {
                    if self.write(frame).await.is_err() {
                        return self.write_failed();
                    }
                }
                Err(_) => break,
            }
        }
        Flow::Continue
    }

    async fn write(&mut self, frame: Bytes) -> Result<(), WebSocketError> {
        self.write_raw(Frame::text(Payload::Borrowed(&frame))).await
    }

    /// Writes one frame, giving up after the ping timeout: a client that takes nothing for that
    /// long is a slow consumer (its kernel buffer is full), and waiting on it would keep this
    /// task from noticing anything else.
    async fn write_raw(&mut self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        let limit = self.state.config.limits.ping_timeout();
        match tokio::time::timeout(limit, self.writer.write_frame(frame)).await {
            Ok(result) => result,
            Err(_) => {
                self.stalled = true;
                Err(WebSocketError::ConnectionClosed)
            }
        }
    }

    /// How a failed write ends the session.
    fn write_failed(&self) -> Flow {
        Flow::End(if self.stalled { End::SlowConsumer } else { End::TransportError })
    }

    async fn on_frame(&mut self, opcode: OpCode, fin: bool, payload: BytesMut) -> Flow {
        let max = self.state.config.limits.max_frame_bytes;
        match opcode {
            OpCode::Close => Flow::End(End::ClientClosed),
            OpCode::Ping => match self.write_raw(Frame::pong(Payload::Borrowed(&payload))).await {
                Ok(()) => Flow::Continue,
                Err(_) => self.write_failed(),
            },
            OpCode::Pong => Flow::Continue,
            OpCode::Continuation => {
                let Some((kind, mut buffer)) = self.partial.take() else {
                    return Flow::End(End::ProtocolError);
                };
                if buffer.len() + payload.len() > max {
                    return Flow::End(End::ProtocolError);
                }
                buffer.extend_from_slice(&payload);
                if fin {
                    self.on_message(kind, buffer).await
                } else {
                    self.partial = Some((kind, buffer));
                    Flow::Continue
                }
            }
            OpCode::Text | OpCode::Binary if !fin => {
                self.partial = Some((opcode, payload));
                Flow::Continue
            }
            OpCode::Text | OpCode::Binary => self.on_message(opcode, payload).await,
        }
    }

    async fn on_message(&mut self, opcode: OpCode, mut payload: BytesMut) -> Flow {
        if opcode == OpCode::Binary {
            // Binary attachments of BINARY_EVENT packets: not served (the event was refused).
            return Flow::Continue;
        }
        if payload.len() > self.state.config.limits.max_frame_bytes {
            return Flow::End(End::ProtocolError);
        }
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
                match self.write(pong.into()).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => self.write_failed(),
                }
            }
            EioPacket::Close => Flow::End(End::ClientClosed),
            EioPacket::Upgrade | EioPacket::Noop => Flow::Continue,
            EioPacket::Open(_) => Flow::End(End::ProtocolError),
            EioPacket::Message(_) => {
                // The Socket.IO packet is everything after the Engine.IO type byte.
                let sio = &mut payload[1..];
                self.on_socketio(sio).await
            }
        }
    }

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

    async fn on_connect(&mut self, namespace: Option<&str>, data: &mut [u8]) -> Flow {
        if namespace.is_some() {
            // Only `/` is served. The refusal names the namespace so that client socket hears
            // back; a socket of `/` on the same connection is unaffected.
            let _ = self.write(connect_error_in(namespace, ErrorCode::InvalidPayload, "Invalid namespace")).await;
            return Flow::Continue;
        }
        if self.connected.is_some() {
            return Flow::Continue; // `/` is connected already
        }
        #[derive(serde::Deserialize, Default)]
        struct Auth {
            #[serde(default)]
            token: Option<String>,
        }
        let auth: Auth = if data.is_empty() { Auth::default() } else { crate::json::parse(data).unwrap_or_default() };
        let identity = match auth.token.as_deref().map(|t| self.state.verifier.verify(t)) {
            Some(Ok(identity)) => identity,
            Some(Err(e)) => return self.refuse(&e).await,
            None => return self.refuse(&AuthError::Invalid("the CONNECT auth payload has no token".into())).await,
        };
        // Recording the user is best effort: a store outage must not keep anyone from chatting.
        if let Err(e) = self.state.service.sign_in(&identity.caller).await {
            tracing::warn!(error = %e, user = %identity.caller.user_id, "could not record the user at CONNECT");
        }
        self.accept(identity).await
    }

    async fn refuse(&mut self, e: &AuthError) -> Flow {
        // Socket.IO only knows these two codes at CONNECT; a missing token is an invalid one.
        let code = if e.code() == ErrorCode::TokenExpired { ErrorCode::TokenExpired } else { ErrorCode::InvalidToken };
        self.state.audit.record("socket_refused", None, None, code.as_str(), Some(self.peer));
        metrics::counter!("coursechat_errors_total", "code" => code.as_str()).increment(1);
        let _ = self.write(connect_error(code, &e.to_string())).await;
        Flow::End(End::ConnectRefused)
    }

    async fn accept(&mut self, identity: Identity) -> Flow {
        let Some(queue) = self.outbound_tx.take() else {
            return Flow::End(End::ProtocolError);
        };
        let caller = identity.caller;
        let handle = Arc::new(SocketHandle::new(self.socket_id, caller.user_id.clone(), queue));
        self.state.hub.register(handle.clone());
        // Listening starts before the CONNECT ack, so no event after it is missed.
        let _ = self.state.service.engine().bus.watch(Topic::User(caller.user_id.clone())).await;
        let expires_at = expiry_instant(identity.exp, self.state.config.jwt_leeway);
        self.connected = Some(Connected {
            caller: caller.clone(),
            handle,
            expires_at,
            rooms: Vec::new(),
            typing: TypingBudget { tokens: self.state.config.limits.typing_rate as f32, last: StdInstant::now() },
        });
        self.state.audit.record("socket_connect", Some(&caller.user_id), None, "ok", Some(self.peer));
        let ack = format!(r#"40{{"sid":"{:016x}"}}"#, self.socket_id);
        if self.write(Bytes::from(ack)).await.is_err() {
            return self.write_failed();
        }
        if let Err(e) = self.state.service.socket_opened(&caller).await {
            tracing::warn!(error = %e, "presence update failed");
        }
        Flow::Continue
    }

    async fn on_event(&mut self, ack_id: Option<u64>, data: &mut [u8]) {
        let event = match decode_client_event(data) {
            Ok(e) => e,
            Err(e) => {
                let body = ErrorBody::new(ErrorCode::InvalidPayload, e.message);
                self.reply_error(ack_id, &body, e.event.as_deref()).await;
                return;
            }
        };
        let name = event.name();
        metrics::counter!("coursechat_events_in_total", "event" => name).increment(1);
        let started = StdInstant::now();
        let result = self.dispatch(event).await;
        match result {
            Ok(reply) => {
                if name == "send_message" {
                    metrics::histogram!("coursechat_send_ack_seconds").record(started.elapsed().as_secs_f64());
                }
                if let Some(id) = ack_id {
                    let _ = self.write(reply.into_ack(id)).await;
                }
            }
            Err(e) => {
                let body = e.body();
                self.reply_error(ack_id, &body, Some(name)).await;
            }
        }
    }

    async fn reply_error(&mut self, ack_id: Option<u64>, body: &ErrorBody, event: Option<&str>) {
        metrics::counter!("coursechat_errors_total", "code" => body.code.as_str()).increment(1);
        let frame = match ack_id {
            Some(id) => ack_err(id, body),
            None => error_event(body, event),
        };
        let _ = self.write(frame).await;
    }

    async fn dispatch(&mut self, event: ClientEvent) -> Result<Reply, ChatError> {
        let state = self.state.clone();
        let service = &state.service;
        let Some(c) = self.connected.as_mut() else {
            return Err(ChatError::Forbidden("not connected".into()));
        };
        match event {
            ClientEvent::JoinChat(j) => {
                let joined = match service.join(&c.caller, &j.chat_id, j.last_seq).await {
                    Ok(joined) => joined,
                    Err(e) => {
                        let code = e.code().as_str();
                        state.audit.record(
                            "join_chat",
                            Some(&c.caller.user_id),
                            Some(&j.chat_id),
                            code,
                            Some(self.peer),
                        );
                        return Err(e);
                    }
                };
                if !c.rooms.contains(&joined.chat.id) {
                    if c.rooms.len() >= MAX_JOINED_CHATS {
                        return Err(ChatError::InvalidPayload(format!(
                            "a socket may join at most {MAX_JOINED_CHATS} chats"
                        )));
                    }
                    state.hub.join(&joined.chat.id, &c.handle);
                    service.engine().bus.watch(Topic::Room(joined.chat.id.clone())).await?;
                    c.rooms.push(joined.chat.id.clone());
                }
                let seen = joined.missed.last().map_or(joined.chat.last_seq, |m| m.seq);
                service.engine().bus.track(&c.caller.user_id, &joined.chat.id, seen);
                state.audit.record("join_chat", Some(&c.caller.user_id), Some(&joined.chat.id), "ok", Some(self.peer));
                Reply::json(&joined)
            }
            ClientEvent::LeaveChat(l) => {
                state.hub.leave(&l.chat_id, c.handle.id);
                if c.rooms.contains(&l.chat_id) {
                    service.engine().bus.unwatch(Topic::Room(l.chat_id.clone())).await;
                }
                c.rooms.retain(|r| *r != l.chat_id);
                Ok(Reply::Ok)
            }
            ClientEvent::SendMessage(s) => {
                let draft = Draft {
                    chat_id: s.chat_id,
                    client_msg_id: s.client_msg_id,
                    content: s.content,
                    kind: s.kind,
                    attachment_id: s.attachment_id,
                };
                let message = service.send(&c.caller, draft, Some(c.handle.id)).await?;
                #[derive(Serialize)]
                struct Sent<'a> {
                    message: &'a crate::model::Message,
                }
                Reply::json(&Sent { message: &message })
            }
            ClientEvent::TypingStart(t) | ClientEvent::TypingStop(t)
                if !c.typing.take(state.config.limits.typing_rate) =>
            {
                let _ = t;
                Err(ChatError::RateLimited(std::time::Duration::from_millis(
                    1000 / u64::from(state.config.limits.typing_rate.max(1)),
                )))
            }
            ClientEvent::TypingStart(t) => {
                service.typing(&c.caller, &t.chat_id, true, c.handle.id).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::TypingStop(t) => {
                service.typing(&c.caller, &t.chat_id, false, c.handle.id).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::MarkRead(m) => {
                service.mark_read(&c.caller, &m.chat_id, m.seq).await?;
                Ok(Reply::Ok)
            }
            ClientEvent::RefreshToken(r) => {
                let identity = state.verifier.verify(&r.token)?;
                if identity.caller.user_id != c.caller.user_id {
                    return Err(ChatError::Forbidden("the new token names another user".into()));
                }
                c.expires_at = expiry_instant(identity.exp, state.config.jwt_leeway);
                c.caller.role = identity.caller.role;
                #[derive(Serialize)]
                struct Refreshed {
                    exp: u64,
                }
                Reply::json(&Refreshed { exp: identity.exp })
            }
        }
    }

    /// Leaves the hub and presence, and closes the transport.
    async fn finish(&mut self, end: End) {
        metrics::counter!("coursechat_disconnects_total", "reason" => end.as_str()).increment(1);
        if let Some(c) = self.connected.take() {
            self.state.hub.unregister(&c.handle, &c.rooms);
            let bus = &self.state.service.engine().bus;
            for room in &c.rooms {
                bus.unwatch(Topic::Room(room.clone())).await;
            }
            bus.unwatch(Topic::User(c.caller.user_id.clone())).await;
            if let Err(e) = self.state.service.socket_closed(&c.caller.user_id).await {
                tracing::warn!(error = %e, "presence update failed");
            }
            self.state.audit.record("socket_disconnect", Some(&c.caller.user_id), None, end.as_str(), Some(self.peer));
        }
        let (code, reason): (u16, &[u8]) = match end {
            End::Drain => (1001, b"server draining"),
            End::SlowConsumer => (1008, b"slow consumer"),
            End::ProtocolError => (1002, b"protocol error"),
            End::PingTimeout => (1000, b"ping timeout"),
            _ => (1000, b""),
        };
        if end != End::TransportError && !self.stalled {
            let _ = self.write_raw(Frame::close(code, reason)).await;
        }
    }
}

/// What a successful event answers in its ack.
enum Reply {
    Ok,
    Json(Bytes),
}

impl Reply {
    fn json<T: Serialize>(body: &T) -> Result<Reply, ChatError> {
        // Encoded here once, wrapped into the ack frame below.
        let value = serde_json::to_vec(body).map_err(|e| ChatError::InvalidPayload(e.to_string()))?;
        Ok(Reply::Json(value.into()))
    }

    fn into_ack(self, id: u64) -> Bytes {
        match self {
            Reply::Ok => ack_ok(id, &serde_json::json!({})),
            Reply::Json(body) => {
                // `{...}` becomes `{"ok":true,...}`.
                let mut data = Vec::with_capacity(body.len() + 12);
                data.extend_from_slice(b"[{\"ok\":true");
                if body.len() > 2 {
                    data.push(b',');
                    data.extend_from_slice(&body[1..body.len() - 1]);
                }
                data.extend_from_slice(b"}]");
                Bytes::from(crate::protocol::encode_frame(SioKind::Ack, Some(id), &data))
            }
        }
    }
}

/// The instant a live socket's token counts as expired: `exp` (seconds since the epoch) plus the
/// clock leeway, the same rule that admitted the token at CONNECT, so a token is never accepted
/// and cut off in the same instant.
fn expiry_instant(exp: u64, leeway_secs: u64) -> Instant {
    let now_ms = crate::model::time::Timestamp::now().millis().max(0) as u64;
    let left = ((exp + leeway_secs) * 1000).saturating_sub(now_ms);
    Instant::now() + std::time::Duration::from_millis(left)
}
