//! Conditional requests answered from a stored response (RFC 9110 §13.1, RFC 9111 §4.3.2):
//! `If-None-Match` first (weak comparison, lists, and `*`, which any stored representation
//! matches), else `If-Modified-Since` against `Last-Modified` or, when the stored response has
//! none, its `Date`. Only a stored `200` is validated, and only for GET and HEAD.

use http::Method;
use http::header::{DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use pingora_core::protocols::http::conditional_filter::weak_validate_etag;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::policy::http_date;

/// True when the request should get `304 Not Modified` instead of `stored`.
pub fn not_modified(req: &RequestHeader, stored: &ResponseHeader) -> bool {
    not_modified_by(&req.method, &req.headers, stored)
}

/// [`not_modified`] for a request's method and fields.
pub fn not_modified_by(method: &Method, fields: &http::HeaderMap, stored: &ResponseHeader) -> bool {
    if stored.status != http::StatusCode::OK || !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    if fields.contains_key(IF_NONE_MATCH) {
        let etag = stored.headers.get(ETAG);
        // A recipient ignores If-Modified-Since when If-None-Match is present (§13.1.3).
        return fields.get_all(IF_NONE_MATCH).iter().any(|inm| {
            inm.as_bytes().trim_ascii() == b"*"
                || etag.is_some_and(|etag| weak_validate_etag(inm.as_bytes(), etag.as_bytes()))
        });
    }
    // One valid HTTP-date, or the condition is ignored (§13.1.3).
    let mut since = fields.get_all(IF_MODIFIED_SINCE).iter();
    let (Some(value), None) = (since.next(), since.next()) else {
        return false;
    };
    let Some(since) = value.to_str().ok().and_then(http_date::parse) else {
        return false;
    };
    let modified = http_date::header(&stored.headers, LAST_MODIFIED)
        .or_else(|| http_date::header(&stored.headers, DATE));
    modified.is_some_and(|modified| modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn req(method: &str, fields: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).expect("request");
        for (k, v) in fields {
            r.append_header(*k, *v).expect("field");
        }
        r
    }

    fn stored(status: u16, fields: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).expect("response");
        for (k, v) in fields {
            r.append_header(*k, *v).expect("field");
        }
        r
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let s = stored(200, &[("etag", "W/\"v2\"")]);
        assert!(not_modified(
            &req("GET", &[("if-none-match", "\"v1\", \"v2\"")]),
            &s
        ));
        assert!(not_modified(&req("HEAD", &[("if-none-match", "*")]), &s));
        assert!(not_modified(
            &req("GET", &[("if-none-match", "*")]),
            &stored(200, &[])
        ));
        assert!(!not_modified(
            &req("GET", &[("if-none-match", "\"v3\"")]),
            &s
        ));
        assert!(!not_modified(&req("POST", &[("if-none-match", "*")]), &s));
        assert!(!not_modified(
            &req("GET", &[("if-none-match", "*")]),
            &stored(404, &[])
        ));
    }

    #[test]
    fn if_modified_since_uses_last_modified_else_date() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fmt = httpdate::fmt_http_date;
        let ten = Duration::from_secs(10);
        let (before, same, after) = (fmt(t - ten), fmt(t), fmt(t + ten));
        let with_lm = stored(
            200,
            &[("last-modified", same.as_str()), ("date", after.as_str())],
        );
        assert!(not_modified(
            &req("GET", &[("if-modified-since", same.as_str())]),
            &with_lm
        ));
        assert!(!not_modified(
            &req("GET", &[("if-modified-since", before.as_str())]),
            &with_lm
        ));
        let dated = stored(200, &[("date", same.as_str())]);
        assert!(not_modified(
            &req("GET", &[("if-modified-since", after.as_str())]),
            &dated
        ));
        assert!(!not_modified(
            &req("GET", &[("if-modified-since", before.as_str())]),
            &dated
        ));
        // Invalid, or If-None-Match present: ignored.
        assert!(!not_modified(
            &req("GET", &[("if-modified-since", "yesterday")]),
            &dated
        ));
        assert!(!not_modified(
            &req(
                "GET",
                &[
                    ("if-modified-since", after.as_str()),
                    ("if-none-match", "\"x\"")
                ]
            ),
            &dated
        ));
    }
}
