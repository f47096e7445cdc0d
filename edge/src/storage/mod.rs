//! `TieredStorage`: Pingora's [`Storage`] over our cache tiers: the in-process L1
//! ([`l1::MokaTier`]) and, when the region has a memcached pool, the shared L2 ([`l2::L2`]),
//! behind one lookup, fill and update path (docs/architecture.md §3). Every hit passes a
//! [`hit_filter::HitFilter`] first; storage itself knows nothing of purges.
//!
//! Freshness lives only in the [`CacheMeta`] (fresh-until, epoch, stale windows); a tier's own
//! expiry just reclaims memory once an object can no longer be used even to revalidate.

pub mod body;
pub mod breaker;
pub mod codec;
#[cfg(test)]
pub mod fake;
pub mod hit_filter;
pub mod l1;
pub mod l2;
#[cfg(test)]
mod l2_tests;
pub mod router;
pub mod shared;
pub mod variants;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, MissFinishType, PurgeOutcome, PurgeTarget, PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, HitHandler, MissHandler, Storage};
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::ResponseHeader;
use prometheus::IntCounter;

use crate::metrics::{Lookup, Metrics};
use body::{Bodies, Body};
use hit_filter::{HitFilter, HitVerdict, StoredObject};
use l1::{L1Entry, MokaTier};
use l2::L2;
use variants::VariantRegistry;

/// Which tier answered a lookup, for `Cache-Status: …; detail=l1`; read off the hit handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
        }
    }
}

/// The parts of a [`CacheMeta`] we keep (it is not `Clone`; rebuilding one per hit costs a
/// header clone, less than deserializing).
#[derive(Clone, Debug)]
pub struct StoredMeta {
    pub fresh_until: SystemTime,
    /// When the object was last stored or successfully revalidated: the time the purge filter
    /// compares with its marks. Pingora keeps the first `created` on a 304 refresh and moves
    /// `updated`; ours is `updated`, so a revalidated object is as new as a refilled one (a gap
    /// or a soft purge costs one revalidation, not one per request for as long as the mark lives).
    pub stored: SystemTime,
    /// Reference point for age: `response_time − corrected_initial_age`.
    pub epoch: SystemTime,
    pub stale_while_revalidate: u32,
    pub stale_if_error: u32,
    pub variance: Option<HashBinary>,
    pub header: ResponseHeader,
    /// Surrogate keys (`Surrogate-Key`, `Cache-Tag`), parsed once for the purge filter.
    pub tags: Arc<[String]>,
}

impl StoredMeta {
    pub fn from_meta(meta: &CacheMeta) -> Self {
        Self::with_tags(meta, tags(meta.headers()).into())
    }

    /// [`StoredMeta::from_meta`] with the surrogate keys already known.
    pub fn with_tags(meta: &CacheMeta, tags: Arc<[String]>) -> Self {
        Self {
            fresh_until: meta.fresh_until(),
            stored: meta.updated(),
            epoch: meta.epoch(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            tags,
            header: meta.response_header_copy(),
        }
    }

    pub fn to_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.stored,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        );
        meta.set_epoch_override(self.epoch);
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        meta
    }

    /// Until when the object is still of use: fresh, servable stale, or worth revalidating.
    pub fn retain_until(&self, grace: Duration) -> SystemTime {
        let stale = u64::from(self.stale_while_revalidate.max(self.stale_if_error));
        self.fresh_until + Duration::from_secs(stale).max(grace)
    }
}

/// The object's surrogate keys, kept with it in both tiers for the purge filter: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated).
pub fn tags(headers: &http::HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for (field, sep) in [("surrogate-key", ' '), ("cache-tag", ',')] {
        for value in headers
            .get_all(field)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            tags.extend(
                value
                    .split(sep)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

/// What dropping a URL from this node's L1 removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub count: usize,
    /// Until when the longest-lived of them could still have been used.
    pub until: Option<SystemTime>,
}

/// What the shared tier held of a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    No,
    /// Copies usable until then.
    Until(SystemTime),
    /// The shared tier could not say (unreachable, late, unreadable bytes).
    Unknown,
}

/// Settings of the tiers.
#[derive(Clone, Copy, Debug)]
pub struct TierConfig {
    pub l1_capacity_bytes: u64,
    /// Largest object the L1 holds (larger ones may still go to the L2).
    pub l1_max_object: usize,
    /// Kept this long past every stale window, to revalidate with a 304.
    pub grace: Duration,
    /// No object outlives this in a tier, whatever its headers say.
    pub max_retain: Duration,
    /// Smallest L1 body kept in a memory file (see [`body`]); 0: none.
    pub sendfile_min: usize,
    /// Most memory files at once.
    pub max_body_files: usize,
}

pub struct TieredStorage {
    l1: MokaTier,
    /// Where L1 bodies are kept.
    bodies: Bodies,
    /// The region's shared tier, when configured.
    l2: Option<Arc<L2>>,
    variants: VariantRegistry,
    config: TierConfig,
    /// `outpost_l1_lookups_total{result=…}`, resolved once.
    l1_hits: IntCounter,
    l1_misses: IntCounter,
    /// What has been purged; every hit passes it.
    filter: Arc<dyn HitFilter>,
    /// `outpost_purge_filtered_total{verdict=…}`.
    filtered: [IntCounter; 3],
}

impl TieredStorage {
    pub fn new(
        config: TierConfig,
        max_variants: usize,
        metrics: Arc<Metrics>,
        l2: Option<Arc<L2>>,
        filter: Arc<dyn HitFilter>,
    ) -> Self {
        Self {
            l2,
            filter,
            filtered: [HitVerdict::Stale, HitVerdict::Revalidate, HitVerdict::Gone]
                .map(|v| metrics.purge_filtered.with_label_values(&[v.label()])),
            l1_hits: metrics.l1_lookups.with_label_values(&[Lookup::Hit.label()]),
            l1_misses: metrics
                .l1_lookups
                .with_label_values(&[Lookup::Miss.label()]),
            l1: MokaTier::new(config.l1_capacity_bytes, Arc::clone(&metrics)),
            bodies: Bodies::new(config.sendfile_min, config.max_body_files),
            variants: VariantRegistry::new(
                max_variants,
                config.max_retain.min(Duration::from_secs(24 * 3600)),
            ),
            config,
        }
    }

    /// Built once and shared by every request for the life of the process, as Pingora needs.
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }

    pub fn variants(&self) -> &VariantRegistry {
        &self.variants
    }

    pub fn l1(&self) -> &MokaTier {
        &self.l1
    }

    /// The L1 object stored in `slot` (the primary slot, or a variant's) of the URL whose key is
    /// `primary` / `primary_text`, if the purge filter lets it be served as it is and it is
    /// fresh at `now`: what a hit may answer with no further lookup. Anything else (absent,
    /// stale, purged) is left for the full lookup, which counts it.
    pub fn fresh_in_l1(
        &self,
        slot: &HashBinary,
        primary: &HashBinary,
        primary_text: &str,
        now: SystemTime,
    ) -> Option<Arc<L1Entry>> {
        let entry = self.l1.get(slot)?;
        // Pingora's own test (`CacheMeta::is_fresh`): fresh up to and including `fresh_until`.
        if entry.meta.fresh_until < now {
            return None;
        }
        (self.verdict(primary, primary_text, &entry.meta, now) == HitVerdict::Serve)
            .then_some(entry)
    }

    /// The purge filter's verdict on an object of the URL `primary` / `primary_text` (whichever
    /// slot it is in: URL purges are marked by the primary key).
    fn verdict(
        &self,
        primary: &HashBinary,
        primary_text: &str,
        meta: &StoredMeta,
        now: SystemTime,
    ) -> HitVerdict {
        let object = StoredObject {
            primary,
            primary_text,
            tags: &meta.tags,
            stored: meta.stored,
        };
        self.filter.check(&object, now)
    }

    /// Counts an L1 hit served from [`TieredStorage::fresh_in_l1`]'s answer.
    pub fn count_l1_hit(&self) {
        self.l1_hits.inc();
    }

    /// Largest object any tier stores: the per-request limit to give Pingora.
    pub fn max_object(&self) -> usize {
        let l2 = self.l2.as_ref().map_or(0, |l2| l2.max_object());
        self.config.l1_max_object.max(l2)
    }

    /// How long a tier should keep `meta`'s object.
    fn retain_for(&self, meta: &StoredMeta) -> Duration {
        let until = meta
            .retain_until(self.config.grace)
            .min(SystemTime::now() + self.config.max_retain);
        until.duration_since(SystemTime::now()).unwrap_or_default()
    }

    /// An L2 object into L1, when it fits.
    fn promote(&self, key: HashBinary, found: &l2::Found) {
        if found.body.len() <= self.config.l1_max_object {
            self.insert(key, found.meta.clone(), found.body.clone());
        }
    }

    /// L1 bodies kept in memory files now, and their bytes.
    pub fn body_files(&self) -> (usize, usize) {
        self.bodies.files()
    }

    fn hit(meta: &StoredMeta, body: &Body, tier: Tier) -> (CacheMeta, HitHandler) {
        let hit = BodyHit {
            body: body.clone(),
            next: Some(0..body.len()),
            tier,
        };
        (meta.to_meta(), Box::new(hit))
    }

    /// The slots of every variant of the URL behind `key` this node knows: the primary slot and
    /// the secondary ones.
    fn slots(&self, key: &CacheKey) -> Vec<HashBinary> {
        let primary = key.primary_bin();
        let mut slots = vec![primary];
        for variance in self.variants.variants(&primary) {
            let mut variant = key.clone();
            variant.set_variance_key(variance);
            slots.push(variant.combined_bin());
        }
        slots
    }

    /// Removes every variant of the URL behind `key` from this node's L1 only (another node
    /// deletes it from the shared tier).
    pub fn forget_l1(&self, key: &CacheKey) -> Removed {
        let mut removed = Removed::default();
        for slot in self.slots(key) {
            if let Some(entry) = self.l1.take(&slot) {
                removed.count += 1;
                removed.until = removed.until.max(Some(entry.retain_until));
            }
        }
        removed
    }

    /// Deletes every variant of the URL behind `key` this node knows from the shared tier, after
    /// reading what it held there. Then forgets the variants.
    pub async fn take_l2(&self, key: &CacheKey) -> Held {
        let slots = self.slots(key);
        self.variants.forget(&key.primary_bin());
        let Some(l2) = &self.l2 else {
            return Held::No;
        };
        let found = futures::future::join_all(slots.iter().map(|slot| l2.take(slot))).await;
        found.into_iter().fold(Held::No, |held, f| match (held, f) {
            (Held::Unknown, _) | (_, Err(())) => Held::Unknown,
            (held, Ok(None)) => held,
            (Held::No, Ok(Some(meta))) => Held::Until(meta.retain_until(self.config.grace)),
            (Held::Until(t), Ok(Some(meta))) => {
                Held::Until(t.max(meta.retain_until(self.config.grace)))
            }
        })
    }

    /// What the purge filter makes of a stored object, and the meta to serve it with.
    fn judge(
        &self,
        key: &CacheKey,
        meta: &StoredMeta,
        now: SystemTime,
    ) -> (HitVerdict, Option<StoredMeta>) {
        let verdict = self.verdict(
            &key.primary_bin(),
            key.primary_key_str().unwrap_or(""),
            meta,
            now,
        );
        let stale_now = |keep_windows: bool| {
            let mut m = meta.clone();
            m.fresh_until = m
                .fresh_until
                .min(now.checked_sub(Duration::from_millis(1)).unwrap_or(now));
            if !keep_windows {
                m.stale_while_revalidate = 0;
                m.stale_if_error = 0;
            }
            m
        };
        match verdict {
            HitVerdict::Serve => (verdict, None),
            HitVerdict::Stale => {
                self.filtered[0].inc();
                (verdict, Some(stale_now(true)))
            }
            HitVerdict::Revalidate => {
                self.filtered[1].inc();
                (verdict, Some(stale_now(false)))
            }
            HitVerdict::Gone => {
                self.filtered[2].inc();
                (verdict, None)
            }
        }
    }

    /// An L2 read, passed through the purge filter. What the filter does not make a miss is
    /// promoted as stored: the filter judges the L1 copy again on every hit, and a 304 that
    /// revalidates it finds it there to refresh (so the next request is an L1 hit, not another
    /// L2 read racing the manifest rewrite).
    async fn read_l2(
        &self,
        l2: &L2,
        key: &CacheKey,
        bin: HashBinary,
        now: SystemTime,
    ) -> Option<(CacheMeta, HitHandler)> {
        let found = l2.read(&bin).await?;
        let (verdict, restaled) = self.judge(key, &found.meta, now);
        if verdict == HitVerdict::Gone {
            return None;
        }
        self.promote(bin, &found);
        let meta = restaled.as_ref().unwrap_or(&found.meta);
        Some(Self::hit(meta, &Body::Heap(found.body), Tier::L2))
    }

    /// Removes every stored variant of the URL behind `key` (its primary slot and every
    /// secondary one we know of). Returns how many objects were removed.
    pub fn invalidate(&self, key: &CacheKey) -> usize {
        let mut removed = 0;
        for slot in self.slots(key) {
            removed += usize::from(self.l1.remove(&slot));
            if let Some(l2) = &self.l2 {
                l2.delete_behind(slot);
            }
        }
        self.variants.forget(&key.primary_bin());
        removed
    }

    fn insert(&self, key: HashBinary, meta: StoredMeta, body: Bytes) {
        self.insert_body(key, meta, self.bodies.keep(body));
    }

    fn insert_body(&self, key: HashBinary, meta: StoredMeta, body: Body) {
        let retain_until = meta
            .retain_until(self.config.grace)
            .min(SystemTime::now() + self.config.max_retain);
        self.l1.insert(
            key,
            L1Entry {
                meta,
                body,
                retain_until,
                prepared: std::sync::OnceLock::new(),
            },
        );
    }
}

#[async_trait]
impl Storage for TieredStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let now = SystemTime::now();
        let bin = key.combined_bin();
        let mut in_l1 = None;
        if let Some(entry) = self.l1.get(&bin) {
            match self.judge(key, &entry.meta, now) {
                // Purged here; another node may have refilled the shared tier since.
                (HitVerdict::Gone, _) => {
                    self.l1.remove(&bin);
                }
                (_, restaled) => in_l1 = Some((entry, restaled)),
            }
        }
        let Some((entry, restaled)) = in_l1 else {
            self.l1_misses.inc();
            let Some(l2) = &self.l2 else { return Ok(None) };
            return Ok(self.read_l2(l2, key, bin, now).await);
        };
        self.l1_hits.inc();
        let meta = restaled.as_ref().unwrap_or(&entry.meta);
        // Stale here (by age or by the purge filter): another node may have refreshed it in the
        // shared tier already. Compared with what we would serve, so a copy revalidated within
        // the same second as ours (same `Date`, same `fresh_until`) still wins over a purge mark.
        if let Some(l2) = &self.l2
            && meta.fresh_until < now
            && let Some(found) = l2.read(&bin).await
            && self.judge(key, &found.meta, now).0 == HitVerdict::Serve
            && found.meta.fresh_until > meta.fresh_until
        {
            self.promote(bin, &found);
            return Ok(Some(Self::hit(
                &found.meta,
                &Body::Heap(found.body),
                Tier::L2,
            )));
        }
        Ok(Some(Self::hit(meta, &entry.body, Tier::L1)))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Fill {
            storage: self,
            key: key.combined_bin(),
            meta: StoredMeta::from_meta(meta),
            chunks: Vec::new(),
            size: 0,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key().combined_bin();
        let removed = self.l1.remove(&key);
        if let Some(l2) = &self.l2 {
            l2.delete_behind(key);
        }
        Ok(if removed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let key = key.combined_bin();
        let meta = StoredMeta::from_meta(meta);
        let in_l1 = self.l1.get(&key);
        if let Some(old) = &in_l1 {
            self.insert_body(key, meta.clone(), old.body.clone());
        }
        if let Some(l2) = &self.l2 {
            l2.refresh_meta(key, &meta, self.retain_for(&meta)).await;
        }
        Ok(in_l1.is_some())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Most of a file body read into memory at once by a hit the kernel does not send.
const FILE_READ: usize = 256 * 1024;

/// A hit on a whole object held in memory: zero-copy, seekable for ranges.
struct BodyHit {
    body: Body,
    /// The part still to be read; `None` once read.
    next: Option<std::ops::Range<usize>>,
    tier: Tier,
}

/// The tier a hit handler of ours reads from.
pub fn tier_of(hit: &(dyn HandleHit + Send + Sync)) -> Option<Tier> {
    hit.as_any().downcast_ref::<BodyHit>().map(|h| h.tier)
}

#[async_trait]
impl HandleHit for BodyHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let Some(range) = self.next.take().filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let end = match self.body {
            Body::Heap(_) => range.end,
            Body::File(_) => range.end.min(range.start + FILE_READ),
        };
        if end < range.end {
            self.next = Some(end..range.end);
        }
        self.body
            .read(range.start, end)
            .or_err(
                ErrorType::InternalError,
                "reading a stored body from its file",
            )
            .map(Some)
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let end = end.unwrap_or(self.body.len());
        if start > end || end > self.body.len() {
            return pingora_error::Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "seek {start}..{end} outside a {} byte body",
                    self.body.len()
                ),
            );
        }
        self.next = Some(start..end);
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A fill: the body is gathered as it streams to the client and stored whole at the end, so a
/// reader never sees half an object. Dropped without `finish`, it stores nothing.
struct Fill {
    storage: &'static TieredStorage,
    key: HashBinary,
    meta: StoredMeta,
    chunks: Vec<Bytes>,
    size: usize,
}

#[async_trait]
impl HandleMiss for Fill {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        self.size += data.len();
        if !data.is_empty() {
            self.chunks.push(data);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Fill {
            storage,
            key,
            mut meta,
            chunks,
            size,
        } = *self;
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(size);
                for chunk in &chunks {
                    joined.extend_from_slice(chunk);
                }
                joined.freeze()
            }
        };
        // The whole body is known now: hits get an exact Content-Length instead of chunking.
        meta.header.remove_header(&http::header::TRANSFER_ENCODING);
        meta.header
            .insert_header(http::header::CONTENT_LENGTH, body.len())
            .or_err(
                ErrorType::InternalError,
                "setting Content-Length on a stored object",
            )?;
        if meta.header.status == http::StatusCode::OK {
            // Whole objects in memory serve ranges; say so once here, not on every hit.
            meta.header
                .insert_header(http::header::ACCEPT_RANGES, crate::headers::ACCEPT_BYTES)
                .or_err(
                    ErrorType::InternalError,
                    "setting Accept-Ranges on a stored object",
                )?;
        }
        if let Some(l2) = &storage.l2 {
            // Spawned, bounded, droppable: the client never waits for the shared tier.
            l2.write_behind(key, &meta, body.clone(), storage.retain_for(&meta));
        }
        if body.len() <= storage.config.l1_max_object {
            storage.insert(key, meta, body);
        }
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::trace::Span;

    fn storage() -> &'static TieredStorage {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let config = TierConfig {
            l1_capacity_bytes: 16 << 20,
            l1_max_object: 1 << 20,
            grace: Duration::from_secs(60),
            max_retain: Duration::from_secs(3600),
            sendfile_min: 64 * 1024,
            max_body_files: 16,
        };
        TieredStorage::new(config, 4, metrics, None, Arc::new(hit_filter::ServeAll)).leak()
    }

    fn meta(status: u16) -> CacheMeta {
        let mut header = ResponseHeader::build(status, None).expect("header");
        header
            .insert_header("transfer-encoding", "chunked")
            .expect("te");
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    async fn fill(s: &'static TieredStorage, key: &CacheKey, status: u16, chunks: &[&[u8]]) {
        let span = Span::inactive().handle();
        let mut miss = s
            .get_miss_handler(key, &meta(status), &span)
            .await
            .expect("miss handler");
        for c in chunks {
            miss.write_body(Bytes::copy_from_slice(c), false)
                .await
                .expect("write");
        }
        miss.finish().await.expect("finish");
    }

    async fn read_all(hit: &mut HitHandler) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = hit.read_body().await.expect("read") {
            out.extend_from_slice(&b);
        }
        out
    }

    #[tokio::test]
    async fn a_fill_is_stored_whole_with_exact_framing() {
        let s = storage();
        let key = crate::cache_key::key("http://h/a".into());
        let span = Span::inactive().handle();
        assert!(s.lookup(&key, &span).await.expect("lookup").is_none());
        fill(s, &key, 200, &[b"hello ", b"world"]).await;
        let (meta, mut hit) = s
            .lookup(&key, &span)
            .await
            .expect("lookup")
            .expect("stored");
        assert_eq!(read_all(&mut hit).await, b"hello world");
        let h = meta.headers();
        assert_eq!(
            (
                h["content-length"].as_bytes(),
                h["accept-ranges"].as_bytes()
            ),
            (&b"11"[..], &b"bytes"[..])
        );
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(tier_of(hit.as_ref()), Some(Tier::L1));
        // Seeking serves a range of the same bytes.
        hit.seek(6, Some(11)).expect("seek");
        assert_eq!(read_all(&mut hit).await, b"world");
        assert!(hit.seek(5, Some(99)).is_err());
    }

    #[tokio::test]
    async fn a_dropped_fill_stores_nothing_and_invalidation_removes_variants() {
        let s = storage();
        let key = crate::cache_key::key("http://h/b".into());
        let span = Span::inactive().handle();
        let mut miss = s
            .get_miss_handler(&key, &meta(200), &span)
            .await
            .expect("miss handler");
        miss.write_body(Bytes::from_static(b"half"), false)
            .await
            .expect("write");
        drop(miss);
        assert!(
            s.lookup(&key, &span).await.expect("lookup").is_none(),
            "no half objects"
        );

        fill(s, &key, 404, &[b"gone"]).await;
        let (meta, _) = s
            .lookup(&key, &span)
            .await
            .expect("lookup")
            .expect("stored");
        assert!(
            meta.headers().get("accept-ranges").is_none(),
            "only whole 200s advertise ranges"
        );
        let mut variant = key.clone();
        let v = pingora_cache::key::hash_key("variant");
        variant.set_variance_key(v);
        s.variants().admit(key.primary_bin(), v);
        fill(s, &variant, 200, &[b"v"]).await;
        assert_eq!(s.invalidate(&key), 2);
        assert!(s.lookup(&key, &span).await.expect("lookup").is_none());
        assert!(s.lookup(&variant, &span).await.expect("lookup").is_none());
    }
}
