//! Attachments: `POST /api/chats/:chatId/attachments` (raw body) and `GET /api/attachments/:id`.
//!
//! An upload is checked before its body is read (the caller may send in the chat; a
//! `Content-Length` over the limit is refused at once), and the body is read frame by frame and
//! refused with 413 as soon as it passes the limit, so an oversized body is never held whole.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::{json, ApiError, ApiResult, Ctx};
use crate::error::ErrorCode;
use crate::model::Attachment;

#[derive(Serialize)]
struct Uploaded {
    attachment: Attachment,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::TooLarge, format!("attachments are at most {limit} bytes"))
}

pub async fn upload(ctx: &mut Ctx, chat_id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(chat_id);
    let chat = ctx.node.chat.check_upload(&caller, chat_id).await?;
    let limit = ctx.node.config.limits.max_attachment_bytes;
    let declared = ctx
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let name = ctx
        .headers
        .get("x-file-name")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .map(|n| super::percent_decode(&n.replace('+', "%2B")).unwrap_or(n))
        .unwrap_or_default();
    let Some(mut body) = ctx.body.take() else {
        return Err(ApiError::new(ErrorCode::InvalidPayload, "missing body"));
    };
    let mut bytes = Vec::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new(ErrorCode::InvalidPayload, format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(data);
        }
    }
    let attachment = ctx.node.chat.store_attachment(&caller, &chat, &name, bytes).await?;
    ctx.target(&attachment.id);
    json(StatusCode::CREATED, &Uploaded { attachment })
}

pub async fn download(ctx: &mut Ctx, id: &str) -> ApiResult {
    ctx.target(id);
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such attachment");
    let signed = match (ctx.query.get("exp"), ctx.query.get("sig")) {
        (Some(exp), Some(sig)) => {
            let exp = exp.parse::<u64>().map_err(|_| not_found())?;
            if !ctx.node.signer.verify(id, exp, sig) {
                return Err(not_found());
            }
            true
        }
        _ => false,
    };
    let caller = if signed {
        None
    } else if ctx.headers.contains_key(hyper::header::AUTHORIZATION) {
        Some(ctx.caller().await?)
    } else {
        return Err(not_found());
    };
    let (record, bytes) = ctx.node.chat.attachment_for(id, caller.as_ref()).await?.ok_or_else(not_found)?;
    let disposition = if crate::attachments::is_image(&record.mime) { "inline" } else { "attachment" };
    let file_name: String =
        record.name.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", &record.mime)
        .header("x-content-type-options", "nosniff")
        .header("content-disposition", format!("{disposition}; filename=\"{file_name}\""))
        .header("cache-control", "private, max-age=300")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default())
}
