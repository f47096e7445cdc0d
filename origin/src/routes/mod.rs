//! The HTTP surface: which path goes to which handler, and the body limits per route.
//!
//! | path | handler |
//! |---|---|
//! | `/`, `/gallery`, `/images/{id}`, `/upload` (+ form POSTs) | [`pages`] |
//! | `/api/…` | [`api`] |
//! | `/media/{sha256}.{ext}` | [`media`] |
//! | `/healthz`, `/readyz` | [`health`] |

pub mod api;
pub mod health;
pub mod media;
pub mod pages;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::{Router, middleware};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, AppError, PageError};
use crate::ops::upload_body_limit;
use crate::{AppState, access_log};

/// Forms and JSON bodies are tiny; only uploads may be large.
const SMALL_BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let upload_limit = DefaultBodyLimit::max(upload_body_limit(state.limits.max_upload_bytes));
    Router::new()
        .route("/", get(pages::front))
        .route("/gallery", get(pages::gallery))
        .route(
            "/upload",
            get(pages::upload_form)
                .post(pages::upload)
                .layer(upload_limit),
        )
        .route("/images/{id}", get(pages::image))
        .route("/images/{id}/like", post(pages::like))
        .route("/images/{id}/filter", post(pages::filter))
        .route("/media/{file}", get(media::media))
        .route(
            "/api/images",
            get(api::list).post(api::upload).layer(upload_limit),
        )
        .route("/api/images/{id}", get(api::image))
        .route("/api/images/{id}/filter", post(api::filter))
        .route("/api/images/{id}/like", post(api::like))
        .route("/api/filters", get(api::filters))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.access_log),
            access_log::log,
        ))
        .with_state(state)
}

async fn not_found(uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = AppError::not_found(format!("nothing lives at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        ApiError(error).into_response()
    } else {
        PageError(error).into_response()
    }
}
