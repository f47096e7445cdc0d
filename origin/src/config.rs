//! `origin.toml`: every key, its default and its check. `config/origin.example.toml` shows them
//! all with comments; `docs/configuration.md` is the reference.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_common::access_log::AccessLogConfig;
use outpost_common::config::{self, ConfigError, ConfigErrors, Validate};
use serde::Deserialize;

use crate::cache_headers::PagePolicy;
use crate::media::DecodeLimits;
use crate::store::Backend;

/// A local, self-contained default: SQLite next to where the origin runs.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/origin.db";
/// The seed app's limit: phone photos fit, a stray video does not.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// 12000 px per side and 40 MP covers every phone and most DSLRs; beyond that is an attack.
pub const DEFAULT_MAX_DIMENSION: u32 = 12_000;
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
    pub workers: WorkersConfig,
    pub cache: CacheConfig,
    pub purge: PurgeConfig,
    /// One line per request: format and destination.
    pub access_log: AccessLogConfig,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            shutdown_grace_secs: 10,
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
            workers: WorkersConfig::default(),
            cache: CacheConfig::default(),
            purge: PurgeConfig::default(),
            access_log: AccessLogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted image file, in bytes.
    pub max_upload_bytes: u64,
    /// Largest accepted width or height, in pixels.
    pub max_dimension: u32,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Longest accepted image name, in characters.
    pub max_name_chars: usize,
    /// Most images one API page returns, whatever `limit` asks for.
    pub max_page_size: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_dimension: DEFAULT_MAX_DIMENSION,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_name_chars: 100,
            max_page_size: 100,
        }
    }
}

impl LimitsConfig {
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_dimension: self.max_dimension,
            max_pixels: self.max_pixels,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Image worker threads; 0 means one per core.
    pub threads: usize,
    /// Image jobs allowed to wait for a worker; more get `503 Service Unavailable`.
    pub queue: usize,
    /// The `Retry-After` sent with that 503, in seconds.
    pub retry_after_secs: u32,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            queue: 16,
            retry_after_secs: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long the edge may serve a page without asking, in seconds (`CDN-Cache-Control:
    /// max-age`). The old name, from when it was sent as `s-maxage`, is still read.
    #[serde(alias = "page_s_maxage")]
    pub page_edge_max_age: u32,
    /// How long past that the edge may serve a stale page while it refreshes it.
    pub stale_while_revalidate: u32,
    /// How long past that the edge may serve a stale page while the origin is failing.
    pub stale_if_error: u32,
    /// How long the edge may remember "no such image".
    #[serde(alias = "not_found_s_maxage")]
    pub not_found_edge_max_age: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            page_edge_max_age: 60,
            stale_while_revalidate: 60,
            stale_if_error: 86_400,
            not_found_edge_max_age: 10,
        }
    }
}

impl CacheConfig {
    pub fn page_policy(&self) -> PagePolicy {
        PagePolicy {
            edge_max_age: self.page_edge_max_age,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            not_found_edge_max_age: self.not_found_edge_max_age,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeConfig {
    /// The edge admin API (`http://host:port`); purges go to `{edge_admin_url}/purge`.
    /// Unset: no edge in front, nothing to purge.
    pub edge_admin_url: Option<String>,
    /// Bearer token for the edge admin API; required with `edge_admin_url`.
    pub token: Option<String>,
    /// How long a write waits for its first purge attempt before answering (so the writer sees
    /// their change on the next page view); later attempts run in the background. 0 = never wait.
    pub inline_timeout_ms: u64,
    /// Timeout of each purge request.
    pub request_timeout_ms: u64,
    /// Attempts per purge before it is dropped and logged as lost.
    pub max_attempts: u32,
    /// Purges waiting for the background sender; beyond this new ones are dropped and logged.
    pub queue: usize,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            edge_admin_url: None,
            token: None,
            inline_timeout_ms: 250,
            request_timeout_ms: 2_000,
            max_attempts: 10,
            queue: 1_024,
        }
    }
}

impl PurgeConfig {
    pub fn inline_timeout(&self) -> Duration {
        Duration::from_millis(self.inline_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl OriginConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        config::from_str(text)
    }

    /// Worker threads after resolving `0` to the core count.
    pub fn worker_threads(&self) -> usize {
        match self.workers.threads {
            0 => crate::workers::WorkerPool::default_threads(),
            n => n,
        }
    }
}

impl Validate for OriginConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut check = |ok: bool, key: &str, problem: &str| {
            if !ok {
                errors.push(ConfigError::new(key, problem));
            }
        };
        check(
            Backend::from_url(&self.database.url).is_some(),
            "database.url",
            "must start with sqlite: or postgres://",
        );
        check(
            self.database.max_connections >= 1,
            "database.max_connections",
            "must be at least 1",
        );
        check(
            (1..=1 << 30).contains(&self.limits.max_upload_bytes),
            "limits.max_upload_bytes",
            "must be between 1 byte and 1 GiB",
        );
        check(
            (1..=65_535).contains(&self.limits.max_dimension),
            "limits.max_dimension",
            "must be between 1 and 65535",
        );
        check(
            self.limits.max_pixels >= 1,
            "limits.max_pixels",
            "must be at least 1",
        );
        check(
            (1..=200).contains(&self.limits.max_name_chars),
            "limits.max_name_chars",
            "must be between 1 and 200 (the database column's limit)",
        );
        check(
            (1..=1_000).contains(&self.limits.max_page_size),
            "limits.max_page_size",
            "must be between 1 and 1000",
        );
        check(
            self.workers.threads <= 1_024,
            "workers.threads",
            "must be at most 1024",
        );
        check(
            self.workers.queue <= 100_000,
            "workers.queue",
            "must be at most 100000",
        );
        check(
            self.workers.retry_after_secs >= 1,
            "workers.retry_after_secs",
            "must be at least 1",
        );
        check(
            self.purge.max_attempts >= 1,
            "purge.max_attempts",
            "must be at least 1",
        );
        check(self.purge.queue >= 1, "purge.queue", "must be at least 1");
        check(
            self.purge.request_timeout_ms >= 1,
            "purge.request_timeout_ms",
            "must be at least 1",
        );
        if let Some(url) = &self.purge.edge_admin_url {
            let parsed = reqwest::Url::parse(url);
            check(
                parsed
                    .as_ref()
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
                "purge.edge_admin_url",
                "must be an http:// or https:// URL",
            );
            check(
                self.purge
                    .token
                    .as_deref()
                    .is_some_and(|t| !t.trim().is_empty()),
                "purge.token",
                "is required when purge.edge_admin_url is set",
            );
        }
        self.access_log.validate("access_log", errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_local_defaults() {
        let c = OriginConfig::from_toml("").expect("defaults are valid");
        assert_eq!(c.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(c.limits.max_upload_bytes, 10 * 1024 * 1024);
        assert!(c.purge.edge_admin_url.is_none());
        assert!(c.worker_threads() >= 1);
    }

    #[test]
    fn every_bad_key_is_reported_by_name() {
        let err = OriginConfig::from_toml(
            r#"
            listen = "not an address"
            colour = "blue"
            [database]
            url = "mysql://db"
            [limits]
            max_upload_bytes = "ten megs"
            [workers]
            retry_after_secs = 0
            "#,
        )
        .expect_err("bad file");
        for key in [
            "listen",
            "colour",
            "database.url",
            "limits.max_upload_bytes",
        ] {
            assert!(err.names(key), "{key} not named in:\n{err}");
        }
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let err = OriginConfig::from_toml(
            r#"
            [database]
            url = "mysql://db"
            [workers]
            retry_after_secs = 0
            [purge]
            edge_admin_url = "ftp://edge"
            "#,
        )
        .expect_err("bad values");
        for key in [
            "database.url",
            "workers.retry_after_secs",
            "purge.edge_admin_url",
            "purge.token",
        ] {
            assert!(err.names(key), "{key} not named in:\n{err}");
        }
    }
}
