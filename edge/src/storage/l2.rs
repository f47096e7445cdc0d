//! The shared tier's layout over any [`SharedTier`]: one manifest per object, the body inline
//! when small or in chunks under a per-write id, chunks written first and the manifest last, so
//! a reader never sees half an object or a mix of two writes. Reads fetch and verify every
//! chunk before answering: a missing or corrupt chunk is a miss, never a truncated body.
//!
//! Writes happen behind the request: [`L2::write_behind`] returns at once; the write runs in a
//! task, bounded in bytes held and in concurrency, and is dropped (and counted) under pressure.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use pingora_cache::CacheMeta;
use pingora_cache::key::HashBinary;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Semaphore;

use super::StoredMeta;
use super::codec::{self, Body, Chunks, Manifest};
use super::shared::{SharedTier, TierError};
use crate::metrics::{Lookup, Metrics, Write};

/// Chunks outlive their manifest by this much, so a reader holding a fresh manifest never finds
/// its chunks expired first.
const CHUNK_SLACK: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct L2Settings {
    pub namespace: String,
    pub deadline: Duration,
    pub chunk_deadline: Duration,
    pub inline_max: usize,
    pub chunk_bytes: usize,
    pub max_object: usize,
    pub write_queue_bytes: u64,
    pub write_concurrency: usize,
}

/// An object found in the shared tier.
pub struct Found {
    pub meta: StoredMeta,
    pub body: Bytes,
}

struct Counters {
    hits: IntCounter,
    misses: IntCounter,
    errors: IntCounter,
    stored: IntCounter,
    dropped: IntCounter,
    failed: IntCounter,
    queue_bytes: IntGauge,
}

pub struct L2 {
    tier: Arc<dyn SharedTier>,
    settings: L2Settings,
    pending_bytes: AtomicU64,
    writers: Arc<Semaphore>,
    write_ids: std::hash::RandomState,
    next_write: AtomicU64,
    counters: Counters,
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error("encoding: {0}")]
    Encode(String),
}

impl L2 {
    pub fn new(tier: Arc<dyn SharedTier>, settings: L2Settings, metrics: &Metrics) -> Arc<Self> {
        let lookups = |r: Lookup| metrics.l2_lookups.with_label_values(&[r.label()]);
        let writes = |w: Write| metrics.l2_writes.with_label_values(&[w.label()]);
        Arc::new(Self {
            tier,
            writers: Arc::new(Semaphore::new(settings.write_concurrency.max(1))),
            settings,
            pending_bytes: AtomicU64::new(0),
            write_ids: std::hash::RandomState::new(),
            next_write: AtomicU64::new(0),
            counters: Counters {
                hits: lookups(Lookup::Hit),
                misses: lookups(Lookup::Miss),
                errors: lookups(Lookup::Error),
                stored: writes(Write::Stored),
                dropped: writes(Write::Dropped),
                failed: writes(Write::Failed),
                queue_bytes: metrics.l2_write_queue_bytes.clone(),
            },
        })
    }

    pub fn max_object(&self) -> usize {
        self.settings.max_object
    }

    pub fn manifest_key(&self, key: &HashBinary) -> String {
        format!("{}:m:{}", self.settings.namespace, hex(key))
    }

    pub fn chunk_key(&self, key: &HashBinary, write_id: u64, index: usize) -> String {
        format!(
            "{}:c:{}:{write_id:016x}:{index}",
            self.settings.namespace,
            hex(key)
        )
    }

    /// The object stored under `key`, or `None`: absent, unreachable, late, or not intact.
    pub async fn read(&self, key: &HashBinary) -> Option<Found> {
        match self.try_read(key).await {
            Ok(Some(found)) => {
                self.counters.hits.inc();
                Some(found)
            }
            Ok(None) => {
                self.counters.misses.inc();
                None
            }
            Err(why) => {
                self.counters.errors.inc();
                tracing::debug!(key = %hex(key), %why, "shared tier read failed; treated as a miss");
                None
            }
        }
    }

    async fn try_read(&self, key: &HashBinary) -> Result<Option<Found>, String> {
        let Some(raw) = self
            .tier
            .get(&self.manifest_key(key), self.settings.deadline)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let manifest = codec::decode(&raw).map_err(|e| e.to_string())?;
        let meta = CacheMeta::deserialize(&manifest.meta_internal, &manifest.meta_header)
            .map_err(|e| format!("stored meta: {e}"))?;
        let body = match &manifest.body {
            Body::Inline(b) => b.clone(),
            Body::Chunked(chunks) => match self.read_chunks(key, chunks).await? {
                Some(body) => body,
                // A chunk was evicted: the object is gone, not damaged.
                None => return Ok(None),
            },
        };
        Ok(Some(Found {
            // The manifest carries the tags: no need to parse them from the header again.
            meta: StoredMeta::with_tags(&meta, manifest.tags.into()),
            body,
        }))
    }

    /// All chunks, fetched at once and each verified; `None` if any is missing.
    async fn read_chunks(&self, key: &HashBinary, c: &Chunks) -> Result<Option<Bytes>, String> {
        let fetches = (0..c.sums.len()).map(|i| {
            let item = self.chunk_key(key, c.write_id, i);
            async move { self.tier.get(&item, self.settings.chunk_deadline).await }
        });
        let parts = futures::future::join_all(fetches).await;
        let total = usize::try_from(c.total_len).map_err(|_| "object too large".to_owned())?;
        let mut body = BytesMut::with_capacity(total);
        for (i, part) in parts.into_iter().enumerate() {
            let Some(chunk) = part.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if codec::chunk_sum(&chunk) != c.sums[i] {
                return Err(format!("chunk {i} does not match its checksum"));
            }
            body.extend_from_slice(&chunk);
        }
        if body.len() != total {
            return Err(format!(
                "chunks hold {} bytes, the manifest says {total}",
                body.len()
            ));
        }
        Ok(Some(body.freeze()))
    }

    /// Stores an object in the background, kept `ttl`; never delays the caller. Skipped when it
    /// is too large for this tier; dropped when the pending writes already hold too many bytes.
    pub fn write_behind(
        self: &Arc<Self>,
        key: HashBinary,
        meta: &StoredMeta,
        body: Bytes,
        ttl: Duration,
    ) {
        if body.len() > self.settings.max_object || ttl.is_zero() {
            return;
        }
        let size = body.len() as u64 + 1024;
        let pending = self.pending_bytes.fetch_add(size, Ordering::AcqRel) + size;
        if pending > self.settings.write_queue_bytes {
            self.pending_bytes.fetch_sub(size, Ordering::AcqRel);
            self.counters.dropped.inc();
            return;
        }
        self.counters
            .queue_bytes
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let this = Arc::clone(self);
        let meta = meta.clone();
        tokio::spawn(async move {
            let result = match Arc::clone(&this.writers).acquire_owned().await {
                Ok(_permit) => this.write(key, meta, body, ttl).await,
                Err(_) => Ok(()),
            };
            let left = this.pending_bytes.fetch_sub(size, Ordering::AcqRel) - size;
            this.counters
                .queue_bytes
                .set(i64::try_from(left).unwrap_or(i64::MAX));
            match result {
                Ok(()) => this.counters.stored.inc(),
                Err(why) => {
                    this.counters.failed.inc();
                    tracing::debug!(key = %hex(&key), %why, "shared tier write failed");
                }
            }
        });
    }

    async fn write(
        &self,
        key: HashBinary,
        meta: StoredMeta,
        body: Bytes,
        ttl: Duration,
    ) -> Result<(), WriteError> {
        let s = &self.settings;
        let body = if body.len() <= s.inline_max {
            Body::Inline(body)
        } else {
            let write_id = self.write_id();
            let mut sums = Vec::new();
            for (i, chunk) in body.chunks(s.chunk_bytes).enumerate() {
                self.tier
                    .set(
                        &self.chunk_key(&key, write_id, i),
                        chunk,
                        ttl + CHUNK_SLACK,
                        s.chunk_deadline,
                    )
                    .await?;
                sums.push(codec::chunk_sum(chunk));
            }
            let chunk_bytes =
                u32::try_from(s.chunk_bytes).map_err(|e| WriteError::Encode(e.to_string()))?;
            Body::Chunked(Chunks {
                write_id,
                total_len: body.len() as u64,
                chunk_bytes,
                sums,
            })
        };
        let manifest = self.manifest(&meta, body)?;
        // Last: only now can a reader find the object, and every chunk it names exists.
        self.tier
            .set(&self.manifest_key(&key), &manifest, ttl, s.chunk_deadline)
            .await?;
        Ok(())
    }

    fn manifest(&self, meta: &StoredMeta, body: Body) -> Result<Vec<u8>, WriteError> {
        let (meta_internal, meta_header) = meta
            .to_meta()
            .serialize()
            .map_err(|e| WriteError::Encode(e.to_string()))?;
        let stored_at_ms = meta
            .stored
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        codec::encode(&Manifest {
            stored_at_ms,
            meta_internal,
            meta_header,
            tags: meta.tags.to_vec(),
            body,
        })
        .map_err(|e| WriteError::Encode(e.to_string()))
    }

    /// After a 304: rewrite the manifest with the refreshed meta and extend its chunks' lives.
    /// Awaited, within the write deadline, before the client gets its answer: the next request
    /// at any node of the region finds the object revalidated instead of revalidating it again.
    pub async fn refresh_meta(&self, key: HashBinary, meta: &StoredMeta, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let bound = self.settings.chunk_deadline;
        match tokio::time::timeout(bound, self.update_meta(&key, meta, ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::debug!(key = %hex(&key), %why, "shared tier meta update failed")
            }
            Err(_) => tracing::debug!(key = %hex(&key), "shared tier meta update late"),
        }
    }

    async fn update_meta(
        &self,
        key: &HashBinary,
        meta: &StoredMeta,
        ttl: Duration,
    ) -> Result<(), WriteError> {
        let s = &self.settings;
        let mk = self.manifest_key(key);
        let Some(raw) = self.tier.get(&mk, s.deadline).await? else {
            return Ok(());
        };
        let Ok(old) = codec::decode(&raw) else {
            return Ok(());
        };
        if let Body::Chunked(c) = &old.body {
            for i in 0..c.sums.len() {
                if !self
                    .tier
                    .touch(
                        &self.chunk_key(key, c.write_id, i),
                        ttl + CHUNK_SLACK,
                        s.chunk_deadline,
                    )
                    .await?
                {
                    // A chunk is already gone: drop the manifest rather than extend a dead object.
                    self.tier.delete(&mk, s.deadline).await?;
                    return Ok(());
                }
            }
        }
        let manifest = self.manifest(meta, old.body)?;
        self.tier.set(&mk, &manifest, ttl, s.chunk_deadline).await?;
        Ok(())
    }

    /// Removes an object, and says what it held: its meta, `None` when there was nothing, or
    /// `Err` when the shared tier could not say (unreachable, late, unreadable bytes).
    pub async fn take(&self, key: &HashBinary) -> Result<Option<StoredMeta>, ()> {
        let mk = self.manifest_key(key);
        let deadline = self.settings.deadline;
        let failed = |why: String| {
            self.counters.errors.inc();
            tracing::debug!(key = %hex(key), %why, "shared tier take failed");
        };
        let raw = self
            .tier
            .get(&mk, deadline)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let Some(raw) = raw else { return Ok(None) };
        self.tier
            .delete(&mk, deadline)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let manifest = codec::decode(&raw).map_err(|e| failed(e.to_string()))?;
        let meta = CacheMeta::deserialize(&manifest.meta_internal, &manifest.meta_header)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Some(StoredMeta::with_tags(&meta, manifest.tags.into())))
    }

    /// Removes an object (its manifest: orphaned chunks expire on their own).
    pub fn delete_behind(self: &Arc<Self>, key: HashBinary) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(why) = this
                .tier
                .delete(&this.manifest_key(&key), this.settings.deadline)
                .await
            {
                tracing::debug!(key = %hex(&key), %why, "shared tier delete failed");
            }
        });
    }

    fn write_id(&self) -> u64 {
        let mut h = self.write_ids.build_hasher();
        h.write_u64(self.next_write.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    }
}

pub fn hex(key: &HashBinary) -> String {
    let mut s = String::with_capacity(32);
    for b in key {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}
