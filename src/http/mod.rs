//! HTTP: the router from method + path to small handlers, each `async fn` from typed input to
//! `Result<Response, ApiError>`. REST handlers are thin: they authenticate, parse, call the chat
//! rules and shape the answer. The websocket upgrade, health and metrics endpoints, the demo's
//! development endpoints and the web client's static files live here too.

mod admin;
mod attachments;
mod chats;
mod dev;
mod error;
mod ops;
mod people;
mod socket;
mod static_files;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::ApiError;

use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::node::Node;

pub type Body = Full<Bytes>;
pub type ApiResult = Result<Response<Body>, ApiError>;

/// Largest JSON request body.
const MAX_JSON_BODY: usize = 64 * 1024;

/// Everything a handler gets about its request.
pub struct Ctx {
    pub node: Arc<Node>,
    pub peer: SocketAddr,
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: hyper::HeaderMap,
    pub(crate) body: Option<Incoming>,
    /// The authenticated caller, once `caller()` ran (for the audit line).
    audited_user: Option<String>,
    /// The chat or user the call is about (for the audit line).
    audited_target: Option<String>,
}

impl Ctx {
    /// The caller from `Authorization: Bearer`, recorded in the user store as the token says.
    pub async fn caller(&mut self) -> Result<Caller, ApiError> {
        let header = self.headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).unwrap_or("").trim();
        if token.is_empty() {
            return Err(ApiError::new(ErrorCode::Unauthorized, "missing bearer token"));
        }
        let identity = self.node.verifier.verify(token)?;
        self.audited_user = Some(identity.caller.user_id.clone());
        if let Err(e) = self.node.chat.sign_in(&identity.caller).await {
            tracing::warn!(error = %e, user = %identity.caller.user_id, "could not record the user");
        }
        Ok(identity.caller)
    }

    pub fn target(&mut self, target: &str) {
        self.audited_target = Some(target.to_owned());
    }

    /// The JSON body, at most 64 KiB.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let Some(body) = self.body.take() else {
            return Err(ApiError::new(ErrorCode::InvalidPayload, "missing body"));
        };
        let bytes = Limited::new(body, MAX_JSON_BODY)
            .collect()
            .await
            .map_err(|_| ApiError::new(ErrorCode::TooLarge, format!("the body is over {MAX_JSON_BODY} bytes")))?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(ErrorCode::InvalidPayload, format!("invalid JSON body: {e}")))
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> ApiResult {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::new(ErrorCode::InvalidPayload, e.to_string()))?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default())
}

pub fn no_content() -> ApiResult {
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(Full::default()).unwrap_or_default())
}

fn not_found() -> ApiResult {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

/// The hyper service: every request of every connection comes through here.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/socket.io" || path == "/socket.io/" {
        return Ok(socket::upgrade(node, req, peer).unwrap_or_else(ApiError::into_response));
    }
    let origin = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cors_origin = origin.filter(|o| !node.config.allowed_origins.is_empty() && node.config.origin_allowed(o));
    if req.method() == Method::OPTIONS && path.starts_with("/api/") {
        return Ok(with_cors(preflight(cors_origin.is_some()), cors_origin.as_deref()));
    }
    let is_api = path.starts_with("/api/");
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    let (parts, body) = req.into_parts();
    let mut ctx = Ctx {
        node: node.clone(),
        peer,
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body: Some(body),
        audited_user: None,
        audited_target: None,
    };
    let (response, result) = match route(&mut ctx).await {
        Ok(response) => (response, "ok"),
        Err(e) => {
            let code = e.body.code.as_str();
            metrics::counter!("coursechat_errors_total", "code" => code).increment(1);
            (e.into_response(), code)
        }
    };
    metrics::counter!("coursechat_http_requests_total", "status" => response.status().as_u16().to_string())
        .increment(1);
    if is_api {
        let action = format!("{} {}", ctx.method, ctx.path);
        node.audit.record(&action, ctx.audited_user.as_deref(), ctx.audited_target.as_deref(), result, Some(peer));
    }
    Ok(with_cors(response, cors_origin.as_deref()))
}

async fn route(ctx: &mut Ctx) -> ApiResult {
    let path = ctx.path.clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = ctx.method.clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => ops::healthz(ctx).await,
        (&Method::GET, ["readyz"]) => ops::readyz(ctx).await,
        (&Method::GET, ["metrics"]) => ops::metrics(ctx).await,

        (&Method::GET, ["api", "chats"]) => chats::list(ctx).await,
        (&Method::POST, ["api", "chats"]) => chats::create(ctx).await,
        (&Method::GET, ["api", "chats", chat_id, "messages"]) => chats::messages(ctx, chat_id).await,
        (&Method::PUT, ["api", "chats", chat_id, "read"]) => chats::read(ctx, chat_id).await,
        (&Method::POST, ["api", "chats", chat_id, "attachments"]) => attachments::upload(ctx, chat_id).await,
        (&Method::GET, ["api", "attachments", id]) => attachments::download(ctx, id).await,

        (&Method::GET, ["api", "users", "available-tutors"]) => people::available_tutors(ctx).await,
        (&Method::GET, ["api", "tutors", "students"]) => people::students(ctx).await,
        (&Method::GET, ["api", "blocks"]) => people::list_blocks(ctx).await,
        (&Method::POST, ["api", "blocks"]) => people::block(ctx).await,
        (&Method::DELETE, ["api", "blocks", user_id]) => people::unblock(ctx, user_id).await,

        (&Method::PUT, ["api", "admin", "users", id]) => admin::put_user(ctx, id).await,
        (&Method::PUT, ["api", "admin", "courses", id]) => admin::put_course(ctx, id).await,
        (&Method::PUT, ["api", "admin", "enrollments"]) => admin::put_enrollment(ctx).await,
        (&Method::DELETE, ["api", "admin", "enrollments", user_id, course_id]) => {
            admin::delete_enrollment(ctx, user_id, course_id).await
        }

        (&Method::GET, ["api", "dev", "users"]) if ctx.node.config.demo => dev::users(ctx).await,
        (&Method::POST, ["api", "dev", "token"]) if ctx.node.config.demo => dev::token(ctx).await,

        (_, ["api", ..]) => not_found(),
        (&Method::GET | &Method::HEAD, _) => match &ctx.node.config.web_dir {
            Some(root) => static_files::serve(root, &ctx.path).await,
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Decodes `%XX` and `+` in a query component.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if i + 2 >= bytes.len() {
                    return None;
                }
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn preflight(allowed: bool) -> Response<Body> {
    let status = if allowed { StatusCode::NO_CONTENT } else { StatusCode::FORBIDDEN };
    Response::builder()
        .status(status)
        .header("access-control-allow-methods", "GET, POST, PUT, DELETE, OPTIONS")
        .header("access-control-allow-headers", "authorization, content-type, x-file-name")
        .header("access-control-max-age", "600")
        .body(Full::default())
        .unwrap_or_default()
}

fn with_cors(mut response: Response<Body>, origin: Option<&str>) -> Response<Body> {
    if let Some(value) = origin.and_then(|o| hyper::header::HeaderValue::from_str(o).ok()) {
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", value);
        headers.insert("vary", hyper::header::HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let q = parse_query("before=10&limit=5&x=a%20b+c&bad=%zz");
        assert_eq!(q.get("before").map(String::as_str), Some("10"));
        assert_eq!(q.get("x").map(String::as_str), Some("a b c"));
        assert!(!q.contains_key("bad"));
        assert!(parse_query("a=%").is_empty());
    }
}
