//! Every metric the edge exports, named in one place (`/metrics` on the admin listener, in the
//! Prometheus text format). `docs/operations.md` lists them with their meaning.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const REQUESTS: &str = "outpost_requests_total";
pub const ORIGIN_RESPONSES: &str = "outpost_origin_responses_total";
pub const ORIGIN_ERRORS: &str = "outpost_origin_errors_total";
pub const ORIGIN_SECONDS: &str = "outpost_origin_response_seconds";
pub const ORIGIN_HEALTHY: &str = "outpost_origin_healthy";
pub const L1_LOOKUPS: &str = "outpost_l1_lookups_total";
pub const L1_EVICTIONS: &str = "outpost_l1_evictions_total";
pub const L1_BYTES: &str = "outpost_l1_bytes";
pub const L1_ENTRIES: &str = "outpost_l1_entries";
pub const L1_BODY_FILES: &str = "outpost_l1_body_files";
pub const L1_BODY_FILE_BYTES: &str = "outpost_l1_body_file_bytes";
pub const INVALIDATIONS: &str = "outpost_invalidations_total";
pub const L2_LOOKUPS: &str = "outpost_l2_lookups_total";
pub const L2_OP_SECONDS: &str = "outpost_l2_op_seconds";
pub const L2_SERVER_ERRORS: &str = "outpost_l2_server_errors_total";
pub const L2_BREAKER_OPEN: &str = "outpost_l2_breaker_open";
pub const L2_WRITES: &str = "outpost_l2_writes_total";
pub const L2_WRITE_QUEUE_BYTES: &str = "outpost_l2_write_queue_bytes";
pub const PURGES: &str = "outpost_purges_total";
pub const PURGE_ENTRIES_APPLIED: &str = "outpost_purge_entries_applied_total";
pub const PURGE_LOG_GAPS: &str = "outpost_purge_log_gaps_total";
pub const PURGE_LAG_SECONDS: &str = "outpost_purge_lag_seconds";
pub const PURGE_MARKS: &str = "outpost_purge_marks";
pub const PURGE_FILTERED: &str = "outpost_purge_filtered_total";
pub const PURGE_FORWARDS: &str = "outpost_purge_forwards_total";
pub const INVALIDATIONS_SHARED: &str = "outpost_invalidations_shared_total";
pub const CLIENT_CONNECTIONS: &str = "outpost_client_connections";
pub const CONNECTIONS_REFUSED: &str = "outpost_connections_refused_total";
pub const CLIENT_ERRORS: &str = "outpost_client_errors_total";
pub const SITE_REQUESTS: &str = "outpost_site_requests_total";
pub const UNKNOWN_HOST_REQUESTS: &str = "outpost_unknown_host_requests_total";
pub const HIT_PATH_ANSWERS: &str = "outpost_hit_path_answers_total";
pub const ACCESS_LOG_DROPPED: &str = "outpost_access_log_dropped_total";
pub const TLS_HANDSHAKES: &str = "outpost_tls_handshakes_total";
pub const TLS_CERTIFICATE_EXPIRY: &str = "outpost_tls_certificate_expiry_seconds";
pub const CONFIG_RELOADS: &str = "outpost_config_reloads_total";

/// Sets `gauge` to a count, saturating where the count outgrows the gauge.
pub fn set_count(gauge: &IntGauge, n: impl TryInto<i64>) {
    gauge.set(n.try_into().unwrap_or(i64::MAX));
}

/// What became of a client request: the `cache` label of [`REQUESTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    /// Served stale (while revalidating, or because the origin failed).
    Stale,
    Miss,
    Revalidated,
    /// Cacheable, but the cache was not used for it (request directives, a body on a GET…).
    Bypass,
    /// Not for the cache (unsafe methods, PURGE, upgrades).
    Pass,
    Error,
    ClientError,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Revalidated,
        Outcome::Bypass,
        Outcome::Pass,
        Outcome::Error,
        Outcome::ClientError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Revalidated => "revalidated",
            Outcome::Bypass => "bypass",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
            Outcome::ClientError => "client_error",
        }
    }
}

/// What a client did wrong: the `kind` label of [`CLIENT_ERRORS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientErrorKind {
    BadRequest,
    BodyTimeout,
    Framing,
    HeadTimeout,
    Malformed,
}

impl ClientErrorKind {
    pub const ALL: [ClientErrorKind; 5] = [
        ClientErrorKind::BadRequest,
        ClientErrorKind::BodyTimeout,
        ClientErrorKind::Framing,
        ClientErrorKind::HeadTimeout,
        ClientErrorKind::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ClientErrorKind::BadRequest => "bad_request",
            ClientErrorKind::BodyTimeout => "body_timeout",
            ClientErrorKind::Framing => "framing",
            ClientErrorKind::HeadTimeout => "head_timeout",
            ClientErrorKind::Malformed => "malformed",
        }
    }
}

/// What became of an invalidation by an unsafe method: the `result` label of
/// [`INVALIDATIONS_SHARED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationShared {
    /// Written to the region's purge log.
    Logged,
    /// No tier held the URL: nothing for the region to drop.
    NotHeld,
    /// Over the client's rate: only this node invalidated.
    RateLimited,
}

impl InvalidationShared {
    pub const ALL: [InvalidationShared; 3] = [
        InvalidationShared::Logged,
        InvalidationShared::NotHeld,
        InvalidationShared::RateLimited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            InvalidationShared::Logged => "logged",
            InvalidationShared::NotHeld => "not_held",
            InvalidationShared::RateLimited => "rate_limited",
        }
    }
}

/// A tier lookup: the `result` label of [`L1_LOOKUPS`] and [`L2_LOOKUPS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// The tier could not say (L2: unreachable, late, unreadable).
    Error,
}

impl Lookup {
    pub fn label(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Error => "error",
        }
    }
}

/// A shared-tier write: the `result` label of [`L2_WRITES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Stored,
    /// Not attempted: the write queue was full.
    Dropped,
    Failed,
}

impl Write {
    pub fn label(self) -> &'static str {
        match self {
            Write::Stored => "stored",
            Write::Dropped => "dropped",
            Write::Failed => "failed",
        }
    }
}

/// Why L1 let an object go: the `cause` label of [`L1_EVICTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Room was needed.
    Size,
    /// It could no longer be used, even to revalidate.
    Expired,
}

impl Eviction {
    pub fn label(self) -> &'static str {
        match self {
            Eviction::Size => "size",
            Eviction::Expired => "expired",
        }
    }
}

/// A purge's kind: the `kind` label of [`PURGES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeKind {
    Hard,
    Soft,
}

impl PurgeKind {
    pub fn label(self) -> &'static str {
        match self {
            PurgeKind::Hard => "hard",
            PurgeKind::Soft => "soft",
        }
    }
}

/// One attempt to forward a purge to another region: the `result` label of [`PURGE_FORWARDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardResult {
    Ok,
    /// Failed; another attempt follows.
    Retry,
    /// Failed, and it was the last attempt.
    Failed,
}

impl ForwardResult {
    pub fn label(self) -> &'static str {
        match self {
            ForwardResult::Ok => "ok",
            ForwardResult::Retry => "retry",
            ForwardResult::Failed => "failed",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// [`Metrics::requests`] resolved per outcome once, not per request.
    by_outcome: Vec<IntCounter>,
    /// Client requests by how the cache handled them (`hit`, `stale`, `miss`, `revalidated`,
    /// `bypass`, `pass`, `error`, and `client_error`: refused for what the client sent, or the
    /// client broke off the exchange).
    pub requests: IntCounterVec,
    /// Origin responses by status class (`2xx` … `5xx`).
    pub origin_responses: IntCounterVec,
    /// Failed origin exchanges by kind (`connect`, `timeout`, `other`).
    pub origin_errors: IntCounterVec,
    /// Time from sending a request to the origin to receiving its response header.
    pub origin_seconds: Histogram,
    /// 1 per site and origin address that passes its health check, 0 otherwise.
    pub origin_healthy: IntGaugeVec,
    /// Client requests by `site` and cache `outcome` (the labels of [`REQUESTS`]).
    pub site_requests: IntCounterVec,
    /// Requests for a host no site claims (answered `server.unknown_host_status`).
    pub unknown_host_requests: IntCounter,
    /// Hits answered on the hit path (a subset of the `hit` outcome in [`REQUESTS`]).
    pub hit_path_answers: IntCounter,
    pub access_log_dropped: IntCounter,
    /// Finished TLS handshakes, by the `certificate` served (its first name).
    pub tls_handshakes: IntCounterVec,
    /// Seconds until each certificate in force expires (refreshed at every scrape).
    pub tls_certificate_expiry: IntGaugeVec,
    /// SIGHUP reloads, `applied` or `refused` (the old config kept serving).
    pub config_reloads: IntCounterVec,
    pub l1_lookups: IntCounterVec,
    pub l1_evictions: IntCounterVec,
    pub l1_bytes: IntGauge,
    pub l1_entries: IntGauge,
    /// L1 bodies kept in memory files (each an open file).
    pub l1_body_files: IntGauge,
    /// Bytes in those files (memory outside the heap: shared memory, in no RSS).
    pub l1_body_file_bytes: IntGauge,
    /// Objects removed because an unsafe method changed their URL (RFC 9111 §4.4).
    pub invalidations: IntCounter,
    /// Shared-tier lookups: `hit`, `miss`, `error` (an error or timeout is served as a miss).
    pub l2_lookups: IntCounterVec,
    /// Duration of each shared-tier operation.
    pub l2_op_seconds: HistogramVec,
    /// Failed or late operations per memcached server.
    pub l2_server_errors: IntCounterVec,
    /// 1 while a server's circuit breaker is open (or probing).
    pub l2_breaker_open: IntGaugeVec,
    /// Shared-tier writes: `stored`, `failed`, `dropped` (queue full).
    pub l2_writes: IntCounterVec,
    /// Bytes waiting to be written to the shared tier.
    pub l2_write_queue_bytes: IntGauge,
    /// Purges accepted by this node, `hard` or `soft`.
    pub purges: IntCounterVec,
    /// Purges applied by this node (its own and those read from the region's log).
    pub purge_entries_applied: IntCounter,
    /// Gaps found in the purge log (each drops L1 and revalidates older objects).
    pub purge_log_gaps: IntCounter,
    /// Time since this node last caught up with the region's purge log.
    pub purge_lag_seconds: prometheus::Gauge,
    /// URL, tag and prefix marks the purge filter holds.
    pub purge_marks: IntGauge,
    /// Hits the purge filter changed: `stale` (soft), `revalidate` (gap or lag), `gone` (hard).
    pub purge_filtered: IntCounterVec,
    /// Attempts to forward a purge to another region, by `region` and `result`.
    pub purge_forwards: IntCounterVec,
    /// URLs invalidated by unsafe methods, by whether the region was told: `logged` (in the
    /// purge log), `not_held` (no tier held them: nothing to tell), `rate_limited` (the client
    /// sent too many; only this node invalidated).
    pub invalidations_shared: IntCounterVec,
    /// Client connections open now.
    pub client_connections: IntGauge,
    /// Client connections refused, by `reason` (`too-many-connections`,
    /// `too-many-connections-from-client`).
    pub connections_refused: IntCounterVec,
    /// Requests refused for what the client sent, by `kind`: `bad_request` (target, Host,
    /// framing fields), `framing` (chunked framing RFC 9112 does not allow), `head_timeout` (a
    /// request head not sent in time), `body_timeout` (a request body sent too slowly),
    /// `malformed` (a head Pingora's parser refused).
    pub client_errors: IntCounterVec,
}

/// `metric`, registered with `r`: every metric is made this one way.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    registered(r, IntCounter::new(name, help)?)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    registered(r, IntGauge::new(name, help)?)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let origin_seconds = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(ORIGIN_SECONDS, "Origin response header latency").buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
        )?;
        let l2_op_seconds = registered(
            &r,
            HistogramVec::new(
                HistogramOpts::new(L2_OP_SECONDS, "Shared-tier operation latency per server")
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    ]),
                &["server"],
            )?,
        )?;
        let requests = counter_vec(&r, REQUESTS, "Client requests by cache outcome", &["cache"])?;
        let by_outcome = Outcome::ALL
            .iter()
            .map(|o| requests.with_label_values(&[o.label()]))
            .collect();
        Ok(Self {
            by_outcome,
            requests,
            origin_responses: counter_vec(
                &r,
                ORIGIN_RESPONSES,
                "Origin responses by status class",
                &["class"],
            )?,
            origin_errors: counter_vec(&r, ORIGIN_ERRORS, "Failed origin exchanges", &["kind"])?,
            origin_seconds,
            origin_healthy: gauge_vec(
                &r,
                ORIGIN_HEALTHY,
                "Origin passes health checks",
                &["site", "origin"],
            )?,
            site_requests: counter_vec(
                &r,
                SITE_REQUESTS,
                "Client requests by site and cache outcome",
                &["site", "cache"],
            )?,
            unknown_host_requests: counter(
                &r,
                UNKNOWN_HOST_REQUESTS,
                "Requests for a host no site claims",
            )?,
            hit_path_answers: counter(
                &r,
                HIT_PATH_ANSWERS,
                "Hits answered on the hit path, without a proxy session",
            )?,
            access_log_dropped: counter(
                &r,
                ACCESS_LOG_DROPPED,
                "Access lines dropped because the log's writer was behind (access_log.buffer_bytes full)",
            )?,
            tls_handshakes: counter_vec(
                &r,
                TLS_HANDSHAKES,
                "Finished TLS handshakes by certificate served",
                &["certificate"],
            )?,
            tls_certificate_expiry: gauge_vec(
                &r,
                TLS_CERTIFICATE_EXPIRY,
                "Seconds until the certificate expires",
                &["certificate"],
            )?,
            config_reloads: counter_vec(
                &r,
                CONFIG_RELOADS,
                "Config reloads (SIGHUP) by result",
                &["result"],
            )?,
            l1_lookups: counter_vec(&r, L1_LOOKUPS, "L1 lookups by result", &["result"])?,
            l1_evictions: counter_vec(
                &r,
                L1_EVICTIONS,
                "L1 entries dropped, by cause",
                &["cause"],
            )?,
            l1_bytes: gauge(&r, L1_BYTES, "Bytes held in L1")?,
            l1_entries: gauge(&r, L1_ENTRIES, "Objects held in L1")?,
            l1_body_files: gauge(
                &r,
                L1_BODY_FILES,
                "L1 bodies kept in memory files, sent by the kernel",
            )?,
            l1_body_file_bytes: gauge(
                &r,
                L1_BODY_FILE_BYTES,
                "Bytes of the L1 bodies kept in memory files",
            )?,
            invalidations: counter(&r, INVALIDATIONS, "Objects invalidated by unsafe methods")?,
            l2_lookups: counter_vec(&r, L2_LOOKUPS, "Shared-tier lookups by result", &["result"])?,
            l2_op_seconds,
            l2_server_errors: counter_vec(
                &r,
                L2_SERVER_ERRORS,
                "Shared-tier errors per server",
                &["server"],
            )?,
            l2_breaker_open: gauge_vec(
                &r,
                L2_BREAKER_OPEN,
                "Server circuit breaker open",
                &["server"],
            )?,
            l2_writes: counter_vec(&r, L2_WRITES, "Shared-tier writes by result", &["result"])?,
            l2_write_queue_bytes: gauge(
                &r,
                L2_WRITE_QUEUE_BYTES,
                "Bytes waiting to be written to the shared tier",
            )?,
            purges: counter_vec(&r, PURGES, "Purges accepted by this node", &["kind"])?,
            purge_entries_applied: counter(
                &r,
                PURGE_ENTRIES_APPLIED,
                "Purges applied by this node",
            )?,
            purge_log_gaps: counter(&r, PURGE_LOG_GAPS, "Gaps found in the purge log")?,
            purge_lag_seconds: registered(
                &r,
                prometheus::Gauge::new(
                    PURGE_LAG_SECONDS,
                    "Seconds since this node last caught up with the purge log",
                )?,
            )?,
            purge_marks: gauge(&r, PURGE_MARKS, "Marks held by the purge filter")?,
            purge_filtered: counter_vec(
                &r,
                PURGE_FILTERED,
                "Hits changed by the purge filter",
                &["verdict"],
            )?,
            purge_forwards: counter_vec(
                &r,
                PURGE_FORWARDS,
                "Purge forwarding attempts to other regions",
                &["region", "result"],
            )?,
            invalidations_shared: counter_vec(
                &r,
                INVALIDATIONS_SHARED,
                "URLs invalidated by unsafe methods, by whether the region was told",
                &["result"],
            )?,
            client_connections: gauge(&r, CLIENT_CONNECTIONS, "Client connections open")?,
            connections_refused: counter_vec(
                &r,
                CONNECTIONS_REFUSED,
                "Client connections refused, by reason",
                &["reason"],
            )?,
            client_errors: counter_vec(
                &r,
                CLIENT_ERRORS,
                "Requests refused for what the client sent, by kind",
                &["kind"],
            )?,
            registry: r,
        })
        .inspect(Self::vivify)
    }

    /// Series that exist from the start at zero, so a dashboard or alert sees them before
    /// their first event.
    fn vivify(&self) {
        for kind in ClientErrorKind::ALL {
            self.client_errors.with_label_values(&[kind.label()]);
        }
        for result in ["applied", "refused"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for result in InvalidationShared::ALL {
            self.invalidations_shared
                .with_label_values(&[result.label()]);
        }
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.origin_responses.with_label_values(&[class]);
        }
        for result in [Lookup::Hit, Lookup::Miss] {
            self.l1_lookups.with_label_values(&[result.label()]);
        }
        for result in [Lookup::Hit, Lookup::Miss, Lookup::Error] {
            self.l2_lookups.with_label_values(&[result.label()]);
        }
        for result in [Write::Stored, Write::Dropped, Write::Failed] {
            self.l2_writes.with_label_values(&[result.label()]);
        }
        for cause in [Eviction::Size, Eviction::Expired] {
            self.l1_evictions.with_label_values(&[cause.label()]);
        }
        for kind in [PurgeKind::Hard, PurgeKind::Soft] {
            self.purges.with_label_values(&[kind.label()]);
        }
        // `outpost_origin_errors_total{kind}` is vivified where the kinds are known
        // (`origin_fault`, from `lib.rs`), `outpost_purge_filtered_total{verdict}` by the
        // storage, and the per-site, per-server and per-region series when those are built.
        // `outpost_connections_refused_total{reason}`: resolved per reason when the client
        // listeners are built (`lib.rs`), so present from the start too.
    }

    /// Counts one client request with this outcome.
    pub fn request(&self, outcome: Outcome) {
        self.by_outcome[outcome as usize].inc();
    }

    /// The counter of one kind of client error.
    pub fn client_error(&self, kind: ClientErrorKind) -> IntCounter {
        self.client_errors.with_label_values(&[kind.label()])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_their_position_in_all() {
        // `Metrics::request` indexes the counters resolved from `Outcome::ALL` by discriminant.
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
    }
}
