//! Outpost's edge node: a caching reverse proxy on Pingora.
//!
//! `build` assembles the server from the runtime `Settings` (`settings.rs`) of an
//! [`EdgeConfig`]: the proxy service (`proxy.rs`) on the client listeners, the admin service
//! ([`admin`]) on its own, the origin health checks and the purge log poller.
//! [`run`] runs it until a signal. Everything else is one module per concern; the request path
//! is narrated in docs/request-lifecycle.md.

mod access_log;
pub mod admin;
mod answers;
mod auth;
pub(crate) mod cache_key;
pub(crate) mod cache_status;
pub(crate) mod client;
mod conditional;
pub mod config;
pub(crate) mod connection;
pub(crate) mod ctx;
pub(crate) mod headers;
pub(crate) mod hit_path;
pub(crate) mod metrics;
mod names;
mod origin_fault;
pub(crate) mod policy;
pub(crate) mod proxy;
pub mod purge;
pub mod purge_cli;
mod reload;
pub(crate) mod settings;
pub(crate) mod sites;
pub(crate) mod storage;
pub(crate) mod target;
pub(crate) mod tls;
pub(crate) mod upstream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use outpost_common::access_log::AccessLog;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::EdgeConfig;
use crate::connection::EdgeApp;
use crate::connection::limits::{Limits, Refusal};
use crate::connection::stream::{Counters, Deadlines};
use crate::hit_path::HitPath;
use crate::metrics::{ClientErrorKind, Metrics};
use crate::policy::Policy;
use crate::proxy::EdgeProxy;
use crate::purge::PurgeService;
use crate::purge::filter::Filter;
use crate::purge::local::LocalStore;
use crate::purge::store::ServerStore;
use crate::reload::Reloader;
use crate::settings::Settings;
use crate::sites::{LiveSites, Sites};
use crate::storage::hit_filter::HitFilter;
use crate::storage::l2::{L2, L2Settings};
use crate::storage::shared::{MemcachedTier, PoolSettings};
use crate::storage::{TierConfig, TieredStorage};
use crate::tls::resolver::{Certificates, Handshakes};

/// URLs the predictor remembers as uncacheable (they skip the cache lock).
const PREDICTOR_CAPACITY: usize = 65_536;

/// Idle keep-alive connections to origins kept for reuse (per process): enough for a busy node's
/// concurrency, so a burst does not pay a TCP handshake per request.
const ORIGIN_KEEPALIVE_POOL: usize = 1024;

/// Shortest deadline the purge log's memcached operations get, whatever `l2.deadline_ms` says:
/// the log is read in the background, where a few ms of patience cost nothing.
const LOG_DEADLINE_FLOOR: Duration = Duration::from_millis(50);

/// memcached's longest relative expiry is 30 days (beyond that the number reads as a
/// timestamp): purge log entries live at most this long.
const LOG_ENTRY_TTL_CAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Heartbeats outlive this many polls (and `purge.max_lag`), so a node that misses a few is
/// not taken for dead.
const HEARTBEAT_POLLS: u32 = 10;

/// A missing log entry counts as lost after this long: its writer may be between the counter
/// and the entry.
const LOG_MISSING_GRACE: Duration = Duration::from_secs(1);

/// Log entries read per replica per poll: a burst of purges is caught up in a few polls.
const LOG_BATCH: u64 = 256;

/// After in-flight requests had their time: how long Pingora's runtimes get to stop.
const RUNTIME_STOP_SECS: u64 = 1;

/// Most origin addresses one request tries when connections fail (Pingora's retry cap; the
/// proxy stops earlier when its site has fewer addresses).
const MAX_ORIGIN_ATTEMPTS: usize = 8;

/// How the process was started.
#[derive(Debug, Default)]
pub struct Start {
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Take the listening sockets from a running edge (`--upgrade`) instead of binding them.
    pub upgrade: bool,
}

/// A server ready to run, and the flags its signals set.
pub(crate) struct Edge {
    server: Server,
    lifecycle: Lifecycle,
    /// Written out when the server stops.
    access_log: Arc<AccessLog>,
}

/// What a stop signal sets.
#[derive(Clone, Default)]
struct Lifecycle {
    /// SIGTERM: `/readyz` answers 503.
    draining: Arc<AtomicBool>,
    /// SIGTERM or an upgrade: answers close their connections, so clients reconnect to whoever
    /// holds the listeners next.
    closing: Arc<AtomicBool>,
}

/// Builds the edge `config` describes. `file_limit` is the process's open-file limit, which
/// client connections must stay below.
pub(crate) fn build(
    config: &Settings,
    running: &EdgeConfig,
    start: Start,
    file_limit: u64,
) -> anyhow::Result<Edge> {
    if start.upgrade && config.server.upgrade_socket.is_none() {
        anyhow::bail!(
            "--upgrade needs server.upgrade_socket: where the running edge hands its sockets over"
        );
    }
    let conf = ServerConf {
        threads: config.server.threads,
        // Pingora's grace period starts once the listeners are closed (ours, the drain while
        // they stay open, runs in `Signals` before that): it is the time in-flight requests get
        // to finish. Its runtimes then drop whatever is left.
        grace_period_seconds: Some(config.server.graceful_shutdown_timeout.as_secs()),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_STOP_SECS),
        max_retries: MAX_ORIGIN_ATTEMPTS,
        upstream_keepalive_pool_size: ORIGIN_KEEPALIVE_POOL,
        upgrade_sock: config.server.upgrade_socket.clone().unwrap_or_default(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: start.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With `--upgrade`, this waits for the running edge's sockets (it sends them on SIGQUIT).
    server.bootstrap();
    // Startup's async steps (resolving names); Pingora's runtimes start later.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // SIGHUP's and SIGUSR1's default action ends the process: take them over now, before the
    // reload service listens (a registration lasts for the process's life; one arriving in
    // between is lost).
    for (kind, name) in [
        (tokio::signal::unix::SignalKind::hangup(), "SIGHUP"),
        (tokio::signal::unix::SignalKind::user_defined1(), "SIGUSR1"),
    ] {
        let taken = runtime.block_on(async { tokio::signal::unix::signal(kind) });
        drop(taken.with_context(|| format!("taking over {name}"))?);
    }

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    // Present at zero from the start, like the rest (`Metrics::vivify`).
    for fault in origin_fault::OriginFault::ALL {
        metrics.origin_errors.with_label_values(&[fault.label()]);
    }
    let (l2, pool) = match shared_tier(config, &metrics, &runtime)? {
        Some((l2, pool)) => (Some(l2), Some(pool)),
        None => (None, None),
    };
    let filter = Arc::new(Filter::new(
        config.purge.max_lag,
        config.purge.clock_skew,
        config.cache.longest_life(),
    ));
    // A quarter of the open files may hold L1 bodies (memory files); the rest is for
    // connections.
    let body_files = usize::try_from(file_limit / 4).unwrap_or(usize::MAX);
    let file_limit = file_limit - file_limit / 4;
    let storage = storage(
        config,
        &metrics,
        l2,
        Arc::clone(&filter) as Arc<dyn HitFilter>,
        body_files,
    );
    let sites = Sites::new(&config.sites, &metrics)?;
    runtime.block_on(sites.resolve());
    let sites = Arc::new(LiveSites::new(sites));
    let memcached = pool.clone();
    let purges = purges(
        config,
        pool,
        filter,
        storage,
        Arc::clone(&sites) as Arc<dyn cache_key::RulesByHost>,
        &metrics,
    )?;
    server.add_service(pingora_core::services::background::background_service(
        "purge log",
        PurgePoller(Arc::clone(&purges)),
    ));
    server.add_service(pingora_core::services::background::background_service(
        "name resolution and health checks",
        Keepers {
            sites: Arc::clone(&sites),
            memcached: memcached.map(|pool| {
                (
                    pool,
                    config
                        .l2
                        .as_ref()
                        .map_or(Duration::MAX, |l2| l2.dns_refresh),
                )
            }),
        },
    ));
    let certificates = match &config.tls {
        Some(tls) => {
            let table = tls::load_table(&tls.certificates).context("server.tls.certificates")?;
            let certificates = Arc::new(Certificates::new(table));
            certificates.export_expiry(&metrics.tls_certificate_expiry);
            certificates.count_from_zero(&metrics.tls_handshakes);
            Some(certificates)
        }
        None => None,
    };
    let dropped = metrics.access_log_dropped.clone();
    let access_log = Arc::new(
        AccessLog::start(&config.access_log, move || dropped.inc()).context("access_log.path")?,
    );
    let shared = Shared {
        access_log: Arc::clone(&access_log),
        metrics,
        storage,
        purges,
        sites,
        lifecycle: Lifecycle::default(),
        certificates,
    };

    let proxy = proxy(config, &shared)?;
    let hits = config.server.hit_path.then(|| hit_path(&proxy));
    let proxy = Arc::new(pingora_proxy::http_proxy(&server.configuration, proxy));
    let mut proxy_service = Service::new(
        "edge proxy".to_owned(),
        clients(config, proxy, hits, &shared.metrics, file_limit),
    );
    // Every client connection holds Pingora's buffers for as long as it is open. The hit path's
    // loop reads into a buffer of its own, held only while a request is being read, and writes
    // each answer whole: with it, neither is wanted.
    let buffers = match config.server.hit_path {
        true => L4BufferSettings::unbuffered(),
        false => L4BufferSettings::default().read(config.server.read_buffer_bytes),
    };
    for addr in &config.server.listen {
        proxy_service.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
    }
    if let (Some(tls), Some(certificates)) = (&config.tls, &shared.certificates) {
        for addr in &tls.listen {
            let mut settings = TlsSettings::with_callbacks(Box::new(Handshakes {
                certificates: Arc::clone(certificates),
                counter: shared.metrics.tls_handshakes.clone(),
            }))
            .context("TLS listener settings")?;
            settings.set_cert_resolver(Arc::clone(certificates) as _);
            settings.set_alpn(if tls.http2 { ALPN::H2H1 } else { ALPN::H1 });
            proxy_service.add_listener(
                ListenerConfig::tcp(addr.to_string())
                    .tls(settings)
                    .l4_buffer(buffers),
            );
        }
    }
    server.add_service(proxy_service);

    server.add_service(pingora_core::services::background::background_service(
        "config reload",
        Reloader {
            path: start.config_path,
            started: running.clone(),
            sites: Arc::clone(&shared.sites),
            certificates: shared.certificates.clone(),
            metrics: Arc::clone(&shared.metrics),
            access_log: Arc::clone(&shared.access_log),
        },
    ));

    let lifecycle = shared.lifecycle.clone();
    let admin = AdminApp {
        token: config.admin.token.clone(),
        metrics: shared.metrics,
        purges: shared.purges,
        storage: shared.storage,
        sites: shared.sites,
        certificates: shared.certificates,
        draining: shared.lifecycle.draining,
    };
    let mut admin_service = Service::new("edge admin".to_owned(), admin);
    admin_service.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin_service);
    Ok(Edge {
        server,
        lifecycle,
        access_log,
    })
}

/// What the proxy and the admin listener share.
struct Shared {
    metrics: Arc<Metrics>,
    access_log: Arc<AccessLog>,
    storage: &'static TieredStorage,
    purges: Arc<PurgeService>,
    sites: Arc<LiveSites>,
    lifecycle: Lifecycle,
    certificates: Option<Arc<Certificates>>,
}

/// Starts keeping, in Pingora's runtime: the origin pools of the sites in force at start
/// (resolved and health-checked; a reload starts its new pools itself) and the memcached pool's
/// names (re-resolved every `l2.dns_refresh_secs`).
struct Keepers {
    sites: Arc<LiveSites>,
    memcached: Option<(Arc<MemcachedTier>, Duration)>,
}

#[async_trait]
impl pingora_core::services::background::BackgroundService for Keepers {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        self.sites.current().keep();
        if let Some((pool, every)) = &self.memcached {
            pool.keep_resolved(*every);
        }
        let _ = shutdown.changed().await;
    }
}

/// The cache tiers: L1, and L2 when there is a shared tier; every hit passes `filter`.
fn storage(
    config: &Settings,
    metrics: &Arc<Metrics>,
    l2: Option<Arc<L2>>,
    filter: Arc<dyn HitFilter>,
    max_body_files: usize,
) -> &'static TieredStorage {
    let cache = &config.cache;
    TieredStorage::new(
        TierConfig {
            l1_capacity_bytes: cache.l1_capacity_bytes,
            l1_max_object: cache.l1_max_object,
            grace: cache.grace,
            max_retain: cache.max_ttl.saturating_add(cache.max_stale),
            sendfile_min: cache.l1_sendfile_min,
            max_body_files,
        },
        cache.max_variants,
        Arc::clone(metrics),
        l2,
        filter,
    )
    .leak()
}

/// The proxy: the request path, from the client's head to the access log.
fn proxy(config: &Settings, shared: &Shared) -> anyhow::Result<EdgeProxy> {
    let (server, cache) = (&config.server, &config.cache);
    Ok(EdgeProxy {
        draining: Arc::clone(&shared.lifecycle.closing),
        trusted_proxies: server.trusted_proxies.clone(),
        strip_request_headers: server.strip_request_headers.clone(),
        get_with_body: server.get_with_body,
        keepalive_secs: server.keepalive_timeout.as_secs(),
        send_timeout: server.send_timeout,
        drop_underscored_headers: server.drop_underscored_headers,
        name: server.name.clone(),
        via: format!("1.1 {}", server.name),
        via_value: http::HeaderValue::from_str(&format!("1.1 {}", server.name))
            .context("server.name as a header value")?,
        cache_enabled: cache.enabled,
        policy: Policy::new(&server.name, cache),
        sites: Arc::clone(&shared.sites),
        unknown_host_status: server.unknown_host_status,
        purges: Arc::clone(&shared.purges),
        purge_token: config.admin.token.clone(),
        purge_networks: config.purge.allow_networks.clone(),
        storage: shared.storage,
        lock: Box::leak(Box::new(pingora_cache::lock::CacheLock::new(
            cache.lock_timeout,
        ))),
        predictor: EdgeProxy::predictor(PREDICTOR_CAPACITY),
        lock_timeout: cache.lock_timeout,
        max_object_bytes: shared.storage.max_object(),
        max_request_header_bytes: server.max_request_header_bytes,
        metrics: Arc::clone(&shared.metrics),
        access_log: Arc::clone(&shared.access_log),
    })
}

/// The hit path, with the proxy's own settings (it answers a hit exactly as the proxy would).
fn hit_path(proxy: &EdgeProxy) -> Arc<HitPath> {
    Arc::new(HitPath {
        name: proxy.name.clone(),
        via: proxy.via.clone(),
        via_value: proxy.via_value.clone(),
        cache_enabled: proxy.cache_enabled,
        policy: proxy.policy.clone(),
        sites: Arc::clone(&proxy.sites),
        storage: proxy.storage,
        metrics: Arc::clone(&proxy.metrics),
        trusted_proxies: proxy.trusted_proxies.clone(),
        strip_request_headers: proxy.strip_request_headers.clone(),
        drop_underscored_headers: proxy.drop_underscored_headers,
        max_request_header_bytes: proxy.max_request_header_bytes,
        closing: Arc::clone(&proxy.draining),
        keepalive: Duration::from_secs(proxy.keepalive_secs),
        send_timeout: proxy.send_timeout,
        access_log: Arc::clone(&proxy.access_log),
    })
}

/// The client listeners' application: connection limits and watched streams in front of
/// `proxy`, with the hit path when it is on.
fn clients<A>(
    config: &Settings,
    proxy: Arc<A>,
    hits: Option<Arc<HitPath>>,
    metrics: &Metrics,
    file_limit: u64,
) -> EdgeApp<A, HitPath> {
    let server = &config.server;
    let max_connections = connection::max_connections(server.max_connections, file_limit);
    tracing::info!(max_connections, file_limit, "client connection limit");
    let refused = |reason: Refusal| {
        metrics
            .connections_refused
            .with_label_values(&[reason.as_str()])
    };
    EdgeApp {
        proxy,
        limits: Limits::new(
            max_connections,
            server.max_connections_per_client,
            metrics.client_connections.clone(),
        ),
        deadlines: Deadlines {
            head: server.request_head_timeout,
            body: server.request_body_timeout,
            body_min_rate: server.request_body_min_rate,
        },
        counters: Counters {
            head_timeouts: metrics.client_error(ClientErrorKind::HeadTimeout),
            body_timeouts: metrics.client_error(ClientErrorKind::BodyTimeout),
            framing_violations: metrics.client_error(ClientErrorKind::Framing),
            malformed: metrics.client_error(ClientErrorKind::Malformed),
        },
        refused: [refused(Refusal::Full), refused(Refusal::PerClient)],
        name: server.name.clone(),
        h2c: server.h2c,
        hits,
    }
}

/// The node's purge machinery, its log in the region's pool (or in process without one).
fn purges(
    config: &Settings,
    pool: Option<Arc<MemcachedTier>>,
    filter: Arc<Filter>,
    storage: &'static TieredStorage,
    rules: Arc<dyn cache_key::RulesByHost>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<PurgeService>> {
    let longest_life = config.cache.longest_life();
    let p = &config.purge;
    let store: Arc<dyn ServerStore> = match pool {
        Some(pool) => pool,
        None => Arc::new(LocalStore::with_servers(1)),
    };
    let log = purge::log::Log::new(
        store,
        purge::log::Settings {
            namespace: config.namespace.clone(),
            replicas: p.log_replicas,
            deadline: p.deadline.max(LOG_DEADLINE_FLOOR),
            entry_ttl: longest_life.min(LOG_ENTRY_TTL_CAP),
            heartbeat_ttl: p.max_lag.max(p.poll_interval * HEARTBEAT_POLLS),
            missing_grace: LOG_MISSING_GRACE,
            batch: LOG_BATCH,
        },
    );
    let settings = purge::Settings {
        node: config.server.name.clone(),
        config: p.clone(),
    };
    Ok(Arc::new(
        PurgeService::new(
            settings,
            filter,
            storage,
            rules,
            log,
            Arc::clone(metrics),
            longest_life,
        )
        .context("building the purge forwarder")?,
    ))
}

/// Runs the purge log poller until shutdown.
struct PurgePoller(Arc<PurgeService>);

#[async_trait]
impl pingora_core::services::background::BackgroundService for PurgePoller {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        tokio::select! {
            () = Arc::clone(&self.0).run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The region's shared tier, when `l2.servers` lists any. Clients are built here (addresses
/// resolved) but connect lazily: the edge starts and serves with every memcached down.
#[allow(clippy::type_complexity)]
fn shared_tier(
    config: &Settings,
    metrics: &Arc<Metrics>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<(Arc<L2>, Arc<MemcachedTier>)>> {
    let Some(l2) = &config.l2 else {
        return Ok(None);
    };
    let settings = PoolSettings {
        breaker_failures: l2.breaker_failures,
        breaker_open: l2.breaker_open,
        max_connections: l2.max_connections_per_server,
        connect_timeout: l2.chunk_deadline,
    };
    let tier = runtime
        .block_on(MemcachedTier::new(&l2.servers, &settings, metrics))
        .context("building the memcached clients")?;
    let tier = Arc::new(tier);
    let l2 = L2::new(
        Arc::clone(&tier) as Arc<dyn storage::shared::SharedTier>,
        L2Settings {
            namespace: config.namespace.clone(),
            deadline: l2.deadline,
            chunk_deadline: l2.chunk_deadline,
            inline_max: l2.inline_max,
            chunk_bytes: l2.chunk_bytes,
            max_object: l2.max_object,
            write_queue_bytes: l2.write_queue_bytes,
            write_concurrency: l2.write_concurrency,
        },
        metrics,
    );
    Ok(Some((l2, tier)))
}

/// Runs the edge until SIGTERM (graceful: drain, then stop), SIGINT (fast) or SIGQUIT (hand the
/// listeners to a new edge started with `--upgrade`, then stop); SIGHUP reloads the config.
/// Returns once Pingora has stopped, after the access log is written out.
pub fn run(file: &EdgeConfig, start: Start) -> anyhow::Result<()> {
    let config = Settings::of_valid(file);
    let upgrade_socket = config.server.upgrade_socket.is_some();
    let edge = build(&config, file, start, connection::raise_file_limit())?;
    for addr in &config.server.listen {
        tracing::info!(%addr, "edge listening");
    }
    for addr in config.tls.iter().flat_map(|t| &t.listen) {
        tracing::info!(%addr, "edge listening (TLS)");
    }
    tracing::info!(addr = %config.admin.listen, "edge admin listening");
    let signals = Box::new(Signals {
        lifecycle: edge.lifecycle,
        grace: config.server.grace_period,
        upgrade_socket,
    });
    edge.server.run(RunArgs {
        shutdown_signal: signals,
    });
    edge.access_log.close();
    Ok(())
}

/// Pingora's Unix signals, with a drain in front of a graceful stop: Pingora closes every
/// listener the moment its signal watch returns, so on SIGTERM we first mark the node as
/// draining (`/readyz` answers 503, answers close their connections) and keep serving for
/// `server.grace_period_secs`; only then is Pingora told. SIGINT during the drain stops at once.
/// SIGQUIT hands the listeners over (Pingora sends them to `server.upgrade_socket`, keeps
/// accepting beside the new process for a few seconds, then stops like SIGTERM's end); without an
/// upgrade socket there is no one to hand them to, so SIGQUIT drains and stops like SIGTERM.
struct Signals {
    lifecycle: Lifecycle,
    grace: Duration,
    upgrade_socket: bool,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let unix = pingora_core::server::UnixShutdownSignalWatch;
        let mut signal = unix.recv().await;
        self.lifecycle.closing.store(true, Ordering::Relaxed);
        match signal {
            ShutdownSignal::GracefulUpgrade if self.upgrade_socket => {
                tracing::info!("SIGQUIT: handing the listeners to the new edge, then stopping");
                return signal;
            }
            ShutdownSignal::GracefulUpgrade => {
                tracing::warn!(
                    "SIGQUIT without server.upgrade_socket: nothing to hand the listeners to, \
                     stopping gracefully instead"
                );
                signal = ShutdownSignal::GracefulTerminate;
            }
            ShutdownSignal::GracefulTerminate => {}
            _ => {
                tracing::info!(?signal, "shutting down");
                return signal;
            }
        }
        self.lifecycle.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            "draining: /readyz answers 503, listeners stay open for the grace period"
        );
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                again = unix.recv() => {
                    if matches!(again, ShutdownSignal::FastShutdown) {
                        tracing::info!("SIGINT while draining: stopping now");
                        return again;
                    }
                }
            }
        }
        tracing::info!("drained: closing listeners, in-flight requests finish");
        signal
    }
}
