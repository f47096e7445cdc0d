//! InstaClone, the origin behind Outpost: users upload JPEG/PNG images, derive new ones through
//! filters, like them, and browse them as server-rendered pages or through a JSON API. Every
//! response tells the edge how it may be cached ([`cache_headers`]), and every write purges what
//! it changed at the edge ([`purge`]).
//!
//! `main.rs` only parses arguments; everything is testable from here: [`app`] builds the router
//! for in-process tests, [`serve`] runs it on a listener the caller bound, [`run`] does both from
//! a config file's values.

pub mod access_log;
pub mod cache_headers;
pub mod config;
pub mod error;
pub mod filters;
pub mod media;
pub mod ops;
pub mod purge;
pub mod routes;
pub mod store;
pub mod workers;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use outpost_common::access_log::AccessLog;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache_headers::PagePolicy;
use crate::config::{LimitsConfig, OriginConfig};
use crate::error::{AppError, pool_error};
use crate::purge::Purger;
use crate::store::Store;
use crate::workers::WorkerPool;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub workers: WorkerPool,
    pub purger: Purger,
    pub limits: LimitsConfig,
    pub page_policy: PagePolicy,
    /// `Retry-After` seconds when the worker pool is full.
    pub retry_after_secs: u32,
    pub access_log: Arc<AccessLog>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of an origin that writes no access log (in-process tests).
    pub fn new(store: Store, workers: WorkerPool, purger: Purger, config: &OriginConfig) -> Self {
        Self::logging(store, workers, purger, config, AccessLog::off())
    }

    fn logging(
        store: Store,
        workers: WorkerPool,
        purger: Purger,
        config: &OriginConfig,
        access_log: AccessLog,
    ) -> Self {
        AppState(Arc::new(Shared {
            access_log: Arc::new(access_log),
            store,
            workers,
            purger,
            limits: config.limits.clone(),
            page_policy: config.cache.page_policy(),
            retry_after_secs: config.workers.retry_after_secs,
        }))
    }

    /// Connects the database (applying migrations), starts the image workers and the purger.
    pub async fn from_config(config: &OriginConfig) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database.url, config.database.max_connections)
            .await
            .with_context(|| format!("opening the database {}", redact(&config.database.url)))?;
        let workers = WorkerPool::new(config.worker_threads(), config.workers.queue)
            .context("starting image workers")?;
        let purger = Purger::start(&config.purge).context("starting the purge client")?;
        let access_log = AccessLog::start(&config.access_log, || {
            tracing::warn!("access log behind: a line was dropped");
        })
        .context("access_log.path")?;
        Ok(Self::logging(store, workers, purger, config, access_log))
    }

    /// Runs CPU-bound image work on the worker pool; a full pool is a 503 with `Retry-After`.
    pub async fn image_job<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.workers
            .run(f)
            .await
            .map_err(|e| pool_error(e, self.retry_after_secs))
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer's address reaches the access log.
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs the origin described by `config` until SIGINT/SIGTERM, then drains for at most
/// `shutdown_grace_secs` and flushes pending purges.
pub async fn run(config: OriginConfig) -> anyhow::Result<()> {
    let state = AppState::from_config(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = ?state.store.backend(),
        workers = state.workers.threads(),
        "origin listening"
    );
    reopen_on_hangup(Arc::clone(&state.access_log));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let stopped = wait_for(stop_rx.clone());
    let server = serve(listener, state.clone(), stopped);
    let deadline = async {
        wait_for(stop_rx).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        () = deadline => tracing::warn!(?grace, "grace period over; dropping remaining connections"),
    }
    state.purger.flush(grace).await;
    state.store.close().await;
    let log = Arc::clone(&state.access_log);
    let _ = tokio::task::spawn_blocking(move || log.close()).await;
    tracing::info!("origin stopped");
    Ok(())
}

/// SIGHUP or SIGUSR1 reopens the access log file (after logrotate moved it); neither ends the
/// process any more.
fn reopen_on_hangup(log: Arc<AccessLog>) {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::hangup(), SignalKind::user_defined1()] {
        let mut signals = match signal(kind) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, ?kind, "cannot listen for the signal: the access log is not reopened by it");
                continue;
            }
        };
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                let log = Arc::clone(&log);
                let _ = tokio::task::spawn_blocking(move || log.reopen()).await;
            }
        });
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops us");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A database URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
