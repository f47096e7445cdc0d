//! One error type for every handler, rendered as JSON for the API (`ApiError`) and as an HTML page
//! for browsers (`PageError`). Client errors carry a stable `code` and a message that says what to
//! fix; server errors are logged once, here, and shown without internals.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::cache_headers;
use crate::media::MediaError;
use crate::store::StoreError;
use crate::workers::PoolError;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on this, not on the message.
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `503 Service Unavailable`.
    pub retry_after: Option<u32>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(limit_bytes: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!(
                "the upload is larger than the {} limit",
                human_bytes(limit_bytes)
            ),
        )
    }

    pub fn busy(retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "all image workers are busy; try again shortly",
            )
        }
    }

    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchImage(id) => {
                AppError::not_found(format!("image {id} does not exist"))
            }
            other => AppError::internal("database error", &other),
        }
    }
}

impl From<MediaError> for AppError {
    fn from(e: MediaError) -> Self {
        let message = e.to_string();
        match e {
            MediaError::UnsupportedType => AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_type",
                message,
            ),
            MediaError::TooManyPixels { .. } => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "image_too_large", message)
            }
            MediaError::Corrupt(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", message)
            }
            MediaError::Encode(_) => AppError::internal("encoding an image", &e),
        }
    }
}

/// Maps a worker-pool failure; `Busy` needs the configured `Retry-After`.
pub fn pool_error(e: PoolError, retry_after: u32) -> AppError {
    match e {
        PoolError::Busy => AppError::busy(retry_after),
        other => AppError::internal("image worker", &other),
    }
}

/// `AppError` as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

/// `AppError` as an HTML page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The JSON error document for `e`.
pub fn json_body(e: &AppError) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: e.code,
            message: &e.message,
        },
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| e.message.clone().into_bytes())
}

/// The HTML error page for `e`.
pub fn page_body(e: &AppError) -> String {
    let page = ErrorPage {
        status: e.status.as_u16(),
        reason: e.status.canonical_reason().unwrap_or("Error"),
        message: &e.message,
    };
    page.render().unwrap_or_else(|_| e.message.clone())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json_body(&self.0);
        let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        finish(&self.0, response)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        finish(&self.0, Html(page_body(&self.0)).into_response())
    }
}

fn finish(e: &AppError, mut response: Response) -> Response {
    *response.status_mut() = e.status;
    if let Some(secs) = e.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    cache_headers::private(response)
}

/// `10485760` → `10 MiB`, for messages.
pub fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}
