//! Purging (docs/architecture.md §4, docs/admin-api.md): a purge is accepted by one node, applied
//! there at once, appended to the region's purge log ([`log`]), applied by every other node when
//! it polls the log (its [`filter::Filter`], and its L1), acknowledged per node for receipts, and
//! forwarded to one admin endpoint per other region ([`forward`]).

pub(crate) mod filter;
pub(crate) mod forward;
pub(crate) mod local;
pub(crate) mod log;
pub(crate) mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use outpost_common::backoff;
use parking_lot::Mutex;
use pingora_cache::CacheKey;
use pingora_cache::key::{CacheHashKey, HashBinary};
use serde::{Deserialize, Serialize};

use crate::cache_key::{self, RulesByHost};
use crate::client::group;
use crate::metrics::{ForwardResult, InvalidationShared, Metrics, PurgeKind};
use crate::names::is_simple_name;
use crate::settings::{PurgeSettings, RegionPeer};
use crate::storage::{Held, TieredStorage};
use crate::target;
use filter::{Filter, Marking};
use forward::Forwarder;
use log::{Log, LogEntry};

/// At most this many URLs, prefixes and tags in one purge.
pub const MAX_ITEMS: usize = 10_000;
/// Applied purge ids are remembered this long (a replica re-read must not re-apply).
const REMEMBER_APPLIED: Duration = Duration::from_secs(600);
/// Heartbeat every this many polls.
const HEARTBEAT_EVERY: u32 = 3;
/// How long this node alone keeps an invalidated URL's mark while it finds out whether a tier
/// held it (so a concurrent request cannot take it back from the shared tier meanwhile).
const INVALIDATION_GUARD: Duration = Duration::from_secs(10);
/// Invalidated URLs in one log entry (hashes of 32 characters: about 9 KB).
const INVALIDATION_BATCH: usize = 256;
/// First delay before forwarding a purge to another region again; doubles per attempt…
const FORWARD_BACKOFF: Duration = Duration::from_millis(100);
/// …up to this, so a region that recovers gets its purges within seconds.
const FORWARD_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Shortest life of an invalidation entry in the log: long enough for every node to read it.
const INVALIDATION_ENTRY_MIN_TTL: Duration = Duration::from_secs(60);

pub use outpost_common::purge::{PurgeRequest, REQUEST_FIELDS};

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("applied on this node only: the region's purge log is unreachable ({0})")]
    LogUnavailable(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PurgeError {
    PurgeError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Where the forwarded copy of a purge stands with another region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardState {
    /// Not yet accepted there (being retried).
    #[default]
    Pending,
    /// Accepted there.
    Forwarded,
    /// Given up after `purge.forward_attempts`.
    Failed,
}

/// How a forwarded copy of a purge is doing in another region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionReceipt {
    pub state: ForwardState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub applied: Vec<String>,
    #[serde(default)]
    pub pending: Vec<String>,
}

/// What `POST /purge` and `GET /purge/{id}` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub region: String,
    pub soft: bool,
    pub accepted_at_ms: u64,
    /// Live nodes of this region that have applied it.
    pub applied: Vec<String>,
    /// Live nodes of this region that have not yet.
    pub pending: Vec<String>,
    /// Every live node of every region has applied it.
    pub complete: bool,
    pub regions: BTreeMap<String, RegionReceipt>,
}

/// The receipt's fields, for the API description check.
pub const RECEIPT_FIELDS: [&str; 8] = [
    "id",
    "region",
    "soft",
    "accepted_at_ms",
    "applied",
    "pending",
    "complete",
    "regions",
];

/// What the region keeps about a purge (in the log's store), for any node to answer receipts.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ReceiptRecord {
    id: String,
    region: String,
    soft: bool,
    accepted_at_ms: u64,
    regions: BTreeMap<String, RegionReceipt>,
}

pub struct Settings {
    pub node: String,
    pub config: PurgeSettings,
}

pub struct PurgeService {
    node: String,
    config: PurgeSettings,
    filter: Arc<Filter>,
    storage: &'static TieredStorage,
    rules: Arc<dyn RulesByHost>,
    log: Log,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    /// Purge ids applied here, and when.
    applied: Mutex<HashMap<String, Instant>>,
    /// Purges this node accepted: it owns their forwarding state.
    records: Mutex<HashMap<String, ReceiptRecord>>,
    /// Invalidated URLs (primary hashes) waiting for the next poll to go to the log, with until
    /// when their copies could be used.
    invalidated: Mutex<HashMap<HashBinary, SystemTime>>,
    /// How many invalidations each client may add to the region's log.
    invalidation_rate: DefaultKeyedRateLimiter<IpAddr>,
    /// The longest an object can live in a tier: no mark needs to outlive it.
    longest_life: Duration,
}

impl PurgeService {
    pub fn new(
        s: Settings,
        filter: Arc<Filter>,
        storage: &'static TieredStorage,
        rules: Arc<dyn RulesByHost>,
        log: Log,
        metrics: Arc<Metrics>,
        longest_life: Duration,
    ) -> anyhow::Result<Self> {
        let per_sec =
            NonZeroU32::new(s.config.invalidations_per_client_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(s.config.invalidation_burst).unwrap_or(NonZeroU32::MIN);
        // Present at zero from the start, per region and result, for dashboards and alerts.
        for region in &s.config.regions {
            for result in [
                ForwardResult::Ok,
                ForwardResult::Retry,
                ForwardResult::Failed,
            ] {
                metrics
                    .purge_forwards
                    .with_label_values(&[&region.name, result.label()]);
            }
        }
        Ok(Self {
            invalidated: Mutex::new(HashMap::new()),
            invalidation_rate: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            longest_life,
            forwarder: Forwarder::new()?,
            node: s.node,
            config: s.config,
            filter,
            storage,
            rules,
            log,
            metrics,
            applied: Mutex::new(HashMap::new()),
            records: Mutex::new(HashMap::new()),
        })
    }

    /// The primary cache key of an absolute URL (or prefix), as requests produce it.
    fn normalise(&self, field: &str, url: &str) -> Result<String, PurgeError> {
        // The host first (every parameter kept), then the URL under its site's rules.
        target::parse_url(url, &target::KEEP_ALL)
            .and_then(|t| {
                target::parse_url(url, &self.rules.rules_for(target::host_of(&t.authority)))
            })
            .map(|t| t.key_text())
            .map_err(|e| {
                invalid(
                    field,
                    format!("must be an absolute http:// or https:// URL: {e}"),
                )
            })
    }

    /// Checks a request and turns it into a log entry.
    fn entry(&self, req: &PurgeRequest) -> Result<LogEntry, PurgeError> {
        let items = req.urls.len() + req.prefixes.len() + req.tags.len();
        if items == 0 && !req.all {
            return Err(invalid(
                "urls",
                "nothing to purge: give urls, prefixes, tags, or all: true",
            ));
        }
        if items > MAX_ITEMS {
            return Err(invalid(
                "urls",
                format!("at most {MAX_ITEMS} urls, prefixes and tags in one purge"),
            ));
        }
        let urls = req
            .urls
            .iter()
            .enumerate()
            .map(|(i, u)| self.normalise(&format!("urls[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        let mut prefixes = Vec::with_capacity(req.prefixes.len());
        for (i, p) in req.prefixes.iter().enumerate() {
            let field = format!("prefixes[{i}]");
            let normalised = self.normalise(&field, p)?;
            // A bare host would end at the authority: ban the whole host explicitly instead.
            prefixes.push(normalised);
        }
        for (i, t) in req.tags.iter().enumerate() {
            if t.is_empty()
                || t.len() > 256
                || t.bytes().any(|b| !b.is_ascii_graphic() || b == b',')
            {
                return Err(invalid(
                    format!("tags[{i}]"),
                    "must be 1-256 printable characters without spaces or commas",
                ));
            }
        }
        let id = match &req.id {
            Some(id) if is_simple_name(id, 64) => id.clone(),
            Some(_) => return Err(invalid("id", "must be 1-64 letters, digits, - _ .")),
            None => format!("{}-{:016x}", self.config.region, fastrand::u64(..)),
        };
        Ok(LogEntry {
            id,
            node: self.node.clone(),
            at_us: filter::now_us(),
            soft: req.soft,
            urls,
            prefixes,
            tags: req.tags.clone(),
            all: req.all,
            ..LogEntry::default()
        })
    }

    /// Accepts a purge: applies it here, appends it to the region's log, forwards it to the
    /// other regions, and answers with its receipt (after waiting, if asked).
    pub async fn submit(self: &Arc<Self>, req: PurgeRequest) -> Result<Receipt, PurgeError> {
        let entry = self.entry(&req)?;
        self.apply(&entry, true);
        let kind = if entry.soft {
            PurgeKind::Soft
        } else {
            PurgeKind::Hard
        };
        self.metrics.purges.with_label_values(&[kind.label()]).inc();
        self.log
            .append(&entry)
            .await
            .map_err(PurgeError::LogUnavailable)?;
        self.log.ack(&entry.id, &self.node).await;
        let regions: BTreeMap<String, RegionReceipt> = if req.forwarded_from.is_some() {
            BTreeMap::new()
        } else {
            self.config
                .regions
                .iter()
                .map(|r| {
                    let state = RegionReceipt {
                        state: ForwardState::Pending,
                        ..RegionReceipt::default()
                    };
                    (r.name.clone(), state)
                })
                .collect()
        };
        let record = ReceiptRecord {
            id: entry.id.clone(),
            region: self.config.region.clone(),
            soft: entry.soft,
            accepted_at_ms: entry.at_us / 1000,
            regions,
        };
        self.save(&record).await;
        if req.forwarded_from.is_none() {
            let forwarded = PurgeRequest {
                id: Some(entry.id.clone()),
                forwarded_from: Some(self.config.region.clone()),
                wait: false,
                ..req.clone()
            };
            for region in self.config.regions.clone() {
                let me = Arc::clone(self);
                let body = forwarded.clone();
                tokio::spawn(async move { me.forward(region, body).await });
            }
        }
        if req.wait {
            Ok(self.wait(&entry.id).await.unwrap_or_default())
        } else {
            Ok(self.receipt(&entry.id).await.unwrap_or_default())
        }
    }

    async fn save(&self, record: &ReceiptRecord) {
        self.records
            .lock()
            .insert(record.id.clone(), record.clone());
        if let Ok(bytes) = serde_json::to_vec(record) {
            self.log.put_record(&record.id, &bytes).await;
        }
    }

    fn update_region(
        &self,
        id: &str,
        region: &str,
        f: impl FnOnce(&mut RegionReceipt),
    ) -> Option<ReceiptRecord> {
        let mut records = self.records.lock();
        let record = records.get_mut(id)?;
        f(record.regions.entry(region.to_owned()).or_default());
        Some(record.clone())
    }

    /// Sends a purge to another region until it is accepted, backing off between attempts.
    async fn forward(&self, region: RegionPeer, body: PurgeRequest) {
        let id = body.id.clone().unwrap_or_default();
        for attempt in 1..=self.config.forward_attempts.max(1) {
            let outcome = self.forwarder.send(&region, &body).await;
            let last = attempt == self.config.forward_attempts.max(1);
            let result = match &outcome {
                Ok(()) => ForwardResult::Ok,
                Err(_) if last => ForwardResult::Failed,
                Err(_) => ForwardResult::Retry,
            };
            self.metrics
                .purge_forwards
                .with_label_values(&[&region.name, result.label()])
                .inc();
            let updated = self.update_region(&id, &region.name, |r| {
                r.attempts = attempt;
                match &outcome {
                    Ok(()) => {
                        r.state = ForwardState::Forwarded;
                        r.error = None;
                    }
                    Err(e) => {
                        r.state = if last {
                            ForwardState::Failed
                        } else {
                            ForwardState::Pending
                        };
                        r.error = Some(e.clone());
                    }
                }
            });
            if let Some(record) = updated {
                self.save(&record).await;
            }
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(region = %region.name, attempt, error = %e, "forwarding a purge failed");
                }
            }
            if !last {
                tokio::time::sleep(backoff::delay(
                    attempt,
                    FORWARD_BACKOFF,
                    FORWARD_BACKOFF_MAX,
                ))
                .await;
            }
        }
    }

    /// The receipt of purge `id`, if this region knows it.
    pub async fn receipt(&self, id: &str) -> Option<Receipt> {
        let local = self.records.lock().get(id).cloned();
        let record = match local {
            Some(r) => r,
            None => serde_json::from_slice::<ReceiptRecord>(&self.log.record(id).await?).ok()?,
        };
        // Who is live and who acknowledged, unless memcached could not say: then the receipt
        // lists nobody and is not complete (never "complete" because a read failed).
        let known = match self.log.live_nodes().await {
            Ok(live) => self.log.acked(id, &live).await.ok().map(|a| (live, a)),
            Err(_) => None,
        };
        let (mut applied, mut pending) = (Vec::new(), Vec::new());
        for (node, done) in known
            .iter()
            .flat_map(|(live, acked)| live.iter().zip(acked))
        {
            if *done { &mut applied } else { &mut pending }.push(node.clone());
        }
        let mut regions = record.regions;
        for (name, state) in regions.iter_mut() {
            if state.state != ForwardState::Forwarded {
                continue;
            }
            let remote = self.config.regions.iter().find(|r| &r.name == name);
            if let Some(remote) = remote
                && let Some(theirs) = self.forwarder.receipt(remote, id).await
            {
                state.applied = theirs.applied;
                state.pending = theirs.pending;
            }
        }
        // At least the accepting node is live and has applied it; an empty list is not done.
        let complete = known.is_some()
            && pending.is_empty()
            && !applied.is_empty()
            && regions.values().all(|r| {
                r.state == ForwardState::Forwarded && r.pending.is_empty() && !r.applied.is_empty()
            });
        Some(Receipt {
            id: record.id,
            region: record.region,
            soft: record.soft,
            accepted_at_ms: record.accepted_at_ms,
            applied,
            pending,
            complete,
            regions,
        })
    }

    /// The receipt once every live node of every region applied the purge, or as it stands
    /// after `purge.max_wait_ms`.
    async fn wait(&self, id: &str) -> Option<Receipt> {
        let until = Instant::now() + self.config.max_wait;
        loop {
            let receipt = self.receipt(id).await;
            if receipt.as_ref().is_none_or(|r| r.complete) || Instant::now() >= until {
                return receipt;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Applies a purge to this node: its filter, and (hard purges) its L1. The accepting node
    /// (`accepted_here`) also deletes purged URLs from the shared tier.
    fn apply(&self, e: &LogEntry, accepted_here: bool) {
        {
            let mut applied = self.applied.lock();
            if applied.contains_key(&e.id) {
                return;
            }
            applied.insert(e.id.clone(), Instant::now());
        }
        let mut keys: Vec<CacheKey> = e.urls.iter().map(|u| cache_key::key(u.clone())).collect();
        keys.extend(e.hashes.iter().filter_map(|h| cache_key::key_of_hash(h)));
        let primaries: Vec<HashBinary> = keys.iter().map(|k| k.primary_bin()).collect();
        self.filter.apply(&Marking {
            at_us: e.at_us,
            soft: e.soft,
            urls: &primaries,
            prefixes: &e.prefixes,
            tags: &e.tags,
            all: e.all,
            keep_us: e.keep_ms.map(|ms| ms.saturating_mul(1000)),
        });
        if !e.soft {
            for key in &keys {
                let removed = if accepted_here {
                    self.storage.invalidate(key)
                } else {
                    self.storage.forget_l1(key).count
                };
                self.metrics.invalidations.inc_by(removed as u64);
            }
            if e.all {
                self.storage.l1().clear();
            }
        }
        self.metrics.purge_entries_applied.inc();
    }

    /// A successful unsafe request from `client` changed the URLs behind `keys` (RFC 9111
    /// §4.4). This node drops its copies at once. The region is told, through its purge log,
    /// only about URLs a tier held (an unsafe request to a URL nobody caches costs the region
    /// nothing), for no longer than those copies could be used, batched per poll, and at most
    /// `purge.invalidations_per_client_per_sec` per client: past that only this node
    /// invalidates, and `outpost_invalidations_shared_total{result="rate_limited"}` counts it.
    pub fn invalidate(self: &Arc<Self>, keys: Vec<CacheKey>, client: Option<IpAddr>) {
        let primaries: Vec<HashBinary> = keys.iter().map(|k| k.primary_bin()).collect();
        // Until the shared tier's copies are gone, this node must not take them back from it.
        self.filter.apply(&Marking {
            at_us: filter::now_us(),
            urls: &primaries,
            keep_us: Some(INVALIDATION_GUARD.as_micros() as u64),
            ..Marking::default()
        });
        let in_l1: Vec<_> = keys.iter().map(|k| self.storage.forget_l1(k)).collect();
        let removed: usize = in_l1.iter().map(|r| r.count).sum();
        self.metrics.invalidations.inc_by(removed as u64);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            for (key, l1) in keys.iter().zip(in_l1) {
                let until = match (l1.until, me.storage.take_l2(key).await) {
                    (_, Held::Unknown) => Some(SystemTime::now() + me.longest_life),
                    (l1, Held::Until(l2)) => Some(l1.map_or(l2, |l1| l1.max(l2))),
                    (l1, Held::No) => l1,
                };
                me.share_invalidation(key.primary_bin(), until, client);
            }
        });
    }

    fn share_invalidation(
        &self,
        primary: HashBinary,
        until: Option<SystemTime>,
        client: Option<IpAddr>,
    ) {
        let result = match until {
            None => InvalidationShared::NotHeld,
            Some(_)
                if self
                    .invalidation_rate
                    .check_key(&group(client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
                    .is_err() =>
            {
                InvalidationShared::RateLimited
            }
            Some(until) => {
                let mut pending = self.invalidated.lock();
                let slot = pending.entry(primary).or_insert(until);
                *slot = (*slot).max(until);
                InvalidationShared::Logged
            }
        };
        self.metrics
            .invalidations_shared
            .with_label_values(&[result.label()])
            .inc();
    }

    /// Writes the invalidations gathered since the last poll to the region's log.
    async fn flush_invalidations(&self) {
        let pending = std::mem::take(&mut *self.invalidated.lock());
        if pending.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let until = pending.values().max().copied().unwrap_or(now);
        let keep = until
            .duration_since(now)
            .unwrap_or_default()
            .clamp(Duration::from_secs(1), self.longest_life);
        let hashes: Vec<String> = pending.keys().map(crate::storage::l2::hex).collect();
        for batch in hashes.chunks(INVALIDATION_BATCH) {
            let entry = LogEntry {
                id: format!("inv-{:016x}", fastrand::u64(..)),
                node: self.node.clone(),
                // Stamped now, after every request it covers: a copy stored between a request
                // and this flush is dropped once more; one from before a request never survives.
                at_us: filter::now_us(),
                hashes: batch.to_vec(),
                keep_ms: Some(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)),
                ..LogEntry::default()
            };
            self.apply(&entry, false);
            let ttl = keep.max(INVALIDATION_ENTRY_MIN_TTL);
            if let Err(e) = self.log.append_for(&entry, ttl).await {
                tracing::warn!(error = %e, "invalidation not shared with the region");
            }
        }
    }

    /// One poll of the region's log: apply what is new, handle gaps, track sync.
    pub async fn poll_once(&self) {
        let polled = self.log.poll().await;
        let now = filter::now_us();
        if polled.gap {
            // Something may have been lost: drop L1, and revalidate what the L2 holds from
            // before now. Never serve a purged object because a log entry went missing.
            self.storage.l1().clear();
            self.filter.revalidate_all_before(now);
            self.metrics.purge_log_gaps.inc();
            tracing::warn!("purge log gap: L1 dropped, older objects revalidate");
        }
        let mut fresh = Vec::new();
        for e in &polled.entries {
            let seen = self.applied.lock().contains_key(&e.id);
            if !seen {
                self.apply(e, false);
                fresh.push(e.id.clone());
            }
        }
        for id in fresh {
            self.log.ack(&id, &self.node).await;
        }
        if polled.synced {
            self.filter.mark_synced(now);
        }
        self.metrics
            .purge_lag_seconds
            .set(self.filter.lag_us(now) as f64 / 1e6);
    }

    /// Polls the log until the process ends; heartbeats and housekeeping ride along.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tick.tick().await;
            self.flush_invalidations().await;
            self.poll_once().await;
            if n.is_multiple_of(HEARTBEAT_EVERY) {
                self.log.heartbeat(&self.node).await;
                let marks = self.filter.expire(filter::now_us());
                self.metrics.purge_marks.set(marks as i64);
                self.applied
                    .lock()
                    .retain(|_, at| at.elapsed() < REMEMBER_APPLIED);
                self.invalidation_rate.retain_recent();
            }
            n = n.wrapping_add(1);
        }
    }
}
