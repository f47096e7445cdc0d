//! `edge.toml`: every key, its default and its check. `config/edge.example.toml` shows them all
//! with comments; `docs/configuration.md` is the reference.

use std::net::SocketAddr;
use std::path::Path;

use outpost_common::config::{self, ConfigError, ConfigErrors, Validate};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub server: ServerConfig,
    pub origin: OriginPoolConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses the proxy accepts client traffic on.
    pub listen: Vec<SocketAddr>,
    /// Proxy worker threads; 0 means one per core.
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginPoolConfig {
    /// The origins behind this edge (`host:port`, resolved at start).
    pub addresses: Vec<SocketAddr>,
}

impl Default for OriginPoolConfig {
    fn default() -> Self {
        Self {
            addresses: vec![SocketAddr::from(([127, 0, 0, 1], 8081))],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin listener (health, metrics, purge); loopback by default.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
        }
    }
}

impl EdgeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        config::load_file(path)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        config::from_str(text)
    }
}

impl Validate for EdgeConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.server.listen.is_empty() {
            errors.push(ConfigError::new(
                "server.listen",
                "needs at least one address",
            ));
        }
        if self.server.threads > 1_024 {
            errors.push(ConfigError::new("server.threads", "must be at most 1024"));
        }
        if self.origin.addresses.is_empty() {
            errors.push(ConfigError::new(
                "origin.addresses",
                "needs at least one origin",
            ));
        }
        if self.server.listen.contains(&self.admin.listen) {
            errors.push(ConfigError::new(
                "admin.listen",
                "must differ from every server.listen",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = EdgeConfig::from_toml("").expect("valid");
        assert_eq!(c.origin.addresses.len(), 1);
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = EdgeConfig::from_toml(
            "[server]\nlisten = []\nthreds = 2\n[origin]\naddresses = [\"nowhere\"]\n",
        )
        .expect_err("bad");
        for key in ["server.listen", "server.threds", "origin.addresses[0]"] {
            assert!(err.names(key), "{key} not named in {err}");
        }
    }
}
