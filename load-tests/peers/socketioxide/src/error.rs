//! The contract's error codes, one enum for every layer of this small server, mapped to an HTTP
//! answer once (here) and to a Socket.IO ack or `error` event once (`sockets.rs`, with
//! [`ChatError::body`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidPayload(String),
    #[error("no token")]
    Unauthorized,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not enrolled in {0}")]
    NotEnrolled(String),
    #[error("{0}")]
    NotTutor(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    TooLarge(String),
    /// Seconds until the next send is allowed.
    #[error("too many messages")]
    RateLimited(u64),
    /// Redis (cluster mode) did not answer or answered an error.
    #[error("{0}")]
    Unavailable(String),
}

/// `{code, message}`: inside `{"error": ...}` over HTTP, a failed ack and the `error` event.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl ChatError {
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::InvalidPayload(_) => "invalid_payload",
            ChatError::Unauthorized => "unauthorized",
            ChatError::InvalidToken(_) => "invalid_token",
            ChatError::TokenExpired => "token_expired",
            ChatError::Forbidden(_) => "forbidden",
            ChatError::NotEnrolled(_) => "not_enrolled",
            ChatError::NotTutor(_) => "not_tutor",
            ChatError::NotFound(_) => "not_found",
            ChatError::TooLarge(_) => "too_large",
            ChatError::RateLimited(_) => "rate_limited",
            ChatError::Unavailable(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ChatError::InvalidPayload(_) => StatusCode::BAD_REQUEST,
            ChatError::Unauthorized | ChatError::InvalidToken(_) | ChatError::TokenExpired => StatusCode::UNAUTHORIZED,
            ChatError::Forbidden(_) | ChatError::NotEnrolled(_) | ChatError::NotTutor(_) => StatusCode::FORBIDDEN,
            ChatError::NotFound(_) => StatusCode::NOT_FOUND,
            ChatError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ChatError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code(), message: self.to_string() }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope {
            error: ErrorBody,
        }
        let mut response = (self.status(), Json(Envelope { error: self.body() })).into_response();
        if let ChatError::RateLimited(seconds) = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
