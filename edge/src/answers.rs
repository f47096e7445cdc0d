//! Small answers both listeners send (the admin API, and `PURGE` on the proxy listener): plain
//! text, JSON, JSON errors `{"error": "...", "field": "..."}`, and the answer to a purge.
//! Never cached by anyone (`Cache-Control: no-store`).

use http::{Response, StatusCode};

use crate::purge::{PurgeError, Receipt};

pub fn text(status: StatusCode, body: impl Into<Vec<u8>>, content_type: &str) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// A JSON answer; errors are `{"error": "...", "field": "..."}`.
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    text(status, body, "application/json")
}

pub fn json_error(status: StatusCode, error: &str, field: Option<&str>) -> Response<Vec<u8>> {
    json(
        status,
        &serde_json::json!({ "error": error, "field": field }),
    )
}

/// The answer to a purge that was accepted or refused.
pub fn purge_outcome(outcome: Result<Receipt, PurgeError>) -> Response<Vec<u8>> {
    match outcome {
        Ok(receipt) => json(StatusCode::OK, &receipt),
        Err(PurgeError::Invalid { field, message }) => json_error(
            StatusCode::BAD_REQUEST,
            &format!("{field}: {message}"),
            Some(&field),
        ),
        Err(e @ PurgeError::LogUnavailable(_)) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None)
        }
    }
}
