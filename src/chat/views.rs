//! What callers see of a chat: the REST / ack shapes built from the store, the pending queue and
//! presence.

use serde::Serialize;

use crate::model::time::Timestamp;
use crate::model::{Message, Role};

#[derive(Debug, Clone, Serialize)]
pub struct CourseRef {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub online: bool,
    /// How far this participant has read (coursechat's addition: lets a client show "Seen"
    /// after a reload, before any `message_read` arrives).
    pub read_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatView {
    pub id: String,
    pub course: CourseRef,
    pub participants: Vec<Participant>,
    pub last_message: Option<Message>,
    pub last_seq: u64,
    pub unread: u64,
    pub read_seq: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A tutor or student the caller can chat with, and the courses that connect them.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub online: bool,
    pub courses: Vec<CourseRef>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}
