//! The origin pool: round-robin over the healthy origins, health-checked in the background
//! (an HTTP `GET` of `origin.health_check_path`, or a TCP connect), plus what the edge adds to
//! requests on their way to an origin (`Via`, `X-Forwarded-*`).

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::services::background::{GenBackgroundService, background_service};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, LoadBalancer};

use crate::config::OriginPoolConfig;
use crate::metrics::Metrics;

pub struct Origins {
    lb: Arc<LoadBalancer<RoundRobin>>,
    config: OriginPoolConfig,
}

/// Mirrors health changes into `outpost_origin_healthy` and the log.
struct HealthMetrics(Arc<Metrics>);

#[async_trait]
impl HealthObserve for HealthMetrics {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let addr = target.addr.to_string();
        self.0
            .origin_healthy
            .with_label_values(&[&addr])
            .set(i64::from(healthy));
        if healthy {
            tracing::info!(origin = %addr, "origin healthy");
        } else {
            tracing::warn!(origin = %addr, "origin failed its health check");
        }
    }
}

impl Origins {
    /// The pool and the background service that health-checks it (add it to the server).
    pub fn new(
        config: &OriginPoolConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, GenBackgroundService<LoadBalancer<RoundRobin>>)> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(config.addresses.iter().copied())?;
        for addr in &config.addresses {
            metrics
                .origin_healthy
                .with_label_values(&[&addr.to_string()])
                .set(1);
        }
        let observer = Box::new(HealthMetrics(metrics));
        if config.health_check_path.is_empty() {
            let mut hc = TcpHealthCheck::new();
            hc.peer_template.options.connection_timeout = Some(config.connect_timeout());
            hc.health_changed_callback = Some(observer);
            lb.set_health_check(hc);
        } else {
            let mut hc = HttpHealthCheck::new("localhost", false);
            hc.req.set_uri(
                config
                    .health_check_path
                    .parse()
                    .or_err(ErrorType::InternalError, "health check path")?,
            );
            hc.peer_template.options.connection_timeout = Some(config.connect_timeout());
            hc.health_changed_callback = Some(observer);
            lb.set_health_check(Box::new(hc));
        }
        lb.health_check_frequency = Some(config.health_check_interval());
        let service = background_service("origin health checks", lb);
        let lb = service.task();
        Ok((
            Self {
                lb,
                config: config.clone(),
            },
            service,
        ))
    }

    /// The origin for the next request: a healthy one in turn, or, when none passes its check,
    /// the first (the check may be behind; trying beats refusing).
    pub fn peer(&self) -> Box<HttpPeer> {
        let backend = self.lb.select(b"", 256);
        let mut peer = match backend {
            Some(b) => HttpPeer::new(b, false, String::new()),
            None => HttpPeer::new(self.config.addresses[0], false, String::new()),
        };
        let o = &mut peer.options;
        o.connection_timeout = Some(self.config.connect_timeout());
        o.read_timeout = Some(self.config.read_timeout());
        o.write_timeout = Some(self.config.write_timeout());
        o.idle_timeout = Some(self.config.idle_timeout());
        Box::new(peer)
    }

    pub fn count(&self) -> usize {
        self.config.addresses.len()
    }

    /// True when at least one origin passes its health check.
    pub fn any_healthy(&self) -> bool {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .any(|b| self.lb.backends().ready(b))
    }
}

/// Adds `Via` and `X-Forwarded-For/-Proto/-Host`, appending to what earlier proxies sent.
pub fn add_forwarding_headers(
    req: &mut RequestHeader,
    via: &str,
    client_ip: Option<String>,
    scheme: &str,
) -> Result<()> {
    append_list(req, "via", via)?;
    if let Some(ip) = client_ip {
        append_list(req, "x-forwarded-for", &ip)?;
    }
    if !req.headers.contains_key("x-forwarded-proto") {
        req.insert_header("x-forwarded-proto", scheme)?;
    }
    if !req.headers.contains_key("x-forwarded-host")
        && let Some(host) = req.headers.get(http::header::HOST).cloned()
    {
        req.insert_header("x-forwarded-host", host)?;
    }
    Ok(())
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

    #[test]
    fn forwarding_headers_append_to_earlier_proxies() {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        r.insert_header("host", "shop.test").expect("host");
        r.insert_header("via", "1.1 cdn-a").expect("via");
        r.insert_header("x-forwarded-for", "10.0.0.1").expect("xff");
        add_forwarding_headers(&mut r, "1.1 outpost", Some("192.0.2.7".into()), "http")
            .expect("ok");
        assert_eq!(r.headers["via"], "1.1 cdn-a, 1.1 outpost");
        assert_eq!(r.headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(r.headers["x-forwarded-proto"], "http");
        assert_eq!(r.headers["x-forwarded-host"], "shop.test");
    }
}
