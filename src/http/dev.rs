//! Development endpoints, present only with `--demo`: the demo users and tokens for them.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{json, ApiError, ApiResult, Ctx};
use crate::demo;
use crate::error::ErrorCode;

#[derive(Serialize)]
struct Users {
    users: Vec<crate::model::User>,
}

pub async fn users(_ctx: &mut Ctx) -> ApiResult {
    json(StatusCode::OK, &Users { users: demo::users() })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    user_id: String,
}

#[derive(Serialize)]
struct Token {
    token: String,
    exp: u64,
}

pub async fn token(ctx: &mut Ctx) -> ApiResult {
    let body: TokenRequest = ctx.json().await?;
    ctx.target(&body.user_id);
    let user = demo::users()
        .into_iter()
        .find(|u| u.id == body.user_id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such demo user"))?;
    let (token, exp) = ctx
        .node
        .verifier
        .issue(&user.id, user.role, Some(&user.name), demo::TOKEN_TTL_SECS)
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "this server cannot issue tokens"))?;
    json(StatusCode::OK, &Token { token, exp })
}
