//! `SharedTier`: byte items in the region's shared store, each operation bounded by a deadline.
//! `MemcachedTier` is the real one: our router picks the server, a per-server breaker skips a
//! failing one, and every error or timeout is reported, never hidden. Test fakes live in
//! `fake.rs`; the e2e tests always run real memcached.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use memcache::exp::{AsyncMetaClient, GetStatus, MutationStatus, Ttl};
use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::net::lookup_host;

use super::breaker::Breaker;
use super::router::Router;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TierError {
    #[error("deadline of {0:?} passed")]
    Timeout(Duration),
    #[error("server {0} skipped: its circuit breaker is open")]
    Open(String),
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait SharedTier: Send + Sync + 'static {
    async fn get(&self, key: &str, deadline: Duration) -> Result<Option<Vec<u8>>, TierError>;
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        deadline: Duration,
    ) -> Result<(), TierError>;
    async fn delete(&self, key: &str, deadline: Duration) -> Result<(), TierError>;
    /// Extends an item's life without reading it; false when it is gone.
    async fn touch(&self, key: &str, ttl: Duration, deadline: Duration) -> Result<bool, TierError>;
}

/// Operations on one chosen server, for data that must live on several servers at once (the
/// purge log). Servers are numbered as configured.
/// One memcached server: its client, breaker and metrics.
struct Server {
    /// As configured (`ip:port` or `name:port`): its identity in routing, the same on every node.
    name: String,
    /// `None` while its name has never resolved (its operations fail, as a down server's do).
    client: ArcSwapOption<AsyncMetaClient>,
    /// What a name resolved to last (re-resolved by [`MemcachedTier::keep_resolved`]).
    addresses: Mutex<Vec<SocketAddr>>,
    breaker: Breaker,
    errors: IntCounter,
    open: IntGauge,
    seconds: Histogram,
}

pub struct MemcachedTier {
    servers: Vec<Server>,
    router: Router,
    settings: PoolSettings,
}

/// Longest a memcached server's name lookup may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Server {
    /// Resolves its name and, when the addresses changed, puts a client for the new ones in.
    async fn resolve(&self, settings: &PoolSettings) {
        let found = match self.name.parse::<SocketAddr>() {
            Ok(addr) => Ok(vec![addr]),
            Err(_) => match tokio::time::timeout(RESOLVE_TIMEOUT, lookup_host(&self.name)).await {
                Ok(Ok(addrs)) => Ok(addrs.collect::<Vec<_>>()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the lookup timed out".to_owned()),
            },
        };
        let addrs = match found {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) | Err(_) => {
                tracing::warn!(server = %self.name, "memcached name does not resolve: keeping its last addresses");
                return;
            }
        };
        if *self.addresses.lock() == addrs && self.client.load().is_some() {
            return;
        }
        let built = AsyncMetaClient::builder()
            .max_connections(Some(settings.max_connections))
            .max_idle(settings.max_connections)
            .connect_timeout(Some(settings.connect_timeout))
            // Deadlines are ours (per operation); the client must not add its own.
            .io_timeout(None)
            // One server whatever its name resolves to: its connections try the addresses in
            // order (the client resolves the name itself).
            .connect_async(self.name.as_str())
            .await;
        match built {
            Ok(client) => {
                if self.name.parse::<SocketAddr>().is_err() {
                    tracing::info!(server = %self.name, ?addrs, "memcached name resolved");
                }
                self.client.store(Some(Arc::new(client)));
                *self.addresses.lock() = addrs;
            }
            Err(e) => {
                tracing::warn!(server = %self.name, error = %e, "building the memcached client")
            }
        }
    }
}

/// Settings of the memcached pool.
#[derive(Clone, Copy)]
pub struct PoolSettings {
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub max_connections: usize,
    pub connect_timeout: Duration,
}

impl MemcachedTier {
    /// Builds clients for `servers` (`ip:port` or `name:port`; names resolved now, and again
    /// by [`MemcachedTier::keep_resolved`]). Connections are dialed lazily: a server that is
    /// down now, or whose name does not resolve yet, only makes its items misses.
    pub async fn new(
        servers: &[String],
        settings: &PoolSettings,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut built = Vec::new();
        for name in servers {
            let server = Server {
                errors: metrics.l2_server_errors.with_label_values(&[name]),
                open: metrics.l2_breaker_open.with_label_values(&[name]),
                seconds: metrics.l2_op_seconds.with_label_values(&[name]),
                breaker: Breaker::new(settings.breaker_failures, settings.breaker_open),
                name: name.clone(),
                client: ArcSwapOption::empty(),
                addresses: Mutex::new(Vec::new()),
            };
            server.resolve(settings).await;
            built.push(server);
        }
        let names: Vec<&str> = built.iter().map(|s| s.name.as_str()).collect();
        Ok(Self {
            router: Router::new(&names),
            servers: built,
            settings: *settings,
        })
    }

    /// Re-resolves the servers' names every `every`, in the background, for as long as the
    /// pool exists: a server whose address changed gets a new client (its old connections
    /// close as they drop); a name that stops resolving keeps its last addresses.
    pub fn keep_resolved(self: &Arc<Self>, every: Duration) {
        if self
            .servers
            .iter()
            .all(|s| s.name.parse::<SocketAddr>().is_ok())
        {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.reset();
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else { break };
                for server in &pool.servers {
                    server.resolve(&pool.settings).await;
                }
            }
        });
    }

    /// Runs `op` against the server for `key`, within `deadline`, through its breaker.
    async fn call<T, F, Fut>(&self, key: &str, deadline: Duration, op: F) -> Result<T, TierError>
    where
        F: FnOnce(AsyncMetaClient) -> Fut,
        Fut: Future<Output = memcache::exp::Result<T>>,
    {
        self.call_on(self.router.route(key.as_bytes()), deadline, op)
            .await
    }

    /// Runs `op` against server number `index`, within `deadline`, through its breaker.
    async fn call_on<T, F, Fut>(
        &self,
        index: usize,
        deadline: Duration,
        op: F,
    ) -> Result<T, TierError>
    where
        F: FnOnce(AsyncMetaClient) -> Fut,
        Fut: Future<Output = memcache::exp::Result<T>>,
    {
        let Some(server) = self.servers.get(index) else {
            return Err(TierError::Failed(format!("no server number {index}")));
        };
        let started = Instant::now();
        if !server.breaker.allow(started) {
            return Err(TierError::Open(server.name.clone()));
        }
        let Some(client) = server.client.load_full() else {
            return Err(TierError::Failed(format!(
                "{}: the name has not resolved",
                server.name
            )));
        };
        let outcome = match tokio::time::timeout(deadline, op((*client).clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(TierError::Failed(format!("{}: {e}", server.name))),
            Err(_) => Err(TierError::Timeout(deadline)),
        };
        let now = Instant::now();
        server
            .seconds
            .observe(now.duration_since(started).as_secs_f64());
        server.breaker.record(outcome.is_ok(), now);
        server.open.set(i64::from(server.breaker.is_open()));
        if outcome.is_err() {
            server.errors.inc();
        }
        outcome
    }
}

/// Longest item life we ask for; far beyond any configured retention, yet an absolute expiry
/// that still fits memcached's 32-bit timestamps.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Lives over 30 days go out as absolute times (the protocol reads a larger relative number as
/// a timestamp); `Ttl` does that conversion when the command is encoded.
fn ttl(d: Duration) -> Ttl {
    Ttl::secs(d.clamp(Duration::from_secs(1), MAX_TTL).as_secs() as u32)
}

/// For the per-server operations: zero means kept until evicted.
fn ttl_or_never(d: Duration) -> Ttl {
    if d.is_zero() { Ttl::NEVER } else { ttl(d) }
}

#[async_trait]
impl SharedTier for MemcachedTier {
    async fn get(&self, key: &str, deadline: Duration) -> Result<Option<Vec<u8>>, TierError> {
        self.get_on(self.router.route(key.as_bytes()), key, deadline)
            .await
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        life: Duration,
        deadline: Duration,
    ) -> Result<(), TierError> {
        self.call(key, deadline, |c| async move {
            c.set(key, value).ttl(ttl(life)).send().await?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &str, deadline: Duration) -> Result<(), TierError> {
        self.call(key, deadline, |c| async move {
            // Deleted or already gone: either way it is not there any more.
            c.delete(key).send().await?;
            Ok(())
        })
        .await
    }

    async fn touch(
        &self,
        key: &str,
        life: Duration,
        deadline: Duration,
    ) -> Result<bool, TierError> {
        self.call(key, deadline, |c| async move {
            let r = c
                .run(
                    memcache::exp::Get::new(key)
                        .touch(ttl(life))
                        .without_value(),
                )
                .await?;
            Ok(r.status == GetStatus::Hit)
        })
        .await
    }
}

/// Operations on one named server of the pool (the purge log keeps copies on chosen servers
/// instead of routing by key).
impl MemcachedTier {
    pub fn ranked(&self, key: &str) -> Vec<usize> {
        self.router.ranked(key.as_bytes())
    }

    fn server_name(&self, server: usize) -> String {
        self.servers
            .get(server)
            .map_or_else(|| format!("#{server}"), |s| s.name.clone())
    }

    pub async fn get_on(
        &self,
        server: usize,
        key: &str,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, TierError> {
        self.call_on(server, deadline, |c| async move {
            let r = c.get(key).send().await?;
            Ok(if r.status == GetStatus::Hit {
                r.value
            } else {
                None
            })
        })
        .await
    }

    pub async fn set_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        life: Duration,
        deadline: Duration,
    ) -> Result<(), TierError> {
        self.call_on(server, deadline, |c| async move {
            c.set(key, value).ttl(ttl_or_never(life)).send().await?;
            Ok(())
        })
        .await
    }

    pub async fn add_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        life: Duration,
        deadline: Duration,
    ) -> Result<bool, TierError> {
        self.call_on(server, deadline, |c| async move {
            let r = c
                .set(key, value)
                .ttl(ttl_or_never(life))
                .add()
                .send()
                .await?;
            Ok(r.status == MutationStatus::Applied)
        })
        .await
    }

    pub async fn append_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        deadline: Duration,
    ) -> Result<bool, TierError> {
        self.call_on(server, deadline, |c| async move {
            let r = c.set(key, value).append().send().await?;
            Ok(r.status == MutationStatus::Applied)
        })
        .await
    }

    pub async fn incr_on(
        &self,
        server: usize,
        key: &str,
        deadline: Duration,
    ) -> Result<u64, TierError> {
        let name = self.server_name(server);
        self.call_on(server, deadline, |c| async move {
            // Created at 1 when missing, so the first entry of a log is number 1. The client
            // wants a vivify TTL ≥ 1 and sends it raw: over 30 days must be an absolute time.
            let forever = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .saturating_add(MAX_TTL.as_secs());
            let forever = u32::try_from(forever).unwrap_or(u32::MAX);
            let r = c.increment(key).delta(1).initial(1, forever).send().await?;
            Ok(r.value)
        })
        .await?
        .ok_or_else(|| TierError::Failed(format!("{name}: increment returned no value")))
    }
}
