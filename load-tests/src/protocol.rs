//! The Engine.IO v4 / Socket.IO v5 text packets a load generator needs, and nothing else.
//!
//! One WebSocket text frame carries one Engine.IO packet (`0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `6` noop); a `4` message carries one Socket.IO packet for namespace `/`
//! (`0` connect, `1` disconnect, `2` event, `3` ack, `4` connect error), optionally followed by an
//! ack id and then JSON. Both layers are decoded together into one [`Packet`], because on a
//! WebSocket-only, default-namespace, text-only connection they never appear apart.
//!
//! Pure: strings in, strings out. No socket, no clock, so it is unit-tested on bytes below.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Path and query that open a WebSocket-only Engine.IO v4 session.
pub const ENGINE_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// One decoded frame. The `&str` fields borrow the JSON part of the frame, still undecoded,
/// so a packet nobody is interested in costs no JSON parsing at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO handshake `0{"sid":..,"pingInterval":..}`.
    Open(&'a str),
    /// Engine.IO `1`: the server closes the session.
    Close,
    /// Engine.IO `2`: must be answered with [`PONG`].
    Ping,
    /// Engine.IO `3`.
    Pong,
    /// Engine.IO `6`.
    Noop,
    /// Socket.IO CONNECT acknowledgement `40{"sid":..}`.
    Connect(&'a str),
    /// Socket.IO `41`: the server ends the session and the client must not reconnect by itself.
    Disconnect,
    /// Socket.IO `42[id]["name",arg..]`.
    Event { ack: Option<u64>, data: &'a str },
    /// Socket.IO `43id[arg..]`.
    Ack { id: u64, data: &'a str },
    /// Socket.IO `44{"message":..,"data":{"code":..}}`.
    ConnectError(&'a str),
}

/// Why a frame could not be decoded. The server is expected never to produce one of these;
/// the load generator counts them as protocol errors.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownEngineType(char),
    UnknownSocketType(char),
    /// Binary events/acks (`45`, `46`) never occur in this contract's text-only traffic.
    Binary,
    /// A packet for a namespace other than `/`.
    Namespace(String),
    AckWithoutId,
    BadAckId,
    Json(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty frame"),
            DecodeError::UnknownEngineType(c) => write!(f, "unknown Engine.IO packet type {c:?}"),
            DecodeError::UnknownSocketType(c) => write!(f, "unknown Socket.IO packet type {c:?}"),
            DecodeError::Binary => write!(f, "binary Socket.IO packet"),
            DecodeError::Namespace(n) => write!(f, "packet for namespace {n:?}"),
            DecodeError::AckWithoutId => write!(f, "ack without an id"),
            DecodeError::BadAckId => write!(f, "ack id out of range"),
            DecodeError::Json(e) => write!(f, "bad JSON: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// Short stable name used as the error counter key.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty_frame",
            DecodeError::UnknownEngineType(_) => "unknown_engine_type",
            DecodeError::UnknownSocketType(_) => "unknown_socket_type",
            DecodeError::Binary => "binary_packet",
            DecodeError::Namespace(_) => "other_namespace",
            DecodeError::AckWithoutId => "ack_without_id",
            DecodeError::BadAckId => "bad_ack_id",
            DecodeError::Json(_) => "bad_json",
        }
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        DecodeError::Json(e.to_string())
    }
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut chars = text.chars();
    let engine = chars.next().ok_or(DecodeError::Empty)?;
    let rest = chars.as_str();
    match engine {
        '0' => Ok(Packet::Open(rest)),
        '1' => Ok(Packet::Close),
        // A ping may carry a probe payload; the pong answer never needs it on a websocket-only session.
        '2' => Ok(Packet::Ping),
        '3' => Ok(Packet::Pong),
        '6' => Ok(Packet::Noop),
        '4' => decode_socket(rest),
        other => Err(DecodeError::UnknownEngineType(other)),
    }
}

fn decode_socket(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let mut rest = chars.as_str();
    if matches!(kind, '5' | '6') {
        return Err(DecodeError::Binary);
    }
    if let Some(after_slash) = rest.strip_prefix('/') {
        let (name, after) = after_slash.split_once(',').unwrap_or((after_slash, ""));
        if !name.is_empty() {
            return Err(DecodeError::Namespace(format!("/{name}")));
        }
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, data) = rest.split_at(digits);
    let ack = if id.is_empty() { None } else { Some(id.parse::<u64>().map_err(|_| DecodeError::BadAckId)?) };
    match kind {
        '0' => Ok(Packet::Connect(data)),
        '1' => Ok(Packet::Disconnect),
        '2' => Ok(Packet::Event { ack, data }),
        '3' => Ok(Packet::Ack { id: ack.ok_or(DecodeError::AckWithoutId)?, data }),
        '4' => Ok(Packet::ConnectError(data)),
        other => Err(DecodeError::UnknownSocketType(other)),
    }
}

/// Engine.IO pong, the answer to every server ping.
pub const PONG: &str = "3";

/// Socket.IO DISCONNECT for namespace `/`: the polite way to leave before closing the WebSocket.
pub const DISCONNECT: &str = "41";

/// Socket.IO CONNECT for namespace `/` with the contract's auth payload `{"token":..}`.
pub fn connect(token: &str) -> String {
    #[derive(Serialize)]
    struct Auth<'a> {
        token: &'a str,
    }
    let mut out = String::from("40");
    // Serializing a struct of one string cannot fail.
    out.push_str(&serde_json::to_string(&Auth { token }).unwrap_or_default());
    out
}

/// Socket.IO EVENT `42[ack]["name",payload]`.
pub fn event<T: Serialize>(ack: Option<u64>, name: &str, payload: &T) -> Result<String, serde_json::Error> {
    let mut out = String::from("42");
    if let Some(id) = ack {
        out.push_str(&id.to_string());
    }
    out.push('[');
    out.push_str(&serde_json::to_string(name)?);
    out.push(',');
    out.push_str(&serde_json::to_string(payload)?);
    out.push(']');
    Ok(out)
}

/// The event name of an `Event`'s data (`["name", ...]`).
pub fn event_name(data: &str) -> Result<Cow<'_, str>, DecodeError> {
    Ok(serde_json::from_str::<Nth<Cow<'_, str>, 0>>(data)?.0)
}

/// The first argument after the event name (`["name", arg, ...]`).
pub fn event_arg<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, DecodeError> {
    Ok(serde_json::from_str::<Nth<T, 1>>(data)?.0)
}

/// The first argument of an `Ack`'s data (`[arg, ...]`).
pub fn ack_arg<T: DeserializeOwned>(data: &str) -> Result<T, DecodeError> {
    Ok(serde_json::from_str::<Nth<T, 0>>(data)?.0)
}

/// The `N`th element of a JSON array, the others skipped without being built.
struct Nth<T, const N: usize>(T);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Nth<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NthVisitor<T, const N: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for NthVisitor<T, N> {
            type Value = Nth<T, N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at least {} elements", N + 1)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                for i in 0..N {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Err(serde::de::Error::invalid_length(i, &self));
                    }
                }
                let value = seq.next_element::<T>()?.ok_or_else(|| serde::de::Error::invalid_length(N, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Nth(value))
            }
        }

        deserializer.deserialize_seq(NthVisitor::<T, N>(PhantomData))
    }
}

/// Every ack in the contract: `{ok:true, ...}` or `{ok:false, error:{code,message}}`.
#[derive(Debug, Deserialize)]
pub struct AckReply {
    pub ok: bool,
    pub error: Option<ErrorBody>,
}

impl AckReply {
    /// `Ok(())` or the error code (`unknown` when the server left it out).
    pub fn result(self) -> Result<(), String> {
        if self.ok {
            Ok(())
        } else {
            Err(self.error.map(|e| e.code).unwrap_or_else(|| "unknown".to_string()))
        }
    }
}

/// `{code, message}` inside a failed ack, and the payload of the `error` event.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub code: String,
}

/// CONNECT_ERROR payload: `{"message":..,"data":{"code":..}}`.
#[derive(Debug, Deserialize)]
pub struct ConnectErrorBody {
    pub data: Option<ErrorBody>,
}

/// `message_received {message}`, only the fields the load generator reads.
#[derive(Debug, Deserialize)]
pub struct MessageReceived<'a> {
    #[serde(borrow)]
    pub message: MessageFields<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageFields<'a> {
    #[serde(borrow)]
    pub chat_id: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
    #[serde(borrow, default)]
    pub client_msg_id: Option<Cow<'a, str>>,
}

/// `join_chat {chatId}`: no `lastSeq`, so `missed` is empty.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinChat<'a> {
    pub chat_id: &'a str,
}

/// `send_message {chatId, clientMsgId, content}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage<'a> {
    pub chat_id: &'a str,
    pub client_msg_id: &'a str,
    pub content: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_engine_open_with_its_json() {
        let text = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(decode(text), Ok(Packet::Open(&text[1..])));
    }

    #[test]
    fn decodes_engine_control_packets() {
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("2"), Ok(Packet::Ping));
        assert_eq!(decode("2probe"), Ok(Packet::Ping));
        assert_eq!(decode("3"), Ok(Packet::Pong));
        assert_eq!(decode("6"), Ok(Packet::Noop));
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("9"), Err(DecodeError::UnknownEngineType('9')));
    }

    #[test]
    fn decodes_connect_ack_and_connect_error() {
        assert_eq!(decode(r#"40{"sid":"x1"}"#), Ok(Packet::Connect(r#"{"sid":"x1"}"#)));
        let err = r#"44{"message":"bad token","data":{"code":"invalid_token"}}"#;
        let Ok(Packet::ConnectError(data)) = decode(err) else {
            panic!("not a connect error");
        };
        let body: ConnectErrorBody = serde_json::from_str(data).unwrap();
        assert_eq!(body.data.unwrap().code, "invalid_token");
        assert_eq!(decode("41"), Ok(Packet::Disconnect));
    }

    #[test]
    fn decodes_events_with_and_without_ack_id() {
        assert_eq!(
            decode(r#"42["user_online",{"userId":"u1"}]"#),
            Ok(Packet::Event { ack: None, data: r#"["user_online",{"userId":"u1"}]"# })
        );
        assert_eq!(decode(r#"4217["x",{}]"#), Ok(Packet::Event { ack: Some(17), data: r#"["x",{}]"# }));
    }

    #[test]
    fn decodes_acks_and_their_first_argument() {
        let text = r#"43123[{"ok":false,"error":{"code":"rate_limited","message":"slow down"}}]"#;
        let Ok(Packet::Ack { id, data }) = decode(text) else {
            panic!("not an ack");
        };
        assert_eq!(id, 123);
        let reply: AckReply = ack_arg(data).unwrap();
        assert_eq!(reply.result(), Err("rate_limited".to_string()));

        let ok: AckReply = ack_arg(r#"[{"ok":true,"message":{"id":"a"}},"extra"]"#).unwrap();
        assert_eq!(ok.result(), Ok(()));
        assert_eq!(decode("43[{}]"), Err(DecodeError::AckWithoutId));
        assert_eq!(decode("4399999999999999999999[{}]"), Err(DecodeError::BadAckId));
    }

    #[test]
    fn accepts_the_explicit_default_namespace_and_refuses_others() {
        assert_eq!(decode("40/,{}"), Ok(Packet::Connect("{}")));
        assert_eq!(decode(r#"42/admin,["x"]"#), Err(DecodeError::Namespace("/admin".to_string())));
        assert_eq!(decode(r#"451-["x",{"_placeholder":true,"num":0}]"#), Err(DecodeError::Binary));
    }

    #[test]
    fn reads_event_name_and_argument() {
        let data = r#"["message_received",{"message":{"id":"m","chatId":"c1","seq":7,"senderId":"s","content":"hi \"there\"","clientMsgId":"k-1","createdAt":"2024-01-01T00:00:00.000Z"}}]"#;
        assert_eq!(event_name(data).unwrap(), "message_received");
        let m: MessageReceived = event_arg(data).unwrap();
        assert_eq!(m.message.chat_id, "c1");
        assert_eq!(m.message.seq, 7);
        assert_eq!(m.message.content, "hi \"there\"");
        assert_eq!(m.message.client_msg_id.as_deref(), Some("k-1"));
        assert!(event_name("[]").is_err());
        assert!(event_arg::<ErrorBody>(r#"["error"]"#).is_err());
        let e: ErrorBody =
            event_arg(r#"["error",{"code":"not_enrolled","message":"m","event":"send_message"}]"#).unwrap();
        assert_eq!(e.code, "not_enrolled");
    }

    #[test]
    fn encodes_connect_with_token_auth() {
        assert_eq!(connect("a.b.c"), r#"40{"token":"a.b.c"}"#);
        assert_eq!(connect("q\"x"), r#"40{"token":"q\"x"}"#);
    }

    #[test]
    fn encodes_events_with_ack_ids() {
        let join = event(Some(0), "join_chat", &JoinChat { chat_id: "c1" }).unwrap();
        assert_eq!(join, r#"420["join_chat",{"chatId":"c1"}]"#);
        let send =
            event(Some(42), "send_message", &SendMessage { chat_id: "c1", client_msg_id: "n-1", content: "t=5 \n" })
                .unwrap();
        assert_eq!(send, r#"4242["send_message",{"chatId":"c1","clientMsgId":"n-1","content":"t=5 \n"}]"#);
        let plain = event(None, "typing_start", &JoinChat { chat_id: "c" }).unwrap();
        assert_eq!(plain, r#"42["typing_start",{"chatId":"c"}]"#);
    }

    #[test]
    fn encoded_events_decode_back() {
        let text = event(Some(9), "send_message", &JoinChat { chat_id: "z" }).unwrap();
        let Ok(Packet::Event { ack, data }) = decode(&text) else {
            panic!("not an event");
        };
        assert_eq!(ack, Some(9));
        assert_eq!(event_name(data).unwrap(), "send_message");
    }
}
