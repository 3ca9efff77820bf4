//! The built web client (`CHAT_WEB_DIR`) at `/`: files by path, `index.html` for every other
//! path so client-side routes work, hashed assets cached long, the page itself never.

use std::path::{Component, Path};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::{ApiError, ApiResult};
use crate::error::ErrorCode;

/// The file under `root` that `path` names (`index.html` for anything else).
pub async fn serve(root: &Path, path: &str) -> ApiResult {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApiError::new(ErrorCode::NotFound, "not found"));
    }
    let mut file = root.join(relative);
    if path == "/" || !file.is_file() {
        file = root.join("index.html");
    }
    let bytes = tokio::fs::read(&file).await.map_err(|_| ApiError::new(ErrorCode::NotFound, "not found"))?;
    let cache = if file.starts_with(root.join("assets")) { "public, max-age=31536000, immutable" } else { "no-cache" };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type(&file))
        .header("cache-control", cache)
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
