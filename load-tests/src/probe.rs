//! The load message itself: what a student puts in `content` and `clientMsgId`, and how the tutor
//! reads the send time back out of a `message_received`.
//!
//! The send time travels inside the message (microseconds on this process's monotonic clock), so
//! the receiving side needs no shared map to compute send→deliver latency. A student and its tutor
//! always live in the same process, so the clock is the same on both ends.
//!
//! `clientMsgId` starts with a random per-run nonce: `clientMsgId` makes sends idempotent per
//! (chat, sender), so a second run reusing the same chats (same `--prefix`) must not reuse ids, or
//! the server would answer with the old message and deliver nothing.

/// Smallest content the probe can carry: the `t=` marker, up to 20 digits and a space.
pub const MIN_CONTENT: usize = 28;

/// Content for a message sent at `sent_at_us`, padded with `.` to `size` bytes (at least the
/// marker). ASCII only, so bytes and code points agree with the server's length limit.
pub fn content(sent_at_us: u64, size: usize) -> String {
    let mut out = format!("load t={sent_at_us} ");
    while out.len() < size {
        out.push('.');
    }
    out
}

/// The send time embedded by [`content`], if this is one of ours.
pub fn sent_at_us(content: &str) -> Option<u64> {
    let rest = content.strip_prefix("load t=")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// `clientMsgId` for the `n`th message of student `student` in the run identified by `nonce`.
pub fn client_msg_id(nonce: &str, student: usize, n: u64) -> String {
    format!("{nonce}-{student}-{n}")
}

/// Whether a delivered message was sent by this run (another process sharing the user ids would
/// otherwise pollute the latencies with a foreign clock).
pub fn is_ours(client_msg_id: Option<&str>, nonce: &str) -> bool {
    client_msg_id.and_then(|id| id.strip_prefix(nonce)).is_some_and(|rest| rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_survives_the_round_trip() {
        let c = content(1_234_567, 64);
        assert_eq!(c.len(), 64);
        assert_eq!(sent_at_us(&c), Some(1_234_567));
        assert_eq!(sent_at_us(&content(u64::MAX, 0)), Some(u64::MAX));
        assert!(content(u64::MAX, 0).len() <= MIN_CONTENT);
    }

    #[test]
    fn foreign_content_has_no_send_time() {
        assert_eq!(sent_at_us("hello"), None);
        assert_eq!(sent_at_us("load t="), None);
        assert_eq!(sent_at_us("load t=x"), None);
    }

    #[test]
    fn recognises_own_client_msg_ids() {
        let id = client_msg_id("ab12", 3, 9);
        assert_eq!(id, "ab12-3-9");
        assert!(is_ours(Some(&id), "ab12"));
        assert!(!is_ours(Some("ab123-3-9"), "ab12"));
        assert!(!is_ours(Some("zz-3-9"), "ab12"));
        assert!(!is_ours(None, "ab12"));
    }
}
