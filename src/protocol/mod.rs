//! The wire codec: Engine.IO v4 packets and the Socket.IO v5 packets they carry.
//!
//! This module is pure: it turns bytes into packet headers and packet headers into bytes, with no
//! socket, clock or task inside, so every rule here is unit-tested and fuzzed on bytes alone. The
//! session (`crate::session`) owns the I/O and decides what each packet means for a connection.
//!
//! Over the websocket transport one websocket text frame carries exactly one Engine.IO packet, so
//! there is no payload framing (`\x1e` separators belong to HTTP long-polling, which is not served).
//! [`websocket`] is the frame layer under it: the session reads and writes frames itself.

mod engineio;
pub mod socketio;
pub mod websocket;

pub use engineio::{EioPacket, OpenPacket};
pub use socketio::{encode_frame, SioHeader, SioKind};

/// A packet that does not follow the Engine.IO / Socket.IO grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty packet")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEioType(u8),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSioType(u8),
    #[error("malformed attachment count")]
    BadAttachments,
    #[error("malformed namespace")]
    BadNamespace,
    #[error("ack id out of range")]
    BadAckId,
}
