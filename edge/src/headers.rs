//! Header rules shared by the request path and the cache: hop-by-hop fields (RFC 9110 §7.6.1),
//! which a proxy neither stores nor forwards, and the fields targeted at us, which clients never
//! see. This runs on every response, so it scans the field names once instead of looking each
//! candidate up.

use http::{HeaderMap, HeaderName};
use pingora_http::ResponseHeader;

/// `Accept-Ranges: bytes`, as Pingora (and nginx) advertise on whole objects: stored with each
/// object, so a hit never adds it.
pub const ACCEPT_BYTES: http::HeaderValue = http::HeaderValue::from_static("bytes");

/// RFC 9211's field, as a ready name (every response carries it).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Standard hop-by-hop fields. `Transfer-Encoding` is left to Pingora, which frames the message.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Fields addressed to this cache (RFC 9213, Edge Architecture, and the purge tags), removed
/// before the client.
const TARGETED: [&str; 4] = [
    "cdn-cache-control",
    "surrogate-control",
    "surrogate-key",
    "cache-tag",
];

/// The members of a comma-separated field value (RFC 9110 §5.6.1): split on commas outside
/// quoted strings, whitespace around each dropped, empty members skipped. The one list parser
/// of the edge's header rules.
pub fn list_members(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut at = 0;
    std::iter::from_fn(move || {
        while start < bytes.len() {
            let (mut quoted, mut escaped) = (false, false);
            while at < bytes.len() {
                match bytes[at] {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => break,
                    _ => {}
                }
                at += 1;
            }
            let member = value[start..at].trim();
            at += 1;
            start = at;
            if !member.is_empty() {
                return Some(member);
            }
        }
        None
    })
}

/// Field names listed in a message's `Connection` (lower-cased): hop-by-hop for this message
/// only. Without a `Connection` field nothing is allocated.
pub fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(list_members)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// True if `name` (lower-case) is hop-by-hop, standard or listed.
pub fn is_hop_by_hop(name: &str, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name)
}

/// A response made ready for the client, whether it comes from the origin or the cache: what
/// it must not see removed, and this node added to `Via` (`via`; `via_value` is the same, ready
/// to insert when the response has no `Via` of its own).
pub fn for_client(
    resp: &mut ResponseHeader,
    via: &str,
    via_value: &http::HeaderValue,
) -> pingora_error::Result<()> {
    strip_for_client(resp);
    match resp
        .headers
        .get(http::header::VIA)
        .and_then(|v| v.to_str().ok())
    {
        Some(existing) => {
            let via = format!("{existing}, {via}");
            resp.insert_header(http::header::VIA, via)
        }
        None => resp.insert_header(http::header::VIA, via_value.clone()),
    }
}

/// A whole `200` of known length without `Accept-Ranges` says it serves byte ranges (stored
/// objects already do; this covers what comes straight from the origin).
pub fn advertise_ranges(resp: &mut ResponseHeader) {
    if resp.status == http::StatusCode::OK
        && !resp.headers.contains_key(http::header::ACCEPT_RANGES)
        && resp.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        let _ = resp.insert_header(http::header::ACCEPT_RANGES, ACCEPT_BYTES);
    }
}

/// Removes hop-by-hop fields. `Upgrade` stays on a 101, where it is the point.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    strip(resp, false);
}

/// Removes hop-by-hop fields and the fields targeted at us: what a client must not see.
pub fn strip_for_client(resp: &mut ResponseHeader) {
    strip(resp, true);
}

fn strip(resp: &mut ResponseHeader, targeted: bool) {
    let upgrade = resp.status.as_u16() == 101;
    let listed = if resp.headers.contains_key(http::header::CONNECTION) {
        connection_listed(&resp.headers)
    } else {
        Vec::new()
    };
    let doomed: Vec<HeaderName> = resp
        .headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            if upgrade && (n == "upgrade" || n == "connection") {
                return false;
            }
            is_hop_by_hop(n, &listed) || (targeted && TARGETED.contains(&n))
        })
        .cloned()
        .collect();
    for name in doomed {
        resp.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_members_split_outside_quotes() {
        let m: Vec<&str> = list_members(" a, ,b ;q=1 , \"x, y\" , \"e\\\" ,z\",").collect();
        assert_eq!(m, ["a", "b ;q=1", "\"x, y\"", "\"e\\\" ,z\""]);
        assert_eq!(list_members("").count(), 0);
        assert_eq!(list_members(" , ,").count(), 0);
    }

    fn response(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("header");
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).expect("valid");
        }
        r
    }

    #[test]
    fn strips_standard_and_listed_fields() {
        let mut r = response(&[
            ("Connection", "close, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("X-Kept", "2"),
            ("Content-Length", "0"),
            ("CDN-Cache-Control", "max-age=5"),
        ]);
        strip_hop_by_hop(&mut r);
        assert!(r.headers.get("x-secret").is_none() && r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("connection").is_none());
        assert_eq!(r.headers["x-kept"], "2");
        assert_eq!(r.headers["content-length"], "0");
        assert_eq!(
            r.headers["cdn-cache-control"], "max-age=5",
            "kept in what is stored"
        );
        strip_for_client(&mut r);
        assert!(r.headers.get("cdn-cache-control").is_none());
    }

    #[test]
    fn upgrade_survives_on_101() {
        let mut r = ResponseHeader::build(101, None).expect("header");
        r.append_header("Upgrade", "websocket").expect("valid");
        r.append_header("Connection", "Upgrade").expect("valid");
        strip_hop_by_hop(&mut r);
        assert_eq!(r.headers["upgrade"], "websocket");
    }
}
