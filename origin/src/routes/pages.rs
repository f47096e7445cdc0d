//! Server-rendered HTML: the front page slideshow, the gallery, image pages, the upload form, and
//! the form posts behind the like button and the filter dropdown (answered with `303 See Other`
//! to the page that shows the result).

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::AppState;
use crate::cache_headers::{
    TAG_FRONT, TAG_GALLERY, Tags, cacheable, image_not_found, image_tag, private,
};
use crate::error::{AppError, PageError, human_bytes, page_body};
use crate::filters::Filter;
use crate::ops;
use crate::store::Image;

const HTML: &str = "text/html; charset=utf-8";
/// Images in the front page slideshow.
pub const FRONT_COUNT: u32 = 5;
/// Images per gallery page.
pub const GALLERY_PAGE: u32 = 24;
/// Derived images listed on an image page.
const CHILDREN_SHOWN: u32 = 48;

/// An image as templates show it.
pub struct ImageView {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub likes: i64,
    pub created: String,
    pub filter: Option<String>,
}

impl From<&Image> for ImageView {
    fn from(i: &Image) -> Self {
        ImageView {
            id: i.id,
            name: i.name.clone(),
            url: i.media_url(),
            likes: i.likes,
            created: human_time(i.created_at_ms),
            filter: i.filter.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "front.html")]
struct FrontPage {
    images: Vec<ImageView>,
}

#[derive(Template)]
#[template(path = "gallery.html")]
struct GalleryPage {
    images: Vec<ImageView>,
    next_cursor: Option<String>,
    first_page: bool,
}

#[derive(Template)]
#[template(path = "image.html")]
struct ImagePage {
    image: ImageView,
    parent: Option<ImageView>,
    children: Vec<ImageView>,
    filters: [Filter; 8],
}

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    max_size: String,
    max_name_chars: usize,
}

#[derive(Deserialize)]
pub struct GalleryQuery {
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct FilterForm {
    filter: String,
}

pub async fn front(
    State(state): State<AppState>,
    request: HeaderMap,
) -> Result<Response, PageError> {
    let page = state.store.list(None, FRONT_COUNT).await?;
    let tags = Tags::new()
        .with(TAG_FRONT)
        .with_images(page.items.iter().map(|i| i.id));
    let view = FrontPage {
        images: page.items.iter().map(ImageView::from).collect(),
    };
    render(&state, &request, &view, &tags)
}

pub async fn gallery(
    State(state): State<AppState>,
    query: Result<Query<GalleryQuery>, QueryRejection>,
    request: HeaderMap,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|e| AppError::bad_request("bad_query", e.body_text()))?;
    let before = ops::parse_cursor(query.cursor.as_deref())?;
    let page = state.store.list(before, GALLERY_PAGE).await?;
    let tags = Tags::new()
        .with(TAG_GALLERY)
        .with_images(page.items.iter().map(|i| i.id));
    let view = GalleryPage {
        images: page.items.iter().map(ImageView::from).collect(),
        next_cursor: page.next_before.map(|id| id.to_string()),
        first_page: before.is_none(),
    };
    render(&state, &request, &view, &tags)
}

pub async fn image(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    request: HeaderMap,
) -> Result<Response, PageError> {
    let id = ops::parse_id(&raw_id)?;
    let Some(image) = state.store.image(id).await? else {
        let body = page_body(&AppError::not_found(format!("image {id} does not exist")));
        return Ok(image_not_found(
            &request,
            &state.page_policy,
            id,
            HTML,
            body.into_bytes(),
        ));
    };
    let parent = match image.parent_id {
        Some(pid) => state.store.image(pid).await?,
        None => None,
    };
    let children = state.store.children(id, CHILDREN_SHOWN).await?;
    let view = ImagePage {
        image: ImageView::from(&image),
        parent: parent.as_ref().map(ImageView::from),
        children: children.iter().map(ImageView::from).collect(),
        filters: Filter::ALL,
    };
    render(&state, &request, &view, &Tags::new().with(image_tag(id)))
}

pub async fn upload_form(State(state): State<AppState>) -> Result<Response, PageError> {
    let view = UploadPage {
        max_size: human_bytes(state.limits.max_upload_bytes),
        max_name_chars: state.limits.max_name_chars,
    };
    let body = view
        .render()
        .map_err(|e| AppError::internal("rendering the upload form", &e))?;
    Ok(private(Html(body).into_response()))
}

pub async fn upload(
    State(state): State<AppState>,
    request: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let multipart = multipart.map_err(|e| AppError::bad_request("not_multipart", e.body_text()))?;
    let upload = ops::read_upload(&state, &request, multipart).await?;
    let image = ops::upload(&state, upload).await?;
    Ok(see_other(&format!("/images/{}", image.id)))
}

pub async fn like(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, PageError> {
    let id = ops::parse_id(&raw_id)?;
    ops::like(&state, id).await?;
    Ok(see_other(&format!("/images/{id}")))
}

pub async fn filter(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    form: Result<Form<FilterForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = ops::parse_id(&raw_id)?;
    let Form(form) = form.map_err(|e| AppError::bad_request("bad_form", e.body_text()))?;
    let filter = ops::parse_filter(&form.filter)?;
    let image = ops::apply_filter(&state, id, filter).await?;
    Ok(see_other(&format!("/images/{}", image.id)))
}

fn render(
    state: &AppState,
    request: &HeaderMap,
    view: &impl Template,
    tags: &Tags,
) -> Result<Response, PageError> {
    let body = view
        .render()
        .map_err(|e| AppError::internal("rendering a page", &e))?;
    Ok(cacheable(
        request,
        &state.page_policy.page(),
        tags,
        HTML,
        body.into_bytes(),
    ))
}

fn see_other(location: &str) -> Response {
    private(Redirect::to(location).into_response())
}

/// `2026-11-23 22:10 UTC`.
fn human_time(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "some time ago".to_owned(),
    }
}
