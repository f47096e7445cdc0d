//! The cache key: scheme + host + path + query, the query normalised per config (parameters
//! sorted, tracking parameters dropped) so equivalent URLs share one entry. Variants per `Vary`
//! are a secondary key on top (see `policy::vary`).
//!
//! The key is text (`http://example.com/a?b=1`), so the same function turns a `Location` URL
//! into the key to invalidate, and purges by URL or prefix can match it.

use http::Uri;
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

use crate::config::CacheKeyConfig;

/// Builds cache keys; cheap to share.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    sort_query: bool,
    drop_exact: Vec<String>,
    drop_prefixes: Vec<String>,
}

impl KeyBuilder {
    pub fn new(cfg: &CacheKeyConfig) -> Self {
        let (prefixes, exact): (Vec<_>, Vec<_>) =
            cfg.drop_params.iter().partition(|p| p.ends_with('*'));
        Self {
            sort_query: cfg.sort_query,
            drop_exact: exact.into_iter().cloned().collect(),
            drop_prefixes: prefixes
                .iter()
                .map(|p| p.trim_end_matches('*').to_owned())
                .collect(),
        }
    }

    /// The key of a client request.
    pub fn request_key(&self, req: &RequestHeader, scheme: &str) -> CacheKey {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        key(self.primary(scheme, host, &req.uri))
    }

    /// The key of `target` (absolute, or relative to the request) if it is same-origin with the
    /// request, for invalidating `Location` / `Content-Location` (RFC 9111 §4.4).
    pub fn same_origin_key(
        &self,
        req: &RequestHeader,
        scheme: &str,
        target: &str,
    ) -> Option<CacheKey> {
        let uri: Uri = target.parse().ok()?;
        let request_host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())?;
        match uri.authority() {
            Some(a)
                if normalize_host(a.as_str(), scheme) != normalize_host(request_host, scheme) =>
            {
                None
            }
            Some(_) if uri.scheme_str().is_some_and(|s| s != scheme) => None,
            _ if !uri.path().starts_with('/') => None,
            _ => Some(key(self.primary(scheme, request_host, &uri))),
        }
    }

    pub fn primary(&self, scheme: &str, host: &str, uri: &Uri) -> String {
        let host = normalize_host(host, scheme);
        let path = uri.path();
        let query = uri.query().unwrap_or("");
        let mut key =
            String::with_capacity(scheme.len() + 3 + host.len() + path.len() + 1 + query.len());
        key.push_str(scheme);
        key.push_str("://");
        key.push_str(&host);
        key.push_str(path);
        if !query.is_empty() {
            let mut params: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && !self.dropped(p))
                .collect();
            if self.sort_query {
                params.sort_unstable();
            }
            for (i, param) in params.iter().enumerate() {
                key.push(if i == 0 { '?' } else { '&' });
                key.push_str(param);
            }
        }
        key
    }

    fn dropped(&self, param: &str) -> bool {
        let name = param.split('=').next().unwrap_or(param);
        self.drop_exact.iter().any(|d| d == name)
            || self
                .drop_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// A cache key for `primary`, its hash (BLAKE3, truncated to 128 bits) computed once here:
/// Pingora would otherwise rehash it with Blake2b each time it is asked.
pub fn key(primary: String) -> CacheKey {
    let hash = blake3::hash(primary.as_bytes());
    let mut bin = [0u8; 16];
    bin.copy_from_slice(&hash.as_bytes()[..16]);
    let mut key = CacheKey::new(primary, "");
    key.set_primary_bin_override(bin);
    key
}

/// Lower-case, without a trailing dot or the scheme's default port.
fn normalize_host<'a>(host: &'a str, scheme: &str) -> std::borrow::Cow<'a, str> {
    let host = host.trim();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    fn builder() -> KeyBuilder {
        KeyBuilder::new(&CacheKeyConfig::default())
    }

    fn req(path: &str, host: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
        r.insert_header("host", host).expect("host");
        r
    }

    fn primary(path: &str, host: &str) -> String {
        let r = req(path, host);
        builder().primary("http", host, &r.uri)
    }

    #[test]
    fn keys_normalise_host_and_query() {
        assert_eq!(
            primary("/a?b=2&a=1", "Example.COM:80"),
            "http://example.com/a?a=1&b=2"
        );
        assert_eq!(
            primary("/a?utm_source=x&id=3&fbclid=y&utm_medium=z", "example.com"),
            "http://example.com/a?id=3"
        );
        assert_eq!(
            primary("/a?utm_source=x", "example.com."),
            "http://example.com/a"
        );
        assert_eq!(primary("/a?&&x=1&", "h"), "http://h/a?x=1");
        assert_ne!(
            primary("/a", "example.com:8080"),
            primary("/a", "example.com")
        );
        assert_ne!(
            primary("/A", "h"),
            primary("/a", "h"),
            "paths are case-sensitive"
        );
    }

    #[test]
    fn unsorted_when_configured() {
        let b = KeyBuilder::new(&CacheKeyConfig {
            sort_query: false,
            drop_params: vec![],
        });
        let r = req("/a?b=2&a=1&utm_x=1", "h");
        assert_eq!(b.primary("http", "h", &r.uri), "http://h/a?b=2&a=1&utm_x=1");
    }

    #[test]
    fn same_origin_targets_only() {
        let b = builder();
        let r = req("/items", "shop.test");
        let own = b.request_key(&req("/items/7", "shop.test"), "http");
        let rel = b.same_origin_key(&r, "http", "/items/7").expect("relative");
        assert_eq!(rel.primary_bin(), own.primary_bin());
        let abs = b
            .same_origin_key(&r, "http", "http://SHOP.test/items/7")
            .expect("absolute");
        assert_eq!(abs.primary_bin(), own.primary_bin());
        assert!(
            b.same_origin_key(&r, "http", "http://evil.test/items/7")
                .is_none()
        );
        assert!(
            b.same_origin_key(&r, "http", "https://shop.test/items/7")
                .is_none()
        );
        assert!(b.same_origin_key(&r, "http", "not a url").is_none());
    }
}
