//! The operations the pages and the JSON API share: reading an upload, validating it, running
//! image work on the pool, writing transactionally, purging the edge. Handlers only translate
//! between HTTP and these.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::BytesMut;

use crate::AppState;
use crate::cache_headers::{tags_after_filter, tags_after_like, tags_after_upload};
use crate::error::AppError;
use crate::filters::Filter;
use crate::media::{self, MediaError};
use crate::store::{Image, NewImage};

/// Room for the multipart boundaries and the name field around the file itself.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Largest request body an upload route reads at all.
pub fn upload_body_limit(max_upload_bytes: u64) -> usize {
    usize::try_from(max_upload_bytes + MULTIPART_OVERHEAD).unwrap_or(usize::MAX)
}

/// A parsed upload form: fields `name` and `file`.
pub struct Upload {
    pub name: String,
    pub file: Vec<u8>,
}

/// Reads `name` and `file` from a multipart body, refusing an oversized body before reading it
/// when its `Content-Length` already says so, and as soon as it passes the limit otherwise.
pub async fn read_upload(
    state: &AppState,
    headers: &HeaderMap,
    mut multipart: Multipart,
) -> Result<Upload, AppError> {
    let max = state.limits.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max + MULTIPART_OVERHEAD) {
        return Err(AppError::too_large(max));
    }
    let (mut name, mut file) = (None, None);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max))?
    {
        match field.name() {
            Some("name") => {
                // Not `text()`: it would turn bytes that are not UTF-8 into U+FFFD silently.
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, max))?;
                name = Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    AppError::bad_request("bad_name", "the name is not valid UTF-8")
                })?);
            }
            Some("file") => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
                    if (buf.len() + chunk.len()) as u64 > max {
                        return Err(AppError::too_large(max));
                    }
                    buf.extend_from_slice(&chunk);
                }
                file = Some(Vec::from(buf));
            }
            // Unknown fields are skipped, not stored: the form may grow.
            _ => {}
        }
    }
    let name = validate_name(name.as_deref().unwrap_or(""), state.limits.max_name_chars)?;
    let file = file.filter(|f| !f.is_empty()).ok_or_else(|| {
        AppError::bad_request(
            "missing_file",
            "attach a JPEG or PNG image in the `file` field",
        )
    })?;
    Ok(Upload { name, file })
}

fn multipart_error(e: MultipartError, max: u64) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::too_large(max)
    } else {
        AppError::bad_request(
            "bad_multipart",
            format!("malformed multipart body: {}", e.body_text()),
        )
    }
}

/// Bidirectional formatting characters (Unicode TR9): they reorder how the text around them is
/// shown, so `photo\u{202E}gpj.exe` reads as `photoexe.jpg` (filename spoofing).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Trims a user-supplied name and checks it is printable, shows as it reads, and is not too
/// long.
pub fn validate_name(raw: &str, max_chars: usize) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::bad_request(
            "missing_name",
            "give the image a name (the `name` field)",
        ));
    }
    if name.chars().count() > max_chars {
        return Err(AppError::bad_request(
            "name_too_long",
            format!("the name is longer than {max_chars} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "bad_name",
            "the name contains control characters",
        ));
    }
    if name.chars().any(is_bidi_control) {
        return Err(AppError::bad_request(
            "bad_name",
            "the name contains bidirectional control characters (they disguise what it says)",
        ));
    }
    Ok(name.to_owned())
}

/// Validates and stores an upload (bytes kept as sent), then purges the lists it joins.
pub async fn upload(state: &AppState, upload: Upload) -> Result<Image, AppError> {
    let limits = state.limits.decode_limits();
    let Upload { name, file } = upload;
    let encoded = state
        .image_job(move || {
            let decoded = media::decode(&file, limits)?;
            Ok::<_, MediaError>(media::describe(file, &decoded))
        })
        .await??;
    let image = state
        .store
        .create_image(NewImage {
            name: &name,
            parent_id: None,
            filter: None,
            media: &encoded,
        })
        .await?;
    tracing::info!(id = image.id, sha256 = %image.media_sha256, bytes = encoded.bytes.len(), "image uploaded");
    state.purger.purge(tags_after_upload(image.id)).await;
    Ok(image)
}

pub fn parse_filter(name: &str) -> Result<Filter, AppError> {
    Filter::from_name(name).ok_or_else(|| {
        let known: Vec<_> = Filter::ALL.iter().map(|f| f.name()).collect();
        AppError::bad_request(
            "unknown_filter",
            format!(
                "unknown filter {name:?}; choose one of {}",
                known.join(", ")
            ),
        )
    })
}

/// Derives a new image from `parent_id` through `filter`, then purges what shows it.
pub async fn apply_filter(
    state: &AppState,
    parent_id: i64,
    filter: Filter,
) -> Result<Image, AppError> {
    let parent = state
        .store
        .image(parent_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("image {parent_id} does not exist")))?;
    let stored = state
        .store
        .media(&parent.media_sha256)
        .await?
        .ok_or_else(|| {
            AppError::internal(
                "image bytes missing",
                &format!("no media {}", parent.media_sha256),
            )
        })?;
    let limits = state.limits.decode_limits();
    let encoded = state
        .image_job(move || {
            let decoded = media::decode(&stored.bytes, limits)?;
            media::encode(&filter.apply(&decoded.image), decoded.media_type)
        })
        .await??;
    let name = derived_name(&parent.name, filter, state.limits.max_name_chars);
    let image = state
        .store
        .create_image(NewImage {
            name: &name,
            parent_id: Some(parent_id),
            filter: Some(filter),
            media: &encoded,
        })
        .await?;
    tracing::info!(
        id = image.id,
        parent = parent_id,
        filter = filter.name(),
        "filter applied"
    );
    state
        .purger
        .purge(tags_after_filter(parent_id, image.id))
        .await;
    Ok(image)
}

/// `"Beach (sepia)"`, shortening the parent's name so the result fits the name limit.
fn derived_name(parent: &str, filter: Filter, max_chars: usize) -> String {
    let suffix = format!(" ({})", filter.name());
    let room = max_chars.saturating_sub(suffix.chars().count()).max(1);
    let base: String = parent.chars().take(room).collect();
    format!("{}{suffix}", base.trim_end())
}

/// Adds a like; returns the new count.
pub async fn like(state: &AppState, id: i64) -> Result<i64, AppError> {
    let likes = state
        .store
        .like(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("image {id} does not exist")))?;
    state.purger.purge(tags_after_like(id)).await;
    Ok(likes)
}

/// Parses an image id from a path segment; anything but a positive integer is "no such image".
pub fn parse_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::not_found(format!("no image has the id {raw:?}")))
}

/// Parses a pagination cursor (opaque to clients; today the id to continue below).
pub fn parse_cursor(raw: Option<&str>) -> Result<Option<i64>, AppError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| {
                AppError::bad_request(
                    "bad_cursor",
                    "`cursor` must be a value returned as `next_cursor`",
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Beach  ", 10).expect("ok"), "Beach");
        assert_eq!(
            validate_name("   ", 10).expect_err("empty").code,
            "missing_name"
        );
        assert_eq!(
            validate_name("abcdefghijk", 10).expect_err("long").code,
            "name_too_long"
        );
        assert_eq!(
            validate_name("a\u{0}b", 10).expect_err("ctl").code,
            "bad_name"
        );
        for spoof in [
            "photo\u{202E}gpj.exe",
            "a\u{2066}b",
            "x\u{200F}",
            "\u{061C}y",
        ] {
            assert_eq!(
                validate_name(spoof, 100).expect_err("bidi").code,
                "bad_name",
                "{spoof:?}"
            );
        }
        // Right-to-left text itself is fine.
        assert_eq!(validate_name("שלום", 10).expect("ok"), "שלום");
        // Hostile-looking names are just text: they are escaped when shown, never used as paths.
        assert_eq!(
            validate_name("../../etc/passwd", 100).expect("ok"),
            "../../etc/passwd"
        );
    }

    #[test]
    fn derived_names_fit_the_limit() {
        assert_eq!(derived_name("Beach", Filter::Sepia, 100), "Beach (sepia)");
        let long = "x".repeat(100);
        let name = derived_name(&long, Filter::Grayscale, 100);
        assert_eq!(name.chars().count(), 100);
        assert!(name.ends_with(" (grayscale)"));
    }

    #[test]
    fn ids_and_cursors_are_validated() {
        assert_eq!(parse_id("42").expect("ok"), 42);
        assert_eq!(
            parse_id("0").expect_err("zero").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            parse_id("1;DROP").expect_err("junk").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(parse_cursor(None).expect("none"), None);
        assert_eq!(parse_cursor(Some("17")).expect("ok"), Some(17));
        assert_eq!(
            parse_cursor(Some("-3")).expect_err("neg").code,
            "bad_cursor"
        );
    }
}
