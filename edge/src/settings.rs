//! The runtime config: what the file (`config.rs`, the TOML format and its validation) means,
//! in the types the code uses — `Duration`, `SocketAddr`, `IpNet`, enums, normalised names. It
//! is built once, from a config that passed validation, and nothing after it parses or converts
//! a config value again. Adding a key touches the file struct, `validate`, the conversion here,
//! and its user.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{self, EdgeConfig, GetWithBody, OriginPoolConfig, SetCookiePolicy};
use crate::target::QueryRules;
use outpost_common::access_log::AccessLogConfig;

pub struct Settings {
    pub server: ServerSettings,
    /// At least one; hosts are unique across them.
    pub sites: Vec<SiteSettings>,
    pub tls: Option<TlsSettings>,
    pub cache: CacheSettings,
    /// `None`: no shared tier (`l2.servers` empty).
    pub l2: Option<SharedTierSettings>,
    /// Key prefix in the region's memcached pool (the shared tier and the purge log).
    pub namespace: String,
    pub admin: AdminSettings,
    pub purge: PurgeSettings,
    pub access_log: AccessLogConfig,
}

pub struct ServerSettings {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    pub read_buffer_bytes: usize,
    pub h2c: bool,
    pub hit_path: bool,
    pub unknown_host_status: u16,
    /// `None`: SIGQUIT stops gracefully without handing the listeners over.
    pub upgrade_socket: Option<String>,
    /// Resolved: one per core when the file says 0.
    pub threads: usize,
    pub name: String,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub request_head_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// 0: derived from the open-file limit.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Lower case, `-` for `_`, sorted, deduplicated.
    pub strip_request_headers: Vec<String>,
    pub drop_underscored_headers: bool,
    pub request_body_timeout: Duration,
    pub request_body_min_rate: u64,
    pub send_timeout: Duration,
    pub get_with_body: GetWithBody,
}

/// The TLS listeners and the files of their certificates (loaded when the edge is built).
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub http2: bool,
    /// `(cert_file, key_file)`, the default first.
    pub certificates: Vec<(String, String)>,
}

pub struct SiteSettings {
    pub name: String,
    /// Lower case: exact names, `*.` wildcards, or `*` (any host).
    pub hosts: Vec<String>,
    pub redirect_to_https: bool,
    pub origin: OriginSettings,
    pub query: QueryRules,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OriginSettings {
    /// `ip:port` or `name:port`.
    pub addresses: Vec<String>,
    pub dns_refresh: Duration,
    pub tls: bool,
    /// The server name to send and verify; `None`: each address's own name.
    pub sni: Option<String>,
    /// Authorities to verify the origin with; `None`: the system's.
    pub ca_file: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: TCP connect checks.
    pub health_check_path: Option<String>,
    pub health_check_interval: Duration,
}

impl OriginSettings {
    fn of(o: &OriginPoolConfig) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            addresses: o.addresses.clone(),
            dns_refresh: secs(o.dns_refresh_secs),
            tls: o.tls,
            sni: non_empty(&o.sni),
            ca_file: non_empty(&o.ca_file),
            connect_timeout: ms(o.connect_timeout_ms),
            read_timeout: ms(o.read_timeout_ms),
            write_timeout: ms(o.write_timeout_ms),
            idle_timeout: secs(o.idle_timeout_secs),
            health_check_path: non_empty(&o.health_check_path),
            health_check_interval: ms(o.health_check_interval_ms),
        }
    }

    /// The `Host` (and server name) of HTTP health checks of addresses given as IPs: `sni`,
    /// else the first address given by name, else `localhost`. (An address resolved from a name
    /// is checked as that name.)
    pub fn check_host(&self) -> &str {
        if let Some(sni) = &self.sni {
            return sni;
        }
        self.addresses
            .iter()
            .filter(|a| a.parse::<SocketAddr>().is_err())
            .find_map(|a| a.rsplit_once(':').map(|(host, _)| host))
            .unwrap_or("localhost")
    }
}

pub struct CacheSettings {
    pub enabled: bool,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub heuristic_max: Duration,
    pub grace: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub max_stale: Duration,
    pub set_cookie: SetCookiePolicy,
    pub max_variants: usize,
    pub lock_timeout: Duration,
    pub honor_client_no_cache: bool,
    pub heuristics_with_credentials: bool,
    pub l1_capacity_bytes: u64,
    pub l1_max_object: usize,
    pub l1_sendfile_min: usize,
}

impl CacheSettings {
    /// The longest an object can be of use in a tier: fresh, stale, then kept to revalidate.
    /// Purge marks outlive every object stored before them by this much.
    pub fn longest_life(&self) -> Duration {
        self.max_ttl
            .saturating_add(self.max_stale)
            .saturating_add(self.grace)
    }
}

pub struct SharedTierSettings {
    /// `ip:port` or `name:port`.
    pub servers: Vec<String>,
    pub dns_refresh: Duration,
    pub deadline: Duration,
    pub chunk_deadline: Duration,
    pub max_object: usize,
    pub inline_max: usize,
    pub chunk_bytes: usize,
    pub write_queue_bytes: u64,
    pub write_concurrency: usize,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub max_connections_per_server: usize,
}

pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Empty: purging is refused.
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct PurgeSettings {
    pub region: String,
    pub poll_interval: Duration,
    pub max_lag: Duration,
    pub log_replicas: usize,
    pub clock_skew: Duration,
    pub max_wait: Duration,
    pub allow_networks: Vec<ipnet::IpNet>,
    pub forward_attempts: u32,
    pub invalidations_per_client_per_sec: u32,
    pub invalidation_burst: u32,
    pub regions: Vec<RegionPeer>,
    /// The shared tier's operation deadline (the log's operations use at least 50 ms of it).
    pub deadline: Duration,
}

/// Another region's admin API, to forward purges to.
#[derive(Clone, Debug)]
pub struct RegionPeer {
    pub name: String,
    pub admin_url: String,
    pub token: String,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Settings {
    /// The runtime form of `config`, which has passed validation (a network that would not
    /// parse was refused there, so none is dropped here).
    pub fn of_valid(config: &EdgeConfig) -> Self {
        let (s, c, l2, p) = (&config.server, &config.cache, &config.l2, &config.purge);
        let mut strip: Vec<String> = s
            .strip_request_headers
            .iter()
            .map(|h| h.to_ascii_lowercase().replace('_', "-"))
            .collect();
        strip.sort();
        strip.dedup();
        let networks = |list: &[String]| -> Vec<ipnet::IpNet> {
            list.iter()
                .filter_map(|n| config::parse_network(n))
                .collect()
        };
        Self {
            sites: config
                .sites()
                .iter()
                .map(|site| SiteSettings {
                    name: site.name.clone(),
                    hosts: site.hosts.clone(),
                    redirect_to_https: site.redirect_to_https,
                    origin: OriginSettings::of(&site.origin),
                    query: {
                        let key = site.cache_key.as_ref().unwrap_or(&c.key);
                        QueryRules::new(key.sort_query, &key.drop_params)
                    },
                })
                .collect(),
            tls: s.tls.as_ref().map(|t| TlsSettings {
                listen: t.listen.clone(),
                http2: t.http2,
                certificates: t
                    .certificates
                    .iter()
                    .map(|c| (c.cert_file.clone(), c.key_file.clone()))
                    .collect(),
            }),
            server: ServerSettings {
                listen: s.listen.clone(),
                read_buffer_bytes: s.read_buffer_bytes,
                h2c: s.h2c,
                hit_path: s.hit_path,
                unknown_host_status: s.unknown_host_status,
                upgrade_socket: (!s.upgrade_socket.is_empty()).then(|| s.upgrade_socket.clone()),
                threads: match s.threads {
                    0 => std::thread::available_parallelism().map_or(1, usize::from),
                    n => n,
                },
                name: s.name.clone(),
                grace_period: secs(s.grace_period_secs),
                graceful_shutdown_timeout: secs(s.graceful_shutdown_timeout_secs),
                max_request_header_bytes: s.max_request_header_bytes,
                request_head_timeout: ms(s.request_head_timeout_ms),
                keepalive_timeout: secs(s.keepalive_timeout_secs),
                max_connections: s.max_connections,
                max_connections_per_client: s.max_connections_per_client,
                trusted_proxies: networks(&s.trusted_proxies),
                strip_request_headers: strip,
                drop_underscored_headers: s.drop_underscored_headers,
                request_body_timeout: ms(s.request_body_timeout_ms),
                request_body_min_rate: s.request_body_min_rate,
                send_timeout: ms(s.send_timeout_ms),
                get_with_body: s.get_with_body,
            },
            cache: CacheSettings {
                enabled: c.enabled,
                default_ttl: secs(c.default_ttl_secs),
                max_ttl: secs(c.max_ttl_secs),
                heuristic_max: secs(c.heuristic_max_secs),
                grace: secs(c.grace_secs),
                stale_while_revalidate: secs(c.stale_while_revalidate_secs),
                stale_if_error: secs(c.stale_if_error_secs),
                max_stale: secs(c.max_stale_secs),
                set_cookie: c.set_cookie,
                max_variants: c.max_variants,
                lock_timeout: ms(c.lock_timeout_ms),
                honor_client_no_cache: c.honor_client_no_cache,
                heuristics_with_credentials: c.heuristics_with_credentials,
                l1_capacity_bytes: c.l1.capacity_bytes,
                l1_max_object: to_usize(c.l1.max_object_bytes),
                l1_sendfile_min: to_usize(c.l1.sendfile_min_bytes),
            },
            l2: (!l2.servers.is_empty()).then(|| SharedTierSettings {
                servers: l2.servers.clone(),
                dns_refresh: secs(l2.dns_refresh_secs),
                deadline: ms(l2.deadline_ms),
                chunk_deadline: ms(l2.chunk_deadline_ms),
                max_object: to_usize(l2.max_object_bytes),
                inline_max: to_usize(l2.inline_max_bytes),
                chunk_bytes: to_usize(l2.chunk_bytes),
                write_queue_bytes: l2.write_queue_bytes,
                write_concurrency: l2.write_concurrency,
                breaker_failures: l2.breaker_failures,
                breaker_open: ms(l2.breaker_open_ms),
                max_connections_per_server: l2.max_connections_per_server,
            }),
            namespace: l2.namespace.clone(),
            admin: AdminSettings {
                listen: config.admin.listen,
                token: config.admin.token.clone(),
            },
            purge: PurgeSettings {
                region: p.region.clone(),
                poll_interval: ms(p.poll_interval_ms),
                max_lag: ms(p.max_lag_ms),
                log_replicas: p.log_replicas,
                clock_skew: ms(p.clock_skew_ms),
                max_wait: ms(p.max_wait_ms),
                allow_networks: networks(&p.allow_networks),
                forward_attempts: p.forward_attempts,
                invalidations_per_client_per_sec: p.invalidations_per_client_per_sec,
                invalidation_burst: p.invalidation_burst,
                regions: p
                    .regions
                    .iter()
                    .map(|r| RegionPeer {
                        name: r.name.clone(),
                        admin_url: r.admin_url.clone(),
                        token: r.token.clone(),
                    })
                    .collect(),
                deadline: ms(l2.deadline_ms),
            },
            access_log: config.access_log.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_becomes_typed_values() {
        let config = EdgeConfig::from_toml(
            "[server]\nrequest_head_timeout_ms = 1500\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
             strip_request_headers = [\"X_Thing\", \"x-thing\", \"B\"]\n\
             [origin]\nhealth_check_path = \"\"\n[purge]\nallow_networks = [\"::1\"]\n",
        )
        .expect("valid");
        let s = Settings::of_valid(&config);
        assert_eq!(s.server.request_head_timeout, Duration::from_millis(1500));
        assert_eq!(s.server.trusted_proxies.len(), 2);
        assert_eq!(s.server.strip_request_headers, ["b", "x-thing"]);
        assert!(s.server.threads >= 1);
        assert_eq!(s.sites[0].origin.health_check_path, None);
        assert_eq!(s.sites[0].hosts, ["*"]);
        assert_eq!(s.purge.allow_networks.len(), 1);
        assert!(s.l2.is_none());
    }
}
