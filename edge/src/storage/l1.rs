//! The in-process tier: whole objects in a moka cache bounded by bytes (a weigher over body and
//! header sizes), each entry expiring when it is no longer of any use. Hits are zero-copy
//! (`Bytes` clones, or a memory file the kernel sends from: [`super::body`]), and moka's TinyLFU
//! admission keeps one-hit wonders from flushing the working set.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use moka::notification::RemovalCause;
use pingora_cache::key::HashBinary;

use super::StoredMeta;
use super::body::Body;
use crate::metrics::{Eviction, Metrics};

pub struct L1Entry {
    pub meta: StoredMeta,
    pub body: Body,
    /// When moka may drop the entry (see [`StoredMeta::retain_until`]).
    pub retain_until: SystemTime,
    /// What a reader derived from the entry once for all its hits (the hit path's serialised
    /// response heads): the entry never changes, a refresh replaces it.
    pub prepared: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl L1Entry {
    /// Bytes this entry costs: body, header fields, and a fixed overhead for the rest.
    fn weight(&self) -> u32 {
        let headers: usize = self
            .meta
            .header
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        u32::try_from(self.body.len() + headers + 256).unwrap_or(u32::MAX)
    }
}

struct UntilUseless;

impl moka::Expiry<HashBinary, Arc<L1Entry>> for UntilUseless {
    fn expire_after_create(
        &self,
        _: &HashBinary,
        v: &Arc<L1Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(
            v.retain_until
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }

    fn expire_after_update(
        &self,
        _: &HashBinary,
        v: &Arc<L1Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            v.retain_until
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
}

/// Keys are already uniform cryptographic hashes: hash them by taking their first bytes instead
/// of running SipHash over them on every lookup.
#[derive(Clone, Copy, Default)]
pub struct KeyHashBuilder;

#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of a fixed-size key adds nothing.
    }
}

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

pub struct MokaTier {
    cache: moka::sync::Cache<HashBinary, Arc<L1Entry>, KeyHashBuilder>,
}

impl MokaTier {
    pub fn new(capacity_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_, v: &Arc<L1Entry>| v.weight())
            .expire_after(UntilUseless)
            .eviction_listener(move |_, _, cause| {
                let cause = match cause {
                    RemovalCause::Size => Eviction::Size,
                    RemovalCause::Expired => Eviction::Expired,
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                metrics
                    .l1_evictions
                    .with_label_values(&[cause.label()])
                    .inc();
            })
            .build_with_hasher(KeyHashBuilder);
        Self { cache }
    }

    pub fn get(&self, key: &HashBinary) -> Option<Arc<L1Entry>> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: HashBinary, entry: L1Entry) {
        self.cache.insert(key, Arc::new(entry));
    }

    /// True if something was removed.
    pub fn remove(&self, key: &HashBinary) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Removes and returns the entry under `key`.
    pub fn take(&self, key: &HashBinary) -> Option<Arc<L1Entry>> {
        self.cache.remove(key)
    }

    /// Drops every entry (a hard purge of everything, or a gap in the purge log).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries and bytes held (after running moka's pending maintenance, so they are current).
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}
