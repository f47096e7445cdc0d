//! The admin listener (loopback by default): `/healthz` (the process answers), `/readyz` (for
//! DNS / load-balancer health checks: not ready while draining or with every origin down) and
//! `/metrics` (Prometheus). Purging joins it with its own issue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::storage::TieredStorage;
use crate::upstream::Origins;

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub storage: &'static TieredStorage,
    pub origins: Arc<Origins>,
    /// Set when a shutdown signal arrived: stop attracting traffic.
    pub draining: Arc<AtomicBool>,
}

fn text(status: StatusCode, body: impl Into<Vec<u8>>, content_type: &str) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

impl AdminApp {
    fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else if !self.origins.any_healthy() {
            Err("no healthy origin")
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let plain = "text/plain; charset=utf-8";
        match (
            session.req_header().method.as_str(),
            session.req_header().uri.path(),
        ) {
            ("GET", "/healthz") => text(StatusCode::OK, "ok\n", plain),
            ("GET", "/readyz") => match self.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n", plain),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                    plain,
                ),
            },
            ("GET", "/metrics") => {
                let (entries, bytes) = self.storage.l1().usage();
                self.metrics
                    .l1_entries
                    .set(i64::try_from(entries).unwrap_or(i64::MAX));
                self.metrics
                    .l1_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                text(
                    StatusCode::OK,
                    self.metrics.render(),
                    "text/plain; version=0.0.4",
                )
            }
            (_, "/healthz" | "/readyz" | "/metrics") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n", plain)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n", plain),
        }
    }
}
