//! What a message may contain (CONTRACT "Ids and messages").

use super::ChatError;

/// Checks message content: 1..=`max_chars` code points after trimming (0 allowed with an
/// attachment), no control characters but `\n` and `\t`. The content is stored as sent.
pub fn check_content(content: &str, max_chars: usize, has_attachment: bool) -> Result<(), ChatError> {
    if let Some(c) = content.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return Err(ChatError::InvalidPayload(format!("content contains the control character U+{:04X}", c as u32)));
    }
    let trimmed = content.trim();
    if trimmed.is_empty() && !has_attachment {
        return Err(ChatError::InvalidPayload("content is empty".into()));
    }
    let chars = trimmed.chars().count();
    if chars > max_chars {
        return Err(ChatError::TooLarge(format!("content has {chars} characters; the limit is {max_chars}")));
    }
    Ok(())
}

/// clientMsgId: 1..64 chars.
pub fn check_client_msg_id(id: &str) -> Result<(), ChatError> {
    let len = id.chars().count();
    if len == 0 || len > 64 {
        return Err(ChatError::InvalidPayload("clientMsgId must be 1 to 64 characters".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn code(content: &str) -> Option<ErrorCode> {
        check_content(content, 10, false).err().map(|e| e.code())
    }

    #[test]
    fn content_rules() {
        assert_eq!(code("hello"), None);
        assert_eq!(code("  a\n\tb  "), None);
        assert_eq!(code("   "), Some(ErrorCode::InvalidPayload));
        assert_eq!(code(""), Some(ErrorCode::InvalidPayload));
        assert_eq!(code("a\u{0007}b"), Some(ErrorCode::InvalidPayload));
        assert_eq!(code("a\rb"), Some(ErrorCode::InvalidPayload));
        assert_eq!(code("ééééééééééé"), Some(ErrorCode::TooLarge), "11 code points");
        assert_eq!(code("éééééééééé"), None, "10 code points, 20 bytes");
        assert_eq!(code("   0123456789   "), None, "whitespace is trimmed before counting");
        assert!(check_content("", 10, true).is_ok());
        assert!(check_client_msg_id(&"x".repeat(64)).is_ok());
        assert!(check_client_msg_id(&"x".repeat(65)).is_err());
        assert!(check_client_msg_id("").is_err());
    }
}
