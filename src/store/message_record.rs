//! How the embedded store lays out one message: a compact binary record under its
//! `(chat, seq)` key, about 100 bytes for a short text message where its JSON takes ~260.
//!
//! The chat id and the seq are the key, so the record leaves them out; the message id (an
//! ObjectId) is its 12 bytes, the time its millis. Layout, after the tag byte [`TAG`]:
//!
//! ```text
//! id [12] · sender type [1] · kind [1] · created at, ms, LE [8]
//! sender id len [1] · sender id · clientMsgId len [1] · clientMsgId
//! attachment JSON len, LE [4] (0: none) · attachment JSON · content (the rest)
//! ```
//!
//! A message the layout cannot hold (an id that is not an ObjectId, an id part longer than 255
//! bytes) is stored as JSON, which is also how earlier versions stored every message: a record
//! starting with `{` is JSON, so both read back.

use crate::model::ids::is_object_id;
use crate::model::{Attachment, Message, MessageType, SenderType, Timestamp};

/// The first byte of a binary record (a JSON record starts with `{`).
const TAG: u8 = 1;
const FIXED: usize = 1 + 12 + 1 + 1 + 8;

/// The record of `m` (its chat id and seq are the key's).
pub fn encode(m: &Message) -> Vec<u8> {
    let attachment = m.attachment.as_ref().map(|a| serde_json::to_vec(a).unwrap_or_default());
    let id = hex12(&m.id);
    let (Some(id), Ok(sender_len), Ok(client_len)) =
        (id, u8::try_from(m.sender_id.len()), u8::try_from(m.client_msg_id.len()))
    else {
        // Our records are plain structs with string keys: serializing them cannot fail.
        return serde_json::to_vec(m).unwrap_or_default();
    };
    let attachment = attachment.unwrap_or_default();
    let mut out = Vec::with_capacity(
        FIXED + 2 + m.sender_id.len() + m.client_msg_id.len() + 4 + attachment.len() + m.content.len(),
    );
    out.push(TAG);
    out.extend_from_slice(&id);
    out.push(match m.sender_type {
        SenderType::User => 0,
        SenderType::Tutor => 1,
    });
    out.push(match m.kind {
        MessageType::Text => 0,
        MessageType::Image => 1,
        MessageType::File => 2,
    });
    out.extend_from_slice(&m.created_at.millis().to_le_bytes());
    out.push(sender_len);
    out.extend_from_slice(m.sender_id.as_bytes());
    out.push(client_len);
    out.extend_from_slice(m.client_msg_id.as_bytes());
    out.extend_from_slice(&(attachment.len() as u32).to_le_bytes());
    out.extend_from_slice(&attachment);
    out.extend_from_slice(m.content.as_bytes());
    out
}

/// The message stored as `bytes` under `(chat_id, seq)`.
pub fn decode(chat_id: &str, seq: u64, bytes: &[u8]) -> Result<Message, String> {
    if bytes.first() != Some(&TAG) {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let mut r = Reader { bytes, at: 1 };
    let id = r.take(12)?.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let sender_type = match r.byte()? {
        0 => SenderType::User,
        1 => SenderType::Tutor,
        other => return Err(format!("unknown sender type {other}")),
    };
    let kind = match r.byte()? {
        0 => MessageType::Text,
        1 => MessageType::Image,
        2 => MessageType::File,
        other => return Err(format!("unknown message type {other}")),
    };
    let created_at = Timestamp(i64::from_le_bytes(r.array()?));
    let n = usize::from(r.byte()?);
    let sender_id = r.text(n)?;
    let n = usize::from(r.byte()?);
    let client_msg_id = r.text(n)?;
    let n = u32::from_le_bytes(r.array()?) as usize;
    let attachment = match n {
        0 => None,
        n => Some(serde_json::from_slice::<Attachment>(r.take(n)?).map_err(|e| e.to_string())?),
    };
    let content = r.text(bytes.len() - r.at)?;
    Ok(Message {
        id,
        chat_id: chat_id.to_owned(),
        seq,
        sender_id,
        sender_type,
        kind,
        content,
        attachment,
        client_msg_id,
        created_at,
    })
}

/// The 12 bytes of an ObjectId's hex form.
fn hex12(id: &str) -> Option<[u8; 12]> {
    if !is_object_id(id) {
        return None;
    }
    let digit = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'a' + 10 };
    let mut out = [0u8; 12];
    for (i, pair) in id.as_bytes().chunks_exact(2).enumerate() {
        out[i] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Some(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or("record cut short")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "text is not UTF-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::new_object_id;

    fn message() -> Message {
        Message {
            id: new_object_id(),
            chat_id: new_object_id(),
            seq: 42,
            sender_id: "student-1".into(),
            sender_type: SenderType::User,
            kind: MessageType::Text,
            content: "hello, ünïcode 👋".into(),
            attachment: None,
            client_msg_id: "5d0c6e8e-0d3b-4c53-9a5f-0c1b2e6f7a8b".into(),
            created_at: Timestamp(1_764_590_000_123),
        }
    }

    #[test]
    fn a_message_reads_back_as_it_was_and_takes_less_than_its_json() {
        let m = message();
        let record = encode(&m);
        assert_eq!(decode(&m.chat_id, m.seq, &record).unwrap(), m);
        let json = serde_json::to_vec(&m).unwrap();
        assert!(record.len() * 2 < json.len(), "{} bytes against {} of JSON", record.len(), json.len());
    }

    #[test]
    fn attachments_and_every_kind_read_back() {
        let mut m = message();
        m.kind = MessageType::File;
        m.sender_type = SenderType::Tutor;
        m.content = String::new();
        m.attachment = Some(Attachment {
            id: "a1".into(),
            name: "notes.pdf".into(),
            size: 1234,
            mime: "application/pdf".into(),
            url: String::new(),
        });
        assert_eq!(decode(&m.chat_id, m.seq, &encode(&m)).unwrap(), m);
    }

    #[test]
    fn what_the_layout_cannot_hold_is_kept_as_json_and_json_records_still_read() {
        let mut m = message();
        m.id = "not-an-object-id".into();
        let record = encode(&m);
        assert_eq!(record[0], b'{');
        assert_eq!(decode(&m.chat_id, m.seq, &record).unwrap(), m);
        let earlier = message();
        let json = serde_json::to_vec(&earlier).unwrap();
        assert_eq!(decode("ignored", 0, &json).unwrap(), earlier);
    }

    #[test]
    fn a_cut_or_damaged_record_is_an_error_not_a_panic() {
        let record = encode(&message());
        for n in 1..FIXED + 3 {
            assert!(decode("c", 1, &record[..n]).is_err(), "cut at {n}");
        }
        let mut bad = record.clone();
        bad[13] = 9;
        assert!(decode("c", 1, &bad).is_err());
    }
}
