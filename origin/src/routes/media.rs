//! `GET /media/<sha256>.<ext>`: image bytes at their immutable, content-addressed URL.
//! Conditional requests are answered without loading the bytes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::cache_headers::{if_none_match_matches, media_etag, media_headers};
use crate::error::{AppError, PageError};
use crate::media::{MediaType, is_sha256_hex};

pub async fn media(
    State(state): State<AppState>,
    Path(file): Path<String>,
    request: HeaderMap,
) -> Result<Response, PageError> {
    let not_found = || AppError::not_found(format!("no image file {file:?}"));
    let (sha, ext) = file.split_once('.').ok_or_else(not_found)?;
    let wanted = MediaType::from_extension(ext)
        .filter(|_| is_sha256_hex(sha))
        .ok_or_else(not_found)?;
    if if_none_match_matches(&request, &media_etag(sha)) {
        return match state.store.media_type(sha).await? {
            Some(t) if t == wanted => Ok((
                StatusCode::NOT_MODIFIED,
                media_headers(sha, t.content_type()),
            )
                .into_response()),
            _ => Err(not_found().into()),
        };
    }
    match state.store.media(sha).await? {
        Some(m) if m.media_type == wanted => {
            Ok((media_headers(sha, m.media_type.content_type()), m.bytes).into_response())
        }
        _ => Err(not_found().into()),
    }
}
