//! Identifier rules of the contract: user and course ids, 24-hex ObjectIds for chats and messages.

/// `sub` and every user id: 1..64 chars of `[A-Za-z0-9_-]`. Course ids follow the same rule.
pub fn is_valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Chat and message ids: 24 lowercase hex chars (MongoDB `_id` form).
pub fn is_object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh ObjectId in its hex form.
pub fn new_object_id() -> String {
    bson::oid::ObjectId::new().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_contract() {
        assert!(is_valid_user_id("student_1-A"));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id("a b"));
        assert!(!is_valid_user_id(&"x".repeat(65)));
    }

    #[test]
    fn object_ids_are_lowercase_hex() {
        let id = new_object_id();
        assert!(is_object_id(&id));
        assert!(!is_object_id("507F1F77BCF86CD799439011"));
        assert!(!is_object_id("507f1f77bcf86cd79943901"));
    }
}
