//! REST: the four calls the load generator makes (the admin API and `POST /api/chats`) plus
//! `/healthz`, each a few lines from typed input to `Result<_, ChatError>`.

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::SocketIo;

use crate::auth::{Caller, Role};
use crate::chat::{Course, User};
use crate::error::ChatError;
use crate::{sockets, App};

/// What every handler gets: the chat rules, and the Socket.IO handle for presence.
#[derive(Clone)]
pub struct Rest {
    app: App,
    io: SocketIo,
}

pub fn router(app: App, io: SocketIo) -> Router {
    Router::new()
        .route("/healthz", get(async || Json(json!({"status": "ok"}))))
        .route("/api/admin/users/{id}", put(put_user))
        .route("/api/admin/courses/{id}", put(put_course))
        .route("/api/admin/enrollments", put(put_enrollment))
        .route("/api/chats", post(create_chat))
        .fallback(async || ChatError::NotFound("route"))
        .with_state(Rest { app, io })
}

type Answer = Result<Json<Value>, ChatError>;

#[derive(Deserialize)]
struct UserBody {
    name: String,
    role: Role,
}

async fn put_user(State(Rest { app, .. }): State<Rest>, caller: Caller, Path(id): Path<String>, JsonBody(b): JsonBody<UserBody>) -> Answer {
    let user = app.chats.put_user(&caller, User { id, name: b.name, role: b.role })?;
    Ok(Json(json!({ "user": user })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CourseBody {
    title: String,
    tutor_ids: Vec<String>,
}

async fn put_course(State(Rest { app, .. }): State<Rest>, caller: Caller, Path(id): Path<String>, JsonBody(b): JsonBody<CourseBody>) -> Answer {
    let course = app.chats.put_course(&caller, Course { id, title: b.title, tutor_ids: b.tutor_ids })?;
    Ok(Json(json!({ "course": course })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentBody {
    user_id: String,
    course_id: String,
}

async fn put_enrollment(State(Rest { app, .. }): State<Rest>, caller: Caller, JsonBody(b): JsonBody<EnrollmentBody>) -> Answer {
    let enrollment = app.chats.put_enrollment(&caller, &b.user_id, &b.course_id)?;
    Ok(Json(json!({ "enrollment": enrollment })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateChatBody {
    participant_id: String,
    course_id: String,
}

async fn create_chat(
    State(Rest { app, io }): State<Rest>,
    caller: Caller,
    JsonBody(b): JsonBody<CreateChatBody>,
) -> Result<(StatusCode, Json<Value>), ChatError> {
    let online = |id: &str| sockets::is_online(&io, id);
    let (chat, created) = app.chats.create_chat(&caller, &b.participant_id, &b.course_id, &online).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "chat": chat }))))
}

/// The caller, from `Authorization: Bearer <jwt>`; signing in updates its user record.
impl FromRequestParts<Rest> for Caller {
    type Rejection = ChatError;

    async fn from_request_parts(parts: &mut Parts, Rest { app, .. }: &Rest) -> Result<Self, ChatError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        let caller = app.verifier.verify(token)?;
        app.chats.sign_in(&caller);
        Ok(caller)
    }
}

/// A JSON body whose rejection is the contract's `invalid_payload` (axum's own is plain text).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ChatError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ChatError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ChatError::TooLarge(format!("body: {e}")))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ChatError::InvalidPayload(e.to_string()))
    }
}
