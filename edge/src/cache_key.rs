//! The cache key: scheme + canonical authority + path + the query as the key options keep it
//! (parameters dropped, the rest sorted by name), all taken from the one parsed [`Target`] that
//! is also forwarded to the origin. Variants per `Vary` are a secondary key on top (see
//! `policy::vary`).
//!
//! The key is text (`http://example.com/a?b=1`), so purges by URL or prefix can match it, and a
//! `Location` URL turns into the key to invalidate the same way a request does.

use pingora_cache::CacheKey;

use crate::target::{self, QueryRules, Target};

/// The query rules of whichever site serves a host: purges name URLs outside any request, and
/// must reach the keys that host's requests make.
pub trait RulesByHost: Send + Sync {
    /// The rules of the site serving `host` (without port), or [`crate::target::KEEP_ALL`] when
    /// no site does.
    fn rules_for(&self, host: &str) -> QueryRules;
}

/// Keys from parsed targets, under the configured query rules; cheap to share.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    rules: QueryRules,
}

impl KeyBuilder {
    pub fn new(rules: QueryRules) -> Self {
        Self { rules }
    }

    /// The query rules requests and purge URLs are parsed with.
    pub fn rules(&self) -> &QueryRules {
        &self.rules
    }

    /// The key of a parsed request target.
    pub fn key(&self, target: &Target) -> CacheKey {
        key(target.key_text())
    }

    /// The key of `location` (absolute, or an absolute path) if it is same-origin with
    /// `request`, for invalidating `Location` / `Content-Location` (RFC 9111 §4.4).
    pub fn same_origin_key(&self, request: &Target, location: &str) -> Option<CacheKey> {
        let target = if location.starts_with('/') && !location.starts_with("//") {
            let url = format!(
                "{}://{}{location}",
                request.scheme.as_str(),
                request.authority
            );
            target::parse_url(&url, &self.rules).ok()?
        } else {
            target::parse_url(location, &self.rules).ok()?
        };
        (target.scheme == request.scheme && target.authority == request.authority)
            .then(|| self.key(&target))
    }
}

/// A cache key for `primary`, its hash (BLAKE3, truncated to 128 bits) computed once here:
/// Pingora would otherwise rehash it with Blake2b each time it is asked.
pub fn key(primary: String) -> CacheKey {
    let bin = primary_bin(&primary);
    let mut key = CacheKey::new(primary, "");
    key.set_primary_bin_override(bin);
    key
}

/// The hash of a primary key's text: where its object (or its first variant) is stored.
pub fn primary_bin(primary: &str) -> pingora_cache::key::HashBinary {
    let hash = blake3::hash(primary.as_bytes());
    let mut bin = [0u8; 16];
    bin.copy_from_slice(&hash.as_bytes()[..16]);
    bin
}

/// A cache key known only by its primary hash (32 hex characters), as invalidations travel in
/// the purge log: enough to find the URL's slots and marks, not its text.
pub fn key_of_hash(hex: &str) -> Option<CacheKey> {
    if hex.len() != 32 {
        return None;
    }
    let mut bin = [0u8; 16];
    for (i, byte) in bin.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut key = CacheKey::new("", "");
    key.set_primary_bin_override(bin);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheKeyConfig;
    use pingora_cache::key::CacheHashKey;

    fn builder() -> KeyBuilder {
        let cfg = CacheKeyConfig::default();
        KeyBuilder::new(QueryRules::new(cfg.sort_query, &cfg.drop_params))
    }

    #[test]
    fn queries_are_normalised_and_tracking_parameters_dropped() {
        let b = builder();
        assert_eq!(b.rules().query("b=2&a=1"), "a=1&b=2");
        assert_eq!(
            b.rules().query("utm_source=x&id=3&fbclid=y&utm_medium=z"),
            "id=3"
        );
        assert_eq!(b.rules().query("&&x=1&"), "x=1");
        assert_eq!(b.rules().query(""), "");
        assert_eq!(
            b.rules().query("a=2&b=1&a=1"),
            "a=2&a=1&b=1",
            "stable by name"
        );
        // `;` is not a separator: the whole `utm_x=1;id=5` is one dropped parameter, so `id=5`
        // is dropped from the key and from what the origin receives alike.
        assert_eq!(b.rules().query("utm_x=1;id=5&page=2"), "page=2");
    }

    #[test]
    fn unsorted_when_configured() {
        let b = KeyBuilder::new(QueryRules::new(false, &[]));
        assert_eq!(b.rules().query("b=2&a=1&utm_x=1"), "b=2&a=1&utm_x=1");
    }

    #[test]
    fn same_origin_targets_only() {
        let b = builder();
        let req = target::parse_url("http://shop.test/items", b.rules()).expect("request");
        let own = b.key(&target::parse_url("http://shop.test/items/7", b.rules()).expect("own"));
        let rel = b.same_origin_key(&req, "/items/7").expect("absolute path");
        assert_eq!(rel.primary_bin(), own.primary_bin());
        let abs = b
            .same_origin_key(&req, "http://SHOP.test:80/items/7")
            .expect("absolute");
        assert_eq!(abs.primary_bin(), own.primary_bin());
        let by_hash = key_of_hash(&crate::storage::l2::hex(&own.primary_bin())).expect("hex");
        assert_eq!(by_hash.primary_bin(), own.primary_bin());
        assert!(key_of_hash("xyz").is_none() && key_of_hash(&"g".repeat(32)).is_none());
        for other in [
            "http://evil.test/items/7",
            "https://shop.test/items/7",
            "//evil.test/items/7",
            "items/7",
            "not a url",
        ] {
            assert!(b.same_origin_key(&req, other).is_none(), "{other}");
        }
    }
}
