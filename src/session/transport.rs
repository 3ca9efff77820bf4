//! One socket's websocket transport, owned: the TCP stream after the handshake, read into a
//! buffer of the worker thread (an idle socket holds no read buffer), frames parsed by
//! [`crate::protocol::websocket`], fragmented messages reassembled, websocket pings answered,
//! queued frames written together with one vectored write under a deadline, and the close code
//! each way a session ends gets.
//!
//! Reading is cancel-safe: [`Transport::readable`] only waits for readiness, and
//! [`Transport::read_available`] takes what the kernel has without waiting, so the session can
//! select on readiness beside its other work and nothing read is ever dropped.

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::hub::write_frames_now;
use crate::protocol::websocket::{unmask, FrameHeader, Opcode};

/// The worker thread's read buffer: every socket on the thread reads into it in turn.
const READ_BUFFER: usize = 64 * 1024;

thread_local! {
    static READ: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
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

/// What the bytes read so far amount to, in order.
pub enum Incoming {
    /// A complete text message: one Engine.IO packet.
    Text(BytesMut),
    /// A websocket ping, to be answered with its payload.
    Ping(Bytes),
    /// The transport is done.
    End(End),
}

pub struct Transport {
    /// Shared with the hub's handle, which writes frames through while the session is idle
    /// (see [`crate::hub`]); the session brackets its own writes so the two never interleave.
    stream: Arc<TcpStream>,
    /// The largest message, reassembled or not.
    max_message: usize,
    /// A write that takes longer fails the socket as a slow consumer.
    write_deadline: Duration,
    /// The bytes of a frame that has not fully arrived (empty, with no allocation, otherwise).
    partial_frame: Vec<u8>,
    /// A fragmented message being reassembled (bounded by `max_message`).
    fragments: Option<(Opcode, BytesMut)>,
    /// A write did not complete within the deadline.
    stalled: bool,
}

impl Transport {
    /// The transport of an upgraded connection: the TCP stream back out of hyper, with whatever
    /// hyper had read past the handshake.
    pub fn from_upgraded(
        upgraded: Upgraded,
        max_message: usize,
        write_deadline: Duration,
    ) -> Result<Transport, &'static str> {
        let parts = upgraded.downcast::<TokioIo<TcpStream>>().map_err(|_| "the upgraded connection is not TCP")?;
        let mut transport = Transport {
            stream: Arc::new(parts.io.into_inner()),
            max_message,
            write_deadline,
            partial_frame: Vec::new(),
            fragments: None,
            stalled: false,
        };
        if !parts.read_buf.is_empty() {
            transport.partial_frame = parts.read_buf.to_vec();
        }
        Ok(transport)
    }

    /// The stream frames may be written through to.
    pub fn stream(&self) -> Option<Arc<TcpStream>> {
        Some(self.stream.clone())
    }

    /// Whether bytes read with the handshake wait to be parsed (before waiting on the socket).
    pub fn has_buffered(&self) -> bool {
        !self.partial_frame.is_empty()
    }

    /// Resolves when the socket has bytes (or an end) to read. Cancel-safe.
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Takes what the socket has without waiting and sorts it into `out`: complete messages,
    /// pings to answer, or the end. Binary messages (attachments of BINARY_EVENT packets, which
    /// are refused) and pongs are dropped here.
    pub fn read_available(&mut self, out: &mut Vec<Incoming>) {
        READ.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            match self.stream.try_read(&mut buffer[..]) {
                Ok(0) => out.push(Incoming::End(End::TransportError)),
                Ok(n) => self.take_frames(&buffer[..n], out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.partial_frame.is_empty() {
                        self.take_frames(&[], out);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "websocket read ended");
                    out.push(Incoming::End(End::TransportError));
                }
            }
        });
    }

    /// Parses the frames in what was kept of an incomplete frame followed by `fresh`; keeps the
    /// bytes of a frame still incomplete.
    fn take_frames(&mut self, fresh: &[u8], out: &mut Vec<Incoming>) {
        let kept = std::mem::take(&mut self.partial_frame);
        let joined;
        let bytes: &[u8] = if kept.is_empty() {
            fresh
        } else {
            let mut kept = kept;
            kept.extend_from_slice(fresh);
            joined = kept;
            &joined
        };
        let mut at = 0;
        loop {
            let header = match FrameHeader::parse(&bytes[at..], self.max_message) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "bad websocket frame");
                    out.push(Incoming::End(End::ProtocolError));
                    return;
                }
            };
            let end = at + header.header_len + header.payload_len;
            if end > bytes.len() {
                break;
            }
            let mut payload = BytesMut::from(&bytes[at + header.header_len..end]);
            unmask(&mut payload, header.mask);
            at = end;
            if let Some(item) = self.on_frame(header.opcode, header.fin, payload) {
                let done = matches!(item, Incoming::End(_));
                out.push(item);
                if done {
                    return;
                }
            }
        }
        if at < bytes.len() {
            self.partial_frame = bytes[at..].to_vec();
        }
    }

    /// One frame: control frames, fragments, complete messages.
    fn on_frame(&mut self, opcode: Opcode, fin: bool, payload: BytesMut) -> Option<Incoming> {
        let message = match opcode {
            Opcode::Close => return Some(Incoming::End(End::ClientClosed)),
            Opcode::Ping => return Some(Incoming::Ping(payload.freeze())),
            Opcode::Pong => return None,
            Opcode::Continuation => {
                let Some((kind, mut buffer)) = self.fragments.take() else {
                    return Some(Incoming::End(End::ProtocolError));
                };
                if buffer.len() + payload.len() > self.max_message {
                    return Some(Incoming::End(End::ProtocolError));
                }
                buffer.extend_from_slice(&payload);
                if !fin {
                    self.fragments = Some((kind, buffer));
                    return None;
                }
                (kind, buffer)
            }
            Opcode::Text | Opcode::Binary if !fin => {
                self.fragments = Some((opcode, payload));
                return None;
            }
            Opcode::Text | Opcode::Binary => (opcode, payload),
        };
        match message {
            (Opcode::Binary, _) => None,
            (_, text) if text.len() > self.max_message => Some(Incoming::End(End::ProtocolError)),
            (_, text) => Some(Incoming::Text(text)),
        }
    }

    /// Writes one text frame.
    pub async fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write_frames(Opcode::Text, &[frame]).await
    }

    /// Writes frames back to back: vectored writes straight from the frames while the kernel
    /// takes them ([`write_frames_now`], which the hub's write-through uses too); what it
    /// does not take at once is copied into one buffer and written as the socket drains, giving
    /// up after the deadline (the ping timeout): a client that takes nothing for that long is a
    /// slow consumer (its kernel buffer is full), and waiting on it would keep the session from
    /// noticing anything else. Doing the common case without awaiting keeps the socket's task
    /// small: no write state lives in it between writes.
    pub async fn write_frames<B: AsRef<[u8]>>(&mut self, opcode: Opcode, frames: &[B]) -> io::Result<()> {
        let Some(rest) = write_frames_now(&self.stream, opcode, frames)? else { return Ok(()) };
        // Boxed: the wait (a timer and the drain) is rare, and inline it would be part of every
        // socket's task.
        Box::pin(self.write_rest(&rest)).await
    }

    /// Writes bytes already framed (the rest of a frame the hub wrote through in part).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut left = bytes;
        loop {
            match self.stream.try_write(left) {
                Ok(n) if n == left.len() => return Ok(()),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Box::pin(self.write_rest(left)).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `rest` as the socket drains, within the write deadline.
    async fn write_rest(&mut self, rest: &[u8]) -> io::Result<()> {
        let stream = &self.stream;
        let drain = async move {
            let mut left = rest;
            while !left.is_empty() {
                stream.writable().await?;
                match stream.try_write(left) {
                    Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Ok(n) => left = &left[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.write_deadline, drain).await {
            Ok(result) => result,
            Err(_) => {
                self.stalled = true;
                Err(io::Error::from(io::ErrorKind::TimedOut))
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
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason);
            let _ = self.write_frames(Opcode::Close, &[&body]).await;
        }
        let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
    }
}
