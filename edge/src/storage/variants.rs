//! Which variants (`Vary` secondary keys) each URL has, to cap them per URL (so a header with
//! endless values cannot flood the cache) and to find every variant when the URL is invalidated.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pingora_cache::key::HashBinary;

/// URLs remembered at most (each with its few variant hashes).
const URLS: u64 = 1_000_000;

/// Remembers which variants each URL has. Entries are forgotten after a while without new
/// variants, which is when the variants themselves have likely been evicted.
pub struct VariantRegistry {
    max: usize,
    known: moka::sync::Cache<HashBinary, Arc<Mutex<Vec<HashBinary>>>>,
}

impl VariantRegistry {
    pub fn new(max_variants: usize, forget_after: Duration) -> Self {
        Self {
            max: max_variants,
            known: moka::sync::Cache::builder()
                .max_capacity(URLS)
                .time_to_idle(forget_after)
                .build(),
        }
    }

    /// True if `variance` may be stored for `primary`: already known, or under the cap.
    pub fn admit(&self, primary: HashBinary, variance: HashBinary) -> bool {
        let entry = self.known.get_with(primary, Arc::default);
        let mut variants = entry.lock();
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
            .map(|v| v.lock().clone())
            .unwrap_or_default()
    }

    pub fn forget(&self, primary: &HashBinary) {
        self.known.invalidate(primary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::hash_key;

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
