//! The JSON API: the same operations as the pages, for programs. Reads are cacheable like pages;
//! writes answer `201 Created` (with `Location`) or the new state, never cached.
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with a 4xx/5xx status.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::cache_headers::{
    TAG_FILTERS, TAG_GALLERY, Tags, cacheable, image_not_found, image_tag, private,
};
use crate::error::{ApiError, AppError, json_body};
use crate::filters::Filter;
use crate::ops;
use crate::store::Image;

const JSON: &str = "application/json";
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;

/// An image as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ImageJson {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
    pub filter: Option<String>,
    /// The image's immutable media URL (relative to the site).
    pub url: String,
    pub likes: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<&Image> for ImageJson {
    fn from(i: &Image) -> Self {
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(i.created_at_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
        ImageJson {
            id: i.id,
            name: i.name.clone(),
            parent_id: i.parent_id,
            filter: i.filter.clone(),
            url: i.media_url(),
            likes: i.likes,
            created_at,
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct ImageList {
    pub items: Vec<ImageJson>,
    pub next_cursor: Option<String>,
    pub has_next: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct FilterRequest {
    filter: String,
}

#[derive(Serialize)]
struct Likes {
    id: i64,
    likes: i64,
}

#[derive(Serialize)]
struct Filters {
    filters: Vec<&'static str>,
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| AppError::bad_request("bad_query", e.body_text()))?;
    let limit = parse_limit(query.limit.as_deref(), state.limits.max_page_size)?;
    let before = ops::parse_cursor(query.cursor.as_deref())?;
    let page = state.store.list(before, limit).await?;
    let tags = Tags::new()
        .with(TAG_GALLERY)
        .with_images(page.items.iter().map(|i| i.id));
    let body = ImageList {
        items: page.items.iter().map(ImageJson::from).collect(),
        next_cursor: page.next_before.map(|id| id.to_string()),
        has_next: page.next_before.is_some(),
    };
    json(&state, &request, &body, &tags)
}

/// `limit` defaults to 20 and is capped (not refused) at `limits.max_page_size`.
fn parse_limit(raw: Option<&str>, max: u32) -> Result<u32, AppError> {
    match raw {
        None | Some("") => Ok(DEFAULT_LIMIT.min(max)),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| n.min(max))
            .ok_or_else(|| {
                AppError::bad_request("bad_limit", "`limit` must be a positive integer")
            }),
    }
}

pub async fn image(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let id = ops::parse_id(&raw_id)?;
    match state.store.image(id).await? {
        Some(image) => json(
            &state,
            &request,
            &ImageJson::from(&image),
            &Tags::new().with(image_tag(id)),
        ),
        None => {
            let body = json_body(&AppError::not_found(format!("image {id} does not exist")));
            Ok(image_not_found(
                &request,
                &state.page_policy,
                id,
                JSON,
                body,
            ))
        }
    }
}

pub async fn upload(
    State(state): State<AppState>,
    request: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|e| AppError::bad_request("not_multipart", e.body_text()))?;
    let upload = ops::read_upload(&state, &request, multipart).await?;
    let image = ops::upload(&state, upload).await?;
    Ok(created(&image))
}

pub async fn filter(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    body: Result<Json<FilterRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ops::parse_id(&raw_id)?;
    let Json(body) = body.map_err(|e| AppError::new(e.status(), "bad_json", e.body_text()))?;
    let filter = ops::parse_filter(&body.filter)?;
    let image = ops::apply_filter(&state, id, filter).await?;
    Ok(created(&image))
}

pub async fn like(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = ops::parse_id(&raw_id)?;
    let likes = ops::like(&state, id).await?;
    Ok(private(Json(Likes { id, likes }).into_response()))
}

pub async fn filters(
    State(state): State<AppState>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let body = Filters {
        filters: Filter::ALL.iter().map(|f| f.name()).collect(),
    };
    json(&state, &request, &body, &Tags::new().with(TAG_FILTERS))
}

fn created(image: &Image) -> Response {
    let location = format!("/api/images/{}", image.id);
    private(
        (
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(ImageJson::from(image)),
        )
            .into_response(),
    )
}

fn json(
    state: &AppState,
    request: &HeaderMap,
    body: &impl Serialize,
    tags: &Tags,
) -> Result<Response, ApiError> {
    let bytes =
        serde_json::to_vec(body).map_err(|e| AppError::internal("serializing a response", &e))?;
    Ok(cacheable(
        request,
        &state.page_policy.page(),
        tags,
        JSON,
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_caps_and_rejects() {
        assert_eq!(parse_limit(None, 100).expect("default"), 20);
        assert_eq!(parse_limit(Some("5"), 100).expect("ok"), 5);
        assert_eq!(parse_limit(Some("5000"), 100).expect("capped"), 100);
        assert_eq!(
            parse_limit(Some("0"), 100).expect_err("zero").code,
            "bad_limit"
        );
        assert_eq!(
            parse_limit(Some("ten"), 100).expect_err("text").code,
            "bad_limit"
        );
    }
}
