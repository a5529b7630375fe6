//! The web UI: static files compiled into the binary (no node at build time), served at `/`
//! and `/ui/<file>`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

/// Everything under `crates/http/ui/`.
#[derive(Embed)]
#[folder = "ui/"]
struct Assets;

/// The UI may run its own scripts and styles and talk to this origin; mail is shown in
/// sandboxed frames with a stricter policy of their own.
const UI_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'";

/// `GET /`
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(file: &str) -> Response {
    let Some(asset) = Assets::get(file) else {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "Error": "not found" })))
            .into_response();
    };
    let mime = match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut response = asset.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(UI_CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
