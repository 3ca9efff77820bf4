//! `/api/chats`: list, create, history pages and the read cursor.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{json, no_content, ApiError, ApiResult, Ctx};
use crate::chat::views::ChatView;
use crate::error::ErrorCode;

#[derive(Serialize)]
struct Chats {
    chats: Vec<ChatView>,
}

#[derive(Serialize)]
struct OneChat {
    chat: ChatView,
}

pub async fn list(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let chats = ctx.node.chat.list_chats(&caller).await?;
    json(StatusCode::OK, &Chats { chats })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateChat {
    participant_id: String,
    course_id: String,
}

pub async fn create(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let body: CreateChat = ctx.json().await?;
    ctx.target(&body.participant_id);
    let (chat, created) = ctx.node.chat.create_chat(&caller, &body.participant_id, &body.course_id).await?;
    ctx.target(&chat.id);
    json(if created { StatusCode::CREATED } else { StatusCode::OK }, &OneChat { chat })
}

fn seq_param(ctx: &Ctx, name: &str) -> Result<Option<u64>, ApiError> {
    match ctx.query.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(ErrorCode::InvalidPayload, format!("{name} must be a non-negative integer"))),
    }
}

pub async fn messages(ctx: &mut Ctx, chat_id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(chat_id);
    let before = seq_param(ctx, "before")?;
    let limit = seq_param(ctx, "limit")?.unwrap_or(50);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let page = ctx.node.chat.history(&caller, chat_id, before, limit).await?;
    json(StatusCode::OK, &page)
}

#[derive(Deserialize, Default)]
struct ReadBody {
    seq: Option<u64>,
}

pub async fn read(ctx: &mut Ctx, chat_id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(chat_id);
    let has_body =
        ctx.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v != "0")
            || ctx.headers.contains_key(hyper::header::TRANSFER_ENCODING);
    let body: ReadBody = if has_body { ctx.json().await? } else { ReadBody::default() };
    ctx.node.chat.mark_read(&caller, chat_id, body.seq).await?;
    no_content()
}
