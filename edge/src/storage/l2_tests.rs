//! The tiers together, over the in-memory and faulty shared-tier fakes: what one node stores,
//! another finds; chunks round-trip or miss cleanly; failures are misses; writes never block.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta, HitHandler, Storage};
use pingora_http::ResponseHeader;

use super::fake::{FaultyTier, InMemoryTier};
use super::l2::{L2, L2Settings};
use super::shared::SharedTier;
use super::{Tier, TierConfig, TieredStorage, tier_of};
use crate::metrics::Metrics;

fn settings() -> L2Settings {
    L2Settings {
        namespace: "t".into(),
        deadline: Duration::from_millis(50),
        chunk_deadline: Duration::from_millis(50),
        inline_max: 64 * 1024,
        chunk_bytes: 512 * 1024,
        max_object: 8 << 20,
        write_queue_bytes: 64 << 20,
        write_concurrency: 4,
    }
}

/// A node: its own L1 and metrics, the shared tier given.
fn node(tier: Arc<dyn SharedTier>, settings: L2Settings) -> (&'static TieredStorage, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let l2 = L2::new(tier, settings, &metrics);
    let config = TierConfig {
        l1_capacity_bytes: 64 << 20,
        l1_max_object: 4 << 20,
        grace: Duration::from_secs(60),
        max_retain: Duration::from_secs(3600),
        sendfile_min: 64 * 1024,
        max_body_files: 16,
    };
    (
        TieredStorage::new(
            config,
            4,
            Arc::clone(&metrics),
            Some(l2),
            Arc::new(super::hit_filter::ServeAll),
        )
        .leak(),
        metrics,
    )
}

fn meta(fresh_for: i64, tags: &str) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).expect("header");
    header.insert_header("surrogate-key", tags).expect("tags");
    let now = SystemTime::now();
    let until = if fresh_for >= 0 {
        now + Duration::from_secs(fresh_for as u64)
    } else {
        now - Duration::from_secs(fresh_for.unsigned_abs())
    };
    CacheMeta::new(until, now, 0, 0, header)
}

async fn fill(s: &'static TieredStorage, key: &CacheKey, meta: &CacheMeta, body: &[u8]) {
    let span = Span::inactive().handle();
    let mut miss = s
        .get_miss_handler(key, meta, &span)
        .await
        .expect("miss handler");
    for chunk in body.chunks(100_000) {
        miss.write_body(Bytes::copy_from_slice(chunk), false)
            .await
            .expect("write");
    }
    miss.finish().await.expect("finish");
}

async fn lookup(s: &'static TieredStorage, key: &CacheKey) -> Option<(CacheMeta, HitHandler)> {
    s.lookup(key, &Span::inactive().handle())
        .await
        .expect("lookup")
}

async fn body(hit: &mut HitHandler) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = hit.read_body().await.expect("read") {
        out.extend_from_slice(&b);
    }
    out
}

/// Waits until `cond` holds (background writes), failing after 5 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn writes(m: &Metrics, result: &str) -> u64 {
    m.l2_writes.with_label_values(&[result]).get()
}

#[tokio::test]
async fn another_node_finds_what_one_stored_and_keeps_it_in_l1() {
    let shared = Arc::new(InMemoryTier::default());
    let (a, am) = node(shared.clone(), settings());
    let (b, _) = node(shared.clone(), settings());
    let key = crate::cache_key::key("http://h/shared".into());
    fill(a, &key, &meta(60, "front image-1"), b"from node a").await;
    until("the write", || writes(&am, "stored") == 1).await;
    let (m, mut hit) = lookup(b, &key).await.expect("found in the shared tier");
    assert_eq!(tier_of(hit.as_ref()), Some(Tier::L2));
    assert_eq!(body(&mut hit).await, b"from node a");
    assert!(m.is_fresh(SystemTime::now()));
    let (_, again) = lookup(b, &key).await.expect("promoted");
    assert_eq!(
        tier_of(again.as_ref()),
        Some(Tier::L1),
        "the L2 hit was promoted into L1"
    );
    let manifest_key = format!("t:m:{}", super::l2::hex(&key_bin(&key)));
    let manifest = shared
        .items
        .lock()
        .get(&manifest_key)
        .cloned()
        .expect("manifest");
    let decoded = super::codec::decode(&manifest).expect("decodes");
    assert_eq!(decoded.tags, ["front", "image-1"]);
}

fn key_bin(key: &CacheKey) -> pingora_cache::key::HashBinary {
    use pingora_cache::key::CacheHashKey;
    key.combined_bin()
}

#[tokio::test]
async fn large_bodies_travel_in_chunks_and_a_missing_chunk_is_a_miss() {
    let shared = Arc::new(InMemoryTier::default());
    let (a, am) = node(shared.clone(), settings());
    let key = crate::cache_key::key("http://h/big".into());
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fill(a, &key, &meta(60, "big"), &big).await;
    until("the write", || writes(&am, "stored") == 1).await;
    let chunks: Vec<String> = shared
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("t:c:"))
        .collect();
    assert_eq!(chunks.len(), 6, "3 MiB in 512 KiB chunks");

    let (b, _) = node(shared.clone(), settings());
    let (_, mut hit) = lookup(b, &key).await.expect("found");
    assert!(body(&mut hit).await == big, "byte for byte");

    shared.remove(&chunks[3]);
    let (c, cm) = node(shared.clone(), settings());
    assert!(
        lookup(c, &key).await.is_none(),
        "a missing chunk: a miss, not a short body"
    );
    assert_eq!(cm.l2_lookups.with_label_values(&["miss"]).get(), 1);

    fill(a, &key, &meta(60, "big"), &big).await;
    until("the rewrite", || writes(&am, "stored") == 2).await;
    let newest: Vec<String> = shared
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("t:c:") && !chunks.contains(k))
        .collect();
    shared.corrupt(&newest[0]);
    let (d, dm) = node(shared.clone(), settings());
    assert!(
        lookup(d, &key).await.is_none(),
        "a corrupt chunk: a miss, not a wrong body"
    );
    assert_eq!(dm.l2_lookups.with_label_values(&["error"]).get(), 1);
}

#[tokio::test]
async fn a_failing_or_frozen_shared_tier_is_a_miss() {
    let faulty = Arc::new(FaultyTier::default());
    let (a, am) = node(faulty.clone(), settings());
    let key = crate::cache_key::key("http://h/x".into());
    faulty.failing.store(true, Ordering::Relaxed);
    assert!(lookup(a, &key).await.is_none());
    fill(a, &key, &meta(60, "x"), b"body").await;
    until("the failed write", || writes(&am, "failed") == 1).await;
    assert!(lookup(a, &key).await.is_some(), "L1 still serves");

    faulty.failing.store(false, Ordering::Relaxed);
    faulty.stalled.store(true, Ordering::Relaxed);
    let other = crate::cache_key::key("http://h/y".into());
    let started = std::time::Instant::now();
    assert!(
        lookup(a, &other).await.is_none(),
        "a stalled tier is a miss after the deadline"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the deadline, not hung"
    );
    assert_eq!(am.l2_lookups.with_label_values(&["error"]).get(), 2);
}

#[tokio::test]
async fn a_stale_l1_entry_takes_a_fresher_one_from_the_shared_tier() {
    let shared = Arc::new(InMemoryTier::default());
    let (a, _) = node(shared.clone(), settings());
    let (b, bm) = node(shared.clone(), settings());
    let key = crate::cache_key::key("http://h/page".into());
    fill(a, &key, &meta(-5, "p"), b"old").await;
    fill(b, &key, &meta(300, "p"), b"refreshed by b").await;
    until("b's write", || writes(&bm, "stored") >= 1).await;
    let (m, mut hit) = lookup(a, &key).await.expect("found");
    assert_eq!(body(&mut hit).await, b"refreshed by b");
    assert!(m.is_fresh(SystemTime::now()));
    assert_eq!(tier_of(hit.as_ref()), Some(Tier::L2));
}

#[tokio::test]
async fn writes_are_dropped_not_queued_without_bound() {
    let faulty = Arc::new(FaultyTier::default());
    faulty.stalled.store(true, Ordering::Relaxed);
    let tight = L2Settings {
        write_queue_bytes: 300_000,
        write_concurrency: 1,
        ..settings()
    };
    let (a, am) = node(faulty.clone(), tight);
    for i in 0..10 {
        let key = crate::cache_key::key(format!("http://h/{i}"));
        fill(a, &key, &meta(60, "x"), &vec![b'x'; 100_000]).await;
    }
    assert!(
        writes(&am, "dropped") >= 7,
        "at most ~3 × 100 kB held: {}",
        writes(&am, "dropped")
    );
    assert!(am.l2_write_queue_bytes.get() <= 300_000);
}

#[tokio::test]
async fn a_304_refresh_reaches_the_shared_tier() {
    let shared = Arc::new(InMemoryTier::default());
    let (a, am) = node(shared.clone(), settings());
    let key = crate::cache_key::key("http://h/revalidated".into());
    fill(a, &key, &meta(-5, "r"), &vec![b'r'; 200_000]).await;
    until("the write", || writes(&am, "stored") == 1).await;
    let refreshed = meta(600, "r");
    a.update_meta(&key, &refreshed, &Span::inactive().handle())
        .await
        .expect("update");
    let (b, _) = node(shared.clone(), settings());
    let mut fresh = false;
    for _ in 0..500 {
        if let Some((m, _)) = lookup(b, &key).await
            && m.is_fresh(SystemTime::now())
        {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fresh, "another node sees the refreshed freshness");
}
