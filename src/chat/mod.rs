//! The chat rules: who may create, join and send in a chat, what a message may contain, how
//! sequence numbers, read cursors and unread counts come about, and which events each action
//! announces. Socket.IO and REST are thin adapters over [`service::ChatService`]: one check, one
//! error enum, for both.

pub mod content;
pub mod service;
pub mod views;

use std::time::Duration;

use crate::engine::EngineError;
use crate::error::{ErrorBody, ErrorCode};
use crate::store::StoreError;

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
    Engine(#[from] EngineError),
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
