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
use socketioxide::adapter::Adapter;
use socketioxide::SocketIo;

use crate::auth::{Caller, Role};
use crate::chat::{Course, User};
use crate::error::ChatError;
use crate::{sockets, App, Chats};

/// What every handler gets: the chat rules, and the Socket.IO handle for presence.
pub struct Rest<A: Adapter> {
    app: App,
    io: SocketIo<A>,
}

impl<A: Adapter> Clone for Rest<A> {
    fn clone(&self) -> Self {
        Rest { app: self.app.clone(), io: self.io.clone() }
    }
}

pub fn router<A: Adapter>(app: App, io: SocketIo<A>) -> Router {
    Router::new()
        .route("/healthz", get(async || Json(json!({"status": "ok"}))))
        .route("/api/admin/users/{id}", put(put_user::<A>))
        .route("/api/admin/courses/{id}", put(put_course::<A>))
        .route("/api/admin/enrollments", put(put_enrollment::<A>))
        .route("/api/chats", post(create_chat::<A>))
        .fallback(async || ChatError::NotFound("route"))
        .with_state(Rest { app, io })
}

type Answer = Result<Json<Value>, ChatError>;

#[derive(Deserialize)]
struct UserBody {
    name: String,
    role: Role,
}

async fn put_user<A: Adapter>(
    State(Rest { app, .. }): State<Rest<A>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UserBody>,
) -> Answer {
    let user = app.chats.put_user(&caller, User { id, name: b.name, role: b.role }).await?;
    Ok(Json(json!({ "user": user })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CourseBody {
    title: String,
    tutor_ids: Vec<String>,
}

async fn put_course<A: Adapter>(
    State(Rest { app, .. }): State<Rest<A>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<CourseBody>,
) -> Answer {
    let course = app.chats.put_course(&caller, Course { id, title: b.title, tutor_ids: b.tutor_ids }).await?;
    Ok(Json(json!({ "course": course })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentBody {
    user_id: String,
    course_id: String,
}

async fn put_enrollment<A: Adapter>(
    State(Rest { app, .. }): State<Rest<A>>,
    caller: Caller,
    JsonBody(b): JsonBody<EnrollmentBody>,
) -> Answer {
    let enrollment = app.chats.put_enrollment(&caller, &b.user_id, &b.course_id).await?;
    Ok(Json(json!({ "enrollment": enrollment })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateChatBody {
    participant_id: String,
    course_id: String,
}

async fn create_chat<A: Adapter>(
    State(Rest { app, io }): State<Rest<A>>,
    caller: Caller,
    JsonBody(b): JsonBody<CreateChatBody>,
) -> Result<(StatusCode, Json<Value>), ChatError> {
    let (chat, created) = match &app.chats {
        Chats::Memory(chats) => {
            let online = |id: &str| sockets::is_online(&io, id);
            let (chat, created) = chats.create_chat(&caller, &b.participant_id, &b.course_id, &online).await?;
            (json!({ "chat": chat }), created)
        }
        Chats::Redis(chats) => {
            let (chat, created) = chats.create_chat(&caller, &b.participant_id, &b.course_id, &io).await?;
            (json!({ "chat": chat }), created)
        }
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(chat)))
}

/// The caller, from `Authorization: Bearer <jwt>`; signing in updates its user record.
impl<A: Adapter> FromRequestParts<Rest<A>> for Caller {
    type Rejection = ChatError;

    async fn from_request_parts(parts: &mut Parts, Rest { app, .. }: &Rest<A>) -> Result<Self, ChatError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        let caller = app.verifier.verify(token)?;
        app.chats.sign_in(&caller).await?;
        Ok(caller)
    }
}

/// A JSON body whose rejection is the contract's `invalid_payload` (axum's own is plain text).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ChatError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ChatError> {
        let bytes =
            axum::body::Bytes::from_request(req, state).await.map_err(|e| ChatError::TooLarge(format!("body: {e}")))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ChatError::InvalidPayload(e.to_string()))
    }
}
