//! The store: the history of record (messages) and the directory (users, courses, enrollments,
//! blocks, chats, read cursors).
//!
//! Two implementations sit behind [`Store`]: [`embedded::EmbeddedStore`] (redb in the data dir,
//! the default) and [`mongo::MongoStore`] (a MongoDB that several nodes share). Both run the one
//! suite in `contract_tests`. Messages never reach the store from a request: the engine's durable
//! queue takes them and the write-behind writer (`src/writer.rs`, outside this module) persists
//! them in batches, so a store outage delays history, never a send. Everything else is written
//! through.

pub mod embedded;
mod message_record;
pub mod mongo;

#[cfg(test)]
pub mod contract_tests;

use async_trait::async_trait;

use crate::error::ErrorCode;
use crate::model::time::Timestamp;
use crate::model::{Block, Chat, Course, Enrollment, Message, StoredAttachment, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed to write; the caller answers `unavailable`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unavailable
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The outcome of [`Store::create_chat`].
#[derive(Debug, Clone)]
pub struct ChatCreation {
    pub chat: Chat,
    /// False when a chat for the same (student, tutor, course) already existed and is returned.
    pub created: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for `/readyz` and logs.
    fn kind(&self) -> &'static str;
    /// Whether the store answers right now (for `/readyz`: `ok` or `degraded`).
    async fn ping(&self) -> StoreResult<()>;

    async fn put_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;

    /// Creates or replaces a course (and its tutor index).
    async fn put_course(&self, course: &Course) -> StoreResult<()>;
    async fn course(&self, id: &str) -> StoreResult<Option<Course>>;
    async fn courses_by_tutor(&self, tutor_id: &str) -> StoreResult<Vec<Course>>;

    /// Creates an enrollment, or returns the existing one unchanged (its first `purchasedAt`).
    async fn put_enrollment(&self, enrollment: &Enrollment) -> StoreResult<Enrollment>;
    /// Returns whether an enrollment was there.
    async fn delete_enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<bool>;
    async fn enrollment(&self, user_id: &str, course_id: &str) -> StoreResult<Option<Enrollment>>;
    async fn enrollments_by_user(&self, user_id: &str) -> StoreResult<Vec<Enrollment>>;
    async fn enrollments_by_course(&self, course_id: &str) -> StoreResult<Vec<Enrollment>>;

    /// Records that `blocker` blocks `blocked`; returns the block and whether it is new.
    async fn put_block(&self, blocker: &str, blocked: &str, at: Timestamp) -> StoreResult<(Block, bool)>;
    async fn delete_block(&self, blocker: &str, blocked: &str) -> StoreResult<bool>;
    async fn blocks(&self, blocker: &str) -> StoreResult<Vec<Block>>;
    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool>;

    /// Creates the chat unless one exists for its (student, tutor, course); that one is returned.
    async fn create_chat(&self, chat: &Chat) -> StoreResult<ChatCreation>;
    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>>;
    async fn chats_by_user(&self, user_id: &str) -> StoreResult<Vec<Chat>>;

    /// Moves a read cursor forward to `seq` (never back); returns the cursor after the call.
    async fn advance_read_cursor(&self, chat_id: &str, user_id: &str, seq: u64) -> StoreResult<u64>;
    /// The read cursor of `user_id` in `chat_id` (0 when the user has read nothing).
    async fn read_cursor(&self, chat_id: &str, user_id: &str) -> StoreResult<u64>;

    /// Stores a batch from the write-behind queue. Idempotent per (chat, seq): a message already
    /// stored counts as stored. Also moves each chat's last message forward (never back) and each
    /// sender's read cursor to their newest message.
    async fn persist_messages(&self, batch: &[Message]) -> StoreResult<()>;
    /// The newest `limit` messages with seq < `before` (all when `None`), ascending.
    async fn messages_before(&self, chat_id: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<Message>>;
    /// The first `limit` messages with seq > `after`, ascending.
    async fn messages_after(&self, chat_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Message>>;

    /// Stores an attachment's bytes and record (durably: the upload is answered after this).
    async fn put_attachment(&self, attachment: &StoredAttachment, bytes: Vec<u8>) -> StoreResult<()>;
    async fn attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>>;
    async fn attachment_bytes(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
}
