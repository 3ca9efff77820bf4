//! A chat: one student, one tutor, one course.

use serde::{Deserialize, Serialize};

use super::message::Message;
use super::time::Timestamp;

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
