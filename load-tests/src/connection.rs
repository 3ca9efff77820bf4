//! One connection to the server: TCP, the WebSocket upgrade, the Engine.IO/Socket.IO handshake
//! with the caller's token, and then text frames in and out.
//!
//! After the upgrade the WebSocket is split. The read half is read by one reader at a time; the
//! write half sits behind an async mutex, so pongs from the reader and sends from a student's
//! schedule never interleave inside a frame. WebSocket-level pings and close replies (the
//! "obligated sends" of fastwebsockets) go through that same mutex.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use fastwebsockets::{handshake, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, ORIGIN, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::protocol::{self, ConnectErrorBody, Packet};

/// Where and how to connect; the same for every socket of the run.
pub struct Target {
    /// The server, resolved once (no DNS per socket).
    pub addr: SocketAddr,
    /// `Host` header: the authority of `--url`.
    pub authority: String,
    /// Local address to bind before connecting (more than ~28k sockets to one server port
    /// need several source addresses).
    pub source_ip: Option<IpAddr>,
    /// `Origin` header, for servers that check `CHAT_ALLOWED_ORIGINS`.
    pub origin: Option<String>,
}

type Io = TokioIo<Upgraded>;
pub type Reader = FragmentCollectorRead<tokio::io::ReadHalf<Io>>;
pub type Writer = tokio::sync::Mutex<WebSocketWrite<tokio::io::WriteHalf<Io>>>;

/// Why a socket could not be opened; [`ConnectError::key`] is its counter in the summary.
#[derive(Debug)]
pub enum ConnectError {
    Tcp(io::Error),
    Upgrade(WebSocketError),
    Timeout,
    /// CONNECT_ERROR with this code (`invalid_token`, `token_expired`, ...).
    Refused(String),
    Protocol(String),
    Closed,
}

impl ConnectError {
    pub fn key(&self) -> String {
        match self {
            ConnectError::Tcp(e) => format!("connect:tcp_{}", io_kind(e)),
            ConnectError::Upgrade(WebSocketError::InvalidStatusCode(status)) => {
                format!("connect:http_{status}")
            }
            ConnectError::Upgrade(_) => "connect:upgrade".to_string(),
            ConnectError::Timeout => "connect:timeout".to_string(),
            ConnectError::Refused(code) => format!("connect_error:{code}"),
            ConnectError::Protocol(_) => "connect:protocol".to_string(),
            ConnectError::Closed => "connect:closed".to_string(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "tcp: {e}"),
            ConnectError::Upgrade(e) => write!(f, "websocket upgrade: {e}"),
            ConnectError::Timeout => write!(f, "no Socket.IO CONNECT ack in time"),
            ConnectError::Refused(code) => write!(f, "CONNECT_ERROR {code}"),
            ConnectError::Protocol(text) => write!(f, "protocol: {text}"),
            ConnectError::Closed => write!(f, "closed during the handshake"),
        }
    }
}

fn io_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused".into(),
        io::ErrorKind::ConnectionReset => "reset".into(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => "no_local_port".into(),
        _ if e.raw_os_error() == Some(24) => "too_many_open_files".into(),
        kind => format!("{kind:?}").to_lowercase(),
    }
}

/// hyper runs the upgrade's connection future on the tokio runtime.
struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// TCP connect, WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with the token.
pub async fn open(target: &Target, token: &str) -> Result<(Reader, Writer), ConnectError> {
    let socket =
        if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(ConnectError::Tcp)?;
    if let Some(ip) = target.source_ip {
        socket.bind(SocketAddr::new(ip, 0)).map_err(ConnectError::Tcp)?;
    }
    let stream: TcpStream = socket.connect(target.addr).await.map_err(ConnectError::Tcp)?;
    stream.set_nodelay(true).map_err(ConnectError::Tcp)?;

    let mut request = Request::builder()
        .method("GET")
        .uri(protocol::ENGINE_PATH)
        .header(HOST, &target.authority)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13");
    if let Some(origin) = &target.origin {
        request = request.header(ORIGIN, origin);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let (ws, _) = handshake::client(&SpawnExecutor, request, stream).await.map_err(ConnectError::Upgrade)?;
    let (read, write) = ws.split(tokio::io::split);
    let mut reader = FragmentCollectorRead::new(read);
    let writer = tokio::sync::Mutex::new(write);

    // The server speaks first: Engine.IO open.
    match next_text(&mut reader, &writer).await {
        Ok(Some(text)) if text.starts_with('0') => {}
        Ok(Some(text)) => return Err(ConnectError::Protocol(format!("expected Engine.IO open, got {text:?}"))),
        Ok(None) | Err(_) => return Err(ConnectError::Closed),
    }
    write_text(&writer, protocol::connect(token)).await.map_err(|_| ConnectError::Closed)?;
    loop {
        let text = match next_text(&mut reader, &writer).await {
            Ok(Some(text)) => text,
            Ok(None) | Err(_) => return Err(ConnectError::Closed),
        };
        match protocol::decode(&text) {
            Ok(Packet::Connect(_)) => return Ok((reader, writer)),
            Ok(Packet::ConnectError(data)) => {
                let code = serde_json::from_str::<ConnectErrorBody>(data)
                    .ok()
                    .and_then(|b| b.data)
                    .map_or_else(|| "no_code".to_string(), |d| d.code);
                return Err(ConnectError::Refused(code));
            }
            Ok(Packet::Ping) => {
                write_text(&writer, protocol::PONG.to_string()).await.map_err(|_| ConnectError::Closed)?
            }
            Ok(Packet::Close | Packet::Disconnect) => return Err(ConnectError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ConnectError::Protocol(e.to_string())),
        }
    }
}

/// The next text message, `None` once the peer closed the WebSocket. WebSocket pings are
/// answered on the way (the obligated sends go through the shared write half).
pub async fn next_text(reader: &mut Reader, writer: &Writer) -> Result<Option<String>, WebSocketError> {
    loop {
        let frame = reader
            .read_frame::<_, WebSocketError>(&mut |frame| async move { writer.lock().await.write_frame(frame).await })
            .await?;
        match frame.opcode {
            OpCode::Text => {
                // FragmentCollectorRead has already checked that text frames are UTF-8.
                return String::from_utf8(frame.payload.to_vec()).map(Some).map_err(|_| WebSocketError::InvalidUTF8);
            }
            OpCode::Close => return Ok(None),
            _ => {}
        }
    }
}

pub async fn write_text(writer: &Writer, text: String) -> Result<(), WebSocketError> {
    writer.lock().await.write_frame(Frame::text(Payload::Owned(text.into_bytes()))).await
}
pub fn ws_error_kind(e: &WebSocketError) -> &'static str {
    match e {
        WebSocketError::UnexpectedEOF => "eof",
        WebSocketError::ConnectionClosed => "closed",
        WebSocketError::IoError(e) if e.kind() == io::ErrorKind::ConnectionReset => "reset",
        WebSocketError::IoError(_) => "io",
        WebSocketError::FrameTooLarge => "frame_too_large",
        _ => "websocket_protocol",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_have_stable_keys() {
        assert_eq!(ConnectError::Refused("invalid_token".into()).key(), "connect_error:invalid_token");
        assert_eq!(ConnectError::Tcp(io::Error::from(io::ErrorKind::ConnectionRefused)).key(), "connect:tcp_refused");
        assert_eq!(ConnectError::Upgrade(WebSocketError::InvalidStatusCode(403)).key(), "connect:http_403");
        assert_eq!(ConnectError::Timeout.key(), "connect:timeout");
    }
}
