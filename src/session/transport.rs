//! One socket's websocket transport: reading frames without losing one to cancellation,
//! reassembling fragmented messages, answering websocket pings, writing with a deadline, and the
//! close code each way a session ends gets.
//!
//! fastwebsockets' `read_frame` is not cancel-safe (its issues #64, #113), so it is never raced
//! and dropped: [`read_next`] makes a future that owns the read half and lives across the
//! session's `select!` turns until it yields a frame; only then is the next one made.

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};

pub type Stream = TokioIo<Upgraded>;
pub type Reader = WebSocketRead<ReadHalf<Stream>>;
type Writer = WebSocketWrite<WriteHalf<Stream>>;
pub type ReadResult = Result<(OpCode, bool, BytesMut), WebSocketError>;
pub type ReadFuture = Pin<Box<dyn Future<Output = (Reader, ReadResult)> + Send>>;

/// Reads one frame. Owning the read half makes this future safe to keep across `select!` turns.
pub fn read_next(mut reader: Reader) -> ReadFuture {
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

/// Why a session ended (for logs, metrics and the audit log), and so how its transport closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
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
    pub fn as_str(self) -> &'static str {
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

    /// The websocket close code and reason.
    fn close_frame(self) -> (u16, &'static [u8]) {
        match self {
            End::Drain => (1001, b"server draining"),
            End::SlowConsumer => (1008, b"slow consumer"),
            End::ProtocolError => (1002, b"protocol error"),
            End::PingTimeout => (1000, b"ping timeout"),
            _ => (1000, b""),
        }
    }
}

/// What a websocket frame amounts to once control frames and fragments are dealt with.
pub enum Incoming {
    /// A complete text message: one Engine.IO packet.
    Text(BytesMut),
    /// Nothing for the session (a control frame, a fragment, a binary attachment).
    Nothing,
    /// The transport is done.
    End(End),
}

/// The write half of one socket and the state of the frames it reads.
pub struct Transport {
    writer: Writer,
    /// The largest message, reassembled or not.
    max_message: usize,
    /// A write that takes longer fails the socket as a slow consumer.
    write_deadline: std::time::Duration,
    /// A fragmented message being reassembled (bounded by `max_message`).
    partial: Option<(OpCode, BytesMut)>,
    /// A write did not complete within the deadline.
    stalled: bool,
}

impl Transport {
    pub fn new(writer: Writer, max_message: usize, write_deadline: std::time::Duration) -> Self {
        Transport { writer, max_message, write_deadline, partial: None, stalled: false }
    }

    /// Sorts one read frame: answers websocket pings, reassembles fragments, drops binary
    /// frames (attachments of BINARY_EVENT packets, which are refused).
    pub async fn on_frame(&mut self, opcode: OpCode, fin: bool, payload: BytesMut) -> Incoming {
        let message = match opcode {
            OpCode::Close => return Incoming::End(End::ClientClosed),
            OpCode::Ping => {
                return match self.write_raw(Frame::pong(Payload::Borrowed(&payload))).await {
                    Ok(()) => Incoming::Nothing,
                    Err(_) => Incoming::End(self.failure()),
                }
            }
            OpCode::Pong => return Incoming::Nothing,
            OpCode::Continuation => {
                let Some((kind, mut buffer)) = self.partial.take() else {
                    return Incoming::End(End::ProtocolError);
                };
                if buffer.len() + payload.len() > self.max_message {
                    return Incoming::End(End::ProtocolError);
                }
                buffer.extend_from_slice(&payload);
                if !fin {
                    self.partial = Some((kind, buffer));
                    return Incoming::Nothing;
                }
                (kind, buffer)
            }
            OpCode::Text | OpCode::Binary if !fin => {
                self.partial = Some((opcode, payload));
                return Incoming::Nothing;
            }
            OpCode::Text | OpCode::Binary => (opcode, payload),
        };
        match message {
            (OpCode::Binary, _) => Incoming::Nothing,
            (_, text) if text.len() > self.max_message => Incoming::End(End::ProtocolError),
            (_, text) => Incoming::Text(text),
        }
    }

    /// Writes one text frame.
    pub async fn write(&mut self, frame: &[u8]) -> Result<(), WebSocketError> {
        self.write_raw(Frame::text(Payload::Borrowed(frame))).await
    }

    /// Writes one frame, giving up after the deadline (the ping timeout): a client that takes
    /// nothing for that long is a slow consumer (its kernel buffer is full), and waiting on it
    /// would keep the session from noticing anything else.
    async fn write_raw(&mut self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        match tokio::time::timeout(self.write_deadline, self.writer.write_frame(frame)).await {
            Ok(result) => result,
            Err(_) => {
                self.stalled = true;
                Err(WebSocketError::ConnectionClosed)
            }
        }
    }

    /// How a failed write ends the session.
    pub fn failure(&self) -> End {
        if self.stalled {
            End::SlowConsumer
        } else {
            End::TransportError
        }
    }

    /// Sends the close frame `end` calls for, unless the transport is broken or stalled.
    pub async fn close(&mut self, end: End) {
        if end != End::TransportError && !self.stalled {
            let (code, reason) = end.close_frame();
            let _ = self.write_raw(Frame::close(code, reason)).await;
        }
    }
}
