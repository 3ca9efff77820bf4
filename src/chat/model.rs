//! The data the edge knows, in the contract's words: users, courses, enrollments, blocks, chats
//! and messages. These are both the wire shapes (serde, camelCase) and what the stores keep.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A student: the contract calls them `user`.
    User,
    Tutor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Tutor => "tutor",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: String,
    pub title: String,
    pub tutor_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub user_id: String,
    pub course_id: String,
    pub purchased_at: Timestamp,
}

/// One block as its owner (the blocker) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub user_id: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderType {
    User,
    Tutor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    #[default]
    Text,
    Image,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub chat_id: String,
    pub seq: u64,
    pub sender_id: String,
    pub sender_type: SenderType,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    pub client_msg_id: String,
    pub created_at: Timestamp,
}

/// A chat as the store keeps it: one student, one tutor, one course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: String,
    pub course_id: String,
    pub student_id: String,
    pub tutor_id: String,
    pub created_at: Timestamp,
    /// The time of the last stored message, or the creation time.
    pub updated_at: Timestamp,
    /// The last message the store holds (the write-behind queue may hold newer ones).
    pub last_message: Option<Message>,
    pub last_seq: u64,
}

impl Chat {
    pub fn participants(&self) -> [&str; 2] {
        [&self.student_id, &self.tutor_id]
    }

    pub fn is_participant(&self, user: &str) -> bool {
        self.student_id == user || self.tutor_id == user
    }

    pub fn other(&self, user: &str) -> &str {
        if self.student_id == user {
            &self.tutor_id
        } else {
            &self.student_id
        }
    }
}

/// An uploaded attachment as the store keeps it (the message carries the public part, with a
/// freshly signed url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAttachment {
    pub id: String,
    pub chat_id: String,
    pub uploader_id: String,
    pub name: String,
    pub size: u64,
    /// Sniffed from the bytes.
    pub mime: String,
    pub created_at: Timestamp,
}
