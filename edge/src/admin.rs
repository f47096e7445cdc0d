//! The admin listener (loopback by default): `/healthz` (the process answers), `/readyz` (for
//! DNS / load-balancer health checks: ready unless draining; an origin outage is when edges
//! are needed most, so it never takes a node out), `/origins` (503 when no origin passes its
//! health check: for alerting), `/metrics` (Prometheus), and the purge API (`POST /purge`, `GET /purge/{id}`; bearer token;
//! docs/admin-api.md, docs/openapi.json).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::answers::{json, json_error, purge_outcome, text};
use crate::auth::token_matches;
use crate::metrics::{Metrics, set_count};
use crate::purge::{PurgeRequest, PurgeService};
use crate::sites::LiveSites;
use crate::storage::TieredStorage;
use crate::tls::resolver::Certificates;

/// Largest purge request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Every route of the admin listener. Requests are dispatched through this table, and the API
/// description check (`edge/tests/openapi.rs`) reads the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Origins,
    Metrics,
    Purge,
    Receipt,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Healthz,
        Route::Readyz,
        Route::Origins,
        Route::Metrics,
        Route::Purge,
        Route::Receipt,
    ];

    pub fn method(self) -> &'static str {
        match self {
            Route::Purge => "POST",
            _ => "GET",
        }
    }

    /// The path, as the API description writes it.
    pub fn template(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Origins => "/origins",
            Route::Metrics => "/metrics",
            Route::Purge => "/purge",
            Route::Receipt => "/purge/{id}",
        }
    }

    /// The route's parameter when `path` is this route's (`Some("")` for routes without one).
    fn matches(self, path: &str) -> Option<&str> {
        match self.template().split_once('{') {
            None => (path == self.template()).then_some(""),
            Some((prefix, _)) => path
                .strip_prefix(prefix)
                .filter(|id| !id.is_empty() && !id.contains('/')),
        }
    }

    /// Answered only with the admin token.
    fn needs_token(self) -> bool {
        matches!(self, Route::Purge | Route::Receipt)
    }
}

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub purges: Arc<PurgeService>,
    /// `admin.token`; empty refuses every purge.
    pub token: String,
    pub storage: &'static TieredStorage,
    pub sites: Arc<LiveSites>,
    /// The TLS listeners' certificates, for their expiry gauge.
    pub certificates: Option<Arc<Certificates>>,
    /// Set when a shutdown signal arrived: stop attracting traffic.
    pub draining: Arc<AtomicBool>,
}

/// Parses a purge request, naming the field at fault.
pub fn parse_purge(body: &[u8]) -> Result<PurgeRequest, Box<Response<Vec<u8>>>> {
    // An object, and nothing after it (serde would also take an array, by position).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "malformed JSON: the body must be a JSON object",
            None,
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize::<_, PurgeRequest>(&mut *de);
    if parsed.is_ok()
        && let Err(e) = de.end()
    {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            &format!("malformed JSON: {e}"),
            None,
        )));
    }
    parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = inner.is_syntax() || inner.is_eof();
        let field = (path != "." && !syntax).then_some(path);
        let message = match &field {
            _ if inner.is_syntax() || inner.is_eof() => format!("malformed JSON: {inner}"),
            Some(f) => format!("{f}: {inner}"),
            None => format!("bad purge request: {inner}"),
        };
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            &message,
            field.as_deref(),
        ))
    })
}

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(
    session: &mut ServerSession,
    limit: usize,
) -> Result<Vec<u8>, Box<Response<Vec<u8>>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Box::new(json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("request body over {limit} bytes"),
                        None,
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(Box::new(json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body: {e}"),
                    None,
                )));
            }
        }
    }
}

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        token_matches(presented, &self.token)
    }

    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session, MAX_BODY).await {
            Ok(b) => b,
            Err(resp) => return *resp,
        };
        let req = match parse_purge(&body) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        purge_outcome(self.purges.submit(req).await)
    }

    /// One line per site (`a: 1 of 2 origins healthy`), and whether every site has one.
    fn origin_report(&self) -> (String, bool) {
        let mut report = String::new();
        let mut all_up = true;
        for site in self.sites.current().all() {
            let (up, all) = site.origins.healthy();
            all_up &= up > 0;
            let _ = writeln!(report, "{}: {up} of {all} origins healthy", site.name);
        }
        (report, all_up)
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let plain = "text/plain; charset=utf-8";
        let method = session.req_header().method.as_str().to_owned();
        let path = session.req_header().uri.path().to_owned();
        let at_path: Vec<(Route, &str)> = Route::ALL
            .iter()
            .filter_map(|r| Some((*r, r.matches(&path)?)))
            .collect();
        let Some(&(first, _)) = at_path.first() else {
            return text(StatusCode::NOT_FOUND, "not found\n", plain);
        };
        if first.needs_token() && !self.authorized(session) {
            let why = if self.token.is_empty() {
                "purging is disabled: no admin.token is configured"
            } else {
                "missing or wrong bearer token"
            };
            let mut resp = json_error(StatusCode::UNAUTHORIZED, why, None);
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
        let Some(&(route, param)) = at_path.iter().find(|(r, _)| r.method() == method) else {
            let allowed = format!("use {}", first.method());
            return if first.needs_token() {
                json_error(StatusCode::METHOD_NOT_ALLOWED, &allowed, None)
            } else {
                text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{allowed}\n"),
                    plain,
                )
            };
        };
        match route {
            Route::Healthz => text(StatusCode::OK, "ok\n", plain),
            Route::Readyz => {
                // Sites' origins are news, not a verdict: an origin outage is when edges are
                // needed most (stale-if-error), so it never takes the node out.
                let (sites, _) = self.origin_report();
                match self.readiness() {
                    Ok(()) => text(StatusCode::OK, format!("ready\n{sites}"), plain),
                    Err(why) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n{sites}"),
                        plain,
                    ),
                }
            }
            Route::Origins => {
                let (report, all_sites_up) = self.origin_report();
                let status = if all_sites_up {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, report, plain)
            }
            Route::Metrics => {
                if let Some(certificates) = &self.certificates {
                    certificates.export_expiry(&self.metrics.tls_certificate_expiry);
                }
                let (entries, bytes) = self.storage.l1().usage();
                let (files, file_bytes) = self.storage.body_files();
                let m = &self.metrics;
                set_count(&m.l1_entries, entries);
                set_count(&m.l1_bytes, bytes);
                set_count(&m.l1_body_files, files);
                set_count(&m.l1_body_file_bytes, file_bytes);
                text(
                    StatusCode::OK,
                    self.metrics.render(),
                    "text/plain; version=0.0.4",
                )
            }
            Route::Purge => self.purge(session).await,
            Route::Receipt => match self.purges.receipt(param).await {
                Some(r) => json(StatusCode::OK, &r),
                None => json_error(StatusCode::NOT_FOUND, "no such purge", None),
            },
        }
    }
}
