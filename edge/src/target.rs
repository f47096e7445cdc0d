//! The request target and its authority, parsed and validated once (RFC 9112 §3.2, RFC 9110 §7.2,
//! RFC 3986 §3.2). The cache key and the request sent to the origin are both built from the one
//! [`Target`] this module returns, so they can never disagree: whatever a client sends, the origin
//! is asked exactly what the key says was asked.
//!
//! Accepted: origin-form (`/path?query`), absolute-form (`http://host/path`, for the connection's
//! own scheme), and asterisk-form (`*`, `OPTIONS` only). Everything else is refused before it
//! reaches the cache or the origin: other target forms (`./x`, `..`, `mailto:x`, `host:80`), bytes
//! outside visible ASCII, a missing `Host`, and any authority that is not `host[":" port]` (no
//! userinfo, no path, no whitespace).
//!
//! The authority is kept in one canonical form: lower case, no trailing dot, the scheme's default
//! port dropped, IPv6 literals compressed. The query keeps only what the key options keep (see
//! [`QueryRules::query`]), in key order; dropped parameters are not forwarded.

use std::fmt;
use std::net::Ipv6Addr;

use http::Method;
use pingora_http::RequestHeader;

use crate::names::is_name_byte;

/// The scheme a request arrived with (the connection's: TLS or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// A validated request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// `host[:port]`, canonical.
    pub authority: String,
    /// The path as received (visible ASCII), or `*` for asterisk-form.
    pub path: String,
    /// The query the key keeps, in key order; empty when there is none.
    pub query: String,
}

impl Target {
    /// The request-target sent to the origin: origin-form with the kept query, or `*`.
    pub fn origin_form(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The primary cache key's text: `scheme://authority/path?query`.
    pub fn key_text(&self) -> String {
        let mut key = String::with_capacity(
            self.scheme.as_str().len()
                + 3
                + self.authority.len()
                + self.path.len()
                + 1
                + self.query.len(),
        );
        key.push_str(self.scheme.as_str());
        key.push_str("://");
        key.push_str(&self.authority);
        key.push_str(&self.path);
        if !self.query.is_empty() {
            key.push('?');
            key.push_str(&self.query);
        }
        key
    }
}

/// Why a request was refused (`400`); `detail()` goes into `Cache-Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No `Host` (RFC 9112 §3.2: a server must answer 400).
    MissingHost,
    BadHost(&'static str),
    BadTarget(&'static str),
}

impl Rejected {
    pub fn detail(self) -> &'static str {
        match self {
            Rejected::MissingHost => "missing-host",
            Rejected::BadHost(_) => "bad-host",
            Rejected::BadTarget(_) => "bad-target",
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::MissingHost => f.write_str("the request has no Host"),
            Rejected::BadHost(why) => write!(f, "invalid Host: {why}"),
            Rejected::BadTarget(why) => write!(f, "invalid request target: {why}"),
        }
    }
}

/// Which query parameters the cache key keeps, and so the origin receives: every parameter but
/// the dropped ones, sorted by name when configured; cheap to share.
#[derive(Clone, Debug)]
pub struct QueryRules {
    sort: bool,
    drop_exact: Vec<String>,
    drop_prefixes: Vec<String>,
}

/// Every parameter kept, in the client's order: for URLs of hosts no site serves.
pub static KEEP_ALL: QueryRules = QueryRules {
    sort: false,
    drop_exact: Vec::new(),
    drop_prefixes: Vec::new(),
};

impl QueryRules {
    /// `drop_params`: names, or prefixes ending in `*`.
    pub fn new(sort: bool, drop_params: &[String]) -> Self {
        let (prefixes, exact): (Vec<_>, Vec<_>) =
            drop_params.iter().partition(|p| p.ends_with('*'));
        Self {
            sort,
            drop_exact: exact.into_iter().cloned().collect(),
            drop_prefixes: prefixes
                .iter()
                .map(|p| p.trim_end_matches('*').to_owned())
                .collect(),
        }
    }

    /// The query the key keeps (and the origin receives): parameters split on `&` only, empty
    /// and dropped ones left out, the rest sorted by name when configured. The sort is stable,
    /// so repeated parameters keep their order (`a=1&a=2` and `a=2&a=1` may mean different
    /// things to an origin).
    pub fn query(&self, raw: &str) -> String {
        if raw.is_empty() {
            return String::new();
        }
        let mut params: Vec<&str> = raw
            .split('&')
            .filter(|p| !p.is_empty() && !self.dropped(p))
            .collect();
        if self.sort {
            params.sort_by_key(|p| param_name(p));
        }
        params.join("&")
    }

    fn dropped(&self, param: &str) -> bool {
        let name = param_name(param);
        self.drop_exact.iter().any(|d| d == name)
            || self
                .drop_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// A parameter's name: what precedes its first `=`.
fn param_name(param: &str) -> &str {
    param.split('=').next().unwrap_or(param)
}

/// Longest host name (RFC 1035 §2.3.4, without the trailing dot).
const MAX_HOST_LEN: usize = 253;

/// Parses the target and authority of a client request that arrived over `scheme`.
#[cfg(test)]
pub fn parse(req: &RequestHeader, scheme: Scheme, rules: &QueryRules) -> Result<Target, Rejected> {
    parse_with(req, scheme, |_| rules)
}

/// The host part of a canonical authority (`[::1]` or `example.com`, without the port).
pub fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// [`parse`], with the query rules chosen by the canonical authority (each site has its own):
/// `rules_for` is called once, before the query is shaped.
pub fn parse_with<'r>(
    req: &RequestHeader,
    scheme: Scheme,
    rules_for: impl FnOnce(&str) -> &'r QueryRules,
) -> Result<Target, Rejected> {
    let raw = req.raw_path();
    if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Rejected::BadTarget(
            "bytes outside visible ASCII must be percent-encoded",
        ));
    }
    // Only ASCII from here on: these conversions cannot fail.
    let raw = std::str::from_utf8(raw).map_err(|_| Rejected::BadTarget("not ASCII"))?;
    // RFC 9112 §3.2: every HTTP/1.1 request has a Host, whatever the form of its target (and we
    // cannot route an HTTP/1.0 one without it either).
    let host_field = host_field(req)?.ok_or(Rejected::MissingHost)?;
    if raw == "*" {
        if req.method != Method::OPTIONS {
            return Err(Rejected::BadTarget("asterisk-form is for OPTIONS only"));
        }
        let authority = canonical_authority(host_field, scheme)?;
        // No query to shape, but the authority still chooses the site.
        rules_for(&authority);
        return Ok(Target {
            scheme,
            authority,
            path: "*".to_owned(),
            query: String::new(),
        });
    }
    if raw.starts_with('/') {
        return parse_origin_form(raw, host_field, scheme, rules_for);
    }
    // Absolute-form: its authority wins over Host (RFC 9112 §3.2.2); Pingora has already refused
    // a Host that differs from it.
    let target = parse_absolute(raw, rules_for)?;
    if target.scheme != scheme {
        return Err(Rejected::BadTarget(
            "absolute-form scheme differs from the connection's",
        ));
    }
    Ok(target)
}

/// An origin-form target (`raw`: `/path?query`, visible ASCII) with the `Host` it came with.
pub fn parse_origin_form<'r>(
    raw: &str,
    host: &[u8],
    scheme: Scheme,
    rules_for: impl FnOnce(&str) -> &'r QueryRules,
) -> Result<Target, Rejected> {
    let authority = canonical_authority(host, scheme)?;
    let rules = rules_for(&authority);
    Ok(origin_form(scheme, authority, raw, rules))
}

/// Parses an absolute `http://` or `https://` URL as if it were a request's target (purges name
/// URLs this way, so they reach exactly the keys requests make).
pub fn parse_url(url: &str, rules: &QueryRules) -> Result<Target, Rejected> {
    parse_url_with(url, |_| rules)
}

/// [`parse_url`], with the query rules chosen by the canonical authority.
pub fn parse_url_with<'r>(
    url: &str,
    rules_for: impl FnOnce(&str) -> &'r QueryRules,
) -> Result<Target, Rejected> {
    if !url.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Rejected::BadTarget(
            "bytes outside visible ASCII must be percent-encoded",
        ));
    }
    let url = url.split('#').next().unwrap_or(url);
    parse_absolute(url, rules_for)
}

/// `scheme "://" authority [path-abempty] ["?" query]`.
fn parse_absolute<'r>(
    raw: &str,
    rules_for: impl FnOnce(&str) -> &'r QueryRules,
) -> Result<Target, Rejected> {
    let (scheme, rest) = raw.split_once("://").ok_or(Rejected::BadTarget(
        "neither origin-form (/path) nor absolute-form (http://host/path)",
    ))?;
    let scheme = Scheme::parse(scheme).ok_or(Rejected::BadTarget("scheme is not http or https"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.contains('@') {
        return Err(Rejected::BadTarget("userinfo in the target"));
    }
    let authority = canonical_authority(authority.as_bytes(), scheme)?;
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        format!("/{path_and_query}")
    };
    let rules = rules_for(&authority);
    Ok(origin_form(scheme, authority, &path_and_query, rules))
}

fn origin_form(scheme: Scheme, authority: String, raw: &str, rules: &QueryRules) -> Target {
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    Target {
        scheme,
        authority,
        path: path.to_owned(),
        query: rules.query(query),
    }
}

/// The one `Host` field line (HTTP/1), or the `:authority` an HTTP/2 request carries instead.
fn host_field(req: &RequestHeader) -> Result<Option<&[u8]>, Rejected> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(Rejected::BadHost("more than one Host")),
        (Some(host), None) => Ok(Some(host.as_bytes())),
        (None, _) => Ok(req.uri.authority().map(|a| a.as_str().as_bytes())),
    }
}

/// `host[":" port]` in canonical form: lower case, no trailing dot, no default port. A host is a
/// DNS name (letters, digits, `-`, `_`, dots between non-empty labels), an IPv4 address, or an
/// IPv6 literal in brackets.
pub fn canonical_authority(raw: &[u8], scheme: Scheme) -> Result<String, Rejected> {
    if raw.is_empty() {
        return Err(Rejected::BadHost("empty"));
    }
    let (mut host, port) = if raw[0] == b'[' {
        let end = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(Rejected::BadHost("unclosed IPv6 literal"))?;
        let inner =
            std::str::from_utf8(&raw[1..end]).map_err(|_| Rejected::BadHost("not ASCII"))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| Rejected::BadHost("not an IPv6 address"))?;
        let port = match &raw[end + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(Rejected::BadHost("junk after the IPv6 literal")),
        };
        (format!("[{ip}]"), port)
    } else {
        let (name, port) = match raw.iter().position(|&b| b == b':') {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (raw, None),
        };
        (dns_name(name)?, port)
    };
    let port = match port {
        None | Some([]) => None,
        Some(digits) => Some(port_number(digits)?),
    };
    if let Some(port) = port.filter(|p| *p != scheme.default_port()) {
        use std::fmt::Write;
        let _ = write!(host, ":{port}");
    }
    Ok(host)
}

fn dns_name(name: &[u8]) -> Result<String, Rejected> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return Err(Rejected::BadHost("empty host name"));
    }
    if name.len() > MAX_HOST_LEN {
        return Err(Rejected::BadHost("host name longer than 253 characters"));
    }
    if !name.iter().all(|&b| is_name_byte(b)) {
        return Err(Rejected::BadHost(
            "only letters, digits, '-', '_' and '.' may name a host",
        ));
    }
    if name.split(|&b| b == b'.').any(<[u8]>::is_empty) {
        return Err(Rejected::BadHost("empty label in the host name"));
    }
    // Checked above: ASCII only.
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn port_number(digits: &[u8]) -> Result<u16, Rejected> {
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Rejected::BadHost("the port is not a number"));
    }
    let port = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    match u16::try_from(port) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(Rejected::BadHost("the port is out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheKeyConfig;

    fn keys() -> QueryRules {
        let cfg = CacheKeyConfig::default();
        QueryRules::new(cfg.sort_query, &cfg.drop_params)
    }

    fn request(method: &str, target: &[u8], host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).expect("request");
        if let Some(host) = host {
            r.insert_header("host", host).expect("host");
        }
        r
    }

    fn parse_get(target: &str, host: &str) -> Result<Target, Rejected> {
        parse(
            &request("GET", target.as_bytes(), Some(host)),
            Scheme::Http,
            &keys(),
        )
    }

    #[test]
    fn authorities_take_one_canonical_form() {
        let canon = |h: &str| canonical_authority(h.as_bytes(), Scheme::Http);
        for (raw, want) in [
            ("Site.Test", "site.test"),
            ("site.test.", "site.test"),
            ("site.test:80", "site.test"),
            ("site.test:080", "site.test"),
            ("site.test:", "site.test"),
            ("site.test:8080", "site.test:8080"),
            ("127.0.0.1:443", "127.0.0.1:443"),
            ("[2001:DB8:0:0::1]:80", "[2001:db8::1]"),
            ("[::1]:8443", "[::1]:8443"),
            ("_dmarc.example", "_dmarc.example"),
        ] {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
        }
        assert_eq!(
            canonical_authority(b"site.test:443", Scheme::Https).as_deref(),
            Ok("site.test")
        );
    }

    #[test]
    fn anything_but_host_and_port_is_refused() {
        for raw in [
            "",
            "site.test/static",
            "site.test?x",
            "site.test#x",
            "user@site.test",
            "site test",
            "site.test:80:80",
            "site.test:http",
            "site.test:0",
            "site.test:65536",
            "site..test",
            ".site.test",
            ".",
            "sité.test",
            "[::1",
            "[::1]x",
            "[not-ip]",
            "%73ite.test",
        ] {
            assert!(
                canonical_authority(raw.as_bytes(), Scheme::Http).is_err(),
                "{raw:?} accepted"
            );
        }
        assert!(canonical_authority("a".repeat(254).as_bytes(), Scheme::Http).is_err());
    }

    #[test]
    fn the_host_cannot_reach_into_the_path() {
        // The reported poisoning: `Host: site.test/static` + `GET /x` keyed as `/static/x`.
        assert_eq!(
            parse_get("/x", "site.test/static"),
            Err(Rejected::BadHost(
                "only letters, digits, '-', '_' and '.' may name a host"
            ))
        );
        let t = parse_get("/Static/X?b=2&a=1", "SITE.test.").expect("valid");
        assert_eq!(t.key_text(), "http://site.test/Static/X?a=1&b=2");
        assert_eq!(t.origin_form(), "/Static/X?a=1&b=2");
        assert_eq!(t.authority, "site.test");
    }

    #[test]
    fn only_three_target_forms_are_accepted() {
        for odd in [
            "./x",
            "..",
            "c",
            "host:80",
            "mailto:x",
            "site.test/x",
            "ftp://site.test/",
        ] {
            assert!(
                matches!(parse_get(odd, "site.test"), Err(Rejected::BadTarget(_))),
                "{odd} accepted"
            );
        }
        let abs = parse_get("http://Site.Test:80/a?utm_source=x&b=1", "site.test").expect("abs");
        assert_eq!(abs.key_text(), "http://site.test/a?b=1");
        assert_eq!(abs.origin_form(), "/a?b=1");
        assert_eq!(
            parse_get("https://site.test/a", "site.test"),
            Err(Rejected::BadTarget(
                "absolute-form scheme differs from the connection's"
            ))
        );
        assert!(matches!(
            parse_get("http://u@site.test/a", "site.test"),
            Err(Rejected::BadTarget(_))
        ));
        let root = parse_get("http://site.test", "site.test").expect("no path");
        assert_eq!(root.origin_form(), "/");
        assert!(matches!(
            parse_get("*", "site.test"),
            Err(Rejected::BadTarget(_))
        ));
        let star = parse(
            &request("OPTIONS", b"*", Some("site.test")),
            Scheme::Http,
            &keys(),
        )
        .expect("OPTIONS *");
        assert_eq!(star.origin_form(), "*");
    }

    #[test]
    fn a_host_is_required_and_unique() {
        for target in [&b"/"[..], b"http://a.test/", b"*"] {
            assert_eq!(
                parse(&request("OPTIONS", target, None), Scheme::Http, &keys()),
                Err(Rejected::MissingHost),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        let mut two = request("GET", b"/", Some("a.test"));
        two.append_header("host", "b.test").expect("second host");
        assert_eq!(
            parse(&two, Scheme::Http, &keys()),
            Err(Rejected::BadHost("more than one Host"))
        );
    }

    #[test]
    fn raw_bytes_outside_visible_ascii_are_refused() {
        let r = request("GET", b"/caf\xc3\xa9", Some("site.test"));
        assert!(matches!(
            parse(&r, Scheme::Http, &keys()),
            Err(Rejected::BadTarget(_))
        ));
        let encoded = parse_get("/caf%C3%A9", "site.test").expect("encoded");
        assert_eq!(encoded.path, "/caf%C3%A9", "kept as sent, not decoded");
    }

    #[test]
    fn purge_urls_reach_the_keys_requests_make() {
        let from_request = parse_get("/a?b=2&a=1&fbclid=x", "Site.Test:80").expect("request");
        let from_url = parse_url("http://site.test/a?a=1&b=2#frag", &keys()).expect("url");
        assert_eq!(from_request.key_text(), from_url.key_text());
        assert!(parse_url("site.test/a", &keys()).is_err());
        assert!(parse_url("http://site.test/a b", &keys()).is_err());
    }
}
