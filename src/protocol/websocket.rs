//! WebSocket frames (RFC 6455 §5) as a server reads and writes them, after the handshake.
//!
//! Pure, like the rest of the codec: [`FrameHeader::parse`] reads a header from bytes (or says
//! more are needed) and [`encode_header`] writes one, so the session can read into a buffer it
//! does not keep while a socket is idle, and write a header and its shared payload side by side
//! with one vectored write. No extensions are negotiated, so the reserved bits must be clear;
//! client frames must be masked; control frames are final and at most 125 bytes.

/// A frame header that breaks the rules (the connection is then closed with 1002).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits set without an extension")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("a client frame must be masked")]
    Unmasked,
    #[error("a control frame must be final and at most 125 bytes")]
    Control,
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Result<Opcode, FrameError> {
        Ok(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => return Err(FrameError::Opcode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The longest header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    pub payload_len: usize,
    /// Where the payload starts.
    pub header_len: usize,
}

impl FrameHeader {
    /// Reads a client frame's header; `Ok(None)` when `bytes` does not hold all of it yet.
    /// A payload longer than `max_payload` is refused here, before any of it is buffered.
    pub fn parse(bytes: &[u8], max_payload: usize) -> Result<Option<FrameHeader>, FrameError> {
        let [first, second, ..] = *bytes else { return Ok(None) };
        if first & 0x70 != 0 {
            return Err(FrameError::Reserved);
        }
        let fin = first & 0x80 != 0;
        let opcode = Opcode::from_bits(first & 0x0F)?;
        if second & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let (len, at) = match second & 0x7F {
            126 => match bytes.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(b) => (u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(FrameError::Control);
        }
        if len > max_payload as u64 {
            return Err(FrameError::TooLarge(len));
        }
        let Some(mask) = bytes.get(at..at + 4) else { return Ok(None) };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            payload_len: len as usize,
            header_len: at + 4,
        }))
    }
}

/// Unmasks a client payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The length of a final, unmasked server frame's header for a payload this long.
pub fn header_len(payload_len: usize) -> usize {
    if payload_len < 126 {
        2
    } else if payload_len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// Writes the header of a final, unmasked server frame into `out`; returns its length
/// ([`header_len`]).
pub fn encode_header(out: &mut [u8; MAX_HEADER], opcode: Opcode, payload_len: usize) -> usize {
    out[0] = 0x80 | opcode.bits();
    let len = header_len(payload_len);
    match len {
        2 => out[1] = payload_len as u8,
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut header = [0u8; MAX_HEADER];
        let n = encode_header(&mut header, opcode, payload.len());
        let mut out = header[..n].to_vec();
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask); // masking and unmasking are the same XOR
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn reads_headers_of_each_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 100_000] {
            let payload = vec![b'a'; len];
            let frame = client_frame(true, Opcode::Text, &payload, [1, 2, 3, 4]);
            let header = FrameHeader::parse(&frame, 1 << 20).unwrap().unwrap();
            assert_eq!((header.payload_len, header.opcode, header.fin), (len, Opcode::Text, true));
            let mut body = frame[header.header_len..].to_vec();
            unmask(&mut body, header.mask);
            assert_eq!(body, payload);
            assert_eq!(FrameHeader::parse(&frame[..header.header_len - 1], 1 << 20), Ok(None), "incomplete");
        }
    }

    #[test]
    fn refuses_what_breaks_the_rules() {
        let text = client_frame(true, Opcode::Text, b"hi", [9; 4]);
        let mut reserved = text.clone();
        reserved[0] |= 0x40;
        assert_eq!(FrameHeader::parse(&reserved, 100), Err(FrameError::Reserved));
        let mut unmasked = text.clone();
        unmasked[1] &= 0x7F;
        assert_eq!(FrameHeader::parse(&unmasked, 100), Err(FrameError::Unmasked));
        let mut unknown = text.clone();
        unknown[0] = 0x83;
        assert_eq!(FrameHeader::parse(&unknown, 100), Err(FrameError::Opcode(3)));
        let fragmented_ping = client_frame(false, Opcode::Ping, b"x", [0; 4]);
        assert_eq!(FrameHeader::parse(&fragmented_ping, 100), Err(FrameError::Control));
        let big = client_frame(true, Opcode::Text, &[0; 200], [0; 4]);
        assert_eq!(FrameHeader::parse(&big, 100), Err(FrameError::TooLarge(200)));
        assert_eq!(FrameHeader::parse(&big[..4], 100), Err(FrameError::TooLarge(200)), "before the payload arrives");
    }

    #[test]
    fn server_headers_are_final_and_unmasked() {
        let header = |opcode, len| {
            let mut out = [0u8; MAX_HEADER];
            let n = encode_header(&mut out, opcode, len);
            out[..n].to_vec()
        };
        assert_eq!(header(Opcode::Text, 3), [0x81, 3]);
        assert_eq!(header(Opcode::Close, 2), [0x88, 2]);
        assert_eq!(header(Opcode::Text, 300), [0x81, 126, 1, 44]);
        assert_eq!(header(Opcode::Binary, 70_000).len(), 10);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = FrameHeader::parse(&bytes, 1 << 16);
        }

        #[test]
        fn client_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..400), mask in any::<[u8; 4]>(), fin in any::<bool>()) {
            let frame = client_frame(fin, Opcode::Binary, &payload, mask);
            let header = FrameHeader::parse(&frame, 1 << 16).unwrap().unwrap();
            prop_assert_eq!(header.fin, fin);
            prop_assert_eq!(header.header_len + header.payload_len, frame.len());
            let mut body = frame[header.header_len..].to_vec();
            unmask(&mut body, header.mask);
            prop_assert_eq!(body, payload);
        }
    }
}
