//! The origin → edge cache contract: the one place that decides how every response may be cached
//! and which surrogate keys (tags) it carries, and which tags each write invalidates.
//! `docs/cache-contract.md` explains it for people; the tests here and in `tests/` hold it to that.
//!
//! - **Media** (`/media/<sha256>.<ext>`): content-addressed, so the bytes behind a URL never
//!   change: `public, max-age=31536000, immutable` with a strong ETag (the hash itself).
//! - **Pages and API reads**: the edge keeps them briefly and may serve a stale copy while it
//!   refreshes or when the origin is down (`CDN-Cache-Control`, RFC 9213); browsers always ask
//!   again (`Cache-Control: public, max-age=0`). Each response names the tags of everything it shows, so a write purges
//!   exactly what it changed.
//! - **Forms, writes and errors**: `private, no-store`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Fastly, Varnish and Outpost read tags from this header (space-separated).
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

pub const TAG_FRONT: &str = "front";
pub const TAG_GALLERY: &str = "gallery";
pub const TAG_FILTERS: &str = "filters";

pub fn image_tag(id: i64) -> String {
    format!("image-{id}")
}

/// One year: the longest `max-age` caches are expected to honour.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const PRIVATE: &str = "private, no-store";

/// Browsers always ask the edge again (which is purged on every write), so a purge takes effect
/// for them at once; a shared cache that does not read `CDN-Cache-Control` does the same.
pub const BROWSERS: &str = "public, max-age=0";

/// `CDN-Cache-Control` (RFC 9213): the edge's own instructions. The edge then ignores
/// `Cache-Control`, so what browsers are told cannot take the edge's stale windows away (an
/// `s-maxage` there would: it implies `proxy-revalidate`, RFC 9111 §5.2.2.10).
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// How a cacheable answer may be cached: by the edge, and by browsers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caching {
    pub edge: String,
    pub browsers: &'static str,
}

/// How long the edge may keep pages; from the `[cache]` config section.
#[derive(Clone, Copy, Debug)]
pub struct PagePolicy {
    pub edge_max_age: u32,
    pub stale_while_revalidate: u32,
    pub stale_if_error: u32,
    /// For "no such image" answers: short, so a purge-less miss heals itself quickly.
    pub not_found_edge_max_age: u32,
}

impl PagePolicy {
    /// Pages and API reads: fresh at the edge for a while, then served stale while it refreshes
    /// them in the background, or while the origin is failing.
    pub fn page(&self) -> Caching {
        Caching {
            edge: format!(
                "max-age={}, stale-while-revalidate={}, stale-if-error={}",
                self.edge_max_age, self.stale_while_revalidate, self.stale_if_error
            ),
            browsers: BROWSERS,
        }
    }

    /// "No such image": briefly, and never stale (an upload purges it anyway).
    pub fn not_found(&self) -> Caching {
        Caching {
            edge: format!("max-age={}", self.not_found_edge_max_age),
            browsers: BROWSERS,
        }
    }
}

/// The tags a response carries: every collection and image it shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if !self.0.contains(&tag) {
            self.0.push(tag);
        }
        self
    }

    pub fn with_images(self, ids: impl IntoIterator<Item = i64>) -> Self {
        ids.into_iter()
            .fold(self, |tags, id| tags.with(image_tag(id)))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    fn header_value(&self) -> Option<HeaderValue> {
        // Tags are built from our own ASCII names and integer ids.
        HeaderValue::from_str(&self.0.join(" ")).ok()
    }
}

/// What an upload changes: the new image's own URLs (a cached "no such image") and the lists.
pub fn tags_after_upload(new_id: i64) -> Tags {
    Tags::new()
        .with(TAG_FRONT)
        .with(TAG_GALLERY)
        .with(image_tag(new_id))
}

/// What a filter changes: as an upload, plus the parent's page, which lists its children.
pub fn tags_after_filter(parent_id: i64, new_id: i64) -> Tags {
    tags_after_upload(new_id).with(image_tag(parent_id))
}

/// What a like changes: every response showing that image's like count.
pub fn tags_after_like(id: i64) -> Tags {
    Tags::new().with(image_tag(id))
}

/// A cacheable page or API read: body, type, `CDN-Cache-Control` and `Cache-Control`, tags and
/// a strong ETag over the bytes; `304 Not Modified` (with the same caching fields) when the
/// request's `If-None-Match` already has them.
pub fn cacheable(
    request: &HeaderMap,
    caching: &Caching,
    tags: &Tags,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    cacheable_with_status(request, StatusCode::OK, caching, tags, content_type, body)
}

fn cacheable_with_status(
    request: &HeaderMap,
    status: StatusCode,
    caching: &Caching,
    tags: &Tags,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let etag = body_etag(&body);
    let mut headers = HeaderMap::new();
    insert(&mut headers, CDN_CACHE_CONTROL, &caching.edge);
    insert(&mut headers, header::CACHE_CONTROL, caching.browsers);
    insert(&mut headers, header::ETAG, &etag);
    if let Some(tags) = tags.header_value() {
        headers.insert(SURROGATE_KEY, tags);
    }
    if status == StatusCode::OK && if_none_match_matches(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    insert(&mut headers, header::CONTENT_TYPE, content_type);
    (status, headers, body).into_response()
}

/// "No such image" for image `id`: cached briefly under the image's tag, so the image's upload
/// purges it.
pub fn image_not_found(
    request: &HeaderMap,
    policy: &PagePolicy,
    id: i64,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let tags = Tags::new().with(image_tag(id));
    cacheable_with_status(
        request,
        StatusCode::NOT_FOUND,
        &policy.not_found(),
        &tags,
        content_type,
        body,
    )
}

/// Headers of an immutable, content-addressed media response (the ETag is its hash).
pub fn media_headers(sha256: &str, content_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    insert(&mut headers, header::CACHE_CONTROL, IMMUTABLE);
    insert(&mut headers, header::ETAG, &media_etag(sha256));
    insert(&mut headers, header::CONTENT_TYPE, content_type);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}

pub fn media_etag(sha256: &str) -> String {
    format!("\"{sha256}\"")
}

/// `Cache-Control: private, no-store` on a response that must never be shared.
pub fn private(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(PRIVATE));
    response
}

/// A strong validator for a rendered body: the same bytes always get the same tag.
pub fn body_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        use std::fmt::Write;
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

/// RFC 9110 §13.1.2: `*` or any listed tag matching by weak comparison.
pub fn if_none_match_matches(request: &HeaderMap, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|candidate| candidate.trim() == "*" || opaque(candidate) == ours)
        })
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inm(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(value).expect("ascii"),
        );
        h
    }

    const POLICY: PagePolicy = PagePolicy {
        edge_max_age: 60,
        stale_while_revalidate: 30,
        stale_if_error: 86400,
        not_found_edge_max_age: 5,
    };

    #[test]
    fn page_policy_matches_the_documented_contract() {
        assert_eq!(
            POLICY.page(),
            Caching {
                edge: "max-age=60, stale-while-revalidate=30, stale-if-error=86400".to_owned(),
                browsers: "public, max-age=0",
            }
        );
        assert_eq!(POLICY.not_found().edge, "max-age=5");
        // No s-maxage anywhere: it would forbid the edge to serve stale.
        assert!(!POLICY.page().edge.contains("s-maxage") && !BROWSERS.contains("s-maxage"));
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let tag = "\"abc\"";
        assert!(if_none_match_matches(&inm("\"abc\""), tag));
        assert!(if_none_match_matches(&inm("W/\"abc\""), tag));
        assert!(if_none_match_matches(&inm("\"x\", \"abc\""), tag));
        assert!(if_none_match_matches(&inm("*"), tag));
        assert!(!if_none_match_matches(&inm("\"abcd\""), tag));
        assert!(!if_none_match_matches(&HeaderMap::new(), tag));
    }

    #[test]
    fn cacheable_answers_304_with_the_cache_headers() {
        let body = b"<html>hi</html>".to_vec();
        let tags = Tags::new().with(TAG_FRONT).with_images([3, 1, 3]);
        let full = cacheable(
            &HeaderMap::new(),
            &POLICY.page(),
            &tags,
            "text/html",
            body.clone(),
        );
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(full.headers()[SURROGATE_KEY], "front image-3 image-1");
        let etag = full.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned();
        let again = cacheable(&inm(&etag), &POLICY.page(), &tags, "text/html", body);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert!(again.headers().contains_key(header::CACHE_CONTROL));
        assert!(again.headers().contains_key(SURROGATE_KEY));
    }

    #[test]
    fn writes_purge_what_they_change() {
        assert_eq!(
            tags_after_upload(7).into_vec(),
            ["front", "gallery", "image-7"]
        );
        assert_eq!(
            tags_after_filter(2, 7).into_vec(),
            ["front", "gallery", "image-7", "image-2"]
        );
        assert_eq!(tags_after_like(2).into_vec(), ["image-2"]);
    }
}
