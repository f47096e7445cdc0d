//! Secondary cache keys (RFC 9111 §4.1): a response with `Vary` is stored per combination of the
//! listed request fields, after normalisation that cannot change their meaning, and with a cap
//! on variants per URL so a header with endless values cannot flood the cache.
//!
//! Normalisation: field lines are combined and surrounding whitespace dropped; for the content
//! negotiation fields (`Accept*`), which are case-insensitive lists, members are lower-cased,
//! stripped of spaces, those with `q=0` dropped, and sorted. Two requests with the same
//! normalised values would be answered the same way by any origin, so they share a variant.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use pingora_cache::key::{HashBinary, hash_key};

/// Field names listed in `Vary` (lower-case, sorted, deduplicated); empty if none.
pub fn vary_fields(response: &HeaderMap) -> Vec<String> {
    let mut fields: Vec<String> = response
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty())
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// The variance hash of `request` for a stored response with these headers, or `None` when the
/// response does not vary.
pub fn variance(response: &HeaderMap, request: &HeaderMap) -> Option<HashBinary> {
    let fields = vary_fields(response);
    if fields.is_empty() {
        return None;
    }
    let mut canonical = Vec::new();
    for field in &fields {
        canonical.extend_from_slice(field.as_bytes());
        match normalized(request, field) {
            // Absent only matches absent (§4.1): a distinct marker, not an empty value.
            None => canonical.push(0xFF),
            Some(value) => {
                canonical.push(b':');
                canonical.extend_from_slice(value.as_bytes());
            }
        }
        canonical.push(0);
    }
    Some(hash_key(&canonical))
}

fn normalized(request: &HeaderMap, field: &str) -> Option<String> {
    let lines: Vec<&str> = request
        .get_all(field)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let joined = lines.join(",");
    if field.starts_with("accept") {
        let mut members: Vec<String> = joined
            .split(',')
            .map(|m| {
                m.split_whitespace()
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .filter(|m| !m.is_empty() && !refuses(m))
            .collect();
        members.sort();
        members.dedup();
        Some(members.join(","))
    } else {
        Some(joined.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// `gzip;q=0` says "not this one": the same as not listing it.
fn refuses(member: &str) -> bool {
    member.split(';').skip(1).any(|p| {
        p.strip_prefix("q=")
            .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0))
    })
}

/// Remembers which variants each URL has, to cap them. Entries are forgotten after a while
/// without new variants, which is when the variants themselves have likely been evicted.
pub struct VariantRegistry {
    max: usize,
    known: moka::sync::Cache<HashBinary, Arc<Mutex<Vec<HashBinary>>>>,
}

impl VariantRegistry {
    pub fn new(max_variants: usize, forget_after: Duration) -> Self {
        Self {
            max: max_variants,
            known: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(forget_after)
                .build(),
        }
    }

    /// True if `variance` may be stored for `primary`: already known, or under the cap.
    pub fn admit(&self, primary: HashBinary, variance: HashBinary) -> bool {
        let entry = self.known.get_with(primary, Arc::default);
        let Ok(mut variants) = entry.lock() else {
            return false;
        };
        if variants.contains(&variance) {
            return true;
        }
        if variants.len() >= self.max {
            return false;
        }
        variants.push(variance);
        true
    }

    /// Every variance remembered for `primary` (for invalidation).
    pub fn variants(&self, primary: &HashBinary) -> Vec<HashBinary> {
        self.known
            .get(primary)
            .and_then(|v| v.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    pub fn forget(&self, primary: &HashBinary) {
        self.known.invalidate(primary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        m
    }

    #[test]
    fn no_vary_no_variance() {
        assert_eq!(
            variance(&HeaderMap::new(), &h(&[("accept-encoding", "gzip")])),
            None
        );
        assert_eq!(
            vary_fields(&h(&[("vary", "Accept-Encoding, accept-encoding ,Cookie")])),
            ["accept-encoding", "cookie"]
        );
    }

    #[test]
    fn equivalent_requests_share_a_variant() {
        let resp = h(&[("vary", "Accept-Encoding")]);
        let a = variance(&resp, &h(&[("accept-encoding", "gzip, br")]));
        for same in [
            "br,gzip",
            "BR ,  GZIP",
            "gzip, br, identity;q=0",
            "br;q=1.0",
        ] {
            let other = variance(&resp, &h(&[("accept-encoding", same)]));
            if same == "br;q=1.0" {
                assert_ne!(
                    a, other,
                    "a different set of codings is a different variant"
                );
            } else {
                assert_eq!(a, other, "{same}");
            }
        }
        let split = variance(
            &resp,
            &h(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]),
        );
        assert_eq!(a, split, "field lines combine");
        assert_ne!(a, variance(&resp, &h(&[("accept-encoding", "gzip")])));
    }

    #[test]
    fn absent_is_not_empty_and_other_fields_keep_case() {
        let resp = h(&[("vary", "X-Mode")]);
        let absent = variance(&resp, &HeaderMap::new());
        let empty = variance(&resp, &h(&[("x-mode", "")]));
        assert_ne!(absent, empty);
        assert_eq!(
            variance(&resp, &h(&[("x-mode", "  Dark   mode ")])),
            variance(&resp, &h(&[("x-mode", "Dark mode")]))
        );
        assert_ne!(
            variance(&resp, &h(&[("x-mode", "Dark")])),
            variance(&resp, &h(&[("x-mode", "dark")]))
        );
    }

    #[test]
    fn the_registry_caps_variants_per_url() {
        let r = VariantRegistry::new(2, Duration::from_secs(60));
        let (p, q) = (hash_key("p"), hash_key("q"));
        assert!(r.admit(p, hash_key("1")) && r.admit(p, hash_key("2")));
        assert!(r.admit(p, hash_key("1")), "known variants stay admitted");
        assert!(!r.admit(p, hash_key("3")), "a third is refused");
        assert!(r.admit(q, hash_key("3")), "per URL");
        assert_eq!(r.variants(&p).len(), 2);
        r.forget(&p);
        assert!(r.admit(p, hash_key("3")));
    }
}
