//! The edge's access line: one per request, from the proxy's `logging` phase and
//! the hit path alike, in the configured format ([`outpost_common::access_log`] writes it), and
//! the request id that ties the line to the origin's (`X-Request-Id`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use outpost_common::access_log::{self as common, Format};

use crate::metrics::Outcome;
use crate::storage::Tier;

/// The field carrying the request id to the origin (and from a trusted proxy in front).
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Longest request id taken from a trusted proxy.
const MAX_ID: usize = 128;

/// A new request id: 128 random bits in hex, unique across the nodes of every region.
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for byte in fastrand::u128(..).to_be_bytes() {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    id
}

/// The id a trusted proxy assigned, if it is one we can log and forward as it is: visible
/// ASCII without quotes or backslashes, at most 128 bytes.
pub fn forwarded_request_id(value: &[u8]) -> Option<String> {
    let fits = !value.is_empty()
        && value.len() <= MAX_ID
        && value
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
    fits.then(|| String::from_utf8_lossy(value).into_owned())
}

/// What one access line says.
pub struct Entry<'a> {
    /// When the request's head was read.
    pub start: SystemTime,
    /// The client as far as the edge can tell (a trusted proxy's `X-Forwarded-For`).
    pub client: Option<IpAddr>,
    pub host: &'a [u8],
    /// The site its host chose; `-` for none.
    pub site: &'a str,
    pub method: &'a str,
    pub target: &'a [u8],
    pub version: &'a str,
    /// 0 when no response was sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: usize,
    /// To the response head being handed to the connection.
    pub ttfb: Option<Duration>,
    pub total: Duration,
    pub outcome: Outcome,
    /// The `Cache-Status` sent.
    pub cache_status: &'a str,
    /// The tier that held the stored response.
    pub tier: Option<Tier>,
    /// The origin asked, and how long its response head took.
    pub origin: Option<&'a str>,
    pub origin_time: Option<Duration>,
    pub origin_fault: Option<&'a str>,
    pub request_id: &'a str,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    /// Why the exchange failed (a client that hung up, an origin that broke off).
    pub error: Option<&'a str>,
}

/// The HTTP version as a request line writes it.
pub fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `entry` as a line (no newline) in `format`; `None` when the log is off.
pub fn line(format: Format, entry: &Entry<'_>) -> Option<String> {
    match format {
        Format::Text => Some(text(entry)),
        Format::Json => Some(json(entry)),
        Format::Off => None,
    }
}

/// Combined Log Format, then `key=value` fields (quoted where a client chose the value).
fn text(e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(320);
    common::push_combined(
        &mut out,
        &common::Combined {
            client: e.client,
            time: e.start,
            method: e.method.as_bytes(),
            target: e.target,
            version: e.version,
            status: e.status,
            bytes: u64::try_from(e.bytes).ok(),
            referer: e.referer,
            user_agent: e.user_agent,
        },
    );
    out.push_str(" host=");
    common::push_quoted(&mut out, e.host);
    for (key, value) in [
        (" site=", e.site),
        (" cache=", e.outcome.label()),
        (" tier=", e.tier.map_or("-", Tier::as_str)),
        (" ttfb_ms=", ""),
    ] {
        out.push_str(key);
        out.push_str(value);
    }
    match e.ttfb {
        Some(d) => common::push_ms(&mut out, d),
        None => out.push('-'),
    }
    out.push_str(" total_ms=");
    common::push_ms(&mut out, e.total);
    out.push_str(" origin=");
    out.push_str(e.origin.unwrap_or("-"));
    out.push_str(" origin_ms=");
    match e.origin_time {
        Some(d) => common::push_ms(&mut out, d),
        None => out.push('-'),
    }
    out.push_str(" origin_fault=");
    out.push_str(e.origin_fault.unwrap_or("-"));
    out.push_str(" request_id=");
    out.push_str(e.request_id);
    out.push_str(" cache_status=");
    common::push_quoted(&mut out, e.cache_status.as_bytes());
    if let Some(error) = e.error {
        out.push_str(" error=");
        common::push_quoted(&mut out, error.as_bytes());
    }
    out
}

/// The JSON line: the same fields, named as the text line names them; written by hand (serde
/// costs as much again as the rest of a hit).
fn json(e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(400);
    out.push_str("{\"time\":\"");
    common::push_rfc3339(&mut out, e.start);
    out.push_str("\",\"client\":");
    match e.client {
        Some(ip) => {
            out.push('"');
            common::push_ip(&mut out, ip);
            out.push('"');
        }
        None => out.push_str("null"),
    }
    let text = |out: &mut String, key: &str, value: Option<&[u8]>| {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        match value {
            Some(v) => common::push_json_string(out, v),
            None => out.push_str("null"),
        }
    };
    let number = |out: &mut String, key: &str, value: Option<Duration>| {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":");
        match value {
            Some(d) => common::push_ms(out, d),
            None => out.push_str("null"),
        }
    };
    text(&mut out, "method", Some(e.method.as_bytes()));
    text(&mut out, "target", Some(e.target));
    text(&mut out, "version", Some(e.version.as_bytes()));
    out.push_str(",\"status\":");
    common::push_int(&mut out, e.status);
    out.push_str(",\"bytes\":");
    common::push_int(&mut out, e.bytes);
    text(&mut out, "referer", non_empty(e.referer));
    text(&mut out, "user_agent", non_empty(e.user_agent));
    text(&mut out, "host", Some(e.host));
    text(&mut out, "site", Some(e.site.as_bytes()));
    text(&mut out, "cache", Some(e.outcome.label().as_bytes()));
    text(&mut out, "tier", e.tier.map(|t| t.as_str().as_bytes()));
    number(&mut out, "ttfb_ms", e.ttfb);
    number(&mut out, "total_ms", Some(e.total));
    text(&mut out, "origin", e.origin.map(str::as_bytes));
    number(&mut out, "origin_ms", e.origin_time);
    text(&mut out, "origin_fault", e.origin_fault.map(str::as_bytes));
    text(&mut out, "request_id", Some(e.request_id.as_bytes()));
    text(&mut out, "cache_status", Some(e.cache_status.as_bytes()));
    text(&mut out, "error", e.error.map(str::as_bytes));
    out.push('}');
    out
}

fn non_empty(b: &[u8]) -> Option<&[u8]> {
    (!b.is_empty()).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_162_991),
            client: Some("192.0.2.7".parse().expect("ip")),
            host: b"shop.example",
            site: "shop",
            method: "GET",
            target: b"/p/1?q=\"x\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 1024,
            ttfb: Some(Duration::from_micros(250)),
            total: Duration::from_micros(1_500),
            outcome: Outcome::Miss,
            cache_status: "outpost; fwd=uri-miss; stored",
            tier: None,
            origin: Some("127.0.0.1:8081"),
            origin_time: Some(Duration::from_micros(1_100)),
            origin_fault: None,
            request_id: "0123abcd",
            referer: b"",
            user_agent: b"curl/8\nX: injected",
            error: None,
        }
    }

    #[test]
    fn the_text_line_is_combined_then_fields_and_cannot_be_split_by_a_client() {
        let text = line(Format::Text, &entry()).expect("on");
        assert_eq!(
            text,
            "192.0.2.7 - - [01/Dec/2026:22:09:51 +0000] \"GET /p/1?q=\\x22x\\x22 HTTP/1.1\" 200 1024 \
             \"-\" \"curl/8\\x0AX: injected\" host=\"shop.example\" site=shop cache=miss tier=- \
             ttfb_ms=0.250 total_ms=1.500 origin=127.0.0.1:8081 origin_ms=1.100 origin_fault=- \
             request_id=0123abcd cache_status=\"outpost; fwd=uri-miss; stored\""
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn the_json_line_has_the_same_fields() {
        let json = line(Format::Json, &entry()).expect("on");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["time"], "2026-12-01T22:09:51.000Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["target"], "/p/1?q=\"x\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["origin"], "127.0.0.1:8081");
        assert_eq!(v["origin_ms"], 1.1);
        assert_eq!(v["user_agent"], "curl/8\nX: injected");
        assert!(v["referer"].is_null() && v["tier"].is_null());
        assert!(!json.contains('\n'));
        assert!(line(Format::Off, &entry()).is_none());
    }

    #[test]
    fn only_a_plain_forwarded_id_is_kept() {
        assert_eq!(forwarded_request_id(b"lb-42").as_deref(), Some("lb-42"));
        for bad in [&b""[..], b"a b", b"a\"b", b"a\\b", b"\xff", &[b'a'; 129]] {
            assert_eq!(forwarded_request_id(bad), None, "{bad:?}");
        }
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_request_id());
    }
}
