//! A site's origin pool: round-robin over the healthy addresses, each health-checked (an HTTP
//! `GET` of `health_check_path`, or a TCP connect), names re-resolved every `dns_refresh_secs`
//! ([`Resolve`]: a name that stops resolving keeps its last addresses); and what the edge adds to
//! requests on their way to an origin (`Via`, `X-Forwarded-*`, `Forwarded`).
//!
//! Pools are kept (resolved, checked) by [`Origins::keep`], one task per pool that ends when the
//! pool is dropped: a reload that replaces a site's pool retires the old one's task with it.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderName;
use parking_lot::Mutex;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::WrappedX509;
use pingora_error::{Error, ErrorSource, ErrorType, OrErr, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::{
    HealthCheck, HealthObserve, HealthObserveCallback, HttpHealthCheck, TcpHealthCheck,
};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

use crate::client::Client;
use crate::metrics::Metrics;
use crate::settings::OriginSettings;
use crate::target::Target;

/// Longest a name lookup may take: a stuck resolver must not stall the pool's health checks.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Authorities an origin's certificate must chain to, in Pingora's form.
type Authorities = Arc<[WrappedX509]>;

pub struct Origins {
    lb: LoadBalancer<RoundRobin>,
    config: OriginSettings,
    /// The site's name, for logs and the health metric.
    site: String,
    authorities: Option<Authorities>,
    /// A keeper task runs (a pool kept across a reload is kept by one task, not two).
    kept: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The host name an address was resolved from (the TLS server name when `sni` is not set).
#[derive(Clone, Debug)]
struct ResolvedFrom(Arc<str>);

/// Mirrors health changes into `outpost_origin_healthy` and the log.
struct HealthMetrics {
    metrics: Arc<Metrics>,
    site: String,
}

#[async_trait]
impl HealthObserve for HealthMetrics {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let addr = target.addr.to_string();
        self.metrics
            .origin_healthy
            .with_label_values(&[&self.site, &addr])
            .set(i64::from(healthy));
        if healthy {
            tracing::info!(site = %self.site, origin = %addr, "origin healthy");
        } else {
            tracing::warn!(site = %self.site, origin = %addr, "origin failed its health check");
        }
    }
}

/// HTTP health checks that ask each address as the name it was resolved from (its `Host` and,
/// over TLS, its SNI and verified name), or as `sni` when set: one check per name, since
/// Pingora's check carries one name for the whole pool.
struct HttpChecks {
    /// By the name an address came from; `None` for addresses given as IPs.
    by_name: HashMap<Option<Arc<str>>, HttpHealthCheck>,
    observer: HealthObserveCallback,
}

impl HttpChecks {
    fn new(
        config: &OriginSettings,
        path: &str,
        authorities: Option<&Authorities>,
        observer: HealthObserveCallback,
    ) -> Result<Self> {
        let uri: http::Uri = path
            .parse()
            .or_err(ErrorType::InternalError, "health check path")?;
        let check = |host: &str| {
            let mut hc = HttpHealthCheck::new(host, config.tls);
            hc.req.set_uri(uri.clone());
            hc.peer_template.options.connection_timeout = Some(config.connect_timeout);
            hc.peer_template.options.ca = authorities.cloned();
            // Any 2xx is healthy (Pingora's own check wants exactly 200).
            hc.validator = Some(Box::new(|resp| {
                if resp.status.is_success() {
                    Ok(())
                } else {
                    Error::e_explain(
                        ErrorType::CustomCode("health check status", resp.status.as_u16()),
                        "during the HTTP health check",
                    )
                }
            }));
            hc
        };
        let mut by_name = HashMap::new();
        by_name.insert(None, check(config.check_host()));
        for entry in &config.addresses {
            if entry.parse::<SocketAddr>().is_ok() {
                continue;
            }
            let name = entry.rsplit_once(':').map_or(entry.as_str(), |(h, _)| h);
            let host = config.sni.as_deref().unwrap_or(name);
            by_name.insert(Some(Arc::from(name)), check(host));
        }
        Ok(Self { by_name, observer })
    }
}

#[async_trait]
impl HealthCheck for HttpChecks {
    async fn check(&self, target: &Backend) -> Result<()> {
        let name = target.ext.get::<ResolvedFrom>().map(|r| Arc::clone(&r.0));
        match self.by_name.get(&name).or_else(|| self.by_name.get(&None)) {
            Some(check) => check.check(target).await,
            None => Error::e_explain(ErrorType::InternalError, "no health check for the address"),
        }
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.observer.observe(target, healthy).await;
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// The pool's addresses: IP literals as they are, names through the system resolver.
struct Resolve {
    site: String,
    addresses: Vec<String>,
    /// What each name resolved to last: kept when it stops resolving.
    last: Mutex<HashMap<String, Vec<SocketAddr>>>,
    /// The pool's addresses after the last discovery, for the health metric's series.
    known: Mutex<BTreeSet<String>>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl ServiceDiscovery for Resolve {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        for entry in &self.addresses {
            if let Ok(addr) = entry.parse::<SocketAddr>() {
                backends.insert(backend(addr, None));
                continue;
            }
            let name: Arc<str> = entry
                .rsplit_once(':')
                .map_or(entry.as_str(), |(host, _)| host)
                .into();
            let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(entry)).await;
            let addrs = match found {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    let mut last = self.last.lock();
                    let known = last.entry(entry.clone()).or_default();
                    if *known != addrs {
                        tracing::info!(site = %self.site, origin = %entry, ?addrs, "origin name resolved");
                        *known = addrs.clone();
                    }
                    addrs
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "the lookup timed out".to_owned(),
                    };
                    let kept = self.last.lock().get(entry).cloned().unwrap_or_default();
                    tracing::warn!(site = %self.site, origin = %entry, error = %why, ?kept, "origin name does not resolve: keeping its last addresses");
                    kept
                }
            };
            for addr in addrs {
                backends.insert(backend(addr, Some(Arc::clone(&name))));
            }
        }
        let now: BTreeSet<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        let mut known = self.known.lock();
        for addr in now.difference(&known) {
            // Present (as healthy, as the pool treats a new address) before its first check;
            // a known address keeps what its checks said.
            self.metrics
                .origin_healthy
                .with_label_values(&[&self.site, addr])
                .set(1);
        }
        for gone in known.difference(&now) {
            let _ = self
                .metrics
                .origin_healthy
                .remove_label_values(&[&self.site, gone]);
        }
        *known = now;
        Ok((backends, HashMap::new()))
    }
}

fn backend(addr: SocketAddr, name: Option<Arc<str>>) -> Backend {
    let mut b = Backend {
        addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
        weight: 1,
        ext: http::Extensions::new(),
    };
    if let Some(name) = name {
        b.ext.insert(ResolvedFrom(name));
    }
    b
}

impl Origins {
    /// The pool of `site`. Its addresses are not resolved yet: [`Origins::resolve`] once before
    /// serving, then [`Origins::keep`].
    pub fn new(site: &str, config: &OriginSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let discovery = Resolve {
            site: site.to_owned(),
            addresses: config.addresses.clone(),
            last: Mutex::new(HashMap::new()),
            known: Mutex::new(BTreeSet::new()),
            metrics: Arc::clone(&metrics),
        };
        let mut lb = LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(discovery)));
        let authorities = match &config.ca_file {
            Some(path) => Some(authorities(path)?),
            None => None,
        };
        let observer = Box::new(HealthMetrics {
            metrics: Arc::clone(&metrics),
            site: site.to_owned(),
        });
        match &config.health_check_path {
            None => {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout = Some(config.connect_timeout);
                hc.health_changed_callback = Some(observer);
                lb.set_health_check(hc);
            }
            Some(path) => {
                let checks = HttpChecks::new(config, path, authorities.as_ref(), observer)?;
                lb.set_health_check(Box::new(checks));
            }
        }
        lb.health_check_frequency = Some(config.health_check_interval);
        lb.update_frequency = Some(config.dns_refresh);
        Ok(Self {
            lb,
            config: config.clone(),
            site: site.to_owned(),
            authorities,
            kept: AtomicBool::new(false),
            metrics: Arc::clone(&metrics),
        })
    }

    /// Resolves the addresses now (at start, and before a reload puts the pool in service).
    pub async fn resolve(&self) {
        if let Err(e) = self.lb.update().await {
            tracing::warn!(site = %self.site, error = %e, "resolving the origin pool");
        }
    }

    /// Keeps the pool resolved and checked, in the background, for as long as it exists.
    pub fn keep(self: &Arc<Self>) {
        if self.kept.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool: Weak<Self> = Arc::downgrade(self);
        let (check_every, resolve_every) =
            (self.config.health_check_interval, self.config.dns_refresh);
        tokio::spawn(async move {
            let mut check = tokio::time::interval(check_every);
            let mut resolve = tokio::time::interval(resolve_every);
            resolve.reset();
            loop {
                let due_resolve = tokio::select! {
                    _ = check.tick() => false,
                    _ = resolve.tick() => true,
                };
                let Some(pool) = pool.upgrade() else {
                    break;
                };
                if due_resolve {
                    pool.resolve().await;
                } else {
                    pool.lb.backends().run_health_check(true).await;
                }
            }
        });
    }

    /// Whether a keeper task runs for it (it is resolved and checked in the background).
    pub fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Acquire)
    }

    /// The origin for the next request: a healthy address in turn, or, when none passes its
    /// check, any (the check may be behind; trying beats refusing). An error when no address is
    /// known at all (every name has failed to resolve since start).
    pub fn peer(&self) -> Result<Box<HttpPeer>> {
        let backend = match self.lb.select(b"", 256) {
            Some(b) => b,
            None => match self.lb.backends().get_backend().iter().next() {
                Some(b) => b.clone(),
                None => {
                    // The origin side's failure (502 `connect-failed`, stale-if-error applies),
                    // not the edge's.
                    let why = format!("no address for the origins of site {}", self.site);
                    return Err(Error::create(
                        ErrorType::ConnectNoRoute,
                        ErrorSource::Upstream,
                        Some(why.into()),
                        None,
                    ));
                }
            },
        };
        let sni = match (&self.config.sni, backend.ext.get::<ResolvedFrom>()) {
            (Some(sni), _) => sni.clone(),
            (None, Some(ResolvedFrom(name))) => name.to_string(),
            (None, None) => String::new(),
        };
        let mut peer = HttpPeer::new(backend.addr, self.config.tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(self.config.connect_timeout);
        o.read_timeout = Some(self.config.read_timeout);
        o.write_timeout = Some(self.config.write_timeout);
        o.idle_timeout = Some(self.config.idle_timeout);
        o.ca.clone_from(&self.authorities);
        Ok(Box::new(peer))
    }

    /// Drops the health series of this pool's addresses that `still` (site, address) does not
    /// hold: a reload that retires the pool leaves no ghost origins on dashboards.
    pub fn retire(&self, still: &std::collections::HashSet<(String, String)>) {
        for b in self.lb.backends().get_backend().iter() {
            let key = (self.site.clone(), b.addr.to_string());
            if !still.contains(&key) {
                let _ = self
                    .metrics
                    .origin_healthy
                    .remove_label_values(&[&key.0, &key.1]);
            }
        }
    }

    /// (site, address) of every address known now.
    pub fn series(&self) -> Vec<(String, String)> {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .map(|b| (self.site.clone(), b.addr.to_string()))
            .collect()
    }

    /// Addresses known now (names resolved).
    pub fn count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    /// How many addresses pass their health check, of how many.
    pub fn healthy(&self) -> (usize, usize) {
        let backends = self.lb.backends().get_backend();
        let up = backends
            .iter()
            .filter(|b| self.lb.backends().ready(b))
            .count();
        (up, backends.len())
    }
}

/// The authorities in `path` (checked when the config was validated).
fn authorities(path: &str) -> anyhow::Result<Authorities> {
    let certs = crate::tls::certs::load_authorities(path).map_err(anyhow::Error::msg)?;
    Ok(certs
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), pingora_core::utils::tls::parse_x509))
        .collect::<Vec<_>>()
        .into())
}

/// Removes from the client's request what the origin will not get, before the cache looks at it,
/// so that what the cache sees of it (`Vary`) is what the origin is sent:
///
/// - fields listed in `Connection` (RFC 9110 §7.6.1; Pingora would drop them on the way out
///   anyway, after the cache had keyed on them), and the standard hop-by-hop fields Pingora drops
///   (`TE`, `Trailer`, `Proxy-Authorization`, …); `Connection` and `Upgrade` become what Pingora
///   sends: `Connection: Upgrade` + `Upgrade: websocket` for an HTTP/1.1 WebSocket handshake,
///   neither otherwise. Never the fields that frame or route the request: [`nominates_protected`]
///   requests are refused before this runs;
/// - `strip` names (sorted; lower case, `-` for `_`), and with `drop_underscored` every field
///   with an underscore in its name (CGI-style origins read `X_Forwarded_Host` as
///   `X-Forwarded-Host`);
/// - from a client that is not a trusted proxy, its `X-Forwarded-*` and `Forwarded`: the edge
///   sets its own on the way to the origin ([`set_forwarding`]).
///
/// Only removals: a cache hit pays for no header it will not use.
pub fn sanitize_request(
    req: &mut RequestHeader,
    client: Client,
    listed: &[String],
    strip: &[String],
    drop_underscored: bool,
) -> Result<()> {
    // Pingora's own test for what it forwards as an upgrade.
    let websocket = req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            if FRAMING.contains(&n) || n == "upgrade" && websocket {
                return false;
            }
            removed_before_the_cache(n, client.trusted, strip, drop_underscored)
                || listed.iter().any(|l| l == n)
        })
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    // The keep-alive decision was taken when the head was read; what is left of `Connection` is
    // what the origin gets.
    if req.remove_header(&http::header::CONNECTION).is_some() && websocket {
        req.insert_header(http::header::CONNECTION, "Upgrade")?;
        req.insert_header(http::header::UPGRADE, "websocket")?;
    }
    Ok(())
}

/// Whether [`sanitize_request`] removes the field `name` (lower case) whatever `Connection`
/// lists: hop-by-hop, configured to be stripped, underscored when those are dropped, or a
/// forwarding field from a client that is not a trusted proxy.
pub fn removed_before_the_cache(
    name: &str,
    trusted: bool,
    strip: &[String],
    drop_underscored: bool,
) -> bool {
    let stripped = |name: &str| strip.binary_search_by(|s| s.as_str().cmp(name)).is_ok();
    (name.contains('_') && (drop_underscored || stripped(&name.replace('_', "-"))))
        || stripped(name)
        || HOP_BY_HOP.contains(&name)
        || (!trusted && FORWARDING.contains(&name))
}

/// `X-Forwarded-For/-Host/-Proto` and `Forwarded` (RFC 7239) on the request sent to the origin:
/// the edge's own (the client's were removed by [`sanitize_request`]), or a trusted proxy's with
/// our hop added.
pub fn set_forwarding(req: &mut RequestHeader, client: Client, target: &Target) -> Result<()> {
    let proto = target.scheme.as_str();
    let host = target.authority.as_str();
    if let Some(ip) = client.peer {
        append_list(req, "x-forwarded-for", &ip.to_string())?;
    }
    if !req.headers.contains_key("x-forwarded-proto") {
        req.insert_header("x-forwarded-proto", proto)?;
    }
    if !req.headers.contains_key("x-forwarded-host") {
        req.insert_header("x-forwarded-host", host)?;
    }
    append_list(
        req,
        "forwarded",
        &forwarded_element(client.peer, host, proto),
    )
}

/// Fields that frame or route a request: never removed, and never to be nominated in
/// `Connection` (removing `Content-Length` after Pingora framed the request is a desync).
const FRAMING: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// Request fields the edge sets for the origin.
const FORWARDING: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
];

/// Hop-by-hop request fields Pingora drops on the way to the origin (with `Upgrade` unless it
/// is a WebSocket handshake): dropped before the cache sees the request.
const HOP_BY_HOP: [&str; 8] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// True when the names a request's `Connection` lists (`listed`) include a field that frames or
/// routes it, or one the edge sets for the origin: Pingora would drop it from what it forwards
/// (our `Forwarded`), or the request would change framing midway. Such a request is refused.
pub fn nominates_protected(listed: &[String]) -> bool {
    listed
        .iter()
        .any(|l| FRAMING.contains(&l.as_str()) || FORWARDING.contains(&l.as_str()))
}

/// Appends our hop to `Via` on the request sent to the origin.
pub fn append_via(req: &mut RequestHeader, via: &str) -> Result<()> {
    append_list(req, "via", via)
}

/// One `Forwarded` element: `for=…;host=…;proto=…`, quoting what is not a token.
fn forwarded_element(peer: Option<IpAddr>, host: &str, proto: &str) -> String {
    let node = match peer {
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => format!("\"[{ip}]\""),
        None => "unknown".to_owned(),
    };
    // `host:port` and IPv6 literals are not tokens (RFC 7239 §4).
    let host = if host.contains([':', '[']) {
        format!("\"{host}\"")
    } else {
        host.to_owned()
    };
    format!("for={node};host={host};proto={proto}")
}

/// `name: existing, value` (one field line, as proxies conventionally keep these).
fn append_list(req: &mut RequestHeader, name: &'static str, value: &str) -> Result<()> {
    let combined = match req.headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_owned(),
    };
    req.insert_header(name, combined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::connection_listed;
    use crate::target::Scheme;

    fn target() -> Target {
        Target {
            scheme: Scheme::Http,
            authority: "shop.test".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
        }
    }

    /// [`sanitize_request`] with the request's own `Connection` names.
    fn clean(
        r: &mut RequestHeader,
        client: Client,
        strip: &[String],
        drop_underscored: bool,
    ) -> Result<()> {
        let listed = connection_listed(&r.headers);
        sanitize_request(r, client, &listed, strip, drop_underscored)
    }

    fn listed(fields: &[(&str, &str)]) -> Vec<String> {
        connection_listed(&request(fields).headers)
    }

    fn request(fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).expect("field");
        }
        r
    }

    const FORGED: [(&str, &str); 6] = [
        ("host", "shop.test"),
        ("via", "1.1 cdn-a"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=10.0.0.1;host=evil.test"),
    ];

    #[test]
    fn an_untrusted_client_cannot_choose_what_the_origin_is_told() {
        let mut r = request(&FORGED);
        r.append_header("X-Original-URL", "/admin").expect("field");
        r.append_header("X_Original_URL", "/admin").expect("field");
        r.append_header("X_Forwarded_Host", "evil.test")
            .expect("field");
        r.append_header("Accept-Language", "fr").expect("field");
        r.append_header("Connection", "close, Accept-Language, Upgrade")
            .expect("field");
        r.append_header("Upgrade", "websocket").expect("field");
        r.append_header("TE", "trailers").expect("field");
        let client = Client {
            peer: Some("192.0.2.7".parse().expect("ip")),
            trusted: false,
            address: None,
        };
        let strip = ["x-original-url".to_owned()];
        clean(&mut r, client, &strip, false).expect("ok");
        set_forwarding(&mut r, client, &target()).expect("ok");
        append_via(&mut r, "1.1 outpost").expect("via");
        assert_eq!(r.headers["via"], "1.1 cdn-a, 1.1 outpost");
        assert_eq!(r.headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(r.headers["x-forwarded-proto"], "http");
        assert_eq!(r.headers["x-forwarded-host"], "shop.test");
        assert_eq!(
            r.headers["forwarded"],
            "for=192.0.2.7;host=shop.test;proto=http"
        );
        assert!(r.headers.get("x-original-url").is_none());
        assert!(
            r.headers.get("x_original_url").is_none(),
            "the strip list matches `_` for `-`"
        );
        assert_eq!(
            r.headers.get("x_forwarded_host").map(|v| v.as_bytes()),
            Some(&b"evil.test"[..]),
            "kept unless underscored names are dropped"
        );
        assert!(
            r.headers.get("accept-language").is_none(),
            "listed in Connection: gone before the cache keys on it"
        );
        assert_eq!(r.headers["upgrade"], "websocket", "Pingora's to handle");
        assert!(
            r.headers.get("te").is_none(),
            "hop-by-hop: not the origin's"
        );
        let mut other = request(&[("Connection", "Upgrade"), ("Upgrade", "h2c")]);
        clean(&mut other, client, &[], true).expect("ok");
        assert!(
            other.headers.get("upgrade").is_none(),
            "only WebSocket passes"
        );
        let mut r = request(&[("X_Anything", "1"), ("x-kept", "2")]);
        clean(&mut r, client, &[], true).expect("ok");
        assert!(r.headers.get("x_anything").is_none());
        assert_eq!(r.headers["x-kept"], "2");
    }

    #[test]
    fn nominating_what_frames_or_routes_a_request_is_refused() {
        for nominated in [
            "Content-Length",
            "close, transfer-encoding",
            "Host",
            "Forwarded",
        ] {
            assert!(
                nominates_protected(&listed(&[("Connection", nominated)])),
                "{nominated}"
            );
        }
        assert!(!nominates_protected(&listed(&[(
            "Connection",
            "close, TE"
        )])));
    }

    #[test]
    fn a_trusted_proxy_keeps_its_headers_and_we_append_our_hop() {
        let mut r = request(&FORGED);
        let client = Client {
            peer: Some("2001:db8::7".parse().expect("ip")),
            trusted: true,
            address: None,
        };
        let mut t = target();
        t.authority = "shop.test:8080".to_owned();
        clean(&mut r, client, &[], true).expect("ok");
        set_forwarding(&mut r, client, &t).expect("ok");
        assert_eq!(r.headers["x-forwarded-for"], "10.0.0.1, 2001:db8::7");
        assert_eq!(r.headers["x-forwarded-host"], "evil.test");
        assert_eq!(r.headers["x-forwarded-proto"], "https");
        assert_eq!(
            r.headers["forwarded"],
            "for=10.0.0.1;host=evil.test, for=\"[2001:db8::7]\";host=\"shop.test:8080\";proto=http"
        );
    }
}
