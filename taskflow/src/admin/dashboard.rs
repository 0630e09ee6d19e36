//! `GET /tasks/dashboard`: one self-contained HTML page (no CDN), live over the stream.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AdminState;

const PAGE: &str = include_str!("dashboard.html");

/// The page's script, put inline (under the page's nonce) where the page says `{{SCRIPT}}`.
const SCRIPT: &str = include_str!("dashboard.js");

/// The charts' script (inline SVG), put before [`SCRIPT`].
const CHARTS: &str = include_str!("charts.js");

/// Escapes text for an HTML attribute.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The page, with the API's prefix and a fresh nonce for its script and style.
#[utoipa::path(get, path = "/dashboard", operation_id = "getDashboard", tag = "admin", responses(
    (status = 200, description = "The live dashboard (it shows a login when credentials are needed).",
        content_type = "text/html; charset=utf-8", body = String),
))]
pub(crate) async fn page(State(state): State<Arc<AdminState>>) -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let html = PAGE
        .replace("{{SCRIPT}}", &format!("{CHARTS}\n{SCRIPT}"))
        .replace("{{PREFIX}}", &attribute(&state.prefix))
        .replace("{{NONCE}}", &nonce);
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        html,
    )
        .into_response()
}
