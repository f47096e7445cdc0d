//! `edge.toml`: every key, its default and its check. `config/edge.example.toml` shows them all
//! with comments; `docs/configuration.md` is the reference.

use std::net::SocketAddr;

use outpost_common::access_log::AccessLogConfig;
use outpost_common::config::{self, ConfigError, ConfigErrors, Validate};
use serde::Deserialize;

use crate::names::{is_dns_name, is_simple_name};
use crate::tls::certs::{self, CertProblem, LoadedCert};

/// 256 MiB: a useful working set for a small node without crowding its other memory.
pub const DEFAULT_L1_CAPACITY: u64 = 256 * 1024 * 1024;
/// 8 MiB: photos and pages fit; video segments and archives stream through uncached.
pub const DEFAULT_L1_MAX_OBJECT: u64 = 8 * 1024 * 1024;
/// Bodies this large and larger are kept in memory files and sent by the kernel (sendfile).
pub const DEFAULT_L1_SENDFILE_MIN: u64 = 32 * 1024;
/// 16 KiB per client connection's read buffer: one TLS record, nginx's `client_body_buffer_size`
/// on 64-bit; Pingora's 64 KiB default made an idle keep-alive connection cost ~109 KiB of RSS
/// (benches/memory.sh).
pub const DEFAULT_READ_BUFFER_BYTES: usize = 16 * 1024;
/// 64 KiB: eight times nginx's default line limit; real browsers send a few KiB.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;
/// One year: the longest freshness RFC 9111 expects caches to honour.
pub const DEFAULT_MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// 10 s for a whole request head: a real client sends it in one packet; a slow-loris client
/// dribbling bytes loses its connection long before it can pile connections up.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT_MS: u64 = 10_000;
/// 60 s of idle keep-alive between requests (Pingora's and about nginx's default).
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECS: u64 = 60;
/// 20 s for a request body to start flowing, then a second more per `min_rate` bytes: Apache's
/// `mod_reqtimeout` defaults, which real uploads on slow links meet and a one-byte-a-minute
/// client does not.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u64 = 20_000;
pub const DEFAULT_REQUEST_BODY_MIN_RATE: u64 = 500;
/// 60 s for one write to a client to make progress (nginx's `send_timeout`): a client that
/// stops reading cannot hold its connection, or the origin's, for longer.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 60_000;
/// 256 connections per client address: far above a browser's 6 per host, room for a few dozen
/// users behind one NAT, and a bound on what one address can hold open.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Request fields that change what some origins answer without being part of the cache key:
/// method overrides, rewritten URLs, client addresses and hosts set by the client itself. The
/// edge sets `X-Forwarded-*` and `Forwarded` itself; these it removes.
pub const DEFAULT_STRIP_REQUEST_HEADERS: [&str; 40] = [
    // Rewritten URLs and methods.
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-method",
    // Client certificates and identities a TLS terminator in front would vouch for.
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-ssl-client-cert",
    "x-client-cert",
    "x-arr-clientcert",
    "x-client-verify",
    // Hosts, ports and schemes (the edge sets X-Forwarded-Host/-Proto and Forwarded itself).
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
    "x-original-host",
    "x-host",
    // Client addresses (the edge sets X-Forwarded-For itself).
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-originating-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-proxyuser-ip",
];

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub server: ServerConfig,
    /// The origins of a single-site edge, which serves every host (with `[[site]]` tables, each
    /// site names its own and this section must be absent).
    pub origin: Option<OriginPoolConfig>,
    pub cache: CacheConfig,
    pub l2: L2Config,
    pub admin: AdminConfig,
    pub purge: PurgeConfig,
    /// The sites this edge serves, each chosen by the request's host.
    pub site: Vec<SiteConfig>,
    /// One line per request: format and destination.
    pub access_log: AccessLogConfig,
}

/// One site: its host names, its origins and how its keys are made.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Its name, in metrics and logs.
    pub name: String,
    /// Host names it answers for: exact (`example.com`), a wildcard for one more label
    /// (`*.example.com`), or `*` for any host no other site claims.
    pub hosts: Vec<String>,
    /// Plain-HTTP requests get a redirect to the same URL over HTTPS.
    #[serde(default)]
    pub redirect_to_https: bool,
    #[serde(default)]
    pub origin: OriginPoolConfig,
    /// Its cache-key options; `[cache.key]` when absent.
    #[serde(default)]
    pub cache_key: Option<CacheKeyConfig>,
}

/// What a request for a host no site claims gets.
pub const UNKNOWN_HOST_STATUSES: [u16; 2] = [421, 404];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses the proxy accepts client traffic on.
    pub listen: Vec<SocketAddr>,
    /// Proxy worker threads; 0 means one per core.
    pub threads: usize,
    /// This node's name: in `Via`, `Cache-Status`, and the `Surrogate-Control` target it obeys.
    pub name: String,
    /// After SIGTERM, how long to keep serving while load balancers notice the node is going.
    pub grace_period_secs: u64,
    /// Then how long in-flight requests get to finish.
    pub graceful_shutdown_timeout_secs: u64,
    /// Largest request head (request line and fields) accepted; larger gets 431.
    pub max_request_header_bytes: usize,
    /// Longest time from a request's first byte (or a new connection) to the end of its head;
    /// a client slower than this loses the connection.
    pub request_head_timeout_ms: u64,
    /// How long an idle keep-alive connection waits for the client's next request.
    pub keepalive_timeout_secs: u64,
    /// Open client connections at most; more are refused with 503. 0: derived from the file
    /// descriptor limit (raised to its hard limit at start), leaving room for origin and
    /// memcached connections.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most; more are refused with 503.
    /// 0: no per-client limit.
    pub max_connections_per_client: usize,
    /// Networks of proxies in front of the edge whose `X-Forwarded-*` / `Forwarded` fields are
    /// kept (and extended). From anyone else those fields are replaced by the edge's own.
    pub trusted_proxies: Vec<String>,
    /// Request fields removed before a request reaches the cache or the origin (compared
    /// case-insensitively, `_` and `-` alike).
    pub strip_request_headers: Vec<String>,
    /// Remove every request field whose name has an underscore (as nginx does by default):
    /// CGI-style origins read `X_Forwarded_Host` as `X-Forwarded-Host`.
    pub drop_underscored_headers: bool,
    /// A request body must start within this long, and then…
    pub request_body_timeout_ms: u64,
    /// …keep up at least this many bytes per second (each such amount buys a second more);
    /// 0: the whole body within `request_body_timeout_ms`.
    pub request_body_min_rate: u64,
    /// A write to the client that makes no progress for this long closes the connection.
    pub send_timeout_ms: u64,
    /// A GET or HEAD with a body: `forward` it (never answered from or stored in the cache),
    /// or `reject` it with 400.
    pub get_with_body: GetWithBody,
    /// Bytes each client connection reads from its socket at a time (its read buffer, held
    /// while the connection is open) when the hit path is off; the hit path's loop has its
    /// own. Request heads are small; larger bodies take more reads.
    pub read_buffer_bytes: usize,
    /// Also speak HTTP/2 without TLS on the plain listeners (prior knowledge, "h2c": the client
    /// opens with the HTTP/2 preface; HTTP/1.1 clients are unaffected).
    pub h2c: bool,
    /// Answer fresh L1 hits on HTTP/1 connections on the hit path (the same answers, without a
    /// proxy session per request); off: every request goes through the proxy.
    pub hit_path: bool,
    /// The status for a request whose host no site claims: 421 (Misdirected Request) or 404.
    pub unknown_host_status: u16,
    /// Where a new process started with `--upgrade` waits for this one's listening sockets
    /// (SIGQUIT hands them over). Empty: SIGQUIT stops gracefully, nothing is handed over. Put it
    /// in a directory only the edge's user can write: whoever listens there gets the sockets.
    pub upgrade_socket: String,
    /// TLS listeners and their certificates.
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Addresses that accept TLS (1.2 and 1.3).
    pub listen: Vec<SocketAddr>,
    /// Offer HTTP/2 (ALPN `h2`) beside HTTP/1.1.
    pub http2: bool,
    /// Certificates, chosen per connection by the name the client asks for (SNI); the first is
    /// the default, for clients that send no name or one no certificate covers.
    pub certificates: Vec<CertificateConfig>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            http2: true,
            certificates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM: the certificate, then its intermediates. It serves the DNS names it lists.
    pub cert_file: String,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// What to do with a GET or HEAD that carries a body (RFC 9110 §9.3.1: no defined meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GetWithBody {
    /// Pass it to the origin untouched; the cache stays out of it.
    Forward,
    /// Refuse it with 400.
    Reject,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            threads: 0,
            name: "outpost".to_owned(),
            grace_period_secs: 5,
            graceful_shutdown_timeout_secs: 5,
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            request_head_timeout_ms: DEFAULT_REQUEST_HEAD_TIMEOUT_MS,
            keepalive_timeout_secs: DEFAULT_KEEPALIVE_TIMEOUT_SECS,
            max_connections: 0,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            trusted_proxies: Vec::new(),
            strip_request_headers: DEFAULT_STRIP_REQUEST_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            drop_underscored_headers: true,
            request_body_timeout_ms: DEFAULT_REQUEST_BODY_TIMEOUT_MS,
            request_body_min_rate: DEFAULT_REQUEST_BODY_MIN_RATE,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            get_with_body: GetWithBody::Forward,
            read_buffer_bytes: DEFAULT_READ_BUFFER_BYTES,
            h2c: false,
            hit_path: true,
            unknown_host_status: 421,
            upgrade_socket: String::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginPoolConfig {
    /// The origins, `address:port` or `name:port`; requests are spread round-robin over the
    /// healthy addresses. Names are resolved at start and every `dns_refresh_secs`; a name
    /// that stops resolving keeps its last addresses.
    pub addresses: Vec<String>,
    pub dns_refresh_secs: u64,
    /// Reach the origins over HTTPS, verifying their certificate.
    pub tls: bool,
    /// The name sent (SNI) and verified in the origin's certificate; by default the name in
    /// the address. Required for addresses given as IPs.
    pub sni: String,
    /// PEM file of the authorities that may sign the origin's certificate; empty: the system's.
    pub ca_file: String,
    pub connect_timeout_ms: u64,
    /// Longest wait for the origin's response header, and between body reads.
    pub read_timeout_ms: u64,
    pub write_timeout_ms: u64,
    /// How long an idle keep-alive connection to an origin is kept for reuse.
    pub idle_timeout_secs: u64,
    /// HTTP path probed for health (`GET`, 2xx = healthy); empty probes with a TCP connect.
    pub health_check_path: String,
    pub health_check_interval_ms: u64,
}

impl Default for OriginPoolConfig {
    fn default() -> Self {
        Self {
            addresses: vec!["127.0.0.1:8081".to_owned()],
            dns_refresh_secs: 30,
            tls: false,
            sni: String::new(),
            ca_file: String::new(),
            connect_timeout_ms: 2_000,
            read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            idle_timeout_secs: 60,
            health_check_path: "/healthz".to_owned(),
            health_check_interval_ms: 1_000,
        }
    }
}

/// What to do with a cacheable response that sets a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetCookiePolicy {
    /// Do not store it (the safe default: cookies are usually per user).
    Bypass,
    /// Store it without its `Set-Cookie` header fields.
    Strip,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Off: every request goes to the origin (the proxy still adds `Cache-Status`).
    pub enabled: bool,
    /// Freshness given to a storable response with no explicit freshness and no Last-Modified
    /// (heuristically cacheable statuses only). 0: such responses are kept only to revalidate.
    pub default_ttl_secs: u64,
    /// Upper bound on any freshness lifetime, explicit or heuristic.
    pub max_ttl_secs: u64,
    /// Upper bound on heuristic freshness (10% of the time since Last-Modified).
    pub heuristic_max_secs: u64,
    /// Kept past staleness so an object can be revalidated with a 304 instead of refetched.
    pub grace_secs: u64,
    /// stale-while-revalidate window when the origin sets none (RFC 9111 §4.2.4 allows serving
    /// stale by configuration). Never applied to must-revalidate, proxy-revalidate or s-maxage.
    pub stale_while_revalidate_secs: u64,
    /// stale-if-error window when the origin sets none; same exceptions.
    pub stale_if_error_secs: u64,
    /// Upper bound on any stale window, so a huge origin value cannot pin memory.
    pub max_stale_secs: u64,
    pub set_cookie: SetCookiePolicy,
    /// Most variants (per `Vary`) kept for one URL; more are served but not stored.
    pub max_variants: usize,
    /// How long requests for the same missing object wait for the one fetching it, and how long
    /// that fetch may hold them before they try themselves.
    pub lock_timeout_ms: u64,
    /// Honour the client's `Cache-Control: no-cache` / `max-age=0` (RFC 9111). Off protects the
    /// origin from reload storms, as many CDNs do.
    pub honor_client_no_cache: bool,
    /// Store answers to requests carrying `Cookie` or `Authorization` that give no explicit
    /// freshness (heuristic or default TTL, or only a validator). Off: a response that depends
    /// on who asks is shared only when the origin says so (`max-age`, `s-maxage`, `public`…).
    pub heuristics_with_credentials: bool,
    pub l1: L1Config,
    pub key: CacheKeyConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_ttl_secs: 0,
            max_ttl_secs: DEFAULT_MAX_TTL_SECS,
            heuristic_max_secs: 24 * 3600,
            grace_secs: 60,
            stale_while_revalidate_secs: 0,
            stale_if_error_secs: 300,
            max_stale_secs: 7 * 24 * 3600,
            set_cookie: SetCookiePolicy::Bypass,
            max_variants: 16,
            lock_timeout_ms: 5_000,
            honor_client_no_cache: true,
            heuristics_with_credentials: false,
            l1: L1Config::default(),
            key: CacheKeyConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L1Config {
    /// Bytes of bodies and headers the in-process tier holds before evicting.
    pub capacity_bytes: u64,
    /// Largest object the in-process tier stores; larger responses stream through uncached.
    pub max_object_bytes: u64,
    /// Bodies at least this large are kept in memory files that the hit path hands to the
    /// kernel to send (`sendfile`) on plain-HTTP connections; 0: every body on the heap.
    pub sendfile_min_bytes: u64,
}

impl Default for L1Config {
    fn default() -> Self {
        Self {
            capacity_bytes: DEFAULT_L1_CAPACITY,
            max_object_bytes: DEFAULT_L1_MAX_OBJECT,
            sendfile_min_bytes: DEFAULT_L1_SENDFILE_MIN,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheKeyConfig {
    /// Sort query parameters so `?a=1&b=2` and `?b=2&a=1` share an entry.
    pub sort_query: bool,
    /// Query parameters left out of the key (exact names, or a prefix ending in `*`). They are
    /// still sent to the origin.
    pub drop_params: Vec<String>,
}

impl Default for CacheKeyConfig {
    fn default() -> Self {
        Self {
            sort_query: true,
            drop_params: ["utm_*", "fbclid", "gclid", "mc_eid"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The shared tier: a memcached pool every edge node of the region uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L2Config {
    /// The region's memcached servers, `ip:port` or `name:port` (the same list, in any order,
    /// on every node: the text is each server's identity in routing). Names are resolved at
    /// start and every `dns_refresh_secs`; one that stops resolving keeps its last address.
    /// Empty: no shared tier.
    pub servers: Vec<String>,
    pub dns_refresh_secs: u64,
    /// Key prefix; change it to start the region on a cold cache.
    pub namespace: String,
    /// Deadline of one small operation (a manifest read or write, a delete).
    pub deadline_ms: u64,
    /// Deadline of one chunk read or write.
    pub chunk_deadline_ms: u64,
    /// Largest object stored in the shared tier.
    pub max_object_bytes: u64,
    /// Bodies up to this size travel inside the manifest; larger ones in chunks.
    pub inline_max_bytes: u64,
    /// Chunk size: under memcached's 1 MiB item limit with room for the key and overhead.
    pub chunk_bytes: u64,
    /// Bytes of pending writes held in memory; a write that would exceed it is dropped.
    pub write_queue_bytes: u64,
    /// Objects written to the shared tier at once.
    pub write_concurrency: usize,
    /// Consecutive failures that open a server's circuit breaker…
    pub breaker_failures: u32,
    /// …and how long it stays open before one probe may close it.
    pub breaker_open_ms: u64,
    /// Connections per memcached server.
    pub max_connections_per_server: usize,
}

impl Default for L2Config {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            dns_refresh_secs: 30,
            namespace: "outpost".to_owned(),
            deadline_ms: 5,
            chunk_deadline_ms: 50,
            max_object_bytes: 8 * 1024 * 1024,
            inline_max_bytes: 64 * 1024,
            chunk_bytes: 508 * 1024,
            write_queue_bytes: 64 * 1024 * 1024,
            write_concurrency: 8,
            breaker_failures: 5,
            breaker_open_ms: 1_000,
            max_connections_per_server: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin listener (health, metrics, purge); loopback by default.
    pub listen: SocketAddr,
    /// Bearer token for the purge API (and `PURGE` without an allowed network). Empty: purging
    /// is refused.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeConfig {
    /// This node's region: in receipts, and how other regions address it.
    pub region: String,
    /// How often the node reads the region's purge log.
    pub poll_interval_ms: u64,
    /// Not synced with the log for this long: nothing is served from cache unrevalidated.
    pub max_lag_ms: u64,
    /// memcached servers holding a copy of the purge log (at most the pool's size).
    pub log_replicas: usize,
    /// Clock difference tolerated between nodes: objects stored this soon after a purge (by
    /// another node's clock) count as purged too.
    pub clock_skew_ms: u64,
    /// Longest `wait: true` before the receipt is returned as it stands.
    pub max_wait_ms: u64,
    /// Networks allowed to send `PURGE` on the proxy listener without the token.
    pub allow_networks: Vec<String>,
    /// Attempts to forward a purge to another region before giving up.
    pub forward_attempts: u32,
    /// Invalidations (RFC 9111 §4.4) one client may add to the region's purge log per second…
    pub invalidations_per_client_per_sec: u32,
    /// …and in one burst. Beyond them the node still invalidates its own copy.
    pub invalidation_burst: u32,
    /// One admin endpoint per other region.
    pub regions: Vec<RegionConfig>,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            region: "local".to_owned(),
            poll_interval_ms: 100,
            max_lag_ms: 2_000,
            log_replicas: 2,
            clock_skew_ms: 0,
            max_wait_ms: 5_000,
            allow_networks: Vec::new(),
            forward_attempts: 8,
            invalidations_per_client_per_sec: 10,
            invalidation_burst: 100,
            regions: Vec::new(),
        }
    }
}

/// `10.0.0.0/8`, or a single address.
pub fn parse_network(n: &str) -> Option<ipnet::IpNet> {
    n.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| n.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// That region's admin API, e.g. `http://10.1.0.5:9091`.
    pub admin_url: String,
    /// Its admin token.
    pub token: String,
}

impl EdgeConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        config::from_str(text)
    }
}

impl EdgeConfig {
    /// Every address the proxy listens on, plain and TLS.
    pub fn proxy_listeners(&self) -> impl Iterator<Item = &SocketAddr> {
        let tls = self.server.tls.as_ref().map_or(&[][..], |t| &t.listen[..]);
        self.server.listen.iter().chain(tls)
    }

    /// The sites to serve: the `[[site]]` tables, or the one site of `[origin]` and
    /// `[cache.key]` that answers every host.
    pub fn sites(&self) -> Vec<SiteConfig> {
        if !self.site.is_empty() {
            return self.site.clone();
        }
        vec![SiteConfig {
            name: "default".to_owned(),
            hosts: vec!["*".to_owned()],
            redirect_to_https: false,
            origin: self.origin.clone().unwrap_or_default(),
            cache_key: None,
        }]
    }

    fn validate_sites(&self, certs: &[LoadedCert], v: &mut Checker<'_>) {
        if self.site.is_empty() {
            if let Some(origin) = &self.origin {
                origin.validate("origin", v);
            }
            return;
        }
        v.check(
            self.origin.is_none(),
            "origin",
            "must be absent when [[site]] tables are given: each site has its own \
             [site.origin]; move these keys there",
        );
        let mut names = std::collections::HashSet::new();
        let mut hosts = std::collections::HashMap::new();
        for (i, site) in self.site.iter().enumerate() {
            let at = format!("site[{i}]");
            v.check(
                is_simple_name(&site.name, 64) && names.insert(site.name.as_str()),
                &format!("{at}.name"),
                "must be a unique name of 1 to 64 letters, digits, - _ .",
            );
            v.check(
                !site.hosts.is_empty(),
                &format!("{at}.hosts"),
                "needs at least one host name",
            );
            for (j, host) in site.hosts.iter().enumerate() {
                let key = format!("{at}.hosts[{j}]");
                if !host_pattern_ok(host) {
                    v.check(
                        false,
                        &key,
                        "must be a lower-case host name without port, `*.` and a name, or `*`",
                    );
                    continue;
                }
                if let Some(other) = hosts.insert(host.as_str(), i) {
                    v.check(
                        false,
                        &key,
                        &format!("{host} is already a host of site[{other}]"),
                    );
                }
                let tls = self.server.tls.is_some() && !certs.is_empty();
                v.check(
                    !tls || host == "*" || certs.iter().any(|c| c.covers(host)),
                    &key,
                    &format!("{host} is covered by no certificate in server.tls.certificates"),
                );
            }
            v.check(
                !site.redirect_to_https || self.server.tls.is_some(),
                &format!("{at}.redirect_to_https"),
                "needs [server.tls] listeners to redirect to",
            );
            site.origin.validate(&format!("{at}.origin"), v);
            if let Some(key) = &site.cache_key {
                key.validate(&format!("{at}.cache_key"), v);
            }
        }
    }
}

/// A site's host: a lower-case DNS name, `*.` and one, or `*` alone.
fn host_pattern_ok(host: &str) -> bool {
    host == "*"
        || is_dns_name(host.strip_prefix("*.").unwrap_or(host)) && host == host.to_ascii_lowercase()
}

/// `ip:port`, `[ipv6]:port` or `name:port`.
pub fn address_ok(address: &str) -> bool {
    if address.parse::<SocketAddr>().is_ok() {
        return true;
    }
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| is_dns_name(host) && port.parse::<u16>().is_ok_and(|p| p > 0))
}

impl TlsConfig {
    /// Checks the listeners and loads every certificate (those that load are returned, to check
    /// the sites' hosts against).
    fn validate(&self, v: &mut Checker<'_>) -> Vec<LoadedCert> {
        v.check(
            !self.listen.is_empty(),
            "server.tls.listen",
            "needs at least one address",
        );
        v.check(
            !self.certificates.is_empty(),
            "server.tls.certificates",
            "needs at least one certificate",
        );
        let now = std::time::SystemTime::now();
        let mut loaded = Vec::new();
        for (i, c) in self.certificates.iter().enumerate() {
            match certs::load(&c.cert_file, &c.key_file, now) {
                Ok(cert) => loaded.push(cert),
                Err(CertProblem::Cert(why)) => v.check(
                    false,
                    &format!("server.tls.certificates[{i}].cert_file"),
                    &why,
                ),
                Err(CertProblem::Key(why)) => v.check(
                    false,
                    &format!("server.tls.certificates[{i}].key_file"),
                    &why,
                ),
            }
        }
        loaded
    }
}

impl Validate for EdgeConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        let v = &mut Checker(errors);
        self.server.validate(v);
        let certs = match &self.server.tls {
            Some(tls) => tls.validate(v),
            None => Vec::new(),
        };
        self.validate_sites(&certs, v);
        self.cache.validate(v);
        let mut seen = std::collections::HashSet::new();
        v.check(
            self.proxy_listeners().all(|a| seen.insert(*a)),
            "server.tls.listen",
            "lists an address server.listen (or itself) already has",
        );
        v.check(
            !seen.contains(&self.admin.listen),
            "admin.listen",
            "must differ from every server.listen and server.tls.listen",
        );
        v.check(
            token_ok(&self.admin.token),
            "admin.token",
            "must be printable ASCII without spaces",
        );
        self.purge.validate(v);
        self.l2.validate(v);
        self.access_log.validate("access_log", v.0);
    }
}

/// Collects what is wrong, one key at a time.
struct Checker<'a>(&'a mut Vec<ConfigError>);

impl Checker<'_> {
    fn check(&mut self, ok: bool, key: &str, problem: &str) {
        if !ok {
            self.0.push(ConfigError::new(key, problem));
        }
    }
}

/// A token as a header carries it: printable ASCII, no spaces.
fn token_ok(t: &str) -> bool {
    t.bytes().all(|b| b.is_ascii_graphic())
}

impl ServerConfig {
    fn validate(&self, v: &mut Checker<'_>) {
        let s = self;
        v.check(
            !s.listen.is_empty() || s.tls.as_ref().is_some_and(|t| !t.listen.is_empty()),
            "server.listen",
            "needs at least one address (here or in server.tls.listen)",
        );
        v.check(
            (1024..=1 << 20).contains(&s.read_buffer_bytes),
            "server.read_buffer_bytes",
            "must be between 1024 and 1048576",
        );
        v.check(
            UNKNOWN_HOST_STATUSES.contains(&s.unknown_host_status),
            "server.unknown_host_status",
            "must be 421 or 404",
        );
        v.check(
            s.upgrade_socket.is_empty() || s.upgrade_socket.starts_with('/'),
            "server.upgrade_socket",
            "must be an absolute path (or empty: no upgrades)",
        );
        v.check(s.threads <= 1_024, "server.threads", "must be at most 1024");
        v.check(
            (1024..=1_048_575).contains(&s.max_request_header_bytes),
            "server.max_request_header_bytes",
            "must be between 1024 and 1048575 (Pingora's own limit)",
        );
        v.check(
            is_simple_name(&s.name, usize::MAX),
            "server.name",
            "must be a non-empty token (letters, digits, - _ .)",
        );
        v.check(
            (100..=600_000).contains(&s.request_head_timeout_ms),
            "server.request_head_timeout_ms",
            "must be between 100 and 600000",
        );
        v.check(
            (1..=3_600).contains(&s.keepalive_timeout_secs),
            "server.keepalive_timeout_secs",
            "must be between 1 and 3600",
        );
        v.check(
            (100..=600_000).contains(&s.request_body_timeout_ms),
            "server.request_body_timeout_ms",
            "must be between 100 and 600000",
        );
        v.check(
            (1_000..=3_600_000).contains(&s.send_timeout_ms),
            "server.send_timeout_ms",
            "must be between 1000 and 3600000",
        );
        v.check(
            s.max_connections == 0 || s.max_connections >= 16,
            "server.max_connections",
            "must be 0 (derived from the file limit) or at least 16",
        );
        for (i, n) in s.trusted_proxies.iter().enumerate() {
            v.check(
                parse_network(n).is_some(),
                &format!("server.trusted_proxies[{i}]"),
                "must be a network (10.0.0.0/8) or an address",
            );
        }
        for (i, h) in s.strip_request_headers.iter().enumerate() {
            let name = h.to_ascii_lowercase();
            v.check(
                http::HeaderName::from_bytes(h.as_bytes()).is_ok()
                    && !["host", "content-length", "transfer-encoding", "connection"]
                        .contains(&name.as_str()),
                &format!("server.strip_request_headers[{i}]"),
                "must be a field name, and not one that frames or routes the request",
            );
        }
    }
}

impl OriginPoolConfig {
    fn validate(&self, at: &str, v: &mut Checker<'_>) {
        let o = self;
        let key = |k: &str| format!("{at}.{k}");
        v.check(
            !o.addresses.is_empty(),
            &key("addresses"),
            "needs at least one origin",
        );
        for (i, a) in o.addresses.iter().enumerate() {
            v.check(
                address_ok(a),
                &key(&format!("addresses[{i}]")),
                "must be ip:port, [ipv6]:port or name:port",
            );
        }
        let by_ip = o.addresses.iter().any(|a| a.parse::<SocketAddr>().is_ok());
        v.check(
            !o.tls || !by_ip || is_dns_name(&o.sni),
            &key("sni"),
            "must name the origin's certificate when tls is on and an address is an IP",
        );
        v.check(
            o.sni.is_empty() || is_dns_name(&o.sni),
            &key("sni"),
            "must be a host name",
        );
        if !o.ca_file.is_empty() {
            if let Err(why) = certs::load_authorities(&o.ca_file) {
                v.check(false, &key("ca_file"), &why);
            }
            v.check(o.tls, &key("ca_file"), "is only used with tls = true");
        }
        v.check(
            (1..=86_400).contains(&o.dns_refresh_secs),
            &key("dns_refresh_secs"),
            "must be between 1 and 86400",
        );
        for (name, value) in [
            ("connect_timeout_ms", o.connect_timeout_ms),
            ("read_timeout_ms", o.read_timeout_ms),
            ("write_timeout_ms", o.write_timeout_ms),
        ] {
            v.check(value >= 1, &key(name), "must be at least 1");
        }
        v.check(
            o.health_check_path.is_empty() || o.health_check_path.starts_with('/'),
            &key("health_check_path"),
            "must be empty (TCP checks) or start with /",
        );
        v.check(
            o.health_check_interval_ms >= 10,
            &key("health_check_interval_ms"),
            "must be at least 10",
        );
    }
}

impl CacheKeyConfig {
    fn validate(&self, at: &str, v: &mut Checker<'_>) {
        for (i, p) in self.drop_params.iter().enumerate() {
            let name = p.strip_suffix('*').unwrap_or(p);
            v.check(
                !name.is_empty() && !name.contains(['*', '&', '=']),
                &format!("{at}.drop_params[{i}]"),
                "must be a parameter name, optionally ending in * (a prefix)",
            );
        }
    }
}

impl CacheConfig {
    fn validate(&self, v: &mut Checker<'_>) {
        let c = self;
        v.check(
            c.max_ttl_secs >= 1,
            "cache.max_ttl_secs",
            "must be at least 1",
        );
        v.check(
            c.default_ttl_secs <= c.max_ttl_secs,
            "cache.default_ttl_secs",
            "must not exceed cache.max_ttl_secs",
        );
        v.check(
            c.max_variants >= 1,
            "cache.max_variants",
            "must be at least 1",
        );
        v.check(
            c.lock_timeout_ms >= 1,
            "cache.lock_timeout_ms",
            "must be at least 1",
        );
        v.check(
            c.l1.capacity_bytes >= 1024 * 1024,
            "cache.l1.capacity_bytes",
            "must be at least 1 MiB",
        );
        v.check(
            c.l1.max_object_bytes >= 1 && c.l1.max_object_bytes <= c.l1.capacity_bytes / 4,
            "cache.l1.max_object_bytes",
            "must be at least 1 and at most a quarter of cache.l1.capacity_bytes",
        );
        c.key.validate("cache.key", v);
    }
}

impl PurgeConfig {
    fn validate(&self, v: &mut Checker<'_>) {
        let p = self;
        v.check(
            is_simple_name(&p.region, usize::MAX),
            "purge.region",
            "must be a non-empty token (letters, digits, - _ .)",
        );
        v.check(
            (10..=10_000).contains(&p.poll_interval_ms),
            "purge.poll_interval_ms",
            "must be between 10 and 10000",
        );
        v.check(
            p.max_lag_ms >= 2 * p.poll_interval_ms,
            "purge.max_lag_ms",
            "must be at least twice purge.poll_interval_ms",
        );
        v.check(
            p.log_replicas >= 1,
            "purge.log_replicas",
            "must be at least 1",
        );
        v.check(
            p.clock_skew_ms <= 10_000,
            "purge.clock_skew_ms",
            "must be at most 10000",
        );
        v.check(
            (1..=60_000).contains(&p.max_wait_ms),
            "purge.max_wait_ms",
            "must be between 1 and 60000",
        );
        v.check(
            p.invalidations_per_client_per_sec >= 1,
            "purge.invalidations_per_client_per_sec",
            "must be at least 1",
        );
        v.check(
            p.invalidation_burst >= 1,
            "purge.invalidation_burst",
            "must be at least 1",
        );
        for (i, n) in p.allow_networks.iter().enumerate() {
            v.check(
                parse_network(n).is_some(),
                &format!("purge.allow_networks[{i}]"),
                "must be a network (10.0.0.0/8) or an address",
            );
        }
        for (i, r) in p.regions.iter().enumerate() {
            v.check(
                !r.name.is_empty() && r.name != p.region,
                &format!("purge.regions[{i}].name"),
                "must be set and differ from purge.region",
            );
            v.check(
                r.admin_url.starts_with("http://") || r.admin_url.starts_with("https://"),
                &format!("purge.regions[{i}].admin_url"),
                "must be an http:// or https:// URL",
            );
            v.check(
                !r.token.is_empty() && token_ok(&r.token),
                &format!("purge.regions[{i}].token"),
                "must be set (printable ASCII without spaces)",
            );
        }
    }
}

impl L2Config {
    fn validate(&self, v: &mut Checker<'_>) {
        let l2 = self;
        let mut seen = std::collections::HashSet::new();
        v.check(
            l2.servers.iter().all(|a| seen.insert(a)),
            "l2.servers",
            "lists a server twice",
        );
        for (i, a) in l2.servers.iter().enumerate() {
            v.check(
                address_ok(a),
                &format!("l2.servers[{i}]"),
                "must be ip:port, [ipv6]:port or name:port",
            );
        }
        v.check(
            (1..=86_400).contains(&l2.dns_refresh_secs),
            "l2.dns_refresh_secs",
            "must be between 1 and 86400",
        );
        v.check(
            is_simple_name(&l2.namespace, 32),
            "l2.namespace",
            "must be 1 to 32 letters, digits, - _ .",
        );
        v.check(l2.deadline_ms >= 1, "l2.deadline_ms", "must be at least 1");
        v.check(
            l2.chunk_deadline_ms >= 1,
            "l2.chunk_deadline_ms",
            "must be at least 1",
        );
        v.check(
            (64 * 1024..=1_000_000).contains(&l2.chunk_bytes),
            "l2.chunk_bytes",
            "must be between 64 KiB and 1000000 bytes (memcached's item limit is 1 MiB with its overhead)",
        );
        v.check(
            l2.inline_max_bytes <= l2.chunk_bytes,
            "l2.inline_max_bytes",
            "must not exceed l2.chunk_bytes",
        );
        v.check(
            l2.max_object_bytes >= 1,
            "l2.max_object_bytes",
            "must be at least 1",
        );
        v.check(
            l2.write_queue_bytes >= l2.max_object_bytes,
            "l2.write_queue_bytes",
            "must hold at least one object of l2.max_object_bytes",
        );
        v.check(
            l2.write_concurrency >= 1,
            "l2.write_concurrency",
            "must be at least 1",
        );
        v.check(
            l2.breaker_failures >= 1,
            "l2.breaker_failures",
            "must be at least 1",
        );
        v.check(
            l2.breaker_open_ms >= 1,
            "l2.breaker_open_ms",
            "must be at least 1",
        );
        v.check(
            l2.max_connections_per_server >= 1,
            "l2.max_connections_per_server",
            "must be at least 1",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = EdgeConfig::from_toml("").expect("valid");
        assert_eq!(c.sites().len(), 1);
        assert_eq!(c.sites()[0].origin.addresses.len(), 1);
        assert_eq!(c.cache.set_cookie, SetCookiePolicy::Bypass);
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = EdgeConfig::from_toml(
            "[server]\nlisten = []\nthreds = 2\n[origin]\naddresses = [\"nowhere\"]\n\
             [cache]\nset_cookie = \"eat\"\nmax_variants = 0\n[cache.l1]\nmax_object_bytes = 0\n\
             [cache.key]\ndrop_params = [\"a=b\"]\n",
        )
        .expect_err("bad");
        for key in [
            "server.listen",
            "server.threds",
            "origin.addresses[0]",
            "cache.set_cookie",
            "cache.max_variants",
            "cache.l1.max_object_bytes",
            "cache.key.drop_params[0]",
        ] {
            assert!(err.names(key), "{key} not named in {err}");
        }
    }

    #[test]
    fn sites_are_checked_key_by_key() {
        let err = EdgeConfig::from_toml(
            "[server]\nunknown_host_status = 500\nupgrade_socket = \"relative.sock\"\n\
             read_buffer_bytes = 10\n\
             [origin]\naddresses = [\"127.0.0.1:1\"]\n\
             [[site]]\nname = \"a\"\nhosts = [\"a.test\", \"A.test\", \"a.test:80\"]\n\
             redirect_to_https = true\n\
             [site.origin]\naddresses = [\"10.0.0.1:443\", \"origin.test:0\"]\ntls = true\n\
             [[site]]\nname = \"a\"\nhosts = [\"a.test\", \"*\"]\n\
             [site.cache_key]\ndrop_params = [\"=\"]\n",
        )
        .expect_err("bad");
        for key in [
            "server.unknown_host_status",
            "server.upgrade_socket",
            "server.read_buffer_bytes",
            "origin",
            "site[0].hosts[1]",
            "site[0].hosts[2]",
            "site[0].redirect_to_https",
            "site[0].origin.addresses[1]",
            "site[0].origin.sni",
            "site[1].name",
            "site[1].hosts[0]",
            "site[1].cache_key.drop_params[0]",
        ] {
            assert!(err.names(key), "{key} not named in {err}");
        }
        assert!(
            !err.names("site[1].hosts[1]"),
            "one catch-all is fine: {err}"
        );
    }

    #[test]
    fn tls_listeners_need_certificates_that_load() {
        let err = EdgeConfig::from_toml(
            "[server]\nlisten = []\n[server.tls]\nlisten = []\n\
             [[server.tls.certificates]]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/k.pem\"\n",
        )
        .expect_err("bad");
        for key in [
            "server.listen",
            "server.tls.listen",
            "server.tls.certificates[0].cert_file",
        ] {
            assert!(err.names(key), "{key} not named in {err}");
        }
        let names = |text: &str| EdgeConfig::from_toml(text).map(|c| c.sites().len());
        assert_eq!(
            names("[[site]]\nname = \"a\"\nhosts = [\"*\"]\n"),
            Ok(1),
            "a site with the default origin"
        );
    }

    #[test]
    fn bad_shared_tier_keys_are_named() {
        let err = EdgeConfig::from_toml(
            "[l2]\nservers = [\"127.0.0.1:11211\", \"127.0.0.1:11211\"]\nnamespace = \"a b\"\n\
             chunk_bytes = 2000000\ndeadline_ms = 0\nwrite_queue_bytes = 10\nsevers = []\n",
        )
        .expect_err("bad");
        for key in [
            "l2.servers",
            "l2.namespace",
            "l2.chunk_bytes",
            "l2.deadline_ms",
            "l2.write_queue_bytes",
            "l2.severs",
        ] {
            assert!(err.names(key), "{key} not named in {err}");
        }
        let err = EdgeConfig::from_toml("[l2]\nservers = [\"memcached\"]\n").expect_err("bad");
        assert!(err.names("l2.servers[0]"), "{err}");
    }
}
