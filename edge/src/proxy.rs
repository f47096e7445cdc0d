//! `EdgeProxy`, the one [`ProxyHttp`]: a table of contents of the request path. Each phase is a
//! few lines that hand off to the module that owns the concern (docs/request-lifecycle.md walks
//! through them in order).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use outpost_common::access_log::AccessLog;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::predictor::Predictor;
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, HitHandler,
    NoCacheReason, RespCacheable,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::access_log;
use crate::answers::{json_error, purge_outcome};
use crate::auth::token_matches;
use crate::cache_status;
use crate::client::Client;
use crate::conditional;
use crate::config::GetWithBody;
use crate::connection::date;
use crate::connection::stream::{acknowledge, restore_date, switching_protocols, violation_of};
use crate::ctx::{Lookup, RequestCtx, StaleServed};
use crate::headers::{CACHE_STATUS, advertise_ranges, connection_listed, for_client};
use crate::metrics::{ClientErrorKind, Metrics, Outcome};
use crate::origin_fault::OriginFault;
use crate::policy::freshness::Exchange;
use crate::policy::{self, CREDENTIALS, Policy, Verdict, directives, vary};
use crate::purge::{PurgeRequest, PurgeService};
use crate::sites::LiveSites;
use crate::storage::TieredStorage;
use crate::target::{self, Scheme};
use crate::tls::resolver::misdirected;
use crate::upstream;

/// Most ranges served in one multipart response (Pingora's default).
const MAX_RANGES: usize = 200;

/// Shards of the uncacheable-URL predictor (Pingora's recommended power of two).
const PREDICTOR_SHARDS: usize = 16;

pub struct EdgeProxy {
    pub name: String,
    /// `1.1 <name>`, added to `Via` both ways.
    pub via: String,
    /// The same, ready to insert as it is when the response has no `Via` of its own.
    pub via_value: http::HeaderValue,
    pub cache_enabled: bool,
    pub policy: Policy,
    /// The sites, by host; a reload swaps them.
    pub sites: Arc<LiveSites>,
    /// `server.unknown_host_status`: what a host no site claims gets.
    pub unknown_host_status: u16,
    pub storage: &'static TieredStorage,
    pub lock: &'static CacheKeyLockImpl,
    pub predictor: &'static Predictor<PREDICTOR_SHARDS>,
    pub lock_timeout: Duration,
    pub max_object_bytes: usize,
    pub max_request_header_bytes: usize,
    pub metrics: Arc<Metrics>,
    pub purges: Arc<PurgeService>,
    /// `admin.token`: `PURGE` carrying it is allowed from anywhere…
    pub purge_token: String,
    /// …and without it only from these networks.
    pub purge_networks: Vec<ipnet::IpNet>,
    /// `server.trusted_proxies`: peers whose forwarding headers are kept.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `server.strip_request_headers`, normalised (lower case, `-` for `_`) and sorted.
    pub strip_request_headers: Vec<String>,
    pub drop_underscored_headers: bool,
    pub get_with_body: GetWithBody,
    /// `server.keepalive_timeout_secs` and `server.send_timeout_ms`, applied to every
    /// request's connection.
    pub keepalive_secs: u64,
    /// Set on SIGTERM: answers close their connection, so keep-alive clients reconnect
    /// (elsewhere, once `/readyz` moved the balancer) before the listeners close.
    pub draining: Arc<AtomicBool>,
    pub send_timeout: Duration,
    pub access_log: Arc<AccessLog>,
}

/// Reasons not to store that say nothing about the URL (they depend on this request, or on a
/// passing origin error), so they must not teach the predictor to skip the cache for everyone.
fn says_nothing_about_the_url(reason: &'static str) -> bool {
    matches!(
        reason,
        "request-no-store" | "authorization" | "too-many-variants" | ORIGIN_ERROR | CREDENTIALS
    )
}

/// What the predictor is told when an origin error was not stored.
const ORIGIN_ERROR: &str = "origin-error-status";

impl EdgeProxy {
    /// Names and counts one failed exchange with the origin (each connection attempt counts).
    fn origin_failed(&self, ctx: &mut RequestCtx, e: &Error) -> OriginFault {
        let fault = OriginFault::of(e);
        ctx.origin_fault = Some(fault);
        self.metrics
            .origin_errors
            .with_label_values(&[fault.label()])
            .inc();
        fault
    }

    /// The request's final origin failure (it gets a stale copy or an error answer): named, and
    /// counted unless it is the connection failure `fail_to_connect` counted already.
    fn final_origin_failure(&self, ctx: &mut RequestCtx, e: &Error) -> OriginFault {
        let fault = OriginFault::of(e);
        if fault.before_request() && ctx.origin_fault.is_some_and(OriginFault::before_request) {
            ctx.origin_fault = Some(fault);
            return fault;
        }
        self.origin_failed(ctx, e)
    }

    pub fn predictor(capacity: usize) -> &'static Predictor<PREDICTOR_SHARDS> {
        Box::leak(Box::new(Predictor::new(
            capacity / PREDICTOR_SHARDS,
            Some(says_nothing_about_the_url),
        )))
    }

    fn scheme(session: &Session) -> Scheme {
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        if tls { Scheme::Https } else { Scheme::Http }
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates its target and the same-origin
    /// `Location` / `Content-Location` it names, here at once and, when a tier held them, in
    /// the whole region (see [`PurgeService::invalidate`]).
    fn invalidate_after_unsafe(&self, ctx: &RequestCtx, resp: &ResponseHeader) {
        let (Some(target), Some(site)) = (&ctx.target, &ctx.site) else {
            return;
        };
        let mut keys = vec![site.keys.key(target)];
        for field in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            if let Some(location) = resp.headers.get(&field).and_then(|v| v.to_str().ok()) {
                keys.extend(site.keys.same_origin_key(target, location));
            }
        }
        self.purges.invalidate(keys, ctx.client.address);
    }

    /// Refuses a request for what the client sent: `status` with `Cache-Status` saying why,
    /// counted as a `bad_request` client error.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        detail: &'static str,
        why: &str,
    ) -> Result<()> {
        self.metrics.client_error(ClientErrorKind::BadRequest).inc();
        self.refuse(session, ctx, status, detail, why).await
    }

    /// [`Self::reject`] without counting (what was counted where it was found).
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        detail: &'static str,
        why: &str,
    ) -> Result<()> {
        tracing::debug!(client = ?ctx.client.peer, %why, "request refused");
        let cache_status = format!("{}; detail={detail}", self.name);
        ctx.outcome = Outcome::ClientError;
        Self::respond(session, status, &cache_status, &self.via).await?;
        ctx.cache_status = Some(cache_status);
        Ok(())
    }

    /// `PURGE /path` (the Varnish/Squid habit): a hard purge of that URL (every variant), or a
    /// soft one with `Soft-Purge: 1`; with the admin token, or from an allowed network.
    async fn purge_method(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        ctx.outcome = Outcome::Pass;
        let req = session.req_header();
        let token = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let from_allowed = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .is_some_and(|a| self.purge_networks.iter().any(|n| n.contains(&a.ip())));
        let resp = if !(from_allowed || token_matches(token, &self.purge_token)) {
            json_error(
                http::StatusCode::UNAUTHORIZED,
                "PURGE needs the admin bearer token or an allowed network",
                None,
            )
        } else {
            let soft = req
                .headers
                .get("soft-purge")
                .is_some_and(|v| v.as_bytes() == b"1");
            let url = ctx.target.as_ref().map(target::Target::key_text);
            let purge = PurgeRequest {
                urls: url.into_iter().collect(),
                soft,
                ..PurgeRequest::default()
            };
            purge_outcome(self.purges.submit(purge).await)
        };
        let (parts, body) = resp.into_parts();
        let mut head = ResponseHeader::build(parts.status, Some(parts.headers.len() + 2))?;
        for (name, value) in &parts.headers {
            head.insert_header(name.clone(), value.clone())?;
        }
        // Like every answer of the proxy listener: who answered, and that the cache passed.
        let cache_status = format!("{}; detail=purge", self.name);
        head.insert_header(CACHE_STATUS, &cache_status)?;
        head.insert_header(http::header::VIA, self.via_value.clone())?;
        ctx.cache_status = Some(cache_status);
        session.set_keepalive(None);
        session.write_response_header(Box::new(head), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(())
    }

    /// A plain-HTTP request for a site that wants HTTPS: `301` for GET and HEAD, `308` (method
    /// and body kept) otherwise, to the same URL on the default HTTPS port.
    async fn redirect_to_https(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &target::Target,
    ) -> Result<()> {
        ctx.outcome = Outcome::Pass;
        let safe = matches!(session.req_header().method, Method::GET | Method::HEAD);
        let mut location = format!(
            "https://{}{}",
            target::host_of(&target.authority),
            target.path
        );
        if !target.query.is_empty() {
            location.push('?');
            location.push_str(&target.query);
        }
        let cache_status = format!("{}; detail=redirect-to-https", self.name);
        let mut resp = ResponseHeader::build(if safe { 301 } else { 308 }, Some(5))?;
        resp.insert_header(http::header::LOCATION, &location)?;
        resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
        resp.insert_header(http::header::CACHE_CONTROL, "max-age=3600")?;
        resp.insert_header(CACHE_STATUS, &cache_status)?;
        resp.insert_header(http::header::VIA, self.via_value.clone())?;
        ctx.cache_status = Some(cache_status);
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp), true).await?;
        Ok(())
    }

    /// Writes a short response of our own (an error, or `only-if-cached` with nothing cached).
    async fn respond(
        session: &mut Session,
        status: u16,
        cache_status: &str,
        via: &str,
    ) -> Result<()> {
        let body = Bytes::from(format!(
            "{status} {}\n",
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
        ));
        let mut resp = ResponseHeader::build(status, Some(4))?;
        resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        resp.insert_header(CACHE_STATUS, cache_status)?;
        resp.insert_header(http::header::VIA, via)?;
        let head = session.req_header().method == Method::HEAD;
        // The connection is not reused after our own answers (a request body may be unread):
        // say so, or a client reusing it races the close.
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp), head).await?;
        if !head {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// Bytes of the request line and header fields, as received.
fn request_head_size(req: &RequestHeader) -> usize {
    let fields: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    req.method.as_str().len() + req.raw_path().len() + 12 + fields
}

/// A GET or HEAD carries a body: framed with `Transfer-Encoding`, or a non-zero length.
fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().iter().any(|b| (b'1'..=b'9').contains(b)))
}

/// `Content-Length: 5, 5` (or the field twice) says one length in a form some origins refuse or
/// read differently: send it as the one value (RFC 9110 §8.6). Pingora has already refused
/// lengths that differ.
fn single_content_length(req: &mut RequestHeader) -> Result<()> {
    let mut values = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let (Some(first), second) = (values.next(), values.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let one = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(400), "bad Content-Length"))?;
    req.insert_header(http::header::CONTENT_LENGTH, one)?;
    Ok(())
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Upstream failures that stale-if-error covers: refused or failed connections, timeouts,
/// broken exchanges, and 5xx answers.
fn origin_failure(e: &Error) -> bool {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code >= 500,
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | ReadTimedout | WriteTimedout | ReadError | WriteError | ConnectionClosed | H1Error
        | H2Error | InvalidHTTPHeader => *e.esource() == ErrorSource::Upstream,
        _ => false,
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Bodies are never rewritten: no compression module.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    // --- the request ------------------------------------------------------------------------

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.head = acknowledge(session.stream());
        // Answer pipelined requests in order instead of closing after the first (RFC 9112
        // §9.3.2), and close idle keep-alive connections after our timeout, unless something
        // (shutdown, `Connection: close`) already decided not to keep the connection.
        session.set_pipelining_enabled(true);
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_secs));
        }
        session.set_write_timeout(Some(self.send_timeout));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client = Client::of(peer, &session.req_header().headers, &self.trusted_proxies);
        if ctx.client.trusted
            && let Some(id) = session
                .req_header()
                .headers
                .get(access_log::REQUEST_ID)
                .and_then(|v| access_log::forwarded_request_id(v.as_bytes()))
        {
            ctx.request_id = id;
        }
        let size = request_head_size(session.req_header());
        if size > self.max_request_header_bytes {
            let too_large = format!("request head of {size} bytes");
            self.reject(session, ctx, 431, "request-header-too-large", &too_large)
                .await?;
            return Ok(true);
        }
        if let Some(why) = violation_of(session.stream()) {
            // The body that came with this head breaks the framing rules (connection::framing,
            // which counted it).
            self.refuse(session, ctx, 400, "bad-request", why).await?;
            return Ok(true);
        }
        if ctx.head.is_some_and(|h| !h.request_line_ok) {
            // Raw whitespace, a control byte or a fragment in the target: Pingora would have
            // percent-encoded or dropped it, guessing what the client meant (RFC 9112 §3.2 says
            // refuse).
            let why = "whitespace, a control byte or a fragment in the request line";
            self.reject(session, ctx, 400, "bad-target", why).await?;
            return Ok(true);
        }
        let listed = connection_listed(&session.req_header().headers);
        if upstream::nominates_protected(&listed) {
            let why = "Connection nominates a field that frames or routes the request";
            self.reject(session, ctx, 400, "bad-request", why).await?;
            return Ok(true);
        }
        let sites = self.sites.current();
        let scheme = Self::scheme(session);
        let mut site = None;
        let parsed = target::parse_with(session.req_header(), scheme, |authority| {
            site = sites.route(target::host_of(authority));
            site.map_or(&target::KEEP_ALL, |s| s.keys.rules())
        });
        let target = match parsed {
            Ok(t) => t,
            Err(why) => {
                self.reject(session, ctx, 400, why.detail(), &why.to_string())
                    .await?;
                return Ok(true);
            }
        };
        let Some(site) = site.cloned() else {
            self.metrics.unknown_host_requests.inc();
            let why = format!("no site serves {}", target.authority);
            self.refuse(session, ctx, self.unknown_host_status, "unknown-host", &why)
                .await?;
            return Ok(true);
        };
        drop(sites);
        let tls = session.digest().and_then(|d| d.ssl_digest.as_deref());
        if misdirected(tls, target::host_of(&target.authority)) {
            let why = "the host is not one the connection's certificate serves";
            self.refuse(session, ctx, 421, "misdirected", why).await?;
            return Ok(true);
        }
        if site.redirect_to_https && scheme == Scheme::Http {
            ctx.site = Some(site);
            self.redirect_to_https(session, ctx, &target).await?;
            return Ok(true);
        }
        ctx.site = Some(site);
        // From here on the cache sees nothing of the request that the origin will not get.
        upstream::sanitize_request(
            session.req_header_mut(),
            ctx.client,
            &listed,
            &self.strip_request_headers,
            self.drop_underscored_headers,
        )?;
        ctx.target = Some(target);
        let req = session.req_header();
        if matches!(req.method, Method::GET | Method::HEAD) && has_body(req) {
            if self.get_with_body == GetWithBody::Reject {
                let why = "a GET or HEAD with a body";
                self.reject(session, ctx, 400, "request-body", why).await?;
                return Ok(true);
            }
            ctx.has_body = true;
        }
        if req.method.as_str() == "PURGE" {
            self.purge_method(session, ctx).await?;
            return Ok(true);
        }
        Ok(false)
    }

    // --- cache lookup ---------------------------------------------------------------------

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let req = session.req_header();
        ctx.req_dirs = directives::request(&req.headers);
        if !self.cache_enabled || !matches!(req.method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        if ctx.has_body {
            // What a body asks of a GET is the origin's business: never answered from or
            // stored in the cache.
            ctx.detail = Some("request-body");
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        session.cache.enable(
            self.storage,
            None,
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
        session.cache.set_max_file_size_bytes(self.max_object_bytes);
        ctx.cache_used = true;
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        match (&ctx.target, &ctx.site) {
            (Some(target), Some(site)) => Ok(site.keys.key(target)),
            // `request_filter` refuses every request it cannot parse before the cache sees it.
            _ => Error::e_explain(ErrorType::HTTPStatus(400), "no parsed request target"),
        }
    }

    fn cache_miss(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let vary_miss = session
            .cache
            .maybe_cache_key()
            .is_some_and(|k| k.variance_bin().is_some());
        ctx.lookup = Some(if vary_miss {
            Lookup::VaryMiss
        } else {
            Lookup::UriMiss
        });
        session.cache.cache_miss();
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        ctx.tier = crate::storage::tier_of(hit.as_ref());
        ctx.lookup = Some(if is_fresh {
            Lookup::Fresh
        } else {
            Lookup::Stale
        });
        let forced = self.policy.on_hit(&ctx.req_dirs, meta, SystemTime::now());
        ctx.forced_by_request = forced == Some(ForcedFreshness::ForceExpired);
        ctx.had_stored = true;
        Ok(forced)
    }

    /// Ranges are worked out only when asked for; the stored object already says
    /// `Accept-Ranges: bytes`, so a plain hit costs nothing here.
    fn range_header_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> pingora_proxy::RangeType {
        if !session
            .req_header()
            .headers
            .contains_key(http::header::RANGE)
        {
            advertise_ranges(resp);
            return pingora_proxy::RangeType::None;
        }
        pingora_proxy::range_header_filter(session.req_header(), resp, Some(MAX_RANGES))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        vary::variance(meta.headers(), &req.headers)
    }

    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if !ctx.req_dirs.only_if_cached {
            return Ok(true);
        }
        // §5.2.1.7: nothing usable is stored, and the client forbids asking the origin.
        let status = format!("{}; detail=only-if-cached", self.name);
        ctx.cache_status = Some(status.clone());
        ctx.outcome = Outcome::Miss;
        Self::respond(session, 504, &status, &self.via).await?;
        Ok(false)
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            // Called only inside the stale-while-revalidate window.
            None => {
                ctx.stale_served = Some(StaleServed::WhileRevalidating);
                true
            }
            Some(e) if origin_failure(e) => {
                let status = match e.etype() {
                    ErrorType::HTTPStatus(code) => Some(*code),
                    // The exchange with the origin broke: Pingora will not reuse the client's
                    // connection after this answer, so the answer must say so, or a client
                    // reusing it races the close.
                    _ => {
                        self.final_origin_failure(ctx, e);
                        session.set_keepalive(None);
                        None
                    }
                };
                ctx.stale_served = Some(StaleServed::OnError(status));
                true
            }
            Some(_) => false,
        }
    }

    // --- to and from the origin ----------------------------------------------------------

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.site {
            Some(site) => site.origins.peer(),
            None => Error::e_explain(ErrorType::HTTPStatus(400), "no site for the request"),
        }
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The address a retry ends on is the one logged.
        ctx.origin_addr = Some(peer._address.clone());
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // The request never reached this origin, so trying another is safe for any method.
        ctx.connect_failures += 1;
        let fault = self.origin_failed(ctx, &e);
        tracing::warn!(origin = %peer, fault = fault.detail(), error = %e, "cannot connect to origin");
        if ctx
            .site
            .as_ref()
            .is_some_and(|s| ctx.connect_failures < s.origins.count())
        {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(target) = &ctx.target else {
            return Error::e_explain(ErrorType::HTTPStatus(400), "no parsed request target");
        };
        // The origin is asked exactly what the key says was asked.
        upstream_request.set_raw_path(target.origin_form().as_bytes())?;
        upstream_request.insert_header(http::header::HOST, &target.authority)?;
        single_content_length(upstream_request)?;
        upstream::set_forwarding(upstream_request, ctx.client, target)?;
        upstream::append_via(upstream_request, &self.via)?;
        upstream_request.insert_header(access_log::REQUEST_ID, ctx.request_id())?;
        ctx.request_time = Some(SystemTime::now());
        ctx.upstream_sent_at = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if resp.status.is_informational() {
            return Ok(());
        }
        ctx.response_time = Some(SystemTime::now());
        ctx.upstream_status = Some(status);
        if let Some(sent) = ctx.upstream_sent_at {
            let took = sent.elapsed();
            ctx.origin_time = Some(took);
            self.metrics.origin_seconds.observe(took.as_secs_f64());
        }
        let class =
            ["1xx", "2xx", "3xx", "4xx", "5xx"].get(usize::from(status / 100).saturating_sub(1));
        self.metrics
            .origin_responses
            .with_label_values(&[class.copied().unwrap_or("other")])
            .inc();
        if status == 304 && session.cache.phase() == CachePhase::Stale {
            ctx.not_modified = Some(Box::new(resp.clone()));
        }
        if !is_safe(&session.req_header().method) && (200..400).contains(&status) {
            self.invalidate_after_unsafe(ctx, resp);
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let now = SystemTime::now();
        let exchange = Exchange {
            request_time: ctx.request_time.unwrap_or(now),
            response_time: ctx.response_time.unwrap_or(now),
        };
        // On a revalidation Pingora hands us the stored header with five fields of the 304
        // copied in; apply all of them (§3.2).
        let merged;
        let resp = match ctx.not_modified.as_deref() {
            Some(not_modified) => {
                merged = policy::merge_304(resp, not_modified);
                &merged
            }
            None => resp,
        };
        let req = session.req_header();
        match self.policy.decide(req, &ctx.req_dirs, resp, exchange) {
            Verdict::Store(meta) => {
                if let (Some(key), Some(variance)) = (
                    session.cache.maybe_cache_key(),
                    vary::variance(meta.headers(), &req.headers),
                ) && !self.storage.variants().admit(key.primary_bin(), variance)
                {
                    ctx.detail = Some("too-many-variants");
                    return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                        "too-many-variants",
                    )));
                }
                ctx.stored = true;
                Ok(RespCacheable::Cacheable(meta))
            }
            Verdict::DontStore(why) => {
                ctx.detail = Some(why);
                let reason = if resp.status.is_server_error() {
                    ORIGIN_ERROR
                } else {
                    why
                };
                Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(reason)))
            }
        }
    }

    // --- to the client -------------------------------------------------------------------

    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<bool> {
        Ok(conditional::not_modified(session.req_header(), resp))
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.access_log.is_on() {
            ctx.head_sent_at = Some(Instant::now());
        }
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            switching_protocols(session.stream());
        }
        // `Date` is the origin's, on a hit too (RFC 9110 §6.6.1); Pingora would stamp its own.
        if let Some(date) = resp
            .headers
            .get(http::header::DATE)
            .and_then(date::of_value)
        {
            restore_date(session.stream(), date);
        }
        for_client(resp, &self.via, &self.via_value)?;
        let phase = session.cache.phase();
        let collapsed = session.cache.lock_duration().is_some();
        let method_cacheable = matches!(session.req_header().method, Method::GET | Method::HEAD);
        let status = cache_status::value(
            &self.name,
            phase,
            ctx,
            session.cache.maybe_cache_meta(),
            method_cacheable,
            collapsed,
        );
        ctx.outcome = cache_status::outcome(phase, ctx);
        resp.insert_header(CACHE_STATUS, &status)?;
        ctx.cache_status = Some(status);
        Ok(())
    }

    /// A HEAD that missed is filled with a GET (Pingora asks the origin for the whole object to
    /// store it): its body must not reach the client. Pingora's HTTP/1 writer drops it for HEAD;
    /// its HTTP/2 writer sends it as DATA on a stream that must carry none, which the client
    /// takes for a protocol error.
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if session.req_header().method == Method::HEAD {
            *body = None;
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Our framing follower refused the client's body (see `connection::framing`): the
        // client's fault, whichever side Pingora saw fail first.
        let framing = violation_of(session.stream());
        let client_fault = framing.is_some() || *e.esource() == ErrorSource::Downstream;
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ if framing.is_some() => {
                tracing::debug!(client = ?ctx.client.peer, why = framing, "request framing refused");
                400
            }
            _ if *e.esource() == ErrorSource::Upstream => {
                self.final_origin_failure(ctx, e).status(ctx.had_stored)
            }
            _ if *e.esource() == ErrorSource::Downstream => match e.etype() {
                // The client is gone: nobody to answer.
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => {
                    self.metrics.client_error(ClientErrorKind::BadRequest).inc();
                    400
                }
            },
            _ => 500,
        };
        ctx.outcome = if client_fault {
            Outcome::ClientError
        } else {
            Outcome::Error
        };
        if code > 0 && session.response_written().is_none() {
            ctx.detail = Some(match ctx.origin_fault {
                _ if client_fault => "bad-request",
                Some(fault) => fault.detail(),
                None => "edge-error",
            });
            let status = cache_status::value(
                &self.name,
                session.cache.phase(),
                ctx,
                None,
                matches!(session.req_header().method, Method::GET | Method::HEAD),
                false,
            );
            if let Err(err) = Self::respond(session, code, &status, &self.via).await {
                tracing::debug!(error = %err, "could not send the error response");
            }
            ctx.cache_status = Some(status);
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up or breaks the connection is routine, not an error to log (the
    /// access line records it).
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        *error.esource() == ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.metrics.request(ctx.outcome);
        if let Some(site) = &ctx.site {
            site.count(ctx.outcome);
        }
        if !self.access_log.is_on() {
            return;
        }
        ctx.request_id();
        let origin = ctx.origin_addr.as_ref().map(ToString::to_string);
        let now = SystemTime::now();
        let req = session.req_header();
        let field = |name| req.headers.get(name).map_or(&b""[..], |v| v.as_bytes());
        let target = req
            .uri
            .path_and_query()
            .map_or(&b""[..], |p| p.as_str().as_bytes());
        let host = match &ctx.target {
            Some(t) => t.authority.as_bytes(),
            None => req
                .uri
                .host()
                .map_or(field(http::header::HOST), str::as_bytes),
        };
        let error = e.map(ToString::to_string);
        let entry = access_log::Entry {
            // When the head was read, on the wall clock (`started` is monotonic).
            start: now.checked_sub(ctx.started.elapsed()).unwrap_or(now),
            client: ctx.client.address,
            host,
            site: ctx.site.as_ref().map_or("-", |s| s.name.as_str()),
            method: req.method.as_str(),
            target,
            version: access_log::version(req.version),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            bytes: session.body_bytes_sent(),
            ttfb: ctx.head_sent_at.map(|t| t.duration_since(ctx.started)),
            total: ctx.started.elapsed(),
            outcome: ctx.outcome,
            cache_status: ctx.cache_status.as_deref().unwrap_or("-"),
            tier: ctx.tier,
            origin: origin.as_deref(),
            origin_time: ctx.origin_time,
            origin_fault: ctx.origin_fault.map(OriginFault::detail),
            request_id: &ctx.request_id,
            referer: field(http::header::REFERER),
            user_agent: field(http::header::USER_AGENT),
            error: error.as_deref(),
        };
        if let Some(line) = access_log::line(self.access_log.format(), &entry) {
            self.access_log.write(&line);
        }
    }
}
