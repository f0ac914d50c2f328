//! The web UI (`admin-ui/`), embedded into the binary at build time and served at `/`.
//!
//! Plain ES modules and CSS: no build step, no CDN, nothing fetched from elsewhere. A strict
//! Content-Security-Policy keeps the pages to the node's own scripts and API.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use rust_embed::Embed;

use super::AppState;
use super::extract::ApiPath;

/// Every file of `admin-ui/` (only the UI's own files live there).
#[derive(Embed)]
#[folder = "../admin-ui/"]
struct Assets;

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{*path}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(ApiPath(path): ApiPath<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mime = HeaderValue::from_str(file.metadata.mimetype()).unwrap_or(HeaderValue::from_static("text/plain"));
    (
        [
            (header::CONTENT_TYPE, mime),
            // The UI changes with the binary: revalidate rather than cache across upgrades.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        file.data,
    )
        .into_response()
}
