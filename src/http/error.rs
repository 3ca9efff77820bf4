//! The one mapping from failures to HTTP responses: `{"error":{"code","message"}}` with the
//! code's status, and `Retry-After` on `rate_limited`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::auth::AuthError;
use crate::chat::ChatError;
use crate::error::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub struct ApiError {
    pub body: ErrorBody,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { body: ErrorBody::new(code, message), retry_after_secs: None }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            error: &'a ErrorBody,
        }
        let json = serde_json::to_vec(&Envelope { error: &self.body }).unwrap_or_default();
        let mut builder =
            Response::builder().status(self.body.code.status()).header("content-type", "application/json");
        if let Some(secs) = self.retry_after_secs {
            builder = builder.header("retry-after", secs.to_string());
        }
        builder.body(Full::new(Bytes::from(json))).unwrap_or_default()
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let retry_after_secs = match &e {
            ChatError::RateLimited(d) => Some(d.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        };
        ApiError { body: e.body(), retry_after_secs }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}
