//! The MongoDB documents and their mapping to and from [`crate::model`].
//!
//! One struct per collection, shaped as docs/STORE.md lists them (camelCase fields, ObjectId
//! `_id`s for chats and messages, `student` and `tutor` copied out of `participants` for the
//! one-chat-per-triple index); `blocks` and `read_cursors` stay untyped `Document`s with a reader
//! each. Kept apart from the queries so that what is stored reads, and changes, in one place.

use bson::oid::ObjectId;
use bson::{DateTime, Document};
use serde::{Deserialize, Serialize};

use crate::model::time::Timestamp;
use crate::model::{Attachment, Block, Chat, Course, Enrollment, Message, MessageType, Role, SenderType, User};
use crate::store::{StoreError, StoreResult};

pub(super) fn oid(id: &str) -> StoreResult<ObjectId> {
    ObjectId::parse_str(id).map_err(|e| StoreError::Corrupt(format!("{id:?} is not an ObjectId: {e}")))
}

pub(super) fn date(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.millis())
}

pub(super) fn stamp(d: DateTime) -> Timestamp {
    Timestamp(d.timestamp_millis())
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    role: Role,
}

impl From<&User> for UserDoc {
    fn from(u: &User) -> Self {
        UserDoc { id: u.id.clone(), name: u.name.clone(), role: u.role }
    }
}

impl From<UserDoc> for User {
    fn from(d: UserDoc) -> Self {
        User { id: d.id, name: d.name, role: d.role }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CourseDoc {
    #[serde(rename = "_id")]
    id: String,
    title: String,
    tutor_ids: Vec<String>,
}

impl From<&Course> for CourseDoc {
    fn from(c: &Course) -> Self {
        CourseDoc { id: c.id.clone(), title: c.title.clone(), tutor_ids: c.tutor_ids.clone() }
    }
}

impl From<CourseDoc> for Course {
    fn from(d: CourseDoc) -> Self {
        Course { id: d.id, title: d.title, tutor_ids: d.tutor_ids }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EnrollmentDoc {
    user: String,
    course: String,
    purchased_at: DateTime,
}

impl From<EnrollmentDoc> for Enrollment {
    fn from(d: EnrollmentDoc) -> Self {
        Enrollment { user_id: d.user, course_id: d.course, purchased_at: stamp(d.purchased_at) }
    }
}

/// A `blocks` document (`{blocker, blocked, createdAt}`, kept untyped) as the blocker sees it.
pub(super) fn block_from_doc(d: &Document) -> Block {
    Block {
        user_id: d.get_str("blocked").unwrap_or_default().to_owned(),
        created_at: d.get_datetime("createdAt").map(|t| stamp(*t)).unwrap_or_default(),
    }
}

/// The seq of a `read_cursors` document (`{chat, user, seq, updatedAt}`); 0 when there is none.
pub(super) fn cursor_seq(d: Option<Document>) -> u64 {
    d.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0).max(0) as u64
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    chat: ObjectId,
    seq: i64,
    sender: String,
    sender_type: SenderType,
    content: String,
    message_type: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<Attachment>,
    client_msg_id: String,
    created_at: DateTime,
}

impl MessageDoc {
    pub(super) fn from_message(m: &Message) -> StoreResult<Self> {
        Ok(MessageDoc {
            id: oid(&m.id)?,
            chat: oid(&m.chat_id)?,
            seq: m.seq as i64,
            sender: m.sender_id.clone(),
            sender_type: m.sender_type,
            content: m.content.clone(),
            message_type: m.kind,
            attachment: m.attachment.clone(),
            client_msg_id: m.client_msg_id.clone(),
            created_at: date(m.created_at),
        })
    }

    pub(super) fn into_message(self) -> Message {
        Message {
            id: self.id.to_hex(),
            chat_id: self.chat.to_hex(),
            seq: self.seq.max(0) as u64,
            sender_id: self.sender,
            sender_type: self.sender_type,
            kind: self.message_type,
            content: self.content,
            attachment: self.attachment,
            client_msg_id: self.client_msg_id,
            created_at: stamp(self.created_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantDoc {
    user: String,
    user_type: SenderType,
    joined_at: DateTime,
}

/// The seed's `lastMessage {content, sender, timestamp}`, with what a chat list needs besides.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LastMessageDoc {
    content: String,
    sender: String,
    timestamp: DateTime,
    id: ObjectId,
    seq: i64,
    sender_type: SenderType,
    message_type: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<Attachment>,
    client_msg_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChatDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    participants: Vec<ParticipantDoc>,
    course: String,
    /// Copies of the participants by role: the one-chat-per-(student, tutor, course) index.
    student: String,
    tutor: String,
    last_message: Option<LastMessageDoc>,
    last_seq: i64,
    created_at: DateTime,
    updated_at: DateTime,
}

impl ChatDoc {
    pub(super) fn from_chat(c: &Chat) -> StoreResult<Self> {
        let joined = date(c.created_at);
        Ok(ChatDoc {
            id: oid(&c.id)?,
            participants: vec![
                ParticipantDoc { user: c.student_id.clone(), user_type: SenderType::User, joined_at: joined },
                ParticipantDoc { user: c.tutor_id.clone(), user_type: SenderType::Tutor, joined_at: joined },
            ],
            course: c.course_id.clone(),
            student: c.student_id.clone(),
            tutor: c.tutor_id.clone(),
            last_message: c.last_message.as_ref().map(last_message_doc).transpose()?,
            last_seq: c.last_seq as i64,
            created_at: date(c.created_at),
            updated_at: date(c.updated_at),
        })
    }

    pub(super) fn into_chat(self) -> Chat {
        let chat_id = self.id.to_hex();
        Chat {
            last_message: self.last_message.map(|l| Message {
                id: l.id.to_hex(),
                chat_id: chat_id.clone(),
                seq: l.seq.max(0) as u64,
                sender_id: l.sender,
                sender_type: l.sender_type,
                kind: l.message_type,
                content: l.content,
                attachment: l.attachment,
                client_msg_id: l.client_msg_id,
                created_at: stamp(l.timestamp),
            }),
            id: chat_id,
            course_id: self.course,
            student_id: self.student,
            tutor_id: self.tutor,
            created_at: stamp(self.created_at),
            updated_at: stamp(self.updated_at),
            last_seq: self.last_seq.max(0) as u64,
        }
    }
}

pub(super) fn last_message_doc(m: &Message) -> StoreResult<LastMessageDoc> {
    Ok(LastMessageDoc {
        content: m.content.clone(),
        sender: m.sender_id.clone(),
        timestamp: date(m.created_at),
        id: oid(&m.id)?,
        seq: m.seq as i64,
        sender_type: m.sender_type,
        message_type: m.kind,
        attachment: m.attachment.clone(),
        client_msg_id: m.client_msg_id.clone(),
    })
}
