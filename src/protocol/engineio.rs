//! Engine.IO v4 packets over the websocket transport.
//!
//! A packet is one type digit followed by its data: `0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `5` upgrade, `6` noop. The server sends `open` once, then pings; the client answers
//! each ping with a pong and carries Socket.IO packets inside `message`.

use serde::Serialize;

use super::ProtocolError;

/// A decoded Engine.IO packet; `Message` borrows its data from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioPacket<'a> {
    Open(&'a [u8]),
    Close,
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Message(&'a [u8]),
    Upgrade,
    Noop,
}

impl<'a> EioPacket<'a> {
    /// Decodes one Engine.IO packet from a websocket text frame.
    pub fn decode(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let (&kind, data) = frame.split_first().ok_or(ProtocolError::Empty)?;
        Ok(match kind {
            b'0' => EioPacket::Open(data),
            b'1' => EioPacket::Close,
            b'2' => EioPacket::Ping(data),
            b'3' => EioPacket::Pong(data),
            b'4' => EioPacket::Message(data),
            b'5' => EioPacket::Upgrade,
            b'6' => EioPacket::Noop,
            other => return Err(ProtocolError::UnknownEioType(other)),
        })
    }

    /// Encodes the packet as the text of one websocket frame.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, data): (u8, &[u8]) = match *self {
            EioPacket::Open(d) => (b'0', d),
            EioPacket::Close => (b'1', b""),
            EioPacket::Ping(d) => (b'2', d),
            EioPacket::Pong(d) => (b'3', d),
            EioPacket::Message(d) => (b'4', d),
            EioPacket::Upgrade => (b'5', b""),
            EioPacket::Noop => (b'6', b""),
        };
        let mut out = Vec::with_capacity(1 + data.len());
        out.push(kind);
        out.extend_from_slice(data);
        out
    }
}

/// The handshake data of the `open` packet, sent once when a transport connects.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket<'a> {
    pub sid: &'a str,
    /// Empty: the websocket transport is already the best one, there is nothing to upgrade to.
    pub upgrades: [&'a str; 0],
    pub ping_interval: u64,
    pub ping_timeout: u64,
    pub max_payload: usize,
}

impl OpenPacket<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![b'0'];
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_writer(&mut out, self).unwrap_or_default();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_each_packet_type() {
        assert_eq!(EioPacket::decode(b"2").unwrap(), EioPacket::Ping(b""));
        assert_eq!(EioPacket::decode(b"3probe").unwrap(), EioPacket::Pong(b"probe"));
        assert_eq!(EioPacket::decode(b"40").unwrap(), EioPacket::Message(b"0"));
        assert_eq!(EioPacket::decode(b"1").unwrap(), EioPacket::Close);
        assert_eq!(EioPacket::decode(b"6").unwrap(), EioPacket::Noop);
        assert_eq!(EioPacket::decode(b""), Err(ProtocolError::Empty));
        assert_eq!(EioPacket::decode(b"9"), Err(ProtocolError::UnknownEioType(b'9')));
    }

    #[test]
    fn open_packet_has_the_handshake_fields() {
        let open =
            OpenPacket { sid: "abc", upgrades: [], ping_interval: 25000, ping_timeout: 20000, max_payload: 65536 };
        assert_eq!(
            String::from_utf8(open.encode()).unwrap(),
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":65536}"#
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = EioPacket::decode(&bytes);
        }

        #[test]
        fn message_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let encoded = EioPacket::Message(&data).encode();
            prop_assert_eq!(EioPacket::decode(&encoded).unwrap(), EioPacket::Message(&data));
        }
    }
}
