//! The data the edge knows, in the contract's words: roles, users, courses, enrollments, blocks,
//! chats, messages, their ids and timestamps. These are both the wire shapes (serde, camelCase)
//! and what the stores keep.
//!
//! A leaf: nothing here imports anything else of the crate, so every layer may use it.

pub mod chat;
pub mod course;
pub mod ids;
pub mod message;
pub mod time;
pub mod user;

pub use chat::Chat;
pub use course::{Course, Enrollment};
pub use message::{Attachment, Message, MessageType, SenderType, StoredAttachment};
pub use time::Timestamp;
pub use user::{Block, Role, User};
