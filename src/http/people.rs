//! The people a caller can chat with, and their blocks.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{json, no_content, ApiResult, Ctx};
use crate::chat::views::Contact;
use crate::model::Block;

#[derive(Serialize)]
struct Tutors {
    tutors: Vec<Contact>,
}

#[derive(Serialize)]
struct Students {
    students: Vec<Contact>,
}

pub async fn available_tutors(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let tutors = ctx.node.chat.available_tutors(&caller).await?;
    json(StatusCode::OK, &Tutors { tutors })
}

pub async fn students(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let students = ctx.node.chat.students(&caller).await?;
    json(StatusCode::OK, &Students { students })
}

#[derive(Serialize)]
struct Blocks {
    blocks: Vec<Block>,
}

#[derive(Serialize)]
struct OneBlock {
    block: Block,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockBody {
    user_id: String,
}

pub async fn list_blocks(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let blocks = ctx.node.chat.blocks(&caller).await?;
    json(StatusCode::OK, &Blocks { blocks })
}

pub async fn block(ctx: &mut Ctx) -> ApiResult {
    let caller = ctx.caller().await?;
    let body: BlockBody = ctx.json().await?;
    ctx.target(&body.user_id);
    let (block, created) = ctx.node.chat.block(&caller, &body.user_id).await?;
    json(if created { StatusCode::CREATED } else { StatusCode::OK }, &OneBlock { block })
}

pub async fn unblock(ctx: &mut Ctx, user_id: &str) -> ApiResult {
    let caller = ctx.caller().await?;
    ctx.target(user_id);
    ctx.node.chat.unblock(&caller, user_id).await?;
    no_content()
}
