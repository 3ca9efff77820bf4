//! Socket.IO v5 packets, carried inside Engine.IO `message` packets.
//!
//! Grammar: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`, types `0` CONNECT,
//! `1` DISCONNECT, `2` EVENT, `3` ACK, `4` CONNECT_ERROR, `5` BINARY_EVENT, `6` BINARY_ACK. The
//! default namespace `/` is written as nothing. Decoding yields a header and the offset where the
//! JSON data starts, so the caller can hand that tail (mutably) to the JSON parser without a copy.

use super::ProtocolError;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl SioKind {
    fn from_digit(d: u8) -> Result<Self, ProtocolError> {
        Ok(match d {
            b'0' => SioKind::Connect,
            b'1' => SioKind::Disconnect,
            b'2' => SioKind::Event,
            b'3' => SioKind::Ack,
            b'4' => SioKind::ConnectError,
            b'5' => SioKind::BinaryEvent,
            b'6' => SioKind::BinaryAck,
            other => return Err(ProtocolError::UnknownSioType(other)),
        })
    }

    fn digit(self) -> u8 {
        match self {
            SioKind::Connect => b'0',
            SioKind::Disconnect => b'1',
            SioKind::Event => b'2',
            SioKind::Ack => b'3',
            SioKind::ConnectError => b'4',
            SioKind::BinaryEvent => b'5',
            SioKind::BinaryAck => b'6',
        }
    }

    fn is_binary(self) -> bool {
        matches!(self, SioKind::BinaryEvent | SioKind::BinaryAck)
    }
}

/// Ack ids are JavaScript numbers on the client; anything past 2^53 cannot come from a real one.
const MAX_ACK_ID: u64 = (1 << 53) - 1;
/// A namespace longer than this is garbage, not a name.
const MAX_NAMESPACE: usize = 256;

/// Everything of a Socket.IO packet but its JSON data, which starts at `data_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioHeader {
    pub kind: SioKind,
    /// Binary attachments announced by a BINARY_* packet (they follow as websocket binary frames).
    pub attachments: u32,
    /// `None` for the default namespace `/`.
    pub namespace: Option<String>,
    pub ack_id: Option<u64>,
    pub data_offset: usize,
}

impl SioHeader {
    /// Decodes the header of a Socket.IO packet (the data of an Engine.IO `message`).
    pub fn decode(packet: &[u8]) -> Result<Self, ProtocolError> {
        let (&first, _) = packet.split_first().ok_or(ProtocolError::Empty)?;
        let kind = SioKind::from_digit(first)?;
        let mut pos = 1;

        let mut attachments = 0u32;
        if kind.is_binary() {
            let start = pos;
            while pos < packet.len() && packet[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos == start || pos >= packet.len() || packet[pos] != b'-' {
                return Err(ProtocolError::BadAttachments);
            }
            attachments = std::str::from_utf8(&packet[start..pos])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ProtocolError::BadAttachments)?;
            pos += 1;
        }

        let mut namespace = None;
        if packet.get(pos) == Some(&b'/') {
            let start = pos;
            while pos < packet.len() && packet[pos] != b',' {
                pos += 1;
            }
            let name = std::str::from_utf8(&packet[start..pos]).map_err(|_| ProtocolError::BadNamespace)?;
            if name.len() > MAX_NAMESPACE {
                return Err(ProtocolError::BadNamespace);
            }
            if name != "/" {
                namespace = Some(name.to_owned());
            }
            if pos < packet.len() {
                pos += 1; // the ','
            }
        }

        let mut ack_id = None;
        let start = pos;
        while pos < packet.len() && packet[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos > start {
            let id = std::str::from_utf8(&packet[start..pos])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|id| *id <= MAX_ACK_ID)
                .ok_or(ProtocolError::BadAckId)?;
            ack_id = Some(id);
        }

        Ok(SioHeader { kind, attachments, namespace, ack_id, data_offset: pos })
    }
}

/// Encodes a complete websocket text frame: an Engine.IO `message` carrying one Socket.IO packet
/// in the default namespace, with an optional ack id and the JSON data already serialized.
pub fn encode_frame(kind: SioKind, ack_id: Option<u64>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 20 + data.len());
    out.push(b'4');
    encode_packet_into(&mut out, kind, None, ack_id, data);
    out
}

/// Appends one Socket.IO packet (without the Engine.IO type) to `out`.
pub fn encode_packet_into(out: &mut Vec<u8>, kind: SioKind, namespace: Option<&str>, ack_id: Option<u64>, data: &[u8]) {
    out.push(kind.digit());
    if let Some(ns) = namespace.filter(|ns| *ns != "/") {
        out.extend_from_slice(ns.as_bytes());
        out.push(b',');
    }
    if let Some(id) = ack_id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(p: &str) -> SioHeader {
        SioHeader::decode(p.as_bytes()).unwrap()
    }

    #[test]
    fn decodes_connect_with_auth() {
        let h = header(r#"0{"token":"abc"}"#);
        assert_eq!(h.kind, SioKind::Connect);
        assert_eq!(h.namespace, None);
        assert_eq!(h.ack_id, None);
        assert_eq!(h.data_offset, 1);
    }

    #[test]
    fn decodes_event_with_ack_id() {
        let p = r#"212["send_message",{"chatId":"x"}]"#;
        let h = header(p);
        assert_eq!(h.kind, SioKind::Event);
        assert_eq!(h.ack_id, Some(12));
        assert_eq!(&p[h.data_offset..], r#"["send_message",{"chatId":"x"}]"#);
    }

    #[test]
    fn decodes_namespace_and_binary_attachments() {
        let h = header(r#"51-/admin,7["upload",{"_placeholder":true,"num":0}]"#);
        assert_eq!(h.kind, SioKind::BinaryEvent);
        assert_eq!(h.attachments, 1);
        assert_eq!(h.namespace.as_deref(), Some("/admin"));
        assert_eq!(h.ack_id, Some(7));
        let root = header("0/,");
        assert_eq!(root.namespace, None);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(SioHeader::decode(b""), Err(ProtocolError::Empty));
        assert_eq!(SioHeader::decode(b"9"), Err(ProtocolError::UnknownSioType(b'9')));
        assert_eq!(SioHeader::decode(b"5x-[]"), Err(ProtocolError::BadAttachments));
        assert_eq!(SioHeader::decode(b"299999999999999999999[]"), Err(ProtocolError::BadAckId));
    }

    #[test]
    fn encodes_ack_and_connect_error_frames() {
        assert_eq!(encode_frame(SioKind::Ack, Some(3), br#"[{"ok":true}]"#), br#"433[{"ok":true}]"#.to_vec());
        assert_eq!(encode_frame(SioKind::Disconnect, None, b""), b"41".to_vec());
    }

    fn kind_strategy() -> impl Strategy<Value = SioKind> {
        prop_oneof![
            Just(SioKind::Connect),
            Just(SioKind::Disconnect),
            Just(SioKind::Event),
            Just(SioKind::Ack),
            Just(SioKind::ConnectError),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(h) = SioHeader::decode(&bytes) {
                prop_assert!(h.data_offset <= bytes.len());
            }
        }

        #[test]
        fn header_round_trips(
            kind in kind_strategy(),
            ns in proptest::option::of("/[a-z]{1,8}"),
            id in proptest::option::of(0u64..MAX_ACK_ID),
            json in prop_oneof![Just(String::new()), "\\[\"[a-z_]{1,12}\",\\{\\}\\]", "\\{\"[a-z]{1,5}\":[0-9]{1,4}\\}"],
        ) {
            let mut packet = Vec::new();
            encode_packet_into(&mut packet, kind, ns.as_deref(), id, json.as_bytes());
            let h = SioHeader::decode(&packet).unwrap();
            prop_assert_eq!(h.kind, kind);
            prop_assert_eq!(h.namespace, ns);
            prop_assert_eq!(h.ack_id, id);
            prop_assert_eq!(&packet[h.data_offset..], json.as_bytes());
        }
    }
}
