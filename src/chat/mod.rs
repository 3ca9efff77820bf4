//! The chat rules: who may create, join and send in a chat, what a message may contain, how
//! sequence numbers, read cursors and unread counts come about, and which events each action
//! announces. Socket.IO and REST are thin adapters over [`ChatService`]: one check, one error
//! enum, for both.
//!
//! One concern per file: [`messages`] (send, history, join, read cursors), [`chats`] (create,
//! list, the chat view), [`presence`] (online, offline, typing), [`people`], [`blocks`],
//! [`admin`], [`attachments`], and the [`checks`] they share; [`content`] is what a message may
//! hold and [`views`] the shapes callers get.

pub mod admin;
pub mod attachments;
pub mod blocks;
pub mod chats;
pub mod checks;
pub mod content;
pub mod messages;
pub mod people;
pub mod presence;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use crate::attachments::UrlSigner;
use crate::config::Limits;
use crate::engine::{Engine, EngineError};
use crate::error::{ErrorBody, ErrorCode};
use crate::hub::{Delivery, SocketId, Target};
use crate::model::Message;
use crate::store::{Store, StoreError};

pub use messages::{Draft, Joined};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not enrolled in the course {title:?}")]
    NotEnrolled { course_id: String, title: String },
    #[error("{0}")]
    NotTutor(String),
    #[error("you cannot send messages to this user")]
    Blocked,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedType(String),
    #[error("too many requests; retry in {} ms", .0.as_millis())]
    RateLimited(Duration),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("temporarily unavailable")]
    Store(#[from] StoreError),
    #[error("temporarily unavailable")]
    Engine(EngineError),
}

impl From<EngineError> for ChatError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::RateLimited(retry) => ChatError::RateLimited(retry),
            e => ChatError::Engine(e),
        }
    }
}

impl ChatError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::InvalidPayload(_) => ErrorCode::InvalidPayload,
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::NotEnrolled { .. } => ErrorCode::NotEnrolled,
            ChatError::NotTutor(_) => ErrorCode::NotTutor,
            ChatError::Blocked => ErrorCode::Blocked,
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::TooLarge(_) => ErrorCode::TooLarge,
            ChatError::UnsupportedType(_) => ErrorCode::UnsupportedType,
            ChatError::RateLimited(_) => ErrorCode::RateLimited,
            ChatError::Auth(e) => e.code(),
            ChatError::Store(e) => e.code(),
            ChatError::Engine(e) => e.code(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        if let ChatError::Store(e) = self {
            tracing::warn!(error = %e, "store error");
        }
        if let ChatError::Engine(e) = self {
            tracing::warn!(error = %e, "engine error");
        }
        ErrorBody::new(self.code(), self.to_string())
    }
}

pub type ChatResult<T> = Result<T, ChatError>;

/// The limits the rules enforce (CONTRACT "Limits"; all configurable).
#[derive(Debug, Clone)]
pub struct ChatLimits {
    pub max_content_chars: usize,
    pub max_missed: usize,
    pub max_page: usize,
    pub max_attachment_bytes: usize,
    /// Attachment types allowed, as sniffed from the bytes.
    pub attachment_types: Vec<String>,
}

impl From<&Limits> for ChatLimits {
    fn from(limits: &Limits) -> Self {
        ChatLimits {
            max_content_chars: limits.max_content_chars,
            max_attachment_bytes: limits.max_attachment_bytes,
            attachment_types: limits.attachment_types.iter().map(|t| t.trim().to_owned()).collect(),
            ..ChatLimits::default()
        }
    }
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
            max_content_chars: 4000,
            max_missed: 500,
            max_page: 100,
            max_attachment_bytes: 10 * 1024 * 1024,
            attachment_types: crate::attachments::DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// The chat rules, one function per action: the files of this module each add the actions of
/// one concern.
pub struct ChatService {
    store: Arc<dyn Store>,
    engine: Engine,
    limits: ChatLimits,
    /// Signs attachment urls whenever a message is shown.
    signer: Arc<UrlSigner>,
}

impl ChatService {
    pub fn new(store: Arc<dyn Store>, engine: Engine, limits: ChatLimits, signer: Arc<UrlSigner>) -> Self {
        ChatService { store, engine, limits, signer }
    }

    /// A message as a client sees it: its attachment carries a freshly signed url.
    fn present(&self, mut message: Message) -> Message {
        self.signer.present(&mut message);
        message
    }

    async fn publish(&self, target: Target, except: Option<SocketId>, frame: bytes::Bytes) -> ChatResult<()> {
        Ok(self.engine.bus.publish(Delivery { target, except, frame }).await?)
    }
}
