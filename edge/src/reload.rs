//! SIGHUP: re-read the config file and put its sites, origin pools and certificates in force
//! without dropping a connection or the cache. A config that fails validation (or whose
//! certificates no longer load) is refused whole: every problem is logged and the running
//! config keeps serving. Keys that only a restart can change (listeners, cache sizes, the shared
//! tier, purge settings…) are named in a warning and left as they run.
//!
//! Certificate renewal is this too: the new files are loaded by the same reload. The access log
//! file is reopened by the same signal, whether or not the config is, and by SIGUSR1 alone (as
//! nginx does): logrotate's signal, which must not apply a config file half edited.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use outpost_common::access_log::AccessLog;
use outpost_common::config as file;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::sites::{LiveSites, Sites};
use crate::tls::resolver::Certificates;

pub struct Reloader {
    /// The file the edge was started with (`None`: built-in defaults, nothing to re-read).
    pub path: Option<PathBuf>,
    /// The config the process started with: what keys a reload cannot apply still hold (each
    /// reload compares against it, so every reload names them until a restart).
    pub started: EdgeConfig,
    pub sites: Arc<LiveSites>,
    pub certificates: Option<Arc<Certificates>>,
    pub metrics: Arc<Metrics>,
    /// Reopened first on every SIGHUP, whatever becomes of the config (logrotate's signal).
    pub access_log: Arc<AccessLog>,
}

impl Reloader {
    /// Re-reads the file and applies it, or refuses it whole.
    pub async fn reload(&self) {
        self.reopen_access_log().await;
        let Some(path) = &self.path else {
            tracing::warn!(
                "SIGHUP: the edge runs on built-in defaults, there is no file to reload"
            );
            return;
        };
        let outcome = match file::load_file::<EdgeConfig>(path) {
            Ok(config) => self.apply(config).await,
            Err(errors) => Err(errors.to_string()),
        };
        match outcome {
            // Logged before counted: whoever watches the counter finds the reason logged.
            Ok(summary) => {
                tracing::info!(file = %path.display(), "config reloaded: {summary}");
                self.metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
            }
            Err(why) => {
                tracing::error!(file = %path.display(), "config reload refused, the running config stays in force: {why}");
                self.metrics
                    .config_reloads
                    .with_label_values(&["refused"])
                    .inc();
            }
        }
    }

    /// Reopens the access log file (SIGUSR1, as nginx's; SIGHUP does it too).
    async fn reopen_access_log(&self) {
        let log = Arc::clone(&self.access_log);
        // Waits for the writer when its queue is full: off the runtime's threads.
        if let Err(e) = tokio::task::spawn_blocking(move || log.reopen()).await {
            tracing::error!(error = %e, "could not reopen the access log");
        }
    }

    async fn apply(&self, config: EdgeConfig) -> Result<String, String> {
        let settings = Settings::of_valid(&config);
        let certificates = match (&self.certificates, &settings.tls) {
            (Some(_), Some(tls)) => Some(
                crate::tls::load_table(&tls.certificates)
                    .map_err(|e| format!("server.tls.certificates: {e:#}"))?,
            ),
            _ => None,
        };
        let sites = {
            let running = self.sites.current();
            Sites::reusing(&settings.sites, &self.metrics, &running)
                .map_err(|e| format!("{e:#}"))?
        };
        // The new pools learn their addresses before the first request can reach them.
        sites.resolve().await;
        let needs_restart = restart_keys(&self.started, &config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                keys = %needs_restart.join(", "),
                "these settings changed in the file but need a restart; they keep their running values"
            );
        }
        let summary = format!(
            "{} site(s), {} certificate(s)",
            sites.all().len(),
            certificates.as_ref().map_or(0, |c| c.certs().len())
        );
        sites.keep();
        self.sites.current().retire_for(&sites);
        self.sites.swap(sites);
        if let (Some(live), Some(table)) = (&self.certificates, certificates) {
            live.swap(table);
            live.export_expiry(&self.metrics.tls_certificate_expiry);
        }
        Ok(summary)
    }
}

/// The sections (or keys) that differ between `running` and `new` and that a reload cannot
/// apply.
fn restart_keys(running: &EdgeConfig, new: &EdgeConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let (a, b) = (&running.server, &new.server);
    let tls_listen = |c: &EdgeConfig| c.server.tls.as_ref().map(|t| (t.listen.clone(), t.http2));
    if tls_listen(running) != tls_listen(new) {
        keys.push("server.tls.listen/http2");
    }
    if running.server.tls.is_none() != new.server.tls.is_none() {
        keys.push("server.tls");
    }
    let mut a = a.clone();
    let mut b = b.clone();
    a.tls = None;
    b.tls = None;
    if a != b {
        keys.push("server");
    }
    let without_key = |c: &EdgeConfig| {
        let mut cache = c.cache.clone();
        cache.key = crate::config::CacheKeyConfig::default();
        cache
    };
    if without_key(running) != without_key(new) {
        keys.push("cache");
    }
    if running.l2 != new.l2 {
        keys.push("l2");
    }
    if running.admin != new.admin {
        keys.push("admin");
    }
    if running.purge != new.purge {
        keys.push("purge");
    }
    if running.access_log != new.access_log {
        keys.push("access_log");
    }
    keys
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: reloads are off");
                return;
            }
        };
        let mut user1 = match signal(SignalKind::user_defined1()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGUSR1: reloads are off");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    self.reload().await;
                }
                got = user1.recv() => {
                    if got.is_none() {
                        return;
                    }
                    self.reopen_access_log().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
