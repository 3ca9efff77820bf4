//! The contract's error codes, and the one place that maps them to HTTP statuses.
//!
//! Each layer has its own error enum (auth, store, engine, chat rules); each knows its
//! [`ErrorCode`]. REST answers `{"error":{"code","message"}}` with [`ErrorCode::status`]; Socket.IO
//! acks and `error` events carry the same code. Nothing else decides which code a failure gets.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    Unauthorized,
    InvalidToken,
    TokenExpired,
    Forbidden,
    NotEnrolled,
    NotTutor,
    Blocked,
    NotFound,
    TooLarge,
    UnsupportedType,
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotEnrolled => "not_enrolled",
            ErrorCode::NotTutor => "not_tutor",
            ErrorCode::Blocked => "blocked",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedType => "unsupported_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of this code (CONTRACT "Status codes").
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidPayload => 400,
            ErrorCode::Unauthorized | ErrorCode::InvalidToken | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden | ErrorCode::NotEnrolled | ErrorCode::NotTutor | ErrorCode::Blocked => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// The body of an error: `{code, message}`, the same in REST, acks and `error` events.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_contract_names() {
        for code in [ErrorCode::InvalidPayload, ErrorCode::NotEnrolled, ErrorCode::RateLimited, ErrorCode::TokenExpired]
        {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert_eq!(ErrorCode::Blocked.status(), 403);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
    }
}
