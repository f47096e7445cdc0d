//! InstaClone, the origin behind Outpost: users upload JPEG/PNG images, derive new ones through
//! filters, like them, and browse them as server-rendered pages or through a JSON API. Every
//! response tells the edge how it may be cached ([`cache_headers`]), and every write purges what
//! it changed at the edge ([`purge`]).
//!
//! `main.rs` only parses arguments; everything is testable from here: [`app`] builds the router
//! for in-process tests, [`serve`] runs it on a listener the caller bound, [`run`] does both from
//! a config file's values.

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
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, workers: WorkerPool, purger: Purger, config: &OriginConfig) -> Self {
        AppState(Arc::new(Shared {
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
        Ok(Self::new(store, workers, purger, config))
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
    axum::serve(listener, app(state))
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
    tracing::info!("origin stopped");
    Ok(())
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
