//! The purge filter: everything this node knows has been purged, checked on every cache hit
//! (L1 or L2) against the time the object was stored. URL tombstones, tag epochs, prefix bans
//! and an everything-epoch each hold the latest hard and soft purge time; an object stored at or
//! before a hard mark is gone, at or before a soft mark it is stale.
//!
//! Marks expire once no object stored before them can still be in a tier (the longest object
//! lifetime), so the filter does not grow without bound. Two node-local states sit on top: a
//! gap in the purge log makes every object stored before it revalidate, and so does a node that
//! has not synced with the log for `purge.max_lag`.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pingora_cache::key::HashBinary;

use crate::storage::hit_filter::{HitFilter, HitVerdict, StoredObject};

/// Latest hard and soft purge times (µs since the epoch; 0 = none) and when they stop mattering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Marks {
    hard: u64,
    soft: u64,
    expires: u64,
}

impl Marks {
    fn raise(&mut self, at: u64, soft: bool, expires: u64) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = (*slot).max(at);
        self.expires = self.expires.max(expires);
    }
}

/// One purge, as the filter records it.
#[derive(Clone, Debug, Default)]
pub struct Marking<'a> {
    pub at_us: u64,
    pub soft: bool,
    /// Primary-key hashes of purged URLs (every variant shares its URL's primary key).
    pub urls: &'a [HashBinary],
    /// Prefixes of the primary key text (`http://host/path…`).
    pub prefixes: &'a [String],
    pub tags: &'a [String],
    pub all: bool,
    /// How long the marks matter, when less than the longest object life.
    pub keep_us: Option<u64>,
}

#[derive(Default)]
struct Marked {
    urls: HashMap<HashBinary, Marks>,
    tags: HashMap<String, Marks>,
    prefixes: Vec<(String, Marks)>,
    all: Marks,
}

impl Marked {
    fn is_empty(&self) -> bool {
        self.urls.is_empty()
            && self.tags.is_empty()
            && self.prefixes.is_empty()
            && self.all == Marks::default()
    }
}

pub struct Filter {
    marked: RwLock<Marked>,
    /// Nothing marked and in sync: the hit path skips the lock.
    idle: AtomicBool,
    /// Objects stored at or before this (µs) revalidate: set when the log had a gap.
    revalidate_before: AtomicU64,
    /// When this node last caught up with the region's log (µs).
    synced_at: AtomicU64,
    max_lag_us: u64,
    /// Clock allowance between nodes: an object stored up to this long after a purge was
    /// accepted (by another node's clock) is still treated as purged.
    skew_us: u64,
    /// How long a mark is kept: the longest an object stored before it can live in a tier.
    keep_us: u64,
}

/// Microseconds since the epoch: fine enough that a refill right after a purge (a whole
/// origin exchange later) is never taken for an object from before it.
pub fn us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub fn now_us() -> u64 {
    us(SystemTime::now())
}

impl Filter {
    pub fn new(max_lag: Duration, skew: Duration, keep: Duration) -> Self {
        let as_us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self {
            marked: RwLock::new(Marked::default()),
            idle: AtomicBool::new(true),
            revalidate_before: AtomicU64::new(0),
            synced_at: AtomicU64::new(now_us()),
            max_lag_us: as_us(max_lag),
            skew_us: as_us(skew),
            keep_us: as_us(keep),
        }
    }

    /// Records a purge.
    pub fn apply(&self, p: &Marking<'_>) {
        let keep = p.keep_us.map_or(self.keep_us, |k| k.min(self.keep_us));
        let expires = p.at_us.saturating_add(keep);
        let mut m = self.marked.write();
        for url in p.urls {
            m.urls
                .entry(*url)
                .or_default()
                .raise(p.at_us, p.soft, expires);
        }
        for tag in p.tags {
            m.tags
                .entry(tag.clone())
                .or_default()
                .raise(p.at_us, p.soft, expires);
        }
        for prefix in p.prefixes {
            match m.prefixes.iter_mut().find(|(q, _)| q == prefix) {
                Some((_, marks)) => marks.raise(p.at_us, p.soft, expires),
                None => {
                    let mut marks = Marks::default();
                    marks.raise(p.at_us, p.soft, expires);
                    m.prefixes.push((prefix.clone(), marks));
                }
            }
        }
        if p.all {
            m.all.raise(p.at_us, p.soft, expires);
        }
        self.idle.store(false, Ordering::Release);
    }

    /// Drops marks no stored object can predate any more. Returns how many remain.
    pub fn expire(&self, now_us: u64) -> usize {
        let mut m = self.marked.write();
        m.urls.retain(|_, k| k.expires > now_us);
        m.tags.retain(|_, k| k.expires > now_us);
        m.prefixes.retain(|(_, k)| k.expires > now_us);
        if m.all.expires <= now_us {
            m.all = Marks::default();
        }
        let left = m.urls.len() + m.tags.len() + m.prefixes.len() + usize::from(m.all.expires > 0);
        let before = self.revalidate_before.load(Ordering::Acquire);
        if before > 0 && before.saturating_add(self.keep_us) <= now_us {
            // Nothing stored before the gap can still be in a tier.
            let _ = self.revalidate_before.compare_exchange(
                before,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        let keep_revalidating = self.revalidate_before.load(Ordering::Acquire) > 0;
        self.idle
            .store(m.is_empty() && !keep_revalidating, Ordering::Release);
        left
    }

    /// The log had a gap: whatever was stored until now must be revalidated before use.
    pub fn revalidate_all_before(&self, at_us: u64) {
        self.revalidate_before.fetch_max(at_us, Ordering::AcqRel);
        self.idle.store(false, Ordering::Release);
    }

    pub fn mark_synced(&self, at_us: u64) {
        self.synced_at.fetch_max(at_us, Ordering::AcqRel);
    }

    /// How far behind the region's log this node may be (ms since it last caught up).
    pub fn lag_us(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.synced_at.load(Ordering::Acquire))
    }

    pub fn in_sync(&self, now_us: u64) -> bool {
        self.lag_us(now_us) <= self.max_lag_us
    }

    /// What a hit on `o` may do at `now_us`.
    pub fn check(&self, o: &StoredObject<'_>, now_us: u64) -> HitVerdict {
        if !self.in_sync(now_us) {
            return HitVerdict::Revalidate;
        }
        if self.idle.load(Ordering::Acquire) {
            return HitVerdict::Serve;
        }
        let stored = us(o.stored);
        let m = self.marked.read();
        let mut hard = m.all.hard;
        let mut soft = m.all.soft;
        let mut take = |k: &Marks| {
            hard = hard.max(k.hard);
            soft = soft.max(k.soft);
        };
        if let Some(k) = m.urls.get(o.primary) {
            take(k);
        }
        if !m.tags.is_empty() {
            for tag in o.tags {
                if let Some(k) = m.tags.get(tag) {
                    take(k);
                }
            }
        }
        for (prefix, k) in &m.prefixes {
            if o.primary_text.starts_with(prefix.as_str()) {
                take(k);
            }
        }
        drop(m);
        let purged_by = |mark: u64| mark > 0 && stored <= mark.saturating_add(self.skew_us);
        if purged_by(hard) {
            HitVerdict::Gone
        } else if purged_by(self.revalidate_before.load(Ordering::Acquire)) {
            HitVerdict::Revalidate
        } else if purged_by(soft) {
            HitVerdict::Stale
        } else {
            HitVerdict::Serve
        }
    }
}

impl HitFilter for Filter {
    fn check(&self, object: &StoredObject<'_>, now: SystemTime) -> HitVerdict {
        Filter::check(self, object, us(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Later than any clock these tests run under, so "synced at" marks win over real time.
    const T0: u64 = 4_000_000_000_000_000;

    fn filter() -> Filter {
        let f = Filter::new(
            Duration::from_secs(2),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        f.mark_synced(T0 + 10_000_000);
        f
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(ms)
    }

    fn object<'a>(
        primary: &'a HashBinary,
        text: &'a str,
        tags: &'a [String],
        stored: u64,
    ) -> StoredObject<'a> {
        StoredObject {
            primary,
            primary_text: text,
            tags,
            stored: at(stored),
        }
    }

    #[test]
    fn each_kind_of_purge_hits_only_what_was_stored_before_it() {
        let f = filter();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let tags = vec!["front".to_owned(), "image-4".to_owned()];
        let now = T0 + 5_000;
        let seen = |key: &HashBinary, text: &str, tags: &[String], stored: u64| {
            f.check(&object(key, text, tags, stored), now)
        };
        assert_eq!(seen(&a, "http://h/a", &tags, T0), HitVerdict::Serve);

        f.apply(&Marking {
            at_us: T0 + 100,
            urls: &[a],
            ..Marking::default()
        });
        assert_eq!(seen(&a, "http://h/a", &[], T0), HitVerdict::Gone);
        assert_eq!(
            seen(&a, "http://h/a", &[], T0 + 101),
            HitVerdict::Serve,
            "refilled after"
        );
        assert_eq!(
            seen(&b, "http://h/b", &[], T0),
            HitVerdict::Serve,
            "other URL"
        );

        let purged_tag = ["image-4".to_owned()];
        f.apply(&Marking {
            at_us: T0 + 200,
            soft: true,
            tags: &purged_tag,
            ..Marking::default()
        });
        assert_eq!(seen(&b, "http://h/b", &tags, T0 + 150), HitVerdict::Stale);
        assert_eq!(
            seen(&b, "http://h/b", &[], T0 + 150),
            HitVerdict::Serve,
            "untagged"
        );

        let prefix = ["http://h/img/".to_owned()];
        f.apply(&Marking {
            at_us: T0 + 300,
            prefixes: &prefix,
            ..Marking::default()
        });
        assert_eq!(seen(&b, "http://h/img/1", &[], T0 + 250), HitVerdict::Gone);
        assert_eq!(seen(&b, "http://h/imgs", &[], T0 + 250), HitVerdict::Serve);

        f.apply(&Marking {
            at_us: T0 + 400,
            soft: true,
            all: true,
            ..Marking::default()
        });
        assert_eq!(seen(&b, "http://x/", &[], T0 + 350), HitVerdict::Stale);
        assert_eq!(seen(&b, "http://x/", &[], T0 + 450), HitVerdict::Serve);
        // Hard wins over soft when both apply.
        assert_eq!(seen(&a, "http://h/a", &[], T0 + 50), HitVerdict::Gone);
    }

    #[test]
    fn marks_expire_after_the_longest_object_life() {
        let f = filter();
        let tag = ["t".to_owned()];
        f.apply(&Marking {
            at_us: T0,
            tags: &tag,
            ..Marking::default()
        });
        assert_eq!(f.expire(T0 + 3_599_999_999), 1);
        assert_eq!(f.expire(T0 + 3_600_000_000), 0);
        let key = [0u8; 16];
        f.mark_synced(T0 + 3_600_000_001);
        assert_eq!(
            f.check(&object(&key, "http://h/", &tag, T0 - 1), T0 + 3_600_000_001),
            HitVerdict::Serve
        );
    }

    #[test]
    fn a_gap_or_a_lagging_node_revalidates_everything_stored_before() {
        let f = filter();
        let key = [0u8; 16];
        f.revalidate_all_before(T0 + 1_000);
        assert_eq!(
            f.check(&object(&key, "http://h/", &[], T0), T0 + 2_000),
            HitVerdict::Revalidate
        );
        assert_eq!(
            f.check(&object(&key, "http://h/", &[], T0 + 1_001), T0 + 2_000),
            HitVerdict::Serve
        );

        let g = filter();
        let synced = T0 + 10_000_000;
        assert_eq!(
            g.check(&object(&key, "http://h/", &[], synced), synced + 2_000_000),
            HitVerdict::Serve
        );
        assert_eq!(
            g.check(&object(&key, "http://h/", &[], synced), synced + 2_000_001),
            HitVerdict::Revalidate
        );
    }

    #[test]
    fn clock_skew_allowance_widens_a_purge() {
        let f = Filter::new(
            Duration::from_secs(2),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        f.mark_synced(T0);
        let key = [3u8; 16];
        f.apply(&Marking {
            at_us: T0,
            urls: &[key],
            ..Marking::default()
        });
        assert_eq!(
            f.check(&object(&key, "u", &[], T0 + 100_000), T0 + 500_000),
            HitVerdict::Gone
        );
        assert_eq!(
            f.check(&object(&key, "u", &[], T0 + 100_001), T0 + 500_000),
            HitVerdict::Serve
        );
    }
}
