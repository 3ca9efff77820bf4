//! The contract's Socket.IO events: client events decoded into types, server events and acks
//! encoded into Engine.IO frames. Encoding happens here once per event; the frame is then shared.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorCode};
use crate::model::MessageType;
use crate::protocol::socketio::encode_frame;
use crate::protocol::SioKind;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinChat {
    pub chat_id: String,
    pub last_seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatRef {
    pub chat_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub chat_id: String,
    pub client_msg_id: String,
    #[serde(default)]
    pub content: String,
    #[serde(rename = "type", default)]
    pub kind: MessageType,
    pub attachment_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkRead {
    pub chat_id: String,
    pub seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct RefreshToken {
    pub token: String,
}

#[derive(Debug)]
pub enum ClientEvent {
    JoinChat(JoinChat),
    LeaveChat(ChatRef),
    SendMessage(SendMessage),
    TypingStart(ChatRef),
    TypingStop(ChatRef),
    MarkRead(MarkRead),
    RefreshToken(RefreshToken),
}

impl ClientEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ClientEvent::JoinChat(_) => "join_chat",
            ClientEvent::LeaveChat(_) => "leave_chat",
            ClientEvent::SendMessage(_) => "send_message",
            ClientEvent::TypingStart(_) => "typing_start",
            ClientEvent::TypingStop(_) => "typing_stop",
            ClientEvent::MarkRead(_) => "mark_read",
            ClientEvent::RefreshToken(_) => "refresh_token",
        }
    }
}

/// Why event data could not be decoded; `event` is the name when it was read.
#[derive(Debug)]
pub struct DecodeError {
    pub event: Option<String>,
    pub message: String,
}

/// Decodes the JSON array of an EVENT packet (`["name", payload, ...]`), in place.
pub fn decode_client_event(data: &mut [u8]) -> Result<ClientEvent, DecodeError> {
    let mut name = None;
    match crate::json::parse_seed(data, EventSeed { name: &mut name }) {
        Ok(Some(event)) => Ok(event),
        Ok(None) => {
            Err(DecodeError { message: format!("unknown event {:?}", name.as_deref().unwrap_or("")), event: name })
        }
        Err(e) => Err(DecodeError { event: name, message: format!("invalid event data: {e}") }),
    }
}

struct EventSeed<'a> {
    name: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Option<ClientEvent>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Option<ClientEvent>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array [event name, payload]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let name: Cow<'de, str> = seq.next_element()?.ok_or_else(|| de::Error::custom("missing event name"))?;
        *self.name = Some(name.clone().into_owned());
        fn payload<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(seq: &mut A) -> Result<T, A::Error> {
            seq.next_element()?.ok_or_else(|| de::Error::custom("missing payload object"))
        }
        let event = match name.as_ref() {
            "join_chat" => Some(ClientEvent::JoinChat(payload(&mut seq)?)),
            "leave_chat" => Some(ClientEvent::LeaveChat(payload(&mut seq)?)),
            "send_message" => Some(ClientEvent::SendMessage(payload(&mut seq)?)),
            "typing_start" => Some(ClientEvent::TypingStart(payload(&mut seq)?)),
            "typing_stop" => Some(ClientEvent::TypingStop(payload(&mut seq)?)),
            "mark_read" => Some(ClientEvent::MarkRead(payload(&mut seq)?)),
            "refresh_token" => Some(ClientEvent::RefreshToken(payload(&mut seq)?)),
            _ => None,
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(event)
    }
}

/// `42["name",payload]`: a server event, encoded once.
pub fn event_frame<T: Serialize + ?Sized>(name: &str, payload: &T) -> Bytes {
    let data = serde_json::to_vec(&(name, payload)).unwrap_or_default();
    Bytes::from(encode_frame(SioKind::Event, None, &data))
}

/// `42["message_received",{"message":<json>}]` from a message already serialized for storage.
pub fn message_received_frame(message_json: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"42["message_received",{"message":"#;
    const TAIL: &[u8] = b"}]";
    // The exact size: a Vec with room to spare would be reallocated to fit by `Bytes::from`.
    let mut out = Vec::with_capacity(HEAD.len() + message_json.len() + TAIL.len());
    out.extend_from_slice(HEAD);
    out.extend_from_slice(message_json);
    out.extend_from_slice(TAIL);
    Bytes::from(out)
}

#[derive(Serialize)]
struct ErrBody<'a> {
    ok: bool,
    error: &'a ErrorBody,
}

/// `43<id>[{"ok":true,...body}]`, from the body already serialized as a JSON object.
pub fn ack_ok(id: u64, body: &[u8]) -> Bytes {
    let fields = body.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}")).unwrap_or_default();
    let mut data = Vec::with_capacity(fields.len() + 14);
    data.extend_from_slice(b"[{\"ok\":true");
    if !fields.iter().all(u8::is_ascii_whitespace) {
        data.push(b',');
        data.extend_from_slice(fields);
    }
    data.extend_from_slice(b"}]");
    Bytes::from(encode_frame(SioKind::Ack, Some(id), &data))
}

/// `43<id>[{"ok":false,"error":{code,message}}]`.
pub fn ack_err(id: u64, error: &ErrorBody) -> Bytes {
    let data = serde_json::to_vec(&[ErrBody { ok: false, error }]).unwrap_or_default();
    Bytes::from(encode_frame(SioKind::Ack, Some(id), &data))
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
}

/// `42["error",{code,message,event?}]`: a failed event that had no ack.
pub fn error_event(error: &ErrorBody, event: Option<&str>) -> Bytes {
    event_frame("error", &ErrorEvent { code: error.code, message: &error.message, event })
}

/// `40{"sid":...}`: CONNECT accepted.
pub fn connected(sid: &str) -> Bytes {
    #[derive(Serialize)]
    struct Sid<'a> {
        sid: &'a str,
    }
    let data = serde_json::to_vec(&Sid { sid }).unwrap_or_default();
    Bytes::from(encode_frame(SioKind::Connect, None, &data))
}

/// `41`: the server ends the socket (a token that expired).
pub fn disconnect() -> Bytes {
    Bytes::from(encode_frame(SioKind::Disconnect, None, b""))
}

/// `44{"message","data":{"code"}}`: CONNECT refused.
pub fn connect_error(code: ErrorCode, message: &str) -> Bytes {
    connect_error_in(None, code, message)
}

/// CONNECT_ERROR for a namespace (`44/admin,{...}`), so the client's socket for that namespace
/// hears back.
pub fn connect_error_in(namespace: Option<&str>, code: ErrorCode, message: &str) -> Bytes {
    let data = serde_json::json!({ "message": message, "data": { "code": code } });
    let mut out = vec![b'4'];
    crate::protocol::socketio::encode_packet_into(
        &mut out,
        SioKind::ConnectError,
        namespace,
        None,
        data.to_string().as_bytes(),
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<ClientEvent, DecodeError> {
        decode_client_event(&mut s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_send_message() {
        let e = decode(r#"["send_message",{"chatId":"c","clientMsgId":"m1","content":"hi"}]"#).unwrap();
        match e {
            ClientEvent::SendMessage(s) => {
                assert_eq!((s.chat_id.as_str(), s.client_msg_id.as_str(), s.content.as_str()), ("c", "m1", "hi"));
                assert_eq!(s.kind, MessageType::Text);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_the_event_name_when_the_payload_is_bad() {
        let e = decode(r#"["join_chat",{"chatId":5}]"#).unwrap_err();
        assert_eq!(e.event.as_deref(), Some("join_chat"));
        let e = decode(r#"["nope",{}]"#).unwrap_err();
        assert_eq!(e.event.as_deref(), Some("nope"));
        assert!(decode("[").is_err());
        assert!(decode(r#"{"a":1}"#).is_err());
        assert!(decode(r#"["mark_read"]"#).is_err());
    }

    #[test]
    fn encodes_acks_and_events() {
        assert_eq!(ack_ok(7, br#"{"exp":5}"#), Bytes::from_static(br#"437[{"ok":true,"exp":5}]"#));
        assert_eq!(ack_ok(8, b"{}"), Bytes::from_static(br#"438[{"ok":true}]"#));
        assert_eq!(connected("00ff"), Bytes::from_static(br#"40{"sid":"00ff"}"#));
        assert_eq!(disconnect(), Bytes::from_static(b"41"));
        let err = ErrorBody::new(ErrorCode::Blocked, "no");
        assert_eq!(
            ack_err(1, &err),
            Bytes::from_static(br#"431[{"ok":false,"error":{"code":"blocked","message":"no"}}]"#)
        );
        assert_eq!(
            error_event(&err, Some("send_message")),
            Bytes::from_static(br#"42["error",{"code":"blocked","message":"no","event":"send_message"}]"#)
        );
        assert_eq!(
            message_received_frame(br#"{"id":"x"}"#),
            Bytes::from_static(br#"42["message_received",{"message":{"id":"x"}}]"#)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_event_data_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = decode_client_event(&mut bytes.clone());
        }
    }
}
