//! Header rules shared by the request path and the cache: hop-by-hop fields (RFC 9110 §7.6.1),
//! which a proxy neither stores nor forwards.

use pingora_http::ResponseHeader;

/// Standard hop-by-hop fields. `Transfer-Encoding` is left to Pingora, which frames the message.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Field names listed in `Connection` (lower-cased): hop-by-hop for this message only.
pub fn connection_listed(resp: &ResponseHeader) -> Vec<String> {
    resp.headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// True if `name` (lower-case) is hop-by-hop, standard or listed.
pub fn is_hop_by_hop(name: &str, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name)
}

/// Removes hop-by-hop fields. `Upgrade` stays on a 101, where it is the point.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    let listed = connection_listed(resp);
    let upgrade = resp.status.as_u16() == 101;
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed) {
        if upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        resp.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_listed_fields() {
        let mut r = ResponseHeader::build(200, None).expect("header");
        for (k, v) in [
            ("Connection", "close, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("X-Kept", "2"),
            ("Content-Length", "0"),
        ] {
            r.append_header(k, v).expect("valid");
        }
        strip_hop_by_hop(&mut r);
        assert!(r.headers.get("x-secret").is_none() && r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("connection").is_none());
        assert_eq!(r.headers["x-kept"], "2");
        assert_eq!(r.headers["content-length"], "0");
    }
}
